//! Control-plane benchmark on the embedded defaults (Postgres queue, local sandboxes, echo
//! harness). Prints figures; asserts nothing about speed.
//!
//!   cargo build --release --bins && cargo bench -p centaur-tests --bench control_plane
//!
//! Figures, for the Postgres queue and for SQS (moto) in the same run:
//! 1. `POST /agent/execute` latency p50/p99 under load (C concurrent clients, API alone).
//! 2. Dispatch throughput: one dispatcher draining that backlog, executions/s.
//! 3. execute-202 → first harness event persisted, p50/p99, for a thread's first turn
//!    (sandbox started) and a later turn (sandbox reused). Measured from the rows'
//!    own timestamps (`executions.created_at` → first `harness_event.created_at`).
//! 4. Peak RSS (VmHWM) of `api` and `dispatcher`.
//!
//! Then, per function binary: its size and its cold start under the Lambda runtime
//! contract (process exec → first response posted to the runtime API).
#![allow(clippy::unwrap_used)]

use centaur_tests::binaries::binary;
use centaur_tests::lambda_runtime::FakeLambdaRuntime;
use centaur_tests::stack::TEST_SIGNING_KEY;
use centaur_tests::{ApiClient, ChildProcess, QueueKind, Stack, StackOptions, TestDatabase};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const LOAD_THREADS: usize = 400;
const LOAD_CLIENTS: usize = 16;
const LATENCY_TURNS: usize = 40;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print_histogram(label: &str, histogram: &Histogram<u64>, unit: &str) {
    println!(
        "{label:<58} p50 {:>8.2} {unit}  p99 {:>8.2} {unit}  max {:>8.2} {unit}  (n={})",
        histogram.value_at_quantile(0.50) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
}

async fn execute_latency_under_load(
    client: &ApiClient,
    threads: usize,
    clients: usize,
) -> Vec<String> {
    let mut generations = Vec::with_capacity(threads);
    for index in 0..threads {
        let thread = format!("bench-load-{index}");
        let generation = client.spawn(&thread).await.unwrap();
        client.message(&thread, generation, "load").await.unwrap();
        generations.push((thread, generation));
    }
    let work = Arc::new(Mutex::new(generations));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers = (0..clients).map(|_| {
        let (client, work, histogram, ids) =
            (client.clone(), work.clone(), histogram.clone(), ids.clone());
        tokio::spawn(async move {
            loop {
                let Some((thread, generation)) = work.lock().await.pop() else {
                    break;
                };
                let sent = Instant::now();
                let id = client.execute(&thread, generation).await.unwrap();
                let micros = sent.elapsed().as_micros() as u64;
                histogram.lock().await.record(micros).unwrap();
                ids.lock().await.push(id);
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.unwrap();
    }
    let elapsed = started.elapsed();
    print_histogram(
        &format!("POST /agent/execute under load ({clients} clients, {threads} req)"),
        &*histogram.lock().await,
        "ms",
    );
    println!(
        "{:<58} {:>8.1} req/s",
        "  accepted rate",
        threads as f64 / elapsed.as_secs_f64()
    );
    let ids = ids.lock().await.clone();
    ids
}

async fn first_event_latency(
    stack: &Stack,
    pool: &sqlx::PgPool,
    turns: usize,
    same_thread: bool,
) -> Histogram<u64> {
    let client = stack.client();
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for index in 0..turns {
        let thread = if same_thread {
            "bench-warm".to_owned()
        } else {
            format!("bench-first-{index}")
        };
        let id = client.turn(&thread, "latency probe").await.unwrap();
        client
            .wait_terminal(&id, Duration::from_secs(60))
            .await
            .unwrap();
        let micros: f64 = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM (min(ev.created_at) - e.created_at)) * 1e6)::float8
             FROM executions e JOIN execution_events ev
               ON ev.execution_id = e.execution_id AND ev.event_kind = 'harness_event'
             WHERE e.execution_id = $1 GROUP BY e.created_at",
        )
        .bind(&id)
        .fetch_one(pool)
        .await
        .unwrap();
        histogram.record(micros.max(0.0) as u64).unwrap();
    }
    histogram
}

async fn queue_figures(
    queue: QueueKind,
    load_threads: usize,
    load_clients: usize,
    latency_turns: usize,
) {
    let options = StackOptions {
        queue,
        dispatchers: 0,
        lease_secs: 60,
        extra_env: BTreeMap::from([("RUST_LOG".to_owned(), "warn".to_owned())]),
        ..StackOptions::default()
    };
    let mut stack = Stack::start(options).await.unwrap();
    let pool = stack.database.pool().await.unwrap();
    let client = stack.client();
    println!("\n--- queue: {queue:?} ---");

    let ids = execute_latency_under_load(&client, load_threads, load_clients).await;

    let drain_started = Instant::now();
    stack.start_dispatcher().await.unwrap();
    for id in &ids {
        client
            .wait_terminal(id, Duration::from_secs(600))
            .await
            .unwrap();
    }
    let drained = drain_started.elapsed();
    println!(
        "{:<58} {:>8.1} executions/s ({} executions on {} threads, a new sandbox each)",
        "dispatch throughput (1 dispatcher, backlog drain)",
        ids.len() as f64 / drained.as_secs_f64(),
        ids.len(),
        ids.len()
    );

    let first = first_event_latency(&stack, &pool, latency_turns, false).await;
    print_histogram(
        "execute-202 -> first harness event (new thread, new sandbox)",
        &first,
        "ms",
    );
    let warm = first_event_latency(&stack, &pool, latency_turns, true).await;
    print_histogram(
        "execute-202 -> first harness event (sandbox reused)",
        &warm,
        "ms",
    );

    let kib = |value: Option<u64>| {
        value.map_or("n/a".to_owned(), |v| {
            format!("{:.1} MiB", v as f64 / 1024.0)
        })
    };
    println!("{:<58} {}", "peak RSS api", kib(stack.api().peak_rss_kib()));
    println!(
        "{:<58} {}",
        "peak RSS dispatcher",
        kib(stack.dispatcher(0).peak_rss_kib())
    );
    stack.stop().await.unwrap();
}

/// Size and cold start (exec → first response through the Lambda runtime API) per function.
async fn function_figures(runs: usize) {
    const FUNCTIONS: [&str; 10] = [
        "health",
        "admin-api-keys",
        "agent-spawn",
        "agent-message",
        "agent-execute",
        "agent-executions",
        "agent-events",
        "agent-threads",
        "final-deliveries",
        "slack-webhook",
    ];
    let log_dir = std::env::temp_dir().join(format!("centaur-bench-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    println!("\n--- functions (this machine's x86_64 release build; Lambda runs arm64) ---");
    for function in FUNCTIONS {
        // A database of its own (migrated, as `api migrate` leaves it before a deploy).
        let database = TestDatabase::create().await.unwrap();
        let path = binary(function);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for run in 0..runs {
            let mut runtime = FakeLambdaRuntime::start().await.unwrap();
            let env: BTreeMap<String, String> = [
                ("AWS_LAMBDA_RUNTIME_API", runtime.address.as_str()),
                ("AWS_LAMBDA_FUNCTION_NAME", function),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_REGION", "us-east-1"),
                ("DATABASE_URL", database.url.as_str()),
                ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
                ("RUST_LOG", "warn"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let event = centaur_http::testing::apigw_v2_event("GET", "/health", "", &[], None);
            let started = Instant::now();
            let _process = ChildProcess::spawn(function, &path, &[], &env, &log_dir).unwrap();
            runtime
                .invoke(&format!("req-{run}"), event, Duration::from_secs(30))
                .await
                .unwrap();
            histogram
                .record(started.elapsed().as_micros() as u64)
                .unwrap();
        }
        println!(
            "{function:<18} binary {:>6.1} MiB   cold start p50 {:>7.2} ms  max {:>7.2} ms (n={runs})",
            size as f64 / (1024.0 * 1024.0),
            histogram.value_at_quantile(0.5) as f64 / 1000.0,
            histogram.max() as f64 / 1000.0,
        );
        database.drop_database().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&log_dir);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let load_threads = env_usize("BENCH_LOAD_THREADS", LOAD_THREADS);
    let load_clients = env_usize("BENCH_LOAD_CLIENTS", LOAD_CLIENTS);
    let latency_turns = env_usize("BENCH_LATENCY_TURNS", LATENCY_TURNS);
    println!(
        "centaur control-plane benchmark (embedded defaults, echo harness, {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    // BENCH_ONLY=functions prints only the function sizes and cold starts.
    if std::env::var("BENCH_ONLY").as_deref() != Ok("functions") {
        for queue in [QueueKind::Postgres, QueueKind::Sqs] {
            queue_figures(queue, load_threads, load_clients, latency_turns).await;
        }
    }
    function_figures(env_usize("BENCH_COLD_STARTS", 5)).await;
}
