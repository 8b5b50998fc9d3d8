//! Slack benchmark on the embedded defaults (echo harness, Postgres queue, local sandboxes)
//! with the strict fake Slack Web API. Prints figures; asserts only that nothing was
//! duplicated or lost.
//!
//!   cargo build --release -p api -p dispatcher -p sandbox && cargo bench -p centaur-tests --bench slack
//!
//! 1. Event → reply posted, p50/p99, one event at a time (the latency a person sees with
//!    the echo harness), from the signed POST to the fake Slack receiving the answer.
//! 2. Webhook ack latency at a steady 100 events/s (open loop: each event is sent at its
//!    scheduled moment whatever the previous answers took) for 20 s over 50 threads, 10 %
//!    of them replayed as Slack retries, **while the dispatcher runs the turns**: p50, p99
//!    and max as the client sees them (loopback HTTP included), and the webhook handler's
//!    own time as the API measures it (`centaur_slack_webhook_seconds` on `/metrics`). The
//!    target is p99 ≤ 20 ms of our own time.
//! 3. The count of duplicate and lost turns and replies in that run (must be 0), and how
//!    long the dispatcher took to answer them all.
//!
//! The fake Slack runs with its rate-limit tiers scaled up (see `RATE_SCALE`): one workspace
//! posting thousands of answers a minute would be throttled by Slack itself, which would
//! measure Slack's tier rather than Centaur.
#![allow(clippy::unwrap_used)]

use centaur_slack::web_api::{CHUNK_EVENT_TYPE, STATUS_EVENT_TYPE};
use centaur_tests::fake_slack::{FakeSlack, FakeSlackOptions};
use centaur_tests::slack_sender::post_event;
use centaur_tests::{Stack, StackOptions};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-slack-signing-secret";
const TOKEN: &str = "xoxb-bench";
/// Events per second in the load run.
const RATE: u64 = 100;
/// How long the load run sends.
const SECONDS: u64 = 20;
/// Threads the load run spreads its events over.
const THREADS: u64 = 50;
/// Every n-th event is also replayed as a Slack retry, right behind the original.
const REPLAY_EVERY: u64 = 10;
/// Events of the sequential run.
const SEQUENTIAL: usize = 20;
/// How much faster than Slack's documented tiers the fake lets calls through.
const RATE_SCALE: f64 = 1000.0;

