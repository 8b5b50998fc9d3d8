//! Status, terminal-reason and harness columns are read into the enums of `centaur_core`
//! once, where a row becomes a domain value: a known value comes back typed, an unknown
//! stored value is a `StoreError::UnknownValue` naming its column (never a panic, never a
//! default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use centaur_core::{ExecutionStatus, Harness, TerminalReason};
use centaur_store::{executions, threads, StoreError};
use serde_json::json;
use sqlx::PgPool;

const THREAD: &str = "rows-thread";
const EXECUTION: &str = "exe_00000000000000b1";

async fn seed(pool: &PgPool, harness: &str, status: &str, reason: Option<&str>) {
    sqlx::query(
        "INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref, state)
         VALUES ($1, 1, 'echo', 'prompts/echo/v1', 'active')",
    )
    .bind(THREAD)
    .execute(pool)
    .await
    .unwrap();
    let terminal = reason.is_some();
    sqlx::query(
        "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                 execute_id, request_hash, status, terminal_reason, error_text,
                                 completed_at, delivery)
         VALUES ($1, $2, 1, $3, $1, 'h', $4, $5, CASE WHEN $4 = 'failed_permanent' THEN 'x' END,
                 CASE WHEN $6 THEN now() END, $7)",
    )
    .bind(EXECUTION)
    .bind(THREAD)
    .bind(harness)
    .bind(status)
    .bind(reason)
    .bind(terminal)
    .bind(json!({"platform": "dev"}))
    .execute(pool)
    .await
    .unwrap();
}

fn unknown_column(err: StoreError) -> (&'static str, String) {
    match err {
        StoreError::UnknownValue { column, value } => (column, value),
        other => panic!("expected UnknownValue, got {other:?}"),
    }
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn stored_names_come_back_as_the_core_enums(pool: PgPool) {
    seed(
        &pool,
        "claude-code",
        "failed_permanent",
        Some("sandbox_lost"),
    )
    .await;
    let view = executions::get(&pool, EXECUTION, false)
        .await
        .unwrap()
        .expect("the execution");
    assert_eq!(view.status, ExecutionStatus::FailedPermanent);
    assert_eq!(view.terminal_reason, Some(TerminalReason::SandboxLost));
    assert_eq!(view.harness, Harness::ClaudeCode);
    let wire = serde_json::to_value(&view).unwrap();
    assert_eq!(
        (&wire["status"], &wire["terminal_reason"], &wire["harness"]),
        (
            &json!("failed_permanent"),
            &json!("sandbox_lost"),
            &json!("claude-code")
        )
    );

    let status = threads::status(&pool, THREAD).await.unwrap();
    let latest = status.latest_execution.expect("the latest execution");
    assert_eq!(latest.status, ExecutionStatus::FailedPermanent);
    assert_eq!(latest.terminal_reason, Some(TerminalReason::SandboxLost));
    assert!(!status.busy);
    assert_eq!(
        status.assignment.map(|assignment| assignment.harness),
        Some(Harness::Echo)
    );

    let listed = threads::list(&pool, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].latest_execution_status,
        Some(ExecutionStatus::FailedPermanent)
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn an_unfinished_latest_execution_makes_the_thread_busy(pool: PgPool) {
    seed(&pool, "echo", "queued", None).await;
    let status = threads::status(&pool, THREAD).await.unwrap();
    assert!(status.busy);
    let latest = status.latest_execution.expect("the latest execution");
    assert_eq!(
        (latest.status, latest.terminal_reason),
        (ExecutionStatus::Queued, None)
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn an_unknown_stored_harness_is_an_error_naming_the_column(pool: PgPool) {
    seed(&pool, "gpt", "queued", None).await;
    let err = executions::get(&pool, EXECUTION, true)
        .await
        .map(|_| ())
        .expect_err("an unknown harness");
    assert_eq!(
        unknown_column(err),
        ("executions.harness", "gpt".to_owned())
    );
    let err = executions::list_for_thread(&pool, THREAD, 10)
        .await
        .map(|_| ())
        .expect_err("an unknown harness");
    assert!(err.to_string().contains("executions.harness"), "{err}");

    sqlx::query(
        "INSERT INTO sandbox_sessions (thread_key, sandbox_id, harness, state)
         VALUES ($1, 'sbx-1', 'nope', 'live')",
    )
    .bind(THREAD)
    .execute(&pool)
    .await
    .unwrap();
    let err = threads::status(&pool, THREAD)
        .await
        .map(|_| ())
        .expect_err("an unknown harness");
    assert_eq!(
        unknown_column(err),
        ("sandbox_sessions.harness", "nope".to_owned())
    );
}
