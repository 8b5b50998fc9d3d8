//! `centaur`: the operator's command-line client of the Centaur API (`operator.md`).
//!
//! It talks only HTTP: `run` is the one-call `POST /agent/execute` followed by the
//! execution's Server-Sent Events; the other commands are one request each. What to send
//! and how to show the answers is decided without IO (`request`, `render`, `doctor`,
//! `exit`) and unit-tested; `client`, `stream` and `commands` do the IO.

pub mod args;
pub mod client;
pub mod commands;
pub mod doctor;
pub mod error;
pub mod exit;
pub mod render;
pub mod request;
pub mod stream;

pub use args::Cli;
pub use error::CliError;
pub use exit::Exit;
