//! The durable record of a start retry: a turn whose harness failed to start is sent once
//! more to a fresh sandbox, and the `start_retry` event says so (the first failure, the
//! fresh sandbox) so that a dispatcher that reclaims the execution continues the retry
//! instead of starting another. Harness events stored after that event belong to the
//! fresh sandbox (whose `seq` numbering starts again at 1).

use crate::dispatch::Lease;
use crate::events::{self, kinds};
use crate::wakeups;
use crate::StoreError;
use serde_json::{json, Value};
use sqlx::PgPool;

/// An execution's recorded start retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRetry {
    /// The `start_retry` event: harness events after it come from the fresh sandbox.
    pub event_id: i64,
    /// The fresh sandbox the turn is sent to.
    pub sandbox_id: String,
    /// What the first sandbox reported (`<step>: <cause>`).
    pub first_failure: String,
}

/// Records the retry of the execution `holder` holds in `sandbox_id`, in one statement
/// fenced by the lease, unless a retry was recorded before. `None`: nothing was written
/// (the lease was lost, or the execution was already retried).
pub async fn record(
    pool: &PgPool,
    holder: &Lease,
    sandbox_id: &str,
    first_failure: &str,
) -> Result<Option<StartRetry>, StoreError> {
    let body = json!({"sandbox_id": sandbox_id, "first_failure": first_failure});
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT thread_key, execution_id, '{}' AS event_kind, $4::jsonb AS event_json,
                    1 AS ord
             FROM held",
            kinds::START_RETRY
        ),
    );
    let event_id: Option<i64> = sqlx::query_scalar(&format!(
        "WITH held AS (
             UPDATE executions SET updated_at = now()
             WHERE execution_id = $1 AND worker_id = $2 AND attempt = $3
               AND status IN ('running','cancel_requested')
               AND NOT EXISTS (SELECT 1 FROM execution_events
                               WHERE execution_id = $1 AND event_kind = '{}')
             RETURNING thread_key, execution_id),
         {trail}
         SELECT event_id FROM trail",
        kinds::START_RETRY
    ))
    .bind(&holder.execution_id)
    .bind(&holder.worker_id)
    .bind(holder.attempt)
    .bind(&body)
    .fetch_optional(pool)
    .await?;
    if event_id.is_some() {
        wakeups::announce(pool, &[&holder.thread_key], None).await;
    }
    Ok(event_id.map(|event_id| StartRetry {
        event_id,
        sandbox_id: sandbox_id.to_owned(),
        first_failure: first_failure.to_owned(),
    }))
}

/// The execution's start retry, if one was recorded.
pub async fn load(pool: &PgPool, execution_id: &str) -> Result<Option<StartRetry>, StoreError> {
    let row: Option<(i64, Value)> = sqlx::query_as(
        "SELECT event_id, event_json FROM execution_events
         WHERE execution_id = $1 AND event_kind = $2 ORDER BY event_id LIMIT 1",
    )
    .bind(execution_id)
    .bind(kinds::START_RETRY)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(event_id, body)| StartRetry {
        event_id,
        sandbox_id: body["sandbox_id"].as_str().unwrap_or_default().to_owned(),
        first_failure: body["first_failure"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }))
}

/// What was stored of the turn's current attempt (harness events after `after_event_id`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptRecord {
    /// The highest harness event `seq` stored (0 when none).
    pub max_seq: u64,
    /// The stored events that decide whether the attempt failed to start — errors, model
    /// output (assistant, tool, command) and the end of the turn — oldest first, at most
    /// [`ATTEMPT_EVENTS_LIMIT`].
    pub events: Vec<Value>,
}

/// At most this many deciding events are read back (the first model output settles it).
pub const ATTEMPT_EVENTS_LIMIT: i64 = 256;

/// Reads back the current attempt of `execution_id` (after a re-attach).
pub async fn attempt_record(
    pool: &PgPool,
    execution_id: &str,
    after_event_id: i64,
) -> Result<AttemptRecord, StoreError> {
    let max_seq: Option<i64> = sqlx::query_scalar(
        "SELECT max((event_json->>'seq')::bigint) FROM execution_events
         WHERE execution_id = $1 AND event_kind = 'harness_event' AND event_id > $2",
    )
    .bind(execution_id)
    .bind(after_event_id)
    .fetch_one(pool)
    .await?;
    let events: Vec<Value> = sqlx::query_scalar(
        "SELECT event_json FROM execution_events
         WHERE execution_id = $1 AND event_kind = 'harness_event' AND event_id > $2
           AND event_json->>'type' IN ('error','assistant.delta','assistant.message',
                                       'tool.call','tool.result','command','turn.done')
         ORDER BY event_id LIMIT $3",
    )
    .bind(execution_id)
    .bind(after_event_id)
    .bind(ATTEMPT_EVENTS_LIMIT)
    .fetch_all(pool)
    .await?;
    Ok(AttemptRecord {
        max_seq: max_seq.unwrap_or(0).max(0) as u64,
        events,
    })
}
