//! A **strict** fake of Slack's Web API over real HTTP (`SLACK_API_URL` points at it). It
//! serves `chat.postMessage`, `chat.update` and `conversations.replies` and enforces the
//! rules Slack documents (the Web API guide, the rate-limit guide, each method's page and
//! the published description in slackapi/slack-api-specs), so a client that breaks them
//! fails here as it would against Slack:
//!
//! - the token: `Authorization: Bearer <token>` (or a `token` form/query argument; never
//!   inside a JSON body) — none is `not_authed`, another is `invalid_auth`;
//! - arguments: write methods take a JSON body (`application/json`) or a form; read methods
//!   (`conversations.replies`) take query or form parameters only: Slack does not read a JSON
//!   body there, so its arguments are missing (`invalid_arguments`, naming the field in
//!   `response_metadata.messages`); a POST body without a content type is
//!   `missing_post_type`, an unknown one `invalid_post_type`, broken JSON `invalid_json`,
//!   JSON that is not an object `json_not_object`, an unknown method `unknown_method`;
//! - every failure is HTTP 200 `{"ok": false, "error": <code>}` except rate limits: HTTP 429
//!   with `Retry-After` (seconds) per method tier — `chat.postMessage` about one message per
//!   second per channel with short bursts, `chat.update` and `conversations.replies` Tier 3
//!   (50 per minute per workspace, sporadic bursts);
//! - texts: no text is `no_text`, more than 40,000 characters `msg_too_long`;
//! - `metadata`: an object (or a JSON string) with a string `event_type` and an object
//!   `event_payload` — otherwise `invalid_metadata_format` / `invalid_metadata_schema`;
//! - channels: [`GONE_CHANNEL`] is `channel_not_found`, [`ARCHIVED_CHANNEL`] `is_archived`,
//!   [`NOT_IN_CHANNEL`] `not_in_channel`; `chat.update` of an unknown message is
//!   `message_not_found`, of someone else's `cant_update_message`;
//! - `conversations.replies`: `channel` and `ts` required, `thread_not_found` for a thread it
//!   does not know, cursor pagination (`limit`, `response_metadata.next_cursor`), metadata
//!   only with `include_all_metadata`.
//!
//! A reply posted into a thread the fake has not seen makes the thread exist (in Slack the
//! person's message that started it is there); tests that need earlier messages seed them.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Channels that answer `channel_not_found` (a deleted channel).
pub const GONE_CHANNEL: &str = "C_GONE";
/// Channels that answer `is_archived`.
pub const ARCHIVED_CHANNEL: &str = "C_ARCHIVED";
/// Channels that answer `not_in_channel` (the bot was removed).
pub const NOT_IN_CHANNEL: &str = "C_NOT_IN";
/// The bot's user id on the messages it posts.
pub const BOT_USER: &str = "UBOT";
/// The bot's bot id on the messages it posts.
pub const BOT_ID: &str = "BBOT";
/// Longest message text Slack accepts.
pub const MAX_TEXT_CHARS: usize = 40_000;

/// Whether a method takes a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Write methods: JSON or form.
    Write,
    /// Read methods: query or form only.
    Read,
}

/// A method's rate-limit tier: `per_minute` sustained, `burst` at once, per workspace or
/// per channel.
#[derive(Debug, Clone, Copy)]
struct Tier {
    per_minute: f64,
    burst: f64,
    per_channel: bool,
}

/// The methods served: (name, kind, tier).
const METHODS: [(&str, Kind, Tier); 3] = [
    // "Special" tier: about one message per second per channel, short bursts allowed.
    (
        "chat.postMessage",
        Kind::Write,
        Tier {
            per_minute: 60.0,
            burst: 5.0,
            per_channel: true,
        },
    ),
    // Tier 3: 50+ per minute, sporadic bursts.
    (
        "chat.update",
        Kind::Write,
        Tier {
            per_minute: 50.0,
            burst: 10.0,
            per_channel: false,
        },
    ),
    (
        "conversations.replies",
        Kind::Read,
        Tier {
            per_minute: 50.0,
            burst: 10.0,
            per_channel: false,
        },
    ),
];

