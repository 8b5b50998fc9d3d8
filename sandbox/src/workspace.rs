//! The thread's repository in this sandbox: cloned once over HTTPS (through the egress
//! proxy, with the `GITHUB_TOKEN` placeholder as the Basic-auth password, which the proxy
//! swaps for the real token) into `$HOME/workspace`, on the thread's branch (checked out if
//! the remote has it, else created), with a git author identity so the agent can commit
//! and push. Later turns reuse the checkout. Every git command runs with no terminal
//! prompt and a time limit, so a refused credential or a silent server ends the turn.

use centaur_harness::Workspace;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long a clone may take unless `CENTAUR_CLONE_TIMEOUT_S` says otherwise.
pub const DEFAULT_CLONE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long any other git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The user name of commits made in a sandbox.
pub const AUTHOR_NAME: &str = "Centaur agent";

/// The email of commits made in a sandbox.
pub const AUTHOR_EMAIL: &str = "centaur-agent@users.noreply.github.com";

/// Lines of git's stderr kept in an error message.
const STDERR_LINES: usize = 4;

/// Why the workspace could not be prepared (the message follows `clone <repo>: `).
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A git command failed; its stderr's last lines.
    #[error("{0}")]
    Git(String),
    /// A git command did not finish in time.
    #[error("git {command} did not finish within {} s", limit.as_secs())]
    Timeout { command: String, limit: Duration },
    /// git could not be started.
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    /// The checkout directory could not be made ready.
    #[error("{}: {err}", path.display())]
    Directory { path: PathBuf, err: std::io::Error },
    /// The branch name cannot be used.
    #[error("invalid branch name {0:?}")]
    BadBranch(String),
}

/// The clone URL with the token placeholder as Basic-auth password:
/// `https://github.com/o/r.git` → `https://x-access-token:GITHUB_TOKEN@github.com/o/r.git`.
/// URLs that are not http(s), that already carry credentials, or a missing token are left
/// as they are.
pub fn authenticated_url(clone_url: &str, token: Option<&str>) -> String {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return clone_url.to_owned();
    };
    for scheme in ["https://", "http://"] {
        if let Some(rest) = clone_url.strip_prefix(scheme) {
            let authority = rest.split('/').next().unwrap_or(rest);
            if authority.contains('@') {
                return clone_url.to_owned();
            }
            return format!("{scheme}x-access-token:{token}@{rest}");
        }
    }
    clone_url.to_owned()
}

