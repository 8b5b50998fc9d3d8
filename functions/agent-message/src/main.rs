//! `agent-message`: see the crate docs.

centaur_http::function_main!(agent_message::router);
