//! Crash safety: a dispatcher SIGKILLed mid-turn loses nothing and runs nothing twice.
//! The next dispatcher reclaims the expired lease, re-attaches to the still-running local
//! sandbox, replays the events it missed, and finishes the execution exactly once.
#![allow(clippy::unwrap_used)]

use centaur_sandbox::local::SandboxProcess;
use centaur_tests::{on_both_queues, QueueKind, Stack, StackOptions};
use serde_json::Value;
use std::time::Duration;

async fn wait_for_harness_event(stack: &Stack, execution_id: &str, kind: &str) {
    stack
        .client()
        .wait_for_harness_event(execution_id, kind, Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
}

fn count(events: &[Value], predicate: impl Fn(&Value) -> bool) -> usize {
    events.iter().filter(|event| predicate(event)).count()
}

async fn a_killed_dispatchers_running_turn_is_finished_exactly_once_by_the_next_one(
    queue: QueueKind,
) {
    let mut stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();
    let execution_id = client
        .turn("crash-thread", "@sleep 4000\nsurvive the crash")
        .await
        .unwrap();
    wait_for_harness_event(&stack, &execution_id, "turn.started").await;

    stack.dispatcher(0).sigkill();
    stack.start_dispatcher().await.unwrap();
    let execution = client
        .wait_terminal(&execution_id, Duration::from_secs(60))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));

    assert_eq!(
        execution["status"],
        "completed",
        "{execution}\n{}",
        stack.logs()
    );
    assert_eq!(execution["result_text"], "survive the crash");
    let events = execution["events"].as_array().unwrap();
    let completed_states = count(events, |e| {
        e["event_kind"] == "execution_state" && e["event_json"]["status"] == "completed"
    });
    let turns_started = count(events, |e| {
        e["event_kind"] == "harness_event" && e["event_json"]["type"] == "turn.started"
    });
    let turns_done = count(events, |e| {
        e["event_kind"] == "harness_event" && e["event_json"]["type"] == "turn.done"
    });
    assert_eq!(completed_states, 1, "finished more than once: {events:?}");
    assert_eq!(turns_started, 1, "the turn ran twice: {events:?}");
    assert_eq!(turns_done, 1, "{events:?}");
    let mut seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["event_kind"] == "harness_event")
        .filter_map(|e| e["event_json"]["seq"].as_u64())
        .collect();
    let stored = seqs.len();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        stored,
        "a replayed event was stored twice: {events:?}"
    );
    stack.stop().await.unwrap();
}

async fn a_sandbox_that_dies_with_its_dispatcher_fails_the_turn_as_sandbox_lost(queue: QueueKind) {
    let mut stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();
    let execution_id = client
        .turn("crash-lost", "@sleep 4000\nnever answered")
        .await
        .unwrap();
    wait_for_harness_event(&stack, &execution_id, "turn.started").await;

    stack.dispatcher(0).sigkill();
    let execution = client.execution(&execution_id).await.unwrap();
    let sandbox_id = execution["sandbox_id"].as_str().unwrap().to_owned();
    let sandbox_dir = stack.work_dir.join("sandboxes").join(&sandbox_id);
    let process = SandboxProcess::recorded_in(&sandbox_dir).unwrap();
    std::process::Command::new("kill")
        .args(["-9", &process.pid.to_string()])
        .status()
        .unwrap();
    stack.start_dispatcher().await.unwrap();

    let execution = client
        .wait_terminal(&execution_id, Duration::from_secs(60))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    assert_eq!(execution["status"], "failed_permanent", "{execution}");
    assert_eq!(execution["terminal_reason"], "sandbox_lost");
    assert!(
        execution["error_text"]
            .as_str()
            .unwrap()
            .contains(&sandbox_id),
        "{execution}"
    );
    stack.stop().await.unwrap();
}

async fn the_turn_queued_behind_a_reclaimed_one_starts_as_soon_as_it_ends(queue: QueueKind) {
    let mut stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();
    let first = client
        .turn("crash-next", "@sleep 3000\nfirst")
        .await
        .unwrap();
    wait_for_harness_event(&stack, &first, "turn.started").await;
    let second = client.execute_text("crash-next", "second").await.unwrap();

    stack.dispatcher(0).sigkill();
    stack.start_dispatcher().await.unwrap();
    let first = client
        .wait_terminal(&first, Duration::from_secs(60))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    let second = client
        .wait_terminal(&second, Duration::from_secs(60))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["result_text"], "second");
    let at = |value: &Value| chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
    let waited = at(&second["started_at"]) - at(&first["completed_at"]);
    // Before the dead dispatcher's queue message was adopted, the thread waited for it to
    // time out (QUEUE_VISIBILITY_S, 120 s).
    assert!(
        waited < chrono::Duration::seconds(10),
        "the next turn waited {waited} after the reclaimed one ended\n{}",
        stack.logs()
    );
    stack.stop().await.unwrap();
}

on_both_queues!(
    the_turn_queued_behind_a_reclaimed_one_starts_as_soon_as_it_ends,
    a_killed_dispatchers_running_turn_is_finished_exactly_once_by_the_next_one,
    a_sandbox_that_dies_with_its_dispatcher_fails_the_turn_as_sandbox_lost,
);
