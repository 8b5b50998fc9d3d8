//! The Postgres queue against a real Postgres, through the shared conformance suite.

mod support;

use centaur_queue::PostgresQueue;
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
