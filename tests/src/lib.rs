//! Support for the cross-process tests and benchmarks: the workspace's binaries run as
//! real processes against a fresh Postgres database, talking real HTTP.

pub mod binaries;
pub mod client;
pub mod database;
pub mod process;
pub mod stack;

pub use client::ApiClient;
pub use database::TestDatabase;
pub use process::ChildProcess;
pub use stack::{Stack, StackOptions};
