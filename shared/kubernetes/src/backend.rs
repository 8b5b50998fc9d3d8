//! [`KubernetesBackend`]: a pod per sandbox, created idempotently, watched, attached to.

use crate::attach::attachment;
use crate::names::{
    pod_name, prompt_secret_name, CONTAINER, HARNESS_LABEL, MANAGED_SELECTOR, SANDBOX_ID_LABEL,
    WARM_LABEL,
};
use crate::pod::{prompt_secret, sandbox_pod};
use crate::status::{pending_reason, sandbox_status, start_failure};
use async_trait::async_trait;
use centaur_config::KubernetesConfig;
use centaur_core::SandboxId;
use centaur_sandbox::{
    Attachment, ManagedSandbox, SandboxBackend, SandboxError, SandboxSpec, SandboxStatus,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{AttachParams, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often a waiter re-checks a pod even without a watch event.
const RECHECK: Duration = Duration::from_secs(2);

/// Runs sandboxes as pods in one namespace.
pub struct KubernetesBackend {
    config: KubernetesConfig,
    pods: Api<Pod>,
    secrets: Api<Secret>,
    /// Managed pods as the watch last reported them.
    store: Store<Pod>,
    /// Woken on every watch event.
    changed: Arc<Notify>,
    watch: JoinHandle<()>,
}

impl Drop for KubernetesBackend {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl KubernetesBackend {
    /// Connects with the in-cluster service account (or `KUBECONFIG` outside a cluster).
    pub async fn connect(config: KubernetesConfig) -> Result<Self, SandboxError> {
        Self::install_crypto_provider();
        let client = Client::try_default()
            .await
            .map_err(|err| SandboxError::Backend(format!("connecting to Kubernetes: {err}")))?;
        Ok(Self::new(client, config))
    }

    /// Picks the TLS crypto provider once per process: the AWS SDK and kube bring two, and
    /// rustls then refuses to guess. Harmless when one is already installed.
    pub fn install_crypto_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    /// A backend over `client`; starts watching managed pods in the namespace.
    pub fn new(client: Client, config: KubernetesConfig) -> Self {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
        let secrets: Api<Secret> = Api::namespaced(client, &config.namespace);
        let (store, writer) = reflector::store();
        let changed = Arc::new(Notify::new());
        let events = reflector::reflector(
            writer,
            watcher(
                pods.clone(),
                watcher::Config::default().labels(MANAGED_SELECTOR),
            )
            .default_backoff(),
        );
        let notify = changed.clone();
        let watch = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                if let Err(err) = event {
                    tracing::warn!(error = %err, "sandbox pod watch failed; retrying");
                }
                notify.notify_waiters();
            }
        });
        Self {
            config,
            pods,
            secrets,
            store,
            changed,
            watch,
        }
    }

    /// The pod: from the watch cache, else read from the API server (None = no such pod).
    async fn pod(&self, id: &SandboxId) -> Result<Option<Pod>, SandboxError> {
        let name = pod_name(id);
        let key = ObjectRef::new(&name).within(&self.config.namespace);
        if let Some(pod) = self.store.get(&key) {
            return Ok(Some((*pod).clone()));
        }
        self.pods
            .get_opt(&name)
            .await
            .map_err(|err| SandboxError::Backend(format!("reading pod {name}: {err}")))
    }

    /// Waits (on watch events) until the pod runs; fails with the reason it cannot.
    async fn wait_running(&self, id: &SandboxId) -> Result<(), SandboxError> {
        let deadline = tokio::time::Instant::now() + self.config.start_timeout;
        loop {
            let changed = self.changed.notified();
            let Some(pod) = self.pod(id).await? else {
                return Err(gone(id, format!("pod {} was deleted", pod_name(id))));
            };
            if let Some(reason) = start_failure(&pod) {
                return Err(SandboxError::StartFailed {
                    id: id.to_string(),
                    reason,
                });
            }
            match sandbox_status(&pod) {
                SandboxStatus::Running => return Ok(()),
                SandboxStatus::Pending => {}
                SandboxStatus::Exited { detail, .. } | SandboxStatus::Gone { detail } => {
                    return Err(gone(id, detail))
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SandboxError::StartFailed {
                    id: id.to_string(),
                    reason: format!(
                        "pod {} did not start within {}s: {}",
                        pod_name(id),
                        self.config.start_timeout.as_secs(),
                        pending_reason(&pod)
                    ),
                });
            }
            let _ = tokio::time::timeout(RECHECK, changed).await;
        }
    }
}

