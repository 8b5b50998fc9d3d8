//! `delivery_outbox`: final answers waiting to be delivered. Rows become `pending` when
//! their execution ends; a deliverer (the dispatcher's Slack loop, or an external one
//! through `/agent/final-deliveries`) claims them with a lease (`sending`), records each
//! chunk it posts, and marks them `delivered` or — after repeated or permanent failures —
//! `dead_letter`. Every outcome appends a `final_delivery_*` event to the execution.

use crate::events::{self, kinds};
use crate::wakeups;
use crate::StoreError;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

/// Delivery attempts before a row is dead-lettered.
pub const MAX_ATTEMPTS: i32 = 50;

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ClaimedDelivery {
    pub execution_id: String,
    pub thread_key: String,
    /// Where to deliver (`{platform, channel, thread_ts, …}`).
    #[schema(value_type = centaur_core::api::Delivery)]
    pub delivery: Value,
    /// What to deliver (`{text, failed?}`).
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub attempt_count: i32,
    /// Chunks already posted by earlier attempts.
    pub delivered_chunks: i32,
    pub lease_expires_at: chrono::DateTime<chrono::Utc>,
    /// True when the row was taken over from a deliverer whose lease expired mid-send:
    /// what it posted may not be recorded yet.
    pub reclaimed: bool,
    /// The `ts` of the thread's live status message, if one was posted while the turn ran:
    /// the answer replaces it (its first chunk is a `chat.update` of this message).
    pub status_ts: Option<String>,
    /// A progress updater set out to post the status message but did not record its `ts`
    /// (it died in between): look for it in the thread before posting the answer.
    pub status_posting: bool,
}

/// What the deliverer wants done after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after this delay (dead-lettered once [`MAX_ATTEMPTS`] is reached).
    After(Duration),
    /// Retrying cannot help: dead-letter now.
    Never,
}

/// Where a failed row ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedOutcome {
    RetryScheduled,
    DeadLettered,
    /// The caller did not hold the lease (it expired and another deliverer took over).
    NotOwner,
}

/// Claims up to `limit` due rows (pending and due, or sending with an expired lease),
/// optionally only for one `platform`. A row whose status message is being updated (a live
/// progress lease) waits for that update, so the answer always lands last.
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    platform: Option<&str>,
    lease: Duration,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    Ok(sqlx::query_as::<_, ClaimedDelivery>(
        "WITH due AS (
             SELECT execution_id, state AS previous_state FROM delivery_outbox
             WHERE ((state = 'pending' AND next_attempt_at <= now())
                    OR (state = 'sending' AND lease_expires_at < now()))
               AND ($3::text IS NULL OR delivery->>'platform' = $3)
               AND (progress_owner IS NULL OR progress_lease_expires_at < now())
             ORDER BY next_attempt_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         UPDATE delivery_outbox o
         SET state = 'sending', lease_owner = $1,
             lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
         FROM due WHERE o.execution_id = due.execution_id
         RETURNING o.execution_id, o.thread_key, o.delivery, o.payload, o.attempt_count,
                   o.delivered_chunks, o.lease_expires_at, due.previous_state = 'sending' AS reclaimed,
                   o.status_ts, o.status_posting_at IS NOT NULL AS status_posting",
    )
    .bind(owner)
    .bind(limit)
    .bind(platform)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Extends the lease; false if `owner` no longer holds it.
pub async fn heartbeat(
    pool: &PgPool,
    execution_id: &str,
    owner: &str,
    lease: Duration,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE delivery_outbox SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
         WHERE execution_id = $1 AND state = 'sending' AND lease_owner = $2
         RETURNING lease_expires_at",
    )
    .bind(execution_id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?)
}

