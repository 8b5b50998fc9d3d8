//! `slack-webhook`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("slack-webhook", 8000, slack_webhook::router).await
}
