//! The `echo` harness: no model; answers with the text of the turn. For plumbing checks,
//! the quick-start and tests — never a production default. Directive lines (removed from
//! the answer):
//! `@sleep <ms>` waits (heartbeating every second), `@hang <ms>` waits silently (a stuck
//! harness), `@fail <message>` fails the turn, `@exit <code>` ends the whole sandbox
//! process mid-turn (a crashed sandbox).
//!
//! Test and diagnostic directive: `@sh <command>` runs `sh -c <command>` inside the sandbox
//! (its working directory, its environment plus the turn's), emits a `command` event, and
//! puts `$ <command>`, the combined stdout and stderr, and `[exit <code>]` in the answer in
//! its place, so a test can look around from inside a running sandbox (what it can read,
//! which uid it has, what its environment holds). It runs whatever the turn's text says,
//! with the sandbox's privileges: one more reason `echo` must never serve real users.

use super::{HarnessDriver, Turn, TurnEvents, TurnResult};
use async_trait::async_trait;
use centaur_harness::{HarnessEvent, TurnStatus};
use std::time::Duration;

/// The echo driver.
pub struct EchoDriver;

enum Directive {
    Sleep(u64),
    Hang(u64),
    Fail(String),
    Exit(i32),
    Shell(String),
}

fn parse_directive(line: &str) -> Option<Directive> {
    let (name, argument) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    match name {
        "@sleep" => argument.trim().parse().ok().map(Directive::Sleep),
        "@hang" => argument.trim().parse().ok().map(Directive::Hang),
        "@fail" => Some(Directive::Fail(argument.trim().to_owned())),
        "@exit" => argument.trim().parse().ok().map(Directive::Exit),
        "@sh" if !argument.trim().is_empty() => Some(Directive::Shell(argument.trim().to_owned())),
        _ => None,
    }
}

async fn sleep_with_heartbeats(millis: u64, events: &TurnEvents) {
    let mut remaining = Duration::from_millis(millis);
    while !remaining.is_zero() {
        let nap = remaining.min(Duration::from_secs(1));
        tokio::time::sleep(nap).await;
        remaining -= nap;
        events.emit(HarnessEvent::Heartbeat).await;
    }
}

/// Runs `command` with `sh -c` (stdout and stderr interleaved into one stream), emits a
/// `command` event, and returns the transcript for the answer.
async fn run_shell(command: &str, turn: &Turn, events: &TurnEvents) -> String {
    let result = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1; {command}"))
        .envs(&turn.env)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let (exit_code, output) = match result {
        Ok(output) => (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ),
        Err(err) => (None, format!("cannot run sh: {err}")),
    };
    events
        .emit(HarnessEvent::Command {
            command: command.to_owned(),
            exit_code,
            output: Some(output.clone()),
        })
        .await;
    let exit = exit_code.map_or_else(|| "signal".to_owned(), |code| code.to_string());
    format!("$ {command}\n{}\n[exit {exit}]", output.trim_end())
}

#[async_trait]
impl HarnessDriver for EchoDriver {
    fn name(&self) -> &'static str {
        "echo"
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        let prompt = turn.message.text();
        let mut answer: Vec<String> = Vec::new();
        for line in prompt.lines() {
            match parse_directive(line) {
                Some(Directive::Sleep(millis)) => sleep_with_heartbeats(millis, events).await,
                Some(Directive::Hang(millis)) => {
                    tokio::time::sleep(Duration::from_millis(millis)).await
                }
                Some(Directive::Fail(message)) => {
                    events
                        .emit(HarnessEvent::Error {
                            kind: "harness".into(),
                            message: message.clone(),
                        })
                        .await;
                    return TurnResult::failed(message);
                }
                Some(Directive::Exit(code)) => std::process::exit(code),
                Some(Directive::Shell(command)) => {
                    answer.push(run_shell(&command, turn, events).await)
                }
                None => answer.push(line.to_owned()),
            }
        }
        let text = answer.join("\n").trim().to_owned();
        for line in text.lines() {
            events
                .emit(HarnessEvent::AssistantDelta {
                    text: format!("{line}\n"),
                })
                .await;
        }
        events
            .emit(HarnessEvent::AssistantMessage { text: text.clone() })
            .await;
        TurnResult {
            status: TurnStatus::Ok,
            result_text: Some(text),
            agent_thread_id: Some(format!("echo-{}", turn.thread_key)),
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Output;
    use centaur_harness::{MessagePart, TurnMessage};
    use std::sync::Arc;

    fn turn(text: &str) -> Turn {
        Turn {
            execution_id: "exe_0000000000000001".into(),
            thread_key: "t".into(),
            message: TurnMessage {
                role: "user".into(),
                content: vec![MessagePart::text(text)],
            },
            agent_thread_id: None,
            env: [("FROM_TURN".to_owned(), "turn-env".to_owned())].into(),
        }
    }

    #[test]
    fn sh_needs_a_command() {
        assert!(matches!(
            parse_directive("@sh echo hi"),
            Some(Directive::Shell(command)) if command == "echo hi"
        ));
        assert!(parse_directive("@sh").is_none());
        assert!(parse_directive("@sh   ").is_none());
    }

    #[tokio::test]
    async fn sh_answers_with_the_command_its_output_and_exit_code() {
        let events = TurnEvents::new(Arc::new(Output::default()), "exe_0000000000000001");
        let result = EchoDriver
            .run_turn(
                &turn("before\n@sh echo out; echo err >&2; echo $FROM_TURN; exit 3\nafter"),
                &events,
            )
            .await;
        assert_eq!(result.status, TurnStatus::Ok);
        assert_eq!(
            result.result_text.as_deref(),
            Some(
                "before\n$ echo out; echo err >&2; echo $FROM_TURN; exit 3\nout\nerr\nturn-env\n\
                 [exit 3]\nafter"
            )
        );
    }
}
