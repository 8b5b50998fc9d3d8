//! What the dispatcher does to executions: claim with a lease, heartbeat, hand the turn's
//! messages over, append harness events, and finish. Every transition is one conditional
//! UPDATE (zero rows: another writer won) with its `execution_state` event in the same
//! transaction.

use crate::events::{self, kinds};
use crate::StoreError;
use centaur_core::{ExecutionStatus, TerminalReason};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

const ACTIVE: &str = "('running','cancel_requested')";

/// The columns the dispatcher works with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedExecution {
    pub execution_id: String,
    pub thread_key: String,
    pub harness: String,
    pub status: String,
    pub attempt: i32,
    pub sandbox_id: Option<String>,
    pub turn_sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub claimed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub hard_deadline_at: Option<chrono::DateTime<chrono::Utc>>,
    pub delivery: Value,
    /// The assignment generation the execution belongs to (the `n` of the thread's branch).
    pub assignment_generation: i64,
    /// The thread's repository (normal form, see `centaur_core::RepoRef`), if any.
    pub repo: Option<String>,
    /// The thread's `agents_md_override` from spawn, if any.
    pub agents_md_override: Option<String>,
    /// The receipt of the queue message behind this claim: the claimer's own, or (for a
    /// reclaim after a crash, which has none) the one the previous holder received.
    pub queue_receipt: Option<String>,
}

impl ClaimedExecution {
    /// True when an earlier attempt already sent the turn to a sandbox (re-attach path).
    pub fn turn_was_sent(&self) -> bool {
        self.turn_sent_at.is_some() && self.sandbox_id.is_some()
    }

    /// Milliseconds between acceptance and this claim.
    pub fn queue_delay_ms(&self) -> i64 {
        self.claimed_at
            .map(|claimed| (claimed - self.created_at).num_milliseconds().max(0))
            .unwrap_or(0)
    }
}

/// The result of trying to claim an execution.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// This worker now holds the lease.
    Claimed(Box<ClaimedExecution>),
    /// An older execution of the thread is not finished yet: try again later.
    WaitingForThread,
    /// Another worker holds a live lease.
    HeldElsewhere,
    /// Terminal already, or unknown: the message is stale.
    Finished,
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Claims `execution_id` for `worker_id`: `queued|retry_wait`, or `running|cancel_requested`
/// whose lease expired. Refused while an older execution of the same thread is unfinished.
/// `receipt` is the queue message that woke this claim (`None` for a reclaim by the
/// recovery loop, which then adopts the stored one).
pub async fn claim(
    pool: &PgPool,
    execution_id: &str,
    worker_id: &str,
    receipt: Option<&str>,
    lease: Duration,
    silence: Duration,
    hard: Duration,
) -> Result<ClaimOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let found: Option<(String, String, i64)> =
        sqlx::query_as("SELECT thread_key, status, seq FROM executions WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((thread_key, status, seq)) = found else {
        return Ok(ClaimOutcome::Finished);
    };
    if status
        .parse::<ExecutionStatus>()
        .is_ok_and(ExecutionStatus::is_terminal)
    {
        return Ok(ClaimOutcome::Finished);
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(&thread_key)
        .execute(&mut *tx)
        .await?;
    let blocked: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (
             SELECT 1 FROM executions
             WHERE thread_key = $1 AND execution_id <> $2
               AND ((seq < $3 AND status NOT IN ('completed','failed_permanent','cancelled'))
                    OR status IN {ACTIVE}))"
    ))
    .bind(&thread_key)
    .bind(execution_id)
    .bind(seq)
    .fetch_one(&mut *tx)
    .await?;
    if blocked {
        return Ok(ClaimOutcome::WaitingForThread);
    }
    let claimed: Option<ClaimedExecution> = sqlx::query_as(&format!(
        "WITH claimed AS (
         UPDATE executions SET
             status = CASE WHEN status = 'cancel_requested' THEN 'cancel_requested' ELSE 'running' END,
             worker_id = $2,
             lease_expires_at = now() + make_interval(secs => $3),
             claimed_at = now(),
             started_at = COALESCE(started_at, now()),
             last_progress_at = now(),
             silence_deadline_at = now() + make_interval(secs => $4),
             hard_deadline_at = COALESCE(hard_deadline_at, now() + make_interval(secs => $5)),
             attempt = attempt + 1,
             queue_receipt = COALESCE($6, queue_receipt),
             updated_at = now()
         WHERE execution_id = $1
           AND (status IN ('queued','retry_wait')
                OR (status IN {ACTIVE} AND lease_expires_at < now()))
         RETURNING execution_id, thread_key, harness, status, attempt, sandbox_id, turn_sent_at,
                   created_at, claimed_at, hard_deadline_at, delivery, assignment_generation,
                   queue_receipt)
         SELECT c.*, a.repo, a.agents_md_override
         FROM claimed c
         LEFT JOIN runtime_assignments a
           ON a.thread_key = c.thread_key AND a.assignment_generation = c.assignment_generation"
    ))
    .bind(execution_id)
    .bind(worker_id)
    .bind(secs(lease))
    .bind(secs(silence))
    .bind(secs(hard))
    .bind(receipt)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(claimed) = claimed else {
        return Ok(ClaimOutcome::HeldElsewhere);
    };
    events::append(
        &mut *tx,
        &claimed.thread_key,
        Some(execution_id),
        kinds::EXECUTION_STATE,
        &json!({"status": claimed.status, "attempt": claimed.attempt, "worker_id": worker_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(ClaimOutcome::Claimed(Box::new(claimed)))
}

/// What a heartbeat learned.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Heartbeat {
    pub status: String,
    pub silence_exceeded: bool,
    pub hard_exceeded: bool,
}

/// Extends the lease if `worker_id` still holds it. `None`: the lease was lost.
pub async fn heartbeat(
    pool: &PgPool,
    execution_id: &str,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<Heartbeat>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE executions SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
         WHERE execution_id = $1 AND worker_id = $2 AND status IN {ACTIVE}
         RETURNING status,
                   silence_deadline_at < now() AS silence_exceeded,
                   hard_deadline_at < now() AS hard_exceeded"
    ))
    .bind(execution_id)
    .bind(worker_id)
    .bind(secs(lease))
    .fetch_optional(pool)
    .await?)
}

