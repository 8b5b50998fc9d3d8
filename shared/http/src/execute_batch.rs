//! Group commit for executes ([`centaur_store::group_commit`]): a process writes the
//! executes that arrive while others are being written together, in one transaction
//! ([`executions::create_and_enqueue_many`]), each thread's executes in arrival order. An
//! execute that finds the writer idle is written at once, alone.

use centaur_core::Harness;
use centaur_store::assignments::WorkspaceChoice;
use centaur_store::executions::{self, ExecuteCall, ExecuteOutcome, NewExecution};
use centaur_store::group_commit::{GroupCommit, Keyed, Limits, WriteBatch};
use centaur_store::{PgPool, StoreError, TurnError};
use std::sync::Arc;

/// Execute transactions in flight at once (each holds one pooled connection), and the
/// most executes one writes. Measured with 16 clients on two cores: one in flight makes
/// batches of 8 but waits on their round trips (1,200–1,500 executes/s); two, batches of
/// 4 (1,470–1,950/s); four or eight make the batches small again and Postgres's cost per
/// execute climbs back.
pub const LIMITS: Limits = Limits {
    in_flight: 2,
    max_batch: 32,
    name: "execute_batch",
};

/// The process's execute writer; cheap to clone (clones share one collector).
#[derive(Clone)]
pub struct ExecuteBatcher {
    writer: GroupCommit<Execute, ExecuteOutcome>,
}

/// An execute waiting to be written.
struct Execute {
    request: NewExecution,
    workspace: WorkspaceChoice,
}

impl Keyed for Execute {
    fn key(&self) -> &str {
        &self.request.thread_key
    }
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
        let write: WriteBatch<Execute, ExecuteOutcome> = Arc::new(move |batch| {
            Box::pin(write_batch(
                pool.clone(),
                default_harness,
                queue_channel,
                batch,
            ))
        });
        Self {
            writer: GroupCommit::new(LIMITS, write),
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
        let execute = Execute {
            request: request.clone(),
            workspace: workspace.clone(),
        };
        self.writer.call(execute).await.unwrap_or_else(|| {
            // Only when the runtime shuts down under the collector.
            Err(TurnError::Store(StoreError::Database(
                sqlx::Error::PoolClosed,
            )))
        })
    }
}

/// Writes a batch of executes ([`executions::create_and_enqueue_many`]).
async fn write_batch(
    pool: PgPool,
    default_harness: Harness,
    queue_channel: Option<&'static str>,
    batch: Vec<Execute>,
) -> Vec<ExecuteOutcome> {
    let calls: Vec<ExecuteCall> = batch
        .iter()
        .map(|execute| ExecuteCall {
            request: &execute.request,
            workspace: &execute.workspace,
        })
        .collect();
    executions::create_and_enqueue_many(&pool, &calls, default_harness, queue_channel).await
}
