//! `final-deliveries`: the delivery outbox for external deliverers (a bot of your own, a
//! webhook relay). A deliverer claims due rows with a lease, heartbeats while it works
//! (recording chunks posted), and reports each row delivered or failed. The dispatcher
//! delivers Slack rows itself through the same store functions when it holds a bot token.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use centaur_core::api::{codes, ErrorBody, Route};
use centaur_http::{require, validate, ApiError, ApiJson, ApiPath, AppState, Authorized};
use centaur_store::outbox::{self, ClaimedDelivery, FailedOutcome, Retry};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/agent/final-deliveries/claim",
    },
    Route {
        method: "POST",
        path: "/agent/final-deliveries/{execution_id}/heartbeat",
    },
    Route {
        method: "POST",
        path: "/agent/final-deliveries/{execution_id}/delivered",
    },
    Route {
        method: "POST",
        path: "/agent/final-deliveries/{execution_id}/failed",
    },
];

/// Lease bounds (seconds) a deliverer may ask for.
const LEASE_S: (u64, u64, u64) = (10, 60, 600);

fn lease(requested: Option<u64>) -> Result<Duration, ApiError> {
    let (min, default, max) = LEASE_S;
    match requested.unwrap_or(default) {
        secs if (min..=max).contains(&secs) => Ok(Duration::from_secs(secs)),
        secs => Err(ApiError::validation(format!(
            "lease_s must be between {min} and {max}, got {secs}"
        ))),
    }
}

fn worker(raw: &str) -> Result<&str, ApiError> {
    let worker = raw.trim();
    if worker.is_empty() || worker.len() > 200 {
        return Err(ApiError::validation(
            "worker_id must be 1 to 200 characters",
        ));
    }
    Ok(worker)
}

fn lease_lost(execution_id: &str) -> ApiError {
    ApiError::Conflict {
        code: codes::DELIVERY_LEASE_LOST,
        message: format!(
            "delivery {execution_id} is not leased to this worker (expired, taken over or finished)"
        ),
    }
}

/// `POST /agent/final-deliveries/claim`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The deliverer (1 to 200 characters, not blank): the lease holder.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub worker_id: String,
    /// At most this many rows: 1 to 100 (default 10).
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only rows for this delivery platform.
    pub platform: Option<String>,
    /// Lease length in seconds: 10 to 600 (default 60).
    #[schema(minimum = 10, maximum = 600)]
    pub lease_s: Option<u64>,
}

/// Response of `POST /agent/final-deliveries/claim`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClaimResponse {
    pub ok: bool,
    /// The rows now leased to the worker (none when nothing is due).
    pub deliveries: Vec<ClaimedDelivery>,
}

/// `POST /agent/final-deliveries/claim`: lease due answers for delivery.
#[utoipa::path(
    post,
    path = "/agent/final-deliveries/claim",
    tag = "final-deliveries",
    request_body = ClaimRequest,
    responses((status = 200, description = "The claimed rows.", body = ClaimResponse)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn claim(
    State(state): State<AppState>,
    _worker: Authorized<require::DeliveryWorker>,
    ApiJson(request): ApiJson<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    let limit = validate::limit(request.limit, 10, 100)?;
    let claimed = outbox::claim(
        &state.pool,
        worker(&request.worker_id)?,
        limit,
        request.platform.as_deref(),
        lease(request.lease_s)?,
    )
    .await?;
    Ok(Json(ClaimResponse {
        ok: true,
        deliveries: claimed,
    }))
}

/// `POST /agent/final-deliveries/{execution_id}/heartbeat`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease holder.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub worker_id: String,
    /// New lease length in seconds: 10 to 600 (default 60).
    #[schema(minimum = 10, maximum = 600)]
    pub lease_s: Option<u64>,
    /// Chunks posted so far, so a takeover resumes after them.
    #[schema(minimum = 0)]
    pub delivered_chunks: Option<i32>,
}

/// Response of a heartbeat.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatResponse {
    pub ok: bool,
    pub execution_id: String,
    pub lease_expires_at: chrono::DateTime<chrono::Utc>,
}

