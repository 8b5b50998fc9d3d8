//! `agent-execute`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("agent-execute", 8000, agent_execute::router).await
}
