//! `agent-spawn`: `POST /agent/spawn` attaches to a thread's active assignment or creates
//! the next generation for a harness.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use centaur_auth::Scope;
use centaur_core::api::{Route, SpawnRequest};
use centaur_core::canonical::request_hash;
use centaur_http::{validate, ApiError, ApiJson, AppState, Principal};
use centaur_store::assignments;
use serde_json::Value;

/// The routes this function serves.
pub const ROUTES: &[Route] = &[Route {
    method: "POST",
    path: "/agent/spawn",
}];

async fn spawn(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::AgentExecute)?;
    let request: SpawnRequest = validate::typed(&body)?;
    let thread_key = validate::thread_key(&request.thread_key)?;
    principal.require_thread(thread_key.as_str())?;
    let harness = request
        .harness
        .as_deref()
        .map(validate::harness)
        .transpose()?;
    let response = assignments::spawn(
        &state.pool,
        thread_key.as_str(),
        request.spawn_id.as_deref(),
        harness.map(|h| h.as_str()),
        state.config.sandbox.default_harness.as_str(),
        &request_hash(&body),
    )
    .await?;
    Ok(Json(response))
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/agent/spawn", post(spawn))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use centaur_http::testing::{apigw_v2_event, create_key, test_state, Caller, TestClient};
    use serde_json::json;
    use sqlx::PgPool;

    fn client(pool: PgPool) -> TestClient {
        TestClient::new(router(test_state(pool)))
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_first_spawn_creates_generation_one_with_the_default_harness(pool: PgPool) {
        let (status, body) = client(pool)
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["assignment_generation"], 1);
        assert_eq!(body["harness"], "codex");
        assert_eq!(body["assignment_state"], "assigned_idle");
        assert_eq!(body["prompt_ref"], "prompts/codex/v1");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn spawning_again_without_a_harness_attaches_to_the_active_assignment(pool: PgPool) {
        let client = client(pool);
        client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "harness": "claude"}),
            )
            .await;
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["assignment_generation"], 1);
        assert_eq!(body["harness"], "claude-code");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_different_harness_than_the_active_one_is_a_409(pool: PgPool) {
        let client = client(pool);
        client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1"}),
            )
            .await;
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "harness": "amp"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "ACTIVE_ASSIGNMENT_PROMPT_MISMATCH");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_unknown_harness_is_a_422(pool: PgPool) {
        let (status, body) = client(pool)
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "harness": "gpt"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["code"], "UNKNOWN_HARNESS");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_missing_thread_key_is_a_422_naming_the_field(pool: PgPool) {
        let (status, body) = client(pool)
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"harness": "echo"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body["message"].as_str().unwrap().contains("thread_key"),
            "{body}"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_same_spawn_id_replays_and_a_different_payload_conflicts(pool: PgPool) {
        let client = client(pool);
        let request = json!({"thread_key": "t1", "spawn_id": "s1", "harness": "echo"});
        let (_, first) = client
            .post("/agent/spawn", &Caller::LocalOperator, &request)
            .await;
        let (status, again) = client
            .post("/agent/spawn", &Caller::LocalOperator, &request)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["idempotent"], true);
        assert_eq!(
            again["assignment_generation"],
            first["assignment_generation"]
        );
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "spawn_id": "s1", "harness": "codex"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "IDEMPOTENCY_PAYLOAD_MISMATCH");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn requests_without_a_key_from_a_remote_peer_are_401(pool: PgPool) {
        let (status, body) = client(pool)
            .post(
                "/agent/spawn",
                &Caller::Anonymous,
                &json!({"thread_key": "t1"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["detail"], "Missing API key");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_admin_only_key_is_refused_with_403(pool: PgPool) {
        let key = create_key(&pool, &["admin"]).await;
        let (status, body) = client(pool)
            .post(
                "/agent/spawn",
                &Caller::Key(key),
                &json!({"thread_key": "t1"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body["detail"],
            "API key scope does not permit 'agent:execute'"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_api_gateway_event_is_served_and_is_never_the_local_operator(pool: PgPool) {
        let key = create_key(&pool, &["agent"]).await;
        let client = client(pool);
        let body = r#"{"thread_key":"lambda-thread"}"#;
        let anonymous = apigw_v2_event("POST", "/agent/spawn", "", &[], Some(body));
        let (status, _) = client.lambda(&anonymous).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let with_key = apigw_v2_event(
            "POST",
            "/agent/spawn",
            "",
            &[("x-api-key", &key)],
            Some(body),
        );
        let (status, body) = client.lambda(&with_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["thread_key"], "lambda-thread");
    }
}
