//! Request and response bodies of the HTTP API (api.md). Shared by the functions that serve
//! them and the clients that call them (the Slack webhook, tests, benchmarks).
//!
//! Requests are deserialised permissively (unknown fields ignored); validation that needs a
//! message naming the field happens in the handlers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Error codes of the control plane (`{"code": ..., "message": ...}`).
pub mod codes {
    pub const NO_ACTIVE_ASSIGNMENT: &str = "NO_ACTIVE_ASSIGNMENT";
    pub const ASSIGNMENT_GENERATION_STALE: &str = "ASSIGNMENT_GENERATION_STALE";
    pub const ACTIVE_ASSIGNMENT_PROMPT_MISMATCH: &str = "ACTIVE_ASSIGNMENT_PROMPT_MISMATCH";
    pub const IDEMPOTENCY_PAYLOAD_MISMATCH: &str = "IDEMPOTENCY_PAYLOAD_MISMATCH";
    pub const THREAD_FAILURE_LOOP: &str = "THREAD_FAILURE_LOOP";
    pub const NO_PENDING_MESSAGES: &str = "NO_PENDING_MESSAGES";
    pub const DELIVERY_LEASE_LOST: &str = "DELIVERY_LEASE_LOST";
    pub const UNKNOWN_HARNESS: &str = "UNKNOWN_HARNESS";
    /// A `repo` that is not `owner/name` or an `https://host/owner/name` URL (422).
    pub const INVALID_REPO: &str = "INVALID_REPO";
    /// A `repo` outside the deployment's `AGENT_REPOS_ALLOWED` (422).
    pub const REPO_NOT_ALLOWED: &str = "REPO_NOT_ALLOWED";
    pub const INVALID_MESSAGE: &str = "INVALID_MESSAGE";
    pub const VALIDATION_ERROR: &str = "VALIDATION_ERROR";
    pub const INVALID_JSON: &str = "INVALID_JSON";
    pub const INVALID_PATH: &str = "INVALID_PATH";
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    pub const URI_TOO_LONG: &str = "URI_TOO_LONG";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    pub const INTERNAL: &str = "INTERNAL";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
}

/// Longest accepted `agents_md_override`, in bytes (larger → 422).
pub const MAX_AGENTS_MD_OVERRIDE_BYTES: usize = 64 * 1024;

/// `POST /agent/spawn`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnRequest {
    pub thread_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    /// The repository to work in (`owner/name` or an https URL); default `AGENT_REPO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The thread's own instructions, appended to the base prompt and the repo's AGENTS.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents_md_override: Option<String>,
}

/// Response of `POST /agent/spawn`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnResponse {
    pub ok: bool,
    pub thread_key: String,
    pub assignment_generation: i64,
    pub assignment_state: String,
    pub harness: String,
    pub prompt_ref: String,
    /// The thread's repository (normal form), or none: an empty workspace.
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// One part of a message. Only `text` parts carry text; other types are kept verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagePart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One message as submitted to `/agent/message` (or inside `/agent/messages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub parts: Vec<MessagePart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// `POST /agent/message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRequest {
    pub thread_key: String,
    pub assignment_generation: i64,
    #[serde(flatten)]
    pub message: NewMessage,
}

/// Response of `POST /agent/message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageResponse {
    pub ok: bool,
    pub message_id: String,
    pub stored_event_id: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// `POST /agent/execute`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub thread_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The one-call path: text to spawn + message + execute with `dev` delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Harness for the one-call path's spawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    /// Repository for the one-call path's spawn (as on `/agent/spawn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// `agents_md_override` for the one-call path's spawn (as on `/agent/spawn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents_md_override: Option<String>,
}

/// Response of `POST /agent/execute` (202).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecuteResponse {
    pub ok: bool,
    pub execution_id: String,
    pub execute_id: String,
    pub assignment_generation: i64,
    pub status: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// One stored event as returned by the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    pub event_id: i64,
    /// The event's place in its thread: gap-free, in commit order (the SSE `id`).
    pub thread_seq: i64,
    pub event_kind: String,
    pub event_json: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /agent/executions/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionView {
    pub execution_id: String,
    pub thread_key: String,
    pub assignment_generation: i64,
    pub execute_id: String,
    pub status: String,
    pub terminal_reason: Option<String>,
    pub result_text: Option<String>,
    pub error_text: Option<String>,
    pub agent_thread_id: Option<String>,
    pub harness: String,
    pub sandbox_id: Option<String>,
    pub attempt: i32,
    pub delivery: Value,
    pub metadata: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The tokens the harness reported for this turn (zero until it reports any).
    #[serde(default)]
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
}

/// Tokens a harness reported (`usage` harness events, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// The error body of the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// One HTTP route a function serves: the method and the path template (`{id}` segments).
/// Each function crate exports `pub const ROUTES: &[Route]`; the AWS template and the
/// Helm chart are checked against these lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}
