//! Token usage: the `usage` harness events summed per execution in `execution_usage`
//! (kept by a trigger in the transaction that stores each event, migration 0009), and the
//! totals per thread and per harness read from it. Nothing here sums the event trail: a
//! read is one index lookup or one aggregate over the summary rows.
//!
//! The sums cover what retention keeps: an execution's usage is pruned with it.

use crate::StoreError;
use centaur_core::api::Usage;
use serde::Serialize;
use sqlx::PgPool;

/// One execution's usage (zero when it reported none).
pub async fn for_execution(pool: &PgPool, execution_id: &str) -> Result<Usage, StoreError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT input_tokens, output_tokens FROM execution_usage WHERE execution_id = $1",
    )
    .bind(execution_id)
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|(input_tokens, output_tokens)| Usage {
            input_tokens,
            output_tokens,
        })
        .unwrap_or_default())
}

/// Usage summed over a set of executions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UsageTotal {
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// How many executions reported usage.
    pub executions: i64,
}

/// A thread's usage over its retained executions.
pub async fn for_thread(pool: &PgPool, thread_key: &str) -> Result<UsageTotal, StoreError> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(sum(input_tokens), 0)::bigint AS input_tokens,
                COALESCE(sum(output_tokens), 0)::bigint AS output_tokens,
                count(*) AS executions
         FROM execution_usage WHERE thread_key = $1",
    )
    .bind(thread_key)
    .fetch_one(pool)
    .await?)
}

/// One harness's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HarnessUsage {
    pub harness: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// How many executions reported usage.
    pub executions: i64,
}

/// Usage per harness (optionally one harness), of the executions whose usage was last
/// reported at or after `since` (all retained ones without it), by harness name.
pub async fn by_harness(
    pool: &PgPool,
    since: Option<chrono::DateTime<chrono::Utc>>,
    harness: Option<&str>,
) -> Result<Vec<HarnessUsage>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT harness, sum(input_tokens)::bigint AS input_tokens,
                sum(output_tokens)::bigint AS output_tokens, count(*) AS executions
         FROM execution_usage
         WHERE ($1::timestamptz IS NULL OR last_reported_at >= $1)
           AND ($2::text IS NULL OR harness = $2)
         GROUP BY harness ORDER BY harness",
    )
    .bind(since)
    .bind(harness)
    .fetch_all(pool)
    .await?)
}

/// Tokens reported since a previous [`take_unmetered`] (or ever), for one harness.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Unmetered {
    pub harness: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// Takes the usage no dispatcher has counted yet, at most `limit` executions, and marks it
