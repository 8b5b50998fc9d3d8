//! `codex` (the default harness): `codex exec --json`, resumed with `codex exec resume <id>`.
//!
//! Start-up: `codex exec` does not log in from `OPENAI_API_KEY` in its environment (it
//! then sends no `Authorization` header at all), so the sandbox runs
//! `codex login --with-api-key` once with the placeholder on stdin; codex stores it in
//! `$CODEX_HOME/auth.json` and sends `Authorization: Bearer OPENAI_API_KEY`, which the
//! egress proxy swaps on the way to api.openai.com. The deployment's base prompt and the
//! thread's instructions go to the global `$CODEX_HOME/AGENTS.md`; codex reads the
//! repository's own `AGENTS.md` from the checkout itself.
//!
//! Output: codex first tries a WebSocket to `/v1/responses` and reconnects or falls back
//! to HTTPS when that fails, printing `error` lines on the way. Those are held and shown
//! only if the turn fails. A resumed thread reports cumulative usage for the whole
//! thread, so the usage of a turn is the difference to what was reported before.

use super::cli::{self, classify, text_of, CliInvocation, NativeParser, Outcome, Parsed};
use super::{HarnessDriver, StartFailure, Turn, TurnContext, TurnEvents, TurnResult};
use crate::prompt;
use async_trait::async_trait;
use centaur_harness::HarnessEvent;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// How long codex may keep "waiting for network" before the turn fails.
pub const NETWORK_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// How long `codex login` may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where codex keeps credentials: a file (a sandbox has no keyring).
const CREDENTIALS_STORE: &str = "cli_auth_credentials_store=\"file\"";

/// Settings for every `codex exec`: nothing but the model API is contacted. With an API
/// key, codex otherwise first asks chatgpt.com for its model list (off the egress
/// allowlist: ~6 s of refused retries before every turn), clones its plugin catalogue from
/// github.com and sends metrics to ab.chatgpt.com. None of these is a provider setting.
pub const QUIET_SETTINGS: [&str; 4] = [
    "features.api_key_model_discovery=false",
    "features.plugins=false",
    "features.remote_plugin=false",
    "analytics.enabled=false",
];

/// Token counts, as codex reports them for a whole thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTotals {
    pub input: u64,
    pub output: u64,
}

/// The codex driver. Remembers, per codex thread, the cumulative usage it has reported.
#[derive(Default)]
pub struct CodexDriver {
    reported: std::sync::Mutex<HashMap<String, TokenTotals>>,
}

/// `$CODEX_HOME`, else `$HOME/.codex`.
pub fn codex_home(turn: &Turn) -> Option<PathBuf> {
    turn.env_var("CODEX_HOME")
        .map(PathBuf::from)
        .or_else(|| turn.home().map(|home| home.join(".codex")))
}

/// The command line of a turn (a new thread, or `resume` of the previous one).
pub fn invocation(turn: &Turn, context: &TurnContext) -> CliInvocation {
    let mut args: Vec<String> = [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "-c",
        CREDENTIALS_STORE,
    ]
    .map(str::to_owned)
    .to_vec();
    for setting in QUIET_SETTINGS {
        args.push("-c".into());
        args.push(setting.into());
    }
    if let Some(thread_id) = &turn.agent_thread_id {
        args.push("resume".into());
        args.push(thread_id.clone());
    }
    args.push(cli::prompt(turn));
    CliInvocation {
        program: "codex".into(),
        args,
        env: BTreeMap::new(),
        cwd: context.cwd.clone(),
    }
}

/// The API key stored in `auth.json`, if any.
fn stored_key(auth_file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(auth_file).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    text_of(&value, "OPENAI_API_KEY").map(str::to_owned)
}

