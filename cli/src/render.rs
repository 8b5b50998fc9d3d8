//! Human output, decided without IO: events as they stream, an execution, and the lists.

use crate::error::truncate_chars;
use crate::stream::StreamedEvent;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::fmt::Write as _;

/// The longest tool input, tool output or unknown event shown on one line.
const INLINE_MAX: usize = 200;
/// Output lines shown under a failed command.
const FAILED_COMMAND_LINES: usize = 5;

/// Turns streamed events into text, remembering what assistant text it has shown (so a
/// complete message after its deltas, or the final result, is not printed twice).
#[derive(Debug, Default)]
pub struct Renderer {
    /// Show terminal `execution_state` events (an execution's trail); off when streaming
    /// live, where the outcome line says it.
    show_terminal_states: bool,
    /// The last text written did not end with a newline.
    mid_line: bool,
    /// Deltas of the assistant message in progress.
    current_message: String,
    /// Every assistant text shown so far.
    shown: String,
    /// The last harness error shown (a `turn.done` repeating it adds nothing).
    last_error: Option<String>,
}

fn line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

/// A JSON value on one line, shortened.
fn inline(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.replace('\n', " ⏎ "),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    truncate_chars(text.trim(), INLINE_MAX)
}

impl Renderer {
    /// A renderer for a live stream (`run`, `watch`).
    pub fn live() -> Self {
        Self::default()
    }

    /// A renderer for a stored trail (`executions get --events`).
    pub fn trail() -> Self {
        Self {
            show_terminal_states: true,
            ..Self::default()
        }
    }

    /// Every assistant text shown so far.
    pub fn shown_text(&self) -> &str {
        &self.shown
    }

    /// A newline if the last text left the line open (call before printing anything else).
    pub fn close_line(&mut self) -> String {
        if std::mem::take(&mut self.mid_line) {
            "\n".to_owned()
        } else {
            String::new()
        }
    }

    /// The text for one event (empty for events not worth a line, such as heartbeats).
    pub fn render(&mut self, event: &StreamedEvent) -> String {
        let body = &event.event_json;
        if event.event_kind == "harness_event" {
            match body["type"].as_str().unwrap_or_default() {
                "assistant.delta" => return self.delta(body["text"].as_str().unwrap_or_default()),
                "assistant.message" => {
                    return self.message(body["text"].as_str().unwrap_or_default())
                }
                _ => {}
            }
        }
        let lines = self.lines(event);
        if lines.is_empty() {
            return String::new();
        }
        let mut out = self.close_line();
        out.push_str(&lines);
        out
    }

    fn delta(&mut self, text: &str) -> String {
        if text.is_empty() {
            return String::new();
        }
        self.current_message.push_str(text);
        self.shown.push_str(text);
        self.mid_line = !text.ends_with('\n');
        text.to_owned()
    }

    fn message(&mut self, text: &str) -> String {
        if !std::mem::take(&mut self.current_message).is_empty() {
            // Already shown as it streamed.
            return self.close_line();
        }
        if text.trim().is_empty() {
            return String::new();
        }
        let mut out = self.close_line();
        line(&mut out, text.trim_end());
        self.shown.push_str(text);
        self.shown.push('\n');
        out
    }

    /// Whole lines for everything but assistant text.
    fn lines(&mut self, event: &StreamedEvent) -> String {
        let body = &event.event_json;
        let text = |field: &str| body[field].as_str().unwrap_or_default().to_owned();
        let mut out = String::new();
        match event.event_kind.as_str() {
            "execution_state" => {
                let status = text("status");
                let terminal = event.terminal_status().is_some();
                if terminal && !self.show_terminal_states {
                    return out;
                }
                let error = body["error_text"].as_str().unwrap_or_default().trim();
                let mut state = format!(
                    "· {}",
                    status_with_reason(&status, body["terminal_reason"].as_str(), error)
                );
                if !error.is_empty() {
                    let _ = write!(state, ": {error}");
                }
                line(&mut out, &state);
            }
            "execution_started" => {
                let mut started = format!(
                    "· started {} in sandbox {}",
                    text("harness"),
                    text("sandbox_id")
                );
                let mut notes = Vec::new();
                if let Some(delay) = body["queue_delay_ms"].as_u64() {
                    notes.push(format!("queued {}", duration_ms(delay)));
                }
                if let Some(attempt) = body["attempt"].as_i64().filter(|a| *a > 1) {
                    notes.push(format!("attempt {attempt}"));
                }
                if !notes.is_empty() {
                    let _ = write!(started, " ({})", notes.join(", "));
                }
                line(&mut out, &started);
            }
            "start_retry" => line(
                &mut out,
                &format!(
                    "· the sandbox did not start ({}); retrying in {}",
                    text("first_failure"),
                    text("sandbox_id")
                ),
            ),
            "execution_summary" => {
                let mut summary = format!("· summary: {}", status_words(&text("status")));
                if let Some(ms) = body["duration_ms"].as_u64() {
                    let _ = write!(summary, " in {}", duration_ms(ms));
                }
                if let Some(count) = body["harness_event_count"].as_u64() {
                    let _ = write!(summary, ", {count} harness events");
                }
                line(&mut out, &summary);
            }
            "final_delivery_ready" => line(&mut out, "· the answer is ready for delivery"),
            "final_delivery_delivered" => line(&mut out, "· the answer was delivered"),
            "harness_event" => self.harness_lines(body, &mut out),
            other => line(&mut out, &format!("· {other}: {}", inline(body))),
        }
        out
    }

