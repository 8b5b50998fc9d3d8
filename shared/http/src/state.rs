//! State every function shares, built once at cold start.

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
    /// Parses the config, connects (applying migrations), bootstraps the service keys
    /// (upsert by hash, un-revoke) and builds the queue.
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let config = ApiConfig::from_env(env)?;
        let pool =
            centaur_store::connect(&config.database.url, config.database.max_connections).await?;
        let queue = centaur_queue::from_config(&config.queue, pool.clone()).await?;
        let state = Self {
            pool,
            queue,
            event_wakeups: EventWakeups::default(),
            config: Arc::new(config),
        };
        state.bootstrap_keys().await?;
        Ok(state)
    }

    /// State over an existing pool with the Postgres queue (tests).
    pub fn new(pool: PgPool, config: ApiConfig) -> Self {
        Self {
            queue: Arc::new(PostgresQueue::new(pool.clone())),
            pool,
            event_wakeups: EventWakeups::default(),
            config: Arc::new(config),
        }
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
