//! `agent-executions`: one execution with its event trail, cancel, and a thread's
//! executions newest first.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use centaur_auth::Scope;
use centaur_core::api::{CancelResponse, ErrorBody, ExecutionList, ExecutionView, Route};
use centaur_core::{ExecutionId, ExecutionStatus};
use centaur_http::{validate, ApiError, ApiPath, ApiQuery, AppState, Peer, Principal};
use centaur_store::executions::{self, CancelOutcome};
use serde::Deserialize;

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/agent/executions/{execution_id}",
    },
    Route {
        method: "POST",
        path: "/agent/executions/{execution_id}/cancel",
    },
    Route {
        method: "GET",
        path: "/agent/threads/{thread_key}/executions",
    },
];

fn not_found(execution_id: &str) -> ApiError {
    ApiError::NotFound(format!("execution '{execution_id}' not found"))
}

/// The execution's thread, checking that it exists and that the caller may see it.
async fn authorised_thread(
    state: &AppState,
    principal: &Principal,
    execution_id: &str,
) -> Result<String, ApiError> {
    if ExecutionId::parse(execution_id).is_none() {
        return Err(not_found(execution_id));
    }
    let thread_key = executions::thread_of(&state.pool, execution_id)
        .await?
        .ok_or_else(|| not_found(execution_id))?;
    principal.require_thread(&thread_key)?;
    Ok(thread_key)
}

/// The query of `GET /agent/executions/{execution_id}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct GetQuery {
    /// Include the execution's events (default true).
    events: Option<bool>,
}