    fn harness_lines(&mut self, body: &Value, out: &mut String) {
        let text = |field: &str| body[field].as_str().unwrap_or_default();
        match text("type") {
            "heartbeat" => {}
            "turn.started" => {
                if let Some(version) = body["cli_version"].as_str() {
                    line(out, &format!("· {} CLI {version}", text("harness")));
                } else if body["cli_present"] == false {
                    line(
                        out,
                        &format!("· {} CLI is missing from the sandbox", text("harness")),
                    );
                }
            }
            "tool.call" => {
                let input = inline(&body["input"]);
                let call = if input.is_empty() {
                    format!("→ {}", text("name"))
                } else {
                    format!("→ {} {input}", text("name"))
                };
                line(out, &call);
            }
            "tool.result" => {
                let label = if body["is_error"] == true {
                    "← error"
                } else {
                    "←"
                };
                let output = inline(&body["output"]);
                line(out, format!("{label} {output}").trim_end());
            }
            "command" => {
                let exit = match body["exit_code"].as_i64() {
                    Some(code) => format!("exit {code}"),
                    None => "no exit code".to_owned(),
                };
                line(out, &format!("$ {}  [{exit}]", text("command").trim()));
                if body["exit_code"].as_i64().is_some_and(|code| code != 0) {
                    let output = text("output");
                    for shown in output.lines().take(FAILED_COMMAND_LINES) {
                        line(out, &format!("  │ {}", truncate_chars(shown, INLINE_MAX)));
                    }
                }
            }
            "usage" => line(
                out,
                &format!("· usage: {}", usage(body).unwrap_or_default()),
            ),
            "error" => {
                let kind = text("kind");
                let message = text("message").trim().to_owned();
                self.last_error = Some(message.clone());
                if kind.is_empty() {
                    line(out, &format!("error: {message}"));
                } else {
                    line(out, &format!("error ({kind}): {message}"));
                }
            }
            "turn.done" => {
                let error = body["error"].as_str().map(str::trim);
                if let Some(error) = error.filter(|e| self.last_error.as_deref() != Some(*e)) {
                    line(
                        out,
                        &format!("· the turn ended with an error: {}", error.trim()),
                    );
                }
            }
            "turn.unknown" => line(out, "· the sandbox did not know this turn"),
            other => {
                let mut rest = body.clone();
                if let Some(fields) = rest.as_object_mut() {
                    for noise in ["type", "seq", "execution_id"] {
                        fields.remove(noise);
                    }
                }
                let rest = inline(&rest);
                let name = if other.is_empty() { "event" } else { other };
                line(out, format!("· {name} {rest}").trim_end());
            }
        }
    }
}

/// A status in words: `failed`, `cancel requested`, `waiting to retry`.
pub fn status_words(status: &str) -> String {
    match status {
        "failed_permanent" => "failed".to_owned(),
        "retry_wait" => "waiting to retry".to_owned(),
        other => other.replace('_', " "),
    }
}

/// A terminal status with its reason, unless the reason says nothing new: the same as
/// the status, or already the start of the error text. Other statuses stand alone.
pub fn status_with_reason(status: &str, reason: Option<&str>, error: &str) -> String {
    let words = status_words(status);
    let terminal = crate::exit::Exit::for_status(status).is_some();
    match reason {
        Some(reason) if terminal && reason != status && !error.starts_with(reason) => {
            format!("{words} ({reason})")
        }
        _ => words,
    }
}

/// An execution's `usage` summary on one line ([`usage`]); `None` while it is all zeros
/// (the harness reported nothing, e.g. `echo`, or the turn has not reported yet).
fn execution_usage(value: &Value) -> Option<String> {
    let reported = value
        .as_object()?
        .values()
        .any(|field| !matches!(field.as_i64(), Some(0)));
    if reported {
        usage(value)
    } else {
        None
    }
}

