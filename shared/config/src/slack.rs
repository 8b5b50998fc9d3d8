//! The dispatcher's Slack delivery settings.

use crate::env::{ConfigError, Env};

/// Where and as whom final answers are posted.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackDeliveryConfig {
    /// `SLACK_BOT_TOKEN`: the bot's OAuth token.
    pub bot_token: String,
    /// `SLACK_API_URL` (`https://slack.com/api`): the Web API base URL.
    pub api_url: String,
}

impl std::fmt::Debug for SlackDeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackDeliveryConfig")
            .field("bot_token", &"<redacted>")
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl SlackDeliveryConfig {
    /// `None` when `SLACK_BOT_TOKEN` is unset: Slack rows then wait for an external
    /// deliverer (`/agent/final-deliveries`).
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        Ok(env.optional("SLACK_BOT_TOKEN").map(|bot_token| Self {
            bot_token,
            api_url: env
                .optional("SLACK_API_URL")
                .unwrap_or_else(|| "https://slack.com/api".to_owned()),
        }))
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
        assert!(!format!("{config:?}").contains("xoxb-secret"));
    }
}
