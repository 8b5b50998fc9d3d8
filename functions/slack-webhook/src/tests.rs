//! The webhook with requests signed by the real v0 scheme, handing turns to the agent
//! functions served over real HTTP on a real Postgres database.

use super::*;
use axum::http::{Method, StatusCode};
use centaur_http::testing::{apigw_v2_event, create_key, test_config, Caller, TestClient};
use centaur_slack::signature::sign;
use serde_json::Value;
use sqlx::PgPool;

const SECRET: &str = "test-slack-signing-secret";

/// The agent functions on a real port; their base URL.
async fn serve_api(pool: &PgPool) -> String {
    serve_api_with(pool, test_config()).await
}

/// [`serve_api`] on a deployment that allows `acme/*` and defaults to `acme/api`.
async fn serve_api_with_repos(pool: &PgPool) -> String {
    let mut config = test_config();
    config.workspace =
        centaur_config::WorkspaceConfig::from_env(&centaur_config::Env::from_pairs([
            ("AGENT_REPO", "acme/api"),
            ("AGENT_REPOS_ALLOWED", "acme/*"),
        ]))
        .unwrap();
    serve_api_with(pool, config).await
}

async fn serve_api_with(pool: &PgPool, config: centaur_config::ApiConfig) -> String {
    let state = AppState::new(pool.clone(), config);
    let routes = Router::new()
        .merge(agent_spawn::router(state.clone()))
        .merge(agent_message::router(state.clone()))
        .merge(agent_execute::router(state.clone()))
        .merge(agent_threads::router(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, centaur_http::app(routes)).await;
    });
    url
}

async fn webhook_client(pool: &PgPool, api_url: &str) -> TestClient {
    let mut config = test_config();
    config.slack_signing_secret = Some(SECRET.into());
    config.auth.slackbot_api_key = Some(create_key(pool, &["agent"]).await);
    config.api_url = Some(api_url.into());
    TestClient::new(router(AppState::new(pool.clone(), config)))
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

async fn post_signed(
    client: &TestClient,
    body: &Value,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let raw = body.to_string();
    let timestamp = now();
    let signature = sign(SECRET, &timestamp, raw.as_bytes());
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-slack-request-timestamp", timestamp.as_str()),
        ("x-slack-signature", signature.as_str()),
    ];
    headers.extend_from_slice(extra);
    client
        .raw_with_headers(
            Method::POST,
            "/api/webhooks/slack",
            &Caller::Anonymous,
            &headers,
            raw.into_bytes(),
        )
        .await
}

fn mention(event_id: &str, ts: &str, text: &str) -> Value {
    json!({
        "type": "event_callback", "team_id": "T1", "event_id": event_id,
        "authorizations": [{"user_id": "UBOT", "is_bot": true}],
        "event": {"type": "app_mention", "user": "U1", "channel": "C1", "ts": ts,
                  "text": format!("<@UBOT> {text}")},
    })
}

