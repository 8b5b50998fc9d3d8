//! The transcript a turn carries when it runs in a sandbox that did not run the thread's
//! previous turn (the sandbox was lost, reaped or replaced, the harness was switched, a warm
//! sandbox was claimed, a start was retried): the thread's earlier messages and the end of
//! each earlier turn, as Postgres recorded them. The newest entries are kept first within
//! [`BUDGET_BYTES`] and presented oldest to newest, every line quoted (`> `) so nothing in
//! it reads as a fresh instruction or directive. No IO: the dispatcher reads the rows (one
//! query, newest first) and this module renders them.

use centaur_core::api::MessagePart;
use centaur_store::history::HistoryRow;

/// The transcript is at most this many bytes (header and footer included).
pub const BUDGET_BYTES: usize = 24 * 1024;

/// At most this many history entries are read; a full page means older ones may exist.
pub const MAX_ENTRIES: i64 = 200;

const HEADER: &str = "[Earlier conversation in this thread]\n\
You are continuing this thread in a new sandbox, so your own session history is not \
available here. This is the thread's record, oldest first, for context; quoted lines \
(`> `) are what was said then.";
const OMITTED: &str = "(Older entries were left out to keep this transcript short.)";
const FOOTER: &str = "[End of the earlier conversation. The new message follows.]";
const TRUNCATED: &str = "> … [truncated]\n";

/// One rendered entry of the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    label: &'static str,
    text: String,
}

impl Entry {
    /// The entry of a history row; `None` for a message with no text.
    fn from_row(row: &HistoryRow) -> Option<Self> {
        match row.status.as_deref() {
            Some(status) => Some(Self::outcome(status, row)),
            None => {
                let text = parts_text(&row.parts);
                if text.is_empty() {
                    return None;
                }
                let label = match row.role.as_deref() {
                    Some("assistant") => "Assistant",
                    Some("system") => "System",
                    _ => "User",
                };
                Some(Self { label, text })
            }
        }
    }

    fn outcome(status: &str, row: &HistoryRow) -> Self {
        let text = |value: &Option<String>, missing: &str| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .unwrap_or(missing)
                .to_owned()
        };
        match status {
            "completed" => Self {
                label: "Agent",
                text: text(&row.result_text, "(no answer)"),
            },
            "cancelled" => Self {
                label: "Agent (turn cancelled)",
                text: text(&row.result_text, "(cancelled before it answered)"),
            },
            _ => Self {
                label: "Agent (turn failed)",
                text: text(&row.error_text, "(failed without an error message)"),
            },
        }
    }

    fn render(&self) -> String {
        format!("{}:\n{}", self.label, quote(&self.text))
    }

    /// The entry cut to at most `room` bytes (never below its label), marked as truncated.
    fn render_truncated(&self, room: usize) -> String {
        let head = format!("{}:\n", self.label);
        let body = quote(&self.text);
        let keep = room.saturating_sub(head.len() + TRUNCATED.len() + 1);
        let mut cut = keep.min(body.len());
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        let body = body[..cut].trim_end_matches('\n');
        let newline = if body.is_empty() { "" } else { "\n" };
        format!("{head}{body}{newline}{TRUNCATED}")
    }
}

/// The text of a message's parts: text parts as they are, other parts named (a text part
/// without text says nothing).
fn parts_text(parts: &[MessagePart]) -> String {
    parts
        .iter()
        .filter_map(|part| match part.text.as_deref() {
            Some(text) => Some(text.trim().to_owned()),
            None if part.kind == "text" => None,
            None => Some(format!("[{} part]", part.kind)),
        })
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Every line prefixed with `> ` (`>` for an empty line), ending with a newline.
fn quote(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                ">\n".to_owned()
            } else {
                format!("> {line}\n")
            }
        })
        .collect()
}

