//! What a deliverer posts when an execution ends.

use crate::TerminalReason;
use serde_json::{json, Value};

/// The outbox payload for a finished execution: the answer, or a short notice that names
/// the execution so a person can inspect it (`{"text": …, "failed": true}`).
pub fn payload(execution_id: &str, reason: TerminalReason, result_text: Option<&str>) -> Value {
    match reason {
        TerminalReason::Completed => json!({"text": result_text.unwrap_or_default()}),
        TerminalReason::Cancelled | TerminalReason::Released => json!({
            "text": format!("This run was cancelled (execution {execution_id})."),
            "failed": true,
        }),
        failure => json!({
            "text": format!(
                "Sorry, this run failed ({failure}). An operator can inspect it with \
                 GET /agent/executions/{execution_id}."
            ),
            "failed": true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_notice_names_the_execution_and_how_to_inspect_it() {
        let body = payload("exe_0123456789abcdef", TerminalReason::SandboxLost, None);
        let text = body["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("sandbox_lost")
                && text.contains("GET /agent/executions/exe_0123456789abcdef"),
            "{text}"
        );
        assert_eq!(body["failed"], true);
    }

    #[test]
    fn a_completed_execution_delivers_its_answer() {
        assert_eq!(
            payload("exe_x", TerminalReason::Completed, Some("PONG")),
            json!({"text": "PONG"})
        );
    }
}
