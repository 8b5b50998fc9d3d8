//! Retention (`RETENTION_*`): how long finished data is kept before the dispatcher prunes
//! it. Each window is a whole number of days; `0` or `off` disables it (kept forever).

use crate::env::{ConfigError, Env};
use std::time::Duration;

/// One day.
const DAY: Duration = Duration::from_secs(86_400);
/// Longest accepted window (a century): anything longer is a typo, not a policy.
const MAX_DAYS: u64 = 36_500;
/// Largest accepted `RETENTION_BATCH_SIZE`.
const MAX_BATCH_SIZE: u32 = 10_000;

/// The retention windows and how the dispatcher prunes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// `RETENTION_EXECUTIONS_DAYS` (30): terminal executions with their events, messages,
    /// outbox rows and usage, counted from `completed_at`; also thread-level events (no
    /// execution) and dead-lettered Slack notices, counted from `created_at`.
    pub executions: Option<Duration>,
    /// `RETENTION_IDEMPOTENCY_DAYS` (7): `spawn_requests`, `message_requests`,
    /// `release_requests` (a replay after the window is a new request).
    pub idempotency: Option<Duration>,
    /// `RETENTION_QUEUE_DAYS` (1): Postgres queue rows whose execution is terminal.
    pub queue: Option<Duration>,
    /// `RETENTION_OUTBOX_DAYS` (7): delivered outbox rows and delivered Slack notices,
    /// counted from `delivered_at`.
    pub outbox: Option<Duration>,
    /// `RETENTION_AUDIT_DAYS` (90): audit log rows, counted from `at`.
    pub audit: Option<Duration>,
    /// `RETENTION_INTERVAL_S` (60): how often a dispatcher runs a pruning pass.
    pub interval: Duration,
    /// `RETENTION_BATCH_SIZE` (500, at most 10000): most rows one DELETE removes.
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            executions: Some(DAY * 30),
            idempotency: Some(DAY * 7),
            queue: Some(DAY),
            outbox: Some(DAY * 7),
            audit: Some(DAY * 90),
            interval: Duration::from_secs(60),
            batch_size: 500,
        }
    }
}

/// A window in days: `None` for `0` / `off`, the default when absent.
fn window_days(
    env: &Env,
    name: &'static str,
    default: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    let Some(raw) = env.optional(name) else {
        return Ok(default);
    };
    let value = raw.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let days: u64 = value.parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("'{value}' is not a whole number of days (use 0 or off to keep forever)"),
    })?;
    match days {
        0 => Ok(None),
        days if days > MAX_DAYS => Err(ConfigError::Invalid {
            name,
            reason: format!("{days} days is more than {MAX_DAYS}; use off to keep forever"),
        }),
        days => Ok(Some(DAY * days as u32)),
    }
}

impl RetentionConfig {
    /// Reads the `RETENTION_*` variables (see the field docs for names and defaults).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let interval: u64 = env.parsed_or("RETENTION_INTERVAL_S", defaults.interval.as_secs())?;
        if interval == 0 {
            return Err(ConfigError::Invalid {
                name: "RETENTION_INTERVAL_S",
                reason: "must be at least 1 second".into(),
            });
        }
        let batch_size: u32 = env.parsed_or("RETENTION_BATCH_SIZE", defaults.batch_size)?;
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(ConfigError::Invalid {
                name: "RETENTION_BATCH_SIZE",
                reason: format!("must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}"),
            });
        }
        Ok(Self {
            executions: window_days(env, "RETENTION_EXECUTIONS_DAYS", defaults.executions)?,
            idempotency: window_days(env, "RETENTION_IDEMPOTENCY_DAYS", defaults.idempotency)?,
            queue: window_days(env, "RETENTION_QUEUE_DAYS", defaults.queue)?,
            outbox: window_days(env, "RETENTION_OUTBOX_DAYS", defaults.outbox)?,
            audit: window_days(env, "RETENTION_AUDIT_DAYS", defaults.audit)?,
            interval: Duration::from_secs(interval),
            batch_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_a_month_of_turns_a_week_of_keys_and_outbox_and_a_day_of_queue() {
        let config = RetentionConfig::from_env(&Env::from_pairs([])).expect("defaults");
        assert_eq!(config, RetentionConfig::default());
        assert_eq!(config.executions, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(config.idempotency, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(config.queue, Some(Duration::from_secs(86_400)));
        assert_eq!(config.outbox, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(config.audit, Some(Duration::from_secs(90 * 86_400)));
    }

    #[test]
    fn zero_or_off_disables_a_window() {
        let env = Env::from_pairs([
            ("RETENTION_EXECUTIONS_DAYS", "off"),
            ("RETENTION_IDEMPOTENCY_DAYS", "0"),
            ("RETENTION_QUEUE_DAYS", " OFF "),
            ("RETENTION_OUTBOX_DAYS", "3"),
            ("RETENTION_AUDIT_DAYS", "off"),
        ]);
        let config = RetentionConfig::from_env(&env).expect("valid");
        assert_eq!(config.executions, None);
        assert_eq!(config.idempotency, None);
        assert_eq!(config.queue, None);
        assert_eq!(config.outbox, Some(Duration::from_secs(3 * 86_400)));
        assert_eq!(config.audit, None);
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (name, value) in [
            ("RETENTION_EXECUTIONS_DAYS", "thirty"),
            ("RETENTION_IDEMPOTENCY_DAYS", "-1"),
            ("RETENTION_QUEUE_DAYS", "1.5"),
            ("RETENTION_OUTBOX_DAYS", "99999999"),
            ("RETENTION_AUDIT_DAYS", "a quarter"),
            ("RETENTION_INTERVAL_S", "0"),
            ("RETENTION_INTERVAL_S", "soon"),
            ("RETENTION_BATCH_SIZE", "0"),
            ("RETENTION_BATCH_SIZE", "1000000"),
        ] {
            let err = RetentionConfig::from_env(&Env::from_pairs([(name, value)]))
                .expect_err(&format!("{name}={value} is invalid"));
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }
}
