//! Deterministic object names and the labels Centaur puts on what it creates.

use centaur_core::SandboxId;

/// Every sandbox pod carries this label set to `true`.
pub const MANAGED_LABEL: &str = "centaur.ai/managed";
/// The sandbox id, so a pod maps back to its row.
pub const SANDBOX_ID_LABEL: &str = "centaur.ai/sandbox-id";
/// The harness the pod runs.
pub const HARNESS_LABEL: &str = "centaur.ai/harness";
/// `true` for warm-pool pods created before any thread claimed them.
pub const WARM_LABEL: &str = "centaur.ai/warm";
/// The thread a pod was created for (absent on warm pods).
pub const THREAD_KEY_ANNOTATION: &str = "centaur.ai/thread-key";
/// Label selector of every managed pod.
pub const MANAGED_SELECTOR: &str = "centaur.ai/managed=true";
/// The container running the `sandbox` program.
pub const CONTAINER: &str = "sandbox";

/// The pod of a sandbox: `centaur-<sandbox id>`, a valid DNS-1123 label.
pub fn pod_name(id: &SandboxId) -> String {
    dns_label(&format!("centaur-{}", id.as_str()))
}

/// The Secret holding a sandbox's prompt files: `centaur-<sandbox id>-prompt`.
pub fn prompt_secret_name(id: &SandboxId) -> String {
    dns_label(&format!("centaur-{}-prompt", id.as_str()))
}

/// Lower-cases, replaces anything but `[a-z0-9-]` with `-`, trims to 63 characters.
fn dns_label(raw: &str) -> String {
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_from_the_sandbox_id() {
        let id = SandboxId::from_stored("sbx-0123456789abcdef");
        assert_eq!(pod_name(&id), "centaur-sbx-0123456789abcdef");
        assert_eq!(
            prompt_secret_name(&id),
            "centaur-sbx-0123456789abcdef-prompt"
        );
    }

    #[test]
    fn names_stay_valid_dns_labels_whatever_the_id() {
        let id = SandboxId::from_stored(format!("SBX_{}", "a".repeat(80)));
        let name = pod_name(&id);
        assert!(name.len() <= 63);
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}
