//! Connecting and migrating.

use crate::StoreError;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use std::time::Duration;

/// The migrations in `migrations/`, embedded in every binary that touches the database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How long a request waits for a connection before it is answered 503: short, so that
/// during a database outage callers learn it at once instead of queueing.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Set on every connection when it opens: plan each prepared statement once, for any
/// parameters. The batch statements (claims, ends, executes) read their rows from `unnest`
/// of arrays, whose length a custom plan knows and a generic one guesses (10), so
/// Postgres's default (`auto`) judged the generic plan dearer and planned the claim again
/// on every call: 1.2 ms of planning beside 0.7 ms of execution, the largest cost of a
/// turn. Forced generic, the claim runs in 0.6 ms with nothing planned (drain benchmark,
/// interleaved with a build without this: Postgres's CPU per turn 1.9–2.1 → 1.5–1.7 ms at
/// concurrency 8 and 1.0 → 0.8 ms at 32; 500–540 → 570–620 and 910–1,020 → 1,090–1,130
/// turns/s). Sent after the connection opens, not as a startup `options` parameter,
/// which connection poolers (PgBouncer's default settings) refuse.
pub const PLAN_CACHE_MODE: &str = "SET plan_cache_mode = force_generic_plan";

/// The pool settings every process uses. A `DATABASE_URL` may ask for TLS (`sslmode`,
/// `sslrootcert`, as libpq reads them; `prefer` when unset): sqlx verifies a server's
/// certificate with the process's default rustls provider, installed here (ring, the one
/// every TLS client of the workspace uses) unless one is already. Each connection gets
/// [`PLAN_CACHE_MODE`].
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection.execute(PLAN_CACHE_MODE).await?;
                Ok(())
            })
        })
}

/// Opens a pool and checks that the database's schema is the one this build was made for
/// (one query; nothing is written). Migrations are never applied here: a function's cold
/// start or a replica's restart must not run schema changes.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let pool = pool_options(max_connections).connect(url).await?;
    check_schema(&pool).await?;
    Ok(pool)
}

/// A pool that has not touched the database yet: connections are opened on first use.
/// What a function's cold start uses (nothing is read or written before a request needs
/// the database); [`check_schema`] runs before the first query (see
/// `centaur_http::serve`).
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    Ok(pool_options(max_connections).connect_lazy(url)?)
}

/// The newest migration this build embeds.
pub fn needed_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// `Ok` if every migration this build embeds has been applied.
pub async fn check_schema(pool: &PgPool) -> Result<(), StoreError> {
    let applied: Option<i64> =
        match sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
        {
            Ok(applied) => applied,
            // 42P01: no migrations table yet, a database nobody migrated.
            Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42P01") => None,
            Err(err) => return Err(err.into()),
        };
    let needed = needed_version();
    if applied.unwrap_or(0) < needed {
        return Err(StoreError::SchemaBehind { applied, needed });
    }
    Ok(())
}

/// Applies pending migrations (sqlx serialises concurrent migrators with an advisory lock)
/// on a connection of its own. What `api migrate` runs.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    let pool = pool_options(1).connect(url).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[sqlx::test(migrations = false)]
    async fn an_unmigrated_database_is_refused_naming_the_command(pool: PgPool) {
        let err = check_schema(&pool).await.expect_err("behind");
        assert!(
            matches!(err, StoreError::SchemaBehind { applied: None, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("run `api migrate`"), "{err}");
        MIGRATOR.run(&pool).await.expect("migrate");
        check_schema(&pool).await.expect("current");
    }

    #[sqlx::test(migrations = false)]
    async fn every_connection_plans_its_statements_once(
        _: PgPoolOptions,
        database: sqlx::postgres::PgConnectOptions,
    ) {
        let pool = pool_options(2).connect_with(database).await.expect("pool");
        let (first, second) = tokio::join!(pool.acquire(), pool.acquire());
        for mut connection in [first.expect("first"), second.expect("second")] {
            let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
                .fetch_one(&mut *connection)
                .await
                .expect("show");
            assert_eq!(mode, "force_generic_plan");
        }
    }
}
