//! `api [migrate | routes | openapi | check-config]`: every Centaur function on one port
//! (default 8000). `migrate` applies the migrations and exits; `routes` prints every
//! function's routes as JSON (what the AWS template is checked against); `openapi` prints the
//! OpenAPI document (`api openapi > contrib/openapi.json`); `check-config` parses the
//! environment and exits, naming the first missing or invalid variable (what the chart is
//! checked against).

use centaur_config::{ApiConfig, DatabaseConfig, Env};
use clap::{FromArgMatches, Subcommand};

// What `api` does besides serving.
#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations to DATABASE_URL and exit (the chart's hook Job, scripts/up.sh).
    Migrate,
    /// Print every function's routes as JSON.
    Routes,
    /// Print the OpenAPI 3.1 document (`api openapi > contrib/openapi.json`).
    Openapi,
    /// Parse the environment and exit, naming the first missing or invalid variable.
    CheckConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches = Command::augment_subcommands(centaur_http::function_command(
        "api",
        env!("CARGO_PKG_DESCRIPTION"),
    ))
    .get_matches();
    match Command::from_arg_matches(&matches).ok() {
        Some(Command::Routes) => println!("{}", api::routes_json()),
        Some(Command::Openapi) => print!("{}", api::openapi::json()),
        Some(Command::CheckConfig) => {
            ApiConfig::from_env(&Env::from_process())?;
            println!("configuration ok");
        }
        Some(Command::Migrate) => {
            centaur_telemetry::init_tracing("api");
            // Only the database is needed: the chart's migrate Job gets DATABASE_URL alone.
            let database = DatabaseConfig::from_env(&Env::from_process())?;
            centaur_store::migrate(&database.url).await?;
            tracing::info!(
                version = centaur_store::migrate::needed_version(),
                "migrations applied"
            );
        }
        None => centaur_http::run_function("api", 8000, api::router).await?,
    }
    Ok(())
}
