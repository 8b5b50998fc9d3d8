//! `agent-threads`: release a thread's assignment, a thread's status, the thread list,
//! token usage per harness, and the warm pool.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use centaur_auth::Scope;
use centaur_core::api::{ReleaseRequest, ReleaseResponse, Route};
use centaur_core::canonical::typed_request_hash;
use centaur_http::extract::parse_json;
use centaur_http::{validate, ApiError, ApiPath, ApiQuery, AppState, Peer, Principal};
use centaur_store::threads::{ThreadStatus, ThreadSummary};
use centaur_store::usage::{HarnessUsage, UsageTotal};
use centaur_store::warm::WarmSandbox;
use centaur_store::{assignments, threads, usage, warm};
use serde::{Deserialize, Serialize};

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/agent/threads/{thread_key}/release",
    },
    Route {
        method: "GET",
        path: "/agent/status",
    },
    Route {
        method: "GET",
        path: "/agent/threads",
    },
    Route {
        method: "GET",
        path: "/agent/pool",
    },
    Route {
        method: "GET",
        path: "/agent/usage",
    },
];

/// `POST /agent/threads/{thread_key}/release`: releases the active assignment (the next
/// spawn gets generation + 1), optionally cancelling unfinished executions.
#[utoipa::path(
    post,
    path = "/agent/threads/{thread_key}/release",
    tag = "agent",
    params(("thread_key" = centaur_core::ThreadKey, Path, description = "The thread.")),
    request_body(content = Option<ReleaseRequest>, description = "Optional: an empty body releases without cancelling.", content_type = "application/json"),
    responses(
        (status = 200, description = "Released (or, with `released: false`, nothing was active).", body = ReleaseResponse),
        (status = 409, description = "`IDEMPOTENCY_PAYLOAD_MISMATCH`: the same `release_id` with another payload.", body = centaur_core::api::ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn release(
    State(state): State<AppState>,
    principal: Principal,
    peer: Peer,
    ApiPath(thread_key): ApiPath<String>,
    body: Bytes,
) -> Result<Json<ReleaseResponse>, ApiError> {
    principal.require(Scope::AgentStop)?;
    let thread_key = validate::thread_key(&thread_key)?;
    principal.require_thread(thread_key.as_str())?;
    // The body is optional: empty, `null` and `{}` all release without cancelling.
    let request: ReleaseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReleaseRequest::default()
    } else {
        parse_json::<Option<ReleaseRequest>>(&body)?.unwrap_or_default()
    };
    let response = assignments::release(
        &state.pool,
        thread_key.as_str(),
        request.release_id.as_deref(),
        request.cancel_inflight,
        &typed_request_hash(&request),
        &principal.actor(&peer),
    )
    .await?;
    Ok(Json(response))
}

/// The query of `GET /agent/status`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// The thread.
    #[param(value_type = centaur_core::ThreadKey)]
    key: String,
}

/// `GET /agent/status?key=`: one thread at a glance.
#[utoipa::path(
    get,
    path = "/agent/status",
    tag = "agent",
    params(StatusQuery),
    responses((status = 200, description = "The thread's assignment, latest execution, pending messages, sandbox and usage.", body = ThreadStatus)),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn status(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<ThreadStatus>, ApiError> {
    principal.require(Scope::AgentStatus)?;
    let thread_key = validate::thread_key(&query.key)?;
    principal.require_thread(thread_key.as_str())?;
    Ok(Json(
        threads::status(&state.pool, thread_key.as_str()).await?,
    ))
}

/// The query of `GET /agent/threads`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// How many threads: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// `GET /agent/threads`: threads by most recent assignment change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThreadList {
    pub threads: Vec<ThreadSummary>,
}

/// `GET /agent/threads`: threads, newest first (not for sandbox tokens).
#[utoipa::path(
    get,
    path = "/agent/threads",
    tag = "agent",
    params(ListQuery),
    responses((status = 200, description = "Threads, newest first.", body = ThreadList)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ThreadList>, ApiError> {
    principal.require(Scope::AgentStatus)?;
    principal.require_not_sandbox()?;
    let limit = validate::limit(query.limit, 50, 500)?;
    Ok(Json(ThreadList {
        threads: threads::list(&state.pool, limit).await?,
    }))
}

/// `GET /agent/pool`: the warm pool's settings and sandboxes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// `WARM_POOL_ENABLED`.
    pub enabled: bool,
    /// `WARM_POOL_SIZE`.
    pub target_size: u32,
    /// The harness warm sandboxes are started for.
    #[schema(value_type = centaur_core::Harness)]
    pub harness: String,
    pub ready: usize,
    pub claimed: usize,
    pub failed: usize,
    /// Every warm sandbox row, newest first (at most 500).
    pub sandboxes: Vec<WarmSandbox>,
}

