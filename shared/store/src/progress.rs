//! Live progress of Slack turns (slack.md "Live progress"), kept on the turn's outbox row
//! so any dispatcher can carry it on: the status message's `ts` once posted, what it shows,
//! when it may next be updated, and a short lease held while one updater talks to Slack.
//! [`crate::outbox::claim`] skips a row while that lease is live, so the final answer is
//! always the last write to the status message.

use crate::StoreError;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;

/// A running Slack turn whose status message is due for a post or an update.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProgressRow {
    pub execution_id: String,
    pub thread_key: String,
    /// `{platform, channel, thread_ts, team_id, …}`.
    pub delivery: Value,
    /// The status message, once posted.
    pub status_ts: Option<String>,
    /// An updater set out to post the status message and did not record it (it died).
    pub status_posting: bool,
    /// What the status message shows now.
    pub progress_text: Option<String>,
    /// The execution's status (`queued`, `running`, …).
    pub execution_status: String,
}

/// Claims up to `limit` Slack turns that are still running, were queued at least `after`
/// ago and are due for progress, holding each for `lease`.
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    after: Duration,
    lease: Duration,
) -> Result<Vec<ProgressRow>, StoreError> {
    Ok(sqlx::query_as(
        "WITH due AS (
             SELECT o.execution_id FROM delivery_outbox o
             JOIN executions e ON e.execution_id = o.execution_id
             WHERE o.state = 'awaiting_terminal' AND o.delivery->>'platform' = 'slack'
               AND (o.progress_owner IS NULL OR o.progress_lease_expires_at < now())
               AND (o.progress_next_at IS NULL OR o.progress_next_at <= now())
               AND e.created_at <= now() - make_interval(secs => $3)
               AND e.status NOT IN ('completed','failed_permanent','cancelled')
             ORDER BY o.progress_next_at NULLS FIRST, o.created_at
             LIMIT $2
             FOR UPDATE OF o SKIP LOCKED)
         UPDATE delivery_outbox o
         SET progress_owner = $1, progress_lease_expires_at = now() + make_interval(secs => $4)
         FROM due, executions e
         WHERE o.execution_id = due.execution_id AND e.execution_id = o.execution_id
         RETURNING o.execution_id, o.thread_key, o.delivery, o.status_ts,
                   o.status_posting_at IS NOT NULL AS status_posting, o.progress_text,
                   e.status AS execution_status",
    )
    .bind(owner)
    .bind(limit)
    .bind(after.as_secs_f64())
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Records that `owner` is about to post the status message; false if the turn already
/// ended (its answer is on its way: no status message) or the lease was lost.
pub async fn mark_posting(
    pool: &PgPool,
    execution_id: &str,
    owner: &str,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE delivery_outbox SET status_posting_at = now(), updated_at = now()
         WHERE execution_id = $1 AND progress_owner = $2 AND state = 'awaiting_terminal'",
    )
    .bind(execution_id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records the posted status message and what it shows; false if `owner` lost the lease.
pub async fn record_status(
    pool: &PgPool,
    execution_id: &str,
    owner: &str,
    ts: &str,
    text: &str,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE delivery_outbox SET status_ts = $3, progress_text = $4, updated_at = now()
         WHERE execution_id = $1 AND progress_owner = $2",
    )
    .bind(execution_id)
    .bind(owner)
    .bind(ts)
    .bind(text)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Ends `owner`'s progress lease: the status message now shows `text` (if given) and is
/// next due after `next_in`.
pub async fn release(
    pool: &PgPool,
    execution_id: &str,
    owner: &str,
    text: Option<&str>,
    next_in: Duration,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE delivery_outbox SET progress_owner = NULL, progress_lease_expires_at = NULL,
             progress_text = COALESCE($3, progress_text),
             progress_next_at = now() + make_interval(secs => $4)
         WHERE execution_id = $1 AND progress_owner = $2",
    )
    .bind(execution_id)
    .bind(owner)
    .bind(text)
    .bind(next_in.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// The newest `limit` harness events of an execution, newest first.
pub async fn recent_harness_events(
    pool: &PgPool,
    execution_id: &str,
    limit: i64,
) -> Result<Vec<Value>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT event_json FROM execution_events
         WHERE execution_id = $1 AND event_kind = 'harness_event'
         ORDER BY event_id DESC LIMIT $2",
    )
    .bind(execution_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executions::{self, NewExecution};
    use crate::messages::NewMessage;
    use crate::outbox;
    use serde_json::json;

    const LEASE: Duration = Duration::from_secs(30);

    async fn slack_turn(pool: &PgPool) -> String {
        let request = NewExecution {
            thread_key: "slack:T1:C1:1.0".into(),
            assignment_generation: None,
            execute_id: None,
            delivery: centaur_core::api::Delivery::new("slack")
                .with("channel", "C1")
                .with("thread_ts", "1.0"),
            metadata: json!({}),
            request_hash: "h".into(),
            first_message: Some(NewMessage::user_text("hello", "h".into())),
            harness: Some(centaur_core::Harness::Echo),
            actor: crate::audit::Actor::local_operator(None),
        };
        let (created, _) = executions::create(pool, &request, centaur_core::Harness::Codex)
            .await
            .unwrap();
        created.execution_id
    }

    async fn finish(pool: &PgPool, id: &str) {
        sqlx::query(
            "UPDATE delivery_outbox SET state = 'pending', payload = '{\"text\": \"done\"}'
             WHERE execution_id = $1",
        )
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_turn_is_due_for_progress_only_after_the_delay_and_while_it_runs(pool: PgPool) {
        let id = slack_turn(&pool).await;
        let later = Duration::from_secs(3600);
        assert!(claim(&pool, "w1", 10, later, LEASE)
            .await
            .unwrap()
            .is_empty());
        let claimed = claim(&pool, "w1", 10, Duration::ZERO, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].execution_status, "queued");
        assert_eq!(claimed[0].status_ts, None);
        assert!(
            claim(&pool, "w2", 10, Duration::ZERO, LEASE)
                .await
                .unwrap()
                .is_empty(),
            "leased to w1"
        );
        assert!(mark_posting(&pool, &id, "w1").await.unwrap());
        assert!(record_status(&pool, &id, "w1", "9.1", "Working…")
            .await
            .unwrap());
        release(&pool, &id, "w1", None, Duration::ZERO)
            .await
            .unwrap();
        let again = claim(&pool, "w2", 10, Duration::ZERO, LEASE).await.unwrap();
        assert_eq!(again[0].status_ts.as_deref(), Some("9.1"));
        assert_eq!(again[0].progress_text.as_deref(), Some("Working…"));
        release(&pool, &id, "w2", None, Duration::ZERO)
            .await
            .unwrap();
        finish(&pool, &id).await;
        assert!(
            claim(&pool, "w1", 10, Duration::ZERO, LEASE)
                .await
                .unwrap()
                .is_empty(),
            "an ended turn gets no more progress"
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_answer_waits_for_a_progress_update_in_flight_and_replaces_the_status(
        pool: PgPool,
    ) {
        let id = slack_turn(&pool).await;
        claim(&pool, "progress", 10, Duration::ZERO, LEASE)
            .await
            .unwrap();
        assert!(mark_posting(&pool, &id, "progress").await.unwrap());
        finish(&pool, &id).await;
        assert!(
            outbox::claim(&pool, "deliverer", 10, Some("slack"), LEASE)
                .await
                .unwrap()
                .is_empty(),
            "the progress lease holds the answer back"
        );
        assert!(
            !mark_posting(&pool, &id, "progress").await.unwrap(),
            "no status message once the turn ended"
        );
        assert!(record_status(&pool, &id, "progress", "9.2", "Working…")
            .await
            .unwrap());
        release(&pool, &id, "progress", None, Duration::ZERO)
            .await
            .unwrap();
        let claimed = outbox::claim(&pool, "deliverer", 10, Some("slack"), LEASE)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].status_ts.as_deref(), Some("9.2"));
        assert!(claimed[0].status_posting);
    }
}
