//! Push for event followers: one `LISTEN centaur_events` connection per process fans the
//! notifications that event writers send after their commit ([`announce`]) out to every
//! stream following a thread, so a stream re-reads the table only when its thread has news.

use crate::events::CHANNEL;
use sqlx::postgres::PgListener;
use sqlx::{PgExecutor, PgPool};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, OnceCell};
use tokio::time::Instant;

/// Tells the listeners that `threads` got events and (with `queue_channel`, the Postgres
/// queue's channel) that the queue holds a message, once the write that made them visible
/// has committed. Always its own transaction: a `NOTIFY` inside a writing transaction holds
/// Postgres's notification lock through that transaction's WAL flush, so every notifying
/// writer would commit one after another (16 clients inserting on 2 cores: 1,600/s with the
/// `NOTIFY` inside, 6,100/s with it after the commit; a notify-only transaction flushes
/// nothing). A wake-up is a hint (listeners re-read rows, and re-read anyway every few
/// seconds), so a failure is logged, not returned: the write it follows is committed.
///
/// Sent on `executor` before this returns, unless the process handed wake-ups to a
/// background sender ([`announce_in_background`]).
pub async fn announce<'e>(
    executor: impl PgExecutor<'e>,
    threads: &[&str],
    queue_channel: Option<&str>,
) {
    if threads.is_empty() && queue_channel.is_none() {
        return;
    }
    let wake = Wake {
        threads: threads.iter().map(|thread| (*thread).to_owned()).collect(),
        queue_channels: queue_channel.map(str::to_owned).into_iter().collect(),
    };
    let wake = match BACKGROUND.get() {
        Some(background) => match background.send(wake) {
            Ok(()) => return,
            Err(unsent) => unsent.0,
        },
        None => wake,
    };
    send(executor, &wake).await;
}

/// Wake-ups to send: threads with new events, queue channels with a new message.
#[derive(Debug, Default)]
struct Wake {
    threads: BTreeSet<String>,
    queue_channels: BTreeSet<String>,
}

/// How long after a send that carried several wake-ups the background sender gathers the
/// next ones before sending them in one statement: a busy dispatcher's turns write events
/// many times a millisecond (claims, starts, ends), and each wake-up sent is a statement
/// and a transaction of its own. While wake-ups come one at a time, each goes at once: a
/// lone turn's followers wait for nothing. A queue wake-up is sent at once, with whatever
/// was gathered: a receiver waits for it.
const GATHER: Duration = Duration::from_millis(2);

/// The background sender of a long-lived process, if it started one.
static BACKGROUND: OnceLock<mpsc::UnboundedSender<Wake>> = OnceLock::new();

/// When the background sender sends next: at once while each send carries one wake-up,
/// [`GATHER`] after the last send once one carried several (they come faster than one
/// statement each is worth).
#[derive(Debug, Default)]
struct Pace {
    gather_until: Option<Instant>,
}

impl Pace {
    /// The latest moment a wake-up that arrives at `now` waits for others to join it.
    fn gather_until(&self, now: Instant) -> Instant {
        self.gather_until.unwrap_or(now)
    }

    /// A send that carried `carried` wake-ups finished at `now`.
    fn sent(&mut self, carried: usize, now: Instant) {
        self.gather_until = (carried > 1).then(|| now + GATHER);
    }
}

/// Hands this process's wake-ups to a task on `pool` that sends them, as [`Pace`] says,
/// in one statement per send (a queue wake-up at once, with whatever came before it). A
/// busy dispatcher's writers neither wait for their wake-ups nor pay one statement each.
/// For long-lived processes (the dispatcher, a function served over HTTP); a function on
/// Lambda, frozen between requests, sends its own.
pub fn announce_in_background(pool: PgPool) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Wake>();
    if BACKGROUND.set(sender).is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut pace = Pace::default();
        while let Some(mut wake) = receiver.recv().await {
            let mut carried = 1;
            // Once the moment has passed, this takes only what is already waiting.
            let gather_until = pace.gather_until(Instant::now());
            while wake.queue_channels.is_empty() {
                match tokio::time::timeout_at(gather_until, receiver.recv()).await {
                    Ok(Some(more)) => {
                        wake.add(more);
                        carried += 1;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            while let Ok(more) = receiver.try_recv() {
                wake.add(more);
                carried += 1;
            }
            send(&pool, &wake).await;
            pace.sent(carried, Instant::now());
        }
    });
}

impl Wake {
    fn add(&mut self, more: Wake) {
        self.threads.extend(more.threads);
        self.queue_channels.extend(more.queue_channels);
    }
}

async fn send<'e>(executor: impl PgExecutor<'e>, wake: &Wake) {
    let threads: Vec<&str> = wake.threads.iter().map(String::as_str).collect();
    let channels: Vec<&str> = wake.queue_channels.iter().map(String::as_str).collect();
    let sent = sqlx::query(
        "SELECT (SELECT count(pg_notify($1, thread)) FROM unnest($2::text[]) AS thread),
                (SELECT count(pg_notify(channel, '')) FROM unnest($3::text[]) AS channel)",
    )
    .bind(CHANNEL)
    .bind(&threads)
    .bind(&channels)
    .execute(executor)
    .await;
    if let Err(err) = sent {
        tracing::warn!(%err, ?threads, "could not send wake-ups; listeners re-read on their own");
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_wake_up_is_sent_at_once() {
        let now = Instant::now();
        let mut pace = Pace::default();
        assert_eq!(pace.gather_until(now), now);
        pace.sent(1, now);
        let later = now + Duration::from_micros(300);
        assert_eq!(pace.gather_until(later), later);
    }

    #[test]
    fn after_a_send_that_carried_several_the_next_ones_are_gathered_until_gather_after_it() {
        let sent_at = Instant::now();
        let mut pace = Pace::default();
        pace.sent(3, sent_at);
        let arrival = sent_at + Duration::from_micros(300);
        assert_eq!(pace.gather_until(arrival), sent_at + GATHER);
    }

    #[test]
    fn a_send_that_carried_one_ends_the_gathering() {
        let now = Instant::now();
        let mut pace = Pace::default();
        pace.sent(4, now);
        pace.sent(1, now + GATHER);
        let arrival = now + GATHER * 2;
        assert_eq!(pace.gather_until(arrival), arrival);
    }
}
