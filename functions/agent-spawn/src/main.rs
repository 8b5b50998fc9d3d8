//! `agent-spawn`: see the crate docs.

centaur_http::function_main!(agent_spawn::router);
