//! A function binary's start against a database older than its build: liveness answers
//! first (nothing touched the database yet), then the schema check ends the process
//! naming the command that fixes it.
#![allow(clippy::unwrap_used)]

use centaur_tests::stack::start_function;
use centaur_tests::{until, TestDatabase};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_function_on_an_older_schema_answers_liveness_then_exits_naming_api_migrate() {
    let database = TestDatabase::create().await.unwrap();
    let pool = database.pool().await.unwrap();
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let (mut health, base) = start_function("health", "health-start", &database.url).unwrap();
    let live = format!("{base}/health/live");
    let client = reqwest::Client::new();
    until(Duration::from_secs(30), "health to answer liveness", || {
        let request = client.get(&live).send();
        async move { request.await.is_ok_and(|r| r.status() == 200) }
    })
    .await
    .unwrap();
    until(Duration::from_secs(30), "health to exit", || {
        let running = health.is_running();
        async move { !running }
    })
    .await
    .unwrap_or_else(|err| panic!("{err}\n{}", health.log_tail(20)));

    let log = health.log_tail(20);
    assert!(log.contains("run `api migrate`"), "{log}");
    database.drop_database().await.unwrap();
}
