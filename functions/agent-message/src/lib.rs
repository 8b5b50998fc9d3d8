//! `agent-message`: stores messages on a thread (`POST /agent/message`,
//! `POST /agent/messages`) and pages through them (`GET /agent/messages`).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use centaur_auth::Scope;
use centaur_core::api::{
    codes, ErrorBody, MessageBatchRequest, MessageBatchResponse, MessageRequest, MessageResponse,
    NewMessage, Route,
};
use centaur_core::canonical::typed_request_hash;
use centaur_http::{
    require, validate, ApiError, ApiJson, ApiQuery, AppState, Authorized, Principal,
};
use centaur_store::messages::{self, MessageView};
use serde::{Deserialize, Serialize};

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/agent/message",
    },
    Route {
        method: "POST",
        path: "/agent/messages",
    },
    Route {
        method: "GET",
        path: "/agent/messages",
    },
];

/// Roles a message may have.
pub const ROLES: [&str; 3] = centaur_core::api::MESSAGE_ROLES;

/// Validates one submitted message; its idempotency hash is that of the typed message.
pub fn validated(message: &NewMessage) -> Result<messages::NewMessage, ApiError> {
    let invalid = |message: &str| ApiError::BadRequest {
        code: codes::INVALID_MESSAGE,
        message: message.to_owned(),
    };
    if message.parts.is_empty() {
        return Err(invalid("parts must contain at least one part"));
    }
    if message
        .parts
        .iter()
        .any(|part| part.kind == "text" && part.text.is_none())
    {
        return Err(invalid("a part of type 'text' needs a 'text' string"));
    }
    let role = message.role.clone().unwrap_or_else(|| "user".to_owned());
    if !ROLES.contains(&role.as_str()) {
        return Err(ApiError::validation(format!(
            "role must be one of user, assistant, system; got '{role}'"
        )));
    }
    Ok(messages::NewMessage {
        message_id: message
            .message_id
            .clone()
            .filter(|id| !id.trim().is_empty()),
        role,
        parts: message.parts.clone(),
        user_id: message.user_id.clone(),
        metadata: validate::optional_object(message.metadata.as_ref(), "metadata")?,
        request_hash: typed_request_hash(message),
    })
}

