//! What a deliverer posts when an execution ends.

use crate::TerminalReason;
use serde_json::{json, Value};

/// The outbox payload for a finished execution: the answer, or a short notice that names
/// the execution so a person can inspect it (`{"text": …, "failed": true}`). Never empty: a
/// run that finished without a written answer says so.
pub fn payload(execution_id: &str, reason: TerminalReason, result_text: Option<&str>) -> Value {
    match reason {
        TerminalReason::Completed => match result_text.filter(|text| !text.trim().is_empty()) {
            Some(text) => json!({"text": text}),
            None => json!({"text": empty_answer(execution_id)}),
        },
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

/// What is posted for a run that finished without a written answer.
pub fn empty_answer(execution_id: &str) -> String {
    format!(
        "The run finished without a written answer (execution {execution_id}; \
         GET /agent/executions/{execution_id} shows what it did)."
    )
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
    fn a_completed_execution_without_an_answer_says_so_never_nothing() {
        for empty in [None, Some(""), Some("  \n")] {
            let text = payload("exe_x", TerminalReason::Completed, empty)["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(text.contains("without a written answer") && text.contains("exe_x"));
        }
    }

    #[test]
    fn a_completed_execution_delivers_its_answer() {
        assert_eq!(
            payload("exe_x", TerminalReason::Completed, Some("PONG")),
            json!({"text": "PONG"})
        );
    }
}
