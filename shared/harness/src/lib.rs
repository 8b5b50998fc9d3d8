//! The line protocol between the dispatcher and the `sandbox` program.
//!
//! Dispatcher → sandbox (stdin), one JSON object per line, see [`SandboxInput`]:
//! - `{"type":"user","message":{"role":"user","content":[…]},"thread_key":…,"execution_id":…}`
//!   starts a turn;
//! - `{"type":"resume","execution_id":…,"after_seq":N}` after a re-attach: the sandbox
//!   replays that execution's events with `seq > N`, or answers `turn.unknown` if it never
//!   received that turn (so the dispatcher may send it without running it twice);
//! - `{"type":"interrupt","execution_id":…}` stops the running turn.
//!
//! Sandbox → dispatcher (stdout), one [`SandboxOutput`] per line: the execution id, a
//! per-execution sequence number starting at 1, and one [`HarnessEvent`]. Every turn ends
//! with exactly one `turn.done`.

pub mod protocol;

pub use protocol::{
    HarnessEvent, MessagePart, ProtocolError, SandboxInput, SandboxOutput, TurnMessage, TurnStatus,
    Workspace,
};
