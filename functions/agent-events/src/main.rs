//! `agent-events`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("agent-events", 8000, agent_events::router).await
}