/// How to start a [`FakeSlack`].
#[derive(Debug, Clone)]
pub struct FakeSlackOptions {
    /// The bot token it accepts.
    pub token: String,
    /// Multiplies every tier's rate and burst (1.0 = Slack's documented numbers; the
    /// benchmark raises it to measure Centaur rather than the tier).
    pub rate_scale: f64,
    /// Most messages one `conversations.replies` page returns (Slack: 1,000; 15 for apps
    /// outside the Marketplace).
    pub max_page: usize,
}

impl FakeSlackOptions {
    /// Slack's documented limits for `token`.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            rate_scale: 1.0,
            max_page: 1000,
        }
    }
}

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
    options: FakeSlackOptions,
    inner: Mutex<Inner>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    posts: Vec<Value>,
    post_times: Vec<Instant>,
    updates: Vec<Value>,
    calls: Vec<String>,
    errors: Vec<(String, String)>,
    /// Answers still to give `chat.postMessage` with HTTP 429 (Retry-After: 1).
    rate_limits_left: usize,
    next_ts: u64,
    /// Messages per channel, as Slack stores them.
    channels: HashMap<String, Vec<Value>>,
    buckets: HashMap<String, Bucket>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A refusal: HTTP 200 `ok:false` (or 429 for rate limits).
struct Refusal {
    code: &'static str,
    retry_after: Option<u64>,
    messages: Vec<String>,
}

fn refuse(code: &'static str) -> Refusal {
    Refusal {
        code,
        retry_after: None,
        messages: Vec::new(),
    }
}

fn missing(field: &str) -> Refusal {
    Refusal {
        code: "invalid_arguments",
        retry_after: None,
        messages: vec![format!("[ERROR] missing required field: {field}")],
    }
}

type Args = Map<String, Value>;

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
fn decode(part: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(part.len());
    let mut index = 0;
    while index < part.len() {
        match part[index] {
            b'+' => bytes.push(b' '),
            b'%' if index + 2 < part.len() => {
                let hex = std::str::from_utf8(&part[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        bytes.push(byte);
                        index += 2;
                    }
                    Err(_) => bytes.push(b'%'),
                }
            }
            byte => bytes.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn form_args(raw: &[u8], into: &mut Args) {
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[..0]),
        };
        into.insert(decode(key), Value::String(decode(value)));
    }
}