/// The host of an http(s) clone URL (`github.com`), for the reachability check.
pub fn clone_host(clone_url: &str) -> Option<String> {
    let rest = clone_url
        .strip_prefix("https://")
        .or_else(|| clone_url.strip_prefix("http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port.split(':').next().unwrap_or(host_port);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// How to get onto the thread's branch in a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchPlan {
    /// Already on it.
    Stay,
    /// A local branch of that name exists: switch to it.
    SwitchLocal,
    /// The remote has it (a replaced sandbox continues the work): track it.
    TrackRemote,
    /// Nobody has it yet: create it from the current HEAD.
    Create,
}

/// What to do, given the current branch and where the thread's branch exists.
pub fn branch_plan(
    current: Option<&str>,
    branch: &str,
    local_exists: bool,
    remote_exists: bool,
) -> BranchPlan {
    if current == Some(branch) {
        BranchPlan::Stay
    } else if local_exists {
        BranchPlan::SwitchLocal
    } else if remote_exists {
        BranchPlan::TrackRemote
    } else {
        BranchPlan::Create
    }
}

/// The git arguments carrying out `plan` for `branch`.
pub fn branch_commands(plan: BranchPlan, branch: &str) -> Vec<Vec<String>> {
    let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let remote = format!("origin/{branch}");
    match plan {
        BranchPlan::Stay => vec![],
        BranchPlan::SwitchLocal => vec![args(&["checkout", branch])],
        BranchPlan::TrackRemote => vec![args(&["checkout", "-b", branch, "--track", &remote])],
        BranchPlan::Create => vec![args(&["checkout", "-b", branch])],
    }
}

fn valid_branch(branch: &str) -> bool {
    !branch.is_empty()
        && !branch.starts_with('-')
        && !branch.contains("..")
        && !branch
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
}

/// Runs git with the sandbox's environment plus no terminal prompts and a stall limit.
#[derive(Debug, Clone)]
pub struct Git {
    env: BTreeMap<String, String>,
    clone_timeout: Duration,
}

impl Git {
    /// git with `env` on top of the process environment.
    pub fn new(env: BTreeMap<String, String>, clone_timeout: Duration) -> Self {
        Self { env, clone_timeout }
    }

    async fn run(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        limit: Duration,
    ) -> Result<String, WorkspaceError> {
        let mut command = tokio::process::Command::new("git");
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
        }
        command
            .args(args)
            .envs(&self.env)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GCM_INTERACTIVE", "never")
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1000")
            .env("GIT_HTTP_LOW_SPEED_TIME", "30")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let name = args.first().copied().unwrap_or_default().to_owned();
        let output = match tokio::time::timeout(limit, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => return Err(WorkspaceError::Spawn(err)),
            Err(_) => {
                return Err(WorkspaceError::Timeout {
                    command: name,
                    limit,
                })
            }
        };
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let lines: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join("; ");
            Err(WorkspaceError::Git(if tail.is_empty() {
                format!("git {name} failed ({})", output.status)
            } else {
                tail
            }))
        }
    }

    async fn succeeds(&self, dir: &Path, args: &[&str]) -> bool {
        self.run(Some(dir), args, GIT_TIMEOUT).await.is_ok()
    }
}

/// What [`Checkout::prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutOutcome {
    /// Cloned the repository now.
    Cloned,
    /// Reused this sandbox's earlier checkout.
    Reused,
}

/// The sandbox's checkout directory and what is prepared in it.
#[derive(Debug)]
pub struct Checkout {
    dir: PathBuf,
    /// `(authenticated clone URL, branch)` of the prepared checkout.
    prepared: Option<(String, String)>,
}