/// Records that the first `chunks` chunks are posted; false if `owner` lost the lease.
pub async fn record_chunks(
    pool: &PgPool,
    execution_id: &str,
    owner: &str,
    chunks: i32,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE delivery_outbox SET delivered_chunks = GREATEST(delivered_chunks, $3), updated_at = now()
         WHERE execution_id = $1 AND state = 'sending' AND lease_owner = $2",
    )
    .bind(execution_id)
    .bind(owner)
    .bind(chunks)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Marks the row delivered and appends `final_delivery_delivered`. True if this call did
/// it or it was already delivered; false if `owner` does not hold the lease.
pub async fn delivered(
    pool: &PgPool,
    execution_id: &str,
    owner: &str,
    detail: &Value,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, i32)> = sqlx::query_as(
        "UPDATE delivery_outbox SET state = 'delivered', delivered_at = now(), lease_owner = NULL,
                lease_expires_at = NULL, last_error = NULL, updated_at = now()
         WHERE execution_id = $1 AND state = 'sending' AND lease_owner = $2
         RETURNING thread_key, attempt_count",
    )
    .bind(execution_id)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((thread_key, attempts)) = row else {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM delivery_outbox WHERE execution_id = $1")
                .bind(execution_id)
                .fetch_optional(&mut *tx)
                .await?;
        return Ok(state.as_deref() == Some("delivered"));
    };
    let mut event = json!({"attempts": attempts + 1});
    if let (Some(event), Some(detail)) = (event.as_object_mut(), detail.as_object()) {
        event.extend(detail.clone());
    }
    events::append(
        &mut *tx,
        &thread_key,
        Some(execution_id),
        kinds::FINAL_DELIVERY_DELIVERED,
        &event,
    )
    .await?;
    tx.commit().await?;
    wakeups::announce(pool, &[&thread_key], None).await;
    Ok(true)
}

/// Records a failed attempt: back to `pending` after the delay, or `dead_letter` (at
/// once for [`Retry::Never`], or on the [`MAX_ATTEMPTS`]th attempt). Appends
/// `final_delivery_failed` with the error, so the execution's trail says why.
pub async fn failed(
    pool: &PgPool,
    execution_id: &str,
    owner: &str,
    error: &str,
    retry: Retry,
) -> Result<FailedOutcome, StoreError> {
    let delay = match retry {
        Retry::After(delay) => Some(delay.as_secs_f64()),
        Retry::Never => None,
    };
    let mut tx = pool.begin().await?;
    let row: Option<(String, String, i32)> = sqlx::query_as(
        "UPDATE delivery_outbox SET
             attempt_count = attempt_count + 1,
             state = CASE WHEN $4::float8 IS NULL OR attempt_count + 1 >= $5 THEN 'dead_letter' ELSE 'pending' END,
             next_attempt_at = now() + make_interval(secs => COALESCE($4::float8, 0)),
             last_error = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE execution_id = $1 AND state = 'sending' AND lease_owner = $2
         RETURNING thread_key, state, attempt_count",
    )
    .bind(execution_id)
    .bind(owner)
    .bind(error)
    .bind(delay)
    .bind(MAX_ATTEMPTS)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((thread_key, state, attempts)) = row else {
        return Ok(FailedOutcome::NotOwner);
    };
    let dead = state == "dead_letter";
    let event = json!({
        "error": error,
        "attempts": attempts,
        "dead_letter": dead,
        "retry_in_s": if dead { Value::Null } else { json!(delay) },
    });
    events::append(
        &mut *tx,
        &thread_key,
        Some(execution_id),
        kinds::FINAL_DELIVERY_FAILED,
        &event,
    )
    .await?;
    tx.commit().await?;
    wakeups::announce(pool, &[&thread_key], None).await;
    Ok(if dead {
        FailedOutcome::DeadLettered
    } else {
        FailedOutcome::RetryScheduled
    })
}

/// The row's state and last error (for tests and operators).
pub async fn state(
    pool: &PgPool,
    execution_id: &str,
) -> Result<Option<(String, Option<String>, i32)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT state, last_error, attempt_count FROM delivery_outbox WHERE execution_id = $1",
    )
    .bind(execution_id)
    .fetch_optional(pool)
    .await?)
}
