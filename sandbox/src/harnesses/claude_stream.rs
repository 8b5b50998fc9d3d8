//! The `stream-json` format Claude Code prints (`claude -p --output-format stream-json
//! --verbose`) and Amp reuses (`amp --execute --stream-json`): `system`/`init` with the
//! session id, `assistant` and `user` messages with content blocks, a final `result`.

use super::cli::{classify, text_of, NativeParser, Outcome, Parsed};
use centaur_harness::HarnessEvent;
use serde_json::Value;

/// Parses stream-json lines.
#[derive(Default)]
pub struct StreamJsonParser;

impl NativeParser for StreamJsonParser {
    fn parse(&mut self, line: &Value) -> Parsed {
        let mut parsed = Parsed {
            session_id: text_of(line, "session_id").map(str::to_owned),
            ..Parsed::default()
        };
        match text_of(line, "type").unwrap_or_default() {
            "assistant" => {
                for block in blocks(line) {
                    match text_of(block, "type").unwrap_or_default() {
                        "text" => {
                            let text = text_of(block, "text").unwrap_or_default().to_owned();
                            parsed
                                .events
                                .push(HarnessEvent::AssistantMessage { text: text.clone() });
                            parsed.final_text = Some(text);
                        }
                        "tool_use" => parsed.events.push(HarnessEvent::ToolCall {
                            id: text_of(block, "id").map(str::to_owned),
                            name: text_of(block, "name").unwrap_or("tool").to_owned(),
                            input: block["input"].clone(),
                        }),
                        _ => {}
                    }
                }
            }
            "user" => {
                for block in blocks(line).filter(|b| text_of(b, "type") == Some("tool_result")) {
                    parsed.events.push(HarnessEvent::ToolResult {
                        id: text_of(block, "tool_use_id").map(str::to_owned),
                        output: block["content"].clone(),
                        is_error: block["is_error"].as_bool().unwrap_or(false),
                    });
                }
            }
            "result" => {
                let usage = &line["usage"];
                parsed.events.push(HarnessEvent::Usage {
                    input_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
                });
                let result = text_of(line, "result").map(str::to_owned);
                let failed = line["is_error"].as_bool().unwrap_or(false)
                    || text_of(line, "subtype").is_some_and(|s| s != "success");
                if failed {
                    let message = result
                        .or_else(|| text_of(line, "error").map(str::to_owned))
                        .unwrap_or_else(|| {
                            format!(
                                "the turn ended with {}",
                                text_of(line, "subtype").unwrap_or("an error")
                            )
                        });
                    parsed.outcome = Some(Outcome::Failed {
                        kind: classify(&message, "harness"),
                        message,
                    });
                } else {
                    parsed.final_text = result;
                    parsed.outcome = Some(Outcome::Succeeded);
                }
            }
            _ => {}
        }
        parsed
    }
}

fn blocks(line: &Value) -> impl Iterator<Item = &Value> {
    line["message"]["content"].as_array().into_iter().flatten()
}
