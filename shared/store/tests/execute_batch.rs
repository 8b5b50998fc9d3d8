//! Executes written together (`create_and_enqueue_many`, the API's group commit) get the
//! answers they would get alone: each is created, replayed or refused on its own, and the
//! rows each writes are its own thread's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use centaur_core::api::Delivery;
use centaur_core::Harness;
use centaur_store::assignments::WorkspaceChoice;
use centaur_store::audit::Actor;
use centaur_store::executions::{
    create_and_enqueue, create_and_enqueue_many, ExecuteCall, NewExecution,
};
use centaur_store::messages::NewMessage;
use sqlx::PgPool;

const QUEUE: Option<&str> = Some("centaur_queue");

fn one_call(thread: &str, text: &str) -> NewExecution {
    NewExecution {
        thread_key: thread.to_owned(),
        assignment_generation: None,
        execute_id: None,
        delivery: Delivery::dev(),
        metadata: serde_json::json!({}),
        request_hash: format!("hash-{thread}-{text}"),
        first_message: Some(NewMessage::user_text(text, format!("m-{thread}-{text}"))),
        harness: Some(Harness::Echo),
        actor: Actor::local_operator(None),
    }
}

async fn write_together(pool: &PgPool, requests: &[NewExecution]) -> Vec<Result<String, String>> {
    let workspace = WorkspaceChoice::default();
    let calls: Vec<ExecuteCall> = requests
        .iter()
        .map(|request| ExecuteCall {
            request,
            workspace: &workspace,
        })
        .collect();
    create_and_enqueue_many(pool, &calls, Harness::Codex, QUEUE)
        .await
        .into_iter()
        .map(|outcome| match outcome {
            Ok((response, _)) => Ok(response.execution_id),
            Err(err) => Err(format!("{err:?}")),
        })
        .collect()
}

/// A one-call execute on `thread`, written on its own (the thread's first turn).
async fn written_alone(pool: &PgPool, thread: &str) {
    create_and_enqueue(
        pool,
        &one_call(thread, "first"),
        Harness::Codex,
        &WorkspaceChoice::default(),
        QUEUE,
    )
    .await
    .unwrap();
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn executes_on_new_threads_written_together_each_get_their_thread_rows(pool: PgPool) {
    let requests: Vec<NewExecution> = (0..5)
        .map(|i| one_call(&format!("t{i}"), "hello"))
        .collect();
    let answers = write_together(&pool, &requests).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    for (i, answer) in answers.iter().enumerate() {
        let execution_id = answer.as_ref().unwrap();
        let (thread, generation): (String, i64) = sqlx::query_as(
            "SELECT thread_key, assignment_generation FROM executions WHERE execution_id = $1",
        )
        .bind(execution_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((thread.as_str(), generation), (format!("t{i}").as_str(), 1));
        let bound: String =
            sqlx::query_scalar("SELECT delivered_execution_id FROM messages WHERE thread_key = $1")
                .bind(&thread)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(&bound, execution_id);
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT thread_seq FROM execution_events WHERE thread_key = $1 ORDER BY thread_seq",
        )
        .bind(&thread)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            seqs,
            [1, 2],
            "a message event and a queued event per thread"
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT created_at) FROM executions").await,
        1,
        "one transaction wrote them all"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM queue_messages").await, 5);
    assert_eq!(count(&pool, "SELECT count(*) FROM audit_log").await, 5);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM runtime_assignments").await,
        5
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_refused_execute_does_not_hold_back_the_others_of_its_batch(pool: PgPool) {
    written_alone(&pool, "busy").await;
    let mut stale = one_call("busy", "second");
    stale.first_message = None;
    stale.assignment_generation = Some(7);
    let mut unassigned = one_call("nobody", "x");
    unassigned.first_message = None;
    let answers = write_together(
        &pool,
        &[one_call("a", "hi"), stale, unassigned, one_call("b", "hi")],
    )
    .await;
    assert!(answers[0].is_ok() && answers[3].is_ok(), "{answers:?}");
    assert!(
        answers[1].as_ref().unwrap_err().contains("GenerationStale"),
        "{answers:?}"
    );
    assert!(
        answers[2]
            .as_ref()
            .unwrap_err()
            .contains("NoActiveAssignment"),
        "{answers:?}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM executions").await, 3);
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT created_at) FROM executions WHERE thread_key IN ('a', 'b')"
        )
        .await,
        1,
        "the two accepted executes were written by one transaction"
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_keyed_execute_replays_inside_a_batch_and_is_written_once(pool: PgPool) {
    let mut keyed = one_call("k", "once");
    keyed.execute_id = Some("run-1".to_owned());
    let first = write_together(&pool, std::slice::from_ref(&keyed)).await;
    let again = write_together(&pool, &[one_call("other", "hi"), keyed]).await;
    assert_eq!(again[1], first[0]);
    assert!(again[0].is_ok());
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM executions WHERE thread_key = 'k'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_thread_with_nothing_to_run_is_told_so_and_the_rest_of_its_batch_is_written(
    pool: PgPool,
) {
    written_alone(&pool, "done").await;
    let mut nothing_new = one_call("done", "again");
    nothing_new.first_message = None;
    let answers = write_together(&pool, &[one_call("fresh", "hi"), nothing_new]).await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert!(
        matches!(&answers[1], Err(err) if err.contains("NoPendingMessages")),
        "{answers:?}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM executions").await, 2);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn executes_of_one_thread_in_one_call_are_written_one_after_another(pool: PgPool) {
    let answers = write_together(&pool, &[one_call("same", "one"), one_call("same", "two")]).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let carried: Vec<i64> = sqlx::query_scalar(
        "SELECT count(m.id) FROM executions x
         LEFT JOIN messages m ON m.delivered_execution_id = x.execution_id
         WHERE x.thread_key = 'same' GROUP BY x.seq ORDER BY x.seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(carried, [1, 1], "each turn carries its own message");
}
