//! The slice of Slack's Web API Centaur uses, called the way Slack documents it: the bot
//! token as `Authorization: Bearer`, write methods (`chat.postMessage`, `chat.update`) with a
//! JSON body, read methods (`conversations.replies`) with query parameters only (Slack does
//! not read a JSON body there), `ok:false` answers and HTTP 429 classified for retries.

use serde_json::{json, Value};
use std::time::Duration;

/// Slack error codes worth retrying (besides `ratelimited`): Slack's own trouble.
const TRANSIENT_ERRORS: [&str; 4] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// The `event_type` of the metadata attached to every posted answer chunk.
pub const CHUNK_EVENT_TYPE: &str = "centaur_reply_chunk";
/// The `event_type` of the live status message of a running turn.
pub const STATUS_EVENT_TYPE: &str = "centaur_status";
/// The `event_type` of a notice (a refused turn) posted into a thread.
pub const NOTICE_EVENT_TYPE: &str = "centaur_notice";

/// Most messages one `conversations.replies` page asks for (Slack's maximum is 1,000; apps
/// outside the Marketplace get at most 15, which pagination handles the same way).
pub const REPLIES_PAGE_LIMIT: u32 = 200;

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
    #[error("Slack refused the request: {method}: {code}")]
    Permanent {
        /// The Web API method, e.g. `chat.postMessage`.
        method: String,
        /// Slack's error code, e.g. `channel_not_found`.
        code: String,
    },
}

impl SlackApiError {
    /// Slack's error code of a permanent failure.
    pub fn code(&self) -> Option<&str> {
        match self {
            SlackApiError::Permanent { code, .. } => Some(code),
            _ => None,
        }
    }
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

impl ChunkTag<'_> {
    /// The message metadata (`{event_type, event_payload}`) of this chunk.
    pub fn metadata(&self) -> Value {
        json!({
            "event_type": CHUNK_EVENT_TYPE,
            "event_payload": {
                "execution_id": self.execution_id,
                "chunk_index": self.chunk_index,
                "chunk_count": self.chunk_count,
            },
        })
    }
}

/// Message metadata tagging a message with one id of ours: `{event_type, event_payload:
/// {<key>: <id>}}` (the status message of an execution, a notice).
pub fn tag(event_type: &str, key: &str, id: &str) -> Value {
    json!({"event_type": event_type, "event_payload": {key: id}})
}

/// One page of `conversations.replies`.
#[derive(Debug, Clone, PartialEq)]
pub struct RepliesPage {
    /// The thread's messages on this page, oldest first (the parent comes first).
    pub messages: Vec<Value>,
    /// The cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

impl SlackClient {
    /// A client calling `base_url` (`https://slack.com/api`, or a fake in tests).
    pub fn new(base_url: &str, token: &str) -> Self {
        Self::with_timeout(base_url, token, Duration::from_secs(15))
    }

    /// [`SlackClient::new`] with another per-call timeout.
    pub fn with_timeout(base_url: &str, token: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// `chat.postMessage` into a thread (or the channel), with optional metadata; the
    /// posted message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        metadata: Option<Value>,
    ) -> Result<String, SlackApiError> {
        let mut body = json!({"channel": channel, "text": text, "unfurl_links": false});
        if let Some(thread_ts) = thread_ts {
            body["thread_ts"] = json!(thread_ts);
        }
        if let Some(metadata) = metadata {
            body["metadata"] = metadata;
        }
        let response = self.write("chat.postMessage", &body).await?;
        Ok(response["ts"].as_str().unwrap_or_default().to_owned())
    }

    /// `chat.postMessage` of one answer chunk, tagged with its metadata; the posted `ts`.
    pub async fn post_chunk(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        tag: ChunkTag<'_>,
    ) -> Result<String, SlackApiError> {
        self.post_message(channel, thread_ts, text, Some(tag.metadata()))
            .await
    }

