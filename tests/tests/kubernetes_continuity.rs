//! Continuity on the Kubernetes backend (the fake API server over real HTTP, whose fake
//! kubelet runs each pod's command as a real `sandbox` process with the echo harness): a
//! turn in the pod that ran the thread's previous turn carries no transcript; after the pod
//! is deleted, the next turn runs in a new pod and carries the thread's earlier questions
//! and answers.
#![allow(clippy::unwrap_used)]

use centaur_tests::binaries::binary;
use centaur_tests::fake_kube::FakeKube;
use centaur_tests::{until, Stack, StackOptions};
use std::time::Duration;

const NAMESPACE: &str = "centaur-continuity";

async fn start(fake: &FakeKube) -> Stack {
    let kubeconfig = std::env::temp_dir().join(format!(
        "centaur-kubeconfig-continuity-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    fake.write_kubeconfig(&kubeconfig, NAMESPACE).unwrap();
    let extra_env = [
        ("SANDBOX_BACKEND", "kubernetes"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("KUBERNETES_NAMESPACE", NAMESPACE),
        ("SANDBOX_IMAGE", "centaur-agent:test"),
        (
            "SANDBOX_PROXY_URL",
            "http://centaur-centaur-iron-proxy.centaur-continuity.svc:8080",
        ),
        ("SANDBOX_START_TIMEOUT_S", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Stack::start(StackOptions {
        extra_env,
        ..StackOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_its_pod_is_deleted_a_threads_next_turn_carries_its_transcript() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let stack = start(&fake).await;
    let thread = "continuity-k8s";

    let first = stack
        .completed_turn(thread, "alpha: where do pods log?")
        .await;
    let second = stack
        .completed_turn(thread, "beta: and the dispatcher?")
        .await;
    assert_eq!(
        first["sandbox_id"], second["sandbox_id"],
        "the pod is reused"
    );
    assert_eq!(
        second["result_text"], "beta: and the dispatcher?",
        "a turn in the pod that ran the previous one carries no transcript"
    );

    let old_sandbox = second["sandbox_id"].as_str().unwrap().to_owned();
    let pod = format!("centaur-{old_sandbox}");
    assert!(fake.pod(&pod).is_some(), "{:?}", fake.pod_names());
    fake.delete_pod(&pod);
    until(Duration::from_secs(10), "the deleted pod is gone", || {
        let gone = fake.pod(&pod).is_none();
        async move { gone }
    })
    .await
    .unwrap();

    let third = stack.completed_turn(thread, "gamma: summarise").await;
    let new_sandbox = third["sandbox_id"].as_str().unwrap();
    assert_ne!(new_sandbox, old_sandbox, "a new pod");
    assert!(
        fake.pod(&format!("centaur-{new_sandbox}")).is_some(),
        "{:?}",
        fake.pod_names()
    );
    let answer = third["result_text"].as_str().unwrap();
    assert!(
        answer.starts_with("[Earlier conversation in this thread]"),
        "{answer}"
    );
    let expected = [
        "User:\n> alpha: where do pods log?",
        "Agent:\n> alpha: where do pods log?",
        "User:\n> beta: and the dispatcher?",
        "Agent:\n> beta: and the dispatcher?",
        "gamma: summarise",
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

    let fourth = stack.completed_turn(thread, "delta").await;
    assert_eq!(fourth["sandbox_id"], third["sandbox_id"]);
    assert_eq!(fourth["result_text"], "delta", "resumed: no transcript");
    stack.stop().await.unwrap();
}
