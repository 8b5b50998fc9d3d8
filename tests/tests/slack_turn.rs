//! Slack end to end, as real processes: a signed Slack event reaches the webhook (served
//! by `api`), becomes a turn run by the dispatcher with the echo harness, and the answer is
//! posted into the Slack thread through a fake Slack Web API — in chunks when long, once
//! even when Slack rate-limits or a delivery is taken over, dead-lettered when Slack says
//! the channel is gone, and as a short failure notice when the run fails.
#![allow(clippy::unwrap_used)]

use centaur_tests::fake_slack::{FakeSlack, GONE_CHANNEL};
use centaur_tests::slack_sender::{mention, post_event};
use centaur_tests::{Stack, StackOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SECRET: &str = "e2e-slack-signing-secret";
const BOT_TOKEN: &str = "xoxb-e2e-test-token";

async fn start(slack: &FakeSlack) -> Stack {
    let env: BTreeMap<String, String> = [
        ("SLACK_SIGNING_SECRET", SECRET),
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_API_URL", slack.url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Stack::start(StackOptions {
        extra_env: env,
        ..StackOptions::default()
    })
    .await
    .unwrap()
}

async fn wait_for_posts(slack: &FakeSlack, stack: &Stack, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let posts = slack.posts();
        if posts.len() >= count {
            return posts;
        }
        assert!(
            Instant::now() < deadline,
            "only {} posts: {posts:?}\n{}",
            posts.len(),
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox_state(stack: &Stack, execution_id: &str) -> String {
    let pool = stack.database.pool().await.unwrap();
    sqlx::query_scalar("SELECT state FROM delivery_outbox WHERE execution_id = $1")
        .bind(execution_id)
        .fetch_one(&pool)
        .await
        .unwrap()
}

async fn wait_outbox(stack: &Stack, execution_id: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox_state(stack, execution_id).await != wanted {
        assert!(
            Instant::now() < deadline,
            "outbox never {wanted}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(stack: &Stack, event: &Value) -> String {
    let http = reqwest::Client::new();
    let (status, body) = post_event(&http, &stack.api_url, SECRET, event, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["execution_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no turn: {body}"))
        .to_owned()
}

fn event_kinds(execution: &Value) -> Vec<String> {
    execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_mention_is_answered_in_its_slack_thread() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let id = send(
        &stack,
        &mention("Ev1", "C1", "1700000000.000100", "reply with exactly PONG"),
    )
    .await;
    let posts = wait_for_posts(&slack, &stack, 1).await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["channel"], "C1");
    assert_eq!(posts[0]["thread_ts"], "1700000000.000100");
    assert_eq!(posts[0]["text"], "reply with exactly PONG");
    assert_eq!(
        posts[0]["metadata"]["event_payload"],
        json!({"execution_id": id, "chunk_index": 0, "chunk_count": 1})
    );
    wait_outbox(&stack, &id, "delivered").await;
    let execution = stack.client().execution(&id).await.unwrap();
    assert!(event_kinds(&execution).contains(&"final_delivery_delivered".to_owned()));

    let http = reqwest::Client::new();
    let retry = mention("Ev1", "C1", "1700000000.000100", "reply with exactly PONG");
    let (_, body) = post_event(&http, &stack.api_url, SECRET, &retry, Some(1))
        .await
        .unwrap();
    assert_eq!(body["duplicate"], true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slack.posts().len(), 1, "a Slack retry posts nothing more");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_answer_is_posted_in_ordered_chunks() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let paragraphs: Vec<String> = (0..10)
        .map(|i| format!("paragraph {i} {}", "word ".repeat(180).trim_end()))
        .collect();
    let text = paragraphs.join("\n\n");
    let id = send(&stack, &mention("Ev2", "C1", "2.0", &text)).await;
    wait_outbox(&stack, &id, "delivered").await;
    let posts = slack.posts();
    assert!(posts.len() >= 3, "{} chunks", posts.len());
    let count = posts.len();
    for (index, post) in posts.iter().enumerate() {
        assert_eq!(
            post["metadata"]["event_payload"],
            json!({"execution_id": id, "chunk_index": index, "chunk_count": count})
        );
        assert!(post["text"].as_str().unwrap().chars().count() <= 3900);
        assert_eq!(post["thread_ts"], "2.0");
    }
    let joined: Vec<&str> = posts.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(
        joined.join("\n\n"),
        text,
        "nothing lost or repeated, in order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_delivery_waits_for_retry_after_and_posts_once() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    slack.rate_limit_next(2);
    let stack = start(&slack).await;
    let id = send(&stack, &mention("Ev3", "C1", "3.0", "patience")).await;
    wait_outbox(&stack, &id, "delivered").await;
    assert_eq!(slack.posts().len(), 1);
    let execution = stack.client().execution(&id).await.unwrap();
    let failures: Vec<&Value> = execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_kind"] == "final_delivery_failed")
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0]["event_json"]["error"]
        .as_str()
        .unwrap()
        .contains("ratelimited"));
    assert_eq!(failures[0]["event_json"]["dead_letter"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_slack_says_is_gone_dead_letters_the_reply_at_once() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let id = send(
        &stack,
        &mention("Ev4", GONE_CHANNEL, "4.0", "into the void"),
    )
    .await;
    wait_outbox(&stack, &id, "dead_letter").await;
    assert!(slack.posts().is_empty());
    let execution = stack.client().execution(&id).await.unwrap();
    assert_eq!(execution["status"], "completed", "the run itself succeeded");
    let failure = execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_kind"] == "final_delivery_failed")
        .unwrap()
        .clone();
    assert_eq!(failure["event_json"]["dead_letter"], true);
    assert!(failure["event_json"]["error"]
        .as_str()
        .unwrap()
        .contains("channel_not_found"));
    assert_eq!(
        slack.calls(),
        vec!["chat.postMessage"],
        "no retry after a permanent error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_gets_a_short_reply_naming_the_execution() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let id = send(
        &stack,
        &mention("Ev5", "C1", "5.0", "@fail the model said no"),
    )
    .await;
    let posts = wait_for_posts(&slack, &stack, 1).await;
    let text = posts[0]["text"].as_str().unwrap();
    assert!(
        text.contains(&id) && text.contains("GET /agent/executions/"),
        "{text}"
    );
    assert!(text.contains("harness_error"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_taken_over_mid_send_skips_the_chunks_already_posted() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let pool = stack.database.pool().await.unwrap();
    let id = "exe_00000000000000d1";
    let text = format!(
        "{}\n\n{}",
        "a ".repeat(1500).trim_end(),
        "b ".repeat(1500).trim_end()
    );
    sqlx::query(
        "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id, request_hash,
                                 status, delivery, completed_at, terminal_reason, result_text)
         VALUES ($1, 'slack:T1:C1:6.0', 1, 'echo', $1, 'h', 'completed', $2, now(), 'completed', $3)",
    )
    .bind(id)
    .bind(json!({"platform": "slack", "channel": "C1", "thread_ts": "6.0"}))
    .bind(&text)
    .execute(&pool)
    .await
    .unwrap();
    // A deliverer posted chunk 0, then died before recording it; its lease has expired.
    slack.seed_thread_message(
        "C1",
        "6.0",
        json!({"text": "a", "metadata": {"event_type": "centaur_reply_chunk",
        "event_payload": {"execution_id": id, "chunk_index": 0, "chunk_count": 2}}}),
    );
    sqlx::query(
        "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state, payload, lease_owner, lease_expires_at)
         VALUES ($1, 'slack:T1:C1:6.0', $2, 'sending', $3, 'dead-dispatcher', now() - interval '1 second')",
    )
    .bind(id)
    .bind(json!({"platform": "slack", "channel": "C1", "thread_ts": "6.0"}))
    .bind(json!({"text": text}))
    .execute(&pool)
    .await
    .unwrap();
    wait_outbox(&stack, id, "delivered").await;
    let posts = slack.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["metadata"]["event_payload"]["chunk_index"], 1);
    assert!(slack.calls().contains(&"conversations.replies".to_owned()));
}
