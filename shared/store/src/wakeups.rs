//! Push for event followers: one `LISTEN centaur_events` connection per process fans the
//! notifications that event inserts send at commit (migration 0007) out to every stream
//! following a thread, so a stream re-reads the table only when its thread has news.

use crate::events::CHANNEL;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, OnceCell};

/// What a follower is woken with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// The thread got at least one event.
    Thread(String),
    /// Notifications may have been missed (the listener reconnected, or this follower fell
    /// behind): every follower should re-read.
    Everyone,
}

/// How long the listener waits before reconnecting after its connection failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// Wake-ups buffered per follower before it is told to re-read everything.
const BUFFER: usize = 1024;

/// The process's listener, started by the first follower. Cheap to clone.
#[derive(Clone, Default)]
pub struct EventWakeups {
    sender: Arc<OnceCell<broadcast::Sender<Wakeup>>>,
}

impl EventWakeups {
    /// A receiver of wake-ups, starting the listener on first use. Subscribe *before*
    /// reading the table, so that nothing committed in between goes unnoticed.
    pub async fn subscribe(&self, pool: &PgPool) -> broadcast::Receiver<Wakeup> {
        self.sender
            .get_or_init(|| async {
                let (sender, _) = broadcast::channel(BUFFER);
                tokio::spawn(listen(pool.clone(), sender.clone()));
                sender
            })
            .await
            .subscribe()
    }
}

/// Waits until `receiver` says `thread_key` (or everyone) should re-read, or `timeout`.
pub async fn wait_for_thread(
    receiver: &mut broadcast::Receiver<Wakeup>,
    thread_key: &str,
    timeout: Duration,
) {
    let wait = async {
        loop {
            match receiver.recv().await {
                Ok(Wakeup::Thread(thread)) if thread == thread_key => return,
                Ok(Wakeup::Thread(_)) => {}
                Ok(Wakeup::Everyone) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(timeout, wait).await;
}

async fn listen(pool: PgPool, sender: broadcast::Sender<Wakeup>) {
    loop {
        let Err(err) = listen_once(&pool, &sender).await;
        tracing::warn!(%err, "event listener lost its connection; reconnecting");
        let _ = sender.send(Wakeup::Everyone);
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Forwards notifications until the connection fails.
async fn listen_once(
    pool: &PgPool,
    sender: &broadcast::Sender<Wakeup>,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything committed while we were not listening is picked up by a re-read.
    let _ = sender.send(Wakeup::Everyone);
    loop {
        let notification = listener.recv().await?;
        // No receiver right now is fine: the next follower subscribes before it reads.
        let _ = sender.send(Wakeup::Thread(notification.payload().to_owned()));
    }
}
