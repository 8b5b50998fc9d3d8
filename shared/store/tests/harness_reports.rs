//! `harness_cli_reports`: every turn reports its harness's CLI; only what changed, or went
//! stale, is written.
#![allow(clippy::unwrap_used)]

use centaur_store::harness_reports::{self, REFRESH_AFTER_SECS};
use serde_json::json;
use sqlx::PgPool;

/// The stored row's version (`xmin`: the transaction that last wrote it) and facts.
async fn stored(pool: &PgPool) -> (String, bool, Option<String>) {
    sqlx::query_as(
        "SELECT xmin::text, cli_present, cli_version FROM harness_cli_reports
         WHERE harness = 'codex'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn report(pool: &PgPool, present: bool, version: &str) {
    let mut conn = pool.acquire().await.unwrap();
    let event = json!({"type": "turn.started", "harness": "codex", "cli_present": present,
                       "cli_version": version});
    harness_reports::record(&mut conn, &[event]).await.unwrap();
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_report_is_rewritten_only_when_it_changed_or_went_stale(pool: PgPool) {
    report(&pool, true, "codex-cli 0.171.0").await;
    let first = stored(&pool).await;

    report(&pool, true, "codex-cli 0.171.0").await;
    assert_eq!(
        stored(&pool).await,
        first,
        "the same facts, fresh: not written"
    );

    sqlx::query("UPDATE harness_cli_reports SET reported_at = now() - make_interval(secs => $1)")
        .bind(f64::from(REFRESH_AFTER_SECS) + 1.0)
        .execute(&pool)
        .await
        .unwrap();
    let aged = stored(&pool).await;
    report(&pool, true, "codex-cli 0.171.0").await;
    let (version, _, _) = stored(&pool).await;
    assert_ne!(version, aged.0, "the same facts, stale: written again");
    let fresh: bool = sqlx::query_scalar(
        "SELECT reported_at > now() - interval '5 seconds' FROM harness_cli_reports",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(fresh);

    report(&pool, true, "codex-cli 0.172.0").await;
    let (_, present, version) = stored(&pool).await;
    assert_eq!(
        (present, version.as_deref()),
        (true, Some("codex-cli 0.172.0"))
    );
    report(&pool, false, "codex-cli 0.172.0").await;
    assert!(
        !stored(&pool).await.1,
        "a changed report is written at once"
    );
}
