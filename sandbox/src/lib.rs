//! The program inside a sandbox. It reads [`SandboxInput`](centaur_harness::SandboxInput)
//! lines, runs one turn at a time through a harness driver, and writes numbered
//! [`SandboxOutput`](centaur_harness::SandboxOutput) lines. Every event is also kept in a
//! bounded log, so a dispatcher that re-attaches after a crash can `resume` and receive
//! exactly the events it missed.
//!
//! Transports: stdin/stdout (a Kubernetes pod, attached with `pods/attach`) or a Unix
//! socket (`--listen`, the local backend), where a new connection replaces the old one.

pub mod harnesses;
pub mod output;
pub mod session;
pub mod transport;
