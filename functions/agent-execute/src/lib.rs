//! `agent-execute`: `POST /agent/execute` accepts a turn. The execution row, its `queued`
//! event and its outbox row are committed in one transaction before the 202; the queue
//! message is sent after (a lost send is repaired by the dispatcher's sweep).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use centaur_core::api::{Delivery, ErrorBody, ExecuteRequest, ExecuteResponse, Route};
use centaur_core::canonical::typed_request_hash;
use centaur_http::{require, turn, validate, ApiError, ApiJson, AppState, Authorized};
use centaur_store::executions::NewExecution;
use centaur_store::messages::NewMessage;

/// The routes this function serves.
pub const ROUTES: &[Route] = &[Route {
    method: "POST",
    path: "/agent/execute",
}];

/// Slack fields copied from the request into a default Slack delivery.
const SLACK_FIELDS: [&str; 4] = ["channel", "thread_ts", "team_id", "user_id"];

/// The delivery of an execution: the request's own, `dev` for the one-call path, else
/// Slack with the channel fields found in the request's metadata.
fn delivery(request: &ExecuteRequest, one_call: bool) -> Delivery {
    if let Some(delivery) = &request.delivery {
        return delivery.clone();
    }
    if one_call {
        return Delivery::dev();
    }
    let mut slack = Delivery::new(Delivery::SLACK);
    for field in SLACK_FIELDS {
        if let Some(value) = request
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.get(field))
        {
            slack = slack.with(field, value.clone());
        }
    }
    slack
}

