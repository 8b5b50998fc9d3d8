//! Identifiers as newtypes so a thread key is never passed where an execution id belongs.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted thread key; Slack keys are ~40 characters.
pub const MAX_THREAD_KEY_LEN: usize = 256;

/// Why a thread key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadKeyError {
    #[error("thread_key must not be empty")]
    Empty,
    #[error("thread_key must be at most {MAX_THREAD_KEY_LEN} characters")]
    TooLong,
    #[error("thread_key must not contain control characters or '/'")]
    BadCharacter,
}

/// The key of a conversation thread (`slack:<team>:<channel>:<ts>`, or any caller-chosen key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ThreadKey(String);

impl ThreadKey {
    /// Validates and wraps a thread key.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ThreadKeyError> {
        let raw = raw.into();
        if raw.trim().is_empty() {
            return Err(ThreadKeyError::Empty);
        }
        if raw.chars().count() > MAX_THREAD_KEY_LEN {
            return Err(ThreadKeyError::TooLong);
        }
        if raw.chars().any(|c| c.is_control() || c == '/') {
            return Err(ThreadKeyError::BadCharacter);
        }
        Ok(Self(raw))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ThreadKey {
    type Error = ThreadKeyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<ThreadKey> for String {
    fn from(value: ThreadKey) -> Self {
        value.0
    }
}

impl fmt::Display for ThreadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a thread key may be, as a JSON Schema pattern: at least one character that is
/// not white space, and no control character or `/` anywhere ([`ThreadKey::parse`]).
pub const THREAD_KEY_PATTERN: &str = "^[^/\\u0000-\\u001f\\u007f-\\u009f]*[^/\\s\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]*$";

impl utoipa::PartialSchema for ThreadKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "The key of a conversation thread (`slack:<team>:<channel>:<ts>`, or any \
                 caller-chosen key): 1 to 256 characters, not blank, no control character or '/'.",
            ))
            .min_length(Some(1))
            .max_length(Some(MAX_THREAD_KEY_LEN))
            .pattern(Some(THREAD_KEY_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for ThreadKey {}

/// Returns `prefix` followed by `bytes` random bytes in lowercase hex.
pub fn random_id(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    format!("{prefix}{}", hex::encode(buf))
}

/// An execution id: `exe_` + 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(String);

impl ExecutionId {
    /// A fresh random execution id.
    pub fn generate() -> Self {
        Self(random_id("exe_", 8))
    }

    /// Accepts only the `exe_<16 hex>` shape.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex_part = raw.strip_prefix("exe_")?;
        let well_formed = hex_part.len() == 16
            && hex_part
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        well_formed.then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an execution id is, as a JSON Schema pattern.
pub const EXECUTION_ID_PATTERN: &str = "^exe_[0-9a-f]{16}$";

impl utoipa::PartialSchema for ExecutionId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "An execution id: `exe_` + 16 lowercase hex characters.",
            ))
            .pattern(Some(EXECUTION_ID_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for ExecutionId {}

/// A sandbox id. Derived deterministically from what the sandbox is for, so a retried
/// create names the same sandbox (and a 409 from the backend means "adopt it").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SandboxId(String);

impl SandboxId {
    /// The sandbox for the execution that first needed one on a thread: `sbx-<execution hex>`.
    pub fn for_execution(execution_id: &ExecutionId) -> Self {
        let hex_part = execution_id.as_str().trim_start_matches("exe_");
        Self(format!("sbx-{hex_part}"))
    }

    /// A warm-pool sandbox: `sbx-warm-<16 hex>`.
    pub fn warm() -> Self {
        Self(random_id("sbx-warm-", 8))
    }

    /// Wraps an id read back from storage or a backend listing.
    pub fn from_stored(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The id as text (a valid DNS-1123 label: usable as a pod name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_execution_ids_have_the_documented_shape() {
        let id = ExecutionId::generate();
        assert!(ExecutionId::parse(id.as_str()).is_some(), "{id}");
        assert_eq!(id.as_str().len(), 20);
    }

    #[test]
    fn malformed_execution_ids_are_refused() {
        for bad in [
            "",
            "exe_",
            "exe_123",
            "exe_ABCDEF0123456789",
            "job_0123456789abcdef",
        ] {
            assert!(ExecutionId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn thread_keys_reject_empty_long_and_control_characters() {
        assert_eq!(ThreadKey::parse(" "), Err(ThreadKeyError::Empty));
        assert_eq!(
            ThreadKey::parse("a".repeat(300)),
            Err(ThreadKeyError::TooLong)
        );
        assert_eq!(ThreadKey::parse("a\nb"), Err(ThreadKeyError::BadCharacter));
        assert_eq!(ThreadKey::parse("a/b"), Err(ThreadKeyError::BadCharacter));
        assert!(ThreadKey::parse("slack:T1:C1:1700000000.000100").is_ok());
    }

    #[test]
    fn sandbox_ids_are_derived_from_the_execution() {
        let exe = ExecutionId::parse("exe_0123456789abcdef").expect("valid");
        assert_eq!(
            SandboxId::for_execution(&exe).as_str(),
            "sbx-0123456789abcdef"
        );
    }
}
