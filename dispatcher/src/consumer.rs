//! The queue consumer: receive wake-ups and, for each, claim and drive the execution in a
//! task holding one of the process's slots.

use crate::batches::Claim;
use crate::executor::{self, THREAD_BUSY_DELAY};
use crate::steps;
use crate::Dispatcher;
use centaur_queue::Delivery;
use centaur_store::dispatch::{ClaimOutcome, ClaimedExecution, ExecutionRef};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::Instrument;

/// Most messages taken off the queue at once (SQS's maximum).
const RECEIVE_BATCH: usize = 10;

/// Claims `execution` (an id and its thread) for this process, with the batch of claims
/// it joins, unless it already drives it; `receipt` is the queue message that woke the
/// claim, if any.
pub async fn claim(
    dispatcher: &Dispatcher,
    execution: &ExecutionRef,
    receipt: Option<&str>,
) -> Option<Result<ClaimOutcome, centaur_store::StoreError>> {
    if dispatcher.is_running_here(&execution.execution_id) {
        return None;
    }
    let claim = Claim {
        execution: execution.clone(),
        receipt: receipt.map(str::to_owned),
    };
    Some(dispatcher.batches.claim(claim).await)
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

/// Claims the execution `delivery` names in the slot that will run its turn (`permit`,
/// or one awaited here), then drives it in this same task; a claim that loses puts the
/// message back (or deletes a stale one) and frees the slot.
async fn handle(
    dispatcher: Arc<Dispatcher>,
    delivery: Delivery,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _permit = match permit {
        Some(permit) => permit,
        None => match dispatcher.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return,
        },
    };
    let queue = &dispatcher.queue;
    let execution = ExecutionRef {
        execution_id: delivery.message.execution_id.clone(),
        thread_key: delivery.message.thread_key.clone(),
    };
    let claimed = Instant::now();
    let outcome = match claim(&dispatcher, &execution, Some(&delivery.receipt)).await {
        None => return,
        Some(outcome) => outcome,
    };
    steps::record("claim", claimed);
    let result = match outcome {
        Ok(ClaimOutcome::Claimed(execution)) => {
            metrics::counter!("centaur_dispatcher_claims_total", "outcome" => "claimed")
                .increment(1);
            if dispatcher.begin(&execution.execution_id) {
                let receipt = execution.queue_receipt.clone();
                executor::run(dispatcher.clone(), *execution, receipt).await;
            }
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
            tracing::warn!(%err, "claim failed; the message will come back");
            queue
                .release(&delivery.receipt, Duration::from_secs(1))
                .await
        }
    };
    if let Err(err) = result {
        tracing::warn!(%err, "queue call failed after claim");
    }
}

/// Receives and dispatches until `shutdown` turns true. Each delivery gets a task of its
/// own holding one of the process's slots: claims run in parallel, each in the slot that
/// then runs its turn, and the loop never receives more than there are free slots.
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
        let receiving = Instant::now();
        let received = tokio::select! {
            received = dispatcher.queue.receive(free.min(RECEIVE_BATCH), wait, visibility) => received,
            _ = shutdown.changed() => return,
        };
        steps::record("receive", receiving);
        match received {
            Ok(deliveries) => {
                for delivery in deliveries {
                    // Taken here, before the next receive counts the free slots; a slot
                    // the recovery loop took meanwhile is awaited by the task instead.
                    let permit = dispatcher.slots.clone().try_acquire_owned().ok();
                    let span = tracing::info_span!(
                        "delivery",
                        execution_id = %delivery.message.execution_id,
                        thread_key = %delivery.message.thread_key,
                    );
                    tokio::spawn(handle(dispatcher.clone(), delivery, permit).instrument(span));
                }
            }
            Err(err) => {
                tracing::warn!(%err, "queue receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
