//! `agent-message`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("agent-message", 8000, agent_message::router).await
}