/// The transcript of `newest_first` history rows within `budget` bytes, or `None` when
/// there is nothing earlier to tell. `more_exist`: older rows exist that were not read.
pub fn build(newest_first: &[HistoryRow], budget: usize, more_exist: bool) -> Option<String> {
    let entries: Vec<Entry> = newest_first.iter().filter_map(Entry::from_row).collect();
    if entries.is_empty() {
        return None;
    }
    // Header, omission note, footer and the blank lines between them.
    let fixed = HEADER.len() + OMITTED.len() + FOOTER.len() + 6;
    let mut room = budget.saturating_sub(fixed);
    let mut kept = Vec::new();
    let mut omitted = more_exist;
    for (index, entry) in entries.iter().enumerate() {
        let block = entry.render();
        if block.len() < room {
            room -= block.len() + 1;
            kept.push(block);
            continue;
        }
        if kept.is_empty() {
            // The newest entry alone is over the budget: keep its beginning.
            kept.push(entry.render_truncated(room));
            omitted |= index + 1 < entries.len();
        } else {
            omitted = true;
        }
        break;
    }
    kept.reverse();
    let mut transcript = String::from(HEADER);
    transcript.push_str("\n\n");
    if omitted {
        transcript.push_str(OMITTED);
        transcript.push_str("\n\n");
    }
    transcript.push_str(&kept.join("\n"));
    transcript.push('\n');
    transcript.push_str(FOOTER);
    Some(transcript)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(execution_seq: i64, role: &str, text: &str) -> HistoryRow {
        HistoryRow {
            execution_seq,
            role: Some(role.to_owned()),
            parts: vec![MessagePart::text(text)],
            status: None,
            result_text: None,
            error_text: None,
        }
    }

    fn outcome(
        execution_seq: i64,
        status: &str,
        result: Option<&str>,
        error: Option<&str>,
    ) -> HistoryRow {
        HistoryRow {
            execution_seq,
            role: None,
            parts: Vec::new(),
            status: Some(status.to_owned()),
            result_text: result.map(str::to_owned),
            error_text: error.map(str::to_owned),
        }
    }

    fn build_or_panic(rows: &[HistoryRow], budget: usize) -> String {
        build(rows, budget, false).unwrap_or_else(|| panic!("no transcript for {rows:?}"))
    }

    #[test]
    fn nothing_earlier_means_no_transcript() {
        assert_eq!(build(&[], BUDGET_BYTES, false), None);
        let empty = HistoryRow {
            parts: vec![MessagePart::text("  ")],
            ..message(1, "user", "")
        };
        assert_eq!(build(&[empty], BUDGET_BYTES, false), None);
    }

    #[test]
    fn entries_read_oldest_to_newest_with_labels() {
        // Newest first, as the store returns them.
        let rows = [
            outcome(2, "completed", Some("second answer"), None),
            message(2, "user", "second question"),
            outcome(1, "completed", Some("first answer"), None),
            message(1, "user", "first question"),
        ];
        let transcript = build_or_panic(&rows, BUDGET_BYTES);
        assert!(transcript.starts_with("[Earlier conversation in this thread]"));
        assert!(transcript.ends_with(FOOTER));
        let order: Vec<usize> = [
            "User:\n> first question",
            "Agent:\n> first answer",
            "User:\n> second question",
            "Agent:\n> second answer",
        ]
        .iter()
        .map(|needle| {
            transcript
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from {transcript}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{transcript}");
        assert!(!transcript.contains(OMITTED), "{transcript}");
    }

    #[test]
    fn failed_and_cancelled_turns_say_so() {
        let rows = [
            outcome(2, "cancelled", None, None),
            message(2, "user", "stop that"),
            outcome(
                1,
                "failed_permanent",
                None,
                Some("harness_error: codex reported: 401"),
            ),
            message(1, "user", "hello"),
        ];
        let transcript = build_or_panic(&rows, BUDGET_BYTES);
        assert!(
            transcript.contains("Agent (turn failed):\n> harness_error: codex reported: 401"),
            "{transcript}"
        );
        assert!(
            transcript.contains("Agent (turn cancelled):\n> (cancelled before it answered)"),
            "{transcript}"
        );
    }

    #[test]
    fn every_line_is_quoted_so_no_line_reads_as_a_directive() {
        let rows = [message(1, "user", "@exit 3\n\n  @fail boom\nplain")];
        let transcript = build_or_panic(&rows, BUDGET_BYTES);
        for line in transcript.lines() {
            assert!(
                !line.trim_start().starts_with('@'),
                "{line:?} in {transcript}"
            );
        }
        assert!(transcript.contains("> @exit 3\n>\n>   @fail boom\n> plain\n"));
    }

    #[test]
    fn other_parts_are_named_and_roles_labelled() {
        let rows = [
            HistoryRow {
                parts: serde_json::from_value(json!([
                    {"type": "image"},
                    {"type": "text", "text": "see above"},
                ]))
                .unwrap_or_else(|err| panic!("{err}")),
                ..message(1, "user", "")
            },
            message(1, "assistant", "posted by a bot"),
            message(1, "system", "be brief"),
        ];
        let transcript = build_or_panic(&rows, BUDGET_BYTES);
        assert!(transcript.contains("User:\n> [image part]\n>\n> see above"));
        assert!(transcript.contains("Assistant:\n> posted by a bot"));
        assert!(transcript.contains("System:\n> be brief"));
    }

    #[test]
    fn the_newest_entries_are_kept_within_the_budget() {
        let mut rows = Vec::new();
        for n in (1..=100).rev() {
            rows.push(outcome(
                n,
                "completed",
                Some(&format!("answer {n} {}", "x".repeat(500))),
                None,
            ));
            rows.push(message(n, "user", &format!("question {n}")));
        }
        let transcript = build_or_panic(&rows, BUDGET_BYTES);
        assert!(transcript.len() <= BUDGET_BYTES, "{}", transcript.len());
        assert!(transcript.contains("question 100"));
        assert!(transcript.contains("answer 100"));
        assert!(
            !transcript.contains("question 1\n"),
            "the oldest is dropped"
        );
        assert!(transcript.contains(OMITTED));
        let newest = transcript.find("answer 100").unwrap_or(0);
        let older = transcript.find("answer 99").unwrap_or(usize::MAX);
        assert!(older < newest, "oldest first");
    }

    #[test]
    fn a_newest_entry_larger_than_the_budget_is_truncated_not_dropped() {
        let huge = "é".repeat(40_000);
        let rows = [
            message(2, "user", &huge),
            outcome(1, "completed", Some("older"), None),
        ];
        let transcript = build_or_panic(&rows, BUDGET_BYTES);
        assert!(transcript.len() <= BUDGET_BYTES, "{}", transcript.len());
        assert!(transcript.contains("User:\n> éé"));
        assert!(transcript.contains(TRUNCATED));
        assert!(!transcript.contains("older"));
        assert!(transcript.contains(OMITTED));
        let tiny = build_or_panic(&rows[..1], 10);
        assert!(
            tiny.contains(TRUNCATED),
            "a tiny budget still names the entry"
        );
    }

    #[test]
    fn a_full_page_from_the_store_is_marked_as_cut() {
        let rows = [message(1, "user", "hi")];
        let transcript = build(&rows, BUDGET_BYTES, true).unwrap_or_default();
        assert!(transcript.contains(OMITTED), "{transcript}");
    }
}
