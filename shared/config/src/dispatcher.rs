//! The dispatcher's settings.

use crate::common::{AuthConfig, DatabaseConfig, QueueConfig, SandboxBackendKind, SandboxConfig};
use crate::env::{ConfigError, Env};
use crate::kubernetes::KubernetesConfig;
use crate::retention::RetentionConfig;
use crate::slack::SlackDeliveryConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the dispatcher reads from the environment.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub auth: AuthConfig,
    pub sandbox: SandboxConfig,
    /// The Kubernetes backend's settings, read when `SANDBOX_BACKEND=kubernetes`.
    pub kubernetes: Option<KubernetesConfig>,
    /// Slack delivery, when `SLACK_BOT_TOKEN` is set.
    pub slack: Option<SlackDeliveryConfig>,
    /// `DISPATCHER_WORKER_ID` (default `<hostname>-<pid>`): the lease owner name.
    pub worker_id: String,
    /// `DISPATCHER_PORT` (9000): `/healthz`, `/readyz`, `/metrics`.
    pub port: u16,
    /// `EXECUTION_WORKER_ENABLED` (true): run executions (false: only health + delivery).
    pub execution_worker_enabled: bool,
    /// `DISPATCHER_CONCURRENCY` (8): executions run at once by this process.
    pub concurrency: usize,
    /// `EXECUTION_LEASE_S` (60).
    pub lease: Duration,
    /// `EXECUTION_SILENCE_TIMEOUT_S` (600): fail a turn with no output for this long.
    pub silence_timeout: Duration,
    /// `EXECUTION_HARD_TIMEOUT_S` (3600): fail a turn running longer than this.
    pub hard_timeout: Duration,
    /// `QUEUE_WAIT_S` (20, the SQS maximum): how long one receive long-polls.
    pub queue_wait: Duration,
    /// `QUEUE_VISIBILITY_S` (120): how long a received message stays hidden.
    pub queue_visibility: Duration,
    /// `QUEUE_SWEEP_AFTER_S` (30): re-send `queued` rows older than this.
    pub sweep_after: Duration,
    /// `SANDBOX_IDLE_TTL_S` (86400): stop session sandboxes unused this long.
    pub sandbox_idle_ttl: Duration,
    /// `SANDBOX_MAX_LIVE` (100): most live session sandboxes; the least recently used go first.
    pub sandbox_max_live: u32,
    /// `WARM_POOL_MAX_AGE_S` (3600): recycle ready warm sandboxes older than this.
    pub warm_pool_max_age: Duration,
    /// `SANDBOX_COMMAND` (`sandbox`): the local backend's program.
    pub sandbox_command: PathBuf,
    /// `SANDBOX_STATE_DIR` (`$TMPDIR/centaur-sandboxes`): the local backend's state.
    pub sandbox_state_dir: PathBuf,
    /// `AGENT_REPO` / `AGENT_REPOS_ALLOWED` (see [`crate::WorkspaceConfig`]).
    pub workspace: crate::workspace::WorkspaceConfig,
    /// `AGENTS_BASE_FILE` (optional): the deployment's base prompt, read at start-up;
    /// `None` means the built-in `AGENTS_BASE.md`.
    pub agents_base_prompt: Option<String>,
    /// `RETENTION_*` (see [`RetentionConfig`]): what the maintenance loop prunes, and when.
    pub retention: RetentionConfig,
}

fn seconds(env: &Env, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    let secs: u64 = env.parsed_or(name, default)?;
    if secs == 0 {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be at least 1 second".into(),
        });
    }
    Ok(Duration::from_secs(secs))
}

fn default_worker_id(env: &Env) -> String {
    let host = env
        .optional("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "dispatcher".to_owned());
    format!("{host}-{}", std::process::id())
}

impl DispatcherConfig {
    /// Reads the dispatcher's variables (see the field docs for names and defaults).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let temp = env
            .optional("TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let sandbox = SandboxConfig::from_env(env)?;
        let kubernetes = match sandbox.backend {
            SandboxBackendKind::Kubernetes => Some(KubernetesConfig::from_env(env)?),
            SandboxBackendKind::Local => None,
        };
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            queue: QueueConfig::from_env(env)?,
            auth: AuthConfig::from_env(env)?,
            sandbox,
            kubernetes,
            slack: SlackDeliveryConfig::from_env(env)?,
            worker_id: env
                .optional("DISPATCHER_WORKER_ID")
                .unwrap_or_else(|| default_worker_id(env)),
            port: env.parsed_or("DISPATCHER_PORT", 9000)?,
            execution_worker_enabled: env.flag_or("EXECUTION_WORKER_ENABLED", true)?,
            concurrency: env.parsed_or::<usize>("DISPATCHER_CONCURRENCY", 8)?.max(1),
            lease: seconds(env, "EXECUTION_LEASE_S", 60)?,
            silence_timeout: seconds(env, "EXECUTION_SILENCE_TIMEOUT_S", 600)?,
            hard_timeout: seconds(env, "EXECUTION_HARD_TIMEOUT_S", 3600)?,
            queue_wait: Duration::from_secs(env.parsed_or::<u64>("QUEUE_WAIT_S", 20)?.min(20)),
            queue_visibility: seconds(env, "QUEUE_VISIBILITY_S", 120)?,
            sweep_after: seconds(env, "QUEUE_SWEEP_AFTER_S", 30)?,
            sandbox_idle_ttl: seconds(env, "SANDBOX_IDLE_TTL_S", 86_400)?,
            sandbox_max_live: env.parsed_or("SANDBOX_MAX_LIVE", 100)?,
            warm_pool_max_age: seconds(env, "WARM_POOL_MAX_AGE_S", 3600)?,
            sandbox_command: env
                .optional("SANDBOX_COMMAND")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("sandbox")),
            sandbox_state_dir: env
                .optional("SANDBOX_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| temp.join("centaur-sandboxes")),
            workspace: crate::workspace::WorkspaceConfig::from_env(env)?,
            agents_base_prompt: crate::workspace::agents_base_prompt(env)?,
            retention: RetentionConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123";

    #[test]
    fn defaults_follow_the_spec() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://x"),
            ("SANDBOX_SIGNING_KEY", KEY),
        ]);
        let config = DispatcherConfig::from_env(&env).expect("valid");
        assert_eq!(config.lease, Duration::from_secs(60));
        assert_eq!(config.silence_timeout, Duration::from_secs(600));
        assert_eq!(config.port, 9000);
        assert!(config.execution_worker_enabled);
        assert_eq!(config.retention, RetentionConfig::default());
    }

    #[test]
    fn a_bad_retention_window_is_refused_by_name() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://x"),
            ("SANDBOX_SIGNING_KEY", KEY),
            ("RETENTION_EXECUTIONS_DAYS", "a month"),
        ]);
        let err = DispatcherConfig::from_env(&env).expect_err("invalid");
        assert!(
            err.to_string().contains("RETENTION_EXECUTIONS_DAYS"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_lease_is_refused_by_name() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://x"),
            ("SANDBOX_SIGNING_KEY", KEY),
            ("EXECUTION_LEASE_S", "0"),
        ]);
        let err = DispatcherConfig::from_env(&env).expect_err("invalid");
        assert!(err.to_string().contains("EXECUTION_LEASE_S"), "{err}");
    }

    #[test]
    fn the_database_url_is_required() {
        let env = Env::from_pairs([("SANDBOX_SIGNING_KEY", KEY)]);
        assert_eq!(
            DispatcherConfig::from_env(&env).err(),
            Some(ConfigError::Missing("DATABASE_URL"))
        );
    }
}