/// A message handed to a turn.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TurnMessageRow {
    pub id: String,
    pub role: String,
    pub parts: Value,
}

/// Records the sandbox and the moment the turn is sent, and returns the messages bound to
/// this execution when it was created, oldest first (a re-sent turn after `turn.unknown`
/// carries the same messages).
pub async fn take_turn_messages(
    pool: &PgPool,
    execution_id: &str,
    worker_id: &str,
    sandbox_id: &str,
) -> Result<Vec<TurnMessageRow>, StoreError> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(&format!(
        "UPDATE executions SET sandbox_id = $3, turn_sent_at = COALESCE(turn_sent_at, now()), updated_at = now()
         WHERE execution_id = $1 AND worker_id = $2 AND status IN {ACTIVE}"
    ))
    .bind(execution_id)
    .bind(worker_id)
    .bind(sandbox_id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Corrupt(format!(
            "lost the lease on {execution_id} before sending its turn"
        )));
    }
    let messages = sqlx::query_as(
        "SELECT id, role, parts FROM messages WHERE delivered_execution_id = $1 ORDER BY seq",
    )
    .bind(execution_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(messages)
}

/// Appends a batch of harness events and pushes the silence deadline (output is progress).
pub async fn append_harness_events(
    pool: &PgPool,
    thread_key: &str,
    execution_id: &str,
    silence: Duration,
    batch: &[Value],
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    events::append_batch(
        &mut *tx,
        thread_key,
        execution_id,
        kinds::HARNESS_EVENT,
        batch,
    )
    .await?;
    crate::harness_reports::record(&mut tx, batch).await?;
    sqlx::query(
        "UPDATE executions SET last_progress_at = now(),
             silence_deadline_at = now() + make_interval(secs => $2)
         WHERE execution_id = $1",
    )
    .bind(execution_id)
    .bind(secs(silence))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The highest harness event `seq` stored for an execution (0 when none).
pub async fn max_harness_seq(pool: &PgPool, execution_id: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT max((event_json->>'seq')::bigint) FROM execution_events
         WHERE execution_id = $1 AND event_kind = 'harness_event'",
    )
    .bind(execution_id)
    .fetch_one(pool)
    .await?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// The end of an execution, as the dispatcher saw it.
#[derive(Debug, Clone)]
pub struct Finish {
    pub reason: TerminalReason,
    pub result_text: Option<String>,
    pub error_text: Option<String>,
    pub agent_thread_id: Option<String>,
    /// The `execution_summary` event body.
    pub summary: Value,
    /// What a deliverer posts (`{"text": …}`).
    pub delivery_payload: Value,
}

/// Finishes an execution this worker holds. `false`: someone else finished it first.
pub async fn finish(
    pool: &PgPool,
    execution_id: &str,
    worker_id: &str,
    finish: &Finish,
) -> Result<bool, StoreError> {
    let status = finish.reason.status();
    let sources: Vec<&str> = ExecutionStatus::sources_of(status)
        .into_iter()
        .filter(|from| {
            matches!(
                from,
                ExecutionStatus::Running
                    | ExecutionStatus::CancelRequested
                    | ExecutionStatus::RetryWait
            )
        })
        .map(ExecutionStatus::as_str)
        .collect();
    let mut tx = pool.begin().await?;
    let thread_key: Option<String> = sqlx::query_scalar(
        "UPDATE executions SET status = $3, terminal_reason = $4, result_text = $5,
             error_text = $6, agent_thread_id = COALESCE($7, agent_thread_id),
             completed_at = now(), lease_expires_at = NULL, updated_at = now()
         WHERE execution_id = $1 AND (worker_id = $2 OR status = 'retry_wait')
           AND status = ANY($8)
         RETURNING thread_key",
    )
    .bind(execution_id)
    .bind(worker_id)
    .bind(status.as_str())
    .bind(finish.reason.as_str())
    .bind(&finish.result_text)
    .bind(&finish.error_text)
    .bind(&finish.agent_thread_id)
    .bind(&sources)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(thread_key) = thread_key else {
        return Ok(false);
    };
    let mut state = json!({"status": status.as_str(), "terminal_reason": finish.reason.as_str()});
    if let Some(text) = &finish.result_text {
        state["result_text"] = json!(text);
    }
    if let Some(text) = &finish.error_text {
        state["error_text"] = json!(text);
    }
    let id = Some(execution_id);
    events::append(&mut *tx, &thread_key, id, kinds::EXECUTION_STATE, &state).await?;
    events::append(
        &mut *tx,
        &thread_key,
        id,
        kinds::EXECUTION_SUMMARY,
        &finish.summary,
    )
    .await?;
    let outbox: Option<Value> = sqlx::query_scalar(
        "UPDATE delivery_outbox SET state = 'pending', payload = $2, next_attempt_at = now(), updated_at = now()
         WHERE execution_id = $1 AND state = 'awaiting_terminal' RETURNING delivery",
    )
    .bind(execution_id)
    .bind(&finish.delivery_payload)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(delivery) = outbox {
        let ready = json!({"delivery": delivery, "status": status.as_str()});
        events::append(
            &mut *tx,
            &thread_key,
            id,
            kinds::FINAL_DELIVERY_READY,
            &ready,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Hands a running execution back (`retry_wait`): the stream ended but the sandbox lives;
/// the next claim re-attaches.
pub async fn hand_back(
    pool: &PgPool,
    execution_id: &str,
    worker_id: &str,
    why: &str,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let thread_key: Option<String> = sqlx::query_scalar(
        "UPDATE executions SET status = 'retry_wait', worker_id = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE execution_id = $1 AND worker_id = $2 AND status = 'running' RETURNING thread_key",
    )
    .bind(execution_id)
    .bind(worker_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(thread_key) = thread_key else {
        return Ok(false);
    };
    events::append(
        &mut *tx,
        &thread_key,
        Some(execution_id),
        kinds::EXECUTION_STATE,
        &json!({"status": "retry_wait", "reason": why}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// An execution id with its thread.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExecutionRef {
    pub execution_id: String,
    pub thread_key: String,
}

/// The thread's oldest `queued`/`retry_wait` execution (to wake after one finishes).
pub async fn next_waiting_on_thread(
    pool: &PgPool,
    thread_key: &str,
) -> Result<Option<ExecutionRef>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT execution_id, thread_key FROM executions
         WHERE thread_key = $1 AND status IN ('queued','retry_wait') ORDER BY seq LIMIT 1",
    )
    .bind(thread_key)
    .fetch_optional(pool)
    .await?)
}

/// Executions whose holder's lease expired (a dispatcher died or stalled).
pub async fn expired_leases(pool: &PgPool, limit: i64) -> Result<Vec<ExecutionRef>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT execution_id, thread_key FROM executions
         WHERE status IN {ACTIVE} AND lease_expires_at < now() ORDER BY seq LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// `queued`/`retry_wait` executions untouched for `older_than`; marks them touched so each
/// is re-sent at most once per period.
pub async fn sweep_waiting(
    pool: &PgPool,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<ExecutionRef>, StoreError> {
    Ok(sqlx::query_as(
        "UPDATE executions SET updated_at = now()
         WHERE execution_id IN (
             SELECT execution_id FROM executions
             WHERE status IN ('queued','retry_wait') AND updated_at < now() - make_interval(secs => $1)
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING execution_id, thread_key",
    )
    .bind(secs(older_than))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Counts of executions by status (for metrics).
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT status, count(*) FROM executions GROUP BY status")
            .fetch_all(pool)
            .await?,
    )
}
