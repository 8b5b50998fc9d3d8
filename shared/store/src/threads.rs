//! Read models of threads: status of one, and a listing.

use crate::StoreError;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;

/// One thread in a listing.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ThreadSummary {
    pub thread_key: String,
    pub assignment_generation: i64,
    pub harness: String,
    /// The thread's repository (normal form), if any.
    pub repo: Option<String>,
    pub state: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub latest_execution_id: Option<String>,
    pub latest_execution_status: Option<String>,
    /// Tokens the thread's retained executions reported (see [`crate::usage`]).
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// Threads by most recent assignment change, newest first.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<ThreadSummary>, StoreError> {
    Ok(sqlx::query_as(
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
    .await?)
}

/// `GET /agent/status`: the assignment, the latest execution, undelivered messages, the
/// sandbox session and the token usage of a thread.
pub async fn status(pool: &PgPool, thread_key: &str) -> Result<Value, StoreError> {
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
    let running = latest.as_ref().is_some_and(|(_, status, _, _)| {
        matches!(
            status.as_str(),
            "queued" | "running" | "retry_wait" | "cancel_requested"
        )
    });
    Ok(json!({
        "ok": true,
        "thread_key": thread_key,
        "assignment": assignment.map(|(generation, harness, state, repo)| json!({
            "assignment_generation": generation, "harness": harness, "state": state, "repo": repo,
        })),
        "busy": running,
        "latest_execution": latest.map(|(id, status, reason, error)| json!({
            "execution_id": id, "status": status, "terminal_reason": reason, "error_text": error,
        })),
        "pending_messages": pending,
        "sandbox": session.map(|(id, harness, state)| json!({"sandbox_id": id, "harness": harness, "state": state})),
        "usage": usage,
    }))
}
