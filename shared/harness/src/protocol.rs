//! Wire types of the sandbox protocol.

use serde::{Deserialize, Serialize};
use serde_json::Value;

// The one part type of Centaur: what `POST /agent/message` and `/agent/execute` accept (as
// `centaur_core::api::MessagePart`), what `messages.parts` stores and what a turn line
// carries in `TurnMessage::content`. On the wire: `{"type":…,"text":…,…}` with `type`
// required, `text` omitted when absent and any other field kept in `extra`. (The doc
// comment below is the OpenAPI schema's description.)
/// One part of a message. Only `text` parts carry text; other types are kept verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessagePart {
    /// `text`, or another type stored as given.
    #[serde(rename = "type")]
    pub kind: String,
    /// Required when `type` is `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The part's other fields, kept as given.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extra: serde_json::Map<String, Value>,
}

impl MessagePart {
    /// A `text` part.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: "text".to_owned(),
            text: Some(text.into()),
            extra: serde_json::Map::new(),
        }
    }

    /// The part as a turn line carries it: its type and text, without its other fields
    /// (a harness reads only those; the stored message keeps the rest).
    pub fn for_turn(&self) -> Self {
        Self {
            kind: self.kind.clone(),
            text: self.text.clone(),
            extra: serde_json::Map::new(),
        }
    }
}

/// The user message of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnMessage {
    pub role: String,
    pub content: Vec<MessagePart>,
}

impl TurnMessage {
    /// The text blocks joined by blank lines: what a text-only harness receives.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|block| block.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// The repository a thread works in and the branch its sandboxes work on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// The repository as the thread named it (`owner/name` or an https URL), for messages.
    pub repo: String,
    /// The https clone URL, without any credential: the sandbox adds the
    /// `GITHUB_TOKEN` placeholder as the Basic-auth password, which the proxy swaps.
    pub clone_url: String,
    /// The branch the agent works on: `centaur/<short thread id>-<n>`. Checked out if the
    /// remote already has it (a replaced sandbox continues the work), else created.
    pub branch: String,
}

/// A line the dispatcher writes to the sandbox's stdin. (One value per protocol line: the
/// size difference between variants costs nothing worth a box.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SandboxInput {
    /// Run one turn.
    User {
        message: TurnMessage,
        thread_key: String,
        execution_id: String,
        /// The harness's own session id from the previous turn, to resume it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_thread_id: Option<String>,
        /// Per-turn environment for the harness CLI: a fresh `CENTAUR_API_KEY` sandbox token
        /// and `CENTAUR_THREAD_KEY` (a warm or long-lived sandbox gets them here, never a
        /// real secret).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        env: std::collections::BTreeMap<String, String>,
        /// The repository the thread works in: the sandbox clones it (once per sandbox)
        /// and runs the harness in the checkout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<Workspace>,
        /// The thread's own instructions (`agents_md_override` from spawn), appended to
        /// the deployment's base prompt and the repository's `AGENTS.md`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instructions: Option<String>,
    },
    /// Replay `execution_id`'s events after `after_seq` (sent after a re-attach).
    Resume {
        execution_id: String,
        after_seq: u64,
    },
    /// Stop the running turn of `execution_id`.
    Interrupt { execution_id: String },
}

/// Whether a turn succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    Ok,
    Error,
}

/// The shared event vocabulary every harness's native output is normalised into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HarnessEvent {
    /// The sandbox accepted the turn and started the harness.
    #[serde(rename = "turn.started")]
    TurnStarted {
        harness: String,
        /// Whether the harness's CLI is installed in this sandbox (absent for `echo`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cli_present: Option<bool>,
        /// The CLI's `--version` line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cli_version: Option<String>,
    },
    /// A piece of streamed assistant text.
    #[serde(rename = "assistant.delta")]
    AssistantDelta { text: String },
    /// A complete assistant message.
    #[serde(rename = "assistant.message")]
    AssistantMessage { text: String },
    /// The agent called a tool.
    #[serde(rename = "tool.call")]
    ToolCall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// A tool returned.
    #[serde(rename = "tool.result")]
    ToolResult {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default)]
        output: Value,
        #[serde(default)]
        is_error: bool,
    },
    /// The agent ran a shell command.
    #[serde(rename = "command")]
    Command {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// Token usage reported by the model.
    #[serde(rename = "usage")]
    Usage {
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
    },
    /// Something went wrong; `kind` classifies it (`cli_missing`, `auth`, `upstream`,
    /// `crash`, `malformed_output`, `interrupted`, …).
    #[serde(rename = "error")]
    Error { kind: String, message: String },
    /// The harness is alive but has nothing to say (keeps the silence deadline away).
    #[serde(rename = "heartbeat")]
    Heartbeat,
    /// The end of the turn: exactly one per turn.
    #[serde(rename = "turn.done")]
    TurnDone {
        status: TurnStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result_text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_thread_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Answer to `resume` for a turn this sandbox never received.
    #[serde(rename = "turn.unknown")]
    TurnUnknown,
}

impl HarnessEvent {
    /// True for the end-of-turn event.
    pub fn is_turn_done(&self) -> bool {
        matches!(self, HarnessEvent::TurnDone { .. })
    }
}

/// A line the sandbox writes to stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxOutput {
    pub execution_id: String,
    /// 1-based, per execution; `0` for `turn.unknown`.
    pub seq: u64,
    #[serde(flatten)]
    pub event: HarnessEvent,
}

