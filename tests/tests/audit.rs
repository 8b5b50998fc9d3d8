//! The audit log end to end, as real processes: `api` (with the Slack webhook, against the
//! strict fake Slack) records who made every change — an API key (id and name), the local
//! operator, a sandbox token (its sandbox and thread) and a Slack user (`<team>:<user>`) —
//! for spawn, message, execute, cancel, release and key changes, with the client's address;
//! `GET /admin/audit` filters by principal, action and time and pages newest first; only an
//! admin may read it, and a bad `since` is a 422 naming it.
#![allow(clippy::unwrap_used)]

use centaur_tests::fake_slack::FakeSlack;
use centaur_tests::slack_sender::{mention, post_event};
use centaur_tests::stack::{TEST_SIGNING_KEY, TEST_SLACKBOT_KEY};
use centaur_tests::{ApiClient, Stack, StackOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SECRET: &str = "audit-slack-signing-secret";
const BOT_TOKEN: &str = "xoxb-audit-test-token";

/// The audit entries `client` reads with `query`, newest first.
async fn audit(client: &ApiClient, query: &str) -> Vec<Value> {
    let (status, page) = client.get(&format!("/admin/audit?{query}")).await.unwrap();
    assert_eq!(status, 200, "{query}: {page}");
    page["entries"].as_array().unwrap().clone()
}

/// `(action, principal_kind, principal_id, principal_name)` of each entry.
fn who(entries: &[Value]) -> Vec<(String, String, String, String)> {
    entries
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            (
                text("action"),
                text("principal_kind"),
                text("principal_id"),
                text("principal_name"),
            )
        })
        .collect()
}

fn row(action: &str, kind: &str, id: &str, name: &str) -> (String, String, String, String) {
    (action.into(), kind.into(), id.into(), name.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_is_audited_with_its_principal_and_read_back_filtered_and_paged() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let env: BTreeMap<String, String> = [
        ("SLACK_SIGNING_SECRET", SECRET),
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_API_URL", slack.url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let stack = Stack::start(StackOptions {
        extra_env: env,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let operator = stack.client();

    // The local operator creates the admin key; the key runs a turn step by step, creates
    // another key and releases its thread; the operator revokes that other key.
    let (status, created) = operator
        .post(
            "/admin/api-keys",
            &json!({"name": "audit-ops", "scopes": ["admin", "agent"]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    let ops_id = created["id"].as_str().unwrap().to_owned();
    let ops = stack
        .client()
        .with_api_key(created["key"].as_str().unwrap());
    let execution = ops.turn("audit-key", "hello").await.unwrap();
    let (status, other) = ops
        .post(
            "/admin/api-keys",
            &json!({"name": "audit-tmp", "scopes": ["agent"]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_str().unwrap().to_owned();
    let (status, body) = ops
        .post("/agent/threads/audit-key/release", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let revoked = reqwest::Client::new()
        .delete(format!("{}/admin/api-keys/{other_id}", stack.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    // A sandbox token starts a turn on its own thread and cancels it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token =
        centaur_auth::sandbox_token::mint(TEST_SIGNING_KEY, "audit-sbx", "sbx-audit", now, 600);
    let sandbox = stack.client().with_api_key(&token);
    let sandboxed = sandbox
        .execute_text("audit-sbx", "@sleep 20000")
        .await
        .unwrap();
    let (status, body) = sandbox
        .post(&format!("/agent/executions/{sandboxed}/cancel"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // A Slack user mentions the bot: the webhook starts the turn in process.
    let (status, body) = post_event(
        &reqwest::Client::new(),
        &stack.api_url,
        SECRET,
        &mention("EvAudit1", "C42", "1700000042.000100", "hi from slack"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let slack_execution = body["execution_id"].as_str().unwrap().to_owned();

    // Everything, newest first, as the admin key reads it.
    let all = audit(&ops, "limit=500").await;
    assert_eq!(
        who(&all),
        vec![
            row("execute", "slack_user", "T1:U1", "U1"),
            row("cancel", "sandbox", "sbx-audit", "audit-sbx"),
            row("execute", "sandbox", "sbx-audit", "audit-sbx"),
            row("key_revoke", "local_operator", "local", "local operator"),
            row("release", "api_key", &ops_id, "audit-ops"),
            row("key_create", "api_key", &ops_id, "audit-ops"),
            row("execute", "api_key", &ops_id, "audit-ops"),
            row("message", "api_key", &ops_id, "audit-ops"),
            row("spawn", "api_key", &ops_id, "audit-ops"),
            row("key_create", "local_operator", "local", "local operator"),
        ],
        "{all:#?}\n{}",
        stack.logs()
    );
    // What each change touched, and where it came from (every request here is local).
    assert_eq!(all[0]["thread_key"], "slack:T1:C42:1700000042.000100");
    assert_eq!(all[0]["execution_id"], slack_execution.as_str());
    assert_eq!(all[1]["execution_id"], sandboxed.as_str());
    assert_eq!(all[3]["key_id"], other_id.as_str());
    assert_eq!(all[5]["key_id"], other_id.as_str());
    assert_eq!(all[6]["execution_id"], execution.as_str());
    assert_eq!(all[6]["thread_key"], "audit-key");
    assert_eq!(all[9]["key_id"], ops_id.as_str());
    for entry in &all {
        let peer = entry["peer"].as_str().unwrap_or_default();
        assert!(peer.starts_with("127.0.0.1:"), "{entry}");
    }
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();

    // Filters: by principal id or name, by action, by time.
    for (query, expected) in [
        (format!("principal={ops_id}"), 5),
        ("principal=audit-ops".to_owned(), 5),
        ("principal=local".to_owned(), 2),
        ("principal=sbx-audit".to_owned(), 2),
        ("principal=audit-sbx".to_owned(), 2),
        ("principal=T1:U1".to_owned(), 1),
        ("action=execute".to_owned(), 3),
        ("action=execute&principal=audit-ops".to_owned(), 1),
        ("since=1h".to_owned(), 10),
        ("since=2099-01-01T00:00:00Z".to_owned(), 0),
    ] {
        let entries = audit(&ops, &query).await;
        assert_eq!(entries.len(), expected, "{query}: {entries:#?}");
    }

    // Pages of three, newest first, follow `next_before` to the same ten entries.
    let mut paged = Vec::new();
    let mut query = "limit=3".to_owned();
    loop {
        let (status, page) = ops.get(&format!("/admin/audit?{query}")).await.unwrap();
        assert_eq!(status, 200, "{page}");
        paged.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next_before"].as_i64() {
            Some(before) => query = format!("limit=3&before={before}"),
            None => break,
        }
        assert!(paged.len() <= ids.len(), "{paged:?}");
    }
    assert_eq!(paged, ids);

    // Only admins read it; a bad `since` is a 422 naming it.
    let agent = stack.client().with_api_key(TEST_SLACKBOT_KEY);
    let (status, body) = agent.get("/admin/audit").await.unwrap();
    assert_eq!(status, 403, "{body}");
    let (status, body) = sandbox.get("/admin/audit").await.unwrap();
    assert_eq!(status, 403, "{body}");
    let (status, body) = ops.get("/admin/audit?since=not-a-time").await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert!(
        body["message"].as_str().unwrap().contains("since"),
        "{body}"
    );

    stack.stop().await.unwrap();
}
