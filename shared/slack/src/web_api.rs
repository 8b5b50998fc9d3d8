//! The slice of Slack's Web API the deliverer uses, with errors classified for retries.

use serde_json::{json, Value};
use std::time::Duration;

/// Slack error codes worth retrying (besides `ratelimited`): Slack's own trouble.
const TRANSIENT_ERRORS: [&str; 4] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// The `event_type` of the metadata attached to every posted chunk.
pub const CHUNK_EVENT_TYPE: &str = "centaur_reply_chunk";

/// How a Web API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackApiError {
    /// `ratelimited` or HTTP 429: try again after `retry_after`.
    #[error("rate limited by Slack (retry after {}s)", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Network trouble or a Slack-side error: retry with backoff.
    #[error("transient Slack error: {0}")]
    Transient(String),
    /// Retrying cannot help (`channel_not_found`, `not_in_channel`, `invalid_auth`, …).
    #[error("Slack refused the request: {0}")]
    Permanent(String),
}

/// A Web API client for one bot token.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl std::fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackClient")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// One chunk of a reply, as its message metadata records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkTag<'a> {
    pub execution_id: &'a str,
    pub chunk_index: usize,
    pub chunk_count: usize,
}

impl SlackClient {
    /// A client calling `base_url` (`https://slack.com/api`, or a fake in tests).
    pub fn new(base_url: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// `chat.postMessage` into a thread, tagged with the chunk's metadata; the posted `ts`.
    pub async fn post_chunk(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        tag: ChunkTag<'_>,
    ) -> Result<String, SlackApiError> {
        let mut body = json!({
            "channel": channel,
            "text": text,
            "unfurl_links": false,
            "metadata": {
                "event_type": CHUNK_EVENT_TYPE,
                "event_payload": {
                    "execution_id": tag.execution_id,
                    "chunk_index": tag.chunk_index,
                    "chunk_count": tag.chunk_count,
                },
            },
        });
        if let Some(thread_ts) = thread_ts {
            body["thread_ts"] = json!(thread_ts);
        }
        let response = self.call("chat.postMessage", &body).await?;
        Ok(response["ts"].as_str().unwrap_or_default().to_owned())
    }

    /// The chunk indexes of `execution_id` already posted in the thread (read back from
    /// message metadata with `conversations.replies`), so a re-delivery skips them.
    pub async fn posted_chunks(
        &self,
        channel: &str,
        thread_ts: &str,
        execution_id: &str,
    ) -> Result<Vec<usize>, SlackApiError> {
        let body = json!({"channel": channel, "ts": thread_ts, "include_all_metadata": true, "limit": 200});
        let response = self.call("conversations.replies", &body).await?;
        Ok(response["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["metadata"]["event_type"] == CHUNK_EVENT_TYPE)
            .map(|m| &m["metadata"]["event_payload"])
            .filter(|p| p["execution_id"] == execution_id)
            .filter_map(|p| p["chunk_index"].as_u64().map(|i| i as usize))
            .collect())
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackApiError> {
        let response = self
            .http
            .post(format!("{}/{method}", self.base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|err| SlackApiError::Transient(format!("{method}: {err}")))?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let status = response.status();
        if status.as_u16() == 429 {
            return Err(SlackApiError::RateLimited {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            });
        }
        if status.is_server_error() {
            return Err(SlackApiError::Transient(format!("{method}: HTTP {status}")));
        }
        let payload: Value = response.json().await.map_err(|err| {
            SlackApiError::Transient(format!("{method}: unreadable answer: {err}"))
        })?;
        if payload["ok"] == true {
            return Ok(payload);
        }
        let error = payload["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_owned();
        Err(match error.as_str() {
            "ratelimited" => SlackApiError::RateLimited {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            },
            code if TRANSIENT_ERRORS.contains(&code) => {
                SlackApiError::Transient(format!("{method}: {code}"))
            }
            _ => SlackApiError::Permanent(format!("{method}: {error}")),
        })
    }
}
