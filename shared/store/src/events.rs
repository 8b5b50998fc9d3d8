//! The event trail: `execution_events`, appended by the API and the dispatcher. Every
//! insert gets its `thread_seq` (gap-free per thread, in commit order) from the thread's
//! counter, bumped once per statement by [`insert_cte`] (a row inserted without one is
//! numbered by the trigger of migration 0007); the writer notifies [`CHANNEL`] after its
//! commit ([`crate::wakeups::announce`]).

use crate::StoreError;
use centaur_core::api::EventView;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};

/// The LISTEN/NOTIFY channel event writers notify after commit, with the thread key as
/// payload.
pub const CHANNEL: &str = "centaur_events";

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

/// The event trail's one INSERT, as CTEs for a `WITH` clause (the last one named `name`):
/// appends the rows `source` yields — columns `thread_key, execution_id, event_kind,
/// event_json, ord`, stored in `ord` order — and returns their `event_id`s. Every writer
/// of `execution_events` goes through it (a fenced transition puts it beside its UPDATE, so
/// the state change and its event are one statement): a column the trail gains is added
/// here once. The rows are numbered here (`thread_seq`): one bump of each thread's counter
/// by its number of rows, which also locks the counter until the commit, so a thread's
/// events commit in `thread_seq` order (migration 0014). A statement of several threads
/// locks their counters in `thread_key` order, so two never wait on each other in a cycle. The writer announces the thread
/// after its commit.
pub fn insert_cte(name: &str, source: &str) -> String {
    format!(
        "{name}_rows AS (
             SELECT thread_key, execution_id, event_kind, event_json, ord,
                    row_number() OVER (PARTITION BY thread_key ORDER BY ord) AS nth,
                    count(*) OVER (PARTITION BY thread_key) AS of_thread
             FROM ({source}) AS new_events),
         {name}_counters AS (
             INSERT INTO thread_event_counters AS c (thread_key, last_seq)
             SELECT thread_key, max(of_thread) FROM {name}_rows GROUP BY thread_key
             ORDER BY thread_key
             ON CONFLICT (thread_key) DO UPDATE SET last_seq = c.last_seq + EXCLUDED.last_seq
             RETURNING thread_key, last_seq),
         {name} AS (
             INSERT INTO execution_events
                 (thread_key, execution_id, event_kind, event_json, thread_seq)
             SELECT r.thread_key, r.execution_id, r.event_kind, r.event_json,
                    c.last_seq - r.of_thread + r.nth
             FROM {name}_rows r JOIN {name}_counters c USING (thread_key)
             ORDER BY r.ord
             RETURNING event_id, thread_key)"
    )
}

/// Appends one event and returns its id. Pass a transaction to make it atomic with a
/// state change; followers learn of it from [`crate::wakeups::announce`] after the commit.
pub async fn append<'e>(
    executor: impl PgExecutor<'e>,
    thread_key: &str,
    execution_id: Option<&str>,
    kind: &str,
    json: &Value,
) -> Result<i64, StoreError> {
    let insert = insert_cte(
        "appended",
        "SELECT $1::text AS thread_key, $2::text AS execution_id, $3::text AS event_kind,
                $4::jsonb AS event_json, 1 AS ord",
    );
    let id: i64 = sqlx::query_scalar(&format!("WITH {insert} SELECT event_id FROM appended"))
        .bind(thread_key)
        .bind(execution_id)
        .bind(kind)
        .bind(json)
        .fetch_one(executor)
        .await?;
    Ok(id)
}

