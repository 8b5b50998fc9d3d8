//! Connecting and migrating.

use crate::StoreError;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;

/// The migrations in `migrations/`, embedded in every binary that touches the database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How long a request waits for a connection before it is answered 503: short, so that
/// during a database outage callers learn it at once instead of queueing.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The pool settings every process uses.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
}

/// Opens a pool and applies pending migrations (sqlx serialises concurrent migrators with
/// an advisory lock, so several processes may start at once). Connections are not pinged
/// on every checkout: a dead one fails its statement, which callers already handle.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let pool = pool_options(max_connections).connect(url).await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}
