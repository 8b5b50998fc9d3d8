//! The `centaur` CLI as an operator runs it: the real binary, as a process, against a live
//! stack (`api` + `dispatcher` + local sandboxes running the `echo` harness).
#![allow(clippy::unwrap_used)]

use centaur_tests::binaries::binary;
use centaur_tests::stack::free_port;
use centaur_tests::{eventually, Stack, StackOptions};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;

/// How long one CLI invocation may take (a turn of the echo harness takes about a second).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What one `centaur` invocation did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{self:?}"))
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("line is not JSON ({err}): {line}\n{self:?}"))
            })
            .collect()
    }

    /// Exit `code`, and never a panic or a Rust backtrace.
    fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self
    }
}

/// Runs `centaur args…` against `api_url`, with no key unless `key` is given.
async fn centaur_with(api_url: &str, key: Option<&str>, args: &[&str]) -> Ran {
    let mut command = tokio::process::Command::new(binary("centaur"));
    command
        .args(args)
        .env("CENTAUR_API_URL", api_url)
        .env_remove("CENTAUR_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(key) = key {
        command.env("CENTAUR_API_KEY", key);
    }
    let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("centaur {args:?} did not finish within {CLI_TIMEOUT:?}"))
        .unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn centaur(stack: &Stack, args: &[&str]) -> Ran {
    centaur_with(&stack.api_url, None, args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_turn_runs_streams_and_is_inspected_through_the_cli() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();

    // `run` streams the echo answer and ends with the outcome.
    let ran = centaur(
        &stack,
        &[
            "run",
            "Reply with exactly PONG.",
            "--thread",
            "cli-demo",
            "--harness",
            "echo",
        ],
    )
    .await;
    let ran = match ran.code {
        0 => ran,
        _ => panic!("{ran:#?}\n{}", stack.logs()),
    };
    assert!(ran.stdout.contains("thread cli-demo\n"), "{ran:#?}");
    assert!(
        ran.stdout.contains("\nReply with exactly PONG.\n"),
        "{ran:#?}"
    );
    assert!(ran.stdout.contains("\ncompleted in "), "{ran:#?}");
    let execution_id = ran
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("execution ")?.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(execution_id.starts_with("exe_"), "{ran:#?}");

    // Without --thread, a new thread key is generated and printed.
    let ran = centaur(&stack, &["run", "hello again"]).await.expect(0);
    assert!(
        ran.stdout.starts_with("thread cli-") && ran.stdout.contains("--thread cli-"),
        "{ran:#?}"
    );

    // --json: the execute answer, one event per line, then the execution; all JSON.
    let ran = centaur(
        &stack,
        &["--json", "run", "json please", "--thread", "cli-json"],
    )
    .await
    .expect(0);
    let lines = ran.json_lines();
    assert!(lines[0]["execution_id"].is_string(), "{ran:#?}");
    assert!(
        lines
            .iter()
            .any(|line| line["event_kind"] == "harness_event"
                && line["event_json"]["type"] == "assistant.message"),
        "{ran:#?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "completed", "{ran:#?}");
    assert_eq!(last["result_text"], "json please");

    // executions get: status, timings, result; --json and --events.
    let ran = centaur(&stack, &["executions", "get", &execution_id])
        .await
        .expect(0);
    for expected in [
        "status     completed\n",
        "harness    echo\n",
        "started    ",
        "completed  ",
        "result:\n  Reply with exactly PONG.\n",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:#?}");
    }
    let ran = centaur(&stack, &["executions", "get", &execution_id, "--json"])
        .await
        .expect(0);
    assert_eq!(ran.json()["execution_id"], execution_id.as_str());
    let ran = centaur(&stack, &["executions", "get", &execution_id, "--events"])
        .await
        .expect(0);
    assert!(ran.stdout.contains("· queued\n"), "{ran:#?}");
    assert!(
        ran.stdout.contains("· started echo in sandbox "),
        "{ran:#?}"
    );

    // executions list, watch of a finished execution (replayed).
    let ran = centaur(
        &stack,
        &["executions", "list", "--thread", "cli-demo", "--limit", "5"],
    )
    .await
    .expect(0);
    assert!(ran.stdout.starts_with("EXECUTION"), "{ran:#?}");
    assert!(ran.stdout.contains(&execution_id), "{ran:#?}");
    let ran = centaur(&stack, &["executions", "watch", &execution_id])
        .await
        .expect(0);
    assert!(ran.stdout.contains("completed in "), "{ran:#?}");

    // A failed turn exits 1 and says why.
    let ran = centaur(&stack, &["run", "@fail boom", "--thread", "cli-fail"])
        .await
        .expect(1);
    assert!(ran.stdout.contains("error (harness): boom\n"), "{ran:#?}");
    assert!(ran.stdout.contains("\nfailed in "), "{ran:#?}");
    assert!(ran.stdout.contains("harness_error"), "{ran:#?}");

    // A bad execution id: one clear line, usage exit code.
    for id in ["exe_0123456789abcdef", "not-an-id"] {
        let ran = centaur(&stack, &["executions", "get", id]).await.expect(2);
        assert_eq!(ran.stdout, "", "{ran:#?}");
        assert_eq!(
            ran.stderr,
            format!("error: NOT_FOUND: execution '{id}' not found (HTTP 404)\n")
        );
    }

    // Cancel a running turn; watching it then ends with the cancelled exit code.
    let ran = centaur(
        &stack,
        &[
            "--json",
            "run",
            "--detach",
            "@sleep 60000",
            "--thread",
            "cli-cancel",
        ],
    )
    .await
    .expect(0);
    let sleeping = ran.json_lines()[0]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(30), "the sleeping turn to run", || {
        let (url, id) = (stack.api_url.clone(), sleeping.clone());
        async move {
            let ran = centaur_with(&url, None, &["--json", "executions", "get", &id]).await;
            Ok((ran.code == 0 && ran.json()["status"] == "running").then_some(()))
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    let ran = centaur(&stack, &["executions", "cancel", &sleeping])
        .await
        .expect(0);
    assert!(ran.stdout.starts_with("cancel requested for "), "{ran:#?}");
    let ran = centaur(&stack, &["executions", "watch", &sleeping]).await;
    assert_eq!(ran.code, 3, "{ran:#?}\n{}", stack.logs());
    assert!(ran.stdout.contains("\ncancelled"), "{ran:#?}");

    // threads list and release.
    let ran = centaur(&stack, &["threads", "list"]).await.expect(0);
    assert!(ran.stdout.starts_with("THREAD"), "{ran:#?}");
    for thread in ["cli-demo", "cli-json", "cli-fail", "cli-cancel"] {
        assert!(ran.stdout.contains(thread), "{thread} in {ran:#?}");
    }
    let ran = centaur(&stack, &["threads", "release", "cli-demo"])
        .await
        .expect(0);
    assert_eq!(
        ran.stdout,
        "released thread cli-demo (generation 1); the next turn starts generation 2\n"
    );
    let ran = centaur(&stack, &["threads", "release", "cli-demo"])
        .await
        .expect(0);
    assert!(ran.stdout.contains("nothing to release"), "{ran:#?}");
    let ran = centaur(&stack, &["threads", "list", "--json"])
        .await
        .expect(0);
    let demo = ran.json()["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|thread| thread["thread_key"] == "cli-demo")
        .cloned()
        .unwrap();
    assert_eq!(demo["state"], "released", "{demo}");

    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_pool_and_doctor_through_the_cli() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();

    // keys create shows the key once; list never does.
    let ran = centaur(
        &stack,
        &["keys", "create", "--name", "cli-agent", "--scope", "agent"],
    )
    .await
    .expect(0);
    let key = ran
        .stdout
        .lines()
        .find(|line| line.starts_with("cnt_"))
        .unwrap()
        .to_owned();
    assert!(ran.stdout.contains("not shown again"), "{ran:#?}");
    let ran = centaur(
        &stack,
        &[
            "--json",
            "keys",
            "create",
            "--name",
            "cli-admin",
            "--scope",
            "admin,agent",
        ],
    )
    .await
    .expect(0);
    let created = ran.json();
    assert_eq!(created["scopes"], serde_json::json!(["admin", "agent"]));
    let ran = centaur(&stack, &["keys", "list"]).await.expect(0);
    assert!(
        ran.stdout.contains("cli-agent") && ran.stdout.contains("cli-admin"),
        "{ran:#?}"
    );
    assert!(
        !ran.stdout.contains(&key),
        "the plaintext key is never listed"
    );
    let agent_id = centaur(&stack, &["--json", "keys", "list"])
        .await
        .expect(0)
        .json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "cli-agent")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The agent key works for agent routes, is refused on admin ones; never echoed.
    let api = stack.api_url.as_str();
    let ran = centaur_with(api, Some(&key), &["threads", "list"])
        .await
        .expect(0);
    assert!(!ran.stdout.contains(&key) && !ran.stderr.contains(&key));
    let ran = centaur_with(api, Some(&key), &["keys", "list"])
        .await
        .expect(2);
    assert_eq!(
        ran.stderr,
        "error: API key scope does not permit 'admin' (HTTP 403); this needs a key with the admin scope\n"
    );
    let ran = centaur_with(api, Some(&key), &["doctor"]).await.expect(0);
    assert!(
        ran.stdout.contains("auth: the API key is accepted\n"),
        "{ran:#?}"
    );
    assert!(ran.stdout.contains("tools: not checked: "), "{ran:#?}");
    assert!(!ran.stdout.contains(&key));

    // Revoked: the next request with it is refused.
    let ran = centaur(&stack, &["keys", "revoke", &agent_id])
        .await
        .expect(0);
    assert!(
        ran.stdout
            .starts_with(&format!("revoked API key {agent_id}")),
        "{ran:#?}"
    );
    let ran = centaur_with(api, Some(&key), &["threads", "list"])
        .await
        .expect(2);
    assert!(
        ran.stderr.starts_with("error: Invalid API key (HTTP 401)"),
        "{ran:#?}"
    );
    let ran = centaur_with(api, Some(&key), &["doctor"]).await.expect(1);
    assert!(
        ran.stdout
            .contains("auth: refused (HTTP 401): Invalid API key"),
        "{ran:#?}"
    );
    let ran = centaur(&stack, &["keys", "revoke", "not-a-key-id"])
        .await
        .expect(2);
    assert!(ran.stderr.contains("not found (HTTP 404)"), "{ran:#?}");

    // The audit log names who created and revoked the keys; a bad --since is the API's 422.
    let ran = centaur(
        &stack,
        &["audit", "--principal", "local", "--action", "key_revoke"],
    )
    .await
    .expect(0);
    assert!(
        ran.stdout.contains("key_revoke") && ran.stdout.contains(&agent_id),
        "{ran:#?}"
    );
    let page = centaur(&stack, &["--json", "audit", "--action", "key_create"])
        .await
        .expect(0)
        .json();
    let kinds: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["principal_kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["local_operator", "local_operator"], "{page}");
    let ran = centaur(&stack, &["audit", "--since", "last tuesday"])
        .await
        .expect(2);
    assert!(ran.stderr.contains("since must be"), "{ran:#?}");
    let ran = centaur_with(api, Some(&key), &["audit"]).await.expect(2);
    assert!(ran.stderr.contains("HTTP 401"), "{ran:#?}");

    // The warm pool (disabled in the test stack) and doctor as the local operator.
    let ran = centaur(&stack, &["pool"]).await.expect(0);
    assert!(ran.stdout.starts_with("warm pool: "), "{ran:#?}");
    centaur(&stack, &["pool", "--json"]).await.expect(0).json();
    let ran = centaur(&stack, &["doctor"]).await.expect(0);
    for expected in [
        "api: reachable at ",
        "auth: local operator",
        "database: ready\n",
        "queue: ready\n",
        "echo: ready (built into the sandbox, no credential needed, the default harness)\n",
        "codex: not enabled: OPENAI_API_KEY is not bound in iron-proxy",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:#?}");
    }
    assert!(ran.stdout.ends_with("\nready\n"), "{ran:#?}");
    let report = centaur(&stack, &["doctor", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(report["ready"], true);

    stack.stop().await.unwrap();
}

#[tokio::test]
async fn help_bad_input_and_an_unreachable_api_get_clear_answers() {
    let api = format!("http://127.0.0.1:{}", free_port().unwrap());
    for args in [
        &["--help"][..],
        &["run", "--help"][..],
        &["executions", "watch", "--help"][..],
        &["keys", "create", "--help"][..],
        &["doctor", "--help"][..],
    ] {
        let ran = centaur_with(&api, None, args).await.expect(0);
        assert!(
            ran.stdout.contains("Examples:\n  centaur "),
            "{args:?}: {ran:#?}"
        );
    }
    let ran = centaur_with(&api, None, &["--help"]).await.expect(0);
    assert!(ran.stdout.contains("Exit codes:"), "{ran:#?}");

    // Bad flags and arguments: clap's or our message, exit 2, no request sent.
    for (args, says) in [
        (&["executions", "list"][..], "--thread"),
        (
            &["executions", "list", "--thread", "t", "--limit", "0"][..],
            "0 is not in 1..=100",
        ),
        (&["run", "   "][..], "the message must not be empty"),
        (&["run", "hi", "--thread", "a/b"][..], "--thread 'a/b'"),
        (&["keys", "create", "--name", "x"][..], "--scope"),
        (
            &["--api-url", "localhost:8000", "threads", "list"][..],
            "http:// or https://",
        ),
        (&["nonsense"][..], "unrecognized subcommand"),
    ] {
        let ran = centaur_with(&api, None, args).await.expect(2);
        assert!(ran.stderr.contains(says), "{args:?}: {ran:#?}");
    }

    // Nothing listens: exit 4, one line saying so.
    let ran = centaur_with(&api, None, &["threads", "list"])
        .await
        .expect(4);
    assert!(
        ran.stderr
            .starts_with(&format!("error: cannot reach the API at {api}: ")),
        "{ran:#?}"
    );
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:#?}");
    let ran = centaur_with(&api, None, &["run", "hello"]).await.expect(4);
    assert!(ran.stderr.contains("cannot reach the API"), "{ran:#?}");
    let ran = centaur_with(&api, None, &["doctor"]).await.expect(4);
    assert!(ran.stdout.starts_with("api: unreachable: "), "{ran:#?}");
}
