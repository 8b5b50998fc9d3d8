//! `sandbox --harness <h> [--listen <socket>]`: the program inside a sandbox.

use clap::Parser;
use sandbox::harnesses::driver_for;
use sandbox::output::Output;
use sandbox::session::Session;
use sandbox::transport::{serve_socket, serve_stdio};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Runs agent turns read from stdin (or a Unix socket) and writes NDJSON events.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The harness to drive (`codex`, `claude-code`, `amp`, `pi-mono`, `echo`).
    #[arg(long, env = "CENTAUR_HARNESS")]
    harness: String,
    /// Serve a Unix socket instead of stdin/stdout (the local backend).
    #[arg(long)]
    listen: Option<PathBuf>,
    /// With --listen: exit after this many seconds without a connection or turn.
    #[arg(long, default_value_t = 86_400)]
    idle_exit_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // stdout carries the protocol: logs go to stderr only.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let driver = driver_for(&args.harness);
    match args.listen {
        Some(path) => {
            let session = Arc::new(Session::new(
                &args.harness,
                driver,
                Arc::new(Output::default()),
            ));
            serve_socket(session, &path, Duration::from_secs(args.idle_exit_secs)).await?;
        }
        None => {
            let output = Arc::new(Output::with_sink(Box::new(tokio::io::stdout())));
            let session = Arc::new(Session::new(&args.harness, driver, output));
            serve_stdio(session).await?;
        }
    }
    Ok(())
}
