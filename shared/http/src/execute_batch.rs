//! Group commit for executes. Postgres's cost of an execute is mostly per statement (plan
//! start-up, commit, round trips), not per row, so a process writes the executes that
//! arrive while others are being written together, in one transaction
//! ([`executions::create_and_enqueue_many`]). An execute that finds the writer idle is
//! written at once, alone: nobody waits for a batch to fill.
//!
//! One collector task per process hands out batches: at most [`IN_FLIGHT`] transactions at
//! a time, each with up to [`MAX_BATCH`] executes of distinct threads. A thread's executes
//! are written in the order they arrived: one whose thread has an execute in flight waits
//! for that batch to commit.

use centaur_core::Harness;
use centaur_store::assignments::WorkspaceChoice;
use centaur_store::executions::{self, ExecuteCall, ExecuteOutcome, NewExecution};
use centaur_store::{PgPool, StoreError, TurnError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Execute transactions in flight at once (each holds one pooled connection). Measured
/// with 16 clients on two cores: one in flight makes batches of 8 but waits on their
/// round trips (1,200–1,500 executes/s); two, batches of 4 (1,470–1,950/s); four or eight
/// make the batches small again and Postgres's cost per execute climbs back.
pub const IN_FLIGHT: usize = 2;
/// Executes written by one transaction at most.
pub const MAX_BATCH: usize = 32;

/// The process's execute writer; cheap to clone (clones share one collector).
#[derive(Clone)]
pub struct ExecuteBatcher {
    writer: Writer,
    collector: Arc<OnceLock<mpsc::UnboundedSender<Call>>>,
}

/// An execute waiting to be written, and where its answer goes.
struct Call {
    request: NewExecution,
    workspace: WorkspaceChoice,
    reply: oneshot::Sender<ExecuteOutcome>,
}

/// What every batch of a process is written with.
#[derive(Clone)]
struct Writer {
    pool: PgPool,
    default_harness: Harness,
    queue_channel: Option<&'static str>,
}

impl ExecuteBatcher {
    /// A writer of executes on `pool`, with `default_harness` for new assignments and,
    /// on the Postgres queue, its channel (`queue_channel`: the queue row is written with
    /// the execution). Nothing runs until the first execute.
    pub fn new(
        pool: PgPool,
        default_harness: Harness,
        queue_channel: Option<&'static str>,
    ) -> Self {
        Self {
            writer: Writer {
                pool,
                default_harness,
                queue_channel,
            },
            collector: Arc::default(),
        }
    }

    /// Writes `request` (with the batch it joins) as
    /// [`executions::create_and_enqueue`] would, and answers once its transaction
    /// committed. The first call starts the collector on the current runtime.
    pub async fn execute(
        &self,
        request: &NewExecution,
        workspace: &WorkspaceChoice,
    ) -> ExecuteOutcome {
        let collector = self.collector.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(collect(self.writer.clone(), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        let call = Call {
            request: request.clone(),
            workspace: workspace.clone(),
            reply,
        };
        if collector.send(call).is_err() {
            // The collector's runtime is gone (a test's): write it here.
            let writer = &self.writer;
            return executions::create_and_enqueue(
                &writer.pool,
                request,
                writer.default_harness,
                workspace,
                writer.queue_channel,
            )
            .await;
        }
        answer.await.unwrap_or_else(|_| {
            // Only when the runtime shuts down under the collector.
            Err(TurnError::Store(StoreError::Database(
                sqlx::Error::PoolClosed,
            )))
        })
    }
}

/// The collector: starts a batch whenever a transaction slot is free and executes wait.
async fn collect(writer: Writer, mut receiver: mpsc::UnboundedReceiver<Call>) {
    let mut waiting: VecDeque<Call> = VecDeque::new();
    let mut busy_threads: HashSet<String> = HashSet::new();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut threads_of: HashMap<tokio::task::Id, Vec<String>> = HashMap::new();
    let mut open = true;
    loop {
        while in_flight.len() < IN_FLIGHT {
            let batch = take_batch(&mut waiting, &busy_threads);
            if batch.is_empty() {
                break;
            }
            let threads: Vec<String> = batch
                .iter()
                .map(|call| call.request.thread_key.clone())
                .collect();
            busy_threads.extend(threads.iter().cloned());
            let span = tracing::info_span!("execute_batch", executes = batch.len());
            let task = in_flight.spawn(write(writer.clone(), batch).instrument(span));
            threads_of.insert(task.id(), threads);
        }
        if !open && waiting.is_empty() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            call = receiver.recv(), if open => match call {
                Some(call) => {
                    waiting.push_back(call);
                    while let Ok(more) = receiver.try_recv() {
                        waiting.push_back(more);
                    }
                }
                None => open = false,
            },
            Some(done) = in_flight.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(err) => err.id(),
                };
                for thread in threads_of.remove(&id).unwrap_or_default() {
                    busy_threads.remove(&thread);
                }
            }
        }
    }
}