/// counted in the same statement: across replicas, each token is returned exactly once
/// (rows another replica is taking are skipped, not waited for).
pub async fn take_unmetered(pool: &PgPool, limit: i64) -> Result<Vec<Unmetered>, StoreError> {
    Ok(sqlx::query_as(
        "WITH due AS (
             SELECT execution_id, harness,
                    input_tokens - metered_input_tokens AS input_tokens,
                    output_tokens - metered_output_tokens AS output_tokens
             FROM execution_usage
             WHERE input_tokens <> metered_input_tokens OR output_tokens <> metered_output_tokens
             ORDER BY last_reported_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         UPDATE execution_usage u
         SET metered_input_tokens = u.metered_input_tokens + due.input_tokens,
             metered_output_tokens = u.metered_output_tokens + due.output_tokens
         FROM due WHERE u.execution_id = due.execution_id
         RETURNING due.harness, due.input_tokens, due.output_tokens",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{self, kinds};
    use serde_json::{json, Value};

    /// A terminal execution on `thread` run by `harness` (no assignment needed).
    pub(crate) async fn execution(pool: &PgPool, id: &str, thread: &str, harness: &str) {
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                     execute_id, request_hash, status, delivery, completed_at,
                                     terminal_reason)
             VALUES ($1, $2, 1, $3, $1, 'h', 'completed', '{}', now(), 'completed')",
        )
        .bind(id)
        .bind(thread)
        .bind(harness)
        .execute(pool)
        .await
        .expect("execution");
    }

    /// Stores harness events the way the dispatcher does (one batch, one statement).
    pub(crate) async fn harness_events(pool: &PgPool, id: &str, thread: &str, batch: &[Value]) {
        events::append_batch(pool, thread, id, kinds::HARNESS_EVENT, batch)
            .await
            .expect("events");
    }

    fn usage(seq: u64, input: Value, output: Value) -> Value {
        json!({"execution_id": "x", "seq": seq, "type": "usage",
               "input_tokens": input, "output_tokens": output})
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn usage_events_are_summed_per_execution_as_they_are_stored(pool: PgPool) {
        let id = "exe_00000000000000a1";
        execution(&pool, id, "t1", "codex").await;
        assert_eq!(
            for_execution(&pool, id).await.expect("none"),
            Usage::default()
        );
        harness_events(
            &pool,
            id,
            "t1",
            &[
                json!({"type": "assistant.message", "text": "hi", "seq": 1}),
                usage(2, json!(120), json!(30)),
                usage(3, json!(5), json!(7)),
            ],
        )
        .await;
        harness_events(&pool, id, "t1", &[usage(4, json!(1), json!(2))]).await;
        assert_eq!(
            for_execution(&pool, id).await.expect("sum"),
            Usage {
                input_tokens: 126,
                output_tokens: 39
            }
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_malformed_count_counts_as_zero_and_never_refuses_the_event(pool: PgPool) {
        let id = "exe_00000000000000a2";
        execution(&pool, id, "t1", "codex").await;
        harness_events(
            &pool,
            id,
            "t1",
            &[
                usage(1, json!("12"), json!(-3)),
                usage(2, json!(1.5), json!(99_999_999_999_999_999u64)),
                json!({"type": "usage", "seq": 3}),
                usage(4, json!(10), json!(20)),
            ],
        )
        .await;
        assert_eq!(
            for_execution(&pool, id).await.expect("sum"),
            Usage {
                input_tokens: 10,
                output_tokens: 20
            }
        );
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM execution_events WHERE execution_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("count");
        assert_eq!(stored, 4, "every event is on the trail");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn threads_and_harnesses_total_their_executions(pool: PgPool) {
        for (id, thread, harness, input, output) in [
            ("exe_00000000000000b1", "t1", "codex", 100, 10),
            ("exe_00000000000000b2", "t1", "codex", 50, 5),
            ("exe_00000000000000b3", "t2", "claude-code", 7, 3),
        ] {
            execution(&pool, id, thread, harness).await;
            harness_events(&pool, id, thread, &[usage(1, json!(input), json!(output))]).await;
        }
        execution(&pool, "exe_00000000000000b4", "t1", "codex").await;
        assert_eq!(
            for_thread(&pool, "t1").await.expect("t1"),
            UsageTotal {
                input_tokens: 150,
                output_tokens: 15,
                executions: 2
            }
        );
        assert_eq!(
            for_thread(&pool, "nobody").await.expect("none"),
            UsageTotal::default()
        );
        let all = by_harness(&pool, None, None).await.expect("all");
        assert_eq!(
            all.iter()
                .map(|h| (
                    h.harness.as_str(),
                    h.input_tokens,
                    h.output_tokens,
                    h.executions
                ))
                .collect::<Vec<_>>(),
            [("claude-code", 7, 3, 1), ("codex", 150, 15, 2)]
        );
        let codex = by_harness(&pool, None, Some("codex")).await.expect("codex");
        assert_eq!(codex.len(), 1);
        sqlx::query(
            "UPDATE execution_usage SET last_reported_at = now() - interval '2 days'
             WHERE execution_id = 'exe_00000000000000b1'",
        )
        .execute(&pool)
        .await
        .expect("backdate");
        let recent = by_harness(
            &pool,
            Some(chrono::Utc::now() - chrono::Duration::days(1)),
            Some("codex"),
        )
        .await
        .expect("recent");
        assert_eq!((recent[0].input_tokens, recent[0].executions), (50, 1));
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn unmetered_usage_is_taken_once_including_what_arrives_later(pool: PgPool) {
        let id = "exe_00000000000000c1";
        execution(&pool, id, "t1", "codex").await;
        harness_events(&pool, id, "t1", &[usage(1, json!(100), json!(10))]).await;
        let taken = take_unmetered(&pool, 10).await.expect("take");
        assert_eq!(
            taken,
            [Unmetered {
                harness: "codex".into(),
                input_tokens: 100,
                output_tokens: 10
            }]
        );
        assert!(take_unmetered(&pool, 10).await.expect("again").is_empty());
        harness_events(&pool, id, "t1", &[usage(2, json!(1), json!(0))]).await;
        let later = take_unmetered(&pool, 10).await.expect("later");
        assert_eq!((later[0].input_tokens, later[0].output_tokens), (1, 0));
    }
}
