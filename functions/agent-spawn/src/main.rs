//! `agent-spawn`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("agent-spawn", 8000, agent_spawn::router).await
}
