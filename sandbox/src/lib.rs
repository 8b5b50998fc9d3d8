//! The program inside a sandbox. It reads [`SandboxInput`](centaur_harness::SandboxInput)
//! lines, runs one turn at a time through a harness driver, and writes numbered
//! [`SandboxOutput`](centaur_harness::SandboxOutput) lines. Every event is also kept in a
//! bounded log, so a dispatcher that re-attaches after a crash can `resume` and receive
//! exactly the events it missed.
//!
//! Transports: stdin/stdout (a Kubernetes pod, attached with `pods/attach`) or a Unix
//! socket (`--listen`, the local backend), where a new connection replaces the old one.
//!
//! Before a turn runs, the sandbox prepares it ([`prepare`]): the model host must be
//! reachable through the egress proxy ([`egress`]), the thread's repository is cloned once
//! ([`workspace`]), the system prompt is assembled ([`prompt`]) and the harness is started
//! up from placeholders (a codex login, amp's settings, ...). A failed step ends the turn
//! with a `start_failed` error naming the step.

pub mod egress;
pub mod harnesses;
pub mod output;
pub mod prepare;
pub mod prompt;
pub mod session;
pub mod transport;
pub mod workspace;