/// Logs codex in with the placeholder key unless `auth.json` already holds it.
async fn login(turn: &Turn, home: &Path) -> Result<(), StartFailure> {
    let failed = |cause: String| StartFailure::new("codex login", cause);
    let key = turn
        .env_var("OPENAI_API_KEY")
        .ok_or_else(|| failed("OPENAI_API_KEY is not set in the sandbox".into()))?;
    let auth_file = home.join("auth.json");
    if stored_key(&auth_file).as_deref() == Some(key.as_str()) {
        return Ok(());
    }
    std::fs::create_dir_all(home)
        .map_err(|err| failed(format!("cannot create {}: {err}", home.display())))?;
    let mut command = tokio::process::Command::new("codex");
    command
        .args(["login", "--with-api-key", "-c", CREDENTIALS_STORE])
        .envs(&turn.env)
        .env("CODEX_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = async {
        let mut child = command.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(key.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
        }
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(LOGIN_TIMEOUT, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return Err(failed(format!("cannot run codex: {err}"))),
        Err(_) => {
            return Err(failed(format!(
                "no answer within {} s",
                LOGIN_TIMEOUT.as_secs()
            )))
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(failed(format!("{}: {}", output.status, tail.join("; "))));
    }
    if stored_key(&auth_file).as_deref() != Some(key.as_str()) {
        return Err(failed(format!(
            "codex did not store the key in {}",
            auth_file.display()
        )));
    }
    Ok(())
}

/// The thread's cumulative usage as of its last turn, from codex's own rollout file
/// (`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*-<thread>.jsonl`).
pub fn rollout_totals(codex_home: &Path, thread_id: &str) -> Option<TokenTotals> {
    let suffix = format!("-{thread_id}.jsonl");
    let file = find_file(&codex_home.join("sessions"), &suffix, 4)?;
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|line| line.contains("\"token_count\""))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rev()
        .filter_map(|value| {
            let total = &value["payload"]["info"]["total_token_usage"];
            Some(TokenTotals {
                input: total["input_tokens"].as_u64()?,
                output: total["output_tokens"].as_u64()?,
            })
        })
        .next()
}

fn find_file(dir: &Path, suffix: &str, depth: usize) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if depth > 0 {
                if let Some(found) = find_file(&path, suffix, depth - 1) {
                    return Some(found);
                }
            }
        } else if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().ends_with(suffix))
        {
            return Some(path);
        }
    }
    None
}

/// Parses `codex exec --json` events.
pub struct CodexParser {
    /// Usage of the thread already reported before this turn.
    baseline: TokenTotals,
    /// The thread's cumulative usage at this turn's end.
    totals: Option<TokenTotals>,
    /// Error events held back: shown only if the turn fails.
    held: Vec<HarnessEvent>,
    /// Since when codex has been "waiting for network", with no other event since.
    waiting_since: Option<Instant>,
    network_wait_limit: Duration,
}

impl Default for CodexParser {
    fn default() -> Self {
        Self::resuming(TokenTotals::default())
    }
}

impl CodexParser {
    /// A parser for a turn of a thread whose usage so far was `baseline`.
    pub fn resuming(baseline: TokenTotals) -> Self {
        Self {
            baseline,
            totals: None,
            held: Vec::new(),
            waiting_since: None,
            network_wait_limit: NETWORK_WAIT_LIMIT,
        }
    }

    /// The same parser, failing the turn once codex waited for the network this long.
    pub fn with_network_wait_limit(mut self, limit: Duration) -> Self {
        self.network_wait_limit = limit;
        self
    }

    /// The thread's cumulative usage at the end of this turn, if it completed.
    pub fn totals(&self) -> Option<TokenTotals> {
        self.totals
    }

    /// Holds an error (shown only if the turn fails) and reports a heartbeat instead.
    fn hold(&mut self, message: String, parsed: &mut Parsed) {
        tracing::info!(%message, "codex reported an error; held unless the turn fails");
        self.held.push(HarnessEvent::Error {
            kind: classify(&message, "harness"),
            message,
        });
        parsed.events.push(HarnessEvent::Heartbeat);
    }

    fn top_level_error(&mut self, message: String, parsed: &mut Parsed) {
        if message.contains("waiting for network") {
            let since = *self.waiting_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.network_wait_limit {
                parsed.outcome = Some(Outcome::Failed {
                    kind: "upstream".into(),
                    message: format!(
                        "codex could not reach the model API for {} s: {message}",
                        since.elapsed().as_secs()
                    ),
                });
                parsed.stop = true;
                return;
            }
        }
        self.hold(message, parsed);
    }

