//! The event trail: `execution_events`, appended by the API and the dispatcher.

use crate::StoreError;
use centaur_core::api::EventView;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};

/// Event kinds (the `event_kind` CHECK constraint lists the same names).
pub mod kinds {
    pub const MESSAGE: &str = "message";
    pub const EXECUTION_STATE: &str = "execution_state";
    pub const EXECUTION_STARTED: &str = "execution_started";
    pub const HARNESS_EVENT: &str = "harness_event";
    pub const EXECUTION_SUMMARY: &str = "execution_summary";
    pub const FINAL_DELIVERY_READY: &str = "final_delivery_ready";
    pub const FINAL_DELIVERY_DELIVERED: &str = "final_delivery_delivered";
    pub const FINAL_DELIVERY_FAILED: &str = "final_delivery_failed";
    /// A turn whose harness failed to start is retried in a fresh sandbox (at most once).
    pub const START_RETRY: &str = "start_retry";
}

/// Appends one event and returns its id. Pass a transaction to make it atomic with a
/// state change.
pub async fn append<'e>(
    executor: impl PgExecutor<'e>,
    thread_key: &str,
    execution_id: Option<&str>,
    kind: &str,
    json: &Value,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO execution_events (thread_key, execution_id, event_kind, event_json)
         VALUES ($1, $2, $3, $4) RETURNING event_id",
    )
    .bind(thread_key)
    .bind(execution_id)
    .bind(kind)
    .bind(json)
    .fetch_one(executor)
    .await?;
    Ok(id)
}

/// Appends many events of one execution in one statement (harness output batches).
pub async fn append_batch<'e>(
    executor: impl PgExecutor<'e>,
    thread_key: &str,
    execution_id: &str,
    kind: &str,
    jsons: &[Value],
) -> Result<(), StoreError> {
    if jsons.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO execution_events (thread_key, execution_id, event_kind, event_json)
         SELECT $1, $2, $3, e FROM UNNEST($4::jsonb[]) WITH ORDINALITY AS t(e, n) ORDER BY n",
    )
    .bind(thread_key)
    .bind(execution_id)
    .bind(kind)
    .bind(jsons)
    .execute(executor)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: i64,
    event_kind: String,
    event_json: Value,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<EventRow> for EventView {
    fn from(row: EventRow) -> Self {
        EventView {
            event_id: row.event_id,
            event_kind: row.event_kind,
            event_json: row.event_json,
            created_at: row.created_at,
        }
    }
}

/// Events of one execution, oldest first.
pub async fn for_execution(
    pool: &PgPool,
    execution_id: &str,
) -> Result<Vec<EventView>, StoreError> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT event_id, event_kind, event_json, created_at FROM execution_events
         WHERE execution_id = $1 ORDER BY event_id",
    )
    .bind(execution_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(EventView::from).collect())
}

/// Events of a thread after `after_event_id` (optionally only one execution's), oldest
/// first, at most `limit`.
pub async fn for_thread_after(
    pool: &PgPool,
    thread_key: &str,
    after_event_id: i64,
    execution_id: Option<&str>,
    limit: i64,
) -> Result<Vec<EventView>, StoreError> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT event_id, event_kind, event_json, created_at FROM execution_events
         WHERE thread_key = $1 AND event_id > $2 AND ($3::text IS NULL OR execution_id = $3)
         ORDER BY event_id LIMIT $4",
    )
    .bind(thread_key)
    .bind(after_event_id)
    .bind(execution_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(EventView::from).collect())
}
