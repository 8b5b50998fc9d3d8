//! Postgres repositories. Every state change is one conditional UPDATE whose zero-row
//! result means another writer won; transitions append their `execution_state` event in
//! the same transaction. No transaction stays open across a turn.

pub mod api_keys;
pub mod assignments;
pub mod audit;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod executions;
pub mod group_commit;
pub mod harness_reports;
pub mod history;
pub mod idempotency;
pub mod inflight;
pub mod messages;
pub mod migrate;
pub mod notices;
pub mod outbox;
mod parts;
pub mod progress;
pub mod retention;
pub mod sessions;
pub mod slack_events;
pub mod start_retries;
pub mod threads;
pub mod usage;
pub mod wakeups;
pub mod warm;

pub use error::{StoreError, TurnError};
pub use migrate::{connect, connect_lazy, migrate, pool_options, MIGRATOR};
pub use sqlx::PgPool;
