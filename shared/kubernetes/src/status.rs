//! What a pod's status means for its sandbox, in words an operator can act on.

use crate::names::CONTAINER;
use centaur_sandbox::SandboxStatus;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Waiting reasons that mean the container will not start without an operator.
const FATAL_WAITING: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The sandbox status a pod's current state stands for.
pub fn sandbox_status(pod: &Pod) -> SandboxStatus {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    if pod.metadata.deletion_timestamp.is_some() {
        return SandboxStatus::Gone {
            detail: format!("pod {name} was deleted"),
        };
    }
    let status = pod.status.as_ref();
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == CONTAINER));
    if let Some(detail) = container.and_then(terminated) {
        return detail;
    }
    if let Some(reason) = start_failure(pod) {
        return SandboxStatus::Exited {
            code: None,
            detail: reason,
        };
    }
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") if container.is_some_and(is_running) => SandboxStatus::Running,
        Some("Failed") | Some("Succeeded") => {
            let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
            let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
            SandboxStatus::Exited {
                code: None,
                detail: format!("pod {name} {}: {reason} {message}", phase(pod))
                    .trim()
                    .to_owned(),
            }
        }
        _ => SandboxStatus::Pending,
    }
}

/// Why the pod cannot start, if it cannot (image pull, bad config): `None` while it may.
pub fn start_failure(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let container = status
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    if !FATAL_WAITING.contains(&reason) {
        return None;
    }
    let what = if reason.contains("Image") {
        format!("image pull failed for {}", container.image)
    } else {
        "container could not be created".to_owned()
    };
    Some(format!(
        "{what} ({reason}): {}",
        waiting.message.as_deref().unwrap_or("no message")
    ))
}

/// Why the pod is still pending (unschedulable, pulling), for a start timeout message.
pub fn pending_reason(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let unscheduled = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|all| {
            all.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
        .map(|c| {
            format!(
                "not scheduled ({}): {}",
                c.reason.as_deref().unwrap_or("?"),
                c.message.as_deref().unwrap_or("")
            )
        });
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.state.as_ref()?.waiting.as_ref())
        .map(|w| format!("waiting ({})", w.reason.as_deref().unwrap_or("?")));
    unscheduled
        .or(waiting)
        .unwrap_or_else(|| format!("phase {}", phase(pod)))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown")
}

fn is_running(container: &ContainerStatus) -> bool {
    container
        .state
        .as_ref()
        .is_some_and(|state| state.running.is_some())
}

fn terminated(container: &ContainerStatus) -> Option<SandboxStatus> {
    let terminated = container.state.as_ref()?.terminated.as_ref()?;
    let reason = terminated.reason.as_deref().unwrap_or("Error");
    let detail = match reason {
        "OOMKilled" => format!(
            "OOMKilled: the sandbox container exceeded its memory limit (exit code {})",
            terminated.exit_code
        ),
        _ => format!(
            "container exited with code {} ({reason}){}",
            terminated.exit_code,
            terminated
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
    };
    Some(SandboxStatus::Exited {
        code: Some(terminated.exit_code),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "centaur-sbx-1"},
            "spec": {"containers": [{"name": "sandbox"}]},
            "status": status,
        }))
        .expect("pod")
    }

    fn container(state: serde_json::Value) -> serde_json::Value {
        json!({"containerStatuses": [{
            "name": "sandbox", "image": "centaur-agent:typo", "imageID": "",
            "ready": false, "restartCount": 0, "state": state,
        }]})
    }

    #[test]
    fn a_running_container_is_running() {
        let mut status = container(json!({"running": {}}));
        status["phase"] = "Running".into();
        assert_eq!(sandbox_status(&pod(status)), SandboxStatus::Running);
    }

    #[test]
    fn an_oom_killed_container_says_so() {
        let status = container(json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}));
        match sandbox_status(&pod(status)) {
            SandboxStatus::Exited { code, detail } => {
                assert_eq!(code, Some(137));
                assert!(detail.contains("OOMKilled"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_container_that_exits_reports_its_exit_code_and_reason() {
        let status = container(
            json!({"terminated": {"exitCode": 2, "reason": "Error", "message": "harness crashed"}}),
        );
        assert_eq!(
            sandbox_status(&pod(status)),
            SandboxStatus::Exited {
                code: Some(2),
                detail: "container exited with code 2 (Error): harness crashed".into()
            }
        );
    }

    #[test]
    fn an_image_pull_failure_names_the_image() {
        let status =
            container(json!({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}));
        let reason = start_failure(&pod(status)).expect("fatal");
        assert!(
            reason.contains("image pull failed for centaur-agent:typo"),
            "{reason}"
        );
        assert!(reason.contains("ImagePullBackOff"), "{reason}");
    }

    #[test]
    fn a_container_still_creating_is_pending() {
        let mut status = container(json!({"waiting": {"reason": "ContainerCreating"}}));
        status["phase"] = "Pending".into();
        let pod = pod(status);
        assert_eq!(sandbox_status(&pod), SandboxStatus::Pending);
        assert_eq!(start_failure(&pod), None);
        assert_eq!(pending_reason(&pod), "waiting (ContainerCreating)");
    }

    #[test]
    fn an_evicted_pod_is_exited_with_the_reason() {
        let status = json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"});
        match sandbox_status(&pod(status)) {
            SandboxStatus::Exited { detail, .. } => assert!(detail.contains("Evicted")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_pod_being_deleted_is_gone() {
        let mut pod = pod(json!({"phase": "Running"}));
        pod.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(matches!(sandbox_status(&pod), SandboxStatus::Gone { .. }));
    }
}
