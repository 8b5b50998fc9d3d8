//! Canonical request hashing for idempotency keys.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Compact JSON with object keys sorted at every depth.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(key) {
                    write_canonical(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Hex SHA-256 of the canonical JSON: equal for payloads that differ only in key order
/// or whitespace.
pub fn request_hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// [`request_hash`] of a typed request as it serialises: what a request *means* (unknown
/// fields dropped, absent and default fields alike), not how its JSON was spelled.
pub fn typed_request_hash<T: serde::Serialize>(request: &T) -> String {
    request_hash(&serde_json::to_value(request).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        assert_eq!(request_hash(&a), request_hash(&b));
    }

    #[test]
    fn different_values_change_the_hash() {
        assert_ne!(
            request_hash(&json!({"a": 1})),
            request_hash(&json!({"a": 2}))
        );
    }

    #[test]
    fn a_typed_hash_ignores_what_the_type_does_not_read() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Request {
            key: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            id: Option<String>,
        }
        let parse = |raw: Value| -> Request {
            serde_json::from_value(raw).unwrap_or_else(|err| panic!("{err}"))
        };
        let plain = typed_request_hash(&parse(json!({"key": "a"})));
        assert_eq!(
            plain,
            typed_request_hash(&parse(json!({"key": "a", "id": null, "unknown": 1})))
        );
        assert_eq!(plain, request_hash(&json!({"key": "a"})));
        assert_ne!(plain, typed_request_hash(&parse(json!({"key": "b"}))));
    }

    #[test]
    fn canonical_json_is_compact_and_sorted() {
        assert_eq!(
            canonical_json(&json!({"b": [1, {"d": 1, "c": 2}], "a": null})),
            r#"{"a":null,"b":[1,{"c":2,"d":1}]}"#
        );
    }
}
