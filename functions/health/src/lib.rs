//! `health`: liveness, readiness (database and queue), the configured harnesses and
//! integrations (`/health/tools`, admin), and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use centaur_auth::Scope;
use centaur_core::api::Route;
use centaur_core::{ExecutionStatus, Harness};
use centaur_http::{ApiError, AppState, Principal};
use centaur_store::harness_reports::{self, CliReport};
use serde::Serialize;
use std::time::Duration;

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/health",
    },
    Route {
        method: "GET",
        path: "/health/live",
    },
    Route {
        method: "GET",
        path: "/health/ready",
    },
    Route {
        method: "GET",
        path: "/health/tools",
    },
    Route {
        method: "GET",
        path: "/metrics",
    },
];

/// `GET /health`, `GET /health/live`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// `ok`.
    pub status: &'static str,
}

/// `GET /health/ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok`, or `degraded` (503).
    pub status: &'static str,
    /// The database answered `SELECT 1`.
    pub database: bool,
    /// The queue answered.
    pub queue: bool,
    /// What failed, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One harness or integration in `GET /health/tools`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tool {
    pub name: String,
    /// `harness`, `integration`, `queue` or `sandbox`.
    pub kind: &'static str,
    pub ready: bool,
    /// Why it is (not) ready, in words.
    pub detail: String,
    /// Harnesses: the model credential is bound in iron-proxy (or none is needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_bound: Option<bool>,
    /// Harnesses: the last sandbox that ran it found its CLI (unknown until one ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli_present: Option<Option<bool>>,
    /// Harnesses: the CLI version that sandbox reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli_version: Option<Option<String>>,
}

/// The counts of `GET /health/tools`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolsSummary {
    pub loaded_count: usize,
    pub failed_count: usize,
}

/// `GET /health/tools`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolsReport {
    pub summary: ToolsSummary,
    /// Ready harnesses and integrations.
    pub loaded: Vec<Tool>,
    /// The ones that are not ready, each saying why.
    pub failed: Vec<Tool>,
}

