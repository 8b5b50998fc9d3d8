//! `final-deliveries`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("final-deliveries", 8000, final_deliveries::router).await
}
