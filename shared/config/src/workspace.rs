//! The repositories a thread may work in (`AGENT_REPO`, `AGENT_REPOS_ALLOWED`).

use crate::env::{ConfigError, Env};
use centaur_core::{RepoAllowlist, RepoRef};

/// A thread's repository settings, read by the API (spawn) and the dispatcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceConfig {
    /// `AGENT_REPO` (optional): the repository of threads that name none.
    pub default_repo: Option<RepoRef>,
    /// `AGENT_REPOS_ALLOWED` (comma-separated globs; default: only `AGENT_REPO`; with
    /// neither set, no repository is allowed and threads run in an empty workspace).
    pub repos_allowed: RepoAllowlist,
}

impl WorkspaceConfig {
    /// Reads `AGENT_REPO` and `AGENT_REPOS_ALLOWED`. A malformed value, or an `AGENT_REPO`
    /// that `AGENT_REPOS_ALLOWED` does not allow, is an error naming the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default_repo = env
            .optional("AGENT_REPO")
            .map(|raw| {
                RepoRef::parse(&raw).map_err(|err| ConfigError::Invalid {
                    name: "AGENT_REPO",
                    reason: format!("'{}': {err}", raw.trim()),
                })
            })
            .transpose()?;
        let allowed = env.optional("AGENT_REPOS_ALLOWED");
        let repos_allowed = RepoAllowlist::resolve(default_repo.as_ref(), allowed.as_deref())
            .map_err(|err| ConfigError::Invalid {
                name: "AGENT_REPOS_ALLOWED",
                reason: err.to_string(),
            })?;
        if let Some(repo) = &default_repo {
            if !repos_allowed.allows(repo) {
                return Err(ConfigError::Invalid {
                    name: "AGENT_REPO",
                    reason: format!("'{repo}' is not allowed by AGENT_REPOS_ALLOWED"),
                });
            }
        }
        Ok(Self {
            default_repo,
            repos_allowed,
        })
    }
}

/// Largest accepted `AGENTS_BASE_FILE`.
pub const MAX_AGENTS_BASE_BYTES: u64 = 256 * 1024;

/// Reads the file named by `AGENTS_BASE_FILE`, if set: the deployment's base prompt, used
/// instead of the built-in one. A missing, unreadable, non-UTF-8, empty or over-long
/// (over [`MAX_AGENTS_BASE_BYTES`]) file is an error naming the variable.
pub fn agents_base_prompt(env: &Env) -> Result<Option<String>, ConfigError> {
    let Some(path) = env.optional("AGENTS_BASE_FILE") else {
        return Ok(None);
    };
    let path = path.trim();
    let invalid = |reason: String| ConfigError::Invalid {
        name: "AGENTS_BASE_FILE",
        reason: format!("'{path}': {reason}"),
    };
    let size = std::fs::metadata(path)
        .map_err(|err| invalid(err.to_string()))?
        .len();
    if size > MAX_AGENTS_BASE_BYTES {
        return Err(invalid(format!(
            "{size} bytes is over the {MAX_AGENTS_BASE_BYTES}-byte limit"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|err| invalid(err.to_string()))?;
    if text.trim().is_empty() {
        return Err(invalid(
            "the file is empty; unset AGENTS_BASE_FILE to use the built-in prompt".into(),
        ));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<WorkspaceConfig, ConfigError> {
        WorkspaceConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    fn repo(s: &str) -> RepoRef {
        RepoRef::parse(s).expect("valid repo")
    }

    #[test]
    fn with_neither_variable_no_repository_is_allowed() {
        let config = read(&[]).expect("valid");
        assert_eq!(config.default_repo, None);
        assert!(config.repos_allowed.is_empty());
        assert!(!config.repos_allowed.allows(&repo("acme/api")));
    }

    #[test]
    fn the_default_repo_alone_allows_only_itself() {
        let config = read(&[("AGENT_REPO", "https://github.com/acme/api.git")]).expect("valid");
        assert_eq!(config.default_repo, Some(repo("acme/api")));
        assert!(config.repos_allowed.allows(&repo("acme/api")));
        assert!(!config.repos_allowed.allows(&repo("acme/web")));
    }

    #[test]
    fn an_allowlist_is_a_glob_list() {
        let config = read(&[
            ("AGENT_REPO", "acme/api"),
            (
                "AGENT_REPOS_ALLOWED",
                "acme/*, https://git.example.com/team/*",
            ),
        ])
        .expect("valid");
        assert!(config.repos_allowed.allows(&repo("acme/web")));
        assert!(config
            .repos_allowed
            .allows(&repo("https://git.example.com/team/svc")));
        let only_list = read(&[("AGENT_REPOS_ALLOWED", "acme/*")]).expect("valid");
        assert_eq!(only_list.default_repo, None);
        assert!(only_list.repos_allowed.allows(&repo("acme/web")));
    }

    #[test]
    fn a_malformed_default_repo_names_the_variable() {
        for bad in [
            "git@github.com:acme/api",
            "http://github.com/acme/api",
            "acme",
        ] {
            let err = read(&[("AGENT_REPO", bad)]).expect_err("invalid");
            assert!(err.to_string().contains("AGENT_REPO"), "{err}");
        }
    }

    #[test]
    fn a_malformed_allowlist_names_the_variable() {
        let err = read(&[("AGENT_REPOS_ALLOWED", "acme/[")]).expect_err("invalid");
        assert!(err.to_string().contains("AGENT_REPOS_ALLOWED"), "{err}");
    }

    #[test]
    fn the_base_prompt_file_is_read_when_set() {
        assert_eq!(agents_base_prompt(&Env::from_pairs([])), Ok(None));
        let dir = std::env::temp_dir().join(format!("centaur-agents-base-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("AGENTS_BASE.md");
        std::fs::write(&file, "# Our base prompt\n").expect("write");
        let path = file.to_string_lossy().into_owned();
        let env = Env::from_pairs([("AGENTS_BASE_FILE", path.as_str())]);
        assert_eq!(
            agents_base_prompt(&env),
            Ok(Some("# Our base prompt\n".to_owned()))
        );
        std::fs::write(&file, "  \n").expect("write");
        let err = agents_base_prompt(&env).expect_err("empty");
        assert!(err.to_string().contains("AGENTS_BASE_FILE"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_base_prompt_file_names_the_variable() {
        let env = Env::from_pairs([("AGENTS_BASE_FILE", "/nonexistent/AGENTS_BASE.md")]);
        let err = agents_base_prompt(&env).expect_err("missing");
        assert!(
            err.to_string().contains("AGENTS_BASE_FILE")
                && err.to_string().contains("/nonexistent/AGENTS_BASE.md"),
            "{err}"
        );
    }

    #[test]
    fn a_default_repo_outside_the_allowlist_is_refused() {
        let err = read(&[
            ("AGENT_REPO", "evil/api"),
            ("AGENT_REPOS_ALLOWED", "acme/*"),
        ])
        .expect_err("invalid");
        assert!(err.to_string().contains("AGENT_REPO "), "{err}");
        assert!(err.to_string().contains("evil/api"), "{err}");
    }
}
