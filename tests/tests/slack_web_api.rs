//! The strict fake Slack holds callers to Slack's documented Web API rules, and Centaur's
//! Web API client (`centaur_slack::SlackClient`) passes them: the token as a Bearer
//! header, JSON only on write methods, query parameters on read methods, `ok:false`
//! errors, 429 with `Retry-After` per method tier, text limits and the `metadata` shape.
#![allow(clippy::unwrap_used)]

use centaur_slack::web_api::{ChunkTag, CHUNK_EVENT_TYPE};
use centaur_slack::{SlackApiError, SlackClient};
use centaur_tests::fake_slack::{
    FakeSlack, FakeSlackOptions, ARCHIVED_CHANNEL, GONE_CHANNEL, NOT_IN_CHANNEL,
};
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "xoxb-strict";

async fn call(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

fn error(body: &Value) -> &str {
    assert_eq!(body["ok"], false, "{body}");
    body["error"].as_str().unwrap()
}

#[tokio::test]
async fn the_token_must_come_as_a_bearer_header_or_a_form_argument() {
    let slack = FakeSlack::start(TOKEN).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/chat.postMessage", slack.url);
    let body = json!({"channel": "C1", "text": "hi"});
    let (_, _, answer) = call(http.post(&url).json(&body)).await;
    assert_eq!(error(&answer), "not_authed");
    let (_, _, answer) = call(http.post(&url).bearer_auth("xoxb-wrong").json(&body)).await;
    assert_eq!(error(&answer), "invalid_auth");
    let mut in_body = body.clone();
    in_body["token"] = json!(TOKEN);
    let (_, _, answer) = call(http.post(&url).json(&in_body)).await;
    assert_eq!(
        error(&answer),
        "not_authed",
        "a token inside a JSON body is not read"
    );
    let (_, _, answer) =
        call(
            http.post(&url)
                .form(&[("token", TOKEN), ("channel", "C1"), ("text", "hi")]),
        )
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
}

#[tokio::test]
async fn a_read_method_does_not_read_a_json_body() {
    let slack = FakeSlack::start(TOKEN).await.unwrap();
    slack.seed_user_message("C1", "1.0", "1.0", "U1", "root");
    let http = reqwest::Client::new();
    let url = format!("{}/conversations.replies", slack.url);
    let (status, _, answer) = call(
        http.post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({"channel": "C1", "ts": "1.0"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(error(&answer), "invalid_arguments");
    assert_eq!(
        answer["response_metadata"]["messages"][0],
        "[ERROR] missing required field: channel"
    );
    let (_, _, answer) = call(
        http.get(&url)
            .bearer_auth(TOKEN)
            .query(&[("channel", "C1"), ("ts", "1.0")]),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let (_, _, answer) = call(
        http.post(&url)
            .bearer_auth(TOKEN)
            .form(&[("channel", "C1"), ("ts", "1.0")]),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let (_, _, answer) = call(
        http.get(&url)
            .bearer_auth(TOKEN)
            .query(&[("channel", "C1"), ("ts", "9.0")]),
    )
    .await;
    assert_eq!(error(&answer), "thread_not_found");
}

#[tokio::test]
async fn bodies_content_types_texts_and_metadata_are_checked() {
    let slack = FakeSlack::start(TOKEN).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/chat.postMessage", slack.url);
    let post = |body: Value| http.post(&url).bearer_auth(TOKEN).json(&body);
    for (request, code) in [
        (
            http.post(&url).bearer_auth(TOKEN).body("{\"channel\":"),
            "missing_post_type",
        ),
        (
            http.post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{\"channel\":"),
            "invalid_json",
        ),
        (
            http.post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("[1]"),
            "json_not_object",
        ),
        (
            http.post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "text/plain")
                .body("x"),
            "invalid_post_type",
        ),
        (post(json!({"channel": "C1", "text": ""})), "no_text"),
        (
            post(json!({"channel": "C1", "text": "x".repeat(40_001)})),
            "msg_too_long",
        ),
        (
            post(json!({"channel": "C1", "text": "x", "metadata": "not json"})),
            "invalid_metadata_format",
        ),
        (
            post(json!({"channel": "C1", "text": "x", "metadata": {"event_payload": {}}})),
            "invalid_metadata_schema",
        ),
        (
            post(json!({"channel": "C1", "text": "x",
                        "metadata": {"event_type": "t", "event_payload": "flat"}})),
            "invalid_metadata_schema",
        ),
        (post(json!({"text": "x"})), "channel_not_found"),
        (
            post(json!({"channel": GONE_CHANNEL, "text": "x"})),
            "channel_not_found",
        ),
        (
            post(json!({"channel": ARCHIVED_CHANNEL, "text": "x"})),
            "is_archived",
        ),
        (
            post(json!({"channel": NOT_IN_CHANNEL, "text": "x"})),
            "not_in_channel",
        ),
    ] {
        let (status, _, answer) = call(request).await;
        assert_eq!(status, 200, "{code}");
        assert_eq!(error(&answer), code);
    }
    let (_, _, answer) = call(
        http.post(format!("{}/chat.nonsense", slack.url))
            .bearer_auth(TOKEN)
            .json(&json!({})),
    )
    .await;
    assert_eq!(error(&answer), "unknown_method");
    assert!(slack.posts().is_empty());
    let (_, _, answer) = call(post(json!({"channel": "C3", "text": "x".repeat(40_000),
                    "metadata": {"event_type": "t", "event_payload": {"a": 1}}})))
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let update = |body: Value| {
        http.post(format!("{}/chat.update", slack.url))
            .bearer_auth(TOKEN)
            .json(&body)
    };
    slack.seed_user_message("C3", "5.0", "5.0", "U1", "someone else's");
    for (body, code) in [
        (
            json!({"channel": "C3", "ts": "9.9", "text": "x"}),
            "message_not_found",
        ),
        (
            json!({"channel": "C3", "ts": "5.0", "text": "x"}),
            "cant_update_message",
        ),
        (
            json!({"channel": "C3", "ts": answer["ts"], "text": ""}),
            "no_text",
        ),
    ] {
        let (_, _, refused) = call(update(body)).await;
        assert_eq!(error(&refused), code);
    }
}

#[tokio::test]
async fn each_method_is_rate_limited_in_its_tier_with_retry_after() {
    let slack = FakeSlack::start(TOKEN).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/chat.postMessage", slack.url);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, retry_after, _) = call(
            http.post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"channel": "C1", "text": "burst"})),
        )
        .await;
        statuses.push((status, retry_after));
    }
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(
        !limited.is_empty(),
        "one channel: about one per second, short bursts"
    );
    assert!(limited.iter().all(|(_, r)| r.as_deref() == Some("1")));
    let (status, _, _) = call(
        http.post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({"channel": "C2", "text": "another channel"})),
    )
    .await;
    assert_eq!(status, 200, "the limit is per channel");
    // Tier 3 (chat.update): 50 per minute per workspace.
    let posted = slack.posts()[0]["ts"].as_str().unwrap().to_owned();
    let mut tier3 = Vec::new();
    for _ in 0..20 {
        let (status, retry_after, _) = call(
            http.post(format!("{}/chat.update", slack.url))
                .bearer_auth(TOKEN)
                .json(&json!({"channel": "C1", "ts": posted, "text": "again"})),
        )
        .await;
        tier3.push((status, retry_after));
    }
    assert!(tier3.iter().any(|(s, _)| *s == 429), "{tier3:?}");
    assert!(slack
        .errors()
        .iter()
        .any(|(method, code)| method == "chat.update" && code == "ratelimited"));
}

