//! A turn through real processes: `api` + `dispatcher` + a local `sandbox`, on a fresh
//! database, exactly as the deployment guide's "Verify the deployment" runs it.
#![allow(clippy::unwrap_used)]

use centaur_tests::{on_both_queues, QueueKind, Stack, StackOptions};
use std::time::Duration;

async fn a_turn_runs_from_execute_to_completed_with_its_event_trail(queue: QueueKind) {
    let stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();

    let execution_id = client
        .turn("e2e-smoke", "Reply with exactly PONG.")
        .await
        .unwrap();
    let execution = client
        .wait_terminal(&execution_id, Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));

    assert_eq!(
        execution["status"],
        "completed",
        "{execution}\n{}",
        stack.logs()
    );
    assert_eq!(execution["terminal_reason"], "completed");
    assert_eq!(execution["result_text"], "Reply with exactly PONG.");
    assert_eq!(execution["harness"], "echo");
    assert!(execution["completed_at"].is_string());
    let kinds: Vec<&str> = execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event_kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"execution_state"), "{kinds:?}");
    assert!(kinds.contains(&"execution_started"), "{kinds:?}");
    assert!(kinds.contains(&"harness_event"), "{kinds:?}");
    assert!(kinds.contains(&"execution_summary"), "{kinds:?}");
    let harness_types: Vec<&str> = execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event_kind"] == "harness_event")
        .map(|event| event["event_json"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        harness_types.first(),
        Some(&"turn.started"),
        "{harness_types:?}"
    );
    assert_eq!(
        harness_types.last(),
        Some(&"turn.done"),
        "{harness_types:?}"
    );

    stack.stop().await.unwrap();
}

async fn a_second_turn_on_the_thread_reuses_the_sandbox_and_sees_only_new_messages(
    queue: QueueKind,
) {
    let stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();

    let first = client.turn("e2e-two-turns", "first").await.unwrap();
    let first = client
        .wait_terminal(&first, Duration::from_secs(30))
        .await
        .unwrap();
    let second = client.turn("e2e-two-turns", "second").await.unwrap();
    let second = client
        .wait_terminal(&second, Duration::from_secs(30))
        .await
        .unwrap();

    assert_eq!(first["result_text"], "first", "{}", stack.logs());
    assert_eq!(second["result_text"], "second", "{}", stack.logs());
    assert_eq!(first["sandbox_id"], second["sandbox_id"]);
    stack.stop().await.unwrap();
}

async fn a_harness_failure_ends_the_execution_with_an_error_text_an_operator_can_read(
    queue: QueueKind,
) {
    let stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();

    let execution_id = client
        .turn("e2e-failure", "@fail upstream model returned 401")
        .await
        .unwrap();
    let execution = client
        .wait_terminal(&execution_id, Duration::from_secs(30))
        .await
        .unwrap();

    assert_eq!(execution["status"], "failed_permanent", "{execution}");
    assert_eq!(execution["terminal_reason"], "harness_error");
    let error_text = execution["error_text"].as_str().unwrap();
    assert!(
        error_text.contains("upstream model returned 401"),
        "{error_text}"
    );
    stack.stop().await.unwrap();
}

on_both_queues!(
    a_turn_runs_from_execute_to_completed_with_its_event_trail,
    a_second_turn_on_the_thread_reuses_the_sandbox_and_sees_only_new_messages,
    a_harness_failure_ends_the_execution_with_an_error_text_an_operator_can_read,
);