fn gone(id: &SandboxId, detail: String) -> SandboxError {
    SandboxError::Gone {
        id: id.to_string(),
        detail,
    }
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

#[async_trait]
impl SandboxBackend for KubernetesBackend {
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxId, SandboxError> {
        let id = &spec.id;
        let start_failed = |reason: String| SandboxError::StartFailed {
            id: id.to_string(),
            reason,
        };
        let secret = prompt_secret(spec, &self.config)
            .map_err(|err| start_failed(format!("building the prompt secret: {err}")))?;
        let pod = sandbox_pod(spec, &self.config)
            .map_err(|err| start_failed(format!("building the pod: {err}")))?;
        let params = PostParams::default();
        match self.secrets.create(&params, &secret).await {
            Ok(_) => {}
            Err(err) if is_status(&err, 409) => {}
            Err(err) => {
                return Err(start_failed(format!(
                    "creating secret {}: {err}",
                    prompt_secret_name(id)
                )))
            }
        }
        match self.pods.create(&params, &pod).await {
            Ok(_) => {
                tracing::info!(sandbox_id = %id, pod = %pod_name(id), "sandbox pod created");
                Ok(id.clone())
            }
            Err(err) if is_status(&err, 409) => {
                tracing::info!(sandbox_id = %id, "sandbox pod already exists; adopted");
                Ok(id.clone())
            }
            Err(err) => {
                let _ = self
                    .secrets
                    .delete(&prompt_secret_name(id), &DeleteParams::default())
                    .await;
                Err(start_failed(format!(
                    "creating pod {}: {err}",
                    pod_name(id)
                )))
            }
        }
    }

    async fn attach(&self, id: &SandboxId) -> Result<Attachment, SandboxError> {
        self.wait_running(id).await?;
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(false);
        let process = self
            .pods
            .attach(&pod_name(id), &params)
            .await
            .map_err(|err| SandboxError::Io(format!("attaching to pod {}: {err}", pod_name(id))))?;
        attachment(process)
    }

    async fn status(&self, id: &SandboxId) -> Result<SandboxStatus, SandboxError> {
        Ok(match self.pod(id).await? {
            Some(pod) => sandbox_status(&pod),
            None => SandboxStatus::Gone {
                detail: format!("pod {} was deleted", pod_name(id)),
            },
        })
    }

    async fn stop(&self, id: &SandboxId) -> Result<(), SandboxError> {
        let params = DeleteParams::default();
        for (kind, result) in [
            (
                "pod",
                self.pods.delete(&pod_name(id), &params).await.map(|_| ()),
            ),
            (
                "secret",
                self.secrets
                    .delete(&prompt_secret_name(id), &params)
                    .await
                    .map(|_| ()),
            ),
        ] {
            match result {
                Ok(()) => {}
                Err(err) if is_status(&err, 404) => {}
                Err(err) => {
                    return Err(SandboxError::Backend(format!(
                        "deleting the {kind} of sandbox {id}: {err}"
                    )))
                }
            }
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<ManagedSandbox>, SandboxError> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await
            .map_err(|err| SandboxError::Backend(format!("listing sandbox pods: {err}")))?;
        Ok(pods
            .items
            .iter()
            .filter_map(|pod| {
                let labels = pod.metadata.labels.as_ref()?;
                Some(ManagedSandbox {
                    id: SandboxId::from_stored(labels.get(SANDBOX_ID_LABEL)?.clone()),
                    harness: labels.get(HARNESS_LABEL).cloned(),
                    warm: labels.get(WARM_LABEL).is_some_and(|v| v == "true"),
                    status: sandbox_status(pod),
                })
            })
            .collect())
    }

    fn backend_name(&self) -> &'static str {
        "kubernetes"
    }
}
