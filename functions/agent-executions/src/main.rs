//! `agent-executions`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("agent-executions", 8000, agent_executions::router).await
}