/// `GET /agent/pool`: the warm pool (admin).
#[utoipa::path(
    get,
    path = "/agent/pool",
    tag = "admin",
    responses((status = 200, description = "The warm pool.", body = PoolStatus)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn pool(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<PoolStatus>, ApiError> {
    principal.require(Scope::Admin)?;
    let sandboxes = warm::list(&state.pool).await?;
    let count = |wanted: &str| sandboxes.iter().filter(|s| s.state == wanted).count();
    let config = &state.config.sandbox;
    Ok(Json(PoolStatus {
        enabled: config.warm_pool_enabled,
        target_size: config.warm_pool_size,
        harness: config.warm_pool_harness.as_str().to_owned(),
        ready: count("ready"),
        claimed: count("claimed"),
        failed: count("failed"),
        sandboxes,
    }))
}

/// The query of `GET /agent/usage`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// An RFC 3339 time, a date (midnight UTC) or a span back from now (`90m`, `24h`, `7d`).
    since: Option<String>,
    /// Only this harness.
    #[param(value_type = Option<centaur_core::Harness>)]
    harness: Option<String>,
}

/// `GET /agent/usage`: tokens per harness, and their total.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// The `since` asked for, resolved to a time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The harness asked for (canonical name).
    #[schema(value_type = Option<centaur_core::Harness>)]
    pub harness: Option<&'static str>,
    pub harnesses: Vec<HarnessUsage>,
    pub total: UsageTotal,
}