/// `GET /agent/executions/{execution_id}`: one execution with its events.
#[utoipa::path(
    get,
    path = "/agent/executions/{execution_id}",
    tag = "agent",
    params(
        ("execution_id" = centaur_core::ExecutionId, Path, description = "The execution (`exe_` + 16 hex)."),
        GetQuery,
    ),
    responses(
        (status = 200, description = "The execution.", body = ExecutionView),
        (status = 404, description = "`NOT_FOUND`: no such execution.", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn get_execution(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(execution_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<GetQuery>,
) -> Result<Json<ExecutionView>, ApiError> {
    principal.require(Scope::AgentStatus)?;
    authorised_thread(&state, &principal, &execution_id).await?;
    let view = executions::get(&state.pool, &execution_id, query.events.unwrap_or(true))
        .await?
        .ok_or_else(|| not_found(&execution_id))?;
    Ok(Json(view))
}

/// `POST /agent/executions/{execution_id}/cancel`: cancel at once if queued, ask the
/// dispatcher to stop it if running, nothing if it already ended.
#[utoipa::path(
    post,
    path = "/agent/executions/{execution_id}/cancel",
    tag = "agent",
    params(("execution_id" = centaur_core::ExecutionId, Path, description = "The execution (`exe_` + 16 hex).")),
    responses(
        (status = 200, description = "What the cancel did.", body = CancelResponse),
        (status = 404, description = "`NOT_FOUND`: no such execution.", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    peer: Peer,
    ApiPath(execution_id): ApiPath<String>,
) -> Result<Json<CancelResponse>, ApiError> {
    principal.require(Scope::AgentStop)?;
    authorised_thread(&state, &principal, &execution_id).await?;
    let actor = principal.actor(&peer);
    let (status, idempotent) = match executions::cancel(&state.pool, &execution_id, &actor).await? {
        CancelOutcome::Cancelled => (ExecutionStatus::Cancelled, false),
        CancelOutcome::Requested => (ExecutionStatus::CancelRequested, false),
        CancelOutcome::Unchanged(status) => (status, true),
        CancelOutcome::NotFound => return Err(not_found(&execution_id)),
    };
    Ok(Json(CancelResponse {
        ok: true,
        execution_id,
        status,
        idempotent,
    }))
}

/// The query of `GET /agent/threads/{thread_key}/executions`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// How many, newest first: 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// `GET /agent/threads/{thread_key}/executions`: the thread's executions, newest first.
#[utoipa::path(
    get,
    path = "/agent/threads/{thread_key}/executions",
    tag = "agent",
    params(
        ("thread_key" = centaur_core::ThreadKey, Path, description = "The thread."),
        ListQuery,
    ),
    responses((status = 200, description = "The thread's executions, newest first.", body = ExecutionList)),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn list_for_thread(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(thread_key): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ExecutionList>, ApiError> {
    principal.require(Scope::AgentStatus)?;
    let thread_key = validate::thread_key(&thread_key)?;
    principal.require_thread(thread_key.as_str())?;
    let limit = validate::limit(query.limit, 20, 100)?;
    let executions = executions::list_for_thread(&state.pool, thread_key.as_str(), limit).await?;
    Ok(Json(ExecutionList {
        thread_key: thread_key.to_string(),
        executions,
    }))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_execution, cancel, list_for_thread))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/agent/executions/{execution_id}", get(get_execution))
        .route("/agent/executions/{execution_id}/cancel", post(cancel))
        .route(
            "/agent/threads/{thread_key}/executions",
            get(list_for_thread),
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
    use centaur_store::executions::NewExecution;
    use serde_json::json;
    use sqlx::PgPool;

    async fn queued(pool: &PgPool, thread: &str) -> String {
        centaur_http::testing::spawn_echo_thread(pool, thread).await;
        let request = NewExecution {
            thread_key: thread.into(),
            assignment_generation: Some(1),
            execute_id: None,
            delivery: centaur_core::api::Delivery::dev(),
            metadata: json!({}),
            request_hash: "h".into(),
            first_message: Some(centaur_store::messages::NewMessage::user_text(
                "hello",
                "h".into(),
            )),
            harness: None,
            actor: centaur_store::audit::Actor::local_operator(None),
        };
        let (response, _) = executions::create(pool, &request, centaur_core::Harness::Codex)
            .await
            .unwrap();
        response.execution_id
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_execution_is_returned_with_its_events(pool: PgPool) {
        let id = queued(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .get(&format!("/agent/executions/{id}"), &Caller::LocalOperator)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "queued");
        assert_eq!(body["harness"], "echo");
        assert_eq!(body["events"][0]["event_kind"], "execution_state");
        let (_, without) = client
            .get(
                &format!("/agent/executions/{id}?events=false"),
                &Caller::LocalOperator,
            )
            .await;
        assert!(without.get("events").is_none());
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_execution_shows_the_usage_its_harness_reported(pool: PgPool) {
        let id = queued(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let path = format!("/agent/executions/{id}?events=false");
        let (_, body) = client.get(&path, &Caller::LocalOperator).await;
        assert_eq!(
            body["usage"],
            json!({"input_tokens": 0, "output_tokens": 0}),
            "zero before any report: {body}"
        );
        // Per-turn reports, stored as the dispatcher stores harness output.
        let reports = [
            json!({"execution_id": id, "seq": 1, "type": "assistant.message", "text": "hi"}),
            json!({"execution_id": id, "seq": 2, "type": "usage", "input_tokens": 1200, "output_tokens": 340}),
            json!({"execution_id": id, "seq": 3, "type": "usage", "input_tokens": 800, "output_tokens": 60}),
        ];
        centaur_store::events::append_batch(&pool, "t1", &id, "harness_event", &reports)
            .await
            .unwrap();
        let (status, body) = client.get(&path, &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["usage"],
            json!({"input_tokens": 2000, "output_tokens": 400})
        );
        let (_, listed) = client
            .get("/agent/threads/t1/executions", &Caller::LocalOperator)
            .await;
        assert_eq!(listed["executions"][0]["usage"]["input_tokens"], 2000);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn unknown_and_malformed_execution_ids_are_404(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        for id in ["exe_0123456789abcdef", "not-an-id"] {
            let (status, body) = client
                .get(&format!("/agent/executions/{id}"), &Caller::LocalOperator)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
            assert_eq!(body["code"], "NOT_FOUND");
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn cancelling_a_queued_execution_ends_it_at_once_and_again_is_idempotent(pool: PgPool) {
        let id = queued(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let path = format!("/agent/executions/{id}/cancel");
        let (status, body) = client.post(&path, &Caller::LocalOperator, &json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "cancelled");
        let (_, again) = client.post(&path, &Caller::LocalOperator, &json!({})).await;
        assert_eq!(again["idempotent"], true);
        let (_, view) = client
            .get(&format!("/agent/executions/{id}"), &Caller::LocalOperator)
            .await;
        assert_eq!(view["terminal_reason"], "cancelled");
        assert!(view["completed_at"].is_string());
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn cancelling_a_running_execution_requests_it(pool: PgPool) {
        let id = queued(&pool, "t1").await;
        sqlx::query("UPDATE executions SET status = 'running', worker_id = 'w', lease_expires_at = now() + interval '1 minute' WHERE execution_id = $1")
            .bind(&id).execute(&pool).await.unwrap();
        let client = TestClient::new(router(test_state(pool.clone())));
        let (status, body) = client
            .post(
                &format!("/agent/executions/{id}/cancel"),
                &Caller::LocalOperator,
                &json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "cancel_requested");
        let (row_status, completed): (String, bool) = sqlx::query_as(
            "SELECT status, completed_at IS NOT NULL FROM executions WHERE execution_id = $1",
        )
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            row_status, "cancel_requested",
            "the row records the request"
        );
        assert!(
            !completed,
            "the dispatcher, not the API, ends a running turn"
        );
        let recorded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM execution_events WHERE execution_id = $1
               AND event_kind = 'execution_state' AND event_json->>'status' = 'cancel_requested'",
        )
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(recorded, 1, "the request is on the event trail");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_thread_lists_its_executions_newest_first_within_the_limit(pool: PgPool) {
        let first = queued(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let request = NewExecution {
            thread_key: "t1".into(),
            assignment_generation: Some(1),
            execute_id: None,
            delivery: centaur_core::api::Delivery::dev(),
            metadata: json!({}),
            request_hash: "h2".into(),
            first_message: Some(centaur_store::messages::NewMessage::user_text(
                "hello",
                "h".into(),
            )),
            harness: None,
            actor: centaur_store::audit::Actor::local_operator(None),
        };
        let (second, _) = executions::create(&pool, &request, centaur_core::Harness::Codex)
            .await
            .unwrap();
        let (status, body) = client
            .get(
                "/agent/threads/t1/executions?limit=1",
                &Caller::LocalOperator,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["executions"].as_array().unwrap().len(), 1);
        assert_eq!(
            body["executions"][0]["execution_id"],
            json!(second.execution_id)
        );
        assert_ne!(body["executions"][0]["execution_id"], json!(first));
        let (status, _) = client
            .get(
                "/agent/threads/t1/executions?limit=101",
                &Caller::LocalOperator,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_revoked_key_is_refused_on_the_next_request(pool: PgPool) {
        let id = queued(&pool, "t1").await;
        let key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let path = format!("/agent/executions/{id}");
        let (status, _) = client.get(&path, &Caller::Key(key.clone())).await;
        assert_eq!(status, StatusCode::OK);
        sqlx::query("UPDATE api_keys SET revoked_at = now()")
            .execute(&pool)
            .await
            .unwrap();
        let (status, body) = client.get(&path, &Caller::Key(key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["detail"], "Invalid API key");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_reads_an_execution(pool: PgPool) {
        let id = queued(&pool, "t1").await;
        let key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let event = apigw_v2_event(
            "GET",
            &format!("/agent/executions/{id}"),
            "events=false",
            &[("x-api-key", &key)],
            None,
        );
        let (status, body) = client.lambda(&event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["execution_id"], json!(id));
        assert!(body.get("events").is_none());
    }
}
