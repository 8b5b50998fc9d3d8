//! Concurrent executes on one thread run one at a time, in the order they were accepted.
#![allow(clippy::unwrap_used)]

use centaur_tests::{on_both_queues, QueueKind, Stack, StackOptions};
use chrono::{DateTime, Utc};
use std::time::Duration;

async fn concurrent_executes_on_one_thread_run_one_at_a_time_in_order(queue: QueueKind) {
    let stack = Stack::start(StackOptions {
        queue,
        dispatchers: 2,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let client = stack.client();
    client.spawn("ordered-thread").await.unwrap();

    let submissions = (0..5).map(|index| {
        let client = client.clone();
        async move {
            client
                .execute_text("ordered-thread", &format!("@sleep 200\nturn {index}"))
                .await
        }
    });
    let results = futures::future::join_all(submissions).await;
    let ids: Vec<String> = results.into_iter().map(Result::unwrap).collect();

    let mut executions = Vec::new();
    for id in &ids {
        let execution = client
            .wait_terminal(id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
        assert_eq!(execution["status"], "completed", "{execution}");
        executions.push(execution);
    }
    let pool = stack.database.pool().await.unwrap();
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT execution_id, started_at, completed_at FROM executions
         WHERE thread_key = 'ordered-thread' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 5);
    for pair in rows.windows(2) {
        let (earlier, _, earlier_done) = &pair[0];
        let (later, later_started, _) = &pair[1];
        assert!(
            later_started >= earlier_done,
            "{later} started at {later_started} before {earlier} finished at {earlier_done}\n{}",
            stack.logs()
        );
    }
    stack.stop().await.unwrap();
}

on_both_queues!(concurrent_executes_on_one_thread_run_one_at_a_time_in_order,);
