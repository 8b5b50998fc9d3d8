//! `executions` from the API's side: create (with its `queued` event and outbox row, in
//! one transaction), read, list, cancel.

use crate::assignments::{self, lock_thread, WorkspaceChoice};
use crate::error::TurnError;
use crate::events::{self, kinds};
use crate::messages::{self, NewMessage};
use crate::StoreError;
use centaur_core::api::{ExecutionView, Usage};
use centaur_core::{ExecutionId, TerminalReason};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

/// Failed executions on one thread within [`FAILURE_LOOP_WINDOW_SECS`] that block new ones.
pub const FAILURE_LOOP_LIMIT: i64 = 3;
/// The failure-loop window.
pub const FAILURE_LOOP_WINDOW_SECS: f64 = 300.0;

/// What `POST /agent/execute` asks for.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub thread_key: String,
    /// `None`: use the active assignment (or, with `first_message`, spawn one).
    pub assignment_generation: Option<i64>,
    pub execute_id: Option<String>,
    pub delivery: Value,
    pub metadata: Value,
    pub request_hash: String,
    /// The one-call path: spawn-or-attach with this harness and store this message first.
    pub first_message: Option<NewMessage>,
    pub harness: Option<String>,
}

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

/// Creates a queued execution. Returns the 202 body and whether a new row was created
/// (false for an idempotent replay, which must not be enqueued again).
pub async fn create(
    pool: &PgPool,
    request: &NewExecution,
    default_harness: &str,
) -> Result<(Value, bool), TurnError> {
    create_in_workspace(pool, request, default_harness, &WorkspaceChoice::default()).await
}

