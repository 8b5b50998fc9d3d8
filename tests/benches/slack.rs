//! Slack benchmark on the embedded defaults (echo harness, Postgres queue, local sandboxes)
//! with a fake Slack Web API. Prints figures; asserts only that nothing was duplicated.
//!
//!   cargo build --release --bins && cargo bench -p centaur-tests --bench slack
//!
//! 1. Webhook ack latency p50/p99 under load: 1,000 signed events (50 threads × 20
//!    messages) plus 10 % replayed as Slack retries, sent by 16 concurrent clients.
//! 2. The count of duplicate turns and duplicate replies in that run (must be 0).
//! 3. Event → reply posted, p50/p99, one event at a time (the latency a person sees with
//!    the echo harness), measured from the signed POST to the fake Slack receiving the post.
#![allow(clippy::unwrap_used)]

use centaur_tests::fake_slack::FakeSlack;
use centaur_tests::slack_sender::post_event;
use centaur_tests::{Stack, StackOptions};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const SECRET: &str = "bench-slack-signing-secret";
const TOKEN: &str = "xoxb-bench";
const THREADS: usize = 50;
const PER_THREAD: usize = 20;
const CLIENTS: usize = 16;
const SEQUENTIAL: usize = 40;

fn event(thread: usize, index: usize) -> Value {
    let root = format!("{}.000000", 1_700_000_000 + thread);
    let ts = format!("{}.{:06}", 1_700_000_000 + thread, index);
    let mut event = json!({"type": "app_mention", "user": "U1", "channel": "CBENCH", "ts": ts,
        "text": format!("<@UBOT> message {index} of thread {thread}")});
    if index > 0 {
        event["thread_ts"] = json!(root);
    }
    json!({"type": "event_callback", "team_id": "T1", "event_id": format!("Ev{thread}x{index}"),
           "authorizations": [{"user_id": "UBOT"}], "event": event})
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

async fn start(slack: &FakeSlack) -> Stack {
    let env: BTreeMap<String, String> = [
        ("SLACK_SIGNING_SECRET", SECRET),
        ("SLACK_BOT_TOKEN", TOKEN),
        ("SLACK_API_URL", slack.url.as_str()),
        ("RUST_LOG", "warn"),
        ("DATABASE_MAX_CONNECTIONS", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Stack::start(StackOptions {
        extra_env: env,
        lease_secs: 30,
        ..StackOptions::default()
    })
    .await
    .unwrap()
}

async fn load_run() {
    let slack = FakeSlack::start(TOKEN).await.unwrap();
    let stack = start(&slack).await;
    // Originals in thread order; every tenth also replayed, right behind its original.
    let mut sends: Vec<(Value, Option<u32>)> = Vec::new();
    for index in 0..PER_THREAD {
        for thread in 0..THREADS {
            let original = event(thread, index);
            sends.push((original.clone(), None));
            if (thread * PER_THREAD + index).is_multiple_of(10) {
                sends.push((original, Some(1)));
            }
        }
    }
    let total = sends.len();
    let queue = Arc::new(Mutex::new(sends.into_iter()));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let duplicates_acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (queue, latencies, duplicates_acked) =
                (queue.clone(), latencies.clone(), duplicates_acked.clone());
            let url = stack.api_url.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                loop {
                    let Some((event, retry)) = queue.lock().await.next() else {
                        break;
                    };
                    let sent = Instant::now();
                    let (status, body) = post_event(&http, &url, SECRET, &event, retry)
                        .await
                        .unwrap();
                    latencies
                        .lock()
                        .await
                        .record(sent.elapsed().as_micros() as u64)
                        .unwrap();
                    assert_eq!(status, 200, "{body}");
                    if body["duplicate"] == true {
                        duplicates_acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let sending = started.elapsed();
    let latencies = latencies.lock().await;
    println!(
        "webhook ack under load         p50 {:>7.2} ms  p99 {:>7.2} ms  ({total} signed requests, {CLIENTS} clients, {:.0} req/s)",
        ms(&latencies, 0.5),
        ms(&latencies, 0.99),
        total as f64 / sending.as_secs_f64()
    );
    let unique = THREADS * PER_THREAD;
    let deadline = Instant::now() + Duration::from_secs(600);
    while slack.posts().len() < unique && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pool = stack.database.pool().await.unwrap();
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
        .fetch_one(&pool)
        .await
        .unwrap();
    let posts = slack.posts();
    let replied: HashSet<String> = posts
        .iter()
        .filter_map(|p| {
            p["metadata"]["event_payload"]["execution_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    println!(
        "duplicates in the run          {} duplicate turns, {} duplicate replies  ({unique} events + {} replays; {} acked as duplicates; {} turns, {} replies)",
        turns - unique as i64,
        posts.len() - replied.len(),
        total - unique,
        duplicates_acked.load(std::sync::atomic::Ordering::Relaxed),
        turns,
        posts.len()
    );
    println!(
        "all replies posted after       {:>7.2} s  ({:.1} turns/s end to end)",
        drained.as_secs_f64(),
        unique as f64 / drained.as_secs_f64()
    );
    assert_eq!(turns, unique as i64, "duplicate or lost turns");
    assert_eq!(posts.len(), replied.len(), "duplicate replies");
    stack.stop().await.unwrap();
}

async fn sequential_run() {
    let slack = FakeSlack::start(TOKEN).await.unwrap();
    let stack = start(&slack).await;
    let http = reqwest::Client::new();
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for index in 0..SEQUENTIAL {
        let event = event(10_000, index);
        let sent = Instant::now();
        post_event(&http, &stack.api_url, SECRET, &event, None)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, at)) = slack.timed_posts().get(index) {
                histogram
                    .record(at.duration_since(sent).as_micros() as u64)
                    .unwrap();
                break;
            }
            assert!(Instant::now() < deadline, "no reply");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    println!(
        "event → reply posted           p50 {:>7.2} ms  p99 {:>7.2} ms  (n={SEQUENTIAL}, one thread, sandbox reused after the first)",
        ms(&histogram, 0.5),
        ms(&histogram, 0.99)
    );
    stack.stop().await.unwrap();
}

#[tokio::main]
async fn main() {
    println!("centaur Slack benchmark (echo harness, Postgres queue, local sandboxes, fake Slack)");
    sequential_run().await;
    load_run().await;
}
