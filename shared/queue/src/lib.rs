//! The execution queue. A message only says "execution X on thread T may be runnable";
//! the execution row and its lease are the truth. Duplicated, lost or reordered messages
//! must never change what runs: consumers claim the row, and a sweep re-sends messages
//! for `queued` rows that have waited too long.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub mod postgres;
pub mod sqs;

pub use postgres::PostgresQueue;
pub use sqs::SqsQueue;

/// What a queue message carries: a pointer, never the turn itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    pub execution_id: String,
    pub thread_key: String,
}

/// A received message and the handle needed to delete or extend it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: QueueMessage,
    /// Backend-specific receipt (SQS receipt handle, Postgres receipt uuid).
    pub receipt: String,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

/// A queue backend failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("queue service error: {0}")]
    Service(String),
    #[error("malformed queue message: {0}")]
    Malformed(String),
}

/// The queue between `agent-execute` and the dispatcher.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends (or re-sends) the wake-up for an execution. Idempotent per execution id.
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError>;

    /// Receives up to `max` messages, waiting up to `wait` for the first. Received messages
    /// stay invisible to other consumers for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Keeps a received message invisible for another `visibility` (while its execution runs).
    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError>;

    /// Deletes a message: its execution is terminal, or handed to the sweep.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;

    /// Hands a message back to be received again after `delay`.
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;

    /// Checks that the queue is reachable (`/health/ready`).
    async fn ping(&self) -> Result<(), QueueError>;

    /// A short name for logs and metrics: `postgres` or `sqs`.
    fn backend_name(&self) -> &'static str;

    /// True when messages live in the control plane's own database (`queue_messages`):
    /// a transaction that creates or finishes an execution then writes or deletes its
    /// message itself (and wakes the receivers after its commit), and the queue calls are
    /// not needed.
    fn in_database(&self) -> bool {
        false
    }
}

/// Builds the queue `config` selects.
pub async fn from_config(
    config: &centaur_config::QueueConfig,
    pool: sqlx::PgPool,
) -> Result<Arc<dyn Queue>, QueueError> {
    match &config.backend {
        centaur_config::QueueBackend::Postgres => Ok(Arc::new(PostgresQueue::new(pool))),
        centaur_config::QueueBackend::Sqs {
            queue_url,
            endpoint_url,
        } => Ok(Arc::new(
            sqs::SqsQueue::connect(queue_url, endpoint_url.as_deref()).await?,
        )),
    }
}