/// Response of `delivered` and `failed`: where the row is now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryState {
    pub ok: bool,
    pub execution_id: String,
    /// `delivered`, `pending` (a retry is scheduled) or `dead_letter`.
    pub state: &'static str,
}

/// `POST /agent/final-deliveries/{execution_id}/heartbeat`: extend the lease (and record
/// chunks posted).
#[utoipa::path(
    post,
    path = "/agent/final-deliveries/{execution_id}/heartbeat",
    tag = "final-deliveries",
    params(("execution_id" = centaur_core::ExecutionId, Path, description = "The execution whose answer is delivered.")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The lease is extended.", body = HeartbeatResponse),
        (status = 409, description = "`DELIVERY_LEASE_LOST`: the row is not leased to this worker (expired, taken over or finished).", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn heartbeat(
    State(state): State<AppState>,
    _worker: Authorized<require::DeliveryWorker>,
    ApiPath(execution_id): ApiPath<String>,
    ApiJson(request): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let owner = worker(&request.worker_id)?;
    if let Some(chunks) = request.delivered_chunks {
        if chunks < 0 {
            return Err(ApiError::validation(
                "delivered_chunks must not be negative",
            ));
        }
        if !outbox::record_chunks(&state.pool, &execution_id, owner, chunks).await? {
            return Err(lease_lost(&execution_id));
        }
    }
    let expires = outbox::heartbeat(&state.pool, &execution_id, owner, lease(request.lease_s)?)
        .await?
        .ok_or_else(|| lease_lost(&execution_id))?;
    Ok(Json(HeartbeatResponse {
        ok: true,
        execution_id,
        lease_expires_at: expires,
    }))
}

/// `POST /agent/final-deliveries/{execution_id}/delivered`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveredRequest {
    /// The lease holder.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub worker_id: String,
    /// What the deliverer wants recorded (message ids, permalinks): a JSON object.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

/// `POST /agent/final-deliveries/{execution_id}/delivered`: the answer was posted.
#[utoipa::path(
    post,
    path = "/agent/final-deliveries/{execution_id}/delivered",
    tag = "final-deliveries",
    params(("execution_id" = centaur_core::ExecutionId, Path, description = "The execution whose answer is delivered.")),
    request_body = DeliveredRequest,
    responses(
        (status = 200, description = "Recorded as delivered.", body = DeliveryState),
        (status = 409, description = "`DELIVERY_LEASE_LOST`: the row is not leased to this worker (expired, taken over or finished).", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn delivered(
    State(state): State<AppState>,
    _worker: Authorized<require::DeliveryWorker>,
    ApiPath(execution_id): ApiPath<String>,
    ApiJson(request): ApiJson<DeliveredRequest>,
) -> Result<Json<DeliveryState>, ApiError> {
    let detail = validate::optional_object(request.detail.as_ref(), "detail")?;
    let owner = worker(&request.worker_id)?;
    if !outbox::delivered(&state.pool, &execution_id, owner, &detail).await? {
        return Err(lease_lost(&execution_id));
    }
    Ok(Json(DeliveryState {
        ok: true,
        execution_id,
        state: "delivered",
    }))
}

/// `POST /agent/final-deliveries/{execution_id}/failed`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedRequest {
    /// The lease holder.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub worker_id: String,
    /// What failed (not blank).
    #[schema(pattern = r"\S")]
    pub error: String,
    /// False: retrying cannot help, dead-letter now (default true).
    #[serde(default = "retryable_by_default")]
    #[schema(default = true)]
    pub retryable: bool,
    /// Retry after this many seconds (default 30, at most 3600).
    pub retry_after_s: Option<u64>,
}

fn retryable_by_default() -> bool {
    true
}

/// `POST /agent/final-deliveries/{execution_id}/failed`: the delivery failed; retry
/// later or dead-letter.
#[utoipa::path(
    post,
    path = "/agent/final-deliveries/{execution_id}/failed",
    tag = "final-deliveries",
    params(("execution_id" = centaur_core::ExecutionId, Path, description = "The execution whose answer is delivered.")),
    request_body = FailedRequest,
    responses(
        (status = 200, description = "Where the row is now.", body = DeliveryState),
        (status = 409, description = "`DELIVERY_LEASE_LOST`: the row is not leased to this worker (expired, taken over or finished).", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn failed(
    State(state): State<AppState>,
    _worker: Authorized<require::DeliveryWorker>,
    ApiPath(execution_id): ApiPath<String>,
    ApiJson(request): ApiJson<FailedRequest>,
) -> Result<Json<DeliveryState>, ApiError> {
    let owner = worker(&request.worker_id)?;
    if request.error.trim().is_empty() {
        return Err(ApiError::validation("error must say what failed"));
    }
    let retry = if request.retryable {
        Retry::After(Duration::from_secs(
            request.retry_after_s.unwrap_or(30).min(3600),
        ))
    } else {
        Retry::Never
    };
    let state_name =
        match outbox::failed(&state.pool, &execution_id, owner, &request.error, retry).await? {
            FailedOutcome::NotOwner => return Err(lease_lost(&execution_id)),
            FailedOutcome::RetryScheduled => "pending",
            FailedOutcome::DeadLettered => "dead_letter",
        };
    Ok(Json(DeliveryState {
        ok: true,
        execution_id,
        state: state_name,
    }))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(claim, heartbeat, delivered, failed))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/agent/final-deliveries/claim", post(claim))
        .route(
            "/agent/final-deliveries/{execution_id}/heartbeat",
            post(heartbeat),
        )
        .route(
            "/agent/final-deliveries/{execution_id}/delivered",
            post(delivered),
        )
        .route(
            "/agent/final-deliveries/{execution_id}/failed",
            post(failed),
        )
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    routes(Router::new()).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use centaur_http::testing::{apigw_v2_event, create_key, test_state, Caller, TestClient};
    use serde_json::json;
    use sqlx::PgPool;

    /// A finished execution whose outbox row is pending.
    async fn pending(pool: &PgPool, id: &str, platform: &str) {
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id,
                                     request_hash, status, delivery, completed_at, terminal_reason, result_text)
             VALUES ($1, 't1', 1, 'echo', $1, 'h', 'completed', $2, now(), 'completed', 'PONG')",
        )
        .bind(id)
        .bind(json!({"platform": platform}))
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state, payload)
             VALUES ($1, 't1', $2, 'pending', '{\"text\":\"PONG\"}')",
        )
        .bind(id)
        .bind(json!({"platform": platform}))
        .execute(pool)
        .await
        .unwrap();
    }

    async fn agent(pool: &PgPool) -> (TestClient, Caller) {
        let key = create_key(pool, &["agent"]).await;
        (
            TestClient::new(router(test_state(pool.clone()))),
            Caller::Key(key),
        )
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_claimed_delivery_is_leased_to_one_worker_until_it_reports(pool: PgPool) {
        pending(&pool, "exe_00000000000000a1", "webhook").await;
        let (client, caller) = agent(&pool).await;
        let (status, body) = client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w1"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let claimed = &body["deliveries"][0];
        assert_eq!(claimed["execution_id"], "exe_00000000000000a1");
        assert_eq!(claimed["payload"]["text"], "PONG");
        assert_eq!(claimed["reclaimed"], false);
        let (_, second) = client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w2"}),
            )
            .await;
        assert_eq!(
            second["deliveries"],
            json!([]),
            "leased rows are not handed out twice"
        );

        let path = "/agent/final-deliveries/exe_00000000000000a1";
        let (status, body) = client
            .post(
                &format!("{path}/heartbeat"),
                &caller,
                &json!({"worker_id": "w2"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "DELIVERY_LEASE_LOST");
        let (status, _) = client
            .post(
                &format!("{path}/heartbeat"),
                &caller,
                &json!({"worker_id": "w1", "delivered_chunks": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = client
            .post(
                &format!("{path}/delivered"),
                &caller,
                &json!({"worker_id": "w1", "detail": {"ts": "1.0"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT event_kind FROM execution_events WHERE execution_id = 'exe_00000000000000a1'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(kinds, vec!["final_delivery_delivered"]);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_expired_lease_is_reclaimed_by_the_next_worker(pool: PgPool) {
        pending(&pool, "exe_00000000000000a2", "webhook").await;
        let (client, caller) = agent(&pool).await;
        client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w1", "lease_s": 10}),
            )
            .await;
        sqlx::query("UPDATE delivery_outbox SET lease_expires_at = now() - interval '1 second'")
            .execute(&pool)
            .await
            .unwrap();
        let (_, body) = client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w2"}),
            )
            .await;
        assert_eq!(body["deliveries"][0]["reclaimed"], true, "{body}");
        let (status, _) = client
            .post(
                "/agent/final-deliveries/exe_00000000000000a2/delivered",
                &caller,
                &json!({"worker_id": "w1"}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "the old worker lost its lease"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_retryable_failure_reschedules_and_a_permanent_one_dead_letters(pool: PgPool) {
        pending(&pool, "exe_00000000000000a3", "webhook").await;
        let (client, caller) = agent(&pool).await;
        let path = "/agent/final-deliveries/exe_00000000000000a3/failed";
        client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w1"}),
            )
            .await;
        let (status, body) = client
            .post(
                path,
                &caller,
                &json!({"worker_id": "w1", "error": "timeout", "retry_after_s": 0}),
            )
            .await;
        assert_eq!(
            (status, body["state"].clone()),
            (StatusCode::OK, json!("pending"))
        );
        client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w1"}),
            )
            .await;
        let (_, body) = client
            .post(
                path,
                &caller,
                &json!({"worker_id": "w1", "error": "channel_not_found", "retryable": false}),
            )
            .await;
        assert_eq!(body["state"], "dead_letter");
        let row = outbox::state(&pool, "exe_00000000000000a3")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row,
            ("dead_letter".into(), Some("channel_not_found".into()), 2)
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn claims_can_be_limited_to_one_platform(pool: PgPool) {
        pending(&pool, "exe_00000000000000a4", "slack").await;
        pending(&pool, "exe_00000000000000a5", "webhook").await;
        let (client, caller) = agent(&pool).await;
        let (_, body) = client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w1", "platform": "webhook"}),
            )
            .await;
        let ids: Vec<&str> = body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["execution_id"].as_str())
            .collect();
        assert_eq!(ids, vec!["exe_00000000000000a5"]);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn bad_requests_get_clear_4xx_answers(pool: PgPool) {
        let (client, caller) = agent(&pool).await;
        let (status, _) = client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": ""}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = client
            .post(
                "/agent/final-deliveries/claim",
                &caller,
                &json!({"worker_id": "w", "lease_s": 5}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = client
            .post(
                "/agent/final-deliveries/claim",
                &Caller::Anonymous,
                &json!({"worker_id": "w"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = client
            .post(
                "/agent/final-deliveries/x/failed",
                &caller,
                &json!({"worker_id": "w", "error": " "}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_sandbox_token_is_refused_before_its_body_is_looked_at(pool: PgPool) {
        let token = centaur_auth::sandbox_token::mint(
            centaur_http::testing::TEST_SIGNING_KEY,
            "some-thread",
            "sbx-1",
            chrono::Utc::now().timestamp(),
            600,
        );
        let client = TestClient::new(router(test_state(pool)));
        for path in [
            "/agent/final-deliveries/claim",
            "/agent/final-deliveries/exe_1/heartbeat",
            "/agent/final-deliveries/exe_1/delivered",
            "/agent/final-deliveries/exe_1/failed",
        ] {
            let (status, body) = client
                .post(path, &Caller::Key(token.clone()), &json!({"bogus": true}))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
            let (status, _) = client
                .post(path, &Caller::Anonymous, &json!({"bogus": true}))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_claims_deliveries(pool: PgPool) {
        pending(&pool, "exe_00000000000000a6", "webhook").await;
        let (client, caller) = agent(&pool).await;
        let Caller::Key(key) = caller else {
            unreachable!()
        };
        let event = apigw_v2_event(
            "POST",
            "/agent/final-deliveries/claim",
            "",
            &[("x-api-key", &key), ("content-type", "application/json")],
            Some(r#"{"worker_id":"lambda"}"#),
        );
        let (status, body) = client.lambda(&event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["deliveries"][0]["execution_id"],
            "exe_00000000000000a6"
        );
    }
}
