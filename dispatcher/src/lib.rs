//! The dispatcher: consumes execution wake-ups from the queue, claims executions with a
//! lease, runs each turn in its thread's sandbox, stores every event, finishes the
//! execution and wakes the next one. Background loops recover expired leases, re-send lost
//! wake-ups, keep the warm pool, reap idle sandboxes and collect orphans; the delivery loop
//! posts final answers to Slack.

pub mod batches;
pub mod consumer;
pub mod context;
pub mod delivery;
pub mod error;
pub mod executor;
pub mod health;
pub mod maintenance;
pub mod sandboxes;
pub mod steps;
pub mod transcript;

pub use context::Dispatcher;
pub use error::DispatchError;
