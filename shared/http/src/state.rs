//! State every function shares, built once at cold start without touching the database:
//! the schema check and the service-key bootstrap run once, before the first request that
//! needs the database ([`AppState::prepare`]).

use crate::execute_batch::ExecuteBatcher;
use centaur_auth::api_key;
use centaur_config::{ApiConfig, ConfigError, Env};
use centaur_queue::{PostgresQueue, Queue};
use centaur_store::wakeups::EventWakeups;
use centaur_store::{api_keys, PgPool, StoreError};
use std::sync::Arc;

/// A start-up failure, naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] centaur_queue::QueueError),
}

/// The pool, the queue and the parsed configuration.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub queue: Arc<dyn Queue>,
    /// Wakes event streams when their thread gets an event (one listener per process).
    pub event_wakeups: EventWakeups,
    pub config: Arc<ApiConfig>,
    /// Writes the process's executes, together when they arrive together.
    pub executes: ExecuteBatcher,
    /// Set once the schema was found current and the service keys bootstrapped.
    prepared: Arc<tokio::sync::OnceCell<()>>,
}

/// Service keys bootstrapped at start-up: (env value, name, scopes).
fn service_keys(config: &ApiConfig) -> Vec<(&str, &'static str, Vec<String>)> {
    let mut keys = Vec::new();
    if let Some(key) = &config.auth.slackbot_api_key {
        keys.push((key.as_str(), "service:slackbot", vec!["agent".to_owned()]));
    }
    if let Some(key) = &config.auth.local_dev_api_key {
        keys.push((
            key.as_str(),
            "service:local-dev",
            vec!["admin".to_owned(), "agent".to_owned()],
        ));
    }
    keys
}

impl AppState {
    /// Parses the config and builds the pool (not connected yet) and the queue. Nothing
    /// is read or written: [`AppState::prepare`] checks the schema and bootstraps the
    /// service keys when the database is first needed.
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let config = ApiConfig::from_env(env)?;
        let pool =
            centaur_store::connect_lazy(&config.database.url, config.database.max_connections)?;
        let queue = centaur_queue::from_config(&config.queue, pool.clone()).await?;
        Ok(Self::assemble(pool, queue, config))
    }

    /// State over an existing pool with the Postgres queue (tests).
    pub fn new(pool: PgPool, config: ApiConfig) -> Self {
        let queue = Arc::new(PostgresQueue::new(pool.clone()));
        Self::assemble(pool, queue, config)
    }

    fn assemble(pool: PgPool, queue: Arc<dyn Queue>, config: ApiConfig) -> Self {
        // On the Postgres queue an execute writes its queue row itself.
        let queue_channel = queue
            .in_database()
            .then_some(centaur_queue::postgres::CHANNEL);
        Self {
            executes: ExecuteBatcher::new(
                pool.clone(),
                config.sandbox.default_harness,
                queue_channel,
            ),
            pool,
            queue,
            event_wakeups: EventWakeups::default(),
            config: Arc::new(config),
            prepared: Arc::default(),
        }
    }

    /// Once per process: checks that the schema is current (one query; an older one is
    /// [`StoreError::SchemaBehind`], naming `api migrate`) and bootstraps the service keys
    /// (writing nothing when nothing changed). Concurrent callers wait for the one check;
    /// a failed check is tried again by the next caller.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.prepared
            .get_or_try_init(|| async {
                centaur_store::migrate::check_schema(&self.pool).await?;
                self.bootstrap_keys().await
            })
            .await
            .map(drop)
    }

    /// True once [`AppState::prepare`] succeeded.
    pub fn is_prepared(&self) -> bool {
        self.prepared.initialized()
    }

    /// Upserts `SLACKBOT_API_KEY` and `LOCAL_DEV_API_KEY` as service keys.
    pub async fn bootstrap_keys(&self) -> Result<(), StoreError> {
        for (plaintext, name, scopes) in service_keys(&self.config) {
            api_keys::bootstrap(
                &self.pool,
                name,
                &api_key::display_prefix(plaintext),
                &api_key::hash(plaintext),
                &scopes,
            )
            .await?;
        }
        Ok(())
    }
}
