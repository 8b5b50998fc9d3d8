//! Wake-ups handed to the background sender (as the dispatcher does) still reach the
//! listeners, after the commit, coalesced. A test binary of its own: the sender is
//! process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use centaur_store::events::CHANNEL;
use centaur_store::wakeups;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::BTreeSet;

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn wake_ups_sent_in_the_background_reach_every_listener(pool: PgPool) {
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener
        .listen_all([CHANNEL, "centaur_queue"])
        .await
        .unwrap();
    wakeups::announce_in_background(pool.clone());

    wakeups::announce(&pool, &["thread-a"], None).await;
    wakeups::announce(&pool, &["thread-b", "thread-a"], Some("centaur_queue")).await;

    let mut woken = BTreeSet::new();
    while woken.len() < 3 {
        let notification = listener.recv().await.unwrap();
        woken.insert((
            notification.channel().to_owned(),
            notification.payload().to_owned(),
        ));
    }
    let expected: BTreeSet<(String, String)> = [
        (CHANNEL, "thread-a"),
        (CHANNEL, "thread-b"),
        ("centaur_queue", ""),
    ]
    .into_iter()
    .map(|(channel, payload)| (channel.to_owned(), payload.to_owned()))
    .collect();
    assert_eq!(woken, expected);
}
