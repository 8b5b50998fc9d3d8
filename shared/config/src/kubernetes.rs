//! Settings of the Kubernetes sandbox backend (read only when `SANDBOX_BACKEND=kubernetes`).

use crate::env::{ConfigError, Env};
use std::time::Duration;

/// How sandbox pods are built and where they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// `KUBERNETES_NAMESPACE` (required): where sandbox pods and their Secrets live.
    pub namespace: String,
    /// `SANDBOX_IMAGE` (`centaur-agent:latest`).
    pub image: String,
    /// `SANDBOX_IMAGE_PULL_POLICY` (`IfNotPresent`).
    pub image_pull_policy: String,
    /// `SANDBOX_RUNTIME_CLASS_NAME` (none), e.g. `gvisor`.
    pub runtime_class: Option<String>,
    /// `SANDBOX_CPU_LIMIT` (`2`) and `SANDBOX_MEMORY_LIMIT` (`4Gi`).
    pub cpu_limit: String,
    pub memory_limit: String,
    /// `SANDBOX_CPU_REQUEST` and `SANDBOX_MEMORY_REQUEST` (none: the limits apply).
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    /// `SANDBOX_PROXY_URL` (required here, optional for local sandboxes: see
    /// [`crate::SandboxConfig::proxy_url`]): iron-proxy's CONNECT listener,
    /// `http://<svc>:8080`. The pod's CA path is the mounted Secret, never `SANDBOX_CA_FILE`.
    pub proxy_url: String,
    /// `SANDBOX_CA_SECRET` (`centaur-firewall-ca`): the Secret whose `ca.crt` is mounted.
    pub ca_secret: String,
    /// `SANDBOX_START_TIMEOUT_S` (300): how long a pod may take to start running.
    pub start_timeout: Duration,
}

impl KubernetesConfig {
    /// Reads the Kubernetes backend's variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let or = |name: &str, default: &str| env.optional(name).unwrap_or_else(|| default.into());
        let image_pull_policy = or("SANDBOX_IMAGE_PULL_POLICY", "IfNotPresent");
        if !["Always", "IfNotPresent", "Never"].contains(&image_pull_policy.as_str()) {
            return Err(ConfigError::Invalid {
                name: "SANDBOX_IMAGE_PULL_POLICY",
                reason: format!("'{image_pull_policy}' is not one of Always, IfNotPresent, Never"),
            });
        }
        let start_timeout: u64 = env.parsed_or("SANDBOX_START_TIMEOUT_S", 300)?;
        Ok(Self {
            namespace: env.required("KUBERNETES_NAMESPACE")?,
            image: or("SANDBOX_IMAGE", "centaur-agent:latest"),
            image_pull_policy,
            runtime_class: env.optional("SANDBOX_RUNTIME_CLASS_NAME"),
            cpu_limit: or("SANDBOX_CPU_LIMIT", "2"),
            memory_limit: or("SANDBOX_MEMORY_LIMIT", "4Gi"),
            cpu_request: env.optional("SANDBOX_CPU_REQUEST"),
            memory_request: env.optional("SANDBOX_MEMORY_REQUEST"),
            proxy_url: env.required("SANDBOX_PROXY_URL")?,
            ca_secret: or("SANDBOX_CA_SECRET", "centaur-firewall-ca"),
            start_timeout: Duration::from_secs(start_timeout.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_pod_spec_contract() {
        let env = Env::from_pairs([
            ("KUBERNETES_NAMESPACE", "centaur-system"),
            ("SANDBOX_PROXY_URL", "http://proxy:8080"),
        ]);
        let config = KubernetesConfig::from_env(&env).expect("valid");
        assert_eq!(config.image, "centaur-agent:latest");
        assert_eq!(
            (config.cpu_limit.as_str(), config.memory_limit.as_str()),
            ("2", "4Gi")
        );
        assert_eq!(config.ca_secret, "centaur-firewall-ca");
        assert_eq!(config.runtime_class, None);
    }

    #[test]
    fn a_missing_namespace_or_proxy_is_named() {
        let env = Env::from_pairs([("SANDBOX_PROXY_URL", "http://proxy:8080")]);
        assert_eq!(
            KubernetesConfig::from_env(&env),
            Err(ConfigError::Missing("KUBERNETES_NAMESPACE"))
        );
        let env = Env::from_pairs([("KUBERNETES_NAMESPACE", "ns")]);
        assert_eq!(
            KubernetesConfig::from_env(&env),
            Err(ConfigError::Missing("SANDBOX_PROXY_URL"))
        );
    }

    #[test]
    fn an_unknown_pull_policy_is_refused() {
        let env = Env::from_pairs([
            ("KUBERNETES_NAMESPACE", "ns"),
            ("SANDBOX_PROXY_URL", "http://proxy:8080"),
            ("SANDBOX_IMAGE_PULL_POLICY", "Sometimes"),
        ]);
        let err = KubernetesConfig::from_env(&env).expect_err("invalid");
        assert!(err.to_string().contains("SANDBOX_IMAGE_PULL_POLICY"));
    }
}
