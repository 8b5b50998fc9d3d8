//! `slack-webhook`: see the crate docs.

centaur_http::function_main!(slack_webhook::router);
