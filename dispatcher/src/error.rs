//! The dispatcher's error type. None of these is a verdict on a turn by itself: the turn
//! state machine (`centaur_core::turn`) decides what each means — a database or queue
//! error hands the turn back, a sandbox that cannot be created fails its start.

use centaur_queue::QueueError;
use centaur_sandbox::SandboxError;
use centaur_store::StoreError;

/// Something the dispatcher called failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The database (a read, or a write that may not have happened).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The sandbox backend could not create, attach to or talk to a sandbox.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

impl DispatchError {
    /// True for a database or queue error: the turn is handed back, never failed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DispatchError::Store(_) | DispatchError::Queue(_))
    }
}
