//! The Kubernetes sandbox backend (`SANDBOX_BACKEND=kubernetes`): one pod per sandbox with
//! the labels, security context, volumes and env of execution.md; I/O over `pods/attach`;
//! status from a watch of managed pods; idempotent create (deterministic names, 409 =
//! adopt); stop deletes the pod and its prompt Secret. No real secret ever enters a pod.

mod attach;
pub mod backend;
pub mod names;
pub mod pod;
pub mod status;

pub use backend::KubernetesBackend;
