//! Preparing turns with a workspace, against local bare repositories (real git, no proxy):
//! the first turn clones onto the thread's branch with an author identity, the harness runs
//! in the checkout, later turns reuse it, a branch the remote already has is continued, the
//! system prompt carries its three parts, and a clone that cannot work ends as
//! `clone <repo>: <git's words>`.

use centaur_harness::{TurnMessage, Workspace};
use sandbox::harnesses::codex::CodexDriver;
use sandbox::harnesses::echo::EchoDriver;
use sandbox::harnesses::{HarnessDriver, Turn};
use sandbox::prepare::Preparation;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("centaur-ws-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A bare repository with one commit on `main` holding `AGENTS.md`, and optionally a
/// second branch `existing` with one more commit.
fn bare_repo(root: &Path, with_branch: Option<&str>) -> PathBuf {
    let seed = root.join("seed");
    std::fs::create_dir_all(&seed).expect("seed");
    git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(seed.join("AGENTS.md"), "REPO-AGENTS-MARK: run the tests\n").expect("file");
    git(&seed, &["add", "AGENTS.md"]);
    git(&seed, &["commit", "-q", "-m", "init"]);
    if let Some(branch) = with_branch {
        git(&seed, &["checkout", "-q", "-b", branch]);
        std::fs::write(seed.join("WIP.md"), "earlier work\n").expect("file");
        git(&seed, &["add", "WIP.md"]);
        git(&seed, &["commit", "-q", "-m", "wip"]);
        git(&seed, &["checkout", "-q", "main"]);
    }
    let bare = root.join("api.git");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            &seed.display().to_string(),
            "api.git",
        ],
    );
    bare
}

