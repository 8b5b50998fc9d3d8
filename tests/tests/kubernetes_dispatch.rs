//! The dispatcher with `SANDBOX_BACKEND=kubernetes` against the fake API server (real HTTP;
//! no real API server can run here): a turn runs in a pod, the warm pool is kept in pods,
//! a pod that dies or disappears mid-turn fails the execution with an error an operator can
//! act on, and no real secret the control plane holds reaches any object it creates.
#![allow(clippy::unwrap_used)]

use centaur_tests::binaries::binary;
use centaur_tests::fake_kube::FakeKube;
use centaur_tests::{eventually, Stack, StackOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const NAMESPACE: &str = "centaur-test";

/// Real-looking secrets the control plane's processes hold; none may reach a pod.
const SECRETS: [(&str, &str); 5] = [
    ("SLACK_BOT_TOKEN", "xoxb-1111-2222-real-slack-bot-token"),
    ("SLACK_SIGNING_SECRET", "real-slack-signing-secret-8f9e7d6c"),
    (
        "IRON_MANAGEMENT_API_KEY",
        "real-iron-management-key-5a4b3c2d1e",
    ),
    ("OPENAI_API_KEY", "sk-proj-real-openai-key-do-not-leak-0042"),
    ("OP_CONNECT_TOKEN", "real-1password-connect-token-77aa"),
];

async fn start(fake: &FakeKube, image: &str, extra: &[(&str, &str)]) -> Stack {
    let kubeconfig = std::env::temp_dir().join(format!(
        "centaur-kubeconfig-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    fake.write_kubeconfig(&kubeconfig, NAMESPACE).unwrap();
    let mut env: BTreeMap<String, String> = [
        ("SANDBOX_BACKEND", "kubernetes"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("KUBERNETES_NAMESPACE", NAMESPACE),
        ("SANDBOX_IMAGE", image),
        (
            "SANDBOX_PROXY_URL",
            "http://centaur-centaur-iron-proxy.centaur-test.svc:8080",
        ),
        ("SANDBOX_START_TIMEOUT_S", "20"),
    ]
    .into_iter()
    .chain(SECRETS)
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("EXECUTION_SILENCE_TIMEOUT_S".into(), "60".into());
    Stack::start(StackOptions {
        extra_env: env,
        ..StackOptions::default()
    })
    .await
    .unwrap()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

async fn wait_for_pod_running(fake: &FakeKube, stack: &Stack) -> String {
    eventually(Duration::from_secs(30), "a running sandbox pod", || async {
        Ok(fake.pod_names().into_iter().find(|name| {
            fake.pod(name)
                .is_some_and(|pod| pod["status"]["phase"] == "Running")
        }))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()))
}

/// Waits until the execution's turn has started inside its pod.
async fn wait_for_turn_started(stack: &Stack, execution_id: &str) {
    stack
        .client()
        .wait_for_harness_event(execution_id, "turn.started", Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
}

async fn failed_turn_error(
    fake: &FakeKube,
    stack: &Stack,
    kill: impl Fn(&FakeKube, &str),
) -> Value {
    let client = stack.client();
    let id = client.turn("k8s-dies", "@hang 60000").await.unwrap();
    let pod = wait_for_pod_running(fake, stack).await;
    wait_for_turn_started(stack, &id).await;
    kill(fake, &pod);
    client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_turn_runs_in_a_sandbox_pod_and_completes() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let stack = start(&fake, "centaur-agent:test", &[]).await;
    let client = stack.client();
    let id = client.turn("k8s-thread", "hello from a pod").await.unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        execution["status"],
        "completed",
        "{execution}\n{}",
        stack.logs()
    );
    assert_eq!(execution["result_text"], "hello from a pod");
    let pod_name = format!("centaur-{}", execution["sandbox_id"].as_str().unwrap());
    let pod = fake
        .pod(&pod_name)
        .expect("the session pod stays for the next turn");
    assert_eq!(
        pod["metadata"]["annotations"]["centaur.ai/thread-key"],
        "k8s-thread"
    );

    let second = client.turn("k8s-thread", "second turn").await.unwrap();
    let second = client
        .wait_terminal(&second, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(
        second["sandbox_id"], execution["sandbox_id"],
        "the pod is reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_deleted_mid_turn_fails_the_execution_saying_it_was_deleted() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let stack = start(&fake, "centaur-agent:test", &[]).await;
    let execution = failed_turn_error(&fake, &stack, |fake, pod| fake.delete_pod(pod)).await;
    assert_eq!(execution["status"], "failed_permanent", "{execution}");
    assert_eq!(execution["terminal_reason"], "sandbox_lost");
    let error = execution["error_text"].as_str().unwrap();
    assert!(error.contains("was deleted"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_killed_pod_fails_the_execution_naming_oomkilled() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let stack = start(&fake, "centaur-agent:test", &[]).await;
    let execution = failed_turn_error(&fake, &stack, |fake, pod| fake.oom_kill(pod)).await;
    assert_eq!(execution["status"], "failed_permanent", "{execution}");
    let error = execution["error_text"].as_str().unwrap();
    assert!(
        error.contains("OOMKilled") && error.contains("137"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_pulled_fails_the_start_naming_the_image() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let stack = start(&fake, "registry.example/centaur-agent:missing", &[]).await;
    let client = stack.client();
    let id = client.turn("k8s-pull", "hello").await.unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(execution["status"], "failed_permanent", "{execution}");
    assert_eq!(execution["terminal_reason"], "sandbox_start_failed");
    let error = execution["error_text"].as_str().unwrap();
    assert!(
        error.contains("image pull failed for registry.example/centaur-agent:missing"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_warm_pool_is_kept_in_pods_and_a_new_thread_claims_one() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let stack = start(
        &fake,
        "centaur-agent:test",
        &[
            ("WARM_POOL_ENABLED", "true"),
            ("WARM_POOL_SIZE", "2"),
            ("WARM_POOL_HARNESS", "echo"),
        ],
    )
    .await;
    let client = stack.client();
    let warm_pods = || -> Vec<String> {
        fake.pod_names()
            .into_iter()
            .filter(|name| {
                fake.pod(name)
                    .is_some_and(|p| p["metadata"]["labels"]["centaur.ai/warm"] == "true")
            })
            .collect()
    };
    // The pool's rows and the API server's pods agree once the pool is filled.
    eventually(Duration::from_secs(30), "two ready warm pods", || async {
        let (_, pool) = client.get("/agent/pool").await?;
        Ok((pool["ready"].as_u64() == Some(2) && warm_pods().len() == 2).then_some(()))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{:?}\n{}", fake.pod_names(), stack.logs()));
    let warm_pods = warm_pods();

    let id = client.turn("k8s-warm", "warm hello").await.unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        execution["status"],
        "completed",
        "{execution}\n{}",
        stack.logs()
    );
    let used = format!("centaur-{}", execution["sandbox_id"].as_str().unwrap());
    assert!(warm_pods.contains(&used), "{used} not one of {warm_pods:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_real_secret_reaches_any_object_the_dispatcher_creates_or_any_log() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let stack = start(
        &fake,
        "centaur-agent:test",
        &[
            ("WARM_POOL_ENABLED", "true"),
            ("WARM_POOL_SIZE", "1"),
            ("WARM_POOL_HARNESS", "echo"),
        ],
    )
    .await;
    let client = stack.client();
    for thread in ["secret-scan-1", "secret-scan-2"] {
        let id = client.turn(thread, "print your environment").await.unwrap();
        let execution = client
            .wait_terminal(&id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(execution["status"], "completed", "{execution}");
        let trail = execution.to_string();
        for (name, value) in SECRETS {
            assert!(
                !trail.contains(value),
                "{name} leaked into an execution's events"
            );
        }
    }
    let objects = serde_json::to_string(&fake.created_objects()).unwrap();
    assert!(
        objects.contains("OPENAI_API_KEY"),
        "the placeholder is there"
    );
    let signing_key = centaur_tests::stack::TEST_SIGNING_KEY;
    let slackbot_key = centaur_tests::stack::TEST_SLACKBOT_KEY;
    let database_url = stack.database.url.clone();
    let control_plane = [
        ("SANDBOX_SIGNING_KEY", signing_key),
        ("SLACKBOT_API_KEY", slackbot_key),
        ("DATABASE_URL", &database_url),
    ];
    for (name, value) in SECRETS.iter().copied().chain(control_plane) {
        assert!(
            !objects.contains(value),
            "{name} reached a Kubernetes object"
        );
    }
    let logs = stack.logs();
    for (name, value) in SECRETS.iter().copied().chain(control_plane) {
        assert!(!logs.contains(value), "{name} reached a log line");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_dispatchers_pod_turn_is_reattached_and_finished_exactly_once() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let mut stack = start(&fake, "centaur-agent:test", &[]).await;
    let client = stack.client();
    let id = client
        .turn("k8s-crash", "@sleep 4000\nsurvive in a pod")
        .await
        .unwrap();
    wait_for_pod_running(&fake, &stack).await;
    wait_for_turn_started(&stack, &id).await;
    stack.dispatcher(0).sigkill();
    stack.start_dispatcher().await.unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        execution["status"],
        "completed",
        "{execution}\n{}",
        stack.logs()
    );
    assert_eq!(execution["result_text"], "survive in a pod");
    let events = execution["events"].as_array().unwrap();
    let count = |kind: &str| {
        events
            .iter()
            .filter(|e| e["event_kind"] == "harness_event" && e["event_json"]["type"] == kind)
            .count()
    };
    assert_eq!(
        (count("turn.started"), count("turn.done")),
        (1, 1),
        "{events:?}"
    );
    let attaches = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("ATTACH"))
        .count();
    assert!(
        attaches >= 2,
        "the second dispatcher re-attached: {:?}",
        fake.requests()
    );
}
