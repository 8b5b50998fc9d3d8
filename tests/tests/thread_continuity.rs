//! Continuity and start retries through real processes (`api`, `dispatcher`, local
//! `sandbox`es running the echo harness, which answers with everything its turn carries):
//! - a turn in the sandbox that ran the thread's previous turn resumes it (no transcript);
//!   a turn in a sandbox that did not (the old one was killed) carries the thread's
//!   transcript: the earlier questions and answers;
//! - a harness that fails to start (here: the thread's repository cannot be cloned) is
//!   retried once in a fresh sandbox, which carries the transcript; a second failure ends
//!   the execution `sandbox_start_failed` naming the step.
#![allow(clippy::unwrap_used)]

use centaur_sandbox::local::SandboxProcess;
use centaur_tests::binaries::binary;
use centaur_tests::{until, Stack, StackOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TRANSCRIPT_MARK: &str = "[Earlier conversation in this thread]";

/// The process of the local sandbox `sandbox_id`, as its pid file names it.
fn sandbox_process(stack: &Stack, sandbox_id: &str) -> Option<SandboxProcess> {
    SandboxProcess::recorded_in(&stack.work_dir.join("sandboxes").join(sandbox_id))
}

/// Kills the local sandbox `sandbox_id`'s own process (SIGKILL), as a crash would, and
/// waits until it is gone.
async fn kill_local_sandbox(stack: &Stack, sandbox_id: &str) {
    let process = sandbox_process(stack, sandbox_id).unwrap();
    std::process::Command::new("kill")
        .args(["-9", &process.pid.to_string()])
        .status()
        .unwrap();
    until(
        Duration::from_secs(10),
        "the killed sandbox's process is gone",
        || {
            let gone = !process.is_alive();
            async move { gone }
        },
    )
    .await
    .unwrap();
}

/// The local sandbox `sandbox_id` has no live process (it was stopped).
fn assert_process_gone(stack: &Stack, sandbox_id: &str) {
    let Some(process) = sandbox_process(stack, sandbox_id) else {
        return; // its directory was removed with it
    };
    assert!(
        !process.is_alive(),
        "sandbox {sandbox_id} (pid {}) still runs",
        process.pid
    );
}

fn text(execution: &Value, field: &str) -> String {
    execution[field].as_str().unwrap_or_default().to_owned()
}

fn events_of_kind<'a>(execution: &'a Value, kind: &str) -> Vec<&'a Value> {
    execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event_kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_turn_in_a_replaced_sandbox_carries_the_threads_transcript_and_a_resumed_one_does_not() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let thread = "continuity-local";

    let first = stack
        .completed_turn(thread, "alpha: which port does the api use?")
        .await;
    let second = stack
        .completed_turn(thread, "beta: and the dispatcher?")
        .await;
    assert_eq!(first["sandbox_id"], second["sandbox_id"], "same sandbox");
    assert_eq!(
        text(&second, "result_text"),
        "beta: and the dispatcher?",
        "a turn in the sandbox that ran the previous one carries no transcript"
    );

    let old_sandbox = text(&second, "sandbox_id");
    kill_local_sandbox(&stack, &old_sandbox).await;
    let third = stack
        .completed_turn(thread, "gamma: summarise the thread")
        .await;
    assert_ne!(text(&third, "sandbox_id"), old_sandbox, "a new sandbox");
    let starts: Vec<&str> = events_of_kind(&third, "execution_started")
        .iter()
        .map(|event| {
            event["event_json"]["sandbox_id"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        starts,
        [old_sandbox.as_str(), text(&third, "sandbox_id").as_str()],
        "the claim started the turn in the thread's live sandbox; found dead, it was started again in the new one"
    );
    let second_starts = events_of_kind(&second, "execution_started");
    assert_eq!(
        second_starts.len(),
        1,
        "a turn in the live sandbox is started once, by its claim"
    );
    assert_eq!(
        second_starts[0]["event_json"]["sandbox_id"],
        second["sandbox_id"]
    );
    assert_eq!(second_starts[0]["event_json"]["harness"], "echo");
    let answer = text(&third, "result_text");
    assert!(answer.starts_with(TRANSCRIPT_MARK), "{answer}");
    let expected = [
        "User:\n> alpha: which port does the api use?",
        "Agent:\n> alpha: which port does the api use?",
        "User:\n> beta: and the dispatcher?",
        "Agent:\n> beta: and the dispatcher?",
        "gamma: summarise the thread",
    ];
    let positions: Vec<usize> = expected
        .iter()
        .map(|needle| {
            answer
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from the answer:\n{answer}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "oldest to newest, the new message last:\n{answer}"
    );
    assert_eq!(
        answer.matches("gamma").count(),
        1,
        "the new message is not part of its own transcript:\n{answer}"
    );

    // The next turn in the new sandbox resumes it: no transcript again.
    let fourth = stack.completed_turn(thread, "delta").await;
    assert_eq!(fourth["sandbox_id"], third["sandbox_id"]);
    assert_eq!(text(&fourth, "result_text"), "delta");
    stack.stop().await.unwrap();
}

/// A bare repository `acme/api.git` under `root` with one commit.
fn bare_repository(root: &Path) -> PathBuf {
    let git = |dir: &Path, args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(work.join("README.md"), "# api\n").unwrap();
    git(&work, &["add", "README.md"]);
    git(&work, &["commit", "--quiet", "-m", "initial"]);
    let repos = root.join("repos");
    std::fs::create_dir_all(repos.join("acme")).unwrap();
    git(
        root,
        &[
            "clone",
            "--quiet",
            "--bare",
            work.to_str().unwrap(),
            repos.join("acme/api.git").to_str().unwrap(),
        ],
    );
    repos
}

/// A `SANDBOX_COMMAND` that runs the real `sandbox`; only in a start retry's fresh sandbox
/// (`…-r1`) does Git reach the thread's repository (`https://git.invalid/…` is rewritten to
/// the local bare repository by a global Git config), so every first attempt fails at its
/// clone step.
fn sandbox_reaching_git_only_on_retry(root: &Path, repos: &Path) -> PathBuf {
    let gitconfig = root.join("gitconfig");
    std::fs::write(
        &gitconfig,
        format!(
            "[url \"file://{}/\"]\n\
             \tinsteadOf = https://x-access-token:GITHUB_TOKEN@git.invalid/\n\
             \tinsteadOf = https://git.invalid/\n\
             [safe]\n\
             \tdirectory = *\n",
            repos.display()
        ),
    )
    .unwrap();
    let script = root.join("sandbox-wrapper.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \"$PWD $HOME $*\" in\n\
             *-r1*) export GIT_CONFIG_GLOBAL='{}' ;;\n\
             esac\n\
             exec '{}' \"$@\"\n",
            gitconfig.display(),
            binary("sandbox").display()
        ),
    )
    .unwrap();
    make_world_readable(root);
    script
}

/// Local sandboxes may run as an unprivileged user: it must read (and run) the fixtures.
fn make_world_readable(root: &Path) {
    let status = std::process::Command::new("chmod")
        .args(["-R", "a+rX", root.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let script = root.join("sandbox-wrapper.sh");
    if script.exists() {
        let status = std::process::Command::new("chmod")
            .args(["a+rx", script.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn fixture_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!(
        "centaur-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn repo_env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    [("AGENT_REPO", "https://git.invalid/acme/api")]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_harness_that_fails_to_start_is_retried_once_in_a_fresh_sandbox_with_the_transcript() {
    let root = fixture_root("start-retry");
    let repos = bare_repository(&root);
    let wrapper = sandbox_reaching_git_only_on_retry(&root, &repos);
    let stack = Stack::start(StackOptions {
        extra_env: repo_env(&[("SANDBOX_COMMAND", wrapper.to_str().unwrap())]),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let thread = "start-retry";

    // Turn 1: the first sandbox cannot clone; the retry's fresh one can.
    let first = stack
        .completed_turn(thread, "alpha: what does README.md say?")
        .await;
    let first_sandbox = text(&first, "sandbox_id");
    assert!(first_sandbox.ends_with("-r1"), "{first}");
    assert_eq!(
        text(&first, "result_text"),
        "alpha: what does README.md say?"
    );

    // Turn 2 in a new sandbox (the old one killed): it fails to start, and its retry carries
    // the thread's transcript.
    kill_local_sandbox(&stack, &first_sandbox).await;
    let second = stack.completed_turn(thread, "beta: and now?").await;
    let second_sandbox = text(&second, "sandbox_id");
    assert!(second_sandbox.ends_with("-r1"), "{second}");
    assert_ne!(second_sandbox, first_sandbox);
    let answer = text(&second, "result_text");
    assert!(answer.starts_with(TRANSCRIPT_MARK), "{answer}");
    assert!(
        answer.contains("User:\n> alpha: what does README.md say?")
            && answer.contains("Agent:\n> alpha: what does README.md say?")
            && answer.ends_with("beta: and now?"),
        "{answer}"
    );

    // The retry is recorded once, with the first failure naming the step.
    let retries = events_of_kind(&second, "start_retry");
    assert_eq!(retries.len(), 1, "{second}");
    assert_eq!(retries[0]["event_json"]["sandbox_id"], second_sandbox);
    let first_failure = retries[0]["event_json"]["first_failure"].as_str().unwrap();
    assert!(
        first_failure.starts_with("clone https://git.invalid/acme/api: "),
        "{first_failure}"
    );
    // Started three times: by its claim in the thread's live sandbox (found dead), in the
    // new sandbox that failed, and in the retry's.
    let started: Vec<&Value> = events_of_kind(&second, "execution_started");
    assert_eq!(started.len(), 3, "{second}");
    assert_eq!(
        started[0]["event_json"]["sandbox_id"],
        first_sandbox.as_str()
    );
    assert_eq!(
        started[2]["event_json"]["start_retry"]["first_failure"],
        first_failure
    );
    let failed_sandbox = started[1]["event_json"]["sandbox_id"].as_str().unwrap();
    assert_eq!(format!("{failed_sandbox}-r1"), second_sandbox);

    // The sandbox that failed was stopped; the thread's session is the retry's sandbox.
    assert_process_gone(&stack, failed_sandbox);
    let pool = stack.database.pool().await.unwrap();
    let session: (String, String) =
        sqlx::query_as("SELECT sandbox_id, state FROM sandbox_sessions WHERE thread_key = $1")
            .bind(thread)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(session, (second_sandbox.clone(), "live".to_owned()));
    pool.close().await;
    stack.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_harness_that_fails_to_start_twice_fails_the_turn_naming_the_step() {
    let stack = Stack::start(StackOptions {
        extra_env: repo_env(&[]),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();
    let id = client
        .turn("start-fails-twice", "what does README.md say?")
        .await
        .unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(60))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    assert_eq!(execution["status"], "failed_permanent", "{execution}");
    assert_eq!(execution["terminal_reason"], "sandbox_start_failed");
    let error = text(&execution, "error_text");
    assert!(
        error.starts_with("sandbox_start_failed: clone https://git.invalid/acme/api: "),
        "{error}"
    );
    assert_eq!(events_of_kind(&execution, "start_retry").len(), 1);
    let started = events_of_kind(&execution, "execution_started");
    assert_eq!(started.len(), 2, "one retry, no more: {execution}");
    let retry_sandbox = text(&execution, "sandbox_id");
    assert!(retry_sandbox.ends_with("-r1"), "{execution}");

    // Both sandboxes were stopped, and the thread's session ended as `failed`: its next
    // turn starts afresh.
    let failed_first = started[0]["event_json"]["sandbox_id"].as_str().unwrap();
    assert_process_gone(&stack, failed_first);
    assert_process_gone(&stack, &retry_sandbox);
    let pool = stack.database.pool().await.unwrap();
    let session: (String, String) =
        sqlx::query_as("SELECT sandbox_id, state FROM sandbox_sessions WHERE thread_key = $1")
            .bind("start-fails-twice")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(session, (retry_sandbox.clone(), "failed".to_owned()));
    pool.close().await;
    stack.stop().await.unwrap();
}
