//! `health`: see the crate docs.

centaur_http::function_main!(health::router);
