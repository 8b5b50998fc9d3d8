//! Start failures: a turn that ends with an error whose events show the harness could not
//! start — an `error` event of kind `start_failed`, `auth` or `cli_missing` — before any
//! model output (no assistant, tool or command event) is sent once more to a fresh sandbox.
//! If that fails to start too, the execution ends `sandbox_start_failed` naming the step
//! (the sandbox reports `<step>: <cause>`). No IO: the executor feeds events in and carries
//! out the verdict.

use centaur_core::{ExecutionId, SandboxId};
use centaur_harness::HarnessEvent;

/// `error` event kinds that mean the harness never started.
pub const START_FAILURE_KINDS: [&str; 3] = ["start_failed", "auth", "cli_missing"];

/// What one attempt of a turn showed so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartWatch {
    model_output: bool,
    failure: Option<String>,
}

impl StartWatch {
    /// Takes one event of the attempt into account.
    pub fn observe(&mut self, event: &HarnessEvent) {
        match event {
            HarnessEvent::AssistantDelta { .. }
            | HarnessEvent::AssistantMessage { .. }
            | HarnessEvent::ToolCall { .. }
            | HarnessEvent::ToolResult { .. }
            | HarnessEvent::Command { .. } => self.model_output = true,
            HarnessEvent::Error { kind, message }
                if self.failure.is_none() && START_FAILURE_KINDS.contains(&kind.as_str()) =>
            {
                self.failure = Some(message.clone());
            }
            _ => {}
        }
    }

    /// The start failure this attempt showed (`<step>: <cause>`), if it showed one and no
    /// model output.
    pub fn start_failure(&self) -> Option<&str> {
        if self.model_output {
            return None;
        }
        self.failure.as_deref()
    }
}

/// What to do about a turn that failed to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send the turn once more, to a fresh sandbox.
    Retry,
    /// It was retried already: the execution fails with this `error_text`.
    GiveUp { error_text: String },
}

/// The verdict on a start failure; `already_retried` once the retry is recorded.
pub fn verdict(failure: &str, already_retried: bool) -> Verdict {
    if already_retried {
        Verdict::GiveUp {
            error_text: error_text(failure),
        }
    } else {
        Verdict::Retry
    }
}

/// `sandbox_start_failed: <step>: <cause>`.
pub fn error_text(failure: &str) -> String {
    format!("sandbox_start_failed: {failure}")
}

/// The fresh sandbox of an execution's start retry, derived from the execution so a
/// retried create names the same sandbox (and adopts it).
pub fn retry_sandbox_id(execution_id: &ExecutionId) -> SandboxId {
    SandboxId::from_stored(format!(
        "{}-r1",
        SandboxId::for_execution(execution_id).as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn error(kind: &str, message: &str) -> HarnessEvent {
        HarnessEvent::Error {
            kind: kind.to_owned(),
            message: message.to_owned(),
        }
    }

    fn watch(events: &[HarnessEvent]) -> StartWatch {
        let mut watch = StartWatch::default();
        for event in events {
            watch.observe(event);
        }
        watch
    }

    #[test]
    fn a_start_failure_before_any_output_is_one() {
        for kind in START_FAILURE_KINDS {
            let watch = watch(&[
                HarnessEvent::TurnStarted {
                    harness: "codex".into(),
                    cli_present: Some(true),
                    cli_version: None,
                },
                HarnessEvent::Heartbeat,
                HarnessEvent::Usage {
                    input_tokens: 0,
                    output_tokens: 0,
                },
                error(kind, "clone acme/api: 403 from the proxy"),
            ]);
            assert_eq!(
                watch.start_failure(),
                Some("clone acme/api: 403 from the proxy"),
                "{kind}"
            );
        }
    }

    #[test]
    fn the_first_start_failure_is_the_one_reported() {
        let watch = watch(&[
            error("auth", "codex login: refused"),
            error("start_failed", "later"),
        ]);
        assert_eq!(watch.start_failure(), Some("codex login: refused"));
    }

    #[test]
    fn model_output_means_the_harness_did_start() {
        let outputs = [
            HarnessEvent::AssistantDelta { text: "hi".into() },
            HarnessEvent::AssistantMessage { text: "hi".into() },
            HarnessEvent::ToolCall {
                id: None,
                name: "shell".into(),
                input: Value::Null,
            },
            HarnessEvent::ToolResult {
                id: None,
                output: Value::Null,
                is_error: false,
            },
            HarnessEvent::Command {
                command: "ls".into(),
                exit_code: Some(0),
                output: None,
            },
        ];
        for output in outputs {
            let before = watch(&[output.clone(), error("auth", "401")]);
            assert_eq!(before.start_failure(), None, "{output:?} then error");
            let after = watch(&[error("auth", "401"), output.clone()]);
            assert_eq!(after.start_failure(), None, "error then {output:?}");
        }
    }

    #[test]
    fn other_errors_are_not_start_failures() {
        for kind in [
            "upstream",
            "harness",
            "crash",
            "interrupted",
            "malformed_output",
        ] {
            assert_eq!(
                watch(&[error(kind, "boom")]).start_failure(),
                None,
                "{kind}"
            );
        }
        assert_eq!(StartWatch::default().start_failure(), None);
    }

    #[test]
    fn a_start_failure_is_retried_once_then_names_the_step() {
        assert_eq!(verdict("clone acme/api: timeout", false), Verdict::Retry);
        assert_eq!(
            verdict("clone acme/api: timeout", true),
            Verdict::GiveUp {
                error_text: "sandbox_start_failed: clone acme/api: timeout".into()
            }
        );
    }

    #[test]
    fn the_retry_sandbox_is_derived_from_the_execution() {
        let execution = ExecutionId::parse("exe_0123456789abcdef")
            .unwrap_or_else(|| panic!("a valid execution id"));
        assert_eq!(
            retry_sandbox_id(&execution).as_str(),
            "sbx-0123456789abcdef-r1"
        );
        assert_eq!(retry_sandbox_id(&execution), retry_sandbox_id(&execution));
    }
}
