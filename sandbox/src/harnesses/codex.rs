//! `codex` (the default harness): `codex exec --json`, resumed with `codex exec resume <id>`.
//! Sends `Authorization: Bearer $OPENAI_API_KEY`, which in a sandbox is the placeholder
//! `OPENAI_API_KEY` that iron-proxy swaps on the way to api.openai.com.

use super::cli::{self, classify, text_of, CliInvocation, NativeParser, Outcome, Parsed};
use super::{HarnessDriver, Turn, TurnEvents, TurnResult};
use async_trait::async_trait;
use centaur_harness::HarnessEvent;
use serde_json::Value;
use std::collections::BTreeMap;

/// The codex driver.
pub struct CodexDriver;

/// The command line of a turn (a new thread, or `resume` of the previous one).
pub fn invocation(turn: &Turn) -> CliInvocation {
    let mut args: Vec<String> = [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(thread_id) = &turn.agent_thread_id {
        args.push("resume".into());
        args.push(thread_id.clone());
    }
    args.push(cli::prompt(turn));
    CliInvocation {
        program: "codex".into(),
        args,
        env: BTreeMap::new(),
    }
}

/// Parses `codex exec --json` events.
#[derive(Default)]
pub struct CodexParser;

impl NativeParser for CodexParser {
    fn parse(&mut self, line: &Value) -> Parsed {
        let mut parsed = Parsed::default();
        match text_of(line, "type").unwrap_or_default() {
            "thread.started" => parsed.session_id = text_of(line, "thread_id").map(str::to_owned),
            "item.completed" => item(&line["item"], &mut parsed),
            "turn.completed" => {
                let usage = &line["usage"];
                parsed.events.push(HarnessEvent::Usage {
                    input_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
                });
                parsed.outcome = Some(Outcome::Succeeded);
            }
            "turn.failed" => {
                let message = text_of(&line["error"], "message")
                    .unwrap_or("codex reported a failed turn")
                    .to_owned();
                parsed.outcome = Some(Outcome::Failed {
                    kind: classify(&message, "harness"),
                    message,
                });
            }
            "error" => {
                // Reported again by `turn.failed`; kept as context when retries follow.
                let message = text_of(line, "message").unwrap_or("codex error").to_owned();
                parsed.events.push(HarnessEvent::Error {
                    kind: classify(&message, "harness"),
                    message,
                });
            }
            _ => {}
        }
        parsed
    }
}

fn item(item: &Value, parsed: &mut Parsed) {
    let id = text_of(item, "id").map(str::to_owned);
    match text_of(item, "type").unwrap_or_default() {
        "agent_message" => {
            let text = text_of(item, "text").unwrap_or_default().to_owned();
            parsed
                .events
                .push(HarnessEvent::AssistantMessage { text: text.clone() });
            parsed.final_text = Some(text);
        }
        "command_execution" => parsed.events.push(HarnessEvent::Command {
            command: text_of(item, "command").unwrap_or_default().to_owned(),
            exit_code: item["exit_code"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok()),
            output: text_of(item, "aggregated_output").map(str::to_owned),
        }),
        "mcp_tool_call" => {
            let name = format!(
                "{}.{}",
                text_of(item, "server").unwrap_or("mcp"),
                text_of(item, "tool").unwrap_or("tool")
            );
            parsed.events.push(HarnessEvent::ToolCall {
                id: id.clone(),
                name,
                input: item["arguments"].clone(),
            });
            parsed.events.push(HarnessEvent::ToolResult {
                id,
                output: item["result"].clone(),
                is_error: item["error"].is_object() || text_of(item, "status") == Some("failed"),
            });
        }
        "file_change" => parsed.events.push(HarnessEvent::ToolCall {
            id,
            name: "file_change".into(),
            input: item["changes"].clone(),
        }),
        "web_search" => parsed.events.push(HarnessEvent::ToolCall {
            id,
            name: "web_search".into(),
            input: item["query"].clone(),
        }),
        "error" => {
            let message = text_of(item, "message").unwrap_or("codex error").to_owned();
            parsed.events.push(HarnessEvent::Error {
                kind: classify(&message, "harness"),
                message,
            });
        }
        _ => {}
    }
}

#[async_trait]
impl HarnessDriver for CodexDriver {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn cli_program(&self) -> Option<&'static str> {
        Some("codex")
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        cli::run(invocation(turn), &mut CodexParser, turn, events).await
    }
}