    /// `chat.update` of the message `ts` with new text and (optionally) new metadata.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        metadata: Option<Value>,
    ) -> Result<(), SlackApiError> {
        let mut body = json!({"channel": channel, "ts": ts, "text": text});
        if let Some(metadata) = metadata {
            body["metadata"] = metadata;
        }
        self.write("chat.update", &body).await?;
        Ok(())
    }

    /// One page of `conversations.replies` (query parameters, metadata included).
    pub async fn replies_page(
        &self,
        channel: &str,
        thread_ts: &str,
        cursor: Option<&str>,
    ) -> Result<RepliesPage, SlackApiError> {
        let limit = REPLIES_PAGE_LIMIT.to_string();
        let mut params = vec![
            ("channel", channel),
            ("ts", thread_ts),
            ("include_all_metadata", "true"),
            ("limit", limit.as_str()),
        ];
        if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
            params.push(("cursor", cursor));
        }
        let response = self.read("conversations.replies", &params).await?;
        Ok(RepliesPage {
            messages: response["messages"].as_array().cloned().unwrap_or_default(),
            next_cursor: response["response_metadata"]["next_cursor"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        })
    }

    /// The whole thread (every page of `conversations.replies`), oldest first, reading at
    /// most `max_pages` pages.
    pub async fn thread(
        &self,
        channel: &str,
        thread_ts: &str,
        max_pages: usize,
    ) -> Result<Vec<Value>, SlackApiError> {
        let mut messages = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..max_pages.max(1) {
            let page = self
                .replies_page(channel, thread_ts, cursor.as_deref())
                .await?;
            messages.extend(page.messages);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(messages)
    }

    /// The chunk indexes of `execution_id` already posted in the thread (read back from
    /// message metadata), so a re-delivery skips them.
    pub async fn posted_chunks(
        &self,
        channel: &str,
        thread_ts: &str,
        execution_id: &str,
    ) -> Result<Vec<usize>, SlackApiError> {
        Ok(self
            .thread(channel, thread_ts, 50)
            .await?
            .iter()
            .filter(|m| m["metadata"]["event_type"] == CHUNK_EVENT_TYPE)
            .map(|m| &m["metadata"]["event_payload"])
            .filter(|p| p["execution_id"] == execution_id)
            .filter_map(|p| p["chunk_index"].as_u64().map(|i| i as usize))
            .collect())
    }

    /// The `ts` of a message in the thread tagged `{event_type, event_payload: {key: id}}`
    /// (a status message or notice posted by a deliverer that died before recording it).
    pub async fn find_tagged(
        &self,
        channel: &str,
        thread_ts: &str,
        event_type: &str,
        key: &str,
        id: &str,
    ) -> Result<Option<String>, SlackApiError> {
        Ok(self
            .thread(channel, thread_ts, 50)
            .await?
            .iter()
            .find(|m| {
                m["metadata"]["event_type"] == event_type
                    && m["metadata"]["event_payload"][key] == id
            })
            .and_then(|m| m["ts"].as_str())
            .map(str::to_owned))
    }

    /// A write method: POST with a JSON body.
    async fn write(&self, method: &str, body: &Value) -> Result<Value, SlackApiError> {
        let request = self
            .http
            .post(format!("{}/{method}", self.base_url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string());
        self.send(method, request).await
    }

    /// A read method: GET with query parameters.
    async fn read(&self, method: &str, params: &[(&str, &str)]) -> Result<Value, SlackApiError> {
        let request = self
            .http
            .get(format!("{}/{method}", self.base_url))
            .bearer_auth(&self.token)
            .query(params);
        self.send(method, request).await
    }

    async fn send(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackApiError> {
        let response = request
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
            "ratelimited" | "rate_limited" => SlackApiError::RateLimited {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            },
            code if TRANSIENT_ERRORS.contains(&code) => {
                SlackApiError::Transient(format!("{method}: {code}"))
            }
            _ => SlackApiError::Permanent {
                method: method.to_owned(),
                code: error,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(String, Option<String>, String, String)>>>;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind: {err}"));
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .unwrap_or_else(|err| panic!("addr: {err}"))
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        url
    }

    fn header(headers: &HeaderMap, name: &str) -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn writes_send_json_with_the_bearer_token_and_reads_send_query_parameters() {
        let seen: Seen = Arc::default();
        let router = Router::new()
            .route(
                "/chat.postMessage",
                post(
                    |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                        seen.lock().unwrap_or_else(|p| p.into_inner()).push((
                            "chat.postMessage".into(),
                            header(&headers, "content-type"),
                            header(&headers, "authorization").unwrap_or_default(),
                            body,
                        ));
                        Json(json!({"ok": true, "ts": "1.000001"}))
                    },
                ),
            )
            .route(
                "/conversations.replies",
                get(
                    |State(seen): State<Seen>,
                     headers: HeaderMap,
                     Query(query): Query<HashMap<String, String>>| async move {
                        let page = query.get("cursor").cloned().unwrap_or_default();
                        seen.lock().unwrap_or_else(|p| p.into_inner()).push((
                            "conversations.replies".into(),
                            header(&headers, "content-type"),
                            header(&headers, "authorization").unwrap_or_default(),
                            serde_json::to_string(&query).unwrap_or_default(),
                        ));
                        if page.is_empty() {
                            Json(json!({"ok": true, "messages": [{"ts": "1.0"}],
                                        "response_metadata": {"next_cursor": "p2"}}))
                        } else {
                            Json(json!({"ok": true, "messages": [{"ts": "2.0"}],
                                        "response_metadata": {"next_cursor": ""}}))
                        }
                    },
                ),
            )
            .with_state(seen.clone());
        let client = SlackClient::new(&serve(router).await, "xoxb-t");
        let ts = client
            .post_message("C1", Some("1.0"), "hi", None)
            .await
            .unwrap_or_else(|err| panic!("post: {err}"));
        assert_eq!(ts, "1.000001");
        let thread = client
            .thread("C1", "1.0", 10)
            .await
            .unwrap_or_else(|err| panic!("thread: {err}"));
        assert_eq!(thread, vec![json!({"ts": "1.0"}), json!({"ts": "2.0"})]);
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(seen.len(), 3);
        let (_, content_type, auth, body) = &seen[0];
        assert!(content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/json")));
        assert_eq!(auth, "Bearer xoxb-t");
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap_or_default()["thread_ts"],
            "1.0"
        );
        let (_, content_type, auth, query) = &seen[1];
        assert_eq!(content_type, &None, "a read method sends no body");
        assert_eq!(auth, "Bearer xoxb-t");
        let query: Value = serde_json::from_str(query).unwrap_or_default();
        assert_eq!(query["channel"], "C1");
        assert_eq!(query["include_all_metadata"], "true");
        assert!(serde_json::from_str::<Value>(&seen[2].3).unwrap_or_default()["cursor"] == "p2");
    }

    #[tokio::test]
    async fn errors_are_classified() {
        let router = Router::new()
            .route(
                "/chat.postMessage",
                post(|| async { Json(json!({"ok": false, "error": "channel_not_found"})) }),
            )
            .route(
                "/chat.update",
                post(|| async {
                    (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "7")],
                        Json(json!({"ok": false, "error": "ratelimited"})),
                    )
                }),
            );
        let client = SlackClient::new(&serve(router).await, "xoxb-t");
        let err = client
            .post_message("C_GONE", None, "x", None)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Some("channel_not_found"));
        assert!(err
            .to_string()
            .contains("chat.postMessage: channel_not_found"));
        assert_eq!(
            client.update_message("C1", "1.0", "x", None).await,
            Err(SlackApiError::RateLimited {
                retry_after: Duration::from_secs(7)
            })
        );
    }
}
