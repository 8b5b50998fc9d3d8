//! The Postgres queue against a real Postgres, through the shared conformance suite.

mod support;

use centaur_queue::{PostgresQueue, Queue};
use sqlx::PgPool;
use support::conformance;

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
        async fn $name(pool: PgPool) {
            conformance::$name(&PostgresQueue::new(pool)).await;
        }
    )*};
}

conformance_tests!(
    a_sent_message_is_received_and_deleted,
    an_undeleted_message_is_redelivered_after_its_visibility_timeout,
    extending_visibility_keeps_the_message_hidden,
    a_released_message_comes_back_after_its_delay,
    a_duplicate_send_is_one_message,
    one_thread_is_first_in_first_out_without_blocking_others,
    a_stale_receipt_is_harmless,
);

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_resend_does_not_steal_an_in_flight_message(pool: PgPool) {
    use centaur_queue::{Queue, QueueMessage};
    use std::time::Duration;
    let queue = PostgresQueue::new(pool);
    let message = QueueMessage {
        execution_id: "exe_g".into(),
        thread_key: "t".into(),
    };
    queue.send(&message).await.expect("send");
    let first = queue
        .receive(1, Duration::from_millis(200), Duration::from_secs(60))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    queue.send(&message).await.expect("resend");
    let again = queue
        .receive(1, Duration::from_millis(200), Duration::from_secs(60))
        .await
        .expect("receive");
    assert!(again.is_empty(), "the in-flight message stayed hidden");
}

/// The fetch reads about as many rows with 20,000 messages queued as with 20: it walks the
/// FIFO index and stops after the rows it takes (no sort of the visible queue, no scan of
/// the table), skipping the messages of threads with one in flight.
#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_fetch_walks_the_fifo_index_instead_of_sorting_the_queue(pool: PgPool) {
    sqlx::query(
        "INSERT INTO queue_messages (execution_id, thread_key, created_at)
         SELECT 'exe_' || lpad(to_hex(i), 16, '0'), 't' || (i % 50),
                now() - make_interval(secs => 100000 - i)
         FROM generate_series(1, 20000) i",
    )
    .execute(&pool)
    .await
    .expect("queue");
    sqlx::query(
        "UPDATE queue_messages SET receipt = gen_random_uuid(),
             visible_at = now() + interval '1 minute'
         WHERE execution_id IN (SELECT execution_id FROM queue_messages ORDER BY created_at LIMIT 8)",
    )
    .execute(&pool)
    .await
    .expect("in flight");
    sqlx::query("ANALYZE queue_messages")
        .execute(&pool)
        .await
        .expect("analyze");

    // The plan Postgres keeps for the statement (a generic one: the limit is in the text).
    let mut connection = pool.acquire().await.expect("connection");
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *connection)
        .await
        .expect("generic plans");
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        centaur_queue::postgres::take_visible_sql(8)
    ))
    .bind(120.0_f64)
    .fetch_all(&mut *connection)
    .await
    .expect("explain");
    drop(connection);
    let plan = plan.join("\n");
    assert!(plan.contains("queue_messages_fifo"), "{plan}");
    assert!(
        !plan.contains("Seq Scan"),
        "the fetch reads the queue in index order: {plan}"
    );

    let queue = PostgresQueue::new(pool);
    let taken = queue
        .receive(
            8,
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("receive");
    let threads: std::collections::HashSet<_> =
        taken.iter().map(|d| d.message.thread_key.clone()).collect();
    assert_eq!(taken.len(), 8, "{taken:?}");
    assert_eq!(threads.len(), 8, "one message per thread: {taken:?}");
    assert!(
        taken
            .iter()
            .all(|d| !["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]
                .contains(&d.message.thread_key.as_str())),
        "no message of a thread with one in flight: {taken:?}"
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_fetch_commits_unflushed_without_changing_its_connections_setting(pool: PgPool) {
    use std::time::Duration;
    let mut connection = pool.acquire().await.expect("connection");
    assert_eq!(synchronous_commit(&mut connection).await, "on");
    sqlx::query(centaur_queue::postgres::SEND)
        .bind("exe_f")
        .bind("t")
        .execute(&mut *connection)
        .await
        .expect("send");

    let taken: Vec<(String, String, uuid::Uuid, i32)> =
        sqlx::query_as(&centaur_queue::postgres::take_visible_sql(1))
            .bind(60.0_f64)
            .fetch_all(&mut *connection)
            .await
            .expect("take");

    assert_eq!(taken.len(), 1);
    assert_eq!(
        synchronous_commit(&mut connection).await,
        "on",
        "the fetch turns synchronous commit off for its own transaction only"
    );
    drop(connection);
    let queue = PostgresQueue::new(pool);
    let again = queue
        .receive(1, Duration::ZERO, Duration::from_secs(60))
        .await
        .expect("receive");
    assert!(
        again.is_empty(),
        "the fetched message is in flight: {again:?}"
    );
}

async fn synchronous_commit(connection: &mut sqlx::PgConnection) -> String {
    sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(connection)
        .await
        .expect("show")
}
