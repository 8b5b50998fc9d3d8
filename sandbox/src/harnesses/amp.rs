//! `amp`: `amp --execute <prompt> --stream-json` (Claude Code-compatible stream JSON),
//! resumed with `amp threads continue <thread>`. Sends `$AMP_API_KEY`, in a sandbox the
//! placeholder `AMP_API_KEY` that iron-proxy swaps for ampcode.com.

use super::claude_stream::StreamJsonParser;
use super::cli::{self, CliInvocation};
use super::{HarnessDriver, Turn, TurnEvents, TurnResult};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// The Amp driver.
pub struct AmpDriver;

/// The command line of a turn.
pub fn invocation(turn: &Turn) -> CliInvocation {
    let mut args: Vec<String> = Vec::new();
    if let Some(thread) = &turn.agent_thread_id {
        args.extend(["threads".into(), "continue".into(), thread.clone()]);
    }
    args.extend([
        "--execute".into(),
        cli::prompt(turn),
        "--stream-json".into(),
    ]);
    CliInvocation {
        program: "amp".into(),
        args,
        env: BTreeMap::new(),
    }
}

#[async_trait]
impl HarnessDriver for AmpDriver {
    fn name(&self) -> &'static str {
        "amp"
    }

    fn cli_program(&self) -> Option<&'static str> {
        Some("amp")
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        cli::run(invocation(turn), &mut StreamJsonParser, turn, events).await
    }
}