/// `POST /agent/message`: stores one message on the thread's active assignment.
#[utoipa::path(
    post,
    path = "/agent/message",
    tag = "agent",
    request_body = MessageRequest,
    responses(
        (status = 200, description = "The message is stored.", body = MessageResponse),
        (status = 409, description = "`NO_ACTIVE_ASSIGNMENT`, `ASSIGNMENT_GENERATION_STALE`, `IDEMPOTENCY_PAYLOAD_MISMATCH` (the same `message_id` with another payload).", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn post_one(
    State(state): State<AppState>,
    principal: Authorized<require::AgentExecute>,
    ApiJson(request): ApiJson<MessageRequest>,
) -> Result<Json<MessageResponse>, ApiError> {
    principal.require_thread(request.thread_key.as_str())?;
    let message = validated(&request.message)?;
    let mut responses = messages::post(
        &state.pool,
        request.thread_key.as_str(),
        request.assignment_generation,
        &[message],
        &principal.actor(),
    )
    .await?;
    let response = responses
        .pop()
        .ok_or_else(|| ApiError::Internal("the store answered no message".into()))?;
    Ok(Json(response))
}

/// `POST /agent/messages`: stores several messages, all or nothing.
#[utoipa::path(
    post,
    path = "/agent/messages",
    tag = "agent",
    request_body = MessageBatchRequest,
    responses(
        (status = 200, description = "Every message is stored.", body = MessageBatchResponse),
        (status = 409, description = "`NO_ACTIVE_ASSIGNMENT`, `ASSIGNMENT_GENERATION_STALE`, `IDEMPOTENCY_PAYLOAD_MISMATCH`.", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn post_batch(
    State(state): State<AppState>,
    principal: Authorized<require::AgentExecute>,
    ApiJson(request): ApiJson<MessageBatchRequest>,
) -> Result<Json<MessageBatchResponse>, ApiError> {
    let thread_key = &request.thread_key;
    principal.require_thread(thread_key.as_str())?;
    if request.messages.is_empty() {
        return Err(ApiError::BadRequest {
            code: codes::INVALID_MESSAGE,
            message: "messages must not be empty".into(),
        });
    }
    let batch = request
        .messages
        .iter()
        .map(validated)
        .collect::<Result<Vec<_>, _>>()?;
    let responses = messages::post(
        &state.pool,
        thread_key.as_str(),
        request.assignment_generation,
        &batch,
        &principal.actor(),
    )
    .await?;
    let message_ids: Vec<String> = responses
        .into_iter()
        .map(|response| response.message_id)
        .collect();
    Ok(Json(MessageBatchResponse {
        ok: true,
        inserted: message_ids.len(),
        message_ids,
    }))
}

/// The query of `GET /agent/messages`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The thread to read.
    #[param(value_type = centaur_core::ThreadKey)]
    thread_key: String,
    /// Messages after this `next_cursor` of an earlier page (default: from the start).
    cursor: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A page of a thread's messages, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    pub thread_key: String,
    pub messages: Vec<MessageView>,
    /// The cursor of the next page; none when this page is the last.
    pub next_cursor: Option<i64>,
}

/// `GET /agent/messages`: a page of the thread's messages.
#[utoipa::path(
    get,
    path = "/agent/messages",
    tag = "agent",
    params(ListQuery),
    responses((status = 200, description = "A page of messages.", body = MessagePage)),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    principal.require(Scope::AgentStatus)?;
    let thread_key = validate::thread_key(&query.thread_key)?;
    principal.require_thread(thread_key.as_str())?;
    let limit = validate::limit(query.limit, 50, 200)?;
    let page = messages::page(
        &state.pool,
        thread_key.as_str(),
        query.cursor.unwrap_or(0),
        limit,
    )
    .await?;
    let next_cursor = (page.len() as i64 == limit)
        .then(|| page.last().map(|m| m.seq))
        .flatten();
    Ok(Json(MessagePage {
        thread_key: thread_key.to_string(),
        messages: page,
        next_cursor,
    }))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(post_one, post_batch, list))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/agent/message", post(post_one))
        .route("/agent/messages", post(post_batch).get(list))
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
    use serde_json::{json, Value};
    use sqlx::PgPool;

    async fn spawned(pool: &PgPool, thread: &str) {
        centaur_http::testing::spawn_echo_thread(pool, thread).await;
    }

    fn text(thread: &str, generation: i64, text: &str) -> Value {
        json!({"thread_key": thread, "assignment_generation": generation, "parts": [{"type": "text", "text": text}]})
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_message_is_stored_with_its_event(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let (status, body) = client
            .post(
                "/agent/message",
                &Caller::LocalOperator,
                &text("t1", 1, "hello"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["message_id"].as_str().unwrap().starts_with("msg_"));
        let kind: String =
            sqlx::query_scalar("SELECT event_kind FROM execution_events WHERE event_id = $1")
                .bind(body["stored_event_id"].as_i64().unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(kind, "message");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_message_without_an_assignment_is_a_409(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .post(
                "/agent/message",
                &Caller::LocalOperator,
                &text("nobody", 1, "x"),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "NO_ACTIVE_ASSIGNMENT");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_stale_generation_is_refused_with_409(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .post(
                "/agent/message",
                &Caller::LocalOperator,
                &text("t1", 7, "x"),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "ASSIGNMENT_GENERATION_STALE");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn empty_parts_are_an_invalid_message(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let body = json!({"thread_key": "t1", "assignment_generation": 1, "parts": []});
        let (status, body) = client
            .post("/agent/message", &Caller::LocalOperator, &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "INVALID_MESSAGE");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_message_id_replays_and_a_changed_payload_conflicts(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let mut message = text("t1", 1, "hello");
        message["message_id"] = json!("slack:T:C:1");
        let (_, first) = client
            .post("/agent/message", &Caller::LocalOperator, &message)
            .await;
        let (status, again) = client
            .post("/agent/message", &Caller::LocalOperator, &message)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["idempotent"], true);
        assert_eq!(again["stored_event_id"], first["stored_event_id"]);
        message["parts"][0]["text"] = json!("changed");
        let (status, body) = client
            .post("/agent/message", &Caller::LocalOperator, &message)
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "IDEMPOTENCY_PAYLOAD_MISMATCH");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_batch_is_stored_and_listed_in_order_with_a_cursor(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let batch = json!({"thread_key": "t1", "assignment_generation": 1, "messages": [
            {"parts": [{"type": "text", "text": "one"}]},
            {"parts": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "parts": [{"type": "text", "text": "three"}]}
        ]});
        let (status, body) = client
            .post("/agent/messages", &Caller::LocalOperator, &batch)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["inserted"], 3);
        let (status, page) = client
            .get(
                "/agent/messages?thread_key=t1&limit=2",
                &Caller::LocalOperator,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["messages"][0]["parts"][0]["text"], "one");
        let cursor = page["next_cursor"].as_i64().unwrap();
        let (_, rest) = client
            .get(
                &format!("/agent/messages?thread_key=t1&cursor={cursor}"),
                &Caller::LocalOperator,
            )
            .await;
        assert_eq!(rest["messages"][0]["parts"][0]["text"], "three");
        assert_eq!(rest["next_cursor"], Value::Null);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn listing_without_a_thread_key_is_a_422(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let (status, _) = client.get("/agent/messages", &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_body_over_one_mebibyte_is_a_413(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let huge = text("t1", 1, &"x".repeat(1024 * 1024 + 10));
        let (status, body) = client
            .post("/agent/message", &Caller::LocalOperator, &huge)
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_with_a_key_stores_a_message(pool: PgPool) {
        spawned(&pool, "t1").await;
        let key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let body = text("t1", 1, "via lambda").to_string();
        let event = apigw_v2_event(
            "POST",
            "/agent/message",
            "",
            &[("x-api-key", &key)],
            Some(&body),
        );
        let (status, response) = client.lambda(&event).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        assert_eq!(response["ok"], true);
    }
}
