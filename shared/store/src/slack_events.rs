//! `slack_events`: durable dedupe of Slack deliveries (retries and replays make one turn).
//! A key is recorded when an event arrives and completed once its turn is with the API. A
//! key still in flight after [`TAKEOVER_AFTER`] belonged to a webhook that died mid-way,
//! so a later retry may take it over; a key whose hand-off failed is released.

use crate::StoreError;
use sqlx::PgPool;
use std::time::Duration;

/// How long dedupe keys are kept: Slack retries within minutes, replays within the 300 s
/// signature window.
pub const RETENTION: Duration = Duration::from_secs(3600);

/// How long an unfinished key blocks retries before one may take it over.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(60);

/// Records `keys`. True if the event is new (or a stale in-flight one taken over); false if
/// any key was already completed or is in flight.
pub async fn record_new(pool: &PgPool, keys: &[String]) -> Result<bool, StoreError> {
    let claimed: Vec<String> = sqlx::query_scalar(
        "INSERT INTO slack_events (dedupe_key) SELECT unnest($1::text[])
         ON CONFLICT (dedupe_key) DO UPDATE SET received_at = now()
             WHERE slack_events.completed_at IS NULL
               AND slack_events.received_at < now() - make_interval(secs => $2)
         RETURNING dedupe_key",
    )
    .bind(keys)
    .bind(TAKEOVER_AFTER.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(claimed.len() == keys.len())
}

/// Marks `keys` done: from now on they are duplicates until pruned.
pub async fn complete(pool: &PgPool, keys: &[String]) -> Result<(), StoreError> {
    sqlx::query("UPDATE slack_events SET completed_at = now() WHERE dedupe_key = ANY($1)")
        .bind(keys)
        .execute(pool)
        .await?;
    Ok(())
}

/// Forgets `keys` after a failed hand-off, so Slack's retry is not taken for a duplicate.
pub async fn release(pool: &PgPool, keys: &[String]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM slack_events WHERE dedupe_key = ANY($1) AND completed_at IS NULL")
        .bind(keys)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes keys older than [`RETENTION`]; how many went.
pub async fn prune(pool: &PgPool) -> Result<u64, StoreError> {
    let deleted = sqlx::query(
        "DELETE FROM slack_events WHERE received_at < now() - make_interval(secs => $1)",
    )
    .bind(RETENTION.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|k| (*k).to_owned()).collect()
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_key_seen_once_is_a_duplicate_in_flight_and_after_completion(pool: PgPool) {
        let event = keys(&["event:Ev1", "message:T1:C1:1.0"]);
        assert!(record_new(&pool, &event).await.expect("first"));
        assert!(!record_new(&pool, &event).await.expect("in flight"));
        complete(&pool, &event).await.expect("complete");
        assert!(!record_new(&pool, &event).await.expect("completed"));
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_other_event_for_the_same_message_is_a_duplicate(pool: PgPool) {
        assert!(
            record_new(&pool, &keys(&["event:Ev1", "message:T1:C1:1.0"]))
                .await
                .expect("mention")
        );
        assert!(
            !record_new(&pool, &keys(&["event:Ev2", "message:T1:C1:1.0"]))
                .await
                .expect("message")
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_released_key_lets_the_retry_through(pool: PgPool) {
        let event = keys(&["event:Ev1"]);
        assert!(record_new(&pool, &event).await.expect("first"));
        release(&pool, &event).await.expect("release");
        assert!(record_new(&pool, &event).await.expect("retry"));
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_stale_in_flight_key_is_taken_over(pool: PgPool) {
        let event = keys(&["event:Ev1"]);
        assert!(record_new(&pool, &event).await.expect("first"));
        sqlx::query("UPDATE slack_events SET received_at = now() - interval '2 minutes'")
            .execute(&pool)
            .await
            .expect("age");
        assert!(record_new(&pool, &event).await.expect("takeover"));
    }
}
