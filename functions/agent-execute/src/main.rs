//! `agent-execute`: see the crate docs.

centaur_http::function_main!(agent_execute::router);