impl Checkout {
    /// A checkout at `dir` (`$HOME/workspace`), nothing prepared yet.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            prepared: None,
        }
    }

    /// The checkout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes sure the directory exists (a turn without a repository runs in it, empty).
    pub fn ensure_dir(&self) -> Result<(), WorkspaceError> {
        std::fs::create_dir_all(&self.dir).map_err(|err| WorkspaceError::Directory {
            path: self.dir.clone(),
            err,
        })
    }

    /// Clones `workspace` (unless this sandbox already did) and checks out its branch.
    /// `token` is the `GITHUB_TOKEN` placeholder.
    pub async fn prepare(
        &mut self,
        workspace: &Workspace,
        token: Option<&str>,
        git: &Git,
    ) -> Result<CheckoutOutcome, WorkspaceError> {
        if !valid_branch(&workspace.branch) {
            return Err(WorkspaceError::BadBranch(workspace.branch.clone()));
        }
        let url = authenticated_url(&workspace.clone_url, token);
        let has_git = self.dir.join(".git").exists();
        let wanted = (url.clone(), workspace.branch.clone());
        if has_git && self.prepared.as_ref() == Some(&wanted) {
            return Ok(CheckoutOutcome::Reused);
        }
        let same_repo = has_git
            && git
                .run(
                    Some(&self.dir),
                    &["remote", "get-url", "origin"],
                    GIT_TIMEOUT,
                )
                .await
                .is_ok_and(|origin| origin == url);
        let how = if same_repo {
            git.run(
                Some(&self.dir),
                &["fetch", "--quiet", "origin"],
                git.clone_timeout,
            )
            .await?;
            CheckoutOutcome::Reused
        } else {
            self.clear()?;
            let dir = self.dir.to_string_lossy().into_owned();
            git.run(
                None,
                &["clone", "--quiet", "--", &url, &dir],
                git.clone_timeout,
            )
            .await?;
            CheckoutOutcome::Cloned
        };
        for (key, value) in [
            ("user.name", AUTHOR_NAME),
            ("user.email", AUTHOR_EMAIL),
            ("push.autoSetupRemote", "true"),
        ] {
            git.run(Some(&self.dir), &["config", key, value], GIT_TIMEOUT)
                .await?;
        }
        self.checkout_branch(&workspace.branch, git).await?;
        self.prepared = Some(wanted);
        Ok(how)
    }

    async fn checkout_branch(&self, branch: &str, git: &Git) -> Result<(), WorkspaceError> {
        let current = git
            .run(
                Some(&self.dir),
                &["symbolic-ref", "--quiet", "--short", "HEAD"],
                GIT_TIMEOUT,
            )
            .await
            .ok();
        let local = format!("refs/heads/{branch}");
        let remote = format!("refs/remotes/origin/{branch}");
        let local_exists = git
            .succeeds(&self.dir, &["rev-parse", "--verify", "--quiet", &local])
            .await;
        let remote_exists = git
            .succeeds(&self.dir, &["rev-parse", "--verify", "--quiet", &remote])
            .await;
        let plan = branch_plan(current.as_deref(), branch, local_exists, remote_exists);
        for args in branch_commands(plan, branch) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            git.run(Some(&self.dir), &args, GIT_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Removes whatever is in the directory (another repository, a partial clone).
    fn clear(&self) -> Result<(), WorkspaceError> {
        let directory_error = |err| WorkspaceError::Directory {
            path: self.dir.clone(),
            err,
        };
        match std::fs::remove_dir_all(&self.dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(directory_error(err))
            }
            _ => {}
        }
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).map_err(directory_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_token_becomes_the_basic_auth_password() {
        assert_eq!(
            authenticated_url("https://github.com/acme/api.git", Some("GITHUB_TOKEN")),
            "https://x-access-token:GITHUB_TOKEN@github.com/acme/api.git"
        );
        assert_eq!(
            authenticated_url("https://u:p@github.com/acme/api.git", Some("GITHUB_TOKEN")),
            "https://u:p@github.com/acme/api.git"
        );
        assert_eq!(
            authenticated_url("https://github.com/acme/api.git", None),
            "https://github.com/acme/api.git"
        );
        assert_eq!(
            authenticated_url("/srv/git/api.git", Some("GITHUB_TOKEN")),
            "/srv/git/api.git"
        );
    }

    #[test]
    fn the_clone_host_is_read_from_the_url() {
        assert_eq!(
            clone_host("https://github.com/acme/api.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            clone_host("https://x:y@GitHub.com:443/a/b").as_deref(),
            Some("github.com")
        );
        assert_eq!(clone_host("file:///srv/api.git"), None);
    }

    #[test]
    fn the_branch_is_kept_switched_to_tracked_or_created() {
        let b = "centaur/abc123-1";
        assert_eq!(branch_plan(Some(b), b, true, true), BranchPlan::Stay);
        assert_eq!(
            branch_plan(Some("main"), b, true, true),
            BranchPlan::SwitchLocal
        );
        assert_eq!(
            branch_plan(Some("main"), b, false, true),
            BranchPlan::TrackRemote
        );
        assert_eq!(branch_plan(None, b, false, false), BranchPlan::Create);
        assert_eq!(
            branch_commands(BranchPlan::TrackRemote, b),
            vec![vec![
                "checkout".to_owned(),
                "-b".into(),
                b.into(),
                "--track".into(),
                format!("origin/{b}")
            ]]
        );
        assert!(branch_commands(BranchPlan::Stay, b).is_empty());
    }

    #[test]
    fn branch_names_that_git_or_a_shell_would_misread_are_refused() {
        assert!(valid_branch("centaur/0af3-2"));
        for bad in ["", "-b", "a..b", "a b", "a:b", "x~1"] {
            assert!(!valid_branch(bad), "{bad}");
        }
    }
}