async fn executions(pool: &PgPool) -> Vec<(String, Value)> {
    sqlx::query_as("SELECT thread_key, delivery FROM executions ORDER BY created_at")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn url_verification_answers_the_challenge(pool: PgPool) {
    let client = webhook_client(&pool, "http://127.0.0.1:9").await;
    let (status, body) = post_signed(
        &client,
        &json!({"type": "url_verification", "challenge": "c-42"}),
        &[],
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"challenge": "c-42"}))
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn forged_stale_and_missing_signatures_are_refused_and_nothing_is_stored(pool: PgPool) {
    let client = webhook_client(&pool, "http://127.0.0.1:9").await;
    let body = mention("Ev1", "1.0", "hello").to_string();
    let timestamp = now();
    let forged = sign("not the secret", &timestamp, body.as_bytes());
    let stale_ts = (chrono::Utc::now().timestamp() - 301).to_string();
    let stale = sign(SECRET, &stale_ts, body.as_bytes());
    for (headers, error) in [
        (
            vec![
                ("x-slack-request-timestamp", timestamp.as_str()),
                ("x-slack-signature", forged.as_str()),
            ],
            "invalid_signature",
        ),
        (
            vec![
                ("x-slack-request-timestamp", stale_ts.as_str()),
                ("x-slack-signature", stale.as_str()),
            ],
            "stale_timestamp",
        ),
        (
            vec![("x-slack-request-timestamp", timestamp.as_str())],
            "missing_signature",
        ),
        (vec![], "missing_signature"),
    ] {
        let (status, answer) = client
            .raw_with_headers(
                Method::POST,
                "/api/slack/events",
                &Caller::Anonymous,
                &headers,
                body.clone().into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
        assert_eq!(answer, json!({"ok": false, "error": error}));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM slack_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn an_unparseable_body_is_a_400_invalid_slack_payload(pool: PgPool) {
    let client = webhook_client(&pool, "http://127.0.0.1:9").await;
    let raw = b"{not json".to_vec();
    let timestamp = now();
    let signature = sign(SECRET, &timestamp, &raw);
    let headers = [
        ("content-type", "application/json"),
        ("x-slack-request-timestamp", timestamp.as_str()),
        ("x-slack-signature", signature.as_str()),
    ];
    let (status, body) = client
        .raw_with_headers(
            Method::POST,
            "/api/webhooks/slack",
            &Caller::Anonymous,
            &headers,
            raw,
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"ok": false, "error": "invalid_slack_payload"})
        )
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_mention_becomes_one_queued_turn_with_slack_delivery(pool: PgPool) {
    let api = serve_api(&pool).await;
    let client = webhook_client(&pool, &api).await;
    let (status, body) = post_signed(
        &client,
        &mention("Ev1", "1700000000.000100", "reply with PONG"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["execution_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("exe_")),
        "{body}"
    );
    let rows = executions(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "slack:T1:C1:1700000000.000100");
    assert_eq!(
        rows[0].1,
        json!({"platform": "slack", "channel": "C1", "thread_ts": "1700000000.000100", "team_id": "T1", "user_id": "U1"})
    );
    let text: Value = sqlx::query_scalar("SELECT parts FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(text, json!([{"type": "text", "text": "reply with PONG"}]));
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn slack_retries_and_the_message_event_of_a_mention_make_no_second_turn(pool: PgPool) {
    let api = serve_api(&pool).await;
    let client = webhook_client(&pool, &api).await;
    let event = mention("Ev1", "1.0", "once");
    post_signed(&client, &event, &[]).await;
    let (status, body) = post_signed(
        &client,
        &event,
        &[
            ("x-slack-retry-num", "1"),
            ("x-slack-retry-reason", "http_timeout"),
        ],
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"ok": true, "duplicate": true}))
    );
    let message_event = json!({
        "type": "event_callback", "team_id": "T1", "event_id": "Ev2",
        "authorizations": [{"user_id": "UBOT"}],
        "event": {"type": "message", "channel_type": "channel", "user": "U1", "channel": "C1", "ts": "1.0", "text": "<@UBOT> once"},
    });
    let (_, body) = post_signed(&client, &message_event, &[]).await;
    assert_eq!(body["duplicate"], true);
    assert_eq!(executions(&pool).await.len(), 1);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_retry_arriving_while_the_first_is_in_flight_makes_one_turn(pool: PgPool) {
    let api = serve_api(&pool).await;
    let client = std::sync::Arc::new(webhook_client(&pool, &api).await);
    let event = mention("Ev1", "1.0", "concurrent");
    let attempts = (0..4).map(|retry| {
        let client = client.clone();
        let event = event.clone();
        async move {
            let retry = retry.to_string();
            post_signed(&client, &event, &[("x-slack-retry-num", retry.as_str())]).await
        }
    });
    let answers = futures::future::join_all(attempts).await;
    assert!(
        answers.iter().all(|(status, _)| *status == StatusCode::OK),
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|(_, body)| body["execution_id"].is_string())
            .count(),
        1,
        "{answers:?}"
    );
    assert_eq!(executions(&pool).await.len(), 1);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_harness_flag_picks_the_harness_and_a_different_one_switches_the_thread(pool: PgPool) {
    let api = serve_api(&pool).await;
    let client = webhook_client(&pool, &api).await;
    post_signed(&client, &mention("Ev1", "1.0", "--claude first"), &[]).await;
    let reply = json!({
        "type": "event_callback", "team_id": "T1", "event_id": "Ev2",
        "authorizations": [{"user_id": "UBOT"}],
        "event": {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "2.0", "thread_ts": "1.0",
                  "text": "<@UBOT> \u{2014}amp second"},
    });
    let (status, body) = post_signed(&client, &reply, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let assignments: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT assignment_generation, harness, state FROM runtime_assignments ORDER BY assignment_generation",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        assignments,
        vec![
            (1, "claude-code".into(), "released".into()),
            (2, "amp".into(), "active".into())
        ]
    );
    let texts: Vec<Value> =
        sqlx::query_scalar("SELECT parts->0->'text' FROM messages ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(texts, vec![json!("first"), json!("second")]);
}

async fn assignments_with_repo(pool: &PgPool) -> Vec<(i64, String, Option<String>, String)> {
    sqlx::query_as(
        "SELECT assignment_generation, harness, repo, state FROM runtime_assignments
         ORDER BY assignment_generation",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn reply(event_id: &str, ts: &str, text: &str) -> Value {
    json!({
        "type": "event_callback", "team_id": "T1", "event_id": event_id,
        "authorizations": [{"user_id": "UBOT"}],
        "event": {"type": "app_mention", "user": "U1", "channel": "C1", "ts": ts,
                  "thread_ts": "1.0", "text": format!("<@UBOT> {text}")},
    })
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_repo_flag_picks_the_repo_and_another_one_switches_the_thread_keeping_its_harness(
    pool: PgPool,
) {
    let api = serve_api_with_repos(&pool).await;
    let client = webhook_client(&pool, &api).await;
    let (status, body) = post_signed(&client, &mention("Ev1", "1.0", "--claude first"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same repo as the active one (written as Slack links it) attaches.
    let (status, body) = post_signed(
        &client,
        &reply(
            "Ev2",
            "2.0",
            "\u{2014}repo <https://github.com/acme/api> second",
        ),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        assignments_with_repo(&pool).await,
        vec![(
            1,
            "claude-code".into(),
            Some("acme/api".into()),
            "active".into()
        )]
    );
    // Another repo releases and re-spawns with the thread's harness.
    let (status, body) =
        post_signed(&client, &reply("Ev3", "3.0", "--repo acme/web third"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Another harness keeps the thread's repo.
    let (status, body) = post_signed(&client, &reply("Ev4", "4.0", "--amp fourth"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        assignments_with_repo(&pool).await,
        vec![
            (
                1,
                "claude-code".into(),
                Some("acme/api".into()),
                "released".into()
            ),
            (
                2,
                "claude-code".into(),
                Some("acme/web".into()),
                "released".into()
            ),
            (3, "amp".into(), Some("acme/web".into()), "active".into()),
        ]
    );
    let texts: Vec<Value> =
        sqlx::query_scalar("SELECT parts->0->'text' FROM messages ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        texts,
        vec![
            json!("first"),
            json!("second"),
            json!("third"),
            json!("fourth")
        ]
    );
    assert_eq!(executions(&pool).await.len(), 4);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_refused_repo_is_answered_200_and_makes_no_turn(pool: PgPool) {
    let api = serve_api_with_repos(&pool).await;
    let client = webhook_client(&pool, &api).await;
    for (event, ts, text) in [
        ("Ev1", "1.0", "--repo evil/api do it"),
        ("Ev2", "2.0", "--repo git@github.com:acme/api.git do it"),
    ] {
        let (status, body) = post_signed(&client, &mention(event, ts, text), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], false, "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("REPO_NOT_ALLOWED") || error.contains("INVALID_REPO"),
            "{body}"
        );
    }
    assert!(executions(&pool).await.is_empty());
    assert!(assignments_with_repo(&pool).await.is_empty());
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(messages, 0);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn when_the_api_is_down_slack_is_asked_to_retry_and_the_retry_goes_through(pool: PgPool) {
    let down = webhook_client(&pool, "http://127.0.0.1:9").await;
    let event = mention("Ev1", "1.0", "later");
    let (status, body) = post_signed(&down, &event, &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ok": false, "error": "api_unavailable"})
        )
    );
    let api = serve_api(&pool).await;
    let up = webhook_client(&pool, &api).await;
    let (status, body) = post_signed(&up, &event, &[("x-slack-retry-num", "1")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["execution_id"].is_string(), "{body}");
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn ignored_events_are_acknowledged_without_a_turn(pool: PgPool) {
    let client = webhook_client(&pool, "http://127.0.0.1:9").await;
    let edit = json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev9",
        "event": {"type": "message", "subtype": "message_changed", "channel": "C1", "ts": "1.0"}});
    let (status, body) = post_signed(&client, &edit, &[]).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"ok": true, "ignored": "subtype"}))
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn every_compatibility_path_is_served(pool: PgPool) {
    let client = webhook_client(&pool, "http://127.0.0.1:9").await;
    for path in PATHS {
        let (status, _) = client.post(path, &Caller::Anonymous, &json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_lambda_event_answers_the_url_verification(pool: PgPool) {
    let client = webhook_client(&pool, "http://127.0.0.1:9").await;
    let body = json!({"type": "url_verification", "challenge": "lambda-c"}).to_string();
    let timestamp = now();
    let signature = sign(SECRET, &timestamp, body.as_bytes());
    let event = apigw_v2_event(
        "POST",
        "/api/webhooks/slack",
        "",
        &[
            ("content-type", "application/json"),
            ("x-slack-request-timestamp", &timestamp),
            ("x-slack-signature", &signature),
        ],
        Some(&body),
    );
    let (status, answer) = client.lambda(&event).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"challenge": "lambda-c"}))
    );
}
