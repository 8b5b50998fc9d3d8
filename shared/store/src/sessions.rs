//! `sandbox_sessions`: which sandbox serves which thread, and the harness's own session id
//! to resume on the next turn.

use crate::StoreError;
use sqlx::PgPool;
use std::time::Duration;

/// A thread's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SandboxSession {
    pub thread_key: String,
    pub sandbox_id: String,
    pub harness: String,
    pub state: String,
    pub agent_thread_id: Option<String>,
}

/// The thread's live session, if any.
pub async fn live(pool: &PgPool, thread_key: &str) -> Result<Option<SandboxSession>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT thread_key, sandbox_id, harness, state, agent_thread_id FROM sandbox_sessions
         WHERE thread_key = $1 AND state = 'live'",
    )
    .bind(thread_key)
    .fetch_optional(pool)
    .await?)
}

/// Makes `sandbox_id` the thread's live sandbox (a new sandbox starts a new harness session).
pub async fn set_live(
    pool: &PgPool,
    thread_key: &str,
    sandbox_id: &str,
    harness: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sandbox_sessions (thread_key, sandbox_id, harness, state)
         VALUES ($1, $2, $3, 'live')
         ON CONFLICT (thread_key) DO UPDATE SET
             agent_thread_id = CASE WHEN sandbox_sessions.sandbox_id = EXCLUDED.sandbox_id
                                    THEN sandbox_sessions.agent_thread_id END,
             sandbox_id = EXCLUDED.sandbox_id, harness = EXCLUDED.harness, state = 'live',
             updated_at = now(), last_used_at = now()",
    )
    .bind(thread_key)
    .bind(sandbox_id)
    .bind(harness)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the harness's session id after a turn that ran in `sandbox_id` and marks the
/// session used — only while the thread's session still names that sandbox, so a harness
/// session id never lands on the row of another sandbox (which could not resume it).
pub async fn record_turn(
    pool: &PgPool,
    thread_key: &str,
    sandbox_id: &str,
    agent_thread_id: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sandbox_sessions SET agent_thread_id = COALESCE($3, agent_thread_id),
             last_used_at = now(), updated_at = now()
         WHERE thread_key = $1 AND sandbox_id = $2",
    )
    .bind(thread_key)
    .bind(sandbox_id)
    .bind(agent_thread_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The harness session id to resume in `sandbox_id`: the thread's live session's, only if
/// that session is `sandbox_id`'s (a session id from another sandbox is never returned).
pub async fn resumable_agent_thread(
    pool: &PgPool,
    thread_key: &str,
    sandbox_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(live(pool, thread_key)
        .await?
        .filter(|session| session.sandbox_id == sandbox_id)
        .and_then(|session| session.agent_thread_id))
}

/// Marks a thread's session `stopped`, `lost` or `failed` (only if it still names
/// `sandbox_id`).
pub async fn end(
    pool: &PgPool,
    thread_key: &str,
    sandbox_id: &str,
    state: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sandbox_sessions SET state = $3, updated_at = now()
         WHERE thread_key = $1 AND sandbox_id = $2",
    )
    .bind(thread_key)
    .bind(sandbox_id)
    .bind(state)
    .execute(pool)
    .await?;
    Ok(())
}

/// Live sessions to reap: unused for `idle_ttl`, or whose thread has no active assignment,
/// plus the least recently used beyond `max_live` — never one with a running execution.
pub async fn reapable(
    pool: &PgPool,
    idle_ttl: Duration,
    max_live: i64,
) -> Result<Vec<SandboxSession>, StoreError> {
    Ok(sqlx::query_as(
        "WITH live AS (
             SELECT s.*, row_number() OVER (ORDER BY s.last_used_at DESC) AS recency
             FROM sandbox_sessions s WHERE s.state = 'live')
         SELECT thread_key, sandbox_id, harness, state, agent_thread_id FROM live
         WHERE (last_used_at < now() - make_interval(secs => $1)
                OR recency > $2
                OR NOT EXISTS (SELECT 1 FROM runtime_assignments a
                               WHERE a.thread_key = live.thread_key AND a.state = 'active'))
           AND NOT EXISTS (SELECT 1 FROM executions e
                           WHERE e.thread_key = live.thread_key
                             AND e.status IN ('running','cancel_requested','retry_wait'))",
    )
    .bind(idle_ttl.as_secs_f64())
    .bind(max_live)
    .fetch_all(pool)
    .await?)
}

/// Every sandbox id some row still owns (live sessions, warm sandboxes, unfinished
/// executions): anything else a backend lists is an orphan.
pub async fn owned_sandbox_ids(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT sandbox_id FROM sandbox_sessions WHERE state IN ('starting','live')
         UNION SELECT sandbox_id FROM warm_sandboxes WHERE state IN ('ready','claimed')
         UNION SELECT sandbox_id FROM executions
               WHERE sandbox_id IS NOT NULL
                 AND status NOT IN ('completed','failed_permanent','cancelled')",
    )
    .fetch_all(pool)
    .await?)
}