    fn turn_completed(&mut self, line: &Value, parsed: &mut Parsed) {
        let usage = &line["usage"];
        let totals = TokenTotals {
            input: usage["input_tokens"].as_u64().unwrap_or(0),
            output: usage["output_tokens"].as_u64().unwrap_or(0),
        };
        // A baseline above the totals means they are not cumulative after all.
        let baseline =
            if totals.input >= self.baseline.input && totals.output >= self.baseline.output {
                self.baseline
            } else {
                TokenTotals::default()
            };
        parsed.events.push(HarnessEvent::Usage {
            input_tokens: totals.input - baseline.input,
            output_tokens: totals.output - baseline.output,
        });
        self.totals = Some(totals);
        parsed.outcome = Some(Outcome::Succeeded);
    }
}

impl NativeParser for CodexParser {
    fn parse(&mut self, line: &Value) -> Parsed {
        let mut parsed = Parsed::default();
        let kind = text_of(line, "type").unwrap_or_default();
        if kind != "error" {
            self.waiting_since = None;
        }
        match kind {
            "thread.started" => parsed.session_id = text_of(line, "thread_id").map(str::to_owned),
            "item.completed" if text_of(&line["item"], "type") == Some("error") => {
                let message = text_of(&line["item"], "message")
                    .unwrap_or("codex error")
                    .to_owned();
                self.hold(message, &mut parsed);
            }
            "item.completed" => item(&line["item"], &mut parsed),
            "turn.completed" => self.turn_completed(line, &mut parsed),
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
                let message = text_of(line, "message").unwrap_or("codex error").to_owned();
                self.top_level_error(message, &mut parsed);
            }
            _ => {}
        }
        parsed
    }

    fn take_held(&mut self) -> Vec<HarnessEvent> {
        std::mem::take(&mut self.held)
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
        _ => {}
    }
}

impl CodexDriver {
    /// What was reported for the thread before this turn: this sandbox's own record, else
    /// codex's rollout file (a restarted sandbox program), else nothing (a new thread).
    fn baseline(&self, turn: &Turn) -> TokenTotals {
        let Some(thread_id) = &turn.agent_thread_id else {
            return TokenTotals::default();
        };
        let recorded = self
            .reported
            .lock()
            .ok()
            .and_then(|map| map.get(thread_id).copied());
        recorded
            .or_else(|| codex_home(turn).and_then(|home| rollout_totals(&home, thread_id)))
            .unwrap_or_default()
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

    fn model_host(&self) -> Option<&'static str> {
        Some("api.openai.com")
    }

    async fn start_up(&self, turn: &Turn, context: &TurnContext) -> Result<(), StartFailure> {
        let home = codex_home(turn).ok_or_else(|| {
            StartFailure::new("codex login", "neither CODEX_HOME nor HOME is set")
        })?;
        login(turn, &home).await?;
        let agents_md = home.join("AGENTS.md");
        prompt::install(
            &agents_md,
            context.system_prompt.global_agents_md().as_deref(),
        )
        .map_err(|err| StartFailure::new("codex prompt", format!("{}: {err}", agents_md.display())))
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        self.run_in(turn, &TurnContext::default(), events).await
    }

