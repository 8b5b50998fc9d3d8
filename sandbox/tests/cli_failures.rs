//! The CLI runner's failure modes with stand-in CLIs (shell scripts): a crash, a malformed
//! line, a CLI that ends without finishing the turn, and an interrupt that must stop the
//! CLI. Each ends the turn once, with an error event, and never hangs.

use centaur_harness::{HarnessEvent, SandboxOutput, TurnMessage, TurnStatus};
use sandbox::harnesses::cli::{self, CliInvocation};
use sandbox::harnesses::codex::CodexParser;
use sandbox::harnesses::{Turn, TurnEvents, TurnResult};
use sandbox::output::Output;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

fn script(body: &str) -> (tempfile_dir::Dir, String) {
    let dir = tempfile_dir::Dir::new();
    let path = dir.path().join("fake-cli");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let program = path.display().to_string();
    (dir, program)
}

/// A throwaway directory removed on drop.
mod tempfile_dir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "centaur-cli-test-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }
}

fn turn() -> Turn {
    Turn {
        execution_id: "exe_cli".into(),
        thread_key: "t".into(),
        message: serde_json::from_value::<TurnMessage>(
            serde_json::json!({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
        )
        .expect("message"),
        agent_thread_id: None,
        env: BTreeMap::new(),
    }
}

async fn run(program: String) -> (TurnResult, Vec<HarnessEvent>) {
    let dir = tempfile_dir::Dir::new();
    let log = dir.path().join("events.jsonl");
    let file = tokio::fs::File::create(&log).await.expect("event log");
    let output = Arc::new(Output::with_sink(Box::new(file)));
    let events = TurnEvents::new(output.clone(), "exe_cli");
    let invocation = CliInvocation {
        program,
        args: vec![],
        env: BTreeMap::new(),
        cwd: None,
    };
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        cli::run(invocation, &mut CodexParser::default(), &turn(), &events),
    )
    .await
    .expect("the turn must end, not hang");
    let emitted: Vec<HarnessEvent> = std::fs::read_to_string(&log)
        .expect("read events")
        .lines()
        .map(|line| SandboxOutput::parse(line).expect("output line").event)
        .collect();
    (result, emitted)
}

fn error_kinds(events: &[HarnessEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            HarnessEvent::Error { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_crashing_cli_fails_the_turn_with_its_exit_code_and_stderr() {
    let (_dir, program) = script("echo 'segfault in tool runner' >&2; exit 3");
    let (result, events) = run(program).await;
    assert_eq!(result.status, TurnStatus::Error);
    let error = result.error.expect("error");
    assert!(
        error.contains("exited with code 3") && error.contains("segfault"),
        "{error}"
    );
    assert_eq!(error_kinds(&events), vec!["crash"]);
}

#[tokio::test]
async fn a_malformed_line_fails_the_turn_and_stops_the_cli() {
    let (_dir, program) = script("echo '{\"type\":\"thread.started\",\"thread_id\":\"th1\"}'; echo 'not json at all'; sleep 30");
    let (result, events) = run(program).await;
    assert_eq!(result.status, TurnStatus::Error);
    assert_eq!(result.agent_thread_id.as_deref(), Some("th1"));
    assert_eq!(error_kinds(&events), vec!["malformed_output"]);
}

#[tokio::test]
async fn a_refused_credential_is_an_auth_error() {
    let (_dir, program) =
        script("echo 'Error: 401 Unauthorized: Incorrect API key provided' >&2; exit 1");
    let (_, events) = run(program).await;
    assert_eq!(error_kinds(&events), vec!["auth"]);
}

#[tokio::test]
async fn a_missing_cli_is_cli_missing() {
    let (result, events) = run("/nonexistent/codex".into()).await;
    assert_eq!(result.status, TurnStatus::Error);
    assert_eq!(error_kinds(&events), vec!["cli_missing"]);
}

#[tokio::test]
async fn dropping_the_turn_kills_the_cli() {
    let dir = tempfile_dir::Dir::new();
    // The CLI holds the write end of a FIFO for as long as it lives (`sleep` inherits it):
    // the reader sees the end of the FIFO exactly when the CLI is gone.
    let fifo = dir.path().join("alive");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let (_script_dir, program) = script(&format!("exec 3>{}; exec sleep 30", fifo.display()));
    let (opened, cli_started) = tokio::sync::oneshot::channel();
    let cli_gone = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        // Blocks until the CLI opened its end.
        let mut reader = std::fs::File::open(&fifo).expect("open the FIFO");
        let _ = opened.send(());
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).expect("read the FIFO");
    });
    let output = Arc::new(Output::with_sink(Box::new(tokio::io::sink())));
    let events = TurnEvents::new(output, "exe_cli");
    let invocation = CliInvocation {
        program,
        args: vec![],
        env: BTreeMap::new(),
        cwd: None,
    };
    let turn = turn();
    let mut parser = CodexParser::default();
    let run = cli::run(invocation, &mut parser, &turn, &events);
    tokio::select! {
        _ = run => panic!("the CLI ended on its own"),
        started = cli_started => started.expect("the CLI opened the FIFO"),
    }
    // The turn was dropped above, in the middle of the CLI's run.
    tokio::time::timeout(Duration::from_secs(10), cli_gone)
        .await
        .expect("the CLI kept running after its turn was dropped")
        .expect("reader");
}

const RETRY_LINES: &str = r#"echo '{"type":"thread.started","thread_id":"th1"}'
echo '{"type":"error","message":"Reconnecting... 2/5 (stream disconnected before completion)"}'
echo '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Falling back from WebSockets to HTTPS transport."}}'"#;

#[tokio::test]
async fn codex_retry_errors_are_dropped_when_the_turn_succeeds() {
    let (_dir, program) = script(&format!(
        "{RETRY_LINES}\necho '{}'\necho '{}'",
        r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"PONG"}}"#,
        r#"{"type":"turn.completed","usage":{"input_tokens":21,"output_tokens":5}}"#
    ));
    let (result, events) = run(program).await;
    assert_eq!(result.status, TurnStatus::Ok);
    assert_eq!(result.result_text.as_deref(), Some("PONG"));
    assert!(error_kinds(&events).is_empty(), "{events:?}");
}

#[tokio::test]
async fn codex_retry_errors_are_shown_before_the_failure_when_the_turn_fails() {
    let (_dir, program) = script(&format!(
        "{RETRY_LINES}\necho '{}'",
        r#"{"type":"turn.failed","error":{"message":"unexpected status 500 Internal Server Error"}}"#
    ));
    let (result, events) = run(program).await;
    assert_eq!(result.status, TurnStatus::Error);
    let messages: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            HarnessEvent::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].starts_with("Reconnecting"));
    assert!(messages[2].contains("500"));
}
