//! Event push latency: how long after an event commits does a client following
//! `GET /agent/threads/{tk}/events` (SSE) receive it? The stack's real api runs against a
//! fresh database; the bench commits harness events the way the dispatcher does (one
//! statement each, through the store, then the wake-up after the commit) and times each
//! until its SSE frame arrives over real HTTP. Before streams were pushed (LISTEN/NOTIFY) they polled every 250 ms.
//!
//! `cargo bench -p centaur-tests --bench event_push` (after `cargo build --release
//! --workspace --bins`; EVENTS=n overrides the sample size).
#![allow(clippy::unwrap_used)]

use centaur_tests::{Stack, StackOptions};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let client = stack.client();
    let thread = "bench-push";
    let execution_id = client.turn(thread, "hello").await.unwrap();
    client
        .wait_terminal(&execution_id, Duration::from_secs(60))
        .await
        .unwrap();
    let pool = stack.database.pool().await.unwrap();
    let last_seq: i64 =
        sqlx::query_scalar("SELECT max(thread_seq) FROM execution_events WHERE thread_key = $1")
            .bind(thread)
            .fetch_one(&pool)
            .await
            .unwrap();

    let response = reqwest::Client::new()
        .get(format!(
            "{}/agent/threads/{thread}/events?after_event_id={last_seq}",
            stack.api_url
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let mut frames = response.bytes_stream();
    let mut buffered = String::new();
    let mut histogram = Histogram::<u64>::new(3).unwrap();

    for n in 0..samples {
        let marker = format!("push-{n}");
        let committed = Instant::now();
        centaur_store::events::append(
            &pool,
            thread,
            Some(&execution_id),
            centaur_store::events::kinds::HARNESS_EVENT,
            &json!({"type": "assistant.delta", "text": marker}),
        )
        .await
        .unwrap();
        centaur_store::wakeups::announce(&pool, &[thread], None).await;
        let committed_at = committed.elapsed();
        // Read frames until this event's arrives.
        while !buffered.contains(&format!("\"{marker}\"")) {
            let chunk = tokio::time::timeout(Duration::from_secs(10), frames.next())
                .await
                .expect("an SSE frame within 10 s")
                .expect("the stream is open")
                .unwrap();
            buffered.push_str(&String::from_utf8_lossy(&chunk));
        }
        let received = committed.elapsed();
        buffered.clear();
        histogram
            .record((received.saturating_sub(committed_at)).as_micros() as u64)
            .unwrap();
    }

    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!("event committed → SSE client received ({samples} events, one follower, loopback):");
    println!(
        "  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   (goal p99 ≤ 50 ms; the old stream polled every 250 ms)",
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    stack.stop().await.unwrap();
}
