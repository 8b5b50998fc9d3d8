//! What can go wrong talking to the API, each printed as one clear line.

use serde_json::Value;
use std::fmt;

/// A command that could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument the API would refuse anyway, caught before sending.
    #[error("{0}")]
    Usage(String),
    /// The API answered with an error status.
    #[error("{0}")]
    Api(ApiFailure),
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("cannot reach the API at {url}: {cause}")]
    Unreachable {
        /// The base URL that was tried.
        url: String,
        /// The transport error, with its causes.
        cause: String,
    },
    /// An answer that is not what the API sends (not JSON, or a broken stream).
    #[error("the API at {url} answered something unreadable: {cause}")]
    BadAnswer {
        /// The base URL.
        url: String,
        /// What was wrong with the answer.
        cause: String,
    },
}

/// An error answer of the API: `{"code", "message"}` or, for auth, `{"detail"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// The HTTP status.
    pub status: u16,
    /// The control plane's error code (`NOT_FOUND`, `THREAD_FAILURE_LOOP`, …), if any.
    pub code: Option<String>,
    /// The message or detail.
    pub message: String,
}

/// The longest stretch of a non-JSON error body that is shown.
const RAW_BODY_SHOWN: usize = 200;

impl ApiFailure {
    /// Reads an error answer: the API's JSON shapes, or the start of whatever else came.
    pub fn from_answer(status: u16, body: &str) -> Self {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|json| json.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let code = field("code");
        let message = field("message")
            .or_else(|| field("detail"))
            .or_else(|| field("error"))
            .unwrap_or_else(|| {
                let text = body.trim();
                if text.is_empty() {
                    "no details in the answer".to_owned()
                } else {
                    truncate_chars(&text.replace('\n', " "), RAW_BODY_SHOWN)
                }
            });
        Self {
            status,
            code,
            message,
        }
    }

    /// What to try next, for the answers an operator meets first.
    pub fn hint(&self) -> Option<&'static str> {
        match (self.status, self.message.as_str()) {
            (401, "Missing API key") => Some(
                "set CENTAUR_API_KEY or pass --api-key (only requests from localhost need none)",
            ),
            (401, _) => Some("check CENTAUR_API_KEY / --api-key: the key is unknown or revoked"),
            (403, message) if message.contains("'admin'") => {
                Some("this needs a key with the admin scope")
            }
            _ => match self.code.as_deref() {
                Some("THREAD_FAILURE_LOOP") => Some(
                    "the thread failed three times in five minutes: look at `centaur executions list --thread …`, or use another --thread",
                ),
                Some("ACTIVE_ASSIGNMENT_PROMPT_MISMATCH") => Some(
                    "the thread runs with another harness or repo: `centaur threads release <thread>` first, or use another --thread",
                ),
                _ => None,
            },
        }
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {} (HTTP {})", self.message, self.status)?,
            None => write!(f, "{} (HTTP {})", self.message, self.status)?,
        }
        if let Some(hint) = self.hint() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// An error and its causes on one line (`a: b: c`), without repeating a cause that the
/// previous message already contains.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_errors_show_code_message_and_status() {
        let failure = ApiFailure::from_answer(
            404,
            r#"{"code":"NOT_FOUND","message":"execution 'exe_1' not found"}"#,
        );
        assert_eq!(failure.code.as_deref(), Some("NOT_FOUND"));
        assert_eq!(
            failure.to_string(),
            "NOT_FOUND: execution 'exe_1' not found (HTTP 404)"
        );
    }

    #[test]
    fn auth_errors_show_the_detail_and_what_to_do() {
        let missing = ApiFailure::from_answer(401, r#"{"detail":"Missing API key"}"#);
        assert!(missing
            .to_string()
            .starts_with("Missing API key (HTTP 401); set CENTAUR_API_KEY"));
        let scope =
            ApiFailure::from_answer(403, r#"{"detail":"API key scope does not permit 'admin'"}"#);
        assert!(scope.to_string().contains("admin scope"), "{scope}");
    }

    #[test]
    fn other_bodies_are_shown_shortened_on_one_line() {
        let html = format!("<html>\n{}</html>", "x".repeat(500));
        let failure = ApiFailure::from_answer(502, &html);
        assert_eq!(failure.code, None);
        assert!(!failure.message.contains('\n'));
        assert_eq!(failure.message.chars().count(), RAW_BODY_SHOWN);
        assert_eq!(
            ApiFailure::from_answer(500, "").message,
            "no details in the answer"
        );
    }

    #[test]
    fn a_degraded_readiness_body_shows_its_error() {
        let failure = ApiFailure::from_answer(
            503,
            r#"{"status":"degraded","database":false,"error":"database: gone"}"#,
        );
        assert_eq!(failure.message, "database: gone");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate_chars("héllo", 10), "héllo");
        assert_eq!(truncate_chars("héllo wörld", 5), "héll…");
    }

    #[test]
    fn a_chain_joins_causes_without_repeating_them() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&error), "outer: inner");
    }
}
