//! Everything a turn needs before its harness runs, in order: the model host is reachable
//! through the egress proxy, the thread's repository is checked out (once per sandbox),
//! the system prompt is assembled, and the harness is started up. The first step that
//! fails ends the turn as a [`StartFailure`] (`<step>: <cause>`), within bounded time.

use crate::egress::EgressProxy;
use crate::harnesses::{HarnessDriver, StartFailure, Turn, TurnContext};
use crate::prompt::SystemPrompt;
use crate::workspace::{self, Checkout, CheckoutOutcome, Git};
use centaur_harness::Workspace;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Mutex;

/// The checkout directory under `$HOME`.
pub const WORKSPACE_DIR: &str = "workspace";

/// What the sandbox keeps between turns: its checkout.
#[derive(Default)]
pub struct Preparation {
    checkout: Mutex<Option<Checkout>>,
}

/// The step name of a reachability check.
fn reach_step(host: &str, proxy: &EgressProxy) -> String {
    format!("reach {host} through the egress proxy {}", proxy.url)
}

fn clone_timeout(turn: &Turn) -> Duration {
    turn.env_var("CENTAUR_CLONE_TIMEOUT_S")
        .and_then(|s| s.trim().parse().ok())
        .map_or(workspace::DEFAULT_CLONE_TIMEOUT, Duration::from_secs)
}

impl Preparation {
    /// Prepares `turn` for `driver`: its working directory and system prompt, and the
    /// harness's start-up. `workspace` and `instructions` come from the turn line.
    pub async fn prepare(
        &self,
        driver: &dyn HarnessDriver,
        turn: &Turn,
        workspace: Option<&Workspace>,
        instructions: Option<&str>,
    ) -> Result<TurnContext, StartFailure> {
        let proxy = EgressProxy::from_env(|name| turn.env_var(name));
        if let (Some(proxy), Some(host)) = (&proxy, driver.model_host()) {
            if !proxy.bypasses(host) {
                proxy
                    .check(host)
                    .await
                    .map_err(|err| StartFailure::new(reach_step(host, proxy), err))?;
            }
        }
        let cwd = if workspace.is_some() || driver.cli_program().is_some() {
            self.checkout(turn, workspace, proxy.as_ref()).await?
        } else {
            None
        };
        let prompts_dir = turn.env_var("CENTAUR_PROMPTS_DIR").map(PathBuf::from);
        let system_prompt =
            SystemPrompt::load(prompts_dir.as_deref(), cwd.as_deref(), instructions);
        let context = TurnContext { cwd, system_prompt };
        driver.start_up(turn, &context).await?;
        Ok(context)
    }

    /// The directory the harness runs in: the repository's checkout, or an empty
    /// `$HOME/workspace` when the thread names no repository (for a harness with a CLI:
    /// `echo` without a repository stays where the sandbox started).
    async fn checkout(
        &self,
        turn: &Turn,
        workspace: Option<&Workspace>,
        proxy: Option<&EgressProxy>,
    ) -> Result<Option<PathBuf>, StartFailure> {
        let Some(home) = turn.home() else {
            return match workspace {
                Some(ws) => Err(StartFailure::new(
                    format!("clone {}", ws.repo),
                    "HOME is not set in the sandbox",
                )),
                None => Ok(None),
            };
        };
        let mut guard = self.checkout.lock().await;
        let checkout = guard.get_or_insert_with(|| Checkout::new(home.join(WORKSPACE_DIR)));
        let Some(ws) = workspace else {
            return match checkout.ensure_dir() {
                Ok(()) => Ok(Some(checkout.dir().to_owned())),
                Err(err) => {
                    tracing::warn!(%err, "no workspace directory; the harness runs where the sandbox started");
                    Ok(None)
                }
            };
        };
        let step = format!("clone {}", ws.repo);
        if let (Some(proxy), Some(host)) = (proxy, workspace::clone_host(&ws.clone_url)) {
            if !proxy.bypasses(&host) {
                proxy.check(&host).await.map_err(|err| {
                    StartFailure::new(step.clone(), format!("{}: {err}", reach_step(&host, proxy)))
                })?;
            }
        }
        let git = Git::new(turn.env.clone(), clone_timeout(turn));
        let token = turn.env_var("GITHUB_TOKEN");
        let how = checkout
            .prepare(ws, token.as_deref(), &git)
            .await
            .map_err(|err| StartFailure::new(step, err))?;
        match how {
            CheckoutOutcome::Cloned => {
                tracing::info!(repo = %ws.repo, branch = %ws.branch, "cloned the workspace")
            }
            CheckoutOutcome::Reused => {
                tracing::debug!(repo = %ws.repo, "reusing the workspace checkout")
            }
        }
        Ok(Some(checkout.dir().to_owned()))
    }
}
