//! `api [migrate | routes | check-config]`: every Centaur function on one port (default 8000).
//! `migrate` applies the migrations and exits; `routes` prints every function's routes as
//! JSON (what the AWS template is checked against); `check-config` parses the environment
//! and exits, naming the first missing or invalid variable (what the chart is checked against).

use centaur_config::{ApiConfig, DatabaseConfig, Env};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("routes") {
        println!("{}", api::routes_json());
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("check-config") {
        ApiConfig::from_env(&Env::from_process())?;
        println!("configuration ok");
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        centaur_telemetry::init_tracing("api");
        // Only the database is needed: the chart's migrate Job gets DATABASE_URL alone.
        let database = DatabaseConfig::from_env(&Env::from_process())?;
        centaur_store::migrate(&database.url).await?;
        tracing::info!(
            version = centaur_store::migrate::needed_version(),
            "migrations applied"
        );
        return Ok(());
    }
    centaur_http::run_function("api", 8000, api::router).await
}
