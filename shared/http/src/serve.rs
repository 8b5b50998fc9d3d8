//! Running a function: on AWS Lambda when `AWS_LAMBDA_RUNTIME_API` is set, otherwise as a
//! plain HTTP server on `$PORT`.

use crate::app::app;
use crate::auth::Connection;
use crate::error::ApiError;
use crate::state::AppState;
use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use centaur_config::Env;
use centaur_core::api::codes;
use centaur_store::StoreError;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tower::ServiceBuilder;

/// Serves `router` (already wrapped by [`app`]) until SIGTERM/ctrl-c.
pub async fn serve(router: Router, default_port: u16) -> anyhow::Result<()> {
    let env = Env::from_process();
    if on_lambda(&env) {
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
        router.into_make_service_with_connect_info::<Connection>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

/// True when AWS Lambda runs this process (its Runtime API is given): the process is
/// frozen between requests, so nothing may be left to run after an answer.
fn on_lambda(env: &Env) -> bool {
    env.optional("AWS_LAMBDA_RUNTIME_API").is_some()
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
/// names the variable and exits non-zero. Nothing touches the database before the server
/// has answered: the schema check and the service-key bootstrap ([`AppState::prepare`])
/// start [`centaur_telemetry::AFTER_FIRST_ANSWER`] after the first answer (or
/// [`SCHEMA_CHECK_AT_LATEST`] after the start), so connecting competes neither with the
/// start itself nor with that answer on its way out; every request but liveness waits for
/// them ([`prepared`]); a database whose schema is older than this build ends the process
/// naming `api migrate`.
pub async fn run_function(
    name: &str,
    default_port: u16,
    router: fn(AppState) -> Router,
) -> anyhow::Result<()> {
    centaur_telemetry::init_tracing(name);
    let env = Env::from_process();
    let state = AppState::from_env(&env)
        .await
        .with_context(|| format!("{name} could not start"))?;
    // A server process outlives its answers: its wake-ups go out from a task of their own,
    // after the answer, several in one statement when they come together. On Lambda each
    // request sends its own before answering.
    if !on_lambda(&env) {
        centaur_store::wakeups::announce_in_background(state.pool.clone());
    }
    let answered = Arc::new(Notify::new());
    let router = served_app(router(state.clone()), state.clone(), answered.clone());
    // A task of its own, so that connecting to the database (reading `.pgpass`, the TCP
    // and start-up exchange) runs beside the server instead of between its polls.
    let mut behind = tokio::spawn(async move {
        tokio::select! {
            () = async {
                answered.notified().await;
                tokio::time::sleep(centaur_telemetry::AFTER_FIRST_ANSWER).await;
            } => {}
            () = tokio::time::sleep(SCHEMA_CHECK_AT_LATEST) => {}
        }
        schema_behind(state).await
    });
    tokio::select! {
        biased;
        served = serve(router, default_port) => served,
        behind = &mut behind => {
            let err = behind.unwrap_or_else(|panic| anyhow::anyhow!("schema check: {panic}"));
            Err(err.context(format!("{name} cannot serve this database")))
        }
    }
}

/// How long a function that has not answered yet waits before its schema check.
pub const SCHEMA_CHECK_AT_LATEST: Duration = Duration::from_secs(1);

/// Tells the schema check an answer is out (the first one starts it).
async fn note_answered(
    State(answered): State<Arc<Notify>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    answered.notify_one();
    response
}

/// Checks the schema and bootstraps the service keys beside the server
/// ([`AppState::prepare`]); resolves only if the database's schema is older than this
/// build, and the process then exits naming `api migrate` (its orchestrator restarts it
/// once the migration ran). An unreachable database is logged and left to the first
/// request that needs it.
async fn schema_behind(state: AppState) -> anyhow::Error {
    match state.prepare().await {
        Err(err @ StoreError::SchemaBehind { .. }) => return anyhow::Error::new(err),
        Err(err) => {
            tracing::warn!(%err, "the database is not reachable yet; the first request that needs it tries again");
        }
        Ok(()) => {}
    }
    std::future::pending().await
}

/// `routes` as [`run_function`] serves them: the shared layers ([`app`]) and, around
/// them, every answer noted on `answered` and every request but liveness waiting for
/// [`AppState::prepare`] (see [`prepared`]). The outer two are one `Router::layer` call.
fn served_app(routes: Router, state: AppState, answered: Arc<Notify>) -> Router {
    app(routes).layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(answered, note_answered))
            .layer(middleware::from_fn_with_state(state, prepared)),
    )
}

/// Paths answered without the database, before [`AppState::prepare`] is done: liveness.
const LIVENESS: [&str; 2] = ["/health/live", "/health"];

/// Lets a request through once the schema was found current and the service keys
/// bootstrapped (liveness at once): a database older than this build is refused naming
/// `api migrate`, an unreachable one is a 503 and the next request tries again.
async fn prepared(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.is_prepared() || LIVENESS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match state.prepare().await {
        Ok(()) => next.run(request).await,
        Err(err @ StoreError::SchemaBehind { .. }) => {
            tracing::error!(%err, "refused: the database schema is older than this build");
            let body = json!({"code": codes::UNAVAILABLE, "message": err.to_string()});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(err) => ApiError::from(err).into_response(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use centaur_config::ApiConfig;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config() -> ApiConfig {
        ApiConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://unused"),
            (
                "SANDBOX_SIGNING_KEY",
                "test-signing-key-0123456789abcdef0123456789",
            ),
            ("SLACKBOT_API_KEY", "cnt_test_slackbot_key_0123456789abcdef"),
        ]))
        .unwrap_or_else(|err| panic!("config: {err}"))
    }

    /// A function's router as `run_function` serves it, over real HTTP.
    async fn served(state: AppState) -> SocketAddr {
        let router = served_app(
            Router::new()
                .route("/health/live", axum::routing::get(|| async { "ok" }))
                .route("/needs-db", axum::routing::get(|| async { "db" })),
            state,
            Arc::new(Notify::new()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind: {err}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("address: {err}"));
        tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<Connection>();
            let _ = axum::serve(listener, service).await;
        });
        address
    }

    async fn get(address: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .unwrap_or_else(|err| panic!("connect: {err}"));
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|err| panic!("write: {err}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .unwrap_or_else(|err| panic!("read: {err}"));
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    #[tokio::test]
    async fn liveness_answers_while_the_database_hangs_and_the_rest_waits_for_it() {
        // A database that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("address: {err}"))
            .port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let pool = centaur_store::connect_lazy(&url, 2).unwrap_or_else(|err| panic!("{err}"));
        let state = AppState::new(pool, config());
        let address = served(state.clone()).await;

        let (status, body) = get(address, "/health/live").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            !state.is_prepared(),
            "liveness did not wait for the database"
        );
        let (status, body) = get(address, "/needs-db").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("UNAVAILABLE"), "{body}");
    }

    #[sqlx::test(migrations = false)]
    async fn a_request_on_an_unmigrated_database_is_refused_naming_the_command(
        pool: centaur_store::PgPool,
    ) {
        let state = AppState::new(pool.clone(), config());
        let address = served(state.clone()).await;

        let (status, body) = get(address, "/needs-db").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("run `api migrate`"), "{body}");
        let (status, _) = get(address, "/health/live").await;
        assert_eq!(status, 200);

        centaur_store::MIGRATOR
            .run(&pool)
            .await
            .unwrap_or_else(|err| panic!("migrate: {err}"));
        let (status, body) = get(address, "/needs-db").await;
        assert_eq!((status, body.ends_with("db")), (200, true), "{body}");
        assert!(state.is_prepared());
        let keys: i64 =
            sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE name = 'service:slackbot'")
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            keys, 1,
            "the service key was bootstrapped before the request ran"
        );
    }
}
