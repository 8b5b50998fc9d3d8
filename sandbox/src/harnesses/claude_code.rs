//! `claude-code`: `claude -p --output-format stream-json --verbose`, resumed with
//! `--resume <session>`. Sends `X-Api-Key: $ANTHROPIC_API_KEY`, in a sandbox the
//! placeholder `ANTHROPIC_API_KEY` that iron-proxy swaps for api.anthropic.com.

use super::claude_stream::StreamJsonParser;
use super::cli::{self, CliInvocation};
use super::{HarnessDriver, Turn, TurnEvents, TurnResult};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// The Claude Code driver.
pub struct ClaudeCodeDriver;

/// The command line of a turn.
pub fn invocation(turn: &Turn) -> CliInvocation {
    let mut args: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        // The pod is the sandbox: no interactive permission prompts inside it.
        "--dangerously-skip-permissions",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(session) = &turn.agent_thread_id {
        args.push("--resume".into());
        args.push(session.clone());
    }
    args.push(cli::prompt(turn));
    CliInvocation {
        program: "claude".into(),
        args,
        env: BTreeMap::new(),
    }
}

#[async_trait]
impl HarnessDriver for ClaudeCodeDriver {
    fn name(&self) -> &'static str {
        "claude-code"
    }

    fn cli_program(&self) -> Option<&'static str> {
        Some("claude")
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        cli::run(invocation(turn), &mut StreamJsonParser, turn, events).await
    }
}
