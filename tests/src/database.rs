//! A fresh database per test, on the server named by `DATABASE_URL`.

use rand::Rng;
use sqlx::{Connection, PgConnection};

/// The server the tests use when `DATABASE_URL` is unset.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test and dropped by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    /// Connection URL of the new database.
    pub url: String,
    name: String,
    server_url: String,
}

impl TestDatabase {
    /// Creates `centaur_e2e_<random>` on the server of `DATABASE_URL` and applies the
    /// migrations.
    pub async fn create() -> anyhow::Result<Self> {
        let server_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let name = format!("centaur_e2e_{:016x}", rand::thread_rng().gen::<u64>());
        let mut admin = PgConnection::connect(&server_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let base = server_url
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .unwrap_or_else(|| server_url.clone());
        let database = Self {
            url: format!("{base}/{name}"),
            name,
            server_url,
        };
        // What `api migrate` does before a deployment starts: processes only check the schema.
        centaur_store::migrate(&database.url).await?;
        Ok(database)
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
        let mut admin = PgConnection::connect(&self.server_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}
