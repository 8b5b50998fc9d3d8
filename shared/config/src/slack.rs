//! Slack settings: who may start turns (the webhook), and how the dispatcher delivers
//! answers and live progress.

use crate::env::{ConfigError, Env};
use std::time::Duration;

/// Where and as whom answers are posted, and how often a running turn's status message
/// is updated.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackDeliveryConfig {
    /// `SLACK_BOT_TOKEN`: the bot's OAuth token.
    pub bot_token: String,
    /// `SLACK_API_URL` (`https://slack.com/api`): the Web API base URL.
    pub api_url: String,
    /// `SLACK_PROGRESS` (`on`): show a running turn's progress in its thread.
    pub progress: bool,
    /// `SLACK_PROGRESS_AFTER_MS` (1500): a turn still running this long after it was queued
    /// gets its status message (quick answers are posted without one).
    pub progress_after: Duration,
    /// `SLACK_PROGRESS_INTERVAL_MS` (3000): the least time between two updates of one
    /// status message.
    pub progress_interval: Duration,
    /// `SLACK_UPDATES_PER_MINUTE` (40): `chat.update` calls for progress one dispatcher makes
    /// per workspace and minute — inside Slack's Tier 3 (50+ per minute), leaving room for
    /// final answers. Divide by the number of dispatcher replicas.
    pub updates_per_minute: u32,
}

impl std::fmt::Debug for SlackDeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackDeliveryConfig")
            .field("bot_token", &"<redacted>")
            .field("api_url", &self.api_url)
            .field("progress", &self.progress)
            .field("progress_after", &self.progress_after)
            .field("progress_interval", &self.progress_interval)
            .field("updates_per_minute", &self.updates_per_minute)
            .finish()
    }
}

/// The Web API base URL: `SLACK_API_URL`, else Slack's.
fn api_url(env: &Env) -> String {
    env.optional("SLACK_API_URL")
        .unwrap_or_else(|| "https://slack.com/api".to_owned())
}

impl SlackDeliveryConfig {
    /// `None` when `SLACK_BOT_TOKEN` is unset: Slack rows then wait for an external
    /// deliverer (`/agent/final-deliveries`).
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(bot_token) = env.optional("SLACK_BOT_TOKEN") else {
            return Ok(None);
        };
        let updates_per_minute: u32 = env.parsed_or("SLACK_UPDATES_PER_MINUTE", 40)?;
        if updates_per_minute == 0 {
            return Err(ConfigError::Invalid {
                name: "SLACK_UPDATES_PER_MINUTE",
                reason: "must be at least 1 (set SLACK_PROGRESS=off to turn progress off)".into(),
            });
        }
        Ok(Some(Self {
            bot_token,
            api_url: api_url(env),
            progress: env.flag_or("SLACK_PROGRESS", true)?,
            progress_after: Duration::from_millis(env.parsed_or("SLACK_PROGRESS_AFTER_MS", 1500)?),
            progress_interval: Duration::from_millis(
                env.parsed_or::<u64>("SLACK_PROGRESS_INTERVAL_MS", 3000)?
                    .max(1000),
            ),
            updates_per_minute,
        }))
    }
}

/// Who may start a turn from Slack (slack.md, ingress item 10), and the Web API the webhook
/// reads a thread's earlier messages with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SlackAccessConfig {
    /// `SLACK_ALLOWED_TEAMS`: workspace (`T…`) and Enterprise Grid (`E…`) ids whose members
    /// may start turns. Empty: only the workspace the app is installed in (the event's
    /// `team_id`). Either way a Slack Connect guest — an author from another organisation —
    /// is refused.
    pub allowed_teams: Vec<String>,
    /// `SLACK_ALLOWED_BOTS`: bot user ids (`U…`/`W…`) or bot ids (`B…`) whose messages may
    /// start turns (other bots are ignored).
    pub allowed_bots: Vec<String>,
    /// `SLACK_BOT_TOKEN` and `SLACK_API_URL`: for `conversations.replies` (thread context).
    /// Without a token, turns start without the thread's earlier messages.
    pub web_api: Option<(String, String)>,
}