#[tokio::test]
async fn the_client_passes_the_strict_fake() {
    let slack = FakeSlack::start_with(FakeSlackOptions {
        max_page: 2,
        ..FakeSlackOptions::new(TOKEN)
    })
    .await
    .unwrap();
    slack.seed_user_message("C1", "1.0", "1.0", "U1", "root");
    for index in 0..4 {
        slack.seed_user_message("C1", "1.0", &format!("1.{index}1"), "U2", "earlier");
    }
    let client = SlackClient::new(&slack.url, TOKEN);
    let tag = ChunkTag {
        execution_id: "exe_1",
        chunk_index: 0,
        chunk_count: 2,
    };
    let ts = client
        .post_chunk("C1", Some("1.0"), "first", tag)
        .await
        .unwrap();
    client
        .update_message("C1", &ts, "first, edited", Some(tag.metadata()))
        .await
        .unwrap();
    let thread = client.thread("C1", "1.0", 10).await.unwrap();
    assert_eq!(thread.len(), 6, "every page read: {thread:?}");
    assert_eq!(thread[0]["text"], "root");
    assert_eq!(thread[5]["metadata"]["event_type"], CHUNK_EVENT_TYPE);
    assert_eq!(
        client.posted_chunks("C1", "1.0", "exe_1").await.unwrap(),
        vec![0]
    );
    assert_eq!(slack.thread("C1", "1.0")[5]["text"], "first, edited");
    let err = client
        .post_message(GONE_CHANNEL, None, "x", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("channel_not_found"));
    assert!(
        slack
            .errors()
            .iter()
            .all(|(_, code)| code == "channel_not_found"),
        "the client broke no rule: {:?}",
        slack.errors()
    );
    slack.rate_limit_next(1);
    assert_eq!(
        client.post_message("C1", None, "x", None).await,
        Err(SlackApiError::RateLimited {
            retry_after: Duration::from_secs(1)
        })
    );
}
