//! `harness_cli_reports`: whether each harness's CLI was present (and which version) in the
//! sandbox that last started a turn for it, taken from `turn.started` events.

use crate::StoreError;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// The latest report for one harness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CliReport {
    pub harness: String,
    pub cli_present: bool,
    pub cli_version: Option<String>,
    pub reported_at: chrono::DateTime<chrono::Utc>,
}

/// How long a stored report stands when sandboxes keep reporting the same facts: every
/// turn starts with a report, and rewriting the one row per harness for each would make
/// the turns of every thread wait for that row's lock, one after another.
pub const REFRESH_AFTER_SECS: u32 = 60;

/// The `INSERT` of the reports `source` yields (columns `harness`, `cli_present`,
/// `cli_version`; one row per harness) that writes only a report that changed or is older
/// than [`REFRESH_AFTER_SECS`]: an unchanged, fresh one takes no lock.
pub fn upsert_sql(source: &str) -> String {
    format!(
        "INSERT INTO harness_cli_reports (harness, cli_present, cli_version)
         SELECT s.harness, s.cli_present, s.cli_version FROM ({source}) AS s
         WHERE NOT EXISTS (
             SELECT 1 FROM harness_cli_reports r
             WHERE r.harness = s.harness AND r.cli_present = s.cli_present
               AND r.cli_version IS NOT DISTINCT FROM s.cli_version
               AND r.reported_at > now() - make_interval(secs => {REFRESH_AFTER_SECS}))
         ON CONFLICT (harness) DO UPDATE SET cli_present = EXCLUDED.cli_present,
             cli_version = EXCLUDED.cli_version, reported_at = now()"
    )
}

/// Records the CLI facts of any `turn.started` event in `batch` (harness events as stored).
pub async fn record(conn: &mut PgConnection, batch: &[Value]) -> Result<(), StoreError> {
    let upsert = upsert_sql(
        "SELECT $1::text AS harness, $2::boolean AS cli_present, $3::text AS cli_version",
    );
    for event in batch.iter().filter(|e| e["type"] == "turn.started") {
        let (Some(harness), Some(present)) =
            (event["harness"].as_str(), event["cli_present"].as_bool())
        else {
            continue;
        };
        sqlx::query(&upsert)
            .bind(harness)
            .bind(present)
            .bind(event["cli_version"].as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Every harness's latest report.
pub async fn all(pool: &PgPool) -> Result<Vec<CliReport>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT harness, cli_present, cli_version, reported_at FROM harness_cli_reports",
    )
    .fetch_all(pool)
    .await?)
}
