//! Stored message parts (`messages.parts`), read once where a row becomes a value.
//!
//! The API only ever stores parts it parsed as [`MessagePart`]s, but a row written by an
//! older version (or by hand) may hold anything jsonb can. Reading is therefore tolerant,
//! as the executor always was, and **never fails**: a part without `type` is a text part,
//! and a part that still does not read (not an object, a `type` or `text` that is not a
//! string) becomes a text part holding its JSON. A malformed old row thus neither traps an
//! execution in an endless hand-back loop (a read error would hand the turn back to be
//! claimed again) nor fails it: the harness sees the odd part as text.

use centaur_core::api::MessagePart;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A stored `parts` value as the database answers it; [`Vec<MessagePart>`] reads it with
/// [`read`] (the `#[sqlx(try_from = "StoredParts")]` of the row structs).
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct StoredParts(Value);

impl From<StoredParts> for Vec<MessagePart> {
    fn from(stored: StoredParts) -> Self {
        read(stored.0)
    }
}

/// Deserialises stored parts inside a larger JSON value (a `jsonb_agg` of messages) with
/// [`read`]: for `#[serde(deserialize_with = "…")]`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<MessagePart>, D::Error> {
    Value::deserialize(deserializer).map(read)
}

/// The parts of a stored `parts` value: each element of an array (anything else is read
/// as one part), each read by [`read_part`].
pub(crate) fn read(value: Value) -> Vec<MessagePart> {
    match value {
        Value::Array(parts) => parts.into_iter().map(read_part).collect(),
        other => vec![read_part(other)],
    }
}

/// One stored part: as the API takes it; without `type`, a text part; otherwise
/// unreadable, a text part with the part's JSON.
fn read_part(value: Value) -> MessagePart {
    if let Ok(part) = MessagePart::deserialize(&value) {
        return part;
    }
    if let Value::Object(fields) = &value {
        if !fields.contains_key("type") {
            let mut typed = fields.clone();
            typed.insert("type".to_owned(), Value::from("text"));
            if let Ok(part) = MessagePart::deserialize(&Value::Object(typed)) {
                return part;
            }
        }
    }
    MessagePart::text(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_the_api_stored_read_as_they_were_given() {
        let stored = json!([
            {"type": "text", "text": "hi"},
            {"type": "text", "text": "ctx", "source": "slack_thread_context"},
            {"type": "image", "url": "https://example.com/a.png"},
        ]);
        let parts = read(stored.clone());
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], MessagePart::text("hi"));
        assert_eq!(parts[1].extra["source"], "slack_thread_context");
        assert_eq!(parts[2].kind, "image");
        assert_eq!(serde_json::to_value(&parts).expect("serialises"), stored);
    }

    #[test]
    fn a_part_without_type_is_text() {
        let parts = read(json!([{"text": "old row"}, {"note": 1}]));
        assert_eq!(parts[0], MessagePart::text("old row"));
        assert_eq!(parts[1].kind, "text");
        assert_eq!(parts[1].text, None);
        assert_eq!(parts[1].extra["note"], 1);
    }

    #[test]
    fn an_unreadable_part_becomes_text_with_its_json() {
        let parts = read(json!([
            "bare string",
            42,
            null,
            {"type": 7, "text": "x"},
            {"type": "text", "text": ["not", "a", "string"]},
            {"text": {"nested": true}},
        ]));
        let texts: Vec<&str> = parts
            .iter()
            .map(|part| {
                assert_eq!(part.kind, "text");
                assert!(part.extra.is_empty());
                part.text.as_deref().expect("a text")
            })
            .collect();
        assert_eq!(
            texts,
            [
                r#""bare string""#,
                "42",
                "null",
                r#"{"text":"x","type":7}"#,
                r#"{"text":["not","a","string"],"type":"text"}"#,
                r#"{"text":{"nested":true}}"#,
            ]
        );
    }

    #[test]
    fn parts_that_are_not_an_array_are_one_part() {
        assert_eq!(
            read(json!({"type": "text", "text": "lone"})),
            [MessagePart::text("lone")]
        );
        assert_eq!(read(json!("lone")), [MessagePart::text(r#""lone""#)]);
        assert!(read(json!([])).is_empty());
    }
}
