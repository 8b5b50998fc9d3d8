//! Field validation with errors that name the field.

use crate::error::ApiError;
use centaur_config::WorkspaceConfig;
use centaur_core::api::codes;
use centaur_core::api::MAX_AGENTS_MD_OVERRIDE_BYTES;
use centaur_core::{Harness, RepoRef, ThreadKey};
use centaur_store::assignments::WorkspaceChoice;
use serde_json::Value;

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

/// A `since` query value: an RFC 3339 time (`2025-01-01T00:00:00Z`), a date
/// (`2025-01-01`, midnight UTC) or a span back from `now` (`90m`, `24h`, `7d`). 422 naming
/// `since` otherwise.
pub fn since(
    raw: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    let value = raw.trim();
    let invalid = || {
        ApiError::validation(format!(
            "since must be an RFC 3339 time (2025-01-01T00:00:00Z), a date (2025-01-01) or a \
             span back from now (90m, 24h, 7d); got '{}'",
            value.chars().take(64).collect::<String>()
        ))
    };
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(time.with_timezone(&chrono::Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let split = value.len().saturating_sub(1);
    let (amount, unit) = (value.get(..split).ok_or_else(invalid)?, value.get(split..));
    let amount: i64 = amount
        .parse()
        .ok()
        .filter(|n| (0..=1_000_000).contains(n))
        .ok_or_else(invalid)?;
    let span = match unit {
        Some("m") => chrono::Duration::minutes(amount),
        Some("h") => chrono::Duration::hours(amount),
        Some("d") => chrono::Duration::days(amount),
        _ => return Err(invalid()),
    };
    now.checked_sub_signed(span).ok_or_else(invalid)
}

/// A spawn's workspace: `repo` parsed (422 `INVALID_REPO`) and checked against
/// `AGENT_REPOS_ALLOWED` (422 `REPO_NOT_ALLOWED`), `agents_md_override` bounded to
/// [`MAX_AGENTS_MD_OVERRIDE_BYTES`] without NUL (422 `VALIDATION_ERROR`; blank counts as
/// absent), and the deployment's default repo for a new assignment.
pub fn workspace(
    config: &WorkspaceConfig,
    repo: Option<&str>,
    agents_md_override: Option<&str>,
) -> Result<WorkspaceChoice, ApiError> {
    let requested_repo = repo
        .map(|raw| {
            let repo = RepoRef::parse(raw).map_err(|err| ApiError::Unprocessable {
                code: codes::INVALID_REPO,
                message: format!("repo: {err}"),
            })?;
            if !config.repos_allowed.allows(&repo) {
                return Err(ApiError::Unprocessable {
                    code: codes::REPO_NOT_ALLOWED,
                    message: format!(
                        "repo '{repo}' is not allowed on this deployment (AGENT_REPOS_ALLOWED)"
                    ),
                });
            }
            Ok(repo.to_string())
        })
        .transpose()?;
    let agents_md_override = match agents_md_override {
        Some(text) if text.len() > MAX_AGENTS_MD_OVERRIDE_BYTES => {
            return Err(ApiError::validation(format!(
                "agents_md_override must be at most {MAX_AGENTS_MD_OVERRIDE_BYTES} bytes, got {}",
                text.len()
            )));
        }
        Some(text) if text.contains('\0') => {
            return Err(ApiError::validation(
                "agents_md_override must not contain NUL characters",
            ));
        }
        Some(text) if !text.trim().is_empty() => Some(text.to_owned()),
        _ => None,
    };
    Ok(WorkspaceChoice {
        requested_repo,
        default_repo: config.default_repo.as_ref().map(ToString::to_string),
        agents_md_override,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_a_date_or_a_span_back_from_now() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-03-10T12:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .expect("now");
        for (raw, expected) in [
            ("2025-01-01T00:00:00Z", "2025-01-01T00:00:00+00:00"),
            ("2025-01-01T02:00:00+02:00", "2025-01-01T00:00:00+00:00"),
            ("2025-01-01", "2025-01-01T00:00:00+00:00"),
            ("90m", "2025-03-10T10:30:00+00:00"),
            ("24h", "2025-03-09T12:00:00+00:00"),
            (" 7d ", "2025-03-03T12:00:00+00:00"),
        ] {
            let parsed = since(raw, now).unwrap_or_else(|err| panic!("{raw}: {err}"));
            assert_eq!(parsed.to_rfc3339(), expected, "{raw}");
        }
    }

    #[test]
    fn a_bad_since_is_a_422_naming_it() {
        let now = chrono::Utc::now();
        for raw in [
            "",
            "yesterday",
            "7",
            "d",
            "-1d",
            "7w",
            "2025-13-01",
            "9999999999d",
            "é",
            "1é",
        ] {
            let err = since(raw, now).expect_err(raw);
            assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert!(err.to_string().contains("since must be"), "{raw}: {err}");
        }
    }
}
