//! Harness drivers. Each harness is one file here plus one line in [`driver_for`].
//! A driver runs one turn and emits normalised events; the session adds `turn.started`
//! and the single `turn.done`, so a driver cannot end a turn twice.

use async_trait::async_trait;
use centaur_harness::{HarnessEvent, TurnMessage, TurnStatus};
use std::path::PathBuf;
use std::sync::Arc;

use crate::output::Output;
use crate::prompt::SystemPrompt;

pub mod amp;
pub mod claude_code;
pub mod claude_stream;
pub mod cli;
pub mod codex;
pub mod echo;
pub mod pi_mono;

/// One turn, as the driver sees it.
#[derive(Debug, Clone)]
pub struct Turn {
    pub execution_id: String,
    pub thread_key: String,
    pub message: TurnMessage,
    /// The harness's own session id from the previous turn (resume it).
    pub agent_thread_id: Option<String>,
    /// Environment for the harness CLI (sandbox token, thread key).
    pub env: std::collections::BTreeMap<String, String>,
}

/// What the sandbox prepared for a turn before its harness runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnContext {
    /// The directory the harness runs in: the repository's checkout, or an empty
    /// `$HOME/workspace`; `None` leaves the sandbox's own working directory.
    pub cwd: Option<PathBuf>,
    /// The turn's system prompt (base, the repository's `AGENTS.md`, the thread's
    /// instructions), for the driver to hand over in its harness's native way.
    pub system_prompt: SystemPrompt,
}

impl Turn {
    /// A variable of the harness's environment: the turn's own, else the sandbox's.
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|value| !value.is_empty())
    }

    /// `$HOME` of the harness's environment.
    pub fn home(&self) -> Option<PathBuf> {
        self.env_var("HOME").map(PathBuf::from)
    }
}

/// A start-up step that failed: the turn ends with an `error` event of `kind`
/// (`start_failed`) and a failed `turn.done` whose error is `<step>: <cause>`, which the
/// dispatcher reads to retry the turn once in a fresh sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {cause}")]
pub struct StartFailure {
    /// The error kind (`start_failed`, or `cli_missing`).
    pub kind: String,
    /// What was being done: `codex login`, `clone acme/api`, `reach api.openai.com ...`.
    pub step: String,
    /// Why it failed.
    pub cause: String,
}

impl StartFailure {
    /// A `start_failed` failure of `step`.
    pub fn new(step: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        Self {
            kind: "start_failed".into(),
            step: step.into(),
            cause: cause.to_string(),
        }
    }
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnResult {
    pub status: TurnStatus,
    pub result_text: Option<String>,
    pub agent_thread_id: Option<String>,
    pub error: Option<String>,
}

impl TurnResult {
    /// A failed turn with a message an operator can act on.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            status: TurnStatus::Error,
            result_text: None,
            agent_thread_id: None,
            error: Some(error.into()),
        }
    }
}

/// Where a driver sends the events of its turn.
#[derive(Clone)]
pub struct TurnEvents {
    output: Arc<Output>,
    execution_id: String,
}

impl TurnEvents {
    /// Events of `execution_id`, written to `output`.
    pub fn new(output: Arc<Output>, execution_id: &str) -> Self {
        Self {
            output,
            execution_id: execution_id.to_owned(),
        }
    }

    /// Emits one event of this turn.
    pub async fn emit(&self, event: HarnessEvent) {
        self.output.emit(&self.execution_id, event).await;
    }
}

/// Runs turns of one harness.
#[async_trait]
pub trait HarnessDriver: Send + Sync {
    /// The canonical harness name (`echo`, `codex`, …).
    fn name(&self) -> &'static str;

    /// The CLI program this harness runs (`None` for `echo`), probed once per sandbox.
    fn cli_program(&self) -> Option<&'static str> {
        None
    }

    /// The host of the harness's model API, checked for reachability through the egress
    /// proxy before each turn (`None`: no model, nothing to check).
    fn model_host(&self) -> Option<&'static str> {
        None
    }

    /// Prepares the harness for `turn` in this sandbox, from placeholders only: a login,
    /// its settings, the system prompt in the harness's own place. Runs before every turn,
    /// so it must be idempotent and cheap once done.
    async fn start_up(&self, _turn: &Turn, _context: &TurnContext) -> Result<(), StartFailure> {
        Ok(())
    }

    /// Runs one turn to its end. Dropping the future must stop the turn (interrupt).
    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult;

    /// Runs one turn in the context the sandbox prepared (working directory, system
    /// prompt). Drivers that use the context override this; the default ignores it.
    async fn run_in(&self, turn: &Turn, _context: &TurnContext, events: &TurnEvents) -> TurnResult {
        self.run_turn(turn, events).await
    }
}

/// The driver for a harness name, or `None` if this sandbox has no driver for it.
pub fn driver_for(harness: &str) -> Option<Arc<dyn HarnessDriver>> {
    match harness {
        "echo" => Some(Arc::new(echo::EchoDriver)),
        "codex" => Some(Arc::new(codex::CodexDriver::default())),
        "claude-code" => Some(Arc::new(claude_code::ClaudeCodeDriver)),
        "amp" => Some(Arc::new(amp::AmpDriver)),
        "pi-mono" => Some(Arc::new(pi_mono::PiMonoDriver)),
        _ => None,
    }
}