/// An argument as text (form values are strings; JSON values may be numbers).
fn text_arg(args: &Args, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flag_arg(args: &Args, name: &str) -> bool {
    matches!(text_arg(args, name).as_deref(), Some("true" | "1"))
}

/// Parses the request into arguments and the token, as Slack reads them.
fn read_request(
    kind: Kind,
    http_method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<(Args, Option<String>), Refusal> {
    let mut args = Args::new();
    if let Some(query) = query {
        form_args(query.as_bytes(), &mut args);
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if *http_method == Method::POST && !body.is_empty() {
        match content_type.as_deref() {
            None => return Err(refuse("missing_post_type")),
            Some("application/x-www-form-urlencoded") => {
                if std::str::from_utf8(body).is_err() {
                    return Err(refuse("invalid_form_data"));
                }
                form_args(body, &mut args);
            }
            Some("application/json") => {
                // Read methods do not take JSON: the body's arguments are not read.
                if kind == Kind::Write {
                    let parsed: Value =
                        serde_json::from_slice(body).map_err(|_| refuse("invalid_json"))?;
                    let Value::Object(object) = parsed else {
                        return Err(refuse("json_not_object"));
                    };
                    // A token inside a JSON body is not read either.
                    args.extend(object.into_iter().filter(|(key, _)| key != "token"));
                }
            }
            Some(_) => return Err(refuse("invalid_post_type")),
        }
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = bearer.or_else(|| text_arg(&args, "token"));
    Ok((args, token))
}

/// Checks `metadata` as Slack does: an object, or a JSON string of one, with a string
/// `event_type` and an object `event_payload`.
fn metadata_arg(args: &Args) -> Result<Option<Value>, Refusal> {
    let Some(raw) = args.get("metadata") else {
        return Ok(None);
    };
    let value = match raw {
        Value::String(text) => {
            serde_json::from_str(text).map_err(|_| refuse("invalid_metadata_format"))?
        }
        other => other.clone(),
    };
    let Value::Object(object) = &value else {
        return Err(refuse("invalid_metadata_format"));
    };
    let typed = object
        .get("event_type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !typed || !object.get("event_payload").is_some_and(Value::is_object) {
        return Err(refuse("invalid_metadata_schema"));
    }
    Ok(Some(value))
}

/// The message text: required unless blocks or attachments carry the content.
fn text_of(args: &Args) -> Result<String, Refusal> {
    let text = text_arg(args, "text").unwrap_or_default();
    let has_content = ["blocks", "attachments"]
        .iter()
        .any(|field| args.get(*field).is_some_and(|v| !v.is_null()));
    if text.trim().is_empty() && !has_content {
        return Err(refuse("no_text"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(refuse("msg_too_long"));
    }
    Ok(text)
}

fn channel_of(args: &Args) -> Result<String, Refusal> {
    let channel = text_arg(args, "channel").unwrap_or_default();
    match channel.as_str() {
        "" | GONE_CHANNEL => Err(refuse("channel_not_found")),
        ARCHIVED_CHANNEL => Err(refuse("is_archived")),
        NOT_IN_CHANNEL => Err(refuse("not_in_channel")),
        _ => Ok(channel),
    }
}

impl Inner {
    /// Takes a token from the method's bucket, or says how long to wait.
    fn throttle(&mut self, key: String, tier: Tier, scale: f64) -> Result<(), u64> {
        let rate = tier.per_minute * scale / 60.0;
        let capacity = (tier.burst * scale).max(1.0);
        let now = Instant::now();
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
    }

    fn new_ts(&mut self) -> String {
        self.next_ts += 1;
        format!("1800000000.{:06}", self.next_ts)
    }

    fn find(&mut self, channel: &str, ts: &str) -> Option<&mut Value> {
        self.channels
            .get_mut(channel)?
            .iter_mut()
            .find(|m| m["ts"] == ts)
    }

    fn post_message(&mut self, args: &Args) -> Result<Value, Refusal> {
        let channel = channel_of(args)?;
        let text = text_of(args)?;
        let metadata = metadata_arg(args)?;
        let thread_ts = text_arg(args, "thread_ts").filter(|t| !t.is_empty());
        if let Some(root) = &thread_ts {
            if self.find(&channel, root).is_none() {
                // The person's message that started the thread.
                self.channels
                    .entry(channel.clone())
                    .or_default()
                    .push(json!({"type": "message", "ts": root, "user": "U_UNKNOWN", "text": ""}));
            }
        }
        let ts = self.new_ts();
        let mut message = json!({"type": "message", "ts": ts, "text": text,
                                 "user": BOT_USER, "bot_id": BOT_ID});
        if let Some(root) = &thread_ts {
            message["thread_ts"] = json!(root);
        }
        if let Some(metadata) = metadata {
            message["metadata"] = metadata;
        }
        self.channels
            .entry(channel.clone())
            .or_default()
            .push(message.clone());
        let mut recorded = Value::Object(args.clone());
        recorded["ts"] = json!(ts);
        if let Some(metadata) = message.get("metadata") {
            recorded["metadata"] = metadata.clone();
        }
        self.posts.push(recorded);
        self.post_times.push(Instant::now());
        Ok(json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
    }

    fn update(&mut self, args: &Args) -> Result<Value, Refusal> {
        let channel = channel_of(args)?;
        let ts = text_arg(args, "ts").ok_or_else(|| missing("ts"))?;
        let text = text_of(args)?;
        let metadata = metadata_arg(args)?;
        let Some(message) = self.find(&channel, &ts) else {
            return Err(refuse("message_not_found"));
        };
        if message["bot_id"] != BOT_ID {
            return Err(refuse("cant_update_message"));
        }
        message["text"] = json!(text);
        message["edited"] = json!({"user": BOT_USER});
        if let Some(metadata) = metadata {
            message["metadata"] = metadata;
        }
        let message = message.clone();
        let mut recorded = Value::Object(args.clone());
        if let Some(metadata) = message.get("metadata") {
            recorded["metadata"] = metadata.clone();
        }
        self.updates.push(recorded);
        Ok(json!({"ok": true, "channel": channel, "ts": ts, "text": text, "message": message}))
    }

    fn replies(&mut self, args: &Args, max_page: usize) -> Result<Value, Refusal> {
        let channel = text_arg(args, "channel").ok_or_else(|| missing("channel"))?;
        let ts = text_arg(args, "ts").ok_or_else(|| missing("ts"))?;
        let channel = channel_of(&Args::from_iter([("channel".to_owned(), json!(channel))]))?;
        let with_metadata = flag_arg(args, "include_all_metadata");
        let limit = text_arg(args, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(1000)
            .clamp(1, max_page.max(1));
        let offset = match text_arg(args, "cursor").filter(|c| !c.is_empty()) {
            Some(cursor) => cursor
                .strip_prefix("page:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| refuse("invalid_cursor"))?,
            None => 0,
        };
        let messages = self.channels.get(&channel).cloned().unwrap_or_default();
        if !messages.iter().any(|m| m["ts"] == ts) {
            return Err(refuse("thread_not_found"));
        }
        let mut thread: Vec<Value> = messages
            .into_iter()
            .filter(|m| m["ts"] == ts || m["thread_ts"] == ts)
            .map(|mut m| {
                if !with_metadata {
                    if let Some(object) = m.as_object_mut() {
                        object.remove("metadata");
                    }
                }
                m
            })
            .collect();
        thread.sort_by(|a, b| ts_key(&a["ts"]).total_cmp(&ts_key(&b["ts"])));
        let page: Vec<Value> = thread.iter().skip(offset).take(limit).cloned().collect();
        let more = offset + page.len() < thread.len();
        let next = if more {
            format!("page:{}", offset + page.len())
        } else {
            String::new()
        };
        Ok(json!({"ok": true, "messages": page, "has_more": more,
                  "response_metadata": {"next_cursor": next}}))
    }
}

fn ts_key(ts: &Value) -> f64 {
    ts.as_str()
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or(0.0)
}

async fn handle(
    State(state): State<Arc<Shared>>,
    Path(method): Path<String>,
    http_method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut inner = state.lock();
    inner.calls.push(method.clone());
    let outcome = serve(
        &state,
        &mut inner,
        &method,
        &http_method,
        &headers,
        query,
        &body,
    );
    match outcome {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => {
            inner.errors.push((method, refusal.code.to_owned()));
            let mut body = json!({"ok": false, "error": refusal.code});
            if !refusal.messages.is_empty() {
                body["response_metadata"] = json!({"messages": refusal.messages});
            }
            match refusal.retry_after {
                Some(secs) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", secs.to_string())],
                    Json(body),
                )
                    .into_response(),
                None => Json(body).into_response(),
            }
        }
    }
}

fn serve(
    state: &Shared,
    inner: &mut Inner,
    method: &str,
    http_method: &Method,
    headers: &HeaderMap,
    query: Option<String>,
    body: &[u8],
) -> Result<Value, Refusal> {
    let Some((_, kind, tier)) = METHODS.iter().find(|(name, _, _)| *name == method) else {
        return Err(refuse("unknown_method"));
    };
    let (args, token) = read_request(*kind, http_method, headers, query.as_deref(), body)?;
    match token {
        None => return Err(refuse("not_authed")),
        Some(token) if token != state.options.token => return Err(refuse("invalid_auth")),
        Some(_) => {}
    }
    let rate_limited = |secs: u64| Refusal {
        code: "ratelimited",
        retry_after: Some(secs),
        messages: Vec::new(),
    };
    if method == "chat.postMessage" && inner.rate_limits_left > 0 {
        inner.rate_limits_left -= 1;
        return Err(rate_limited(1));
    }
    let key = if tier.per_channel {
        format!(
            "{method}/{}",
            text_arg(&args, "channel").unwrap_or_default()
        )
    } else {
        method.to_owned()
    };
    inner
        .throttle(key, *tier, state.options.rate_scale)
        .map_err(rate_limited)?;
    match method {
        "chat.postMessage" => inner.post_message(&args),
        "chat.update" => inner.update(&args),
        _ => inner.replies(&args, state.options.max_page),
    }
}

impl FakeSlack {
    /// Starts the fake with Slack's documented limits, accepting `token` as the bot token.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        Self::start_with(FakeSlackOptions::new(token)).await
    }

    /// Starts the fake with `options`.
    pub async fn start_with(options: FakeSlackOptions) -> anyhow::Result<Self> {
        let state = Arc::new(Shared {
            options,
            inner: Mutex::new(Inner::default()),
        });
        let router = Router::new()
            .route("/{method}", any(handle))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { url, state, server })
    }

    /// Every successful `chat.postMessage`, in order: its arguments and the `ts` given.
    pub fn posts(&self) -> Vec<Value> {
        self.state.lock().posts.clone()
    }

    /// Every successful post with the moment it arrived, in order.
    pub fn timed_posts(&self) -> Vec<(Value, Instant)> {
        let inner = self.state.lock();
        inner
            .posts
            .iter()
            .cloned()
            .zip(inner.post_times.iter().copied())
            .collect()
    }

    /// Every successful `chat.update`, in order: its arguments.
    pub fn updates(&self) -> Vec<Value> {
        self.state.lock().updates.clone()
    }

    /// Every Web API method called, in order (including refused calls).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().calls.clone()
    }

    /// Every refused call: (method, Slack error code), `ratelimited` for HTTP 429s.
    pub fn errors(&self) -> Vec<(String, String)> {
        self.state.lock().errors.clone()
    }

    /// The thread's messages as Slack shows them now (after updates), oldest first.
    pub fn thread(&self, channel: &str, thread_ts: &str) -> Vec<Value> {
        let inner = self.state.lock();
        let mut thread: Vec<Value> = inner
            .channels
            .get(channel)
            .into_iter()
            .flatten()
            .filter(|m| m["ts"] == thread_ts || m["thread_ts"] == thread_ts)
            .cloned()
            .collect();
        thread.sort_by(|a, b| ts_key(&a["ts"]).total_cmp(&ts_key(&b["ts"])));
        thread
    }

    /// The next `count` posts are answered with HTTP 429 and `Retry-After: 1`.
    pub fn rate_limit_next(&self, count: usize) {
        self.state.lock().rate_limits_left = count;
    }

    /// Records a message as already in a thread (a person's message, or a delivery that
    /// died mid-way): `message` needs no `thread_ts`/`ts`, they are filled in (`ts` fresh
    /// unless given).
    pub fn seed_thread_message(&self, channel: &str, thread_ts: &str, message: Value) {
        let mut inner = self.state.lock();
        let mut message = message;
        if message.get("ts").is_none() {
            message["ts"] = json!(inner.new_ts());
        }
        let messages = inner.channels.entry(channel.to_owned()).or_default();
        if !messages.iter().any(|m| m["ts"] == thread_ts) && message["ts"] != thread_ts {
            messages
                .push(json!({"type": "message", "ts": thread_ts, "user": "U_UNKNOWN", "text": ""}));
        }
        if message["ts"] != thread_ts {
            message["thread_ts"] = json!(thread_ts);
        }
        if message.get("type").is_none() {
            message["type"] = json!("message");
        }
        messages.push(message);
    }

    /// Records a person's message `ts` by `user` (the thread's parent when `ts` equals
    /// `thread_ts`).
    pub fn seed_user_message(
        &self,
        channel: &str,
        thread_ts: &str,
        ts: &str,
        user: &str,
        text: &str,
    ) {
        self.seed_thread_message(
            channel,
            thread_ts,
            json!({"ts": ts, "user": user, "text": text, "team": "T1"}),
        );
    }
}
