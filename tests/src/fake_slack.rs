//! A fake Slack Web API over real HTTP (`SLACK_API_URL` points at it): `chat.postMessage`
//! and `conversations.replies`, checking the bot token, recording every post, and able to
//! answer like Slack does when rate limited or when a channel is gone.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Channels that answer `channel_not_found`.
pub const GONE_CHANNEL: &str = "C_GONE";

/// The running fake.
pub struct FakeSlack {
    /// Base URL, e.g. `http://127.0.0.1:1234` (what `SLACK_API_URL` is set to).
    pub url: String,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    posts: Vec<Value>,
    post_times: Vec<std::time::Instant>,
    calls: Vec<String>,
    /// Answers still to give with HTTP 429 (Retry-After: 1) before posting works.
    rate_limits_left: usize,
    next_ts: u64,
    /// Posted messages per `channel/thread_ts`, as `conversations.replies` returns them.
    threads: HashMap<String, Vec<Value>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn authorised(state: &Shared, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", state.token))
}

async fn post_message(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = state.lock();
    inner.calls.push("chat.postMessage".into());
    if !authorised(&state, &headers) {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    if inner.rate_limits_left > 0 {
        inner.rate_limits_left -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    if channel == GONE_CHANNEL {
        return Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
    }
    inner.next_ts += 1;
    let ts = format!("1800000000.{:06}", inner.next_ts);
    let mut message = body.clone();
    message["ts"] = json!(ts);
    let thread = format!("{channel}/{}", body["thread_ts"].as_str().unwrap_or(&ts));
    inner
        .threads
        .entry(thread)
        .or_default()
        .push(message.clone());
    inner.posts.push(message);
    inner.post_times.push(std::time::Instant::now());
    Json(json!({"ok": true, "channel": channel, "ts": ts})).into_response()
}

async fn replies(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = state.lock();
    inner.calls.push("conversations.replies".into());
    if !authorised(&state, &headers) {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let thread = format!(
        "{}/{}",
        body["channel"].as_str().unwrap_or_default(),
        body["ts"].as_str().unwrap_or_default()
    );
    let messages = inner.threads.get(&thread).cloned().unwrap_or_default();
    Json(json!({"ok": true, "messages": messages, "has_more": false})).into_response()
}

impl FakeSlack {
    /// Starts the fake, accepting `token` as the bot token.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Shared {
            token: token.to_owned(),
            inner: Mutex::new(Inner::default()),
        });
        let router = Router::new()
            .route("/chat.postMessage", post(post_message))
            .route("/conversations.replies", post(replies))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { url, state, server })
    }

    /// Every successful post, in order.
    pub fn posts(&self) -> Vec<Value> {
        self.state.lock().posts.clone()
    }

    /// Every successful post with the moment it arrived, in order.
    pub fn timed_posts(&self) -> Vec<(Value, std::time::Instant)> {
        let inner = self.state.lock();
        inner
            .posts
            .iter()
            .cloned()
            .zip(inner.post_times.iter().copied())
            .collect()
    }

    /// Every Web API method called, in order (including refused calls).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().calls.clone()
    }

    /// The next `count` posts are answered with HTTP 429 and `Retry-After: 1`.
    pub fn rate_limit_next(&self, count: usize) {
        self.state.lock().rate_limits_left = count;
    }

    /// Records a message as already posted in a thread (a delivery that died mid-way).
    pub fn seed_thread_message(&self, channel: &str, thread_ts: &str, message: Value) {
        let mut inner = self.state.lock();
        inner
            .threads
            .entry(format!("{channel}/{thread_ts}"))
            .or_default()
            .push(message);
    }
}
