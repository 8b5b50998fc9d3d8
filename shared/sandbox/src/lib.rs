//! Sandbox backends. A sandbox is an isolated process (a child process locally, a pod in
//! Kubernetes) running the `sandbox` program, spoken to over a line-oriented stdin/stdout
//! stream (see `centaur-harness`). Backends are named deterministically from the caller's
//! [`SandboxSpec`], so a retried `create` adopts what the first attempt made.

use async_trait::async_trait;
use centaur_core::{Harness, SandboxId};
use futures::stream::BoxStream;
use std::collections::BTreeMap;

pub mod egress;
pub mod local;

pub use local::{Isolation, LocalBackend, LocalEgress};

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub id: SandboxId,
    pub harness: Harness,
    /// The thread the sandbox serves (`None` for a warm-pool sandbox not yet claimed).
    pub thread_key: Option<String>,
    /// Environment for the `sandbox` program. Placeholders and the sandbox token only:
    /// a real secret must never be put here.
    pub env: BTreeMap<String, String>,
    /// Prompt files made available to the harness (file name → content).
    pub prompt_files: BTreeMap<String, String>,
    /// True for warm-pool sandboxes (label `centaur.ai/warm=true`).
    pub warm: bool,
}

/// What a backend knows about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxStatus {
    Pending,
    Running,
    /// The process or container exited; the detail says how (exit code, OOMKilled, …).
    Exited {
        code: Option<i32>,
        detail: String,
    },
    /// Nothing by that id exists (never created, deleted, evicted).
    Gone {
        detail: String,
    },
}

impl SandboxStatus {
    /// True while the sandbox can still be attached to.
    pub fn is_alive(&self) -> bool {
        matches!(self, SandboxStatus::Pending | SandboxStatus::Running)
    }
}

/// A sandbox known to the backend (for garbage collection and the warm pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedSandbox {
    pub id: SandboxId,
    pub harness: Option<String>,
    pub warm: bool,
    pub status: SandboxStatus,
}

/// The two halves of an attached sandbox.
pub struct Attachment {
    /// Writes one protocol line to the sandbox's stdin (the newline is added by the sink).
    pub input: Box<dyn LineSink>,
    /// Lines the sandbox writes to stdout, without their newline. Ends when the stream
    /// closes (the sandbox exited, or the connection dropped).
    pub output: BoxStream<'static, Result<String, SandboxError>>,
}

/// The writing half of an attachment.
#[async_trait]
pub trait LineSink: Send {
    /// Sends one line.
    async fn send_line(&mut self, line: &str) -> Result<(), SandboxError>;
}

/// A sandbox backend failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox {id} could not be started: {reason}")]
    StartFailed { id: String, reason: String },
    #[error("sandbox {id} is gone: {detail}")]
    Gone { id: String, detail: String },
    #[error("sandbox I/O failed: {0}")]
    Io(String),
    #[error("sandbox backend error: {0}")]
    Backend(String),
}

/// Creates, attaches to, inspects and stops sandboxes.
#[async_trait]
pub trait SandboxBackend: Send + Sync {
    /// Creates the sandbox, or adopts it if one by that id already exists.
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxId, SandboxError>;

    /// Opens the sandbox's stdin/stdout. Only one attachment is live at a time; a new one
    /// replaces the old.
    async fn attach(&self, id: &SandboxId) -> Result<Attachment, SandboxError>;

    /// The sandbox's current status.
    async fn status(&self, id: &SandboxId) -> Result<SandboxStatus, SandboxError>;

    /// Stops the sandbox and removes what was created for it. Stopping a gone sandbox is Ok.
    async fn stop(&self, id: &SandboxId) -> Result<(), SandboxError>;

    /// Every sandbox this backend manages (`centaur.ai/managed=true`).
    async fn list_managed(&self) -> Result<Vec<ManagedSandbox>, SandboxError>;

    /// A short name for logs and metrics: `local` or `kubernetes`.
    fn backend_name(&self) -> &'static str;
}
