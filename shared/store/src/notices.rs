//! `slack_notices`: the short reply a refused Slack turn gets (no execution carries it).
//! The webhook records one per Slack message; the dispatcher's deliverer claims due notices
//! with a lease, posts them and marks them `delivered`, or retries and dead-letters them like
//! answers ([`crate::outbox`]).

use crate::outbox::{FailedOutcome, Retry, MAX_ATTEMPTS};
use crate::StoreError;
use centaur_core::api::Delivery;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;

/// A notice to post.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    /// The Slack message it answers (`slack:<team>:<channel>:<ts>`): one notice each.
    pub notice_id: String,
    pub thread_key: String,
    /// `{platform: "slack", channel, thread_ts, team_id, …}`.
    pub delivery: Delivery,
    /// What to post (never blank).
    pub text: String,
}

/// Records a notice; false if this Slack message already has one.
pub async fn create(pool: &PgPool, notice: &NewNotice) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO slack_notices (notice_id, thread_key, delivery, text)
         VALUES ($1, $2, $3, $4) ON CONFLICT (notice_id) DO NOTHING",
    )
    .bind(&notice.notice_id)
    .bind(&notice.thread_key)
    .bind(sqlx::types::Json(&notice.delivery))
    .bind(&notice.text)
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// A claimed notice.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ClaimedNotice {
    pub notice_id: String,
    pub thread_key: String,
    pub delivery: Value,
    pub text: String,
    pub attempt_count: i32,
    /// Taken over from a deliverer whose lease expired mid-send: it may have posted it.
    pub reclaimed: bool,
}

/// Claims up to `limit` due notices (pending and due, or sending with an expired lease).
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    lease: Duration,
) -> Result<Vec<ClaimedNotice>, StoreError> {
    Ok(sqlx::query_as(
        "WITH due AS (
             SELECT notice_id, state AS previous_state FROM slack_notices
             WHERE (state = 'pending' AND next_attempt_at <= now())
                OR (state = 'sending' AND lease_expires_at < now())
             ORDER BY next_attempt_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         UPDATE slack_notices n
         SET state = 'sending', lease_owner = $1,
             lease_expires_at = now() + make_interval(secs => $3)
         FROM due WHERE n.notice_id = due.notice_id
         RETURNING n.notice_id, n.thread_key, n.delivery, n.text, n.attempt_count,
                   due.previous_state = 'sending' AS reclaimed",
    )
    .bind(owner)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Marks a notice posted (as message `ts`); false if `owner` no longer holds it.
pub async fn delivered(
    pool: &PgPool,
    notice_id: &str,
    owner: &str,
    ts: &str,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE slack_notices SET state = 'delivered', delivered_at = now(), posted_ts = $3,
             lease_owner = NULL, lease_expires_at = NULL, last_error = NULL
         WHERE notice_id = $1 AND state = 'sending' AND lease_owner = $2",
    )
    .bind(notice_id)
    .bind(owner)
    .bind(ts)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records a failed attempt: back to `pending` after the delay, or `dead_letter` (at once
/// for [`Retry::Never`], or on the [`MAX_ATTEMPTS`]th attempt).
pub async fn failed(
    pool: &PgPool,
    notice_id: &str,
    owner: &str,
    error: &str,
    retry: Retry,
) -> Result<FailedOutcome, StoreError> {
    let delay = match retry {
        Retry::After(delay) => Some(delay.as_secs_f64()),
        Retry::Never => None,
    };
    let state: Option<String> = sqlx::query_scalar(
        "UPDATE slack_notices SET
             attempt_count = attempt_count + 1,
             state = CASE WHEN $4::float8 IS NULL OR attempt_count + 1 >= $5 THEN 'dead_letter' ELSE 'pending' END,
             next_attempt_at = now() + make_interval(secs => COALESCE($4::float8, 0)),
             last_error = $3, lease_owner = NULL, lease_expires_at = NULL
         WHERE notice_id = $1 AND state = 'sending' AND lease_owner = $2
         RETURNING state",
    )
    .bind(notice_id)
    .bind(owner)
    .bind(error)
    .bind(delay)
    .bind(MAX_ATTEMPTS)
    .fetch_optional(pool)
    .await?;
    Ok(match state.as_deref() {
        None => FailedOutcome::NotOwner,
        Some("dead_letter") => FailedOutcome::DeadLettered,
        Some(_) => FailedOutcome::RetryScheduled,
    })
}

/// A notice's state and last error (for tests and operators).
pub async fn state(
    pool: &PgPool,
    notice_id: &str,
) -> Result<Option<(String, Option<String>, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT state, last_error, text FROM slack_notices WHERE notice_id = $1")
            .bind(notice_id)
            .fetch_optional(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> NewNotice {
        NewNotice {
            notice_id: "slack:T1:C1:2.0".into(),
            thread_key: "slack:T1:C1:1.0".into(),
            delivery: centaur_core::api::Delivery::new("slack")
                .with("channel", "C1")
                .with("thread_ts", "1.0"),
            text: "Refused: the repository is not allowed.".into(),
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn one_notice_per_message_claimed_once_and_delivered(pool: PgPool) {
        assert!(create(&pool, &notice()).await.unwrap());
        assert!(
            !create(&pool, &notice()).await.unwrap(),
            "a retry adds none"
        );
        let lease = Duration::from_secs(30);
        let claimed = claim(&pool, "w1", 10, lease).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(!claimed[0].reclaimed);
        assert!(claim(&pool, "w2", 10, lease).await.unwrap().is_empty());
        assert!(!delivered(&pool, &claimed[0].notice_id, "w2", "9.1")
            .await
            .unwrap());
        assert!(delivered(&pool, &claimed[0].notice_id, "w1", "9.1")
            .await
            .unwrap());
        let (state, _, _) = state(&pool, &notice().notice_id).await.unwrap().unwrap();
        assert_eq!(state, "delivered");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_permanent_failure_dead_letters_and_a_blank_notice_is_refused(pool: PgPool) {
        create(&pool, &notice()).await.unwrap();
        let claimed = claim(&pool, "w1", 10, Duration::from_secs(30))
            .await
            .unwrap();
        let outcome = failed(
            &pool,
            &claimed[0].notice_id,
            "w1",
            "channel_not_found",
            Retry::Never,
        )
        .await
        .unwrap();
        assert_eq!(outcome, FailedOutcome::DeadLettered);
        let mut blank = notice();
        blank.notice_id = "other".into();
        blank.text = "  ".into();
        assert!(create(&pool, &blank).await.is_err());
    }
}
