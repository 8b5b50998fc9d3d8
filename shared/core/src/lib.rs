//! Centaur's domain model. Everything here is pure: no IO, no async, no clocks except
//! where a caller passes `now`. Adapters (store, queue, sandbox, http) depend on this crate.

pub mod api;
pub mod canonical;
pub mod delivery;
pub mod execution;
pub mod harness;
pub mod ids;
pub mod repo;
pub mod turn;

pub use execution::{ExecutionStatus, TerminalReason};
pub use harness::Harness;
pub use ids::{ExecutionId, SandboxId, ThreadKey};
pub use repo::{branch_name, RepoAllowlist, RepoError, RepoRef};
