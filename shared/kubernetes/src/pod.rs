//! The sandbox pod and its prompt Secret, built from a [`SandboxSpec`] (execution.md,
//! "Sandbox pod spec"). Only placeholders and the scoped `sbx1.` token reach the pod: the
//! spec's env is the caller's (which holds no real secret), plus proxy and CA settings.

use crate::names::{
    pod_name, prompt_secret_name, CONTAINER, HARNESS_LABEL, MANAGED_LABEL, SANDBOX_ID_LABEL,
    THREAD_KEY_ANNOTATION, WARM_LABEL,
};
use centaur_config::KubernetesConfig;
use centaur_sandbox::egress::egress_env;
use centaur_sandbox::SandboxSpec;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::{json, Map, Value};

/// Where the prompt Secret is mounted (`CENTAUR_PROMPTS_DIR`).
pub const PROMPTS_DIR: &str = "/centaur/prompts";
/// Where the proxy CA's `ca.crt` is mounted.
pub const CA_DIR: &str = "/firewall-certs";
/// The CA bundle path every TLS stack in the sandbox is pointed at.
pub const CA_FILE: &str = "/firewall-certs/ca.crt";
/// The sandbox user and group.
pub const SANDBOX_UID: i64 = 1001;

/// Builds the pod for `spec`.
pub fn sandbox_pod(
    spec: &SandboxSpec,
    config: &KubernetesConfig,
) -> Result<Pod, serde_json::Error> {
    let mut labels = Map::new();
    labels.insert(MANAGED_LABEL.into(), "true".into());
    labels.insert(SANDBOX_ID_LABEL.into(), spec.id.as_str().into());
    labels.insert(HARNESS_LABEL.into(), spec.harness.as_str().into());
    labels.insert(WARM_LABEL.into(), spec.warm.to_string().into());
    labels.insert("app.kubernetes.io/part-of".into(), "centaur".into());
    let mut annotations = Map::new();
    if let Some(thread_key) = &spec.thread_key {
        annotations.insert(THREAD_KEY_ANNOTATION.into(), thread_key.clone().into());
    }
    let mut resources = json!({
        "limits": {"cpu": config.cpu_limit, "memory": config.memory_limit}
    });
    let mut requests = Map::new();
    if let Some(cpu) = &config.cpu_request {
        requests.insert("cpu".into(), cpu.clone().into());
    }
    if let Some(memory) = &config.memory_request {
        requests.insert("memory".into(), memory.clone().into());
    }
    if !requests.is_empty() {
        resources["requests"] = Value::Object(requests);
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(&spec.id),
            "namespace": config.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": SANDBOX_UID,
                "runAsGroup": SANDBOX_UID,
                "fsGroup": SANDBOX_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": CONTAINER,
                "image": config.image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["sandbox", "--harness", spec.harness.as_str()],
                "workingDir": "/home/agent",
                "stdin": true,
                "stdinOnce": false,
                "tty": false,
                "env": env(spec, config),
                "resources": resources,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": SANDBOX_UID,
                    "runAsGroup": SANDBOX_UID,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [
                    {"name": "prompts", "mountPath": PROMPTS_DIR, "readOnly": true},
                    {"name": "proxy-ca", "mountPath": CA_DIR, "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "prompts", "secret": {"secretName": prompt_secret_name(&spec.id)}},
                {"name": "proxy-ca", "secret": {
                    "secretName": config.ca_secret,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }},
            ],
        },
    });
    if let Some(runtime_class) = &config.runtime_class {
        pod["spec"]["runtimeClassName"] = runtime_class.clone().into();
    }
    serde_json::from_value(pod)
}

/// Builds the Secret holding `spec.prompt_files`, labelled like its pod.
pub fn prompt_secret(
    spec: &SandboxSpec,
    config: &KubernetesConfig,
) -> Result<Secret, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": prompt_secret_name(&spec.id),
            "namespace": config.namespace,
            "labels": {
                MANAGED_LABEL: "true",
                SANDBOX_ID_LABEL: spec.id.as_str(),
                "app.kubernetes.io/part-of": "centaur",
            },
        },
        "type": "Opaque",
        "stringData": spec.prompt_files,
    }))
}

/// The container env: the caller's (placeholders, API URL, token), then the egress
/// settings shared with the local backend ([`egress_env`]: proxy, bypass list, the CA
/// mounted at [`CA_FILE`]), the prompts dir and HOME, which the caller cannot override.
fn env(spec: &SandboxSpec, config: &KubernetesConfig) -> Vec<Value> {
    let api_url = spec.env.get("CENTAUR_API_URL").map_or("", String::as_str);
    let mut vars = spec.env.clone();
    vars.extend(egress_env(&config.proxy_url, CA_FILE, api_url));
    vars.insert("CENTAUR_PROMPTS_DIR".into(), PROMPTS_DIR.into());
    vars.insert("HOME".into(), "/home/agent".into());
    vars.into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

#[cfg(test)]
mod tests {
    use centaur_sandbox::egress::{host_of, is_in_cluster};

    #[test]
    fn host_of_strips_scheme_port_and_path() {
        assert_eq!(host_of("http://api.ns.svc:8000/x"), "api.ns.svc");
        assert_eq!(host_of("https://api.example.com"), "api.example.com");
        assert_eq!(host_of(""), "");
    }

    #[test]
    fn only_in_cluster_api_hosts_bypass_the_proxy() {
        assert!(is_in_cluster("centaur-centaur-api.centaur-system.svc"));
        assert!(is_in_cluster("api.ns.svc.cluster.local"));
        assert!(is_in_cluster("centaur-api"));
        assert!(!is_in_cluster("abc123.execute-api.us-east-1.amazonaws.com"));
        assert!(!is_in_cluster(""));
    }
}
