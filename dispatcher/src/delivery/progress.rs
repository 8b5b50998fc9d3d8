//! Live progress in the Slack thread while a turn runs (slack.md "Live progress"). A turn
//! still running [`SlackDeliveryConfig::progress_after`] after it was queued gets a status
//! message (`chat.postMessage`, tagged `centaur_status` with its execution id), which is
//! then updated (`chat.update`) from the harness events the store holds — the assistant's
//! text so far and the command or tool being run — at most once per
//! [`SlackDeliveryConfig::progress_interval`] per message and within a per-workspace budget
//! of `chat.update` calls that stays inside Slack's Tier 3. Everything that must survive a
//! dispatcher's death is on the turn's outbox row: the status message's `ts`, a marker set
//! before posting it (so a takeover looks for it instead of posting a second one), what it
//! shows. The answer replaces the status message ([`crate::delivery`]); the final delivery
//! waits for an update in flight, so a late update never overwrites the answer.

use crate::Dispatcher;
use centaur_config::SlackDeliveryConfig;
use centaur_slack::web_api::{self, STATUS_EVENT_TYPE};
use centaur_slack::{SlackApiError, SlackClient};
use centaur_store::progress::{self, ProgressRow};
use centaur_store::StoreError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the loop looks for due turns.
const TICK: Duration = Duration::from_millis(500);
/// How long one updater holds a turn's progress (longer than any Slack call it makes).
const LEASE: Duration = Duration::from_secs(30);
/// Turns handled per round.
const BATCH: i64 = 20;
/// Harness events read to render a status.
const EVENTS: i64 = 200;
/// Longest assistant text shown in a status message.
const SHOWN_TEXT: usize = 600;
/// When a status message can no longer be updated (deleted, channel gone): stop trying.
const GIVE_UP: Duration = Duration::from_secs(24 * 3600);

