//! The `echo` harness: no model; answers with the text of the turn. For plumbing checks,
//! the quick-start and tests. Directive lines (removed from the answer):
//! `@sleep <ms>` waits (heartbeating every second), `@hang <ms>` waits silently (a stuck
//! harness), `@fail <message>` fails the turn, `@exit <code>` ends the whole sandbox
//! process mid-turn (a crashed sandbox).

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
}

fn parse_directive(line: &str) -> Option<Directive> {
    let (name, argument) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    match name {
        "@sleep" => argument.trim().parse().ok().map(Directive::Sleep),
        "@hang" => argument.trim().parse().ok().map(Directive::Hang),
        "@fail" => Some(Directive::Fail(argument.trim().to_owned())),
        "@exit" => argument.trim().parse().ok().map(Directive::Exit),
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

#[async_trait]
impl HarnessDriver for EchoDriver {
    fn name(&self) -> &'static str {
        "echo"
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        let prompt = turn.message.text();
        let mut answer = Vec::new();
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
                None => answer.push(line),
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
