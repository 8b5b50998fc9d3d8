//! The Postgres queue (`QUEUE_BACKEND=postgres`, the default on one machine): one row per
//! execution in `queue_messages`, `LISTEN/NOTIFY` to wake receivers, and per-thread FIFO
//! like an SQS message group (no message of a thread is handed out while another of the
//! same thread is in flight).

use crate::{Delivery, Queue, QueueError, QueueMessage};
use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use uuid::Uuid;

/// The NOTIFY channel senders signal on.
pub const CHANNEL: &str = "centaur_queue";
/// How often a receiver re-checks without a notification (delayed messages, lost notifies).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Most messages one fetch hands out (the statement is prepared once per limit).
pub const MAX_FETCH: usize = 10;

/// The fetch of up to `max` messages (binds `$1`, the visibility in seconds). The
/// candidates come off the FIFO index in order (the in-flight check is an index probe per
/// row) and stop at `max`. The limit is written into the text, not bound: a bound limit
/// makes Postgres plan the statement again on every call (a custom plan per value), and a
/// fetch runs about once per turn.
///
/// The fetch commits without waiting for its WAL to reach the disk (`synchronous_commit`
/// off for its own transaction only). A fetch lost to a crash of Postgres leaves its
/// messages visible again, as an SQS receive may: they are delivered again. The claim that
/// follows a fetch commits synchronously, and its flush carries the fetch with it.
pub fn take_visible_sql(max: usize) -> String {
    let max = max.clamp(1, MAX_FETCH);
    format!(
        "WITH unflushed_commit AS MATERIALIZED (
             SELECT set_config('synchronous_commit', 'off', true) AS setting
         ), candidates AS (
             SELECT q.execution_id, q.thread_key, q.created_at FROM queue_messages q
             WHERE q.visible_at <= now()
               AND NOT EXISTS (
                   SELECT 1 FROM queue_messages busy
                   WHERE busy.thread_key = q.thread_key
                     AND busy.receipt IS NOT NULL AND busy.visible_at > now())
             ORDER BY q.created_at, q.execution_id
             LIMIT {max}
             FOR UPDATE SKIP LOCKED
         ), first_per_thread AS (
             SELECT DISTINCT ON (thread_key) execution_id FROM candidates
             ORDER BY thread_key, created_at, execution_id
         )
         UPDATE queue_messages q
         SET receipt = gen_random_uuid(),
             receive_count = q.receive_count + 1,
             visible_at = now() + make_interval(secs => $1)
         FROM first_per_thread f, unflushed_commit
         WHERE q.execution_id = f.execution_id
         RETURNING q.execution_id, q.thread_key, q.receipt, q.receive_count"
    )
}

/// Sends a message (binds `$1` execution, `$2` thread): a message already in flight is
/// left alone. Returns a row when it wrote one (the receivers are then woken, after the
/// commit: a `NOTIFY` inside a writing transaction would hold Postgres's notification
/// lock through the WAL flush and serialise every sender).
pub const SEND: &str = "INSERT INTO queue_messages (execution_id, thread_key) VALUES ($1, $2)
     ON CONFLICT (execution_id) DO UPDATE SET visible_at = now()
     WHERE queue_messages.receipt IS NULL
     RETURNING 1";

/// A queue over the `queue_messages` table.
pub struct PostgresQueue {
    pool: PgPool,
    listener: Mutex<Option<PgListener>>,
}

impl PostgresQueue {
    /// A queue on `pool` (migrations must have run).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            listener: Mutex::new(None),
        }
    }

    /// Hands out up to `max` visible messages, oldest first, at most one per thread and
    /// none of a thread with a message in flight. One statement that walks the FIFO index
    /// (`queue_messages_fifo`, migration 0010) and stops after `max` rows it can take: its
    /// cost does not grow with the number of messages queued (only with the messages of
    /// busy threads queued ahead of them).
    async fn take_visible(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let rows: Vec<(String, String, Uuid, i32)> = sqlx::query_as(&take_visible_sql(max))
            .bind(visibility.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(execution_id, thread_key, receipt, count)| Delivery {
                message: QueueMessage {
                    execution_id,
                    thread_key,
                },
                receipt: receipt.to_string(),
                receive_count: count.max(0) as u32,
            })
            .collect())
    }

    async fn wait_for_notification(&self, timeout: Duration) -> Result<(), QueueError> {
        let mut guard = self.listener.lock().await;
        if guard.is_none() {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(CHANNEL).await?;
            *guard = Some(listener);
        }
        if let Some(listener) = guard.as_mut() {
            match tokio::time::timeout(timeout, listener.recv()).await {
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(err)) => {
                    *guard = None;
                    return Err(err.into());
                }
            }
        }
        Ok(())
    }
}

fn parse_receipt(receipt: &str) -> Option<Uuid> {
    Uuid::parse_str(receipt).ok()
}

#[async_trait]
impl Queue for PostgresQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let sent = sqlx::query(SEND)
            .bind(&message.execution_id)
            .bind(&message.thread_key)
            .execute(&self.pool)
            .await?;
        if sent.rows_affected() > 0 {
            // A hint: the message is committed, and receivers re-check every POLL_INTERVAL.
            let woken = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&self.pool)
                .await;
            if let Err(err) = woken {
                tracing::warn!(%err, "could not wake the queue's receivers; they re-check on their own");
            }
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let deliveries = self.take_visible(max.max(1), visibility).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            let nap = POLL_INTERVAL.min(deadline - now);
            self.wait_for_notification(nap).await?;
        }
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        let Some(receipt) = parse_receipt(receipt) else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE queue_messages SET visible_at = now() + make_interval(secs => $2)
             WHERE receipt = $1",
        )
        .bind(receipt)
        .bind(visibility.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let Some(receipt) = parse_receipt(receipt) else {
            return Ok(());
        };
        sqlx::query("DELETE FROM queue_messages WHERE receipt = $1")
            .bind(receipt)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let Some(receipt) = parse_receipt(receipt) else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE queue_messages SET receipt = NULL,
                 visible_at = now() + make_interval(secs => $2)
             WHERE receipt = $1",
        )
        .bind(receipt)
        .bind(delay.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    fn in_database(&self) -> bool {
        true
    }
}
