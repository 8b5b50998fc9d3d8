//! `agent-events`: see the crate docs.

centaur_http::function_main!(agent_events::router);