/// `GET /health`, `GET /health/live`: the process answers (the document's `/health/live`
/// is a copy of `/health`, see [`openapi`]).
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "Alive.", body = Liveness)),
)]
async fn live() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// How long `/health/ready` waits for each dependency (checked side by side).
pub const READY_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// `GET /health/ready`: the database and the queue answer, each within 1.5 s.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Degraded: `error` says what did not answer.", body = Readiness),
    ),
)]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let timed_out =
        |what: &str| format!("no answer within {READY_CHECK_TIMEOUT:?} from the {what}");
    let (database, queue) = tokio::join!(
        tokio::time::timeout(
            READY_CHECK_TIMEOUT,
            sqlx::query("SELECT 1").execute(&state.pool)
        ),
        tokio::time::timeout(READY_CHECK_TIMEOUT, state.queue.ping()),
    );
    let database = database
        .map_err(|_| timed_out("database"))
        .and_then(|result| result.map(drop).map_err(|err| err.to_string()));
    let queue = queue
        .map_err(|_| timed_out("queue"))
        .and_then(|result| result.map_err(|err| err.to_string()));
    let mut body = Readiness {
        status: "ok",
        database: database.is_ok(),
        queue: queue.is_ok(),
        error: None,
    };
    let errors: Vec<String> = [
        database.err().map(|err| format!("database: {err}")),
        queue.err().map(|err| format!("queue: {err}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if errors.is_empty() {
        return (StatusCode::OK, Json(body));
    }
    body.status = "degraded";
    body.error = Some(errors.join("; "));
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// One `/health/tools` entry.
fn tool(name: &str, kind: &'static str, ready: bool, detail: String) -> Tool {
    Tool {
        name: name.to_owned(),
        kind,
        ready,
        detail,
        credential_bound: None,
        cli_present: None,
        cli_version: None,
    }
}

/// One harness's `/health/tools` entry: ready when its credential is bound in iron-proxy
/// (or it needs none) and the last sandbox that ran it did not find its CLI missing.
fn harness_entry(harness: Harness, bound_secrets: &[String], report: Option<&CliReport>) -> Tool {
    let (bound, binding_detail) = match harness.credential_binding() {
        None => (true, "needs no credential".to_owned()),
        Some(binding) if bound_secrets.iter().any(|s| s == binding.secret) => (
            true,
            format!("{} bound in iron-proxy for {} ({})", binding.secret, binding.host, binding.header),
        ),
        Some(binding) => (
            false,
            format!(
                "{} is not bound in iron-proxy (IRON_PROXY_BOUND_SECRETS); enable the harness in the chart's harnesses.enabled",
                binding.secret
            ),
        ),
    };
    let cli_detail = match (harness, report) {
        (Harness::Echo, _) => "built into the sandbox program".to_owned(),
        (_, None) => "CLI not reported yet (no sandbox has run this harness)".to_owned(),
        (_, Some(r)) if r.cli_present => format!(
            "CLI present: {} (reported {})",
            r.cli_version.as_deref().unwrap_or("version unknown"),
            r.reported_at.to_rfc3339()
        ),
        (_, Some(r)) => format!(
            "CLI missing from the sandbox image (reported {})",
            r.reported_at.to_rfc3339()
        ),
    };
    let cli_present = match harness {
        Harness::Echo => Some(true),
        _ => report.map(|r| r.cli_present),
    };
    let mut entry = tool(
        harness.as_str(),
        "harness",
        bound && cli_present != Some(false),
        format!("{binding_detail}; {cli_detail}"),
    );
    entry.credential_bound = Some(bound);
    entry.cli_present = Some(cli_present);
    entry.cli_version = Some(report.and_then(|r| r.cli_version.clone()));
    entry
}

/// What `/health/tools` reports: harness credential bindings and CLIs, Slack, queue,
/// sandboxes.
pub fn tools(state: &AppState, queue_ok: Result<(), String>, reports: &[CliReport]) -> Vec<Tool> {
    let config = &state.config;
    let mut entries: Vec<Tool> = Harness::ALL
        .into_iter()
        .map(|harness| {
            let report = reports.iter().find(|r| r.harness == harness.as_str());
            harness_entry(harness, &config.iron_proxy_bound_secrets, report)
        })
        .collect();
    entries.push(if config.slack_configured {
        tool(
            "slack",
            "integration",
            true,
            "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set".into(),
        )
    } else {
        tool(
            "slack",
            "integration",
            false,
            "set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET to use Slack".into(),
        )
    });
    entries.push(match queue_ok {
        Ok(()) => tool(
            "queue",
            "queue",
            true,
            format!("{} queue reachable", state.queue.backend_name()),
        ),
        Err(err) => tool("queue", "queue", false, err),
    });
    entries.push(tool(
        "sandbox_backend",
        "sandbox",
        true,
        format!(
            "{:?} backend; default harness {}",
            config.sandbox.backend, config.sandbox.default_harness
        ),
    ));
    entries
}

/// `GET /health/tools`: the harnesses and integrations, ready or not (admin).
#[utoipa::path(
    get,
    path = "/health/tools",
    tag = "health",
    responses((status = 200, description = "Harnesses and integrations.", body = ToolsReport)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn tools_report(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ToolsReport>, ApiError> {
    principal.require(Scope::Admin)?;
    let queue = state.queue.ping().await.map_err(|err| err.to_string());
    let reports = harness_reports::all(&state.pool).await?;
    let (loaded, failed): (Vec<Tool>, Vec<Tool>) = tools(&state, queue, &reports)
        .into_iter()
        .partition(|entry| entry.ready);
    Ok(Json(ToolsReport {
        summary: ToolsSummary {
            loaded_count: loaded.len(),
            failed_count: failed.len(),
        },
        loaded,
        failed,
    }))
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text exposition.", content_type = "text/plain", body = String)),
)]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let recorder = centaur_telemetry::metrics();
    if let Ok(counts) = centaur_store::dispatch::count_by_status(&state.pool).await {
        for status in ExecutionStatus::ALL {
            let count = counts
                .iter()
                .find(|(name, _)| name == status.as_str())
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("centaur_executions", "status" => status.as_str()).set(count as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        recorder.render(),
    )
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(live, ready, tools_report, metrics_text))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = <ApiDoc as utoipa::OpenApi>::openapi();
    centaur_http::openapi::alias(&mut document, "/health", "/health/live");
    document
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/health", get(live))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/tools", get(tools_report))
        .route("/metrics", get(metrics_text))
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    routes(Router::new()).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use centaur_http::testing::{apigw_v2_event, create_key, test_state, Caller, TestClient};
    use serde_json::{json, Value};
    use sqlx::PgPool;

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn liveness_and_readiness_answer_ok(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        for path in ["/health", "/health/live"] {
            let (status, body) = client.get(path, &Caller::Anonymous).await;
            assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
        }
        let (status, body) = client.get("/health/ready", &Caller::Anonymous).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"status": "ok", "database": true, "queue": true})
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn readiness_is_503_when_the_database_is_gone(pool: PgPool) {
        let state = test_state(pool.clone());
        pool.close().await;
        let client = TestClient::new(router(state));
        let (status, body) = client.get("/health/ready", &Caller::Anonymous).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["database"], false);
        assert!(body["error"].is_string());
    }

    #[tokio::test]
    async fn readiness_answers_503_promptly_while_the_database_hangs() {
        let (url, _peer) = centaur_http::testing::unresponsive_database().await;
        let pool = centaur_store::pool_options(2).connect_lazy(&url).unwrap();
        let client = TestClient::new(router(test_state(pool)));
        let started = std::time::Instant::now();
        let (status, body) = client.get("/health/ready", &Caller::Anonymous).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["database"], false);
        // Both checks wait side by side, each at most READY_CHECK_TIMEOUT (the old code
        // waited the pool's 10 s acquire timeout, twice).
        assert!(
            started.elapsed() < READY_CHECK_TIMEOUT * 3,
            "took {:?}",
            started.elapsed()
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn tools_report_bound_and_unbound_harnesses_for_admins_only(pool: PgPool) {
        let agent_key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, _) = client.get("/health/tools", &Caller::Key(agent_key)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = client.get("/health/tools", &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let names = |list: &str| -> Vec<String> {
            body[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert!(
            names("loaded").contains(&"codex".to_owned()),
            "OPENAI_API_KEY is bound in the test config"
        );
        assert!(names("failed").contains(&"claude-code".to_owned()));
        assert!(names("failed").contains(&"slack".to_owned()));
        assert_eq!(
            body["summary"]["loaded_count"].as_u64().unwrap()
                + body["summary"]["failed_count"].as_u64().unwrap(),
            (Harness::ALL.len() + 3) as u64
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn tools_report_whether_each_harness_cli_was_found_in_its_sandbox(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        harness_reports::record(
            &mut conn,
            &[
                json!({"type": "turn.started", "harness": "codex", "cli_present": true, "cli_version": "codex-cli 0.171.0"}),
                json!({"type": "turn.started", "harness": "amp", "cli_present": false}),
            ],
        )
        .await
        .unwrap();
        drop(conn);
        let client = TestClient::new(router(test_state(pool)));
        let (_, body) = client.get("/health/tools", &Caller::LocalOperator).await;
        let entry = |list: &str, name: &str| -> Value {
            body[list]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let codex = entry("loaded", "codex");
        assert_eq!(codex["cli_present"], true, "{body}");
        assert_eq!(codex["cli_version"], "codex-cli 0.171.0");
        let amp = entry("failed", "amp");
        assert_eq!(amp["cli_present"], false, "{body}");
        assert!(amp["detail"].as_str().unwrap().contains("CLI missing"));
        assert_eq!(
            entry("failed", "pi-mono")["cli_present"],
            Value::Null,
            "not reported yet"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn metrics_are_prometheus_text_with_execution_counts(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client.get("/metrics", &Caller::Anonymous).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.as_str()
                .unwrap()
                .contains("centaur_executions{status=\"queued\"}"),
            "{body}"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn unknown_routes_and_methods_answer_json(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client.get("/nope", &Caller::Anonymous).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "NOT_FOUND");
        let (status, body) = client.post("/health", &Caller::Anonymous, &json!({})).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_gets_health_and_tools_needs_a_key(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .lambda(&apigw_v2_event("GET", "/health", "", &[], None))
            .await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
        let (status, _) = client
            .lambda(&apigw_v2_event("GET", "/health/tools", "", &[], None))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
