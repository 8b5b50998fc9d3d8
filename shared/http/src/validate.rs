//! Field validation with errors that name the field.

use crate::error::ApiError;
use centaur_core::api::codes;
use centaur_core::{Harness, ThreadKey};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A JSON value as a typed request (422 naming the field on mismatch).
pub fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    T::deserialize(value)
        .map_err(|err| ApiError::validation(format!("invalid request body: {err}")))
}

/// A valid thread key (422 otherwise).
pub fn thread_key(raw: &str) -> Result<ThreadKey, ApiError> {
    ThreadKey::parse(raw).map_err(|err| ApiError::validation(err.to_string()))
}

/// A known harness name or alias (422 `UNKNOWN_HARNESS` otherwise).
pub fn harness(raw: &str) -> Result<Harness, ApiError> {
    raw.parse().map_err(
        |err: centaur_core::harness::UnknownHarness| ApiError::Unprocessable {
            code: codes::UNKNOWN_HARNESS,
            message: err.to_string(),
        },
    )
}

/// `value` must be absent, null or a JSON object (422 naming `field` otherwise).
pub fn optional_object(value: Option<&Value>, field: &str) -> Result<Value, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(object @ Value::Object(_)) => Ok(object.clone()),
        Some(_) => Err(ApiError::validation(format!(
            "{field} must be a JSON object"
        ))),
    }
}

/// A `limit` within `1..=max`, `default` when absent (422 otherwise).
pub fn limit(value: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::validation(format!(
            "limit must be between 1 and {max}, got {limit}"
        ))),
    }
}
