//! Request and response bodies of the HTTP API (api.md). Shared by the functions that serve
//! them and the clients that call them (the Slack webhook, tests, benchmarks).
//!
//! Requests are deserialised permissively (unknown fields ignored); validation that needs a
//! message naming the field happens in the handlers.
//!
//! Every type here derives [`ToSchema`]: the OpenAPI document (`GET /openapi.json`,
//! `contrib/openapi.json`) is generated from these same types, so it cannot drift from
//! what the handlers read and write.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{ExecutionStatus, Harness, TerminalReason, ThreadKey};

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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpawnRequest {
    pub thread_key: ThreadKey,
    /// Idempotency key per thread: the same key and payload replay the stored answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_id: Option<String>,
    /// Default `CENTAUR_DEFAULT_HARNESS`, else `codex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<Harness>,
    /// The repository to work in (`owner/name` or an https URL); default `AGENT_REPO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^\S+$")]
    pub repo: Option<String>,
    /// The thread's own instructions, appended to the base prompt and the repo's AGENTS.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 65536)]
    pub agents_md_override: Option<String>,
}

/// Response of `POST /agent/spawn`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpawnResponse {
    pub ok: bool,
    pub thread_key: String,
    pub assignment_generation: i64,
    /// `assigned_idle`, or `assigned_busy` while an execution of the thread is unfinished.
    pub assignment_state: String,
    pub harness: Harness,
    pub prompt_ref: String,
    /// The thread's repository (normal form), or none: an empty workspace.
    #[serde(default)]
    pub repo: Option<String>,
    /// True when this is the stored answer of an earlier identical request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// One part of a message: the one part type the API, the stored `messages.parts` and the
/// sandbox protocol share (defined beside the protocol, which does not depend on this crate).
pub use centaur_harness::MessagePart;

/// The roles a message may have.
pub const MESSAGE_ROLES: [&str; 3] = ["user", "assistant", "system"];

/// One message as submitted to `/agent/message` (or inside `/agent/messages`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewMessage {
    /// Idempotency key per thread; generated when absent or blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `user` (default), `assistant` or `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(user|assistant|system)$")]
    pub role: Option<String>,
    /// At least one part (none → 400 `INVALID_MESSAGE`).
    #[schema(min_items = 1)]
    pub parts: Vec<MessagePart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// A JSON object (or null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `POST /agent/message`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageRequest {
    pub thread_key: ThreadKey,
    /// The active assignment's generation (the fencing token).
    pub assignment_generation: i64,
    #[serde(flatten)]
    pub message: NewMessage,
}

/// Response of `POST /agent/message`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    pub ok: bool,
    pub message_id: String,
    pub stored_event_id: i64,
    /// True when this is the stored answer of an earlier identical request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// `POST /agent/messages`: several messages stored all or nothing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageBatchRequest {
    pub thread_key: ThreadKey,
    /// The active assignment's generation (the fencing token).
    pub assignment_generation: i64,
    /// At least one message (none → 400 `INVALID_MESSAGE`).
    #[schema(min_items = 1)]
    pub messages: Vec<NewMessage>,
}

/// Response of `POST /agent/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageBatchResponse {
    pub ok: bool,
    pub inserted: usize,
    pub message_ids: Vec<String>,
}

/// `POST /agent/execute`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecuteRequest {
    pub thread_key: ThreadKey,
    /// The active assignment's generation; without it (and with `message`), the one-call
    /// path spawns, stores the message and executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_generation: Option<i64>,
    /// Idempotency key per thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_id: Option<String>,
    /// Where the answer goes: `{platform: "slack" | "dev", ...}`; default Slack with the
    /// channel fields of `metadata`, or `dev` on the one-call path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// A JSON object (or null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// The one-call path: text to spawn + message + execute with `dev` delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Harness for the one-call path's spawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<Harness>,
    /// Repository for the one-call path's spawn (as on `/agent/spawn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^\S+$")]
    pub repo: Option<String>,
    /// `agents_md_override` for the one-call path's spawn (as on `/agent/spawn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 65536)]
    pub agents_md_override: Option<String>,
}

impl ExecuteRequest {
    /// The one-call request: spawn (default harness), store `message` and execute on
    /// `thread_key`, delivering nowhere (`dev`).
    pub fn one_call(thread_key: ThreadKey, message: impl Into<String>) -> Self {
        Self {
            thread_key,
            assignment_generation: None,
            execute_id: None,
            delivery: None,
            metadata: None,
            message: Some(message.into()),
            harness: None,
            repo: None,
            agents_md_override: None,
        }
    }
}

