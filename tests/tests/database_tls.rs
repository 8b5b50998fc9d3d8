//! A function reaches Postgres over TLS when the operator's `DATABASE_URL` asks for it
//! (`sslmode=require` or `verify-full`, as managed Postgres services demand), and refuses
//! a server whose certificate the URL's root does not vouch for: a 503 naming no cause,
//! and the cause in its log. Needs the machine's Postgres with `ssl = on` (Debian's
//! default, with its self-signed certificate for `localhost`).
#![allow(clippy::unwrap_used)]

use centaur_tests::stack::start_function;
use centaur_tests::{until, ChildProcess, TestDatabase};
use std::time::Duration;

/// The `health` function on `database_url`, and its `/health/ready` address.
fn start_health(database_url: &str, label: &str) -> (ChildProcess, String) {
    let (health, base) = start_function("health", label, database_url).unwrap();
    (health, format!("{base}/health/ready"))
}

/// The certificate the server presents (its own self-signed one on this machine).
async fn server_certificate(pool: &sqlx::PgPool) -> String {
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        ssl, "on",
        "this test needs the machine's Postgres with ssl = on"
    );
    sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits for `url` to answer with `status`; returns the body of an answer after that.
async fn wait_for_status(url: &str, status: u16, health: &ChildProcess) -> String {
    let client = reqwest::Client::new();
    until(
        Duration::from_secs(30),
        &format!("{url} to answer {status}"),
        || {
            let request = client.get(url).send();
            async move { request.await.is_ok_and(|r| r.status() == status) }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}\n{}", health.log_tail(20)));
    client.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_whose_url_asks_for_verified_tls_talks_to_postgres_encrypted() {
    let database = TestDatabase::create().await.unwrap();
    let pool = database.pool().await.unwrap();
    let certificate = server_certificate(&pool).await;
    // The name the certificate was made for, so that `verify-full` checks it.
    let url = database
        .url_with(&format!(
            "sslmode=verify-full&sslrootcert={certificate}&application_name=centaur-tls-check"
        ))
        .replace("@127.0.0.1:", "@localhost:");
    let (health, ready) = start_health(&url, "health-tls");

    wait_for_status(&ready, 200, &health).await;

    let (connections, encrypted): (i64, bool) = sqlx::query_as(
        "SELECT count(*), COALESCE(bool_and(s.ssl), false)
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.application_name = 'centaur-tls-check'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(connections >= 1, "the function holds no connection");
    assert!(encrypted, "a connection of the function is not encrypted");
    drop(health);
    pool.close().await;
    database.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_refuses_a_server_whose_certificate_its_roots_do_not_vouch_for() {
    let database = TestDatabase::create().await.unwrap();
    let pool = database.pool().await.unwrap();
    server_certificate(&pool).await;
    // No `sslrootcert`: the public roots built in, which never signed a self-signed
    // certificate.
    let (health, ready) = start_health(
        &database.url_with("sslmode=verify-full"),
        "health-untrusted",
    );

    let body = wait_for_status(&ready, 503, &health).await;

    assert!(body.contains("UNAVAILABLE"), "{body}");
    assert!(
        !body.contains("certificate"),
        "the answer names its cause: {body}"
    );
    let log = health.log_tail(40);
    assert!(
        log.contains("certificate"),
        "the log does not name the cause:\n{log}"
    );
    drop(health);
    pool.close().await;
    database.drop_database().await.unwrap();
}
