//! Each harness's native output, recorded from the real CLIs (codex, claude-code, pi-mono
//! against the fake model servers of tests/harnesses) or, for Amp, written in its
//! documented Claude Code-compatible stream-json format (the Amp CLI talks only to the Amp
//! service), parsed into the shared event vocabulary.

use centaur_harness::HarnessEvent;
use sandbox::harnesses::claude_stream::StreamJsonParser;
use sandbox::harnesses::cli::{NativeParser, Outcome, Parsed};
use sandbox::harnesses::codex::CodexParser;
use sandbox::harnesses::pi_mono::PiParser;
use serde_json::Value;

/// Every line of a transcript through `parser`, merged the way the CLI runner merges them.
fn replay(parser: &mut dyn NativeParser, file: &str) -> Parsed {
    let path = format!("{}/tests/transcripts/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let mut all = Parsed::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{file}: {err}"));
        let parsed = parser.parse(&value);
        all.events.extend(parsed.events);
        all.session_id = parsed.session_id.or(all.session_id);
        all.final_text = parsed.final_text.or(all.final_text);
        match parsed.outcome {
            Some(Outcome::Retrying) => all.outcome = None,
            Some(outcome) => all.outcome = Some(outcome),
            None => {}
        }
    }
    all
}

fn tool_calls(parsed: &Parsed) -> Vec<(&str, &Value)> {
    parsed
        .events
        .iter()
        .filter_map(|e| match e {
            HarnessEvent::ToolCall { name, input, .. } => Some((name.as_str(), input)),
            _ => None,
        })
        .collect()
}

fn tool_outputs(parsed: &Parsed) -> Vec<String> {
    parsed
        .events
        .iter()
        .filter_map(|e| match e {
            HarnessEvent::ToolResult { output, .. } => Some(output.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_codex_answer_gives_the_thread_id_the_text_usage_and_success() {
    let parsed = replay(&mut CodexParser::default(), "codex-plain.jsonl");
    assert!(parsed.session_id.is_some());
    assert_eq!(parsed.final_text.as_deref(), Some("PONG"));
    assert_eq!(parsed.outcome, Some(Outcome::Succeeded));
    assert!(parsed
        .events
        .iter()
        .any(|e| matches!(e, HarnessEvent::Usage { output_tokens, .. } if *output_tokens > 0)));
}

#[test]
fn a_codex_turn_that_fell_back_from_websocket_shows_no_errors() {
    let mut parser = CodexParser::default();
    let parsed = replay(&mut parser, "codex-websocket-fallback.jsonl");
    assert_eq!(parsed.outcome, Some(Outcome::Succeeded));
    assert_eq!(parsed.final_text.as_deref(), Some("PONG"));
    assert!(
        !parsed
            .events
            .iter()
            .any(|e| matches!(e, HarnessEvent::Error { .. })),
        "{:?}",
        parsed.events
    );
    assert_eq!(parser.take_held().len(), 5, "kept for a turn that fails");
}

#[test]
fn a_codex_upstream_failure_is_an_upstream_error() {
    let parsed = replay(&mut CodexParser::default(), "codex-upstream-error.jsonl");
    match parsed.outcome {
        Some(Outcome::Failed { kind, .. }) => assert_eq!(kind, "upstream"),
        other => panic!("expected a failed turn, got {other:?}"),
    }
}

#[test]
fn a_claude_code_tool_turn_gives_the_call_its_result_and_the_answer() {
    let parsed = replay(&mut StreamJsonParser, "claude-code-tool.jsonl");
    assert_eq!(tool_calls(&parsed)[0].0, "Bash");
    assert_eq!(tool_calls(&parsed)[0].1["command"], "echo centaur-tool-ran");
    assert!(tool_outputs(&parsed)[0].contains("centaur-tool-ran"));
    assert_eq!(parsed.final_text.as_deref(), Some("ran it"));
    assert_eq!(parsed.outcome, Some(Outcome::Succeeded));
    assert!(parsed.session_id.is_some());
}

#[test]
fn an_amp_tool_turn_parses_like_claude_code() {
    let parsed = replay(&mut StreamJsonParser, "amp-tool.jsonl");
    assert_eq!(
        parsed.session_id.as_deref(),
        Some("T-4f7c2a9e-1b3d-4e8f-9a6b-2c5d7e9f1a3b")
    );
    assert_eq!(
        tool_calls(&parsed),
        vec![("Bash", &serde_json::json!({"cmd": "echo centaur-tool-ran"}))]
    );
    assert_eq!(parsed.final_text.as_deref(), Some("ran it"));
    assert_eq!(parsed.outcome, Some(Outcome::Succeeded));
}

#[test]
fn an_amp_auth_failure_is_an_auth_error() {
    let parsed = replay(&mut StreamJsonParser, "amp-auth-error.jsonl");
    match parsed.outcome {
        Some(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, "auth");
            assert!(message.contains("401"), "{message}");
        }
        other => panic!("expected a failed turn, got {other:?}"),
    }
}

#[test]
fn a_pi_tool_turn_gives_the_session_the_call_its_result_and_the_answer() {
    let parsed = replay(&mut PiParser, "pi-mono-tool.jsonl");
    assert!(parsed.session_id.is_some());
    assert_eq!(tool_calls(&parsed)[0].0, "bash");
    assert!(tool_outputs(&parsed)[0].contains("centaur-tool-ran"));
    assert_eq!(parsed.final_text.as_deref(), Some("ran it"));
    assert_eq!(parsed.outcome, Some(Outcome::Succeeded));
}

#[test]
fn a_pi_retry_voids_the_earlier_ending_and_a_failed_retry_fails_the_turn() {
    let mut parser = PiParser;
    let lines = [
        r#"{"type":"agent_end","messages":[{"role":"assistant","content":[],"stopReason":"error","errorMessage":"Connection error."}]}"#,
        r#"{"type":"auto_retry_start","attempt":1,"maxAttempts":3,"delayMs":2000,"errorMessage":"Connection error."}"#,
        r#"{"type":"auto_retry_end","success":false,"attempt":3,"finalError":"Connection error."}"#,
    ];
    let outcomes: Vec<Option<Outcome>> = lines
        .iter()
        .map(|line| {
            parser
                .parse(&serde_json::from_str(line).expect("json"))
                .outcome
        })
        .collect();
    assert!(matches!(outcomes[0], Some(Outcome::Failed { .. })));
    assert_eq!(outcomes[1], Some(Outcome::Retrying));
    match &outcomes[2] {
        Some(Outcome::Failed { kind, .. }) => assert_eq!(kind, "upstream"),
        other => panic!("expected a failed turn, got {other:?}"),
    }
}
