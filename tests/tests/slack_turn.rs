//! Slack end to end, as real processes against the strict fake Slack: a signed Slack event
//! reaches the webhook (served by `api`), becomes a turn run by the dispatcher with the
//! echo harness, and the answer is posted into the Slack thread — in chunks when long, once
//! even when Slack rate-limits or a delivery is taken over, dead-lettered when Slack says
//! the channel is gone, and as a short failure notice when the run fails. A long turn shows
//! live progress in a status message the answer replaces (also across a dispatcher's
//! death), a refused turn is told why, and the first mention inside a thread carries its
//! earlier messages.
#![allow(clippy::unwrap_used)]

use centaur_slack::web_api::{CHUNK_EVENT_TYPE, NOTICE_EVENT_TYPE, STATUS_EVENT_TYPE};
use centaur_tests::fake_slack::{FakeSlack, FakeSlackOptions, BOT_ID, BOT_USER, GONE_CHANNEL};
use centaur_tests::slack_sender::{mention, post_event};
use centaur_tests::{eventually, until, Stack, StackOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "e2e-slack-signing-secret";
const BOT_TOKEN: &str = "xoxb-e2e-test-token";
const WAIT: Duration = Duration::from_secs(30);

async fn start(slack: &FakeSlack) -> Stack {
    start_with(slack, &[]).await
}

async fn start_with(slack: &FakeSlack, extra: &[(&str, &str)]) -> Stack {
    let env: BTreeMap<String, String> = [
        ("SLACK_SIGNING_SECRET", SECRET),
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_API_URL", slack.url.as_str()),
    ]
    .into_iter()
    .chain(extra.iter().copied())
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
    eventually(WAIT, &format!("{count} posts in Slack"), || async {
        let posts = slack.posts();
        Ok((posts.len() >= count).then_some(posts))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}: {:?}\n{}", slack.posts(), stack.logs()))
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
    until(WAIT, &format!("outbox row {wanted}"), || async {
        outbox_state(stack, execution_id).await == wanted
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
}

async fn send(stack: &Stack, event: &Value) -> String {
    let http = reqwest::Client::new();
    let (status, body) = post_event(&http, &stack.api_url, SECRET, event, None)
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    assert_eq!(status, 200, "{body}");
    body["execution_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no turn: {body}"))
        .to_owned()
}

/// The bot's messages in a thread as Slack shows them now.
fn bot_messages(slack: &FakeSlack, channel: &str, thread_ts: &str) -> Vec<Value> {
    slack
        .thread(channel, thread_ts)
        .into_iter()
        .filter(|m| m["bot_id"] == BOT_ID)
        .collect()
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
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    assert_eq!(body["duplicate"], true);
    let pool = stack.database.pool().await.unwrap();
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        turns, 1,
        "a Slack retry makes no second turn, so no second reply"
    );
    assert_eq!(bot_messages(&slack, "C1", "1700000000.000100").len(), 1);
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

#[tokio::test(flavor = "multi_thread")]
async fn a_long_turn_shows_its_progress_and_the_answer_replaces_the_status_message() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start_with(&slack, &[("SLACK_PROGRESS_INTERVAL_MS", "1000")]).await;
    let id = send(
        &stack,
        &mention(
            "Ev7",
            "C1",
            "7.0",
            "@sleep 2500\n@sh echo compiling\n@sleep 2500\nfinished",
        ),
    )
    .await;
    let status = eventually(WAIT, "the status message", || async {
        Ok(slack
            .posts()
            .into_iter()
            .find(|p| p["metadata"]["event_type"] == STATUS_EVENT_TYPE))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    let shown = status["text"].as_str().unwrap();
    assert!(
        shown.contains("Working on it") && shown.contains(&id),
        "{shown}"
    );
    assert_eq!(status["thread_ts"], "7.0");
    assert_eq!(status["metadata"]["event_payload"]["execution_id"], id);
    eventually(WAIT, "a progress update naming the command", || async {
        Ok(slack.updates().into_iter().find(|u| {
            u["text"]
                .as_str()
                .is_some_and(|t| t.contains("ran `echo compiling` (exit 0)"))
        }))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}: {:?}\n{}", slack.updates(), stack.logs()));
    wait_outbox(&stack, &id, "delivered").await;
    let bots = bot_messages(&slack, "C1", "7.0");
    assert_eq!(
        bots.len(),
        1,
        "the answer replaced the status message: {bots:?}"
    );
    assert_eq!(bots[0]["ts"], status["ts"]);
    assert_eq!(
        bots[0]["text"],
        "$ echo compiling\ncompiling\n[exit 0]\nfinished"
    );
    assert_eq!(bots[0]["metadata"]["event_type"], CHUNK_EVENT_TYPE);
    assert_eq!(
        slack.posts().len(),
        1,
        "one chat.postMessage for the whole turn"
    );
    assert!(
        slack.errors().is_empty(),
        "every call inside its tier: {:?}",
        slack.errors()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dispatcher_dying_mid_turn_leaves_one_status_message_and_one_answer() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let mut stack = start_with(&slack, &[("SLACK_PROGRESS_INTERVAL_MS", "1000")]).await;
    let id = send(
        &stack,
        &mention("Ev8", "C1", "8.0", "@sleep 5000\nsurvived"),
    )
    .await;
    let status = eventually(WAIT, "the status message", || async {
        Ok(slack
            .posts()
            .into_iter()
            .find(|p| p["metadata"]["event_type"] == STATUS_EVENT_TYPE))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    stack.dispatcher(0).sigkill();
    stack.start_dispatcher().await.unwrap();
    until(Duration::from_secs(60), "the answer delivered", || async {
        outbox_state(&stack, &id).await == "delivered"
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    let bots = bot_messages(&slack, "C1", "8.0");
    assert_eq!(bots.len(), 1, "one message for the turn: {bots:?}");
    assert_eq!(
        bots[0]["ts"], status["ts"],
        "the status message became the answer"
    );
    assert_eq!(bots[0]["text"], "survived");
    assert_eq!(
        slack.posts().len(),
        1,
        "no second status message, no second answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_message_posted_by_a_deliverer_that_died_before_recording_it_is_replaced() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let pool = stack.database.pool().await.unwrap();
    let id = "exe_00000000000000d2";
    let delivery = json!({"platform": "slack", "channel": "C1", "thread_ts": "6.5"});
    sqlx::query(
        "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id, request_hash,
                                 status, delivery, completed_at, terminal_reason, result_text)
         VALUES ($1, 'slack:T1:C1:6.5', 1, 'echo', $1, 'h', 'completed', $2, now(), 'completed', 'the answer')",
    )
    .bind(id)
    .bind(&delivery)
    .execute(&pool)
    .await
    .unwrap();
    // The status message is in the thread, but the dispatcher that posted it died before
    // recording its ts; only the "about to post" marker made it to the row.
    slack.seed_thread_message(
        "C1",
        "6.5",
        json!({"ts": "6.6", "user": BOT_USER, "bot_id": BOT_ID, "text": "Working on it…",
               "metadata": {"event_type": STATUS_EVENT_TYPE, "event_payload": {"execution_id": id}}}),
    );
    sqlx::query(
        "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state, payload, status_posting_at)
         VALUES ($1, 'slack:T1:C1:6.5', $2, 'pending', '{\"text\": \"the answer\"}', now())",
    )
    .bind(id)
    .bind(&delivery)
    .execute(&pool)
    .await
    .unwrap();
    wait_outbox(&stack, id, "delivered").await;
    let bots = bot_messages(&slack, "C1", "6.5");
    assert_eq!(bots.len(), 1, "{bots:?}");
    assert_eq!(bots[0]["ts"], "6.6");
    assert_eq!(bots[0]["text"], "the answer");
    assert!(slack.posts().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_turn_is_told_why_in_its_thread_once() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start_with(&slack, &[("AGENT_REPOS_ALLOWED", "acme/*")]).await;
    let http = reqwest::Client::new();
    let event = mention("Ev9", "C1", "9.5", "--repo evil/api fix it");
    let (status, body) = post_event(&http, &stack.api_url, SECRET, &event, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], false, "{body}");
    assert_eq!(body["error"], "REPO_NOT_ALLOWED");
    let posts = wait_for_posts(&slack, &stack, 1).await;
    let text = posts[0]["text"].as_str().unwrap();
    assert!(
        text.contains("evil/api") && text.contains("not allowed"),
        "{text}"
    );
    assert_eq!(posts[0]["thread_ts"], "9.5");
    assert_eq!(posts[0]["metadata"]["event_type"], NOTICE_EVENT_TYPE);
    let (_, again) = post_event(&http, &stack.api_url, SECRET, &event, Some(1))
        .await
        .unwrap();
    assert_eq!(again["duplicate"], true);
    let pool = stack.database.pool().await.unwrap();
    until(WAIT, "the notice delivered", || async {
        centaur_store::notices::state(&pool, "slack:T1:C1:9.5")
            .await
            .unwrap()
            .is_some_and(|(state, _, _)| state == "delivered")
    })
    .await
    .unwrap();
    assert_eq!(bot_messages(&slack, "C1", "9.5").len(), 1);
}

fn reply_in(event_id: &str, thread_ts: &str, ts: &str, user: &str, text: &str) -> Value {
    json!({
        "type": "event_callback", "team_id": "T1", "event_id": event_id,
        "authorizations": [{"user_id": "UBOT", "is_bot": true}],
        "event": {"type": "app_mention", "user": user, "channel": "C2", "ts": ts,
                  "thread_ts": thread_ts, "text": format!("<@UBOT> {text}")},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_mention_inside_a_thread_carries_its_earlier_messages() {
    let slack = FakeSlack::start_with(FakeSlackOptions {
        max_page: 2,
        ..FakeSlackOptions::new(BOT_TOKEN)
    })
    .await
    .unwrap();
    slack.seed_user_message("C2", "10.0", "10.0", "U1", "the deploy failed with E42");
    slack.seed_user_message(
        "C2",
        "10.0",
        "10.1",
        "U2",
        "I think it's <#C9|db> migrations",
    );
    slack.seed_user_message("C2", "10.0", "10.2", "U3", "<@UBOT> what should we do?");
    let stack = start(&slack).await;
    let id = send(
        &stack,
        &reply_in("Ev10", "10.0", "10.2", "U3", "what should we do?"),
    )
    .await;
    wait_outbox(&stack, &id, "delivered").await;
    let posts = slack.posts();
    assert_eq!(
        posts[0]["text"],
        "Earlier messages in this Slack thread, oldest first:\n\
         @U1: the deploy failed with E42\n\
         @U2: I think it's #db migrations\n\
         \n\
         what should we do?"
    );
    let reads = |slack: &FakeSlack| {
        slack
            .calls()
            .iter()
            .filter(|c| *c == "conversations.replies")
            .count()
    };
    assert_eq!(reads(&slack), 2, "two pages of two messages");
    // The next mention in the thread is a continuation: no context again.
    let next = send(&stack, &reply_in("Ev11", "10.0", "10.3", "U1", "and now?")).await;
    wait_outbox(&stack, &next, "delivered").await;
    assert_eq!(slack.posts()[1]["text"], "and now?");
    assert_eq!(reads(&slack), 2);
    assert!(slack.errors().is_empty(), "{:?}", slack.errors());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_without_a_written_answer_is_never_an_empty_message() {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let id = send(&stack, &mention("Ev12", "C1", "12.0", "@sleep 10")).await;
    wait_outbox(&stack, &id, "delivered").await;
    let text = slack.posts()[0]["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("without a written answer") && text.contains(&id),
        "{text}"
    );
}
