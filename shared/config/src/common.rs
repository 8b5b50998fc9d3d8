//! Sections shared by the API functions and the dispatcher.

use crate::env::{ConfigError, Env};
use centaur_core::Harness;
use std::path::{Path, PathBuf};

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
    /// `SANDBOX_PROXY_URL`: the credential-swapping egress proxy every sandbox sends its
    /// HTTP(S) through (workspace.md "Egress"). Required by the Kubernetes backend
    /// ([`crate::KubernetesConfig`]); optional for local sandboxes, which get no proxy
    /// settings without it (the offline `echo` harness).
    pub proxy_url: Option<String>,
    /// The local backend's settings (read, and checked, whatever the backend).
    pub local: LocalSandboxConfig,
}

/// Settings of local-process sandboxes (workspace.md "Isolation on one machine").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSandboxConfig {
    /// `SANDBOX_CA_FILE`: the egress proxy's CA certificate (PEM, certificate only; for
    /// mitmproxy `<confdir>/mitmproxy-ca-cert.pem`). Required with `SANDBOX_PROXY_URL` on
    /// the local backend, which copies it into each sandbox and points the CA variables
    /// at the copy. Ignored without a proxy.
    pub ca_file: Option<PathBuf>,
    /// `SANDBOX_LOCAL_USER` (`centaur-sandbox`): the unprivileged user local sandboxes run
    /// as when the dispatcher runs as root.
    pub user: String,
    /// `SANDBOX_LOCAL_ISOLATION` (`on`). `off` runs local sandboxes as the dispatcher's own
    /// user with nothing but a clean environment between them and the control plane's
    /// secrets: a developer-only escape hatch for machines with neither root nor `bwrap`.
    pub isolation: bool,
}

/// The default of `SANDBOX_LOCAL_USER`.
pub const DEFAULT_SANDBOX_USER: &str = "centaur-sandbox";

impl LocalSandboxConfig {
    /// Reads `SANDBOX_CA_FILE`, `SANDBOX_LOCAL_USER` and `SANDBOX_LOCAL_ISOLATION`; with
    /// `proxy` set and `local` true, the CA file is required and must be a readable PEM
    /// certificate holding no private key.
    fn from_env(env: &Env, proxy: bool, local: bool) -> Result<Self, ConfigError> {
        let ca_file = env.optional("SANDBOX_CA_FILE").map(PathBuf::from);
        if proxy && local {
            let path = ca_file.as_deref().ok_or_else(|| ConfigError::Invalid {
                name: "SANDBOX_CA_FILE",
                reason: "required with SANDBOX_PROXY_URL on the local backend: the path of \
                         the proxy's CA certificate (mitmproxy: \
                         <confdir>/mitmproxy-ca-cert.pem)"
                    .into(),
            })?;
            check_ca_file(path)?;
        }
        Ok(Self {
            ca_file,
            user: env
                .optional("SANDBOX_LOCAL_USER")
                .map(|user| user.trim().to_owned())
                .unwrap_or_else(|| DEFAULT_SANDBOX_USER.to_owned()),
            isolation: env.flag_or("SANDBOX_LOCAL_ISOLATION", true)?,
        })
    }
}

