//! `claude-code`: `claude -p --output-format stream-json --verbose`, resumed with
//! `--resume <session>`. Sends `X-Api-Key: $ANTHROPIC_API_KEY`, in a sandbox the
//! placeholder `ANTHROPIC_API_KEY` that iron-proxy swaps for api.anthropic.com.
//!
//! Start-up: nothing to install. Claude Code honours `HTTPS_PROXY` and trusts the proxy's
//! CA through `NODE_EXTRA_CA_CERTS` (both set by the pod). It does not read `AGENTS.md`,
//! so the whole system prompt (base, the repository's `AGENTS.md`, the thread's
//! instructions) goes in `--append-system-prompt`.

use super::claude_stream::StreamJsonParser;
use super::cli::{self, CliInvocation};
use super::{HarnessDriver, Turn, TurnContext, TurnEvents, TurnResult};
use async_trait::async_trait;

/// The Claude Code driver.
pub struct ClaudeCodeDriver;

/// The command line of a turn.
pub fn invocation(turn: &Turn, context: &TurnContext) -> CliInvocation {
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
    if let Some(system_prompt) = context.system_prompt.full() {
        args.push("--append-system-prompt".into());
        args.push(system_prompt);
    }
    args.push(cli::prompt(turn));
    let env = [
        // The pod is the sandbox: allows skipping permissions even when run as root.
        ("IS_SANDBOX", "1"),
        // No update checks, telemetry or error reports: only the model API is allowed out.
        ("DISABLE_AUTOUPDATER", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    CliInvocation {
        program: "claude".into(),
        args,
        env,
        cwd: context.cwd.clone(),
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

    fn model_host(&self) -> Option<&'static str> {
        Some("api.anthropic.com")
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        self.run_in(turn, &TurnContext::default(), events).await
    }

    async fn run_in(&self, turn: &Turn, context: &TurnContext, events: &TurnEvents) -> TurnResult {
        cli::run(
            invocation(turn, context),
            &mut StreamJsonParser,
            turn,
            events,
        )
        .await
    }
}
