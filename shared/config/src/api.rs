//! Settings of the API functions.

use crate::common::{AuthConfig, DatabaseConfig, QueueConfig, SandboxConfig};
use crate::env::{ConfigError, Env};
use crate::slack::SlackAccessConfig;
use crate::workspace::WorkspaceConfig;

/// Everything the API functions read from the environment.
#[derive(Clone)]
pub struct ApiConfig {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub auth: AuthConfig,
    pub sandbox: SandboxConfig,
    /// `AGENT_REPO` and `AGENT_REPOS_ALLOWED`: which repository a spawn gets and may name.
    pub workspace: WorkspaceConfig,
    /// `IRON_PROXY_BOUND_SECRETS`: secret names bound in iron-proxy (the chart renders it),
    /// for `/health/tools`.
    pub iron_proxy_bound_secrets: Vec<String>,
    /// Both `SLACK_BOT_TOKEN` and `SLACK_SIGNING_SECRET` are set.
    pub slack_configured: bool,
    /// `SLACK_SIGNING_SECRET`: verifies Slack webhooks (the webhook answers 503 without it).
    pub slack_signing_secret: Option<String>,
    /// `SLACK_BOT_USER_ID`: the bot's user id, when payloads carry no `authorizations`.
    pub slack_bot_user_id: Option<String>,
    /// `SLACK_ALLOWED_TEAMS`, `SLACK_ALLOWED_BOTS`, and the Web API the webhook reads a
    /// thread's earlier messages with.
    pub slack_access: SlackAccessConfig,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("database", &self.database)
            .field("queue", &self.queue)
            .field("auth", &self.auth)
            .field("sandbox", &self.sandbox)
            .field("workspace", &self.workspace)
            .field("iron_proxy_bound_secrets", &self.iron_proxy_bound_secrets)
            .field("slack_configured", &self.slack_configured)
            .field("slack_bot_user_id", &self.slack_bot_user_id)
            .field("slack_access", &self.slack_access)
            .finish_non_exhaustive()
    }
}

impl ApiConfig {
    /// Reads the API's variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            queue: QueueConfig::from_env(env)?,
            auth: AuthConfig::from_env(env)?,
            sandbox: SandboxConfig::from_env(env)?,
            workspace: WorkspaceConfig::from_env(env)?,
            iron_proxy_bound_secrets: env
                .optional("IRON_PROXY_BOUND_SECRETS")
                .map(|list| {
                    list.split(',')
                        .map(|name| name.trim().to_owned())
                        .filter(|name| !name.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            slack_configured: env.optional("SLACK_BOT_TOKEN").is_some()
                && env.optional("SLACK_SIGNING_SECRET").is_some(),
            slack_signing_secret: env.optional("SLACK_SIGNING_SECRET"),
            slack_bot_user_id: env.optional("SLACK_BOT_USER_ID"),
            slack_access: SlackAccessConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_secrets_are_a_trimmed_comma_list() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://x"),
            ("SANDBOX_SIGNING_KEY", "0123456789abcdef0123456789abcdef"),
            (
                "IRON_PROXY_BOUND_SECRETS",
                " OPENAI_API_KEY, ANTHROPIC_API_KEY ,",
            ),
        ]);
        let config = ApiConfig::from_env(&env).expect("valid");
        assert_eq!(
            config.iron_proxy_bound_secrets,
            vec!["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
        );
        assert!(!config.slack_configured);
        assert_eq!(config.workspace.default_repo, None);
    }

    #[test]
    fn the_workspace_variables_are_read_and_named_in_errors() {
        let base = [
            ("DATABASE_URL", "postgres://x"),
            ("SANDBOX_SIGNING_KEY", "0123456789abcdef0123456789abcdef"),
        ];
        let env = Env::from_pairs(base.into_iter().chain([
            ("AGENT_REPO", "acme/api"),
            ("AGENT_REPOS_ALLOWED", "acme/*"),
        ]));
        let config = ApiConfig::from_env(&env).expect("valid");
        assert_eq!(
            config.workspace.default_repo.as_ref().map(|r| r.as_str()),
            Some("acme/api")
        );
        let env = Env::from_pairs(base.into_iter().chain([("AGENT_REPO", "ssh://x/y/z")]));
        let err = ApiConfig::from_env(&env).expect_err("invalid");
        assert!(err.to_string().contains("AGENT_REPO"), "{err}");
    }
}
