//! The queue conformance suite: call each function with a fresh, empty queue.

use centaur_queue::{Queue, QueueMessage};
use std::time::Duration;

const NO_WAIT: Duration = Duration::from_millis(0);
const SHORT_WAIT: Duration = Duration::from_millis(200);
const LONG_VISIBILITY: Duration = Duration::from_secs(60);
/// A long poll that outlasts a 1 s visibility: it answers when the message is back.
const COMES_BACK_WAIT: Duration = Duration::from_secs(4);

fn message(execution: &str, thread: &str) -> QueueMessage {
    QueueMessage {
        execution_id: execution.to_owned(),
        thread_key: thread.to_owned(),
    }
}

async fn receive_all(queue: &dyn Queue, wait: Duration, visibility: Duration) -> Vec<QueueMessage> {
    queue
        .receive(10, wait, visibility)
        .await
        .expect("receive")
        .into_iter()
        .map(|delivery| delivery.message)
        .collect()
}

/// A sent message is received once, and gone after delete.
pub async fn a_sent_message_is_received_and_deleted(queue: &dyn Queue) {
    queue.send(&message("exe_a", "t1")).await.expect("send");
    let deliveries = queue
        .receive(10, SHORT_WAIT, LONG_VISIBILITY)
        .await
        .expect("receive");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].message, message("exe_a", "t1"));
    assert_eq!(deliveries[0].receive_count, 1);
    queue.delete(&deliveries[0].receipt).await.expect("delete");
    assert!(receive_all(queue, SHORT_WAIT, LONG_VISIBILITY)
        .await
        .is_empty());
}

/// A received message is invisible until its visibility runs out, then comes back.
pub async fn an_undeleted_message_is_redelivered_after_its_visibility_timeout(queue: &dyn Queue) {
    queue.send(&message("exe_b", "t1")).await.expect("send");
    let first = queue
        .receive(10, SHORT_WAIT, Duration::from_secs(1))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    assert!(receive_all(queue, NO_WAIT, LONG_VISIBILITY)
        .await
        .is_empty());
    // A long poll: it answers as soon as the visibility runs out.
    let again = queue
        .receive(10, COMES_BACK_WAIT, LONG_VISIBILITY)
        .await
        .expect("receive");
    assert_eq!(again.len(), 1, "redelivered after the consumer went away");
    assert_eq!(again[0].receive_count, 2);
}

/// Extending the visibility keeps a running execution's message hidden.
pub async fn extending_visibility_keeps_the_message_hidden(queue: &dyn Queue) {
    queue.send(&message("exe_c", "t1")).await.expect("send");
    let first = queue
        .receive(10, SHORT_WAIT, Duration::from_secs(1))
        .await
        .expect("receive");
    queue
        .extend(&first[0].receipt, LONG_VISIBILITY)
        .await
        .expect("extend");
    // A long poll past the first visibility (1 s) finds nothing.
    assert!(receive_all(queue, Duration::from_secs(2), LONG_VISIBILITY)
        .await
        .is_empty());
}

/// A released message comes back after its delay.
pub async fn a_released_message_comes_back_after_its_delay(queue: &dyn Queue) {
    queue.send(&message("exe_d", "t1")).await.expect("send");
    let first = queue
        .receive(10, SHORT_WAIT, LONG_VISIBILITY)
        .await
        .expect("receive");
    queue
        .release(&first[0].receipt, Duration::from_secs(1))
        .await
        .expect("release");
    assert!(receive_all(queue, NO_WAIT, LONG_VISIBILITY)
        .await
        .is_empty());
    let again = receive_all(queue, Duration::from_secs(3), LONG_VISIBILITY).await;
    assert_eq!(again, vec![message("exe_d", "t1")]);
}

/// Sending the same execution twice yields one message.
pub async fn a_duplicate_send_is_one_message(queue: &dyn Queue) {
    queue.send(&message("exe_e", "t1")).await.expect("send");
    queue
        .send(&message("exe_e", "t1"))
        .await
        .expect("send again");
    let received = receive_all(queue, SHORT_WAIT, LONG_VISIBILITY).await;
    assert_eq!(received, vec![message("exe_e", "t1")]);
    assert!(receive_all(queue, SHORT_WAIT, LONG_VISIBILITY)
        .await
        .is_empty());
}

/// Messages of one thread come out in send order and never past one in flight; other
/// threads are not blocked. (Received one at a time: SQS may batch a group's messages.)
pub async fn one_thread_is_first_in_first_out_without_blocking_others(queue: &dyn Queue) {
    for (execution, thread) in [("exe_1", "ta"), ("exe_2", "ta"), ("exe_3", "tb")] {
        queue.send(&message(execution, thread)).await.expect("send");
    }
    let mut first_round = Vec::new();
    loop {
        let batch = queue
            .receive(1, SHORT_WAIT, LONG_VISIBILITY)
            .await
            .expect("receive");
        let Some(delivery) = batch.into_iter().next() else {
            break;
        };
        first_round.push(delivery);
    }
    let mut names: Vec<&str> = first_round
        .iter()
        .map(|d| d.message.execution_id.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["exe_1", "exe_3"],
        "exe_2 waits behind exe_1 in flight; tb is not blocked"
    );
    let in_flight = first_round
        .iter()
        .find(|d| d.message.execution_id == "exe_1")
        .expect("exe_1");
    queue.delete(&in_flight.receipt).await.expect("delete");
    let next = receive_all(queue, Duration::from_secs(2), LONG_VISIBILITY).await;
    assert_eq!(next, vec![message("exe_2", "ta")]);
}

/// A stale receipt (the message was received again by someone else) changes nothing.
pub async fn a_stale_receipt_is_harmless(queue: &dyn Queue) {
    queue.send(&message("exe_f", "t1")).await.expect("send");
    let first = queue
        .receive(10, SHORT_WAIT, Duration::from_secs(1))
        .await
        .expect("receive");
    let second = queue
        .receive(10, COMES_BACK_WAIT, LONG_VISIBILITY)
        .await
        .expect("receive");
    assert_eq!(second.len(), 1);
    queue
        .delete(&first[0].receipt)
        .await
        .expect("stale delete is not an error");
    queue
        .extend(&first[0].receipt, LONG_VISIBILITY)
        .await
        .expect("stale extend is not an error");
    queue.delete(&second[0].receipt).await.expect("delete");
}
