//! `centaur_tokens_total{harness,kind}` on the dispatcher's `/metrics`: the tokens the
//! harnesses report, counted once across every dispatcher replica.
//!
//! The sum per execution is kept in Postgres by the statement that stores each `usage`
//! event (`execution_usage`); each maintenance tick takes the part of it that no replica
//! has counted yet and marks it counted in the same statement ([`usage::take_unmetered`]).
//! So a token is added to exactly one replica's counter, within a tick of being stored,
//! whichever replica ran the turn, after a takeover too — `sum by (harness, kind)` over
//! the dispatchers is the deployment's total. Counting from the database rather than from
//! the events a process happens to read is what makes the counter trustworthy: a turn
//! re-attached after a crash re-reads events it may already have counted, the database
//! sum does not.

use centaur_core::Harness;
use centaur_store::{usage, PgPool, StoreError};

/// The counter's name.
pub const TOKENS_TOTAL: &str = "centaur_tokens_total";
/// Executions whose new usage one statement takes.
const BATCH: i64 = 500;
/// Most statements one tick runs (the rest waits for the next tick).
const MAX_BATCHES: usize = 10;

/// Describes the counter and starts it at zero for every harness and kind, so a rate over
/// it is defined from the dispatcher's start, not from its first report.
pub fn register() {
    metrics::describe_counter!(
        TOKENS_TOTAL,
        "Tokens the harnesses reported, by harness and kind (input, output)."
    );
    for harness in Harness::ALL {
        for kind in ["input", "output"] {
            metrics::counter!(TOKENS_TOTAL, "harness" => harness.as_str(), "kind" => kind)
                .increment(0);
        }
    }
}

/// Adds the usage stored since the last pass (of any replica) to this process's counter;
/// how many executions had new usage.
pub async fn meter(pool: &PgPool) -> Result<usize, StoreError> {
    let mut executions = 0;
    for _ in 0..MAX_BATCHES {
        let taken = usage::take_unmetered(pool, BATCH).await?;
        for new in &taken {
            for (kind, tokens) in [("input", new.input_tokens), ("output", new.output_tokens)] {
                metrics::counter!(TOKENS_TOTAL, "harness" => new.harness.clone(), "kind" => kind)
                    .increment(u64::try_from(tokens).unwrap_or(0));
            }
        }
        executions += taken.len();
        if (taken.len() as i64) < BATCH {
            break;
        }
    }
    Ok(executions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use centaur_store::events::{self, kinds};
    use serde_json::json;

    /// The counter's value for `harness` and `kind` in the process's Prometheus text.
    pub(crate) fn tokens(harness: &str, kind: &str) -> u64 {
        let text = centaur_telemetry::metrics().render();
        let labels = [format!("harness=\"{harness}\""), format!("kind=\"{kind}\"")];
        text.lines()
            .filter(|line| line.starts_with(&format!("{TOKENS_TOTAL}{{")))
            .find(|line| labels.iter().all(|label| line.contains(label.as_str())))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn reported_tokens_reach_the_counter_once(pool: PgPool) {
        let _ = centaur_telemetry::metrics();
        register();
        let (input_before, output_before) = (tokens("amp", "input"), tokens("amp", "output"));
        let id = "exe_00000000000000a1";
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                     execute_id, request_hash, status, delivery)
             VALUES ($1, 't1', 1, 'amp', $1, 'h', 'queued', '{}')",
        )
        .bind(id)
        .execute(&pool)
        .await
        .expect("execution");
        let report = |seq: u64, input: u64, output: u64| {
            json!({"execution_id": id, "seq": seq, "type": "usage",
                   "input_tokens": input, "output_tokens": output})
        };
        events::append_batch(&pool, "t1", id, kinds::HARNESS_EVENT, &[report(1, 300, 40)])
            .await
            .expect("first turn");
        assert_eq!(meter(&pool).await.expect("meter"), 1);
        assert_eq!(meter(&pool).await.expect("again"), 0, "nothing new");
        events::append_batch(&pool, "t1", id, kinds::HARNESS_EVENT, &[report(2, 7, 3)])
            .await
            .expect("a later report");
        meter(&pool).await.expect("meter later");
        let text = centaur_telemetry::metrics().render();
        assert!(text.contains(TOKENS_TOTAL), "{text}");
        assert!(
            tokens("amp", "input") - input_before >= 307
                && tokens("amp", "output") - output_before >= 43,
            "{text}"
        );
    }
}
