//! A fresh database per test, on the server named by `DATABASE_URL`.

use rand::Rng;
use sqlx::{Connection, PgConnection};
use std::sync::atomic::{AtomicBool, Ordering};

/// The server the tests use when `DATABASE_URL` is unset.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test and dropped by [`TestDatabase::drop_database`], or
/// when it goes out of scope (a test that failed, or never called it).
pub struct TestDatabase {
    /// Connection URL of the new database.
    pub url: String,
    name: String,
    server_url: String,
    dropped: AtomicBool,
}

impl TestDatabase {
    /// Creates `centaur_e2e_<random>` on the server of `DATABASE_URL` and applies the
    /// migrations. The new database's URL keeps the server URL's parameters (`sslmode`…).
    pub async fn create() -> anyhow::Result<Self> {
        let server_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let name = format!("centaur_e2e_{:016x}", rand::thread_rng().gen::<u64>());
        let mut admin = PgConnection::connect(&server_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let (address, parameters) = match server_url.split_once('?') {
            Some((address, parameters)) => (address, format!("?{parameters}")),
            None => (server_url.as_str(), String::new()),
        };
        let base = address.rsplit_once('/').map_or(address, |(base, _)| base);
        let database = Self {
            url: format!("{base}/{name}{parameters}"),
            name,
            server_url,
            dropped: AtomicBool::new(false),
        };
        // What `api migrate` does before a deployment starts: processes only check the schema.
        centaur_store::migrate(&database.url).await?;
        Ok(database)
    }

    /// The database's name (`centaur_e2e_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL with `parameters` (`key=value&…`) added to its own.
    pub fn url_with(&self, parameters: &str) -> String {
        with_parameters(&self.url, parameters)
    }

    /// A connection pool on the test database (for assertions on rows).
    pub async fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await?)
    }

    /// Drops the database, closing whatever is still connected.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        drop_named(&self.server_url, &self.name).await?;
        self.dropped.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for TestDatabase {
    /// Drops the database if the test did not: on a thread of its own, with a runtime of
    /// its own, because a `Drop` cannot await and may run inside the test's runtime.
    fn drop(&mut self) {
        if self.dropped.load(Ordering::Relaxed) {
            return;
        }
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(drop_named(&server_url, &name))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("the test database {} could not be dropped", self.name);
        }
    }
}

/// `url` with `parameters` (`key=value&…`) added to the ones it has.
pub fn with_parameters(url: &str, parameters: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameters}")
}

async fn drop_named(server_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(server_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}
