//! Read models of threads: status of one, and a listing.

use crate::error::{column, optional_column};
use crate::StoreError;
use centaur_core::{ExecutionStatus, Harness, TerminalReason};
use serde::Serialize;
use sqlx::PgPool;

/// One thread in a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ThreadSummary {
    pub thread_key: String,
    pub assignment_generation: i64,
    pub harness: Harness,
    /// The thread's repository (normal form), if any.
    pub repo: Option<String>,
    /// The latest assignment's state: `active` or `released`.
    pub state: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub latest_execution_id: Option<String>,
    pub latest_execution_status: Option<ExecutionStatus>,
    /// Tokens the thread's retained executions reported (see [`crate::usage`]).
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// A [`ThreadSummary`] as stored: the harness and status columns as text.
#[derive(sqlx::FromRow)]
struct ThreadSummaryRow {
    thread_key: String,
    assignment_generation: i64,
    harness: String,
    repo: Option<String>,
    state: String,
    updated_at: chrono::DateTime<chrono::Utc>,
    latest_execution_id: Option<String>,
    latest_execution_status: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
}

impl TryFrom<ThreadSummaryRow> for ThreadSummary {
    type Error = StoreError;
    fn try_from(row: ThreadSummaryRow) -> Result<Self, StoreError> {
        Ok(ThreadSummary {
            thread_key: row.thread_key,
            assignment_generation: row.assignment_generation,
            harness: column("runtime_assignments.harness", row.harness)?,
            repo: row.repo,
            state: row.state,
            updated_at: row.updated_at,
            latest_execution_id: row.latest_execution_id,
            latest_execution_status: optional_column(
                "executions.status",
                row.latest_execution_status,
            )?,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
        })
    }
}

/// Threads by most recent assignment change, newest first.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<ThreadSummary>, StoreError> {
    let rows: Vec<ThreadSummaryRow> = sqlx::query_as(
        "SELECT page.*, usage.input_tokens, usage.output_tokens FROM (
             SELECT * FROM (
                 SELECT DISTINCT ON (a.thread_key) a.thread_key, a.assignment_generation, a.harness, a.repo, a.state,
                        a.updated_at, e.execution_id AS latest_execution_id, e.status AS latest_execution_status
                 FROM runtime_assignments a
                 LEFT JOIN LATERAL (SELECT execution_id, status FROM executions x
                                    WHERE x.thread_key = a.thread_key ORDER BY seq DESC LIMIT 1) e ON true
                 ORDER BY a.thread_key, a.assignment_generation DESC) latest
             ORDER BY updated_at DESC LIMIT $1) page
         CROSS JOIN LATERAL (
             SELECT COALESCE(sum(u.input_tokens), 0)::bigint AS input_tokens,
                    COALESCE(sum(u.output_tokens), 0)::bigint AS output_tokens
             FROM execution_usage u WHERE u.thread_key = page.thread_key) usage
         ORDER BY page.updated_at DESC",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(ThreadSummary::try_from).collect()
}

/// A thread's latest assignment, as `GET /agent/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AssignmentStatus {
    pub assignment_generation: i64,
    pub harness: Harness,
    /// `active` or `released`.
    pub state: String,
    pub repo: Option<String>,
}

/// A thread's latest execution, as `GET /agent/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LatestExecution {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub terminal_reason: Option<TerminalReason>,
    pub error_text: Option<String>,
}

/// A thread's sandbox session, as `GET /agent/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SandboxStatus {
    pub sandbox_id: String,
    pub harness: Harness,
    pub state: String,
}

/// `GET /agent/status`: one thread at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ThreadStatus {
    pub ok: bool,
    pub thread_key: String,
    /// The latest assignment (active or released); none for a thread never spawned.
    pub assignment: Option<AssignmentStatus>,
    /// True while the latest execution is unfinished.
    pub busy: bool,
    pub latest_execution: Option<LatestExecution>,
    /// Messages no execution has carried yet.
    pub pending_messages: i64,
    pub sandbox: Option<SandboxStatus>,
    /// Tokens the thread's retained executions reported.
    pub usage: crate::usage::UsageTotal,
}

/// `GET /agent/status`: the assignment, the latest execution, undelivered messages, the
/// sandbox session and the token usage of a thread.
pub async fn status(pool: &PgPool, thread_key: &str) -> Result<ThreadStatus, StoreError> {
    let assignment: Option<(i64, String, String, Option<String>)> = sqlx::query_as(
        "SELECT assignment_generation, harness, state, repo FROM runtime_assignments
         WHERE thread_key = $1 ORDER BY assignment_generation DESC LIMIT 1",
    )
    .bind(thread_key)
    .fetch_optional(pool)
    .await?;
    let latest: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT execution_id, status, terminal_reason, error_text FROM executions
         WHERE thread_key = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(thread_key)
    .fetch_optional(pool)
    .await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE thread_key = $1 AND delivered_execution_id IS NULL",
    )
    .bind(thread_key)
    .fetch_one(pool)
    .await?;
    let session: Option<(String, String, String)> = sqlx::query_as(
        "SELECT sandbox_id, harness, state FROM sandbox_sessions WHERE thread_key = $1",
    )
    .bind(thread_key)
    .fetch_optional(pool)
    .await?;
    let usage = crate::usage::for_thread(pool, thread_key).await?;
    let assignment = assignment
        .map(
            |(assignment_generation, harness, state, repo)| -> Result<_, StoreError> {
                Ok(AssignmentStatus {
                    assignment_generation,
                    harness: column("runtime_assignments.harness", harness)?,
                    state,
                    repo,
                })
            },
        )
        .transpose()?;
    let latest_execution = latest
        .map(
            |(execution_id, status, terminal_reason, error_text)| -> Result<_, StoreError> {
                Ok(LatestExecution {
                    execution_id,
                    status: column("executions.status", status)?,
                    terminal_reason: optional_column(
                        "executions.terminal_reason",
                        terminal_reason,
                    )?,
                    error_text,
                })
            },
        )
        .transpose()?;
    let sandbox = session
        .map(|(sandbox_id, harness, state)| -> Result<_, StoreError> {
            Ok(SandboxStatus {
                sandbox_id,
                harness: column("sandbox_sessions.harness", harness)?,
                state,
            })
        })
        .transpose()?;
    Ok(ThreadStatus {
        ok: true,
        thread_key: thread_key.to_owned(),
        assignment,
        busy: latest_execution
            .as_ref()
            .is_some_and(|latest| !latest.status.is_terminal()),
        latest_execution,
        pending_messages: pending,
        sandbox,
        usage,
    })
}
