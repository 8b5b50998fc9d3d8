//! Running a function: on AWS Lambda when `AWS_LAMBDA_RUNTIME_API` is set, otherwise as a
//! plain HTTP server on `$PORT`.

use crate::app::app;
use crate::state::AppState;
use anyhow::Context;
use axum::Router;
use centaur_config::Env;
use std::net::SocketAddr;

/// Serves `router` (already wrapped by [`app`]) until SIGTERM/ctrl-c.
pub async fn serve(router: Router, default_port: u16) -> anyhow::Result<()> {
    let env = Env::from_process();
    if env.optional("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_http::run(router)
            .await
            .map_err(|err| anyhow::anyhow!("lambda runtime: {err}"));
    }
    let port: u16 = env.parsed_or("PORT", default_port)?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding PORT {port}"))?;
    tracing::info!(port, "listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

/// What `--help` says about the environment every function reads.
pub const FUNCTION_ENV_HELP: &str = "\
Environment (parsed once at start; a missing or invalid value stops the start naming it):
  DATABASE_URL             Postgres (required; the schema must be migrated: `api migrate`)
  SANDBOX_SIGNING_KEY      HMAC key of sandbox tokens (required, >= 32 characters)
  QUEUE_BACKEND            postgres (default) or sqs (with SQS_QUEUE_URL)
  PORT                     HTTP port when not on Lambda
  AWS_LAMBDA_RUNTIME_API   set by AWS Lambda: serve its Runtime API instead of HTTP
  LOG_FORMAT, RUST_LOG     json or text; the log filter (info)
The README's Configuration section lists every variable.";

/// The command line of a function binary: no arguments, `--help` and `--version` answered
/// without starting anything.
pub fn function_command(name: &'static str, about: &'static str) -> clap::Command {
    clap::Command::new(name)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .after_help(FUNCTION_ENV_HELP)
}

/// `fn main` of a function crate: `centaur_http::function_main!(my_function::router);`
/// serves the router on Lambda or on `$PORT` (8000), after answering `--help`.
#[macro_export]
macro_rules! function_main {
    ($router:path) => {
        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            $crate::function_command(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_DESCRIPTION"))
                .get_matches();
            $crate::run_function(env!("CARGO_PKG_NAME"), 8000, $router).await
        }
    };
}

/// The whole `main` of a function: tracing, config, state, serve. A configuration error
/// names the variable and exits non-zero.
pub async fn run_function(
    name: &str,
    default_port: u16,
    router: fn(AppState) -> Router,
) -> anyhow::Result<()> {
    centaur_telemetry::init_tracing(name);
    let _ = centaur_telemetry::metrics();
    let state = AppState::from_env(&Env::from_process())
        .await
        .with_context(|| format!("{name} could not start"))?;
    serve(app(router(state)), default_port).await
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
