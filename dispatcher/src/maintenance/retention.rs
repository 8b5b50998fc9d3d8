//! Retention: a pruning pass every `RETENTION_INTERVAL_S`, in bounded batches (see
//! [`centaur_store::retention`] for what is never pruned), counted in
//! `centaur_rows_pruned_total{table}`.

use crate::transcript;
use centaur_config::RetentionConfig;
use centaur_store::retention::{self, Policy, Pruned};
use centaur_store::{PgPool, StoreError};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// The counter's name.
pub const PRUNED_ROWS_TOTAL: &str = "centaur_rows_pruned_total";
/// Most batches one pass runs; a backlog is worked off over the next passes.
const MAX_BATCHES: usize = 20;
/// A pass stops starting batches after this long, so the maintenance loop stays prompt.
const PASS_BUDGET: Duration = Duration::from_secs(2);

/// Turns of a live thread kept whatever their age: a transcript reads at most
/// [`transcript::MAX_ENTRIES`] entries, and every turn is at least two (a message and its
/// end), so older turns can never reach a transcript.
pub const KEEP_NEWEST_TURNS: i64 = transcript::MAX_ENTRIES / 2;

/// The store's policy for `config`.
pub fn policy(config: &RetentionConfig) -> Policy {
    Policy {
        executions: config.executions,
        idempotency: config.idempotency,
        queue: config.queue,
        outbox: config.outbox,
        audit: config.audit,
        batch: i64::from(config.batch_size),
        keep_newest_turns: KEEP_NEWEST_TURNS,
    }
}

/// Counts rows deleted from `table` (also for prunes outside this module).
pub fn record(table: &'static str, rows: u64) {
    if rows > 0 {
        metrics::counter!(PRUNED_ROWS_TOTAL, "table" => table).increment(rows);
    }
}

/// One pass as of `now`: batches until nothing more is due, [`MAX_BATCHES`] or
/// [`PASS_BUDGET`]; how many rows went.
pub async fn prune(
    pool: &PgPool,
    config: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let policy = policy(config);
    let started = Instant::now();
    let mut total = Pruned::default();
    let mut result = Ok(());
    for _ in 0..MAX_BATCHES {
        match retention::prune_once(pool, &policy, now).await {
            Ok(pruned) => {
                for (table, rows) in pruned.tables() {
                    record(table, rows);
                }
                let more = pruned.more;
                total.absorb(pruned);
                if !more || started.elapsed() >= PASS_BUDGET {
                    break;
                }
            }
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    if total.total() > 0 {
        let tables: Vec<String> = total
            .tables()
            .map(|(table, rows)| format!("{table}={rows}"))
            .collect();
        tracing::info!(rows = total.total(), tables = %tables.join(" "), "retention pruned old rows");
    }
    result.map(|()| usize::try_from(total.total()).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pruned_rows(table: &str) -> u64 {
        let text = centaur_telemetry::metrics().render();
        text.lines()
            .find(|line| line.starts_with(&format!("{PRUNED_ROWS_TOTAL}{{table=\"{table}\"}}")))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn the_policy_follows_the_config_and_keeps_what_a_transcript_reads() {
        let config = RetentionConfig {
            executions: None,
            ..RetentionConfig::default()
        };
        let policy = policy(&config);
        assert_eq!(policy.executions, None);
        assert_eq!(policy.idempotency, config.idempotency);
        assert_eq!(policy.batch, 500);
        assert_eq!(policy.keep_newest_turns * 2, transcript::MAX_ENTRIES);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_pass_prunes_what_is_due_and_counts_it_by_table(pool: PgPool) {
        let _ = centaur_telemetry::metrics();
        let before = pruned_rows("spawn_requests");
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                 execute_id, request_hash, status, delivery, completed_at, terminal_reason)
             VALUES ('exe_00000000000000b1', 'old', 1, 'echo', 'x', 'h', 'completed', '{}',
                     now() - interval '40 days', 'completed')",
        )
        .execute(&pool)
        .await
        .expect("old execution");
        for n in 0..3 {
            sqlx::query(
                "INSERT INTO spawn_requests (thread_key, spawn_id, request_hash, response_json, created_at)
                 VALUES ('old', $1, 'h', '{}', now() - interval '8 days')",
            )
            .bind(format!("s{n}"))
            .execute(&pool)
            .await
            .expect("old key");
        }
        let config = RetentionConfig {
            batch_size: 2,
            ..RetentionConfig::default()
        };
        let rows = prune(&pool, &config, Utc::now()).await.expect("pass");
        assert_eq!(rows, 4, "the execution and three keys, two keys a batch");
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM executions) + (SELECT count(*) FROM spawn_requests)",
        )
        .fetch_one(&pool)
        .await
        .expect("left");
        assert_eq!(left, 0);
        assert!(pruned_rows("spawn_requests") >= before + 3);
        assert!(pruned_rows("executions") >= 1);
    }
}
