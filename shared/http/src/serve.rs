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