/// Token usage on one line: `120 input, 30 output tokens; model gpt-5`. `None` when the
/// value holds nothing to show.
pub fn usage(value: &Value) -> Option<String> {
    let fields = value.as_object()?;
    let mut tokens = Vec::new();
    let mut others = Vec::new();
    for (name, field) in fields {
        if matches!(name.as_str(), "type" | "seq" | "execution_id") {
            continue;
        }
        match (name.strip_suffix("_tokens"), field) {
            (Some(kind), Value::Number(n)) => {
                tokens.push(format!("{n} {}", kind.replace('_', " ")))
            }
            (None, Value::Number(n)) => others.push(format!("{} {n}", name.replace('_', " "))),
            (_, Value::String(text)) => others.push(format!("{} {text}", name.replace('_', " "))),
            (_, Value::Null) => {}
            (_, other) => others.push(format!("{} {}", name.replace('_', " "), inline(other))),
        }
    }
    let mut parts = Vec::new();
    if !tokens.is_empty() {
        parts.push(format!("{} tokens", tokens.join(", ")));
    }
    parts.extend(others);
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A duration in the unit that reads best: `850 ms`, `1.2 s`, `3 min 4 s`, `2 h 5 min`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// A timestamp of the API as `2025-01-02 03:04:05` (UTC); other text as it is.
pub fn time(value: &Value) -> String {
    match timestamp(value) {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => value.as_str().unwrap_or("-").to_owned(),
    }
}

/// The time from `from` to `to`, both API timestamps.
pub fn between(from: &Value, to: &Value) -> Option<String> {
    let elapsed = timestamp(to)? - timestamp(from)?;
    u64::try_from(elapsed.num_milliseconds())
        .ok()
        .map(duration_ms)
}

/// Rows under a header, columns padded to their widest cell (the last left ragged).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                if index + 1 == row.len() {
                    cell.clone()
                } else {
                    let pad = widths[index].saturating_sub(cell.chars().count());
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect();
        line(&mut out, cells.join("  ").trim_end());
    }
    out
}

fn text_or_dash(value: &Value) -> String {
    match value {
        Value::String(text) if !text.is_empty() => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => "-".to_owned(),
    }
}

fn first_line(value: &Value, max: usize) -> String {
    let text = value.as_str().unwrap_or_default().trim();
    truncate_chars(text.lines().next().unwrap_or_default(), max)
}

fn indented(out: &mut String, text: &str) {
    for text_line in text.trim_end().lines() {
        line(out, &format!("  {text_line}"));
    }
}

/// The end of a streamed turn: how it ended, how long it took, and the result when the
/// stream did not already show it (`shown`: the assistant text printed).
pub fn outcome(execution: &Value, shown: &str) -> String {
    let mut out = String::new();
    let status = execution["status"].as_str().unwrap_or("unknown");
    let reason = execution["terminal_reason"].as_str();
    let took = between(&execution["created_at"], &execution["completed_at"]);
    let result = execution["result_text"].as_str().unwrap_or_default().trim();
    if !result.is_empty() && !shown.contains(result) {
        line(&mut out, "result:");
        indented(&mut out, result);
    }
    let error = execution["error_text"].as_str().unwrap_or_default().trim();
    let mut head = status_with_reason(status, reason, error);
    if let Some(took) = took {
        let _ = write!(head, " in {took}");
    }
    match error.split_once('\n') {
        _ if error.is_empty() => line(&mut out, &head),
        None => line(&mut out, &format!("{head}: {error}")),
        Some(_) => {
            line(&mut out, &format!("{head}:"));
            indented(&mut out, error);
        }
    }
    if let Some(usage) = execution_usage(&execution["usage"]) {
        line(&mut out, &format!("usage: {usage}"));
    }
    let id = text_or_dash(&execution["execution_id"]);
    let thread = text_or_dash(&execution["thread_key"]);
    if status == "completed" {
        line(&mut out, &format!("execution {id} on thread {thread}"));
    } else {
        line(
            &mut out,
            &format!("execution {id} on thread {thread}; the trail: centaur executions get {id} --events"),
        );
    }
    out
}

