//! A thread's earlier messages as context for the first turn the bot is mentioned in
//! (slack.md, ingress item 11): each attributed to its author, oldest first, readable, and
//! bounded.

use crate::text::readable;
use serde_json::Value;

/// Most earlier messages carried.
pub const MAX_CONTEXT_MESSAGES: usize = 50;
/// Most characters carried (the newest messages are kept).
pub const MAX_CONTEXT_CHARS: usize = 16_000;

/// The first line of the context part.
pub const CONTEXT_HEADER: &str = "Earlier messages in this Slack thread, oldest first:";

fn ts_value(ts: &str) -> f64 {
    ts.parse().unwrap_or(0.0)
}

/// Who wrote a message: `@<user id>`, else the bot's name or id.
fn author(message: &Value) -> Option<String> {
    if let Some(user) = message["user"].as_str().filter(|u| !u.is_empty()) {
        return Some(format!("@{user}"));
    }
    message["username"]
        .as_str()
        .or_else(|| message["bot_profile"]["name"].as_str())
        .or_else(|| message["bot_id"].as_str())
        .map(|bot| format!("{bot} (bot)"))
}

/// The context text for a turn started by the message `before_ts`: every earlier message of
/// the thread (`conversations.replies` output) but the bot's own, each as
/// `@<author>: <text>`; `None` when there is none.
pub fn thread_context(
    messages: &[Value],
    before_ts: &str,
    bot_user_id: Option<&str>,
) -> Option<String> {
    let before = ts_value(before_ts);
    let mut lines: Vec<String> = messages
        .iter()
        .filter(|m| m["ts"].as_str().is_some_and(|ts| ts_value(ts) < before))
        .filter(|m| bot_user_id.is_none() || m["user"].as_str() != bot_user_id)
        .filter(|m| {
            !m["metadata"]["event_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("centaur_"))
        })
        .filter_map(|m| {
            let text = readable(m["text"].as_str().unwrap_or_default(), bot_user_id);
            if text.is_empty() {
                return None;
            }
            Some(format!("{}: {text}", author(m)?))
        })
        .collect();
    if lines.len() > MAX_CONTEXT_MESSAGES {
        lines.drain(..lines.len() - MAX_CONTEXT_MESSAGES);
    }
    let mut total: usize = lines.iter().map(|l| l.chars().count() + 1).sum();
    while total > MAX_CONTEXT_CHARS && lines.len() > 1 {
        total -= lines[0].chars().count() + 1;
        lines.remove(0);
    }
    if lines.is_empty() {
        return None;
    }
    let mut text = format!("{CONTEXT_HEADER}\n{}", lines.join("\n"));
    if text.chars().count() > MAX_CONTEXT_CHARS {
        text = text.chars().take(MAX_CONTEXT_CHARS).collect();
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn earlier_messages_are_attributed_and_the_bots_own_and_later_ones_left_out() {
        let thread = vec![
            json!({"ts": "1.0", "user": "U1", "text": "the build is red since <https://ci.test/1|run 1>"}),
            json!({"ts": "1.5", "user": "UBOT", "text": "an earlier answer"}),
            json!({"ts": "1.6", "bot_id": "B1", "text": "x", "metadata": {"event_type": "centaur_status"}}),
            json!({"ts": "1.7", "bot_id": "B7", "username": "ci-bot", "text": "job 42 failed"}),
            json!({"ts": "2.0", "user": "U2", "text": "&lt;@U1&gt; I see it too"}),
            json!({"ts": "3.0", "user": "U2", "text": "<@UBOT> fix it"}),
            json!({"ts": "4.0", "user": "U3", "text": "later"}),
        ];
        assert_eq!(
            thread_context(&thread, "3.0", Some("UBOT")).as_deref(),
            Some(
                "Earlier messages in this Slack thread, oldest first:\n\
                 @U1: the build is red since run 1 (https://ci.test/1)\n\
                 ci-bot (bot): job 42 failed\n\
                 @U2: <@U1> I see it too"
            )
        );
    }

    #[test]
    fn nothing_earlier_is_no_context_and_long_threads_keep_the_newest() {
        assert_eq!(
            thread_context(
                &[json!({"ts": "3.0", "user": "U1", "text": "hi"})],
                "3.0",
                None
            ),
            None
        );
        let thread: Vec<Value> = (0..200)
            .map(|i| json!({"ts": format!("{i}.0"), "user": "U1", "text": format!("{i} {}", "x".repeat(400))}))
            .collect();
        let text = thread_context(&thread, "1000.0", None).unwrap_or_default();
        assert!(text.chars().count() <= MAX_CONTEXT_CHARS);
        assert!(text.contains("@U1: 199 "), "the newest is kept");
        assert!(!text.contains("@U1: 0 "), "the oldest goes first");
    }
}
