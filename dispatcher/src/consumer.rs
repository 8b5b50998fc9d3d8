//! The queue consumer: receive wake-ups, claim, and start a driver per claimed execution.

use crate::executor::{self, THREAD_BUSY_DELAY};
use crate::Dispatcher;
use centaur_queue::Delivery;
use centaur_store::dispatch::{self, ClaimOutcome, ClaimedExecution};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Claims `execution_id` for this process (unless it already drives it); `receipt` is
/// the queue message that woke the claim, if any.
pub async fn claim(
    dispatcher: &Dispatcher,
    execution_id: &str,
    receipt: Option<&str>,
) -> Option<Result<ClaimOutcome, centaur_store::StoreError>> {
    if dispatcher.is_running_here(execution_id) {
        return None;
    }
    let config = &dispatcher.config;
    Some(
        dispatch::claim(
            &dispatcher.pool,
            execution_id,
            &config.worker_id,
            receipt,
            config.lease,
            config.silence_timeout,
            config.hard_timeout,
        )
        .await,
    )
}

/// Starts a driver for a claimed execution on its own task, holding one slot. The driver
/// keeps the claim's queue message (its own, or the one a dead dispatcher received)
/// invisible while the turn runs and deletes it at the end.
pub async fn spawn_driver(dispatcher: &Arc<Dispatcher>, execution: ClaimedExecution) {
    if !dispatcher.begin(&execution.execution_id) {
        return;
    }
    let receipt = execution.queue_receipt.clone();
    let permit = dispatcher.slots.clone().acquire_owned().await;
    let dispatcher = dispatcher.clone();
    tokio::spawn(async move {
        let _permit = permit;
        executor::run(dispatcher, execution, receipt).await;
    });
}

async fn handle(dispatcher: &Arc<Dispatcher>, delivery: Delivery) {
    let queue = &dispatcher.queue;
    let execution_id = &delivery.message.execution_id;
    let outcome = match claim(dispatcher, execution_id, Some(&delivery.receipt)).await {
        None => return,
        Some(outcome) => outcome,
    };
    let result = match outcome {
        Ok(ClaimOutcome::Claimed(execution)) => {
            metrics::counter!("centaur_dispatcher_claims_total", "outcome" => "claimed")
                .increment(1);
            spawn_driver(dispatcher, *execution).await;
            Ok(())
        }
        Ok(ClaimOutcome::WaitingForThread) => {
            metrics::counter!("centaur_dispatcher_claims_total", "outcome" => "thread_busy")
                .increment(1);
            queue.release(&delivery.receipt, THREAD_BUSY_DELAY).await
        }
        Ok(ClaimOutcome::HeldElsewhere) => {
            metrics::counter!("centaur_dispatcher_claims_total", "outcome" => "held").increment(1);
            queue
                .release(&delivery.receipt, dispatcher.config.lease)
                .await
        }
        Ok(ClaimOutcome::Finished) => {
            metrics::counter!("centaur_dispatcher_claims_total", "outcome" => "stale").increment(1);
            queue.delete(&delivery.receipt).await
        }
        Err(err) => {
            tracing::warn!(%err, execution_id, "claim failed; the message will come back");
            queue
                .release(&delivery.receipt, Duration::from_secs(1))
                .await
        }
    };
    if let Err(err) = result {
        tracing::warn!(%err, execution_id, "queue call failed after claim");
    }
}

/// Receives and dispatches until `shutdown` turns true.
pub async fn run(dispatcher: Arc<Dispatcher>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let free = dispatcher.slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = dispatcher.slots.acquire() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let (wait, visibility) = (
            dispatcher.config.queue_wait,
            dispatcher.config.queue_visibility,
        );
        let received = tokio::select! {
            received = dispatcher.queue.receive(free.min(10), wait, visibility) => received,
            _ = shutdown.changed() => return,
        };
        match received {
            Ok(deliveries) => {
                for delivery in deliveries {
                    handle(&dispatcher, delivery).await;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "queue receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
