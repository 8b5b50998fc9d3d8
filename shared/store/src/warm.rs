//! `warm_sandboxes`: sandboxes started ahead of demand for the default harness.

use crate::StoreError;
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;

/// Claims the oldest ready warm sandbox of `harness` for `thread_key`.
pub async fn claim_ready(
    pool: &PgPool,
    harness: &str,
    thread_key: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE warm_sandboxes SET state = 'claimed', claimed_by_thread = $2, claimed_at = now()
         WHERE sandbox_id = (
             SELECT sandbox_id FROM warm_sandboxes WHERE state = 'ready' AND harness = $1
             ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
         RETURNING sandbox_id",
    )
    .bind(harness)
    .bind(thread_key)
    .fetch_optional(pool)
    .await?)
}

/// How many ready warm sandboxes of `harness` exist.
pub async fn count_ready(pool: &PgPool, harness: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM warm_sandboxes WHERE state = 'ready' AND harness = $1",
    )
    .bind(harness)
    .fetch_one(pool)
    .await?)
}

/// Records a freshly created warm sandbox as ready.
pub async fn insert_ready(
    pool: &PgPool,
    sandbox_id: &str,
    harness: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO warm_sandboxes (sandbox_id, harness, state) VALUES ($1, $2, 'ready') ON CONFLICT DO NOTHING")
        .bind(sandbox_id)
        .bind(harness)
        .execute(pool)
        .await?;
    Ok(())
}

/// Ready warm sandboxes older than `max_age` (to recycle), claimed atomically for removal.
pub async fn take_expired(pool: &PgPool, max_age: Duration) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "DELETE FROM warm_sandboxes WHERE sandbox_id IN (
             SELECT sandbox_id FROM warm_sandboxes
             WHERE state = 'ready' AND created_at < now() - make_interval(secs => $1)
             FOR UPDATE SKIP LOCKED)
         RETURNING sandbox_id",
    )
    .bind(max_age.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Forgets a warm sandbox (stopped, or failed to start).
pub async fn remove(pool: &PgPool, sandbox_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM warm_sandboxes WHERE sandbox_id = $1")
        .bind(sandbox_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// One warm sandbox, for `GET /agent/pool`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WarmSandbox {
    pub sandbox_id: String,
    pub harness: String,
    pub state: String,
    pub claimed_by_thread: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub claimed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every warm sandbox row, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<WarmSandbox>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT sandbox_id, harness, state, claimed_by_thread, created_at, claimed_at
         FROM warm_sandboxes ORDER BY created_at DESC LIMIT 500",
    )
    .fetch_all(pool)
    .await?)
}