fn turn(home: &Path, prompts: Option<&Path>) -> Turn {
    let mut env = BTreeMap::from([("HOME".to_owned(), home.display().to_string())]);
    if let Some(prompts) = prompts {
        env.insert("CENTAUR_PROMPTS_DIR".into(), prompts.display().to_string());
    }
    Turn {
        execution_id: "exe_ws".into(),
        thread_key: "t".into(),
        message: serde_json::from_value::<TurnMessage>(
            serde_json::json!({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
        )
        .expect("message"),
        agent_thread_id: None,
        env,
    }
}

fn workspace(clone_url: &Path, branch: &str) -> Workspace {
    Workspace {
        repo: "acme/api".into(),
        clone_url: clone_url.display().to_string(),
        branch: branch.into(),
    }
}

#[tokio::test]
async fn the_first_turn_clones_onto_a_new_branch_and_later_turns_reuse_the_checkout() {
    let root = TempDir::new("clone");
    let bare = bare_repo(&root.0, None);
    let home = root.0.join("home");
    let prompts = root.0.join("prompts");
    std::fs::create_dir_all(&prompts).expect("prompts");
    std::fs::write(prompts.join("AGENTS_BASE.md"), "BASE-PROMPT-MARK\n").expect("base");
    let preparation = Preparation::default();
    let ws = workspace(&bare, "centaur/th1-1");
    let turn = turn(&home, Some(&prompts));

    let context = preparation
        .prepare(&EchoDriver, &turn, Some(&ws), Some("THREAD-MARK"))
        .await
        .expect("prepared");
    let checkout = home.join("workspace");
    assert_eq!(context.cwd.as_deref(), Some(checkout.as_path()));
    assert_eq!(
        git(&checkout, &["symbolic-ref", "--short", "HEAD"]),
        "centaur/th1-1"
    );
    assert_eq!(git(&checkout, &["config", "user.name"]), "Centaur agent");
    let prompt = context.system_prompt.full().expect("a prompt");
    for part in ["BASE-PROMPT-MARK", "REPO-AGENTS-MARK", "THREAD-MARK"] {
        assert!(prompt.contains(part), "{part} missing from {prompt}");
    }
    assert_eq!(
        git(&checkout, &["status", "--porcelain"]),
        "",
        "preparing leaves the checkout clean"
    );

    // The agent's work survives into the next turn: no second clone.
    std::fs::write(checkout.join("NOTE.md"), "hi\n").expect("note");
    git(&checkout, &["add", "NOTE.md"]);
    git(&checkout, &["commit", "-q", "-m", "note"]);
    let again = preparation
        .prepare(&EchoDriver, &turn, Some(&ws), None)
        .await
        .expect("prepared again");
    assert_eq!(again.cwd.as_deref(), Some(checkout.as_path()));
    assert_eq!(git(&checkout, &["log", "-1", "--format=%s"]), "note");
    assert_eq!(again.system_prompt.instructions, None);

    // It can push its branch.
    git(&checkout, &["push", "-q"]);
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", "centaur/th1-1"]),
        "note"
    );

    // A fresh sandbox on the same thread continues the pushed branch.
    let home2 = root.0.join("home2");
    let continued = Preparation::default()
        .prepare(&EchoDriver, &self::turn(&home2, None), Some(&ws), None)
        .await
        .expect("prepared in a fresh sandbox");
    let checkout2 = continued.cwd.expect("a checkout");
    assert_eq!(git(&checkout2, &["log", "-1", "--format=%s"]), "note");
    assert_eq!(
        git(&checkout2, &["rev-parse", "--abbrev-ref", "@{upstream}"]),
        "origin/centaur/th1-1"
    );
}

#[tokio::test]
async fn a_branch_the_remote_has_is_checked_out() {
    let root = TempDir::new("existing");
    let bare = bare_repo(&root.0, Some("centaur/th2-1"));
    let home = root.0.join("home");
    let context = Preparation::default()
        .prepare(
            &EchoDriver,
            &turn(&home, None),
            Some(&workspace(&bare, "centaur/th2-1")),
            None,
        )
        .await
        .expect("prepared");
    let checkout = context.cwd.expect("checkout");
    assert!(
        checkout.join("WIP.md").exists(),
        "the branch's work is there"
    );
}

#[tokio::test]
async fn a_missing_repository_ends_as_a_clone_failure_naming_the_repo() {
    let root = TempDir::new("missing");
    let home = root.0.join("home");
    let failure = Preparation::default()
        .prepare(
            &EchoDriver,
            &turn(&home, None),
            Some(&workspace(&root.0.join("nope.git"), "centaur/th3-1")),
            None,
        )
        .await
        .expect_err("no such repository");
    assert_eq!(failure.kind, "start_failed");
    assert_eq!(failure.step, "clone acme/api");
    let text = failure.to_string();
    assert!(
        text.starts_with("clone acme/api: ") && text.contains("nope.git"),
        "{text}"
    );
}

#[tokio::test]
async fn without_a_repository_a_cli_harness_runs_in_an_empty_workspace_and_echo_where_it_is() {
    let root = TempDir::new("empty");
    let home = root.0.join("home");
    let preparation = Preparation::default();
    let echo = preparation
        .prepare(&EchoDriver, &turn(&home, None), None, None)
        .await
        .expect("echo");
    assert_eq!(echo.cwd, None);
    assert!(!home.join("workspace").exists());

    // codex: logs in with the placeholder, then runs in an empty $HOME/workspace.
    let codex = CodexDriver::default();
    assert_eq!(codex.model_host(), Some("api.openai.com"));
    let mut codex_turn = turn(&home, None);
    codex_turn
        .env
        .insert("OPENAI_API_KEY".into(), "OPENAI_API_KEY".into());
    codex_turn
        .env
        .insert("PATH".into(), fake_codex(&root.0).display().to_string());
    let context = preparation
        .prepare(&codex, &codex_turn, None, Some("THREAD-MARK"))
        .await
        .expect("codex prepared");
    assert_eq!(context.cwd, Some(home.join("workspace")));
    let auth = std::fs::read_to_string(home.join(".codex/auth.json")).expect("auth.json");
    assert!(
        auth.contains("\"OPENAI_API_KEY\":\"OPENAI_API_KEY\""),
        "{auth}"
    );
    let agents = std::fs::read_to_string(home.join(".codex/AGENTS.md")).expect("AGENTS.md");
    assert!(agents.contains("THREAD-MARK"), "{agents}");
}

/// A stand-in `codex` whose `login --with-api-key` stores the key from stdin the way the
/// real one does (`$CODEX_HOME/auth.json`); the directory to put first on PATH.
fn fake_codex(root: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let script = bin.join("codex");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = login ] || exit 2\nread key\nmkdir -p \"$CODEX_HOME\"\n\
         printf '{\"auth_mode\":\"apikey\",\"OPENAI_API_KEY\":\"%s\"}' \"$key\" > \"$CODEX_HOME/auth.json\"\n",
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = std::env::var("PATH").unwrap_or_default();
    PathBuf::from(format!("{}:{path}", bin.display()))
}
