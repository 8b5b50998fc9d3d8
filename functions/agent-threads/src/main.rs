//! `agent-threads`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("agent-threads", 8000, agent_threads::router).await
}