/// Updates status messages until `shutdown` turns true.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    slack: SlackClient,
    config: SlackDeliveryConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut budget = Budget::new(config.updates_per_minute);
    loop {
        if let Err(err) = round(&dispatcher, &slack, &config, &mut budget).await {
            tracing::warn!(%err, "progress round failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One round over the due turns.
pub async fn round(
    dispatcher: &Dispatcher,
    slack: &SlackClient,
    config: &SlackDeliveryConfig,
    budget: &mut Budget,
) -> Result<usize, StoreError> {
    let owner = dispatcher.config.worker_id.as_str();
    let rows =
        progress::claim(&dispatcher.pool, owner, BATCH, config.progress_after, LEASE).await?;
    let count = rows.len();
    for row in rows {
        let id = row.execution_id.clone();
        if let Err(err) = update(dispatcher, slack, config, budget, row).await {
            tracing::warn!(%err, execution_id = %id, "progress update failed");
            let released =
                progress::release(&dispatcher.pool, &id, owner, None, config.progress_interval)
                    .await;
            if let Err(err) = released {
                tracing::warn!(%err, execution_id = %id, "could not release the progress lease; it expires on its own");
            }
        }
    }
    Ok(count)
}

/// Posts or updates one turn's status message and releases the turn.
async fn update(
    dispatcher: &Dispatcher,
    slack: &SlackClient,
    config: &SlackDeliveryConfig,
    budget: &mut Budget,
    row: ProgressRow,
) -> Result<(), StoreError> {
    let pool = &dispatcher.pool;
    let owner = dispatcher.config.worker_id.as_str();
    let id = row.execution_id.as_str();
    let release = |text: Option<String>, next_in: Duration| async move {
        progress::release(pool, id, owner, text.as_deref(), next_in).await
    };
    let (Some(channel), Some(thread_ts)) = (
        row.delivery["channel"].as_str(),
        row.delivery["thread_ts"].as_str(),
    ) else {
        // Without a thread there is nowhere to show progress.
        return release(None, GIVE_UP).await;
    };
    let team = row.delivery["team_id"].as_str().unwrap_or("").to_owned();
    let events = progress::recent_harness_events(pool, id, EVENTS).await?;
    let text = render(&row.execution_status, id, &events);
    let tag = web_api::tag(STATUS_EVENT_TYPE, "execution_id", id);
    let Some(ts) = row.status_ts.as_deref() else {
        let mut found = None;
        if row.status_posting {
            match slack
                .find_tagged(channel, thread_ts, STATUS_EVENT_TYPE, "execution_id", id)
                .await
            {
                Ok(ts) => found = ts,
                Err(err) if err.code() == Some("thread_not_found") => {}
                Err(err) => return release(None, wait_after(&err, config)).await,
            }
        }
        let ts = match found {
            Some(ts) => ts,
            None => {
                if !progress::mark_posting(pool, id, owner).await? {
                    // The turn just ended: its answer is on its way, no status message.
                    return release(None, GIVE_UP).await;
                }
                match slack
                    .post_message(channel, Some(thread_ts), &text, Some(tag))
                    .await
                {
                    Ok(ts) => ts,
                    Err(err) => {
                        tracing::warn!(%err, "could not post the status message");
                        return release(None, wait_after(&err, config)).await;
                    }
                }
            }
        };
        metrics::counter!("centaur_slack_progress_total", "call" => "post").increment(1);
        if !progress::record_status(pool, id, owner, &ts, &text).await? {
            tracing::warn!("lost the progress lease while posting the status message");
        }
        return release(None, config.progress_interval).await;
    };
    if row.progress_text.as_deref() == Some(text.as_str()) {
        return release(None, TICK.max(Duration::from_secs(1))).await;
    }
    if !budget.take(&team) {
        return release(None, Duration::from_secs(1)).await;
    }
    match slack.update_message(channel, ts, &text, Some(tag)).await {
        Ok(()) => {
            metrics::counter!("centaur_slack_progress_total", "call" => "update").increment(1);
            release(Some(text), config.progress_interval).await
        }
        Err(err) => {
            if let SlackApiError::RateLimited { retry_after } = &err {
                budget.pause(&team, *retry_after);
            }
            tracing::warn!(%err, "could not update the status message");
            release(None, wait_after(&err, config)).await
        }
    }
}

/// How long to leave a status message alone after a failed call.
fn wait_after(err: &SlackApiError, config: &SlackDeliveryConfig) -> Duration {
    match err {
        SlackApiError::RateLimited { retry_after } => (*retry_after).max(config.progress_interval),
        SlackApiError::Transient(_) => config.progress_interval * 2,
        SlackApiError::Permanent { .. } => GIVE_UP,
    }
}

/// The status line for a harness event, if it says what the agent is doing.
fn activity(event: &Value) -> Option<String> {
    let shorten = |text: &str, max: usize| {
        let line = text.lines().next().unwrap_or_default().trim();
        if line.chars().count() > max {
            format!("{}…", line.chars().take(max).collect::<String>())
        } else {
            line.to_owned()
        }
    };
    match event["type"].as_str()? {
        "command" => {
            let command = shorten(event["command"].as_str()?, 120);
            Some(match event["exit_code"].as_i64() {
                Some(code) => format!("ran `{command}` (exit {code})"),
                None => format!("running `{command}`"),
            })
        }
        "tool.call" => Some(format!("using `{}`", shorten(event["name"].as_str()?, 80))),
        _ => None,
    }
}

/// The assistant's text so far: the latest complete message, or the deltas streamed since.
fn assistant_text(events_newest_first: &[Value]) -> Option<String> {
    let mut deltas = Vec::new();
    for event in events_newest_first {
        match event["type"].as_str() {
            Some("assistant.delta") => deltas.push(event["text"].as_str().unwrap_or_default()),
            Some("assistant.message") if deltas.is_empty() => {
                return event["text"].as_str().map(str::to_owned);
            }
            Some("assistant.message" | "turn.started") => break,
            _ => {}
        }
    }
    deltas.reverse();
    let text = deltas.concat();
    (!text.trim().is_empty()).then_some(text)
}

/// What a status message shows: that the turn is queued or working (naming its execution),
/// what it is doing now, and the tail of the assistant's text so far.
pub fn render(status: &str, execution_id: &str, events_newest_first: &[Value]) -> String {
    let mut text = if status == "queued" || status == "retry_wait" {
        format!(":hourglass_flowing_sand: Queued, starting soon… (execution {execution_id})")
    } else {
        format!(":hourglass_flowing_sand: Working on it… (execution {execution_id})")
    };
    if let Some(now) = events_newest_first.iter().find_map(activity) {
        text.push_str(&format!("\nNow: {now}"));
    }
    if let Some(said) = assistant_text(events_newest_first) {
        let said = said.trim();
        let count = said.chars().count();
        let tail: String = if count > SHOWN_TEXT {
            let skipped: String = said.chars().skip(count - SHOWN_TEXT).collect();
            format!("…{skipped}")
        } else {
            said.to_owned()
        };
        let quoted: Vec<String> = tail.lines().map(|line| format!("> {line}")).collect();
        text.push('\n');
        text.push_str(&quoted.join("\n"));
    }
    text
}

/// `chat.update` calls for progress per workspace, refilled at `per_minute` (Slack's Tier 3
/// allows 50+ per minute per workspace and method) with small bursts, paused after a 429.
#[derive(Debug)]
pub struct Budget {
    per_minute: f64,
    teams: HashMap<String, (f64, Instant)>,
    paused: HashMap<String, Instant>,
}

impl Budget {
    /// A budget of `per_minute` calls per workspace.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            teams: HashMap::new(),
            paused: HashMap::new(),
        }
    }

    fn burst(&self) -> f64 {
        (self.per_minute / 10.0).max(1.0)
    }

    /// Takes one call for `team`; false when its budget is spent for now.
    pub fn take(&mut self, team: &str) -> bool {
        let now = Instant::now();
        if self.paused.get(team).is_some_and(|until| *until > now) {
            return false;
        }
        let (burst, rate) = (self.burst(), self.per_minute / 60.0);
        let (tokens, at) = self.teams.entry(team.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Slack answered 429 for `team`: no more calls until `retry_after` has passed.
    pub fn pause(&mut self, team: &str, retry_after: Duration) {
        self.paused
            .insert(team.to_owned(), Instant::now() + retry_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_status_names_the_execution_the_current_command_and_the_text_so_far() {
        let newest_first = vec![
            json!({"type": "assistant.delta", "text": "the tests"}),
            json!({"type": "assistant.delta", "text": "Fixing "}),
            json!({"type": "command", "command": "cargo test -p api\nsecond line", "exit_code": 101}),
            json!({"type": "assistant.message", "text": "an older message"}),
            json!({"type": "turn.started", "harness": "codex"}),
        ];
        assert_eq!(
            render("running", "exe_1", &newest_first),
            ":hourglass_flowing_sand: Working on it… (execution exe_1)\n\
             Now: ran `cargo test -p api` (exit 101)\n\
             > Fixing the tests"
        );
        assert_eq!(
            render("queued", "exe_2", &[]),
            ":hourglass_flowing_sand: Queued, starting soon… (execution exe_2)"
        );
        let tool = vec![
            json!({"type": "tool.call", "name": "read_file", "input": {}}),
            json!({"type": "assistant.message", "text": "line one\nline two"}),
        ];
        assert_eq!(
            render("running", "exe_3", &tool),
            ":hourglass_flowing_sand: Working on it… (execution exe_3)\nNow: using `read_file`\n\
             > line one\n> line two"
        );
    }

    #[test]
    fn a_long_text_shows_its_tail() {
        let long = "x".repeat(2000) + "END";
        let text = render(
            "running",
            "exe_1",
            &[json!({"type": "assistant.message", "text": long})],
        );
        assert!(text.ends_with("END"));
        assert!(text.chars().count() < SHOWN_TEXT + 120);
    }

    #[test]
    fn the_budget_allows_a_burst_then_refills_and_pauses_after_a_429() {
        let mut budget = Budget::new(60);
        let granted = (0..20).filter(|_| budget.take("T1")).count();
        assert_eq!(granted, 6, "a burst of a tenth of a minute's calls");
        assert!(budget.take("T2"), "per workspace");
        budget.pause("T2", Duration::from_secs(60));
        assert!(!budget.take("T2"));
    }
}