/// Where an execution's answer is delivered: `platform` and the platform's own fields
/// (Slack: `channel`, `thread_ts`, `team_id`, `user_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// `slack`, `dev` (no delivery), or a platform an external deliverer claims.
    pub platform: String,
    /// The platform's own fields, kept as given.
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub fields: serde_json::Map<String, Value>,
}

impl Delivery {
    /// The platform that delivers nowhere (tests, the one-call path).
    pub const DEV: &'static str = "dev";
    /// Slack (the dispatcher's own deliverer).
    pub const SLACK: &'static str = "slack";

    /// A delivery to `platform` with no fields yet.
    pub fn new(platform: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            fields: serde_json::Map::new(),
        }
    }

    /// `dev`: the answer goes nowhere.
    pub fn dev() -> Self {
        Self::new(Self::DEV)
    }

    /// With `name` set to `value`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// True for `dev`, which has no outbox row.
    pub fn is_dev(&self) -> bool {
        self.platform == Self::DEV
    }

    /// A text field (`channel`, `thread_ts`, ...), if present and a string.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}

/// Response of `POST /agent/execute` (202).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecuteResponse {
    pub ok: bool,
    /// `exe_` + 16 hex characters.
    #[schema(value_type = crate::ExecutionId)]
    pub execution_id: String,
    pub execute_id: String,
    pub assignment_generation: i64,
    pub status: ExecutionStatus,
    /// True when this is the stored answer of an earlier identical request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// One stored event as returned by the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub event_id: i64,
    /// The event's place in its thread: gap-free, in commit order (the SSE `id`).
    pub thread_seq: i64,
    /// `execution_state`, `execution_started`, `harness_event`, `execution_summary`,
    /// `final_delivery_ready`, `final_delivery_delivered`, ...
    pub event_kind: String,
    /// The event's JSON (its shape depends on `event_kind`).
    pub event_json: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /agent/executions/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    #[schema(value_type = crate::ExecutionId)]
    pub execution_id: String,
    pub thread_key: String,
    pub assignment_generation: i64,
    pub execute_id: String,
    pub status: ExecutionStatus,
    pub terminal_reason: Option<TerminalReason>,
    pub result_text: Option<String>,
    pub error_text: Option<String>,
    pub agent_thread_id: Option<String>,
    pub harness: Harness,
    pub sandbox_id: Option<String>,
    pub attempt: i32,
    #[schema(value_type = Delivery)]
    pub delivery: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The tokens the harness reported for this turn (zero until it reports any).
    #[serde(default)]
    pub usage: Usage,
    /// The execution's events, ascending (absent with `?events=false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
}

/// Tokens a harness reported (`usage` harness events, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// Response of `POST /agent/executions/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    pub ok: bool,
    #[schema(value_type = crate::ExecutionId)]
    pub execution_id: String,
    /// `cancelled` (it had not started), `cancel_requested` (the dispatcher stops it), or
    /// the terminal status it already had (with `idempotent`).
    pub status: ExecutionStatus,
    /// True when the execution had already finished: nothing changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// `GET /agent/threads/{thread_key}/executions`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionList {
    pub thread_key: String,
    pub executions: Vec<ExecutionView>,
}

/// `POST /agent/threads/{thread_key}/release` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRequest {
    /// Idempotency key per thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    /// Also cancel the thread's unfinished executions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_inflight: bool,
}

/// Response of `POST /agent/threads/{thread_key}/release`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResponse {
    pub ok: bool,
    pub thread_key: String,
    /// False when the thread had no active assignment.
    pub released: bool,
    /// The released (or latest) generation; none for a thread never spawned.
    pub assignment_generation: Option<i64>,
    /// Executions cancelled with `cancel_inflight`.
    #[serde(default)]
    pub cancelled_execution_ids: Vec<String>,
    /// True when this is the stored answer of an earlier identical request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// The error body of the control plane. `code` is one of [`codes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code (`VALIDATION_ERROR`, `NO_ACTIVE_ASSIGNMENT`, ...).
    pub code: String,
    /// What went wrong, naming the field where one is at fault.
    pub message: String,
}

/// The error body of authentication and authorisation (401, 403).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuthErrorBody {
    /// `Missing API key`, `Invalid API key`, `API key scope does not permit '<scope>'`, ...
    pub detail: String,
}

/// One HTTP route a function serves: the method and the path template (`{id}` segments).
/// Each function crate exports `pub const ROUTES: &[Route]`; the AWS template and the
/// Helm chart are checked against these lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}
