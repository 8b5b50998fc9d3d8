//! `admin-api-keys`: see the crate docs.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    centaur_http::run_function("admin-api-keys", 8000, admin_api_keys::router).await
}
