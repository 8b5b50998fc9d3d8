//! `pi-mono`: `pi --provider anthropic --mode json -p <prompt>`, resumed with
//! `--session <id>`. Sends `X-Api-Key: $ANTHROPIC_API_KEY` (the placeholder in a sandbox).
//! Start-up: pi honours `HTTPS_PROXY` and `NODE_EXTRA_CA_CERTS` by itself; the base prompt
//! and the thread's instructions go to its global `AGENTS.md` (`$PI_CODING_AGENT_DIR`, else
//! `~/.pi/agent`), and pi reads the repository's own `AGENTS.md` from the checkout.
//! pi exits 0 even when the model failed, so the turn's outcome is read from its events:
//! `agent_end` (with the last assistant message's `stopReason`), `auto_retry_start` (the
//! ending is void) and `auto_retry_end` with `success: false`.

use super::cli::{self, classify, text_of, CliInvocation, NativeParser, Outcome, Parsed};
use super::{HarnessDriver, StartFailure, Turn, TurnContext, TurnEvents, TurnResult};
use crate::prompt;
use async_trait::async_trait;
use centaur_harness::HarnessEvent;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The pi driver.
pub struct PiMonoDriver;

/// The command line of a turn.
pub fn invocation(turn: &Turn, context: &TurnContext) -> CliInvocation {
    let mut args: Vec<String> = ["--provider", "anthropic", "--mode", "json", "--offline"]
        .map(str::to_owned)
        .to_vec();
    if let Some(session) = &turn.agent_thread_id {
        args.push("--session".into());
        args.push(session.clone());
    }
    args.push("-p".into());
    args.push(cli::prompt(turn));
    CliInvocation {
        program: "pi".into(),
        args,
        env: BTreeMap::new(),
        cwd: context.cwd.clone(),
    }
}

/// pi's agent directory: `$PI_CODING_AGENT_DIR`, else `$HOME/.pi/agent`.
pub fn agent_dir(turn: &Turn) -> Option<PathBuf> {
    turn.env_var("PI_CODING_AGENT_DIR")
        .map(PathBuf::from)
        .or_else(|| turn.home().map(|home| home.join(".pi").join("agent")))
}

/// Parses `pi --mode json` events.
#[derive(Default)]
pub struct PiParser;

fn assistant_text(message: &Value) -> Option<String> {
    let texts: Vec<&str> = message["content"]
        .as_array()?
        .iter()
        .filter(|block| text_of(block, "type") == Some("text"))
        .filter_map(|block| text_of(block, "text"))
        .collect();
    (!texts.is_empty()).then(|| texts.join(""))
}

fn failed(message: &Value) -> Option<String> {
    match text_of(message, "stopReason") {
        Some("error") | Some("aborted") => Some(
            text_of(message, "errorMessage")
                .unwrap_or("the model call failed")
                .to_owned(),
        ),
        _ => None,
    }
}

impl NativeParser for PiParser {
    fn parse(&mut self, line: &Value) -> Parsed {
        let mut parsed = Parsed::default();
        match text_of(line, "type").unwrap_or_default() {
            "session" => parsed.session_id = text_of(line, "id").map(str::to_owned),
            "message_update" => {
                let event = &line["assistantMessageEvent"];
                if text_of(event, "type") == Some("text_delta") {
                    parsed.events.push(HarnessEvent::AssistantDelta {
                        text: text_of(event, "delta").unwrap_or_default().to_owned(),
                    });
                }
            }
            "message_end" if text_of(&line["message"], "role") == Some("assistant") => {
                let message = &line["message"];
                if let Some(text) = assistant_text(message) {
                    parsed
                        .events
                        .push(HarnessEvent::AssistantMessage { text: text.clone() });
                    parsed.final_text = Some(text);
                }
                let usage = &message["usage"];
                parsed.events.push(HarnessEvent::Usage {
                    input_tokens: usage["input"].as_u64().unwrap_or(0),
                    output_tokens: usage["output"].as_u64().unwrap_or(0),
                });
                if let Some(error) = failed(message) {
                    parsed.events.push(HarnessEvent::Error {
                        kind: classify(&error, "upstream"),
                        message: error,
                    });
                }
            }
            "tool_execution_start" => parsed.events.push(HarnessEvent::ToolCall {
                id: text_of(line, "toolCallId").map(str::to_owned),
                name: text_of(line, "toolName").unwrap_or("tool").to_owned(),
                input: line["args"].clone(),
            }),
            "tool_execution_end" => parsed.events.push(HarnessEvent::ToolResult {
                id: text_of(line, "toolCallId").map(str::to_owned),
                output: line["result"].clone(),
                is_error: line["isError"].as_bool().unwrap_or(false),
            }),
            "agent_end" => {
                let last = line["messages"].as_array().and_then(|all| {
                    all.iter()
                        .rev()
                        .find(|m| text_of(m, "role") == Some("assistant"))
                });
                parsed.outcome = Some(match last.and_then(failed) {
                    Some(message) => Outcome::Failed {
                        kind: classify(&message, "upstream"),
                        message,
                    },
                    None => Outcome::Succeeded,
                });
            }
            "auto_retry_start" => parsed.outcome = Some(Outcome::Retrying),
            "auto_retry_end" if line["success"] == false => {
                let message = text_of(line, "finalError")
                    .unwrap_or("the model call failed after retries")
                    .to_owned();
                parsed.outcome = Some(Outcome::Failed {
                    kind: classify(&message, "upstream"),
                    message,
                });
            }
            _ => {}
        }
        parsed
    }
}

#[async_trait]
impl HarnessDriver for PiMonoDriver {
    fn name(&self) -> &'static str {
        "pi-mono"
    }

    fn cli_program(&self) -> Option<&'static str> {
        Some("pi")
    }

    fn model_host(&self) -> Option<&'static str> {
        Some("api.anthropic.com")
    }

    async fn start_up(&self, turn: &Turn, context: &TurnContext) -> Result<(), StartFailure> {
        let Some(dir) = agent_dir(turn) else {
            return Err(StartFailure::new(
                "pi prompt",
                "neither PI_CODING_AGENT_DIR nor HOME is set",
            ));
        };
        let agents_md = dir.join("AGENTS.md");
        prompt::install(
            &agents_md,
            context.system_prompt.global_agents_md().as_deref(),
        )
        .map_err(|err| StartFailure::new("pi prompt", format!("{}: {err}", agents_md.display())))
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        self.run_in(turn, &TurnContext::default(), events).await
    }

    async fn run_in(&self, turn: &Turn, context: &TurnContext, events: &TurnEvents) -> TurnResult {
        cli::run(invocation(turn, context), &mut PiParser, turn, events).await
    }
}