/// `POST /agent/execute`: accepts a turn (202); on the one-call path (no
/// `assignment_generation`, a `message`) also spawns and stores the message.
#[utoipa::path(
    post,
    path = "/agent/execute",
    tag = "agent",
    request_body = ExecuteRequest,
    responses(
        (status = 202, description = "The execution is stored and queued (or, with `idempotent: true`, the stored answer of an earlier identical request).", body = ExecuteResponse),
        (status = 409, description = "`NO_ACTIVE_ASSIGNMENT`, `ASSIGNMENT_GENERATION_STALE`, `ACTIVE_ASSIGNMENT_PROMPT_MISMATCH`, `IDEMPOTENCY_PAYLOAD_MISMATCH`, `THREAD_FAILURE_LOOP`, `NO_PENDING_MESSAGES`.", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn execute(
    State(state): State<AppState>,
    principal: Authorized<require::AgentExecute>,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<(StatusCode, Json<ExecuteResponse>), ApiError> {
    let thread_key = &request.thread_key;
    principal.require_thread(thread_key.as_str())?;
    let hash = typed_request_hash(&request);
    let first_message = match (&request.assignment_generation, &request.message) {
        (None, Some(text)) if text.trim().is_empty() => {
            return Err(ApiError::validation("message must not be empty"));
        }
        (None, Some(text)) => Some(NewMessage::user_text(text, hash.clone())),
        _ => None,
    };
    let new = NewExecution {
        thread_key: thread_key.to_string(),
        assignment_generation: request.assignment_generation,
        execute_id: request
            .execute_id
            .clone()
            .filter(|id| !id.trim().is_empty()),
        delivery: delivery(&request, first_message.is_some()),
        metadata: validate::optional_object(request.metadata.as_ref(), "metadata")?,
        request_hash: hash,
        first_message,
        harness: request.harness,
        actor: principal.actor(),
    };
    let workspace = validate::workspace(
        &state.config.workspace,
        request.repo.as_deref(),
        request.agents_md_override.as_deref(),
    )?;
    let (response, _created) = turn::execute(&state, &new, &workspace).await?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(execute))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/agent/execute", post(execute))
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

    #[tokio::test]
    async fn an_execute_answers_503_promptly_while_the_database_hangs() {
        let (url, _peer) = centaur_http::testing::unresponsive_database().await;
        let pool = centaur_store::pool_options(2).connect_lazy(&url).unwrap();
        let client = TestClient::new(router(test_state(pool)));
        let started = std::time::Instant::now();
        let (status, body) = client
            .post(
                "/agent/execute",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "message": "hi"}),
            )
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "UNAVAILABLE");
        // The pool's acquire timeout bounds the wait (it was 10 s).
        assert!(
            started.elapsed() < centaur_store::migrate::ACQUIRE_TIMEOUT * 3,
            "took {:?}",
            started.elapsed()
        );
    }

    async fn spawned(pool: &PgPool, thread: &str) {
        centaur_http::testing::spawn_echo_thread(pool, thread).await;
        posted(pool, thread, "hello").await;
    }

    async fn posted(pool: &PgPool, thread: &str, text: &str) {
        let message = NewMessage::user_text(text, format!("hash-{text}"));
        let operator = centaur_store::audit::Actor::local_operator(None);
        centaur_store::messages::post(pool, thread, 1, &[message], &operator)
            .await
            .unwrap();
    }

    async fn texts_bound_to(pool: &PgPool, execution_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT parts->0->>'text' FROM messages WHERE delivered_execution_id = $1 ORDER BY seq",
        )
        .bind(execution_id)
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn two_queued_executes_are_two_turns_each_with_its_own_messages(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let execute = |key: &str| {
            let mut body = execute_body("t1", 1);
            body["execute_id"] = json!(key);
            body
        };
        let (_, first) = client
            .post("/agent/execute", &Caller::LocalOperator, &execute("one"))
            .await;
        posted(&pool, "t1", "second question").await;
        let (status, second) = client
            .post("/agent/execute", &Caller::LocalOperator, &execute("two"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{second}");
        let first_id = first["execution_id"].as_str().unwrap();
        let second_id = second["execution_id"].as_str().unwrap();
        assert_eq!(texts_bound_to(&pool, first_id).await, ["hello"]);
        assert_eq!(texts_bound_to(&pool, second_id).await, ["second question"]);

        let (status, body) = client
            .post("/agent/execute", &Caller::LocalOperator, &execute("three"))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "NO_PENDING_MESSAGES");
        let (status, replay) = client
            .post("/agent/execute", &Caller::LocalOperator, &execute("two"))
            .await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "an idempotent replay still answers"
        );
        assert_eq!(replay["execution_id"], second["execution_id"]);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn executes_sent_at_once_are_written_together_and_each_turn_carries_its_own_message(
        pool: PgPool,
    ) {
        let client = std::sync::Arc::new(TestClient::new(router(test_state(pool.clone()))));
        let sends = (0..40).map(|i| {
            let client = client.clone();
            async move {
                let body = json!({"thread_key": format!("t{}", i % 8), "message": format!("m{i}")});
                client
                    .post("/agent/execute", &Caller::LocalOperator, &body)
                    .await
            }
        });
        for (status, body) in futures::future::join_all(sends).await {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        let carried: Vec<(String, i64)> = sqlx::query_as(
            "SELECT x.thread_key, count(m.id) FROM executions x
             LEFT JOIN messages m ON m.delivered_execution_id = x.execution_id
             GROUP BY x.execution_id, x.thread_key",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(carried.len(), 40);
        assert!(
            carried.iter().all(|(_, messages)| *messages == 1),
            "{carried:?}"
        );
        let transactions: i64 =
            sqlx::query_scalar("SELECT count(DISTINCT created_at) FROM executions")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(
            transactions < 40,
            "executes that arrived together shared transactions ({transactions} for 40)"
        );
    }

    fn execute_body(thread: &str, generation: i64) -> Value {
        json!({"thread_key": thread, "assignment_generation": generation, "delivery": {"platform": "dev"}})
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_accepted_execution_is_durable_and_queued_before_the_202(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let (status, body) = client
            .post(
                "/agent/execute",
                &Caller::LocalOperator,
                &execute_body("t1", 1),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "queued");
        let id = body["execution_id"].as_str().unwrap();
        assert!(centaur_core::ExecutionId::parse(id).is_some(), "{id}");
        let (status,): (String,) =
            sqlx::query_as("SELECT status FROM executions WHERE execution_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(status, "queued");
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM execution_events WHERE execution_id = $1 AND event_kind = 'execution_state'")
            .bind(id).fetch_one(&pool).await.unwrap();
        assert_eq!(events, 1);
        let queued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM queue_messages WHERE execution_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(queued, 1);
        let outbox: i64 =
            sqlx::query_scalar("SELECT count(*) FROM delivery_outbox WHERE execution_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(outbox, 0, "dev delivery has no outbox row");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_slack_delivery_gets_an_outbox_row_awaiting_the_end(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let body = json!({"thread_key": "t1", "assignment_generation": 1, "metadata": {"channel": "C1", "thread_ts": "1.2"}});
        let (status, body) = client
            .post("/agent/execute", &Caller::LocalOperator, &body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (state, delivery): (String, Value) =
            sqlx::query_as("SELECT state, delivery FROM delivery_outbox WHERE execution_id = $1")
                .bind(body["execution_id"].as_str().unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(state, "awaiting_terminal");
        assert_eq!(
            delivery,
            json!({"platform": "slack", "channel": "C1", "thread_ts": "1.2"})
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_one_call_path_spawns_messages_and_executes(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool.clone())));
        let body = json!({"thread_key": "fresh", "message": "hello", "harness": "echo"});
        let (status, body) = client
            .post("/agent/execute", &Caller::LocalOperator, &body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["assignment_generation"], 1);
        let messages: i64 =
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE thread_key = 'fresh'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(messages, 1);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_one_call_path_applies_the_default_repo_and_the_allowlist(pool: PgPool) {
        let mut config = centaur_http::testing::test_config();
        config.workspace.default_repo = Some(centaur_core::RepoRef::parse("acme/api").unwrap());
        config.workspace.repos_allowed = centaur_core::RepoAllowlist::parse("acme/*").unwrap();
        let client = TestClient::new(router(AppState::new(pool.clone(), config)));
        for (thread, repo) in [("t1", None), ("t2", Some("acme/web"))] {
            let mut body = json!({"thread_key": thread, "message": "hello", "harness": "echo"});
            if let Some(repo) = repo {
                body["repo"] = json!(repo);
            }
            let (status, body) = client
                .post("/agent/execute", &Caller::LocalOperator, &body)
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        let repos: Vec<Option<String>> =
            sqlx::query_scalar("SELECT repo FROM runtime_assignments ORDER BY thread_key")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            repos,
            vec![Some("acme/api".into()), Some("acme/web".into())]
        );
        let (status, body) = client
            .post(
                "/agent/execute",
                &Caller::LocalOperator,
                &json!({"thread_key": "t3", "message": "hello", "repo": "evil/api"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "REPO_NOT_ALLOWED");
        let executions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM executions WHERE thread_key = 't3'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(executions, 0);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn execute_without_an_assignment_is_a_409(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .post(
                "/agent/execute",
                &Caller::LocalOperator,
                &execute_body("none", 1),
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
                "/agent/execute",
                &Caller::LocalOperator,
                &execute_body("t1", 2),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "ASSIGNMENT_GENERATION_STALE");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_same_execute_id_replays_once_and_a_different_payload_conflicts(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        let mut body = execute_body("t1", 1);
        body["execute_id"] = json!("slack:T:C:1");
        let (_, first) = client
            .post("/agent/execute", &Caller::LocalOperator, &body)
            .await;
        let (status, again) = client
            .post("/agent/execute", &Caller::LocalOperator, &body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(again["idempotent"], true);
        assert_eq!(again["execution_id"], first["execution_id"]);
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 1);
        body["metadata"] = json!({"changed": true});
        let (status, conflict) = client
            .post("/agent/execute", &Caller::LocalOperator, &body)
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(conflict["code"], "IDEMPOTENCY_PAYLOAD_MISMATCH");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn three_recent_failures_trip_the_failure_loop_guard(pool: PgPool) {
        spawned(&pool, "t1").await;
        for index in 0..3 {
            sqlx::query(
                "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id, request_hash,
                     status, delivery, completed_at, terminal_reason, error_text)
                 VALUES ($1, 't1', 1, 'echo', $1, 'h', 'failed_permanent', '{}', now(), 'harness_error', 'boom')",
            )
            .bind(format!("exe_00000000000000{index:02}"))
            .execute(&pool)
            .await
            .unwrap();
        }
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .post(
                "/agent/execute",
                &Caller::LocalOperator,
                &execute_body("t1", 1),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "THREAD_FAILURE_LOOP");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_delivery_without_a_string_platform_is_a_422_naming_platform(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool.clone())));
        for delivery in [json!({"channel": "C1"}), json!({"platform": 5})] {
            let body =
                json!({"thread_key": "t1", "assignment_generation": 1, "delivery": delivery});
            let (status, answer) = client
                .post("/agent/execute", &Caller::LocalOperator, &body)
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("platform")
                    || answer["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("string"),
                "{answer}"
            );
        }
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(stored, 0, "nothing is stored for a refused delivery");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_non_object_delivery_is_a_422(pool: PgPool) {
        spawned(&pool, "t1").await;
        let client = TestClient::new(router(test_state(pool)));
        let body = json!({"thread_key": "t1", "assignment_generation": 1, "delivery": "slack"});
        let (status, _) = client
            .post("/agent/execute", &Caller::LocalOperator, &body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_sandbox_token_for_another_thread_is_403(pool: PgPool) {
        spawned(&pool, "t1").await;
        let token = centaur_auth::sandbox_token::mint(
            centaur_http::testing::TEST_SIGNING_KEY,
            "other-thread",
            "sbx-1",
            chrono_now(),
            600,
        );
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .post(
                "/agent/execute",
                &Caller::Key(token),
                &execute_body("t1", 1),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body["detail"],
            "Sandbox token is scoped to a different thread"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn each_new_execution_is_audited_with_its_principal_and_a_replay_is_not(pool: PgPool) {
        let key = create_key(&pool, &["agent"]).await;
        let key_id: String = sqlx::query_scalar("SELECT id::text FROM api_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        let token = centaur_auth::sandbox_token::mint(
            centaur_http::testing::TEST_SIGNING_KEY,
            "t2",
            "sbx-7",
            chrono_now(),
            600,
        );
        let client = TestClient::new(router(test_state(pool.clone())));
        let one_call = json!({"thread_key": "t1", "message": "hi", "execute_id": "e1"});
        for _ in 0..2 {
            let (status, body) = client
                .post("/agent/execute", &Caller::Key(key.clone()), &one_call)
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        let (status, body) = client
            .post(
                "/agent/execute",
                &Caller::Key(token),
                &json!({"thread_key": "t2", "message": "from the sandbox"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT a.action, a.principal_kind, a.principal_id, a.principal_name, a.thread_key,
                    a.execution_id
             FROM audit_log a JOIN executions x ON x.execution_id = a.execution_id
             WHERE a.action = 'execute' ORDER BY a.id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let row = |kind: &str, id: &str, name: &str, thread: &str| {
            let execution: String = rows
                .iter()
                .find(|r| r.4 == thread)
                .map(|r| r.5.clone())
                .unwrap_or_default();
            (
                "execute".to_owned(),
                kind.to_owned(),
                id.to_owned(),
                name.to_owned(),
                thread.to_owned(),
                execution,
            )
        };
        assert_eq!(
            rows,
            vec![
                row("api_key", &key_id, "test", "t1"),
                row("sandbox", "sbx-7", "t2", "t2"),
            ],
            "one row per new execution, none for the replay"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_is_accepted_with_202(pool: PgPool) {
        spawned(&pool, "t1").await;
        let key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let body = execute_body("t1", 1).to_string();
        let event = apigw_v2_event(
            "POST",
            "/agent/execute",
            "",
            &[("x-api-key", &key)],
            Some(&body),
        );
        let (status, response) = client.lambda(&event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{response}");
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }
}