/// `centaur executions get`: status, reason, error, result, timings, usage.
pub fn execution_details(execution: &Value) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let field = |name: &str| &execution[name];
    rows.push(("execution", text_or_dash(field("execution_id"))));
    let status = text_or_dash(field("status"));
    let status = match field("terminal_reason").as_str() {
        Some(reason) if reason != status => format!("{status} ({reason})"),
        _ => status,
    };
    rows.push(("status", status));
    rows.push((
        "thread",
        format!(
            "{} (generation {})",
            text_or_dash(field("thread_key")),
            text_or_dash(field("assignment_generation"))
        ),
    ));
    rows.push(("harness", text_or_dash(field("harness"))));
    if let Some(sandbox) = field("sandbox_id").as_str() {
        rows.push((
            "sandbox",
            format!("{sandbox} (attempt {})", text_or_dash(field("attempt"))),
        ));
    }
    if let Some(session) = field("agent_thread_id").as_str() {
        rows.push(("session", session.to_owned()));
    }
    rows.push(("created", time(field("created_at"))));
    if !field("started_at").is_null() {
        let mut started = time(field("started_at"));
        if let Some(waited) = between(field("created_at"), field("started_at")) {
            let _ = write!(started, " (queued {waited})");
        }
        rows.push(("started", started));
    }
    if !field("completed_at").is_null() {
        let mut completed = time(field("completed_at"));
        let ran = between(field("started_at"), field("completed_at"));
        let total = between(field("created_at"), field("completed_at"));
        match (ran, total) {
            (Some(ran), Some(total)) => {
                let _ = write!(completed, " (ran {ran}, {total} in all)");
            }
            (None, Some(total)) => {
                let _ = write!(completed, " ({total} in all)");
            }
            _ => {}
        }
        rows.push(("completed", completed));
    }
    if let Some(usage) = execution_usage(field("usage")) {
        rows.push(("usage", usage));
    }
    if let Some(platform) = field("delivery")["platform"].as_str() {
        rows.push(("delivery", platform.to_owned()));
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, value) in &rows {
        line(&mut out, &format!("{name:width$}  {value}"));
    }
    for (name, label) in [("error_text", "error"), ("result_text", "result")] {
        let text = field(name).as_str().unwrap_or_default().trim();
        if !text.is_empty() {
            line(&mut out, &format!("{label}:"));
            indented(&mut out, text);
        }
    }
    if let Some(events) = field("events").as_array() {
        line(&mut out, &format!("events: {}", events.len()));
    }
    out
}

/// An execution's stored trail, rendered as `run` shows it live.
pub fn trail(execution: &Value) -> String {
    let mut renderer = Renderer::trail();
    let mut out = String::new();
    for stored in execution["events"].as_array().into_iter().flatten() {
        out.push_str(&renderer.render(&StreamedEvent::from_stored(stored)));
    }
    out.push_str(&renderer.close_line());
    out
}

/// `centaur executions list`.
pub fn executions_table(list: &Value) -> String {
    let thread = text_or_dash(&list["thread_key"]);
    let executions = list["executions"].as_array().cloned().unwrap_or_default();
    if executions.is_empty() {
        return format!("no executions on thread {thread}\n");
    }
    let rows: Vec<Vec<String>> = executions
        .iter()
        .map(|e| {
            let outcome = if e["error_text"].is_string() {
                first_line(&e["error_text"], 60)
            } else {
                first_line(&e["result_text"], 60)
            };
            vec![
                text_or_dash(&e["execution_id"]),
                text_or_dash(&e["status"]),
                text_or_dash(&e["terminal_reason"]),
                text_or_dash(&e["harness"]),
                time(&e["created_at"]),
                between(&e["created_at"], &e["completed_at"]).unwrap_or_else(|| "-".into()),
                outcome,
            ]
        })
        .collect();
    table(
        &[
            "EXECUTION",
            "STATUS",
            "REASON",
            "HARNESS",
            "CREATED",
            "TOOK",
            "RESULT / ERROR",
        ],
        &rows,
    )
}

/// `centaur threads list`.
pub fn threads_table(list: &Value) -> String {
    let threads = list["threads"].as_array().cloned().unwrap_or_default();
    if threads.is_empty() {
        return "no threads yet\n".to_owned();
    }
    let rows: Vec<Vec<String>> = threads
        .iter()
        .map(|t| {
            let latest = match (
                t["latest_execution_id"].as_str(),
                t["latest_execution_status"].as_str(),
            ) {
                (Some(id), Some(status)) => format!("{id} {status}"),
                (Some(id), None) => id.to_owned(),
                _ => "-".to_owned(),
            };
            vec![
                text_or_dash(&t["thread_key"]),
                text_or_dash(&t["harness"]),
                text_or_dash(&t["state"]),
                text_or_dash(&t["assignment_generation"]),
                text_or_dash(&t["repo"]),
                latest,
                time(&t["updated_at"]),
            ]
        })
        .collect();
    table(
        &[
            "THREAD",
            "HARNESS",
            "STATE",
            "GEN",
            "REPO",
            "LATEST EXECUTION",
            "UPDATED",
        ],
        &rows,
    )
}

/// `centaur threads release`.
pub fn released(answer: &Value, thread_key: &str) -> String {
    let mut out = String::new();
    if answer["released"] == true {
        line(
            &mut out,
            &format!(
                "released thread {thread_key} (generation {}); the next turn starts generation {}",
                text_or_dash(&answer["assignment_generation"]),
                answer["assignment_generation"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), |g| (g + 1).to_string())
            ),
        );
    } else {
        line(
            &mut out,
            &format!("thread {thread_key} had no active assignment: nothing to release"),
        );
    }
    let cancelled: Vec<String> = answer["cancelled_execution_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    if !cancelled.is_empty() {
        line(&mut out, &format!("cancelled: {}", cancelled.join(", ")));
    }
    out
}

