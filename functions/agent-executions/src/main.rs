//! `agent-executions`: see the crate docs.

centaur_http::function_main!(agent_executions::router);