/// Appends many events of one execution in one statement, in order.
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
    let insert = insert_cte(
        "appended",
        "SELECT $1::text AS thread_key, $2::text AS execution_id, $3::text AS event_kind,
                e AS event_json, n AS ord
         FROM UNNEST($4::jsonb[]) WITH ORDINALITY AS t(e, n)",
    );
    sqlx::query(&format!("WITH {insert} SELECT count(*) FROM appended"))
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
    thread_seq: i64,
    event_kind: String,
    event_json: Value,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<EventRow> for EventView {
    fn from(row: EventRow) -> Self {
        EventView {
            event_id: row.event_id,
            thread_seq: row.thread_seq,
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
        "SELECT event_id, thread_seq, event_kind, event_json, created_at FROM execution_events
         WHERE execution_id = $1 ORDER BY thread_seq",
    )
    .bind(execution_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(EventView::from).collect())
}

/// Events of a thread whose `thread_seq` is after `after_seq` (optionally only one
/// execution's), oldest first, at most `limit`. A follower that passes the last
/// `thread_seq` it saw never skips an event, however late it committed.
pub async fn for_thread_after(
    pool: &PgPool,
    thread_key: &str,
    after_seq: i64,
    execution_id: Option<&str>,
    limit: i64,
) -> Result<Vec<EventView>, StoreError> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT event_id, thread_seq, event_kind, event_json, created_at FROM execution_events
         WHERE thread_key = $1 AND thread_seq > $2 AND ($3::text IS NULL OR execution_id = $3)
         ORDER BY thread_seq LIMIT $4",
    )
    .bind(thread_key)
    .bind(after_seq)
    .bind(execution_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(EventView::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    /// True once some backend waits on a lock (the second writer is queued behind the first).
    async fn a_writer_is_waiting_on_a_lock(pool: &PgPool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                WHERE wait_event_type = 'Lock' AND datname = current_database())",
            )
            .fetch_one(pool)
            .await
            .expect("pg_stat_activity");
            if waiting || std::time::Instant::now() > deadline {
                return waiting;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn an_event_that_commits_late_is_never_skipped_by_a_follower(pool: PgPool) {
        let mut slow = pool.begin().await.expect("tx");
        append(&mut *slow, "t1", None, kinds::MESSAGE, &json!({"n": 1}))
            .await
            .expect("first");
        let fast_pool = pool.clone();
        let fast = tokio::spawn(async move {
            append(&fast_pool, "t1", None, kinds::MESSAGE, &json!({"n": 2}))
                .await
                .expect("second")
        });
        assert!(a_writer_is_waiting_on_a_lock(&pool).await);
        let seen = for_thread_after(&pool, "t1", 0, None, 100)
            .await
            .expect("read");
        assert!(
            seen.is_empty(),
            "nothing is visible before the first commits: {seen:?}"
        );
        slow.commit().await.expect("commit");
        fast.await.expect("joined");
        let seen = for_thread_after(&pool, "t1", 0, None, 100)
            .await
            .expect("read");
        let order: Vec<(i64, i64)> = seen
            .iter()
            .map(|e| (e.thread_seq, e.event_json["n"].as_i64().unwrap_or(0)))
            .collect();
        assert_eq!(order, [(1, 1), (2, 2)]);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_follower_of_concurrent_writers_sees_every_event_once_in_order(pool: PgPool) {
        const WRITERS: i64 = 8;
        const EACH: i64 = 25;
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for n in 0..EACH {
                        let mut tx = pool.begin().await.expect("tx");
                        for part in 0..2 {
                            let event = json!({"writer": writer, "n": n, "part": part});
                            append(&mut *tx, "t1", None, kinds::MESSAGE, &event)
                                .await
                                .expect("append");
                        }
                        tx.commit().await.expect("commit");
                    }
                })
            })
            .collect();
        let mut after = 0;
        let mut seen = Vec::new();
        let total = WRITERS * EACH * 2;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while (seen.len() as i64) < total && std::time::Instant::now() < deadline {
            for event in for_thread_after(&pool, "t1", after, None, 50)
                .await
                .expect("read")
            {
                after = event.thread_seq;
                seen.push(event.thread_seq);
            }
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        assert_eq!(
            seen,
            (1..=total).collect::<Vec<_>>(),
            "every event once, in order"
        );
    }
}