/// `centaur executions cancel`.
pub fn cancelled(answer: &Value) -> String {
    let id = text_or_dash(&answer["execution_id"]);
    let status = answer["status"].as_str().unwrap_or("unknown");
    let text = if answer["idempotent"] == true {
        format!(
            "{id} is already {}: nothing changed",
            status.replace('_', " ")
        )
    } else if status == "cancel_requested" {
        format!(
            "cancel requested for {id}: the dispatcher stops its sandbox and ends it as cancelled (follow it: centaur executions watch {id})"
        )
    } else {
        format!("{id} {}", status.replace('_', " "))
    };
    format!("{text}\n")
}

/// `centaur keys list`.
pub fn keys_table(list: &Value) -> String {
    let keys = list["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        return "no API keys\n".to_owned();
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let scopes: Vec<&str> = k["scopes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let state = if k["revoked_at"].is_null() {
                "active".to_owned()
            } else {
                format!("revoked {}", time(&k["revoked_at"]))
            };
            vec![
                text_or_dash(&k["id"]),
                text_or_dash(&k["name"]),
                text_or_dash(&k["key_prefix"]),
                scopes.join(","),
                text_or_dash(&k["created_by"]),
                time(&k["created_at"]),
                state,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "PREFIX",
            "SCOPES",
            "CREATED BY",
            "CREATED",
            "STATE",
        ],
        &rows,
    )
}

/// `centaur keys create`: the key, shown this once.
pub fn key_created(created: &Value) -> String {
    let scopes: Vec<&str> = created["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "created API key {} ({}) with scopes {}\n{}\nStore it now: it is not shown again. Use it as CENTAUR_API_KEY or the X-Api-Key header.\n",
        text_or_dash(&created["name"]),
        text_or_dash(&created["id"]),
        scopes.join(","),
        text_or_dash(&created["key"]),
    )
}

/// `centaur keys revoke`.
pub fn key_revoked(answer: &Value) -> String {
    format!(
        "revoked API key {}: requests with it are refused from now on\n",
        text_or_dash(&answer["id"])
    )
}

/// `centaur audit`: one line per entry, newest first, and how to page on.
pub fn audit_table(page: &Value) -> String {
    let entries = page["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return "no audit entries\n".to_owned();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let target = [&e["thread_key"], &e["execution_id"], &e["key_id"]]
                .into_iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                text_or_dash(&e["id"]),
                time(&e["at"]),
                text_or_dash(&e["action"]),
                text_or_dash(&e["principal_kind"]),
                format!(
                    "{} ({})",
                    text_or_dash(&e["principal_name"]),
                    text_or_dash(&e["principal_id"])
                ),
                if target.is_empty() {
                    "-".to_owned()
                } else {
                    target
                },
                text_or_dash(&e["peer"]),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "AT", "ACTION", "KIND", "PRINCIPAL", "ON", "PEER"],
        &rows,
    );
    if let Some(before) = page["next_before"].as_i64() {
        out.push_str(&format!("older entries: centaur audit --before {before}\n"));
    }
    out
}

