//! Sections shared by the API functions and the dispatcher.

use crate::env::{ConfigError, Env};
use centaur_core::Harness;

/// Postgres connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `DATABASE_URL` (required).
    pub url: String,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl DatabaseConfig {
    /// Reads `DATABASE_URL` and `DATABASE_MAX_CONNECTIONS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.required("DATABASE_URL")?,
            max_connections: env.parsed_or("DATABASE_MAX_CONNECTIONS", 10)?,
        })
    }
}

/// Which queue carries execution wake-ups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueBackend {
    /// The `queue_messages` table (default).
    Postgres,
    /// An SQS FIFO queue.
    Sqs {
        queue_url: String,
        /// `AWS_ENDPOINT_URL`, set in tests (moto) or for VPC endpoints.
        endpoint_url: Option<String>,
    },
}

/// Queue selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub backend: QueueBackend,
}

impl QueueConfig {
    /// Reads `QUEUE_BACKEND` (`postgres` default, or `sqs` with `SQS_QUEUE_URL`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let backend = match env
            .optional("QUEUE_BACKEND")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("postgres") => QueueBackend::Postgres,
            Some("sqs") => QueueBackend::Sqs {
                queue_url: env.required("SQS_QUEUE_URL")?,
                endpoint_url: env.optional("AWS_ENDPOINT_URL"),
            },
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "QUEUE_BACKEND",
                    reason: format!("'{other}' is not one of postgres, sqs"),
                })
            }
        };
        Ok(Self { backend })
    }
}

/// Credentials the control plane itself holds.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `SANDBOX_SIGNING_KEY` (required): HMAC key of `sbx1.` sandbox tokens.
    pub sandbox_signing_key: String,
    /// `SLACKBOT_API_KEY`: bootstrapped as `service:slackbot` with scope `agent`.
    pub slackbot_api_key: Option<String>,
    /// `LOCAL_DEV_API_KEY`: bootstrapped as `service:local-dev` with `admin`, `agent`.
    pub local_dev_api_key: Option<String>,
    /// `LOCAL_OPERATOR` (`on`): a loopback request with no forwarding header acts as the
    /// local operator. Turn it `off` where loopback is not the operator (a service-mesh
    /// sidecar forwarding from 127.0.0.1).
    pub local_operator: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("sandbox_signing_key", &"<redacted>")
            .field(
                "slackbot_api_key",
                &self.slackbot_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "local_dev_api_key",
                &self.local_dev_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("local_operator", &self.local_operator)
            .finish()
    }
}

/// Shortest accepted `SANDBOX_SIGNING_KEY`.
pub const MIN_SIGNING_KEY_LEN: usize = 32;

impl AuthConfig {
    /// Reads `SANDBOX_SIGNING_KEY`, `SLACKBOT_API_KEY` and `LOCAL_DEV_API_KEY`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let sandbox_signing_key = env.required("SANDBOX_SIGNING_KEY")?;
        if sandbox_signing_key.len() < MIN_SIGNING_KEY_LEN {
            return Err(ConfigError::Invalid {
                name: "SANDBOX_SIGNING_KEY",
                reason: format!(
                    "must be at least {MIN_SIGNING_KEY_LEN} characters (openssl rand -hex 32)"
                ),
            });
        }
        Ok(Self {
            sandbox_signing_key,
            slackbot_api_key: env.optional("SLACKBOT_API_KEY"),
            local_dev_api_key: env.optional("LOCAL_DEV_API_KEY"),
            local_operator: env.flag_or("LOCAL_OPERATOR", true)?,
        })
    }
}

/// Which sandbox backend runs turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxBackendKind {
    Local,
    Kubernetes,
}

/// What the control plane needs to know about sandboxes and harnesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// `SANDBOX_BACKEND`: `local` (default) or `kubernetes`.
    pub backend: SandboxBackendKind,
    /// `CENTAUR_DEFAULT_HARNESS` (default `codex`).
    pub default_harness: Harness,
    /// `CENTAUR_API_URL`: how sandboxes reach the API (default `http://127.0.0.1:8000`).
    pub api_url: String,
    /// `WARM_POOL_ENABLED` (default false).
    pub warm_pool_enabled: bool,
    /// `WARM_POOL_SIZE` (default 2).
    pub warm_pool_size: u32,
    /// `WARM_POOL_HARNESS` (default: the default harness).
    pub warm_pool_harness: Harness,
}

impl SandboxConfig {
    /// Reads the sandbox and harness variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let backend = match env
            .optional("SANDBOX_BACKEND")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("local") => SandboxBackendKind::Local,
            Some("kubernetes") | Some("k8s") => SandboxBackendKind::Kubernetes,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "SANDBOX_BACKEND",
                    reason: format!("'{other}' is not one of local, kubernetes"),
                })
            }
        };
        let default_harness = parse_harness(env, "CENTAUR_DEFAULT_HARNESS", Harness::Codex)?;
        Ok(Self {
            backend,
            default_harness,
            api_url: env
                .optional("CENTAUR_API_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned()),
            warm_pool_enabled: env.flag_or("WARM_POOL_ENABLED", false)?,
            warm_pool_size: env.parsed_or("WARM_POOL_SIZE", 2)?,
            warm_pool_harness: parse_harness(env, "WARM_POOL_HARNESS", default_harness)?,
        })
    }
}

fn parse_harness(env: &Env, name: &'static str, default: Harness) -> Result<Harness, ConfigError> {
    env.optional(name).map_or(Ok(default), |raw| {
        raw.parse().map_err(
            |err: centaur_core::harness::UnknownHarness| ConfigError::Invalid {
                name,
                reason: err.to_string(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_backend_requires_a_queue_url() {
        let env = Env::from_pairs([("QUEUE_BACKEND", "sqs")]);
        assert_eq!(
            QueueConfig::from_env(&env),
            Err(ConfigError::Missing("SQS_QUEUE_URL"))
        );
    }

    #[test]
    fn queue_defaults_to_postgres() {
        let env = Env::from_pairs([]);
        assert_eq!(
            QueueConfig::from_env(&env).map(|c| c.backend),
            Ok(QueueBackend::Postgres)
        );
    }

    #[test]
    fn short_signing_keys_are_refused() {
        let env = Env::from_pairs([("SANDBOX_SIGNING_KEY", "short")]);
        let err = AuthConfig::from_env(&env).expect_err("too short");
        assert!(err.to_string().contains("SANDBOX_SIGNING_KEY"));
    }

    #[test]
    fn auth_config_debug_output_never_shows_secrets() {
        let key = "k".repeat(40);
        let env = Env::from_pairs([
            ("SANDBOX_SIGNING_KEY", key.as_str()),
            ("SLACKBOT_API_KEY", "sekrit"),
        ]);
        let debug = format!("{:?}", AuthConfig::from_env(&env).expect("valid"));
        assert!(
            !debug.contains("sekrit") && !debug.contains(&key),
            "{debug}"
        );
    }

    #[test]
    fn unknown_default_harness_is_a_startup_error() {
        let env = Env::from_pairs([("CENTAUR_DEFAULT_HARNESS", "gpt")]);
        let err = SandboxConfig::from_env(&env).expect_err("unknown");
        assert!(err.to_string().contains("CENTAUR_DEFAULT_HARNESS"));
    }
}
