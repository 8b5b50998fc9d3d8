//! `agent-spawn`: `POST /agent/spawn` attaches to a thread's active assignment or creates
//! the next generation for a harness, a repository (`repo`, else `AGENT_REPO`, checked
//! against `AGENT_REPOS_ALLOWED`) and optional instructions (`agents_md_override`).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use centaur_core::api::{ErrorBody, Route, SpawnRequest, SpawnResponse};
use centaur_core::canonical::typed_request_hash;
use centaur_http::{require, validate, ApiError, ApiJson, AppState, Authorized};
use centaur_store::assignments;

/// The routes this function serves.
pub const ROUTES: &[Route] = &[Route {
    method: "POST",
    path: "/agent/spawn",
}];

/// `POST /agent/spawn`: attach to the thread's active assignment or create the next
/// generation.
#[utoipa::path(
    post,
    path = "/agent/spawn",
    tag = "agent",
    request_body = SpawnRequest,
    responses(
        (status = 200, description = "The thread's active assignment (attached or created).", body = SpawnResponse),
        (status = 409, description = "`ACTIVE_ASSIGNMENT_PROMPT_MISMATCH` (another harness, repo or override than the active assignment's: release first), `IDEMPOTENCY_PAYLOAD_MISMATCH` (the same `spawn_id` with another payload).", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn spawn(
    State(state): State<AppState>,
    principal: Authorized<require::AgentExecute>,
    ApiJson(request): ApiJson<SpawnRequest>,
) -> Result<Json<SpawnResponse>, ApiError> {
    let thread_key = &request.thread_key;
    principal.require_thread(thread_key.as_str())?;
    let workspace = validate::workspace(
        &state.config.workspace,
        request.repo.as_deref(),
        request.agents_md_override.as_deref(),
    )?;
    let response = assignments::spawn_in_workspace(
        &state.pool,
        thread_key.as_str(),
        request.spawn_id.as_deref(),
        request.harness,
        state.config.sandbox.default_harness,
        &workspace,
        &typed_request_hash(&request),
        &principal.actor(),
    )
    .await?;
    Ok(Json(response))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(spawn))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/agent/spawn", post(spawn))
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

    fn client(pool: PgPool) -> TestClient {
        TestClient::new(router(test_state(pool)))
    }

    /// A client whose deployment sets `AGENT_REPO` / `AGENT_REPOS_ALLOWED`.
    fn client_with_repos(pool: PgPool, repo: Option<&str>, allowed: Option<&str>) -> TestClient {
        let vars: Vec<(&str, &str)> = [("AGENT_REPO", repo), ("AGENT_REPOS_ALLOWED", allowed)]
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)))
            .collect();
        let mut config = centaur_http::testing::test_config();
        config.workspace =
            centaur_config::WorkspaceConfig::from_env(&centaur_config::Env::from_pairs(vars))
                .unwrap_or_else(|err| panic!("workspace config: {err}"));
        TestClient::new(router(AppState::new(pool, config)))
    }

    async fn stored_workspace(pool: &PgPool, thread: &str) -> (Option<String>, Option<String>) {
        let generation: i64 = sqlx::query_scalar(
            "SELECT assignment_generation FROM runtime_assignments WHERE thread_key = $1 AND state = 'active'",
        )
        .bind(thread)
        .fetch_one(pool)
        .await
        .unwrap();
        assignments::workspace_of(pool, thread, generation)
            .await
            .unwrap()
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
    async fn a_named_repo_is_normalised_stored_and_shown(pool: PgPool) {
        let client = client_with_repos(pool.clone(), None, Some("acme/*"));
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "repo": "https://github.com/acme/api.git",
                        "agents_md_override": "Answer in French."}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["repo"], "acme/api");
        assert_eq!(
            stored_workspace(&pool, "t1").await,
            (
                Some("acme/api".to_owned()),
                Some("Answer in French.".to_owned())
            )
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_deployment_default_repo_applies_when_none_is_named(pool: PgPool) {
        let client = client_with_repos(pool.clone(), Some("acme/api"), Some("acme/*"));
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["repo"], "acme/api");
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t2", "repo": "acme/web"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["repo"], "acme/web");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn without_repo_settings_a_thread_has_no_repo_and_may_name_none(pool: PgPool) {
        let client = client(pool);
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["repo"], Value::Null);
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t2", "repo": "acme/api"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "REPO_NOT_ALLOWED");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_repo_outside_the_allowlist_is_a_422_naming_it(pool: PgPool) {
        let client = client_with_repos(pool.clone(), Some("acme/api"), None);
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "repo": "evil/api"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "REPO_NOT_ALLOWED");
        assert!(
            body["message"].as_str().unwrap().contains("evil/api"),
            "{body}"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM runtime_assignments")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 0, "a refused spawn creates no assignment");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_malformed_repo_is_a_422_saying_why(pool: PgPool) {
        let client = client_with_repos(pool, None, Some("**"));
        for (repo, why) in [
            (json!("git@github.com:acme/api.git"), "https"),
            (json!("http://github.com/acme/api"), "https"),
            (json!("https://token@github.com/acme/api"), "credentials"),
            (json!("acme/../api"), ".."),
            (json!("acme"), "owner/name"),
            (json!(""), "empty"),
        ] {
            let (status, body) = client
                .post(
                    "/agent/spawn",
                    &Caller::LocalOperator,
                    &json!({"thread_key": "t1", "repo": repo}),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{repo}: {body}");
            assert_eq!(body["code"], "INVALID_REPO", "{repo}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains(why),
                "{repo}: {body}"
            );
        }
        for repo in [json!(42), json!("acme/a\u{0}b")] {
            let (status, body) = client
                .post(
                    "/agent/spawn",
                    &Caller::LocalOperator,
                    &json!({"thread_key": "t1", "repo": repo}),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_over_long_override_is_a_422(pool: PgPool) {
        let client = client(pool);
        let too_long = "x".repeat(centaur_core::api::MAX_AGENTS_MD_OVERRIDE_BYTES + 1);
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "agents_md_override": too_long}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("agents_md_override"),
            "{body}"
        );
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "agents_md_override": "a\u{0}b"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let just_fits = "x".repeat(centaur_core::api::MAX_AGENTS_MD_OVERRIDE_BYTES);
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "agents_md_override": just_fits}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_spawn_replays_with_its_repo_and_the_hash_covers_repo_and_override(pool: PgPool) {
        let client = client_with_repos(pool, None, Some("acme/*"));
        let request = json!({"thread_key": "t1", "spawn_id": "s1", "repo": "acme/api",
                             "agents_md_override": "be brief"});
        let (status, first) = client
            .post("/agent/spawn", &Caller::LocalOperator, &request)
            .await;
        assert_eq!(status, StatusCode::OK, "{first}");
        let (status, again) = client
            .post("/agent/spawn", &Caller::LocalOperator, &request)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["idempotent"], true);
        assert_eq!(again["repo"], "acme/api");
        assert_eq!(
            again["assignment_generation"],
            first["assignment_generation"]
        );
        for changed in [
            json!({"thread_key": "t1", "spawn_id": "s1", "repo": "acme/web",
                   "agents_md_override": "be brief"}),
            json!({"thread_key": "t1", "spawn_id": "s1", "repo": "acme/api",
                   "agents_md_override": "be long"}),
        ] {
            let (status, body) = client
                .post("/agent/spawn", &Caller::LocalOperator, &changed)
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{changed}");
            assert_eq!(body["code"], "IDEMPOTENCY_PAYLOAD_MISMATCH");
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn another_repo_or_override_than_the_active_one_is_a_409_like_another_harness(
        pool: PgPool,
    ) {
        let client = client_with_repos(pool.clone(), Some("acme/api"), Some("acme/*"));
        let spawn = |body: Value| {
            let client = &client;
            async move {
                client
                    .post("/agent/spawn", &Caller::LocalOperator, &body)
                    .await
            }
        };
        let (status, _) = spawn(json!({"thread_key": "t1", "agents_md_override": "one"})).await;
        assert_eq!(status, StatusCode::OK);
        // Naming nothing, or the same values, attaches.
        let (status, body) = spawn(json!({"thread_key": "t1"})).await;
        assert_eq!(
            (status, body["repo"].clone()),
            (StatusCode::OK, json!("acme/api"))
        );
        let (status, body) = spawn(
            json!({"thread_key": "t1", "repo": "https://github.com/acme/api", "agents_md_override": "one"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["assignment_generation"], 1);
        // Another repo or override is refused until the caller releases.
        let (status, body) = spawn(json!({"thread_key": "t1", "repo": "acme/web"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "ACTIVE_ASSIGNMENT_PROMPT_MISMATCH");
        assert!(
            body["message"].as_str().unwrap().contains("acme/web"),
            "{body}"
        );
        let (status, body) = spawn(json!({"thread_key": "t1", "agents_md_override": "two"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "ACTIVE_ASSIGNMENT_PROMPT_MISMATCH");
        assignments::release(
            &pool,
            "t1",
            None,
            false,
            "h",
            &centaur_store::audit::Actor::local_operator(None),
        )
        .await
        .unwrap();
        let (status, body) = spawn(json!({"thread_key": "t1", "repo": "acme/web"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["assignment_generation"], 2);
        assert_eq!(body["repo"], "acme/web");
        assert_eq!(
            stored_workspace(&pool, "t1").await,
            (Some("acme/web".into()), None)
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_claimed_execution_carries_the_threads_repo_and_override(pool: PgPool) {
        let client = client_with_repos(pool.clone(), None, Some("acme/*"));
        let (status, body) = client
            .post(
                "/agent/spawn",
                &Caller::LocalOperator,
                &json!({"thread_key": "t1", "harness": "echo", "repo": "acme/api",
                        "agents_md_override": "Use tabs."}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let request = centaur_store::executions::NewExecution {
            thread_key: "t1".into(),
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
        let (created, _) =
            centaur_store::executions::create(&pool, &request, centaur_core::Harness::Codex)
                .await
                .unwrap();
        let id = created.execution_id.as_str();
        let second = std::time::Duration::from_secs(60);
        let outcome = centaur_store::dispatch::claim(&pool, id, "w1", None, second, second, second)
            .await
            .unwrap();
        let centaur_store::dispatch::ClaimOutcome::Claimed(claimed) = outcome else {
            panic!("not claimed: {outcome:?}");
        };
        assert_eq!(claimed.assignment_generation, 1);
        assert_eq!(claimed.repo.as_deref(), Some("acme/api"));
        assert_eq!(claimed.agents_md_override.as_deref(), Some("Use tabs."));
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