/// `centaur pool`.
pub fn pool(answer: &Value) -> String {
    let mut out = String::new();
    let enabled = answer["enabled"] == true;
    if enabled {
        line(
            &mut out,
            &format!(
                "warm pool: enabled, target {} sandboxes of harness {}",
                text_or_dash(&answer["target_size"]),
                text_or_dash(&answer["harness"])
            ),
        );
    } else {
        line(
            &mut out,
            "warm pool: disabled (sandboxes start when a turn needs one)",
        );
    }
    line(
        &mut out,
        &format!(
            "ready {} · claimed {} · failed {}",
            text_or_dash(&answer["ready"]),
            text_or_dash(&answer["claimed"]),
            text_or_dash(&answer["failed"])
        ),
    );
    let sandboxes = answer["sandboxes"].as_array().cloned().unwrap_or_default();
    if !sandboxes.is_empty() {
        let rows: Vec<Vec<String>> = sandboxes
            .iter()
            .map(|s| {
                vec![
                    text_or_dash(&s["sandbox_id"]),
                    text_or_dash(&s["harness"]),
                    text_or_dash(&s["state"]),
                    text_or_dash(&s["claimed_by_thread"]),
                    time(&s["created_at"]),
                ]
            })
            .collect();
        out.push_str(&table(
            &["SANDBOX", "HARNESS", "STATE", "THREAD", "CREATED"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn harness(body: Value) -> StreamedEvent {
        StreamedEvent {
            thread_seq: Some(1),
            event_kind: "harness_event".into(),
            event_json: body,
        }
    }

    fn event(kind: &str, body: Value) -> StreamedEvent {
        StreamedEvent {
            thread_seq: Some(1),
            event_kind: kind.into(),
            event_json: body,
        }
    }

    fn render_all(renderer: &mut Renderer, events: &[StreamedEvent]) -> String {
        let mut out: String = events.iter().map(|e| renderer.render(e)).collect();
        out.push_str(&renderer.close_line());
        out
    }

    #[test]
    fn deltas_stream_and_the_complete_message_is_not_repeated() {
        let mut renderer = Renderer::live();
        let out = render_all(
            &mut renderer,
            &[
                harness(json!({"type": "assistant.delta", "text": "Hel"})),
                harness(json!({"type": "assistant.delta", "text": "lo"})),
                harness(json!({"type": "heartbeat"})),
                harness(json!({"type": "assistant.message", "text": "Hello"})),
                harness(json!({"type": "tool.call", "name": "read", "input": {"path": "a.rs"}})),
            ],
        );
        assert_eq!(out, "Hello\n→ read {\"path\":\"a.rs\"}\n");
        assert_eq!(renderer.shown_text(), "Hello");
    }

    #[test]
    fn a_message_without_deltas_is_printed_whole() {
        let mut renderer = Renderer::live();
        let out = render_all(
            &mut renderer,
            &[harness(
                json!({"type": "assistant.message", "text": "All done.\n"}),
            )],
        );
        assert_eq!(out, "All done.\n");
        assert!(renderer.shown_text().contains("All done."));
    }

    #[test]
    fn commands_show_their_exit_code_and_a_failed_ones_output() {
        let mut renderer = Renderer::live();
        let ok = renderer.render(&harness(
            json!({"type": "command", "command": "ls", "exit_code": 0, "output": "a\nb"}),
        ));
        assert_eq!(ok, "$ ls  [exit 0]\n");
        let failed = renderer.render(&harness(
            json!({"type": "command", "command": "cargo test", "exit_code": 101, "output": "error[E0425]\nmore"}),
        ));
        assert_eq!(
            failed,
            "$ cargo test  [exit 101]\n  │ error[E0425]\n  │ more\n"
        );
    }

    #[test]
    fn tool_results_errors_and_usage_read_as_one_line_each() {
        let mut renderer = Renderer::live();
        let out = render_all(
            &mut renderer,
            &[
                harness(json!({"type": "tool.result", "output": "line1\nline2"})),
                harness(json!({"type": "tool.result", "output": {"x": 1}, "is_error": true})),
                harness(json!({"type": "error", "kind": "auth", "message": "bad key "})),
                harness(json!({"type": "usage", "input_tokens": 120, "output_tokens": 30})),
            ],
        );
        assert_eq!(
            out,
            "← line1 ⏎ line2\n← error {\"x\":1}\nerror (auth): bad key\n· usage: 120 input, 30 output tokens\n"
        );
    }

    #[test]
    fn an_open_line_is_closed_before_the_next_event() {
        let mut renderer = Renderer::live();
        let out = render_all(
            &mut renderer,
            &[
                harness(json!({"type": "assistant.delta", "text": "thinking"})),
                harness(json!({"type": "tool.call", "name": "bash", "input": "ls"})),
            ],
        );
        assert_eq!(out, "thinking\n→ bash ls\n");
    }

    #[test]
    fn execution_events_are_short_status_lines_and_live_streams_skip_the_terminal_state() {
        let events = [
            event("execution_state", json!({"status": "queued"})),
            event(
                "execution_started",
                json!({"harness": "echo", "sandbox_id": "sbx-1", "queue_delay_ms": 35, "attempt": 1}),
            ),
            event(
                "start_retry",
                json!({"sandbox_id": "sbx-1-r1", "first_failure": "clone: refused"}),
            ),
            event(
                "execution_state",
                json!({"status": "failed_permanent", "terminal_reason": "harness_error", "error_text": "boom"}),
            ),
            event(
                "execution_summary",
                json!({"status": "failed_permanent", "duration_ms": 1500, "harness_event_count": 4}),
            ),
            event("final_delivery_ready", json!({})),
        ];
        let live = render_all(&mut Renderer::live(), &events);
        assert_eq!(
            live,
            "· queued\n· started echo in sandbox sbx-1 (queued 35 ms)\n\
             · the sandbox did not start (clone: refused); retrying in sbx-1-r1\n\
             · summary: failed in 1.5 s, 4 harness events\n\
             · the answer is ready for delivery\n"
        );
        let trail = render_all(&mut Renderer::trail(), &events);
        assert!(
            trail.contains("· failed (harness_error): boom\n"),
            "{trail}"
        );
    }

    #[test]
    fn a_reason_or_error_already_said_is_not_repeated() {
        assert_eq!(
            status_with_reason(
                "failed_permanent",
                Some("harness_error"),
                "harness_error: boom"
            ),
            "failed"
        );
        assert_eq!(
            status_with_reason("cancelled", Some("cancelled"), ""),
            "cancelled"
        );
        assert_eq!(
            status_with_reason("cancelled", Some("released"), ""),
            "cancelled (released)"
        );
        assert_eq!(
            status_with_reason("cancel_requested", Some("cancelled"), ""),
            "cancel requested"
        );
        let mut renderer = Renderer::live();
        let out = render_all(
            &mut renderer,
            &[
                harness(json!({"type": "error", "kind": "harness", "message": "boom"})),
                harness(json!({"type": "turn.done", "status": "error", "error": "boom"})),
                harness(json!({"type": "turn.done", "status": "error", "error": "other"})),
            ],
        );
        assert_eq!(
            out,
            "error (harness): boom\n· the turn ended with an error: other\n"
        );
    }

    #[test]
    fn unknown_events_are_shown_compactly_not_dropped() {
        let mut renderer = Renderer::live();
        let out = renderer.render(&harness(
            json!({"type": "reasoning", "seq": 4, "text": "hmm"}),
        ));
        assert_eq!(out, "· reasoning {\"text\":\"hmm\"}\n");
        let other = renderer.render(&event("new_kind", json!({"a": 1})));
        assert_eq!(other, "· new_kind: {\"a\":1}\n");
        assert_eq!(
            renderer.render(&harness(json!({"type": "turn.done", "status": "ok"}))),
            ""
        );
    }

    fn finished(status: &str, reason: &str, result: Value, error: Value) -> Value {
        json!({
            "execution_id": "exe_0123456789abcdef", "thread_key": "demo", "assignment_generation": 1,
            "status": status, "terminal_reason": reason, "result_text": result, "error_text": error,
            "harness": "echo", "sandbox_id": "sbx-demo-1", "attempt": 1,
            "created_at": "2025-01-01T00:00:00Z", "started_at": "2025-01-01T00:00:00.250Z",
            "completed_at": "2025-01-01T00:00:01.500Z", "delivery": {"platform": "dev"},
        })
    }

    #[test]
    fn the_outcome_says_how_the_turn_ended_without_repeating_shown_text() {
        let done = finished("completed", "completed", json!("PONG"), Value::Null);
        assert_eq!(
            outcome(&done, "PONG\n"),
            "completed in 1.5 s\nexecution exe_0123456789abcdef on thread demo\n"
        );
        assert!(outcome(&done, "").starts_with("result:\n  PONG\ncompleted"));
        let failed = finished(
            "failed_permanent",
            "harness_error",
            Value::Null,
            json!("boom"),
        );
        let text = outcome(&failed, "");
        assert!(
            text.starts_with("failed (harness_error) in 1.5 s: boom\n"),
            "{text}"
        );
        assert!(text.contains("centaur executions get exe_0123456789abcdef --events"));
        let multi = finished("cancelled", "released", Value::Null, json!("a\nb"));
        assert!(outcome(&multi, "").starts_with("cancelled (released) in 1.5 s:\n  a\n  b\n"));
    }

    #[test]
    fn the_apis_usage_summary_is_shown_once_tokens_were_reported() {
        let mut execution = finished("completed", "completed", json!("done"), Value::Null);
        execution["usage"] = json!({"input_tokens": 1200, "output_tokens": 340});
        let text = execution_details(&execution);
        assert!(
            text.contains("usage      1200 input, 340 output tokens\n"),
            "{text}"
        );
        assert!(
            outcome(&execution, "done").contains("usage: 1200 input, 340 output tokens\n"),
            "{execution}"
        );
        execution["usage"] = json!({"input_tokens": 0, "output_tokens": 0});
        assert!(!execution_details(&execution).contains("usage"));
        assert!(!outcome(&execution, "done").contains("usage"));
    }

    #[test]
    fn details_show_status_timings_usage_error_and_result() {
        let mut execution = finished(
            "failed_permanent",
            "harness_error",
            json!("partial"),
            json!("boom"),
        );
        execution["usage"] = json!({"input_tokens": 10, "output_tokens": 5, "model": "gpt-5"});
        execution["events"] = json!([{}, {}]);
        let text = execution_details(&execution);
        for expected in [
            "execution  exe_0123456789abcdef\n",
            "status     failed_permanent (harness_error)\n",
            "thread     demo (generation 1)\n",
            "sandbox    sbx-demo-1 (attempt 1)\n",
            "started    2025-01-01 00:00:00 (queued 250 ms)\n",
            "completed  2025-01-01 00:00:01 (ran 1.2 s, 1.5 s in all)\n",
            "usage      10 input, 5 output tokens; model gpt-5\n",
            "error:\n  boom\n",
            "result:\n  partial\n",
            "events: 2\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let queued = json!({"execution_id": "exe_1", "status": "queued", "created_at": "x",
                            "usage": {"input_tokens": 0, "output_tokens": 0}});
        let text = execution_details(&queued);
        assert!(!text.contains("started"), "{text}");
        assert!(!text.contains("usage"), "nothing reported yet: {text}");
        assert!(text.contains("created    x"), "{text}");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration_ms(0), "0 ms");
        assert_eq!(duration_ms(1234), "1.2 s");
        assert_eq!(duration_ms(184_000), "3 min 4 s");
        assert_eq!(duration_ms(7_500_000), "2 h 5 min");
        assert_eq!(
            between(
                &json!("2025-01-01T00:00:01Z"),
                &json!("2025-01-01T00:00:00Z")
            ),
            None
        );
        assert_eq!(between(&Value::Null, &json!("2025-01-01T00:00:00Z")), None);
    }

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["b".into(), "".into()],
            ],
        );
        assert_eq!(text, "A          LONGER\nwide cell  x\nb\n");
    }

    #[test]
    fn lists_render_rows_or_say_they_are_empty() {
        let executions = json!({"thread_key": "demo", "executions": [
            finished("completed", "completed", json!("PONG\nmore"), Value::Null)
        ]});
        let text = executions_table(&executions);
        assert!(text.starts_with("EXECUTION"), "{text}");
        assert!(
            text.contains("exe_0123456789abcdef  completed  completed  echo"),
            "{text}"
        );
        assert!(text.contains("1.5 s  PONG\n"), "{text}");
        assert_eq!(
            executions_table(&json!({"thread_key": "t", "executions": []})),
            "no executions on thread t\n"
        );
        let threads = json!({"threads": [{"thread_key": "demo", "harness": "echo", "state": "active",
            "assignment_generation": 2, "repo": null, "latest_execution_id": "exe_1",
            "latest_execution_status": "completed", "updated_at": "2025-01-01T00:00:00Z"}]});
        let text = threads_table(&threads);
        assert!(
            text.contains("demo    echo     active  2    -     exe_1 completed"),
            "{text}"
        );
        assert_eq!(threads_table(&json!({"threads": []})), "no threads yet\n");
        let keys = json!({"keys": [{"id": "k1", "name": "ci", "key_prefix": "cnt_abcd",
            "scopes": ["agent", "admin"], "created_by": "ops", "created_at": "2025-01-01T00:00:00Z",
            "revoked_at": "2025-01-02T00:00:00Z", "active": false}]});
        let text = keys_table(&keys);
        assert!(text.contains("agent,admin"), "{text}");
        assert!(text.contains("revoked 2025-01-02 00:00:00"), "{text}");
    }

    #[test]
    fn key_creation_shows_the_key_once_with_a_warning() {
        let text = key_created(
            &json!({"id": "k1", "name": "ci", "scopes": ["agent"], "key": "cnt_secret"}),
        );
        assert!(text.contains("\ncnt_secret\n"), "{text}");
        assert!(text.contains("not shown again"));
    }

    #[test]
    fn cancel_release_and_pool_answers_read_as_sentences() {
        assert!(
            cancelled(&json!({"execution_id": "exe_1", "status": "cancelled"}))
                .starts_with("exe_1 cancelled")
        );
        assert!(
            cancelled(&json!({"execution_id": "exe_1", "status": "cancel_requested"}))
                .starts_with("cancel requested for exe_1")
        );
        assert_eq!(
            cancelled(&json!({"execution_id": "exe_1", "status": "completed", "idempotent": true})),
            "exe_1 is already completed: nothing changed\n"
        );
        let text = released(
            &json!({"released": true, "assignment_generation": 1, "cancelled_execution_ids": ["exe_2"]}),
            "demo",
        );
        assert_eq!(
            text,
            "released thread demo (generation 1); the next turn starts generation 2\ncancelled: exe_2\n"
        );
        assert!(released(&json!({"released": false}), "demo").contains("nothing to release"));
        let text = pool(
            &json!({"enabled": true, "target_size": 2, "harness": "codex", "ready": 1,
            "claimed": 0, "failed": 0, "sandboxes": [{"sandbox_id": "sbx-w1", "harness": "codex",
            "state": "ready", "claimed_by_thread": null, "created_at": "2025-01-01T00:00:00Z"}]}),
        );
        assert!(text.starts_with("warm pool: enabled, target 2 sandboxes of harness codex\nready 1 · claimed 0 · failed 0\nSANDBOX"), "{text}");
        assert!(pool(
            &json!({"enabled": false, "ready": 0, "claimed": 0, "failed": 0, "sandboxes": []})
        )
        .starts_with("warm pool: disabled"));
    }

    #[test]
    fn a_stored_trail_renders_like_the_live_stream() {
        let execution = json!({"events": [
            {"thread_seq": 1, "event_kind": "execution_state", "event_json": {"status": "queued"}},
            {"thread_seq": 2, "event_kind": "harness_event", "event_json": {"type": "assistant.delta", "text": "hi"}},
            {"thread_seq": 3, "event_kind": "execution_state", "event_json": {"status": "completed", "terminal_reason": "completed"}},
        ]});
        assert_eq!(trail(&execution), "· queued\nhi\n· completed\n");
    }
}