/// `GET /agent/usage?since=&harness=`: tokens per harness over the retained executions
/// (those whose usage was last reported at or after `since`), and their total.
#[utoipa::path(
    get,
    path = "/agent/usage",
    tag = "agent",
    params(UsageQuery),
    responses((status = 200, description = "Tokens per harness and in total.", body = UsageReport)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn usage_by_harness(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    principal.require(Scope::AgentStatus)?;
    principal.require_not_sandbox()?;
    let since = query
        .since
        .as_deref()
        .map(|raw| validate::since(raw, chrono::Utc::now()))
        .transpose()?;
    let harness = query
        .harness
        .as_deref()
        .map(validate::harness)
        .transpose()?;
    let harnesses = usage::by_harness(&state.pool, since, harness.map(|h| h.as_str())).await?;
    let total = harnesses
        .iter()
        .fold(usage::UsageTotal::default(), |total, h| usage::UsageTotal {
            input_tokens: total.input_tokens.saturating_add(h.input_tokens),
            output_tokens: total.output_tokens.saturating_add(h.output_tokens),
            executions: total.executions.saturating_add(h.executions),
        });
    Ok(Json(UsageReport {
        since,
        harness: harness.map(|h| h.as_str()),
        harnesses,
        total,
    }))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(release, status, list, pool, usage_by_harness))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/agent/threads/{thread_key}/release", post(release))
        .route("/agent/status", get(status))
        .route("/agent/threads", get(list))
        .route("/agent/pool", get(pool))
        .route("/agent/usage", get(usage_by_harness))
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    routes(Router::new()).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use centaur_http::testing::{
        apigw_v2_event, create_key, test_state, Caller, TestClient, TEST_SIGNING_KEY,
    };
    use serde_json::{json, Value};
    use sqlx::PgPool;

    async fn spawned(pool: &PgPool, thread: &str) {
        centaur_http::testing::spawn_echo_thread(pool, thread).await;
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn release_ends_the_assignment_and_the_next_spawn_gets_the_next_generation(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let (status, body) = client
            .post(
                "/agent/threads/t1/release",
                &Caller::LocalOperator,
                &json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["released"], true);
        assert_eq!(body["assignment_generation"], 1);
        let next = assignments::spawn(&pool, "t1", None, None, centaur_core::Harness::Codex, "h2")
            .await
            .unwrap();
        assert_eq!(next.assignment_generation, 2);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn release_without_a_body_is_accepted_and_a_second_release_changes_nothing(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, _) = client
            .raw(
                axum::http::Method::POST,
                "/agent/threads/t1/release",
                &Caller::LocalOperator,
                Vec::new(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, again) = client
            .post(
                "/agent/threads/t1/release",
                &Caller::LocalOperator,
                &json!({}),
            )
            .await;
        assert_eq!(again["released"], false);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn release_with_cancel_inflight_cancels_queued_executions(pool: PgPool) {
        spawned(&pool, "t1").await;
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id, request_hash, status, delivery)
             VALUES ('exe_00000000000000bb', 't1', 1, 'echo', 'x', 'h', 'queued', '{}')",
        )
        .execute(&pool).await.unwrap();
        let client = TestClient::new(router(test_state(pool.clone())));
        let (_, body) = client
            .post(
                "/agent/threads/t1/release",
                &Caller::LocalOperator,
                &json!({"cancel_inflight": true}),
            )
            .await;
        assert_eq!(
            body["cancelled_execution_ids"],
            json!(["exe_00000000000000bb"])
        );
        let (status, reason): (String, String) =
            sqlx::query_as("SELECT status, terminal_reason FROM executions")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("cancelled", "released")
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn status_reports_the_assignment_and_pending_messages(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .get("/agent/status?key=t1", &Caller::LocalOperator)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["assignment"]["harness"], "echo");
        assert_eq!(body["pending_messages"], 0);
        assert_eq!(body["latest_execution"], Value::Null);
        let (status, _) = client.get("/agent/status", &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn status_and_the_thread_list_show_the_threads_repo(pool: PgPool) {
        let workspace = assignments::WorkspaceChoice {
            requested_repo: Some("acme/api".into()),
            ..Default::default()
        };
        let operator = centaur_store::audit::Actor::local_operator(None);
        assignments::spawn_in_workspace(
            &pool,
            "t1",
            None,
            None,
            centaur_core::Harness::Codex,
            &workspace,
            "h",
            &operator,
        )
        .await
        .unwrap();
        spawned(&pool, "t2").await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .get("/agent/status?key=t1", &Caller::LocalOperator)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["assignment"]["repo"], "acme/api");
        let (status, body) = client.get("/agent/threads", &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let repos: std::collections::BTreeMap<String, Value> = body["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["thread_key"].as_str().unwrap().to_owned(),
                    t["repo"].clone(),
                )
            })
            .collect();
        assert_eq!(repos["t1"], "acme/api");
        assert_eq!(repos["t2"], Value::Null);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn sandbox_tokens_cannot_list_threads(pool: PgPool) {
        spawned(&pool, "t1").await;
        let token = centaur_auth::sandbox_token::mint(
            TEST_SIGNING_KEY,
            "t1",
            "sbx",
            i64::from(u32::MAX) - 10,
            10,
        );
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client.get("/agent/threads", &Caller::Key(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = client.get("/agent/threads", &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["threads"][0]["thread_key"], "t1");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_pool_is_admin_only_and_reports_counts(pool: PgPool) {
        warm::insert_ready(&pool, "sbx-warm-1", "codex")
            .await
            .unwrap();
        let agent_key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, _) = client.get("/agent/pool", &Caller::Key(agent_key)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = client.get("/agent/pool", &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["ready"], 1);
        assert_eq!(body["sandboxes"][0]["sandbox_id"], "sbx-warm-1");
    }

    /// A finished execution on `thread` run by `harness` that reported `tokens` (input,
    /// output) in one `usage` harness event per pair, stored as the dispatcher stores them.
    async fn reported(pool: &PgPool, id: &str, thread: &str, harness: &str, tokens: &[(i64, i64)]) {
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id,
                                     request_hash, status, delivery, completed_at, terminal_reason)
             VALUES ($1, $2, 1, $3, $1, 'h', 'completed', '{}', now(), 'completed')",
        )
        .bind(id)
        .bind(thread)
        .bind(harness)
        .execute(pool)
        .await
        .unwrap();
        let batch: Vec<Value> = tokens
            .iter()
            .enumerate()
            .map(|(n, (input, output))| {
                json!({"execution_id": id, "seq": n + 1, "type": "usage",
                       "input_tokens": input, "output_tokens": output})
            })
            .collect();
        centaur_store::events::append_batch(pool, thread, id, "harness_event", &batch)
            .await
            .unwrap();
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn status_and_the_thread_list_sum_the_threads_usage(pool: PgPool) {
        spawned(&pool, "t1").await;
        reported(
            &pool,
            "exe_00000000000000c1",
            "t1",
            "echo",
            &[(100, 20), (5, 1)],
        )
        .await;
        reported(&pool, "exe_00000000000000c2", "t1", "echo", &[(10, 2)]).await;
        reported(&pool, "exe_00000000000000c3", "t2", "echo", &[(999, 999)]).await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .get("/agent/status?key=t1", &Caller::LocalOperator)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["usage"],
            json!({"input_tokens": 115, "output_tokens": 23, "executions": 2})
        );
        let (_, body) = client.get("/agent/threads", &Caller::LocalOperator).await;
        assert_eq!(body["threads"][0]["thread_key"], "t1");
        assert_eq!(body["threads"][0]["input_tokens"], 115);
        assert_eq!(body["threads"][0]["output_tokens"], 23);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn usage_is_totalled_per_harness_since_a_time(pool: PgPool) {
        reported(&pool, "exe_00000000000000d1", "t1", "codex", &[(100, 10)]).await;
        reported(&pool, "exe_00000000000000d2", "t2", "codex", &[(50, 5)]).await;
        reported(
            &pool,
            "exe_00000000000000d3",
            "t3",
            "claude-code",
            &[(7, 3)],
        )
        .await;
        sqlx::query(
            "UPDATE execution_usage SET last_reported_at = now() - interval '3 days'
             WHERE execution_id = 'exe_00000000000000d1'",
        )
        .execute(&pool)
        .await
        .unwrap();
        let key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client.get("/agent/usage", &Caller::Key(key)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["harnesses"],
            json!([
                {"harness": "claude-code", "input_tokens": 7, "output_tokens": 3, "executions": 1},
                {"harness": "codex", "input_tokens": 150, "output_tokens": 15, "executions": 2},
            ])
        );
        assert_eq!(
            body["total"],
            json!({"input_tokens": 157, "output_tokens": 18, "executions": 3})
        );
        let (status, body) = client
            .get(
                "/agent/usage?since=1d&harness=codex",
                &Caller::LocalOperator,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["harness"], "codex");
        assert!(body["since"].is_string(), "{body}");
        assert_eq!(
            body["total"],
            json!({"input_tokens": 50, "output_tokens": 5, "executions": 1})
        );
        let (_, body) = client
            .get("/agent/usage?since=2099-01-01", &Caller::LocalOperator)
            .await;
        assert_eq!(body["harnesses"], json!([]));
        assert_eq!(body["total"]["input_tokens"], 0);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn bad_usage_queries_are_named_422s_and_sandboxes_are_refused(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        for (query, code, names) in [
            ("since=yesterday", "VALIDATION_ERROR", "since"),
            ("since=", "VALIDATION_ERROR", "since"),
            ("since=99999999999d", "VALIDATION_ERROR", "since"),
            ("harness=gpt", "UNKNOWN_HARNESS", "gpt"),
            ("since=1d&since=2d", "VALIDATION_ERROR", "since"),
        ] {
            let (status, body) = client
                .get(&format!("/agent/usage?{query}"), &Caller::LocalOperator)
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
            assert_eq!(body["code"], code, "{query}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains(names),
                "{query}: {body}"
            );
        }
        let token = centaur_auth::sandbox_token::mint(
            TEST_SIGNING_KEY,
            "t1",
            "sbx",
            i64::from(u32::MAX) - 10,
            10,
        );
        let (status, _) = client.get("/agent/usage", &Caller::Key(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = client.get("/agent/usage", &Caller::Anonymous).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_reads_a_threads_status(pool: PgPool) {
        spawned(&pool, "t1").await;
        let key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let event = apigw_v2_event(
            "GET",
            "/agent/status",
            "key=t1",
            &[("x-api-key", &key)],
            None,
        );
        let (status, body) = client.lambda(&event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["thread_key"], "t1");
    }
}
