//! The SQS queue against `moto_server` (the real SQS wire protocol), through the same
//! conformance suite as the Postgres queue, plus what only SQS does: dead-letter redrive.

mod support;

use centaur_queue::{Queue, QueueMessage, SqsQueue};
use std::time::Duration;
use support::conformance;
use support::moto::Moto;

async fn queue(moto: &Moto, max_receive_count: u32) -> (SqsQueue, String) {
    let (queue_url, dlq_url) = moto
        .fifo_queue_with_dlq("centaur-test", max_receive_count)
        .await;
    (
        SqsQueue::from_sdk_config(&moto.sdk_config().await, &queue_url),
        dlq_url,
    )
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let moto = Moto::start().await;
            let (queue, _) = queue(&moto, 10).await;
            conformance::$name(&queue).await;
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

#[tokio::test]
async fn a_message_received_too_often_is_redriven_to_the_dead_letter_queue() {
    let moto = Moto::start().await;
    let (queue, dlq_url) = queue(&moto, 2).await;
    let message = QueueMessage {
        execution_id: "exe_poison".into(),
        thread_key: "t".into(),
    };
    queue.send(&message).await.expect("send");
    // Each receive is a long poll that outlasts the previous receive's 1 s visibility.
    for _ in 0..2 {
        let received = queue
            .receive(1, Duration::from_secs(4), Duration::from_secs(1))
            .await
            .expect("receive");
        assert_eq!(received.len(), 1);
    }
    let third = queue
        .receive(1, Duration::from_secs(3), Duration::from_secs(1))
        .await
        .expect("receive");
    assert!(third.is_empty(), "moved to the DLQ after 2 receives");
    let dlq = SqsQueue::from_sdk_config(&moto.sdk_config().await, &dlq_url);
    let dead = dlq
        .receive(1, Duration::from_secs(2), Duration::from_secs(30))
        .await
        .expect("receive DLQ");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message, message);
}

#[tokio::test]
async fn ping_reaches_the_queue_and_fails_for_a_missing_one() {
    let moto = Moto::start().await;
    let (queue, _) = queue(&moto, 5).await;
    queue.ping().await.expect("reachable");
    let missing = SqsQueue::from_sdk_config(
        &moto.sdk_config().await,
        &format!("{}/123456789012/nope.fifo", moto.endpoint),
    );
    assert!(missing.ping().await.is_err());
}
