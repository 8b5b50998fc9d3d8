//! Running a harness CLI for one turn: spawn it non-interactively with the turn's
//! environment, read its JSON-lines stdout through the harness's [`NativeParser`], and turn
//! every failure mode into an `error` event and a failed turn: CLI missing, auth refused,
//! upstream error, crash (non-zero exit), malformed output. The child is killed when the
//! turn's future is dropped (interrupt), so a cancelled turn stops the CLI. It runs in the
//! turn's working directory (the checkout). Events a parser holds back (retries the CLI
//! recovered from) are emitted only if the turn fails.

use super::{Turn, TurnEvents, TurnResult};
use centaur_harness::{HarnessEvent, TurnStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

/// The command line of one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliInvocation {
    pub program: String,
    pub args: Vec<String>,
    /// Set on top of the sandbox's environment and the turn's own.
    pub env: BTreeMap<String, String>,
    /// The working directory (the checkout); `None`: the sandbox's own.
    pub cwd: Option<std::path::PathBuf>,
}

/// How the CLI said the turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// An earlier ending is void: the CLI is retrying.
    Retrying,
    /// `kind` is one of the shared error kinds (`auth`, `upstream`, `harness`, …).
    Failed {
        kind: String,
        message: String,
    },
}

/// What one native output line meant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Normalised events to emit, in order.
    pub events: Vec<HarnessEvent>,
    /// The harness's own session/thread id, when the line reveals it.
    pub session_id: Option<String>,
    /// The answer so far (the latest complete assistant message or result text).
    pub final_text: Option<String>,
    /// Set when the line ends the turn.
    pub outcome: Option<Outcome>,
    /// The CLI must be stopped now: `outcome` is final (a CLI stuck retrying).
    pub stop: bool,
}

/// Maps a harness's native JSON lines to the shared vocabulary.
pub trait NativeParser: Send {
    /// What one line means.
    fn parse(&mut self, line: &Value) -> Parsed;

    /// Events held back while the turn might still succeed (errors of retries the CLI
    /// recovered from); the runner emits them only when the turn fails.
    fn take_held(&mut self) -> Vec<HarnessEvent> {
        Vec::new()
    }
}

/// An error kind for a failure message: `auth` when credentials were refused, `upstream`
/// when the model API failed or was unreachable, else `fallback`.
pub fn classify(message: &str, fallback: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if any(&[
        "401",
        "403",
        "unauthorized",
        "invalid api key",
        "invalid x-api-key",
        "authentication",
        "forbidden",
        "not logged in",
        "login",
    ]) {
        "auth".into()
    } else if any(&[
        "429",
        "500",
        "502",
        "503",
        "529",
        "rate limit",
        "overloaded",
        "high demand",
        "timed out",
        "timeout",
        "connection",
        "unreachable",
        "upstream",
        "stream disconnected",
        "server error",
        "api error",
        "proxy",
        "certificate",
        "handshake",
        "network",
    ]) {
        "upstream".into()
    } else {
        fallback.into()
    }
}

async fn fail(
    events: &TurnEvents,
    parser: &mut dyn NativeParser,
    kind: &str,
    message: String,
    session: Option<String>,
) -> TurnResult {
    for held in parser.take_held() {
        // The final error is reported below: no copy of it from the retries.
        if !matches!(&held, HarnessEvent::Error { message: m, .. } if *m == message) {
            events.emit(held).await;
        }
    }
    events
        .emit(HarnessEvent::Error {
            kind: kind.into(),
            message: message.clone(),
        })
        .await;
    TurnResult {
        status: TurnStatus::Error,
        result_text: None,
        agent_thread_id: session,
        error: Some(message),
    }
}

/// Runs `invocation` for `turn`, emitting its events; how the turn ended.
pub async fn run(
    invocation: CliInvocation,
    parser: &mut dyn NativeParser,
    turn: &Turn,
    events: &TurnEvents,
) -> TurnResult {
    let mut command = tokio::process::Command::new(&invocation.program);
    command
        .args(&invocation.args)
        .envs(&turn.env)
        .envs(&invocation.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = &invocation.cwd {
        command.current_dir(dir);
    }
    let mut session = turn.agent_thread_id.clone();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let message = format!(
                "the {} CLI is not installed in this sandbox image ({err})",
                invocation.program
            );
            return fail(events, parser, "cli_missing", message, session).await;
        }
        Err(err) => {
            let message = format!("could not start {}: {err}", invocation.program);
            return fail(events, parser, "crash", message, session).await;
        }
    };
    let stderr = child.stderr.take().map(|mut stderr| {
        tokio::spawn(async move {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all).await;
            let start = all.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&all[start..]).trim().to_owned()
        })
    });
    let mut final_text: Option<String> = None;
    let mut outcome: Option<Outcome> = None;
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(err) => {
                    let message = format!("reading {} output failed: {err}", invocation.program);
                    return fail(events, parser, "malformed_output", message, session).await;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                let _ = child.kill().await;
                let shown: String = line.chars().take(200).collect();
                let message = format!(
                    "{} printed a line that is not JSON: {shown}",
                    invocation.program
                );
                return fail(events, parser, "malformed_output", message, session).await;
            };
            let parsed = parser.parse(&value);
            for event in parsed.events {
                events.emit(event).await;
            }
            session = parsed.session_id.or(session);
            final_text = parsed.final_text.or(final_text);
            match parsed.outcome {
                Some(Outcome::Retrying) => outcome = None,
                Some(ended) => outcome = Some(ended),
                None => {}
            }
            if parsed.stop {
                let _ = child.kill().await;
                break;
            }
        }
    }
    let status = child.wait().await;
    let stderr_tail = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    match outcome {
        Some(Outcome::Succeeded) => TurnResult {
            status: TurnStatus::Ok,
            result_text: Some(final_text.unwrap_or_default()),
            agent_thread_id: session,
            error: None,
        },
        Some(Outcome::Failed { kind, message }) => {
            fail(events, parser, &kind, message, session).await
        }
        Some(Outcome::Retrying) | None => {
            let code = status.ok().and_then(|s| s.code());
            let how = code.map_or_else(
                || "was killed by a signal".to_owned(),
                |c| format!("exited with code {c}"),
            );
            let message = format!(
                "{} {how} without finishing the turn{}",
                invocation.program,
                if stderr_tail.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr_tail}")
                }
            );
            let kind = classify(&stderr_tail, "crash");
            fail(events, parser, &kind, message, session).await
        }
    }
}

/// How long a `--version` probe may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether `program` is installed, and the first line of its `--version`.
pub async fn probe(program: &str) -> (bool, Option<String>) {
    let run = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Ok(Ok(output)) => {
            // Some CLIs print their version on stderr.
            let printed = if output.stdout.iter().all(u8::is_ascii_whitespace) {
                output.stderr
            } else {
                output.stdout
            };
            let version = String::from_utf8_lossy(&printed)
                .lines()
                .next()
                .map(|line| line.trim().to_owned())
                .filter(|line| !line.is_empty());
            (true, version)
        }
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => (false, None),
        Ok(Err(_)) | Err(_) => (true, None),
    }
}

/// The turn's prompt: the text of the user message.
pub fn prompt(turn: &Turn) -> String {
    turn.message.text()
}

/// A string field of a JSON object, if present.
pub fn text_of<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_as_auth_or_upstream() {
        assert_eq!(classify("401 Unauthorized: invalid x-api-key", "x"), "auth");
        assert_eq!(classify("We're experiencing high demand", "x"), "upstream");
        assert_eq!(classify("stream error: 503", "x"), "upstream");
        assert_eq!(classify("panic in tool", "crash"), "crash");
    }
}
