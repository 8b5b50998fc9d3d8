//! Slack's side of the Events API: requests signed with the real v0 scheme, posted over
//! HTTP to the webhook, and the event payloads Slack sends.

use centaur_slack::signature::sign;
use serde_json::{json, Value};

/// Posts `event` to `<api_url>/api/webhooks/slack` signed with `secret`, as retry
/// `retry_num` if given; the status and JSON answer.
pub async fn post_event(
    http: &reqwest::Client,
    api_url: &str,
    secret: &str,
    event: &Value,
    retry_num: Option<u32>,
) -> anyhow::Result<(u16, Value)> {
    let body = event.to_string();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let mut request = http
        .post(format!("{api_url}/api/webhooks/slack"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            sign(secret, &timestamp, body.as_bytes()),
        );
    if let Some(retry) = retry_num {
        request = request
            .header("x-slack-retry-num", retry.to_string())
            .header("x-slack-retry-reason", "http_timeout");
    }
    let response = request.body(body).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// An `app_mention` of bot `UBOT` in channel `channel` of team `T1`, starting a thread.
pub fn mention(event_id: &str, channel: &str, ts: &str, text: &str) -> Value {
    json!({
        "type": "event_callback", "team_id": "T1", "event_id": event_id,
        "authorizations": [{"user_id": "UBOT", "is_bot": true}],
        "event": {"type": "app_mention", "user": "U1", "channel": channel, "ts": ts,
                  "text": format!("<@UBOT> {text}")},
    })
}
