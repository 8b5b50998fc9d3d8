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

/// Records the CLI facts of any `turn.started` event in `batch` (harness events as stored).
pub async fn record(conn: &mut PgConnection, batch: &[Value]) -> Result<(), StoreError> {
    for event in batch.iter().filter(|e| e["type"] == "turn.started") {
        let (Some(harness), Some(present)) =
            (event["harness"].as_str(), event["cli_present"].as_bool())
        else {
            continue;
        };
        sqlx::query(
            "INSERT INTO harness_cli_reports (harness, cli_present, cli_version) VALUES ($1, $2, $3)
             ON CONFLICT (harness) DO UPDATE SET cli_present = EXCLUDED.cli_present,
                 cli_version = EXCLUDED.cli_version, reported_at = now()",
        )
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