/// The next batch: waiting executes, oldest first, up to [`MAX_BATCH`], at most one per
/// thread and none of a thread that is being written (or has an older execute still
/// waiting), so each thread's executes keep their order.
fn take_batch(waiting: &mut VecDeque<Call>, busy_threads: &HashSet<String>) -> Vec<Call> {
    let mut batch = Vec::new();
    let mut passed_over: HashSet<String> = HashSet::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    while let Some(call) = waiting.pop_front() {
        let thread = &call.request.thread_key;
        let free = !busy_threads.contains(thread) && !passed_over.contains(thread);
        if free && batch.len() < MAX_BATCH {
            passed_over.insert(thread.clone());
            batch.push(call);
        } else {
            passed_over.insert(thread.clone());
            kept.push_back(call);
        }
    }
    *waiting = kept;
    batch
}

/// Writes one batch and answers each of its executes.
async fn write(writer: Writer, batch: Vec<Call>) {
    let calls: Vec<ExecuteCall> = batch
        .iter()
        .map(|call| ExecuteCall {
            request: &call.request,
            workspace: &call.workspace,
        })
        .collect();
    let outcomes = executions::create_and_enqueue_many(
        &writer.pool,
        &calls,
        writer.default_harness,
        writer.queue_channel,
    )
    .await;
    drop(calls);
    for (call, outcome) in batch.into_iter().zip(outcomes) {
        // A caller that went away still has its execute written; nobody to answer.
        let _ = call.reply.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centaur_core::api::Delivery;
    use centaur_store::audit::Actor;

    fn call(thread: &str) -> Call {
        let (reply, _) = oneshot::channel();
        Call {
            request: NewExecution {
                thread_key: thread.to_owned(),
                assignment_generation: None,
                execute_id: None,
                delivery: Delivery::dev(),
                metadata: serde_json::json!({}),
                request_hash: String::new(),
                first_message: None,
                harness: None,
                actor: Actor::local_operator(None),
            },
            workspace: WorkspaceChoice::default(),
            reply,
        }
    }

    fn threads(calls: &[Call]) -> Vec<&str> {
        calls
            .iter()
            .map(|call| call.request.thread_key.as_str())
            .collect()
    }

    #[test]
    fn a_batch_takes_one_execute_per_thread_and_keeps_the_rest_in_order() {
        let mut waiting: VecDeque<Call> = ["a", "b", "a", "c", "b"].map(call).into();
        let batch = take_batch(&mut waiting, &HashSet::new());
        assert_eq!(threads(&batch), ["a", "b", "c"]);
        assert_eq!(threads(waiting.make_contiguous()), ["a", "b"]);
    }

    #[test]
    fn a_thread_being_written_waits_for_its_batch() {
        let mut waiting: VecDeque<Call> = ["a", "b"].map(call).into();
        let busy = HashSet::from(["a".to_owned()]);
        let batch = take_batch(&mut waiting, &busy);
        assert_eq!(threads(&batch), ["b"]);
        assert_eq!(threads(waiting.make_contiguous()), ["a"]);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_executes() {
        let mut waiting: VecDeque<Call> =
            (0..MAX_BATCH + 3).map(|i| call(&format!("t{i}"))).collect();
        let batch = take_batch(&mut waiting, &HashSet::new());
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(waiting.len(), 3);
    }
}
