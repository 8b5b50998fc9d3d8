//! Harness drivers. Each harness is one file here plus one line in [`driver_for`].
//! A driver runs one turn and emits normalised events; the session adds `turn.started`
//! and the single `turn.done`, so a driver cannot end a turn twice.

use async_trait::async_trait;
use centaur_harness::{HarnessEvent, TurnMessage, TurnStatus};
use std::sync::Arc;

use crate::output::Output;

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

    /// Runs one turn to its end. Dropping the future must stop the turn (interrupt).
    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult;
}

/// The driver for a harness name, or `None` if this sandbox has no driver for it.
pub fn driver_for(harness: &str) -> Option<Arc<dyn HarnessDriver>> {
    match harness {
        "echo" => Some(Arc::new(echo::EchoDriver)),
        "codex" => Some(Arc::new(codex::CodexDriver)),
        "claude-code" => Some(Arc::new(claude_code::ClaudeCodeDriver)),
        "amp" => Some(Arc::new(amp::AmpDriver)),
        "pi-mono" => Some(Arc::new(pi_mono::PiMonoDriver)),
        _ => None,
    }
}
