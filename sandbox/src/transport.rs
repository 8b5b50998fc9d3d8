//! The two ways a dispatcher talks to a sandbox: stdin/stdout, or a Unix socket.

use crate::session::Session;
use centaur_harness::SandboxInput;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// Serves stdin/stdout until stdin closes, then lets the running turn finish.
pub async fn serve_stdio(session: Arc<Session>) -> std::io::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        session.handle_line(&line).await;
    }
    session.wait_idle().await;
    Ok(())
}

/// What [`serve_socket`] writes on stdout once the socket listens: the local backend waits
/// for this line (`centaur_sandbox::local::READY_LINE`) instead of retrying the socket.
pub const READY_LINE: &str = "ready";

/// Says on stdout that the socket listens (stdout carries nothing else in socket mode).
fn signal_ready() {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{READY_LINE}").and_then(|()| stdout.flush());
    if let Err(err) = written {
        tracing::debug!(%err, "nobody reads the ready line");
    }
}

/// Serves a Unix socket at `path`: one connection at a time, a new one replaces the old.
/// A connection whose first line is `resume` is re-attached with replay. Exits after
/// `idle_exit` with no connection and no running turn. Writes [`READY_LINE`] on stdout as
/// soon as the socket listens.
pub async fn serve_socket(
    session: Arc<Session>,
    path: &Path,
    idle_exit: Duration,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    signal_ready();
    let live_connections = Arc::new(AtomicUsize::new(0));
    let mut current: Option<JoinHandle<()>> = None;
    loop {
        match tokio::time::timeout(idle_exit, listener.accept()).await {
            Ok(accepted) => {
                let (stream, _) = accepted?;
                if let Some(previous) = current.take() {
                    previous.abort();
                }
                let session = session.clone();
                let live = live_connections.clone();
                live.fetch_add(1, Ordering::SeqCst);
                current = Some(tokio::spawn(async move {
                    serve_connection(session, stream).await;
                    live.fetch_sub(1, Ordering::SeqCst);
                }));
            }
            Err(_) => {
                let connected = current.as_ref().is_some_and(|task| !task.is_finished());
                if !connected && !session.is_busy().await {
                    tracing::info!("idle without a connection; exiting");
                    return Ok(());
                }
            }
        }
    }
}

async fn serve_connection(session: Arc<Session>, stream: tokio::net::UnixStream) {
    let (read_half, write_half) = stream.into_split();
    let mut lines = BufReader::new(read_half).lines();
    let first = match lines.next_line().await {
        Ok(Some(line)) => line,
        _ => return,
    };
    match SandboxInput::parse(&first) {
        Ok(SandboxInput::Resume {
            execution_id,
            after_seq,
        }) => {
            session
                .output()
                .attach_and_replay(Box::new(write_half), &execution_id, after_seq)
                .await;
        }
        _ => {
            session.output().attach(Box::new(write_half)).await;
            session.handle_line(&first).await;
        }
    }
    while let Ok(Some(line)) = lines.next_line().await {
        session.handle_line(&line).await;
    }
}