fn event(thread: u64, index: u64) -> Value {
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

async fn fake_slack() -> FakeSlack {
    FakeSlack::start_with(FakeSlackOptions {
        rate_scale: RATE_SCALE,
        ..FakeSlackOptions::new(TOKEN)
    })
    .await
    .unwrap()
}

/// The API's own measures, from `/metrics`: quantiles (in ms) of the series `name` whose
/// labels contain `label` (e.g. `status="200"`, `step="turn"`).
async fn quantiles(api_url: &str, name: &str, label: &str) -> HashMap<String, f64> {
    let text = reqwest::get(format!("{api_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| {
            let quantile = line.split("quantile=\"").nth(1)?.split('"').next()?;
            let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
            Some((quantile.to_owned(), value * 1000.0))
        })
        .collect()
}

async fn sequential_run() {
    let slack = fake_slack().await;
    let stack = start(&slack).await;
    let http = reqwest::Client::new();
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for index in 0..SEQUENTIAL {
        let event = event(10_000, index as u64);
        let sent = Instant::now();
        post_event(&http, &stack.api_url, SECRET, &event, None)
            .await
            .unwrap();
        let answered = centaur_tests::eventually(Duration::from_secs(30), "the reply", || {
            let posted = slack.timed_posts().get(index).map(|(_, at)| *at);
            async move { Ok(posted) }
        })
        .await
        .unwrap();
        histogram
            .record(answered.duration_since(sent).as_micros() as u64)
            .unwrap();
    }
    println!(
        "event → reply posted             p50 {:>7.2} ms  p99 {:>7.2} ms  (n={SEQUENTIAL}, one thread, sandbox reused after the first)",
        ms(&histogram, 0.5),
        ms(&histogram, 0.99)
    );
    stack.stop().await.unwrap();
}

async fn load_run() {
    let slack = fake_slack().await;
    let stack = start(&slack).await;
    let total = RATE * SECONDS;
    let per_thread = total / THREADS;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let duplicates_acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut sends = Vec::new();
    // Thread order: message i of every thread before message i + 1 of any.
    for n in 0..total {
        let (thread, index) = (n % THREADS, n / THREADS);
        let at = started + Duration::from_micros(n * 1_000_000 / RATE);
        let mut attempts = vec![(at, None)];
        if n % REPLAY_EVERY == 0 {
            attempts.push((at + Duration::from_millis(5), Some(1)));
        }
        for (at, retry) in attempts {
            let (http, url) = (http.clone(), stack.api_url.clone());
            let (latencies, duplicates_acked) = (latencies.clone(), duplicates_acked.clone());
            let event = event(thread, index);
            sends.push(tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let sent = Instant::now();
                let (status, body) = post_event(&http, &url, SECRET, &event, retry)
                    .await
                    .unwrap();
                let took = sent.elapsed().as_micros() as u64;
                latencies.lock().unwrap().record(took).unwrap();
                assert_eq!(status, 200, "{body}");
                if body["duplicate"] == true {
                    duplicates_acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    }
    let requests = sends.len();
    for send in sends {
        send.await.unwrap();
    }
    let sending = started.elapsed();
    let handler = quantiles(
        &stack.api_url,
        "centaur_slack_webhook_seconds",
        "status=\"200\"",
    )
    .await;
    {
        let latencies = latencies.lock().unwrap();
        println!(
            "webhook ack at {RATE} events/s     p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  (client-side, loopback HTTP included; {requests} signed requests in {:.1} s = {:.0} req/s, {THREADS} threads, turns running meanwhile)",
            ms(&latencies, 0.5),
            ms(&latencies, 0.99),
            latencies.max() as f64 / 1000.0,
            sending.as_secs_f64(),
            requests as f64 / sending.as_secs_f64()
        );
    }
    let at = |figures: &HashMap<String, f64>, q: &str| figures.get(q).copied().unwrap_or(f64::NAN);
    println!(
        "webhook handler's own time       p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  (centaur_slack_webhook_seconds, status 200, as the API measured it)",
        at(&handler, "0.5"),
        at(&handler, "0.99"),
        at(&handler, "1"),
    );
    for step in ["dedupe", "context", "turn"] {
        let figures = quantiles(
            &stack.api_url,
            "centaur_slack_webhook_step_seconds",
            &format!("step=\"{step}\""),
        )
        .await;
        println!(
            "  step {step:<10}                p50 {:>7.2} ms  p99 {:>7.2} ms",
            at(&figures, "0.5"),
            at(&figures, "0.99"),
        );
    }
    let unique = total as usize;
    let pool = stack.database.pool().await.unwrap();
    let delivered = || {
        let pool = pool.clone();
        async move {
            let count: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM delivery_outbox WHERE state IN ('delivered','dead_letter')",
            )
            .fetch_one(&pool)
            .await?;
            Ok((count >= unique as i64).then(Instant::now))
        }
    };
    let drained =
        centaur_tests::eventually(Duration::from_secs(900), "every reply", delivered).await;
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
        .fetch_one(&pool)
        .await
        .unwrap();
    // What the threads show now: every bot message, answers tagged with their execution.
    let mut answers = Vec::new();
    let mut stale_status = 0;
    for thread in 0..THREADS {
        let root = format!("{}.000000", 1_700_000_000 + thread);
        for message in slack.thread("CBENCH", &root) {
            match message["metadata"]["event_type"].as_str() {
                Some(CHUNK_EVENT_TYPE) => answers.push(
                    message["metadata"]["event_payload"]["execution_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                Some(STATUS_EVENT_TYPE) => stale_status += 1,
                _ => {}
            }
        }
    }
    let replied: HashSet<&String> = answers.iter().collect();
    println!(
        "duplicates and losses            {} duplicate turns, {} lost turns, {} duplicate replies, {} status messages left  ({unique} events + {} replays; {} acked as duplicates; {turns} turns, {} replies, {} chat.update calls)",
        (turns - unique as i64).max(0),
        (unique as i64 - turns).max(0),
        answers.len() - replied.len(),
        stale_status,
        requests - unique,
        duplicates_acked.load(std::sync::atomic::Ordering::Relaxed),
        replied.len(),
        slack.updates().len(),
    );
    match drained {
        Ok(at) => {
            let took = at.duration_since(started).as_secs_f64();
            println!(
                "all replies posted after         {took:>7.2} s  ({:.1} turns/s end to end; {per_thread} turns per thread, run one after another)",
                unique as f64 / took
            );
        }
        Err(err) => println!("not every reply was posted: {err:#}"),
    }
    assert_eq!(turns, unique as i64, "duplicate or lost turns");
    assert_eq!(answers.len(), replied.len(), "duplicate replies");
    assert_eq!(replied.len(), unique, "lost replies");
    assert_eq!(
        stale_status, 0,
        "a status message the answer did not replace"
    );
    stack.stop().await.unwrap();
}

#[tokio::main]
async fn main() {
    println!(
        "centaur Slack benchmark (echo harness, Postgres queue, local sandboxes, strict fake Slack with tiers ×{RATE_SCALE})"
    );
    sequential_run().await;
    load_run().await;
}
