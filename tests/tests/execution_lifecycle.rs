//! How executions end besides completing: cancel, silence deadline, a crashed sandbox;
//! and how they start: a lost queue message is re-sent by the sweep, a warm sandbox is
//! claimed when the pool is on.
#![allow(clippy::unwrap_used)]

use centaur_tests::{eventually, on_both_queues, QueueKind, Stack, StackOptions};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn options(queue: QueueKind, env: &[(&str, &str)]) -> StackOptions {
    StackOptions {
        queue,
        extra_env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        ..StackOptions::default()
    }
}

async fn wait_until_running(stack: &Stack, execution_id: &str) {
    stack
        .client()
        .wait_for_harness_event(execution_id, "turn.started", Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
}

async fn cancelling_a_running_turn_interrupts_it_and_ends_it_as_cancelled(queue: QueueKind) {
    let stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();
    let id = client
        .turn("cancel-me", "@sleep 20000\nnever finished")
        .await
        .unwrap();
    wait_until_running(&stack, &id).await;

    let (status, body) = client
        .post(&format!("/agent/executions/{id}/cancel"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "cancel_requested");
    let execution = client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap();

    assert_eq!(
        execution["status"],
        "cancelled",
        "{execution}\n{}",
        stack.logs()
    );
    assert_eq!(execution["terminal_reason"], "cancelled");
    let interrupted = execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_json"]["kind"] == "interrupted");
    assert!(interrupted, "the harness was interrupted: {execution}");
    stack.stop().await.unwrap();
}

async fn a_silent_harness_fails_at_the_silence_deadline_and_its_sandbox_is_stopped(
    queue: QueueKind,
) {
    let stack = Stack::start(options(queue, &[("EXECUTION_SILENCE_TIMEOUT_S", "2")]))
        .await
        .unwrap();
    let client = stack.client();
    let id = client.turn("silent", "@hang 30000\nnever").await.unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap();

    assert_eq!(
        execution["status"],
        "failed_permanent",
        "{execution}\n{}",
        stack.logs()
    );
    assert_eq!(execution["terminal_reason"], "silence_deadline_exceeded");
    let error_text = execution["error_text"].as_str().unwrap();
    assert!(
        error_text.contains("no output") && error_text.contains("2s"),
        "{error_text}"
    );
    stack.stop().await.unwrap();
}

async fn a_sandbox_that_exits_mid_turn_fails_as_sandbox_lost_with_its_exit_code(queue: QueueKind) {
    let stack = Stack::start(StackOptions {
        queue,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();
    let id = client.turn("crashing", "@exit 3").await.unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap();

    assert_eq!(
        execution["status"],
        "failed_permanent",
        "{execution}\n{}",
        stack.logs()
    );
    assert_eq!(execution["terminal_reason"], "sandbox_lost");
    let error_text = execution["error_text"].as_str().unwrap();
    assert!(error_text.contains("exited with code 3"), "{error_text}");
    stack.stop().await.unwrap();
}

async fn a_queued_execution_whose_wake_up_was_lost_is_run_after_the_sweep(queue: QueueKind) {
    let mut options = StackOptions {
        dispatchers: 0,
        ..options(queue, &[("QUEUE_SWEEP_AFTER_S", "1")])
    };
    if queue == QueueKind::Sqs {
        // The API's send fails after the row is committed: it still answers 202.
        options.api_env.insert(
            "SQS_QUEUE_URL".into(),
            "https://sqs.us-east-1.amazonaws.com/000000000000/missing.fifo".into(),
        );
    }
    let mut stack = Stack::start(options).await.unwrap();
    let client = stack.client();
    let id = client.turn("lost-message", "found again").await.unwrap();
    if queue == QueueKind::Postgres {
        let pool = stack.database.pool().await.unwrap();
        let deleted = sqlx::query("DELETE FROM queue_messages")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(deleted.rows_affected(), 1);
    }

    stack.start_dispatcher().await.unwrap();
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
    assert_eq!(execution["result_text"], "found again");
    stack.stop().await.unwrap();
}

async fn with_the_warm_pool_on_a_new_thread_claims_a_warm_sandbox_and_the_pool_refills(
    queue: QueueKind,
) {
    let stack = Stack::start(options(
        queue,
        &[
            ("WARM_POOL_ENABLED", "true"),
            ("WARM_POOL_SIZE", "1"),
            ("WARM_POOL_HARNESS", "echo"),
        ],
    ))
    .await
    .unwrap();
    let client = stack.client();
    fn ready(body: &serde_json::Value) -> u64 {
        body["ready"].as_u64().unwrap_or(0)
    }
    let pool_reads = |wanted: fn(&serde_json::Value) -> bool| {
        let client = client.clone();
        move || {
            let client = client.clone();
            async move {
                let (_, pool) = client.get("/agent/pool").await?;
                Ok(wanted(&pool).then_some(()))
            }
        }
    };
    eventually(
        Duration::from_secs(30),
        "one ready warm sandbox",
        pool_reads(|pool| ready(pool) == 1),
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));

    let id = client.turn("warm-thread", "warm hello").await.unwrap();
    let execution = client
        .wait_terminal(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(execution["status"], "completed", "{execution}");
    assert!(
        execution["sandbox_id"]
            .as_str()
            .unwrap()
            .starts_with("sbx-warm-"),
        "{execution}"
    );

    eventually(
        Duration::from_secs(30),
        "the pool refilled beside the claimed sandbox",
        pool_reads(|pool| ready(pool) == 1 && pool["claimed"] == 1),
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    stack.stop().await.unwrap();
}

on_both_queues!(
    cancelling_a_running_turn_interrupts_it_and_ends_it_as_cancelled,
    a_silent_harness_fails_at_the_silence_deadline_and_its_sandbox_is_stopped,
    a_sandbox_that_exits_mid_turn_fails_as_sandbox_lost_with_its_exit_code,
    a_queued_execution_whose_wake_up_was_lost_is_run_after_the_sweep,
    with_the_warm_pool_on_a_new_thread_claims_a_warm_sandbox_and_the_pool_refills,
);