/// A protocol line could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed protocol line: {0}")]
pub struct ProtocolError(#[from] serde_json::Error);

impl SandboxInput {
    /// Parses one stdin line.
    pub fn parse(line: &str) -> Result<Self, ProtocolError> {
        Ok(serde_json::from_str(line)?)
    }

    /// Serialises to one line (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl SandboxOutput {
    /// Parses one stdout line.
    pub fn parse(line: &str) -> Result<Self, ProtocolError> {
        Ok(serde_json::from_str(line)?)
    }

    /// Serialises to one line (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_line_has_the_documented_shape() {
        let line = r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"hi"}]},"thread_key":"t","execution_id":"exe_0123456789abcdef"}"#;
        let parsed = SandboxInput::parse(line).expect("parses");
        match &parsed {
            SandboxInput::User { message, .. } => assert_eq!(message.text(), "hi"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            SandboxInput::parse(&parsed.to_line()).expect("round trip"),
            parsed
        );
    }

    #[test]
    fn turn_done_serialises_flat_with_execution_and_seq() {
        let out = SandboxOutput {
            execution_id: "exe_0123456789abcdef".into(),
            seq: 3,
            event: HarnessEvent::TurnDone {
                status: TurnStatus::Ok,
                result_text: Some("PONG".into()),
                agent_thread_id: None,
                error: None,
            },
        };
        let value: Value = serde_json::from_str(&out.to_line()).expect("json");
        assert_eq!(value["type"], "turn.done");
        assert_eq!(value["status"], "ok");
        assert_eq!(value["seq"], 3);
        assert_eq!(
            SandboxOutput::parse(&out.to_line()).expect("round trip"),
            out
        );
    }

    #[test]
    fn a_message_part_keeps_its_json() {
        for json in [
            r#"{"type":"text","text":"hi"}"#,
            r#"{"type":"image","url":"https://example.com/a.png","detail":{"size":3}}"#,
            r#"{"type":"text","text":"ctx","source":"slack_thread_context"}"#,
            r#"{"type":"file"}"#,
        ] {
            let part: MessagePart = serde_json::from_str(json).expect("parses");
            assert_eq!(
                serde_json::to_value(&part).expect("serialises"),
                serde_json::from_str::<Value>(json).expect("json"),
                "{json}"
            );
        }
        let image: MessagePart =
            serde_json::from_str(r#"{"type":"image","url":"u"}"#).expect("parses");
        assert_eq!(image.kind, "image");
        assert_eq!(image.text, None);
        assert_eq!(image.extra["url"], "u");
        assert_eq!(
            serde_json::to_string(&image.for_turn()).expect("serialises"),
            r#"{"type":"image"}"#
        );
        assert_eq!(
            serde_json::to_string(&MessagePart::text("hi")).expect("serialises"),
            r#"{"type":"text","text":"hi"}"#
        );
    }

    #[test]
    fn a_message_part_needs_a_type_and_a_string_text() {
        for json in [
            r#"{"text":"hi"}"#,
            r#"{"type":1,"text":"hi"}"#,
            r#"{"type":"text","text":5}"#,
            r#""hi""#,
        ] {
            assert!(serde_json::from_str::<MessagePart>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn garbage_lines_are_protocol_errors() {
        assert!(SandboxOutput::parse("not json").is_err());
        assert!(SandboxInput::parse(r#"{"type":"nope"}"#).is_err());
    }
}