/// The proxy CA must be readable now, hold a certificate, and never the CA's key (which
/// would let a sandbox impersonate any host to every other sandbox).
fn check_ca_file(path: &Path) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "SANDBOX_CA_FILE",
        reason,
    };
    let pem = std::fs::read_to_string(path)
        .map_err(|err| invalid(format!("cannot read {}: {err}", path.display())))?;
    if pem.contains("PRIVATE KEY") {
        return Err(invalid(format!(
            "{} holds a private key: point it at the CA certificate only \
             (mitmproxy: <confdir>/mitmproxy-ca-cert.pem)",
            path.display()
        )));
    }
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(())
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
        let proxy_url = env.optional("SANDBOX_PROXY_URL");
        let local = LocalSandboxConfig::from_env(
            env,
            proxy_url.is_some(),
            backend == SandboxBackendKind::Local,
        )?;
        Ok(Self {
            backend,
            default_harness,
            api_url: env
                .optional("CENTAUR_API_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned()),
            warm_pool_enabled: env.flag_or("WARM_POOL_ENABLED", false)?,
            warm_pool_size: env.parsed_or("WARM_POOL_SIZE", 2)?,
            warm_pool_harness: parse_harness(env, "WARM_POOL_HARNESS", default_harness)?,
            proxy_url,
            local,
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
    fn a_local_proxy_needs_a_readable_ca_certificate() {
        let env = Env::from_pairs([("SANDBOX_PROXY_URL", "http://127.0.0.1:8080")]);
        let err = SandboxConfig::from_env(&env).expect_err("no CA");
        assert!(
            err.to_string().contains("SANDBOX_CA_FILE")
                && err.to_string().contains("SANDBOX_PROXY_URL"),
            "{err}"
        );
        let env = Env::from_pairs([
            ("SANDBOX_PROXY_URL", "http://127.0.0.1:8080"),
            ("SANDBOX_CA_FILE", "/nonexistent/ca.pem"),
        ]);
        let err = SandboxConfig::from_env(&env).expect_err("unreadable");
        assert!(
            err.to_string().contains("SANDBOX_CA_FILE") && err.to_string().contains("/nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn the_ca_file_must_be_a_certificate_without_its_key() {
        let dir = std::env::temp_dir().join(format!("centaur-config-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let cases = [
            ("cert.pem", cert.to_owned(), true),
            (
                "with-key.pem",
                format!("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n{cert}"),
                false,
            ),
            ("empty.pem", String::new(), false),
        ];
        for (name, content, valid) in cases {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("write");
            let path = path.display().to_string();
            let env = Env::from_pairs([
                ("SANDBOX_PROXY_URL", "http://127.0.0.1:8080"),
                ("SANDBOX_CA_FILE", path.as_str()),
            ]);
            let config = SandboxConfig::from_env(&env);
            assert_eq!(config.is_ok(), valid, "{name}: {config:?}");
            if let Ok(config) = config {
                assert_eq!(config.proxy_url.as_deref(), Some("http://127.0.0.1:8080"));
                assert_eq!(config.local.ca_file, Some(PathBuf::from(&path)));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_kubernetes_backend_does_not_read_the_local_ca_file() {
        let env = Env::from_pairs([
            ("SANDBOX_BACKEND", "kubernetes"),
            ("SANDBOX_PROXY_URL", "http://proxy:8080"),
        ]);
        let config = SandboxConfig::from_env(&env).expect("valid");
        assert_eq!(config.proxy_url.as_deref(), Some("http://proxy:8080"));
    }

    #[test]
    fn local_sandboxes_are_isolated_by_default() {
        let config = SandboxConfig::from_env(&Env::from_pairs([])).expect("valid");
        assert_eq!(config.proxy_url, None);
        assert_eq!(config.local.user, DEFAULT_SANDBOX_USER);
        assert!(config.local.isolation);
        let env = Env::from_pairs([
            ("SANDBOX_LOCAL_ISOLATION", "off"),
            ("SANDBOX_LOCAL_USER", "agent"),
        ]);
        let config = SandboxConfig::from_env(&env).expect("valid");
        assert_eq!(config.local.user, "agent");
        assert!(!config.local.isolation);
        let env = Env::from_pairs([("SANDBOX_LOCAL_ISOLATION", "sometimes")]);
        let err = SandboxConfig::from_env(&env).expect_err("invalid");
        assert!(err.to_string().contains("SANDBOX_LOCAL_ISOLATION"), "{err}");
    }

    #[test]
    fn unknown_default_harness_is_a_startup_error() {
        let env = Env::from_pairs([("CENTAUR_DEFAULT_HARNESS", "gpt")]);
        let err = SandboxConfig::from_env(&env).expect_err("unknown");
        assert!(err.to_string().contains("CENTAUR_DEFAULT_HARNESS"));
    }
}
