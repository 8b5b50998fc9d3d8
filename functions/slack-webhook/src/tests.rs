//! The webhook with requests signed by the real v0 scheme, starting turns in process on a
//! real Postgres database (no API served anywhere: the hand-off makes no HTTP call).

use super::*;
use axum::http::{Method, StatusCode};
use centaur_http::testing::{apigw_v2_event, test_config, Caller, TestClient};
use centaur_slack::signature::sign;
use serde_json::{json, Value};
use sqlx::PgPool;

const SECRET: &str = "test-slack-signing-secret";

fn slack_config() -> centaur_config::ApiConfig {
    let mut config = test_config();
    config.slack_signing_secret = Some(SECRET.into());
    config
}

fn webhook_client(pool: &PgPool) -> TestClient {
    webhook_with(pool, slack_config())
}

fn webhook_with(pool: &PgPool, config: centaur_config::ApiConfig) -> TestClient {
    TestClient::new(router(AppState::new(pool.clone(), config)))
}

/// [`webhook_client`] on a deployment that allows `acme/*` and defaults to `acme/api`.
fn webhook_with_repos(pool: &PgPool) -> TestClient {
    let mut config = slack_config();
    config.workspace =
        centaur_config::WorkspaceConfig::from_env(&centaur_config::Env::from_pairs([
            ("AGENT_REPO", "acme/api"),
            ("AGENT_REPOS_ALLOWED", "acme/*"),
        ]))
        .unwrap();
    webhook_with(pool, config)
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
    let client = webhook_client(&pool);
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
    let client = webhook_client(&pool);
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
    let client = webhook_client(&pool);
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
    let client = webhook_client(&pool);
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
    let client = webhook_client(&pool);
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
    let client = std::sync::Arc::new(webhook_client(&pool));
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
    let client = webhook_client(&pool);
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
    // The author is the audit log's principal of each change: the first turn, the switch's
    // release and the second turn (the refused first attempt of the switch left no row).
    type AuditRow = (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let audited: Vec<AuditRow> = sqlx::query_as(
        "SELECT action, principal_kind, principal_id, principal_name, thread_key, peer
             FROM audit_log ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let thread = Some("slack:T1:C1:1.0".to_owned());
    let peer = Some("10.0.0.9:50000".to_owned());
    let slack_user = |action: &str| {
        (
            action.to_owned(),
            "slack_user".to_owned(),
            "T1:U1".to_owned(),
            "U1".to_owned(),
            thread.clone(),
            peer.clone(),
        )
    };
    assert_eq!(
        audited,
        vec![
            slack_user("execute"),
            slack_user("release"),
            slack_user("execute")
        ]
    );
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
    let client = webhook_with_repos(&pool);
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
    let client = webhook_with_repos(&pool);
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
    let notices: Vec<(String, String, Value)> =
        sqlx::query_as("SELECT notice_id, text, delivery FROM slack_notices ORDER BY notice_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(notices.len(), 2, "each refused message gets its reply");
    assert_eq!(notices[0].0, "slack:T1:C1:1.0");
    assert!(
        notices[0].1.contains("evil/api") && notices[0].1.contains("not allowed"),
        "{}",
        notices[0].1
    );
    assert!(notices[1].1.contains("INVALID_REPO"), "{}", notices[1].1);
    assert_eq!(notices[0].2["channel"], "C1");
    assert_eq!(notices[0].2["thread_ts"], "1.0");
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(messages, 0);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn when_the_database_is_unreachable_slack_is_asked_to_retry_and_the_retry_goes_through(
    pool: PgPool,
) {
    let (url, _peer) = centaur_http::testing::unresponsive_database().await;
    let hanging = centaur_store::pool_options(2).connect_lazy(&url).unwrap();
    let down = webhook_with(&hanging, slack_config());
    let event = mention("Ev1", "1.0", "later");
    let (status, body) = post_signed(&down, &event, &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ok": false, "error": "database_unavailable"})
        )
    );
    let up = webhook_client(&pool);
    let (status, body) = post_signed(&up, &event, &[("x-slack-retry-num", "1")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["execution_id"].is_string(), "{body}");
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn ignored_events_are_acknowledged_without_a_turn(pool: PgPool) {
    let client = webhook_client(&pool);
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
    let client = webhook_client(&pool);
    for path in PATHS {
        let (status, _) = client.post(path, &Caller::Anonymous, &json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_lambda_event_answers_the_url_verification(pool: PgPool) {
    let client = webhook_client(&pool);
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

fn with_access(teams: &[&str], bots: &[&str]) -> centaur_config::ApiConfig {
    let mut config = slack_config();
    config.slack_access.allowed_teams = teams.iter().map(|t| (*t).to_owned()).collect();
    config.slack_access.allowed_bots = bots.iter().map(|b| (*b).to_owned()).collect();
    config
}

fn guest_mention(event_id: &str, ts: &str, author_team: &str, shared: bool) -> Value {
    json!({
        "type": "event_callback", "team_id": "T1", "enterprise_id": "E1", "event_id": event_id,
        "is_ext_shared_channel": shared,
        "authorizations": [{"user_id": "UBOT", "is_bot": true}],
        "event": {"type": "app_mention", "user": "UGUEST", "user_team": author_team,
                  "channel": "C1", "ts": ts, "text": "<@UBOT> use your keys"},
    })
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_slack_connect_guest_is_refused_without_a_turn(pool: PgPool) {
    for config in [slack_config(), with_access(&["T1"], &[])] {
        let client = webhook_with(&pool, config);
        let (status, body) =
            post_signed(&client, &guest_mention("Ev1", "1.0", "TOTHER", true), &[]).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::OK,
                json!({"ok": true, "ignored": "external_user"})
            )
        );
    }
    // Another workspace of the same Enterprise Grid organisation, in an internal channel.
    let client = webhook_with(&pool, with_access(&["E1"], &[]));
    let (status, body) = post_signed(&client, &guest_mention("Ev2", "2.0", "T2", false), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["execution_id"].is_string(), "{body}");
    let (_, body) = post_signed(&client, &guest_mention("Ev3", "3.0", "TOTHER", true), &[]).await;
    assert_eq!(body["ignored"], "external_user", "{body}");
    assert_eq!(executions(&pool).await.len(), 1);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM slack_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 2, "refused events are not even deduped");
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_team_outside_slack_allowed_teams_is_ignored(pool: PgPool) {
    let client = webhook_with(&pool, with_access(&["T9"], &[]));
    let (status, body) = post_signed(&client, &mention("Ev1", "1.0", "hello"), &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"ok": true, "ignored": "team_not_allowed"})
        )
    );
    assert!(executions(&pool).await.is_empty());
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn only_bots_in_slack_allowed_bots_start_turns(pool: PgPool) {
    let from_bot = |event_id: &str, ts: &str| {
        json!({
            "type": "event_callback", "team_id": "T1", "event_id": event_id,
            "authorizations": [{"user_id": "UBOT"}],
            "event": {"type": "app_mention", "bot_id": "BCI", "user": "UCI", "channel": "C1",
                      "ts": ts, "text": "<@UBOT> the nightly build failed"},
        })
    };
    let (status, body) = post_signed(&webhook_client(&pool), &from_bot("Ev1", "1.0"), &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"ok": true, "ignored": "bot_not_allowed"})
        )
    );
    let client = webhook_with(&pool, with_access(&[], &["BCI"]));
    let (status, body) = post_signed(&client, &from_bot("Ev2", "2.0"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["execution_id"].is_string(), "{body}");
    assert_eq!(executions(&pool).await.len(), 1);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn malformed_events_are_answered_never_with_a_500(pool: PgPool) {
    let client = webhook_client(&pool);
    for (body, reason) in [
        (
            json!({"type": "event_callback", "team_id": "T1"}),
            "no_event",
        ),
        (
            json!({"type": "event_callback", "team_id": "T1", "event": "text"}),
            "no_event",
        ),
        (
            json!({"type": "event_callback", "team_id": "T1", "event": {"type": "app_mention",
                   "user": "U1", "text": "<@UBOT> no channel"}}),
            "no_channel_or_ts",
        ),
        (json!({"type": "block_actions"}), "unhandled_payload_type"),
    ] {
        let (status, answer) = post_signed(&client, &body, &[]).await;
        assert_eq!(
            (status, answer),
            (StatusCode::OK, json!({"ok": true, "ignored": reason}))
        );
    }
    let (status, answer) = post_signed(&client, &json!({"no": "type"}), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(executions(&pool).await.is_empty());
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_thread_in_a_failure_loop_is_told_why_naming_its_latest_failure(pool: PgPool) {
    let client = webhook_client(&pool);
    let (_, body) = post_signed(&client, &mention("Ev1", "1.0", "first"), &[]).await;
    assert!(body["execution_id"].is_string(), "{body}");
    sqlx::query(
        "UPDATE executions SET status = 'failed_permanent', completed_at = now(),
             terminal_reason = 'harness_error', error_text = 'boom'",
    )
    .execute(&pool)
    .await
    .unwrap();
    for index in 0..3 {
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id,
                 request_hash, status, delivery, completed_at, terminal_reason, error_text)
             VALUES ($1, 'slack:T1:C1:1.0', 1, 'codex', $1, 'h', 'failed_permanent', '{}', now(),
                     'harness_error', 'boom')",
        )
        .bind(format!("exe_00000000000000f{index}"))
        .execute(&pool)
        .await
        .unwrap();
    }
    let (status, body) = post_signed(&client, &reply("Ev2", "2.0", "again"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], false);
    assert_eq!(body["error"], "THREAD_FAILURE_LOOP");
    let text: String =
        sqlx::query_scalar("SELECT text FROM slack_notices WHERE notice_id = 'slack:T1:C1:2.0'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        text.contains("failed") && text.contains("GET /agent/executions/exe_"),
        "{text}"
    );
    let (_, again) = post_signed(
        &client,
        &reply("Ev2", "2.0", "again"),
        &[("x-slack-retry-num", "1")],
    )
    .await;
    assert_eq!(again["duplicate"], true);
    let notices: i64 = sqlx::query_scalar("SELECT count(*) FROM slack_notices")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(notices, 1);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_reply_in_a_thread_without_a_bot_token_starts_without_context(pool: PgPool) {
    let client = webhook_client(&pool);
    let (status, body) = post_signed(&client, &reply("Ev1", "2.0", "what now?"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let parts: Value = sqlx::query_scalar("SELECT parts FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parts, json!([{"type": "text", "text": "what now?"}]));
}

#[test]
fn team_rules() {
    let message = |team: &str, author: &str, enterprise: Option<&str>, shared: bool| {
        let body = json!({
            "type": "event_callback", "team_id": team, "enterprise_id": enterprise,
            "is_ext_shared_channel": shared, "authorizations": [{"user_id": "UBOT"}],
            "event": {"type": "app_mention", "user": "U1", "user_team": author,
                      "channel": "C1", "ts": "1.0", "text": "<@UBOT> hi"},
        });
        match event::parse(None, body.to_string().as_bytes(), Identity::default()) {
            Ok(SlackRequest::Message(m)) => *m,
            other => panic!("{other:?}"),
        }
    };
    let access = |teams: &[&str]| SlackAccessConfig {
        allowed_teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        ..SlackAccessConfig::default()
    };
    assert_eq!(
        team_allowed(&access(&[]), &message("T1", "T1", None, false)),
        Ok(())
    );
    assert_eq!(
        team_allowed(&access(&[]), &message("T1", "T2", None, true)),
        Err("external_user")
    );
    assert_eq!(
        team_allowed(&access(&[]), &message("T1", "T2", Some("E1"), false)),
        Ok(())
    );
    assert_eq!(
        team_allowed(&access(&["T1", "T2"]), &message("T1", "T2", None, true)),
        Ok(()),
        "a partner workspace the operator listed"
    );
    assert_eq!(
        team_allowed(&access(&["T5"]), &message("T1", "T1", None, false)),
        Err("team_not_allowed")
    );
}