/// [`create`], where the one-call path's spawn gets `workspace` (repo, override).
pub async fn create_in_workspace(
    pool: &PgPool,
    request: &NewExecution,
    default_harness: &str,
    workspace: &WorkspaceChoice,
) -> Result<(Value, bool), TurnError> {
    let thread_key = request.thread_key.as_str();
    let mut tx = pool.begin().await?;
    lock_thread(&mut tx, thread_key).await?;
    if let Some(key) = &request.execute_id {
        let stored: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT request_hash, execution_id, assignment_generation FROM executions
             WHERE thread_key = $1 AND execute_id = $2",
        )
        .bind(thread_key)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((hash, execution_id, generation)) = stored {
            if hash != request.request_hash {
                return Err(TurnError::IdempotencyMismatch {
                    key_name: "execute_id",
                    key: key.clone(),
                });
            }
            let status: String =
                sqlx::query_scalar("SELECT status FROM executions WHERE execution_id = $1")
                    .bind(&execution_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let response = json!({
                "ok": true, "execution_id": execution_id, "execute_id": key,
                "assignment_generation": generation, "status": status, "idempotent": true,
            });
            return Ok((response, false));
        }
    }
    let assignment = match (request.assignment_generation, &request.first_message) {
        (Some(generation), _) => {
            assignments::require_generation(&mut tx, thread_key, generation).await?
        }
        (None, Some(_)) => {
            assignments::attach_or_create(
                &mut tx,
                thread_key,
                request.harness.as_deref(),
                default_harness,
                workspace,
            )
            .await?
        }
        (None, None) => assignments::active(&mut tx, thread_key)
            .await?
            .ok_or_else(|| TurnError::NoActiveAssignment(thread_key.to_owned()))?,
    };
    let recent_failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE thread_key = $1 AND status = 'failed_permanent'
           AND completed_at > now() - make_interval(secs => $2)",
    )
    .bind(thread_key)
    .bind(FAILURE_LOOP_WINDOW_SECS)
    .fetch_one(&mut *tx)
    .await?;
    if recent_failures >= FAILURE_LOOP_LIMIT {
        return Err(TurnError::FailureLoop(thread_key.to_owned()));
    }
    if let Some(message) = &request.first_message {
        messages::insert(
            &mut tx,
            thread_key,
            assignment.assignment_generation,
            message,
        )
        .await?;
    }
    let execution_id = ExecutionId::generate();
    let execute_id = request
        .execute_id
        .clone()
        .unwrap_or_else(|| execution_id.to_string());
    sqlx::query(
        "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id,
                                 request_hash, status, delivery, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)",
    )
    .bind(execution_id.as_str())
    .bind(thread_key)
    .bind(assignment.assignment_generation)
    .bind(&assignment.harness)
    .bind(&execute_id)
    .bind(&request.request_hash)
    .bind(&request.delivery)
    .bind(&request.metadata)
    .execute(&mut *tx)
    .await?;
    // Messages bind to an execution when it is created: this turn carries exactly the
    // thread's messages posted since the previous execute.
    let bound = sqlx::query(
        "UPDATE messages SET delivered_execution_id = $2
         WHERE thread_key = $1 AND delivered_execution_id IS NULL",
    )
    .bind(thread_key)
    .bind(execution_id.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if bound == 0 {
        return Err(TurnError::NoPendingMessages(thread_key.to_owned()));
    }
    events::append(
        &mut *tx,
        thread_key,
        Some(execution_id.as_str()),
        kinds::EXECUTION_STATE,
        &json!({"status": "queued"}),
    )
    .await?;
    if request.delivery["platform"] != "dev" {
        sqlx::query(
            "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state)
             VALUES ($1, $2, $3, 'awaiting_terminal')",
        )
        .bind(execution_id.as_str())
        .bind(thread_key)
        .bind(&request.delivery)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let response = json!({
        "ok": true, "execution_id": execution_id.as_str(), "execute_id": execute_id,
        "assignment_generation": assignment.assignment_generation, "status": "queued",
    });
    Ok((response, true))
}

#[derive(sqlx::FromRow)]
struct ExecutionRow {
    execution_id: String,
    thread_key: String,
    assignment_generation: i64,
    execute_id: String,
    status: String,
    terminal_reason: Option<String>,
    result_text: Option<String>,
    error_text: Option<String>,
    agent_thread_id: Option<String>,
    harness: String,
    sandbox_id: Option<String>,
    attempt: i32,
    delivery: Value,
    metadata: Value,
    created_at: chrono::DateTime<chrono::Utc>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    completed_at: Option<chrono::DateTime<chrono::Utc>>,
    updated_at: chrono::DateTime<chrono::Utc>,
    input_tokens: i64,
    output_tokens: i64,
}

impl From<ExecutionRow> for ExecutionView {
    fn from(row: ExecutionRow) -> Self {
        ExecutionView {
            execution_id: row.execution_id,
            thread_key: row.thread_key,
            assignment_generation: row.assignment_generation,
            execute_id: row.execute_id,
            status: row.status,
            terminal_reason: row.terminal_reason,
            result_text: row.result_text,
            error_text: row.error_text,
            agent_thread_id: row.agent_thread_id,
            harness: row.harness,
            sandbox_id: row.sandbox_id,
            attempt: row.attempt,
            delivery: row.delivery,
            metadata: row.metadata,
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            updated_at: row.updated_at,
            usage: Usage {
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
            },
            events: None,
        }
    }
}

/// The view's columns over [`VIEW_FROM`] (`x`: the execution, `u`: its usage, if any).
const VIEW_COLUMNS: &str = "x.execution_id, x.thread_key, x.assignment_generation, x.execute_id, x.status,
    x.terminal_reason, x.result_text, x.error_text, x.agent_thread_id, x.harness, x.sandbox_id, x.attempt,
    x.delivery, x.metadata, x.created_at, x.started_at, x.completed_at, x.updated_at,
    COALESCE(u.input_tokens, 0) AS input_tokens, COALESCE(u.output_tokens, 0) AS output_tokens";

/// Executions with their usage summary (one index lookup each).
const VIEW_FROM: &str =
    "executions x LEFT JOIN execution_usage u ON u.execution_id = x.execution_id";

/// One execution, optionally with its events.
pub async fn get(
    pool: &PgPool,
    execution_id: &str,
    with_events: bool,
) -> Result<Option<ExecutionView>, StoreError> {
    let row: Option<ExecutionRow> = sqlx::query_as(&format!(
        "SELECT {VIEW_COLUMNS} FROM {VIEW_FROM} WHERE x.execution_id = $1"
    ))
    .bind(execution_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut view = ExecutionView::from(row);
    if with_events {
        view.events = Some(events::for_execution(pool, execution_id).await?);
    }
    Ok(Some(view))
}

/// The thread of an execution (for sandbox-token scoping), if it exists.
pub async fn thread_of(pool: &PgPool, execution_id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT thread_key FROM executions WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A thread's executions, newest first.
pub async fn list_for_thread(
    pool: &PgPool,
    thread_key: &str,
    limit: i64,
) -> Result<Vec<ExecutionView>, StoreError> {
    let rows: Vec<ExecutionRow> = sqlx::query_as(&format!(
        "SELECT {VIEW_COLUMNS} FROM {VIEW_FROM} WHERE x.thread_key = $1 ORDER BY x.seq DESC LIMIT $2"
    ))
    .bind(thread_key)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ExecutionView::from).collect())
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Not started yet: cancelled at once.
    Cancelled,
    /// Running: the dispatcher will stop the sandbox and finish it as cancelled.
    Requested,
    /// Already terminal or already requested: nothing changed.
    Unchanged(String),
}

async fn cancel_locked(
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
        let state = json!({"status": "cancelled", "terminal_reason": reason.as_str()});
        events::append(
            &mut *conn,
            &thread_key,
            Some(execution_id),
            kinds::EXECUTION_STATE,
            &state,
        )
        .await?;
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
        let state = json!({"status": "cancel_requested", "terminal_reason": reason.as_str()});
        events::append(
            &mut *conn,
            &thread_key,
            Some(execution_id),
            kinds::EXECUTION_STATE,
            &state,
        )
        .await?;
        return Ok(CancelOutcome::Requested);
    }
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM executions WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_optional(conn)
            .await?;
    Ok(CancelOutcome::Unchanged(status.unwrap_or_default()))
}

/// `POST /agent/executions/{id}/cancel`.
pub async fn cancel(pool: &PgPool, execution_id: &str) -> Result<CancelOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = cancel_locked(&mut tx, execution_id, TerminalReason::Cancelled).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Cancels every unfinished execution of a thread (release with `cancel_inflight`).
pub async fn cancel_thread_inflight(
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
        cancel_locked(conn, id, TerminalReason::Released).await?;
    }
    Ok(ids)
}