    async fn run_in(&self, turn: &Turn, context: &TurnContext, events: &TurnEvents) -> TurnResult {
        let mut parser = CodexParser::resuming(self.baseline(turn));
        let result = cli::run(invocation(turn, context), &mut parser, turn, events).await;
        if let (Some(thread_id), Some(totals)) = (&result.agent_thread_id, parser.totals()) {
            if let Ok(mut reported) = self.reported.lock() {
                reported.insert(thread_id.clone(), totals);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(parser: &mut CodexParser, lines: &[Value]) -> Vec<Parsed> {
        lines.iter().map(|line| parser.parse(line)).collect()
    }

    fn errors(events: &[HarnessEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, HarnessEvent::Error { .. }))
            .count()
    }

    fn websocket_fallback() -> Vec<Value> {
        let mut lines = vec![json!({"type":"thread.started","thread_id":"th"})];
        for n in 2..=5 {
            lines.push(json!({"type":"error","message":format!("Reconnecting... {n}/5 (unexpected status 404 Not Found: Unknown error, url: wss://api.openai.com/v1/responses)")}));
        }
        lines.push(json!({"type":"item.completed","item":{"id":"item_0","type":"error","message":"Falling back from WebSockets to HTTPS transport. unexpected status 404 Not Found"}}));
        lines
    }

    #[test]
    fn recovered_retries_are_held_and_dropped_when_the_turn_succeeds() {
        let mut parser = CodexParser::default();
        let mut lines = websocket_fallback();
        lines.push(json!({"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"PONG"}}));
        lines.push(json!({"type":"turn.completed","usage":{"input_tokens":21,"output_tokens":5}}));
        let parsed = feed(&mut parser, &lines);
        let events: Vec<HarnessEvent> = parsed.iter().flat_map(|p| p.events.clone()).collect();
        assert_eq!(errors(&events), 0, "{events:?}");
        assert!(events.contains(&HarnessEvent::Heartbeat));
        assert_eq!(
            parsed.last().and_then(|p| p.outcome.clone()),
            Some(Outcome::Succeeded)
        );
        assert_eq!(parser.take_held().len(), 5, "held, for a failure only");
    }

    #[test]
    fn held_errors_come_out_when_the_turn_fails() {
        let mut parser = CodexParser::default();
        let mut lines = websocket_fallback();
        lines.push(json!({"type":"turn.failed","error":{"message":"unexpected status 500 Internal Server Error"}}));
        let parsed = feed(&mut parser, &lines);
        match parsed.last().and_then(|p| p.outcome.clone()) {
            Some(Outcome::Failed { kind, .. }) => assert_eq!(kind, "upstream"),
            other => panic!("expected a failure, got {other:?}"),
        }
        let held = parser.take_held();
        assert_eq!(errors(&held), 5);
        assert!(parser.take_held().is_empty(), "emitted once");
    }

    #[test]
    fn waiting_for_the_network_too_long_stops_the_turn() {
        let mut parser = CodexParser::default().with_network_wait_limit(Duration::ZERO);
        let line = json!({"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"});
        let parsed = parser.parse(&line);
        assert!(parsed.stop);
        match parsed.outcome {
            Some(Outcome::Failed { kind, message }) => {
                assert_eq!(kind, "upstream");
                assert!(
                    message.contains("could not reach the model API"),
                    "{message}"
                );
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let mut patient = CodexParser::default();
        assert!(
            !patient.parse(&line).stop,
            "within the limit codex may retry"
        );
    }

    #[test]
    fn usage_of_a_resumed_thread_is_the_difference_to_what_was_reported() {
        let completed = |input: u64, output: u64| json!({"type":"turn.completed","usage":{"input_tokens":input,"cached_input_tokens":0,"output_tokens":output}});
        let mut first = CodexParser::default();
        let usage = first.parse(&completed(21, 5)).events;
        assert_eq!(
            usage,
            vec![HarnessEvent::Usage {
                input_tokens: 21,
                output_tokens: 5
            }]
        );
        let after_first = first.totals().expect("totals");
        let mut second = CodexParser::resuming(after_first);
        assert_eq!(
            second.parse(&completed(42, 10)).events,
            vec![HarnessEvent::Usage {
                input_tokens: 21,
                output_tokens: 5
            }]
        );
        assert_eq!(
            second.totals(),
            Some(TokenTotals {
                input: 42,
                output: 10
            })
        );
        let mut not_cumulative = CodexParser::resuming(TokenTotals {
            input: 100,
            output: 100,
        });
        assert_eq!(
            not_cumulative.parse(&completed(21, 5)).events,
            vec![HarnessEvent::Usage {
                input_tokens: 21,
                output_tokens: 5
            }]
        );
    }

    #[test]
    fn the_rollout_file_gives_the_threads_last_cumulative_usage() {
        let home = std::env::temp_dir().join(format!("centaur-codex-home-{}", std::process::id()));
        let day = home.join("sessions/2026/11/29");
        std::fs::create_dir_all(&day).expect("sessions dir");
        let token_count = |input: u64, output: u64| {
            json!({"type":"event_msg","payload":{"type":"token_count","info":{
                "total_token_usage":{"input_tokens":input,"output_tokens":output},
                "last_token_usage":{"input_tokens":21,"output_tokens":5}}}})
            .to_string()
        };
        std::fs::write(
            day.join("rollout-2026-11-29T16-06-25-th-1.jsonl"),
            [
                r#"{"type":"session_meta"}"#.to_owned(),
                token_count(21, 5),
                token_count(42, 10),
            ]
            .join("\n"),
        )
        .expect("rollout");
        assert_eq!(
            rollout_totals(&home, "th-1"),
            Some(TokenTotals {
                input: 42,
                output: 10
            })
        );
        assert_eq!(rollout_totals(&home, "th-2"), None);
        let _ = std::fs::remove_dir_all(&home);
    }
}
