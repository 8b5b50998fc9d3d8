//! `agent-threads`: see the crate docs.

centaur_http::function_main!(agent_threads::router);
