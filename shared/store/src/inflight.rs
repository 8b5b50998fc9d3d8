//! A thread's unfinished executions: whether it has any, and cancelling them (one by the
//! API, all of them when the thread is released with `cancel_inflight`). Below both
//! `assignments` (release) and `executions` (cancel), which use it.

use crate::error::column;
use crate::events::{self, kinds};
use crate::StoreError;
use centaur_core::{ExecutionStatus, TerminalReason};
use serde_json::json;
use sqlx::PgConnection;

/// True if the thread has an execution that is not terminal.
pub async fn has_unfinished(
    conn: &mut PgConnection,
    thread_key: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM executions WHERE thread_key = $1
                        AND status NOT IN ('completed','failed_permanent','cancelled'))",
    )
    .bind(thread_key)
    .fetch_one(conn)
    .await
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Not started yet: cancelled at once.
    Cancelled,
    /// Running: the dispatcher will stop the sandbox and finish it as cancelled.
    Requested,
    /// Already terminal or already requested: nothing changed.
    Unchanged(ExecutionStatus),
    /// No such execution.
    NotFound,
}

/// Appends the cancel's `execution_state` event (`status`, with the cancel's reason).
async fn record_state(
    conn: &mut PgConnection,
    thread_key: &str,
    execution_id: &str,
    status: &str,
    reason: TerminalReason,
) -> Result<(), StoreError> {
    let state = json!({"status": status, "terminal_reason": reason.as_str()});
    events::append(
        conn,
        thread_key,
        Some(execution_id),
        kinds::EXECUTION_STATE,
        &state,
    )
    .await?;
    Ok(())
}

/// Cancels one execution inside the caller's transaction: a queued or waiting one at once
/// (its `cancelled` event and delivery notice), a running one by asking its dispatcher.
pub(crate) async fn cancel(
    conn: &mut PgConnection,
    execution_id: &str,
    reason: TerminalReason,
) -> Result<CancelOutcome, StoreError> {
    let queued: Option<String> = sqlx::query_scalar(
        "UPDATE executions SET status = 'cancelled', terminal_reason = $2, completed_at = now(),
             worker_id = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE execution_id = $1 AND status IN ('queued','retry_wait') RETURNING thread_key",
    )
    .bind(execution_id)
    .bind(reason.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(thread_key) = queued {
        record_state(conn, &thread_key, execution_id, "cancelled", reason).await?;
        sqlx::query(
            "UPDATE delivery_outbox SET state = 'pending', payload = $2, next_attempt_at = now(), updated_at = now()
             WHERE execution_id = $1 AND state = 'awaiting_terminal'",
        )
        .bind(execution_id)
        .bind(centaur_core::delivery::payload(execution_id, reason, None))
        .execute(&mut *conn)
        .await?;
        return Ok(CancelOutcome::Cancelled);
    }
    let running: Option<String> = sqlx::query_scalar(
        "UPDATE executions SET status = 'cancel_requested', updated_at = now()
         WHERE execution_id = $1 AND status = 'running' RETURNING thread_key",
    )
    .bind(execution_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(thread_key) = running {
        record_state(conn, &thread_key, execution_id, "cancel_requested", reason).await?;
        return Ok(CancelOutcome::Requested);
    }
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM executions WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_optional(conn)
            .await?;
    match status {
        Some(status) => Ok(CancelOutcome::Unchanged(column(
            "executions.status",
            status,
        )?)),
        None => Ok(CancelOutcome::NotFound),
    }
}

/// Cancels every unfinished execution of a thread (release with `cancel_inflight`).
pub async fn cancel_thread(
    conn: &mut PgConnection,
    thread_key: &str,
) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT execution_id FROM executions WHERE thread_key = $1
           AND status IN ('queued','retry_wait','running') ORDER BY seq",
    )
    .bind(thread_key)
    .fetch_all(&mut *conn)
    .await?;
    for id in &ids {
        cancel(conn, id, TerminalReason::Released).await?;
    }
    Ok(ids)
}