impl std::fmt::Debug for SlackAccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackAccessConfig")
            .field("allowed_teams", &self.allowed_teams)
            .field("allowed_bots", &self.allowed_bots)
            .field("web_api", &self.web_api.as_ref().map(|(_, url)| url))
            .finish()
    }
}

/// A comma-separated list of Slack ids, each starting with one of `prefixes`.
fn id_list(
    env: &Env,
    name: &'static str,
    prefixes: &[char],
    what: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = env.optional(name) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            let well_formed = id.len() >= 2
                && id.starts_with(prefixes)
                && id
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if well_formed {
                Ok(id.to_owned())
            } else {
                Err(ConfigError::Invalid {
                    name,
                    reason: format!("'{id}' is not {what}"),
                })
            }
        })
        .collect()
}

impl SlackAccessConfig {
    /// Reads `SLACK_ALLOWED_TEAMS`, `SLACK_ALLOWED_BOTS`, `SLACK_BOT_TOKEN` and
    /// `SLACK_API_URL`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            allowed_teams: id_list(
                env,
                "SLACK_ALLOWED_TEAMS",
                &['T', 'E'],
                "a Slack team id (T…) or enterprise id (E…)",
            )?,
            allowed_bots: id_list(
                env,
                "SLACK_ALLOWED_BOTS",
                &['U', 'W', 'B'],
                "a Slack bot user id (U…/W…) or bot id (B…)",
            )?,
            web_api: env
                .optional("SLACK_BOT_TOKEN")
                .map(|token| (token, api_url(env))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let env = Env::from_pairs([("SLACK_BOT_TOKEN", "xoxb-secret")]);
        let config = SlackDeliveryConfig::from_env(&env)
            .expect("valid")
            .expect("set");
        assert_eq!(config.api_url, "https://slack.com/api");
        assert!(config.progress);
        assert_eq!(config.updates_per_minute, 40);
        assert!(!format!("{config:?}").contains("xoxb-secret"));
        let access = SlackAccessConfig::from_env(&env).expect("valid");
        assert!(!format!("{access:?}").contains("xoxb-secret"));
    }

    #[test]
    fn progress_settings_are_read_and_checked() {
        let env = Env::from_pairs([
            ("SLACK_BOT_TOKEN", "xoxb-x"),
            ("SLACK_PROGRESS", "off"),
            ("SLACK_PROGRESS_AFTER_MS", "0"),
            ("SLACK_PROGRESS_INTERVAL_MS", "5000"),
        ]);
        let config = SlackDeliveryConfig::from_env(&env)
            .expect("valid")
            .expect("set");
        assert!(!config.progress);
        assert_eq!(config.progress_after, Duration::ZERO);
        assert_eq!(config.progress_interval, Duration::from_secs(5));
        let env = Env::from_pairs([
            ("SLACK_BOT_TOKEN", "xoxb-x"),
            ("SLACK_UPDATES_PER_MINUTE", "0"),
        ]);
        let err = SlackDeliveryConfig::from_env(&env).expect_err("invalid");
        assert!(
            err.to_string().contains("SLACK_UPDATES_PER_MINUTE"),
            "{err}"
        );
    }

    #[test]
    fn allowlists_are_trimmed_id_lists_and_bad_ids_are_named() {
        let env = Env::from_pairs([
            ("SLACK_ALLOWED_TEAMS", " T1, E0ORG ,"),
            ("SLACK_ALLOWED_BOTS", "B123,U0BOT"),
        ]);
        let config = SlackAccessConfig::from_env(&env).expect("valid");
        assert_eq!(config.allowed_teams, vec!["T1", "E0ORG"]);
        assert_eq!(config.allowed_bots, vec!["B123", "U0BOT"]);
        assert_eq!(config.web_api, None);
        for (name, value) in [
            ("SLACK_ALLOWED_TEAMS", "acme"),
            ("SLACK_ALLOWED_TEAMS", "C123"),
            ("SLACK_ALLOWED_BOTS", "T1"),
        ] {
            let err = SlackAccessConfig::from_env(&Env::from_pairs([(name, value)]))
                .expect_err("invalid");
            assert!(
                err.to_string().contains(name) && err.to_string().contains(value),
                "{err}"
            );
        }
    }
}
