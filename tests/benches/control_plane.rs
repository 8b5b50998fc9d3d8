//! Control-plane benchmark on the embedded defaults (Postgres queue, local sandboxes, echo
//! harness), with its peers and floors measured side by side in the same run on the same
//! Postgres. Prints figures; asserts nothing about speed.
//!
//!   cargo build --release --bins && cargo bench -p centaur-tests --bench control_plane
//!
//! Sections (`BENCH_ONLY=execute,drain,rounds,latency,sqs,functions` picks some):
//! - **execute**: `POST /agent/execute` (one-call path, a new thread each) at
//!   `BENCH_LOAD_CLIENTS` (16) clients, p50/p99 and req/s; then the execute's SQL path
//!   without HTTP (`support/store_path.rs`: the API's ceiling with today's statements);
//!   each with the CPU it cost Postgres and its client per execute; then pgbench running
//!   the statements the execute ran before issue 11 (its SQL floor then) on the same
//!   database, same clients.
//! - **drain**: one dispatcher draining a backlog — turns on threads whose sandboxes are
//!   already running (`BENCH_DRAIN_TURNS` over `BENCH_DRAIN_THREADS`) at concurrency 8 and
//!   32 (`BENCH_DRAIN_CONCURRENCY`, comma-separated, picks others), with the dispatcher's
//!   time per turn in each step and the CPU each party spent per turn
//!   (`support/drain_profile.rs`), and new threads (a sandbox each); graphile-worker (npm, installed into a scratch
//!   directory) draining as many no-op jobs at concurrency 8 and 32 on a database of its
//!   own on the same server; the ratio. Beside the new threads, their floor: as many
//!   sandbox start-ups alone (the dispatcher's backend, create → ready) at concurrency 8.
//! - **rounds**: what one turn costs the database, counted by a wire-protocol proxy in
//!   front of each process (see `support/pg_count.rs`): statements, round trips and
//!   commits from 202 to terminal (reused sandbox), and per one-call execute; with
//!   `pg_stat_database.xact_commit` as a cross-check (every transaction, read-only ones
//!   included) and the WAL records and bytes written per turn (`pg_stat_wal`).
//! - **latency**: execute-202 → first harness event, p50/p99, new thread (a sandbox
//!   started) and reused sandbox: as a follower of the thread's event stream (SSE, opened
//!   before the execute) receives it, timed from the 202's arrival; and, beside it, from
//!   the rows' own timestamps; peak RSS.
//! - **sqs**: execute latency, new-thread drain and first event on the SQS queue (moto).
//! - **functions**: cold start, exec → first 200 on `/health/live` over HTTP, of each
//!   function binary and of a minimal axum hello-world (`bench-hello-axum`, built with
//!   the bins) side by side; and exec → first response through the Lambda runtime API.
#![allow(clippy::unwrap_used)]

#[path = "support/drain_profile.rs"]
mod drain_profile;
#[path = "support/graphile.rs"]
mod graphile;
#[path = "support/pg_count.rs"]
mod pg_count;
#[path = "support/pg_cpu.rs"]
mod pg_cpu;
#[path = "support/pgbench.rs"]
mod pgbench;
#[path = "support/processes.rs"]
mod processes;
#[path = "support/store_path.rs"]
mod store_path;

use centaur_tests::binaries::binary;
use centaur_tests::lambda_runtime::FakeLambdaRuntime;
use centaur_tests::stack::{free_port, TEST_SIGNING_KEY};
use centaur_tests::{until, ApiClient, ChildProcess, QueueKind, Stack, StackOptions, TestDatabase};
use futures::StreamExt;
use hdrhistogram::Histogram;
use processes::Processes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const TERMINAL: &str = "('completed','failed_permanent','cancelled')";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether `BENCH_ONLY` (comma-separated sections) includes `section` (all when unset).
fn wanted(section: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|s| s.trim() == section),
        Err(_) => true,
    }
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

/// Submits a one-call execute per entry of `threads` from `clients` concurrent clients;
/// returns the latency histogram (µs), the elapsed time and the execution ids.
async fn submit(
    client: &ApiClient,
    threads: Vec<String>,
    clients: usize,
) -> (Histogram<u64>, Duration, Vec<String>) {
    let work = Arc::new(Mutex::new(threads));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers = (0..clients).map(|_| {
        let (client, work, histogram, ids) =
            (client.clone(), work.clone(), histogram.clone(), ids.clone());
        tokio::spawn(async move {
            loop {
                let Some(thread) = work.lock().await.pop() else {
                    break;
                };
                let sent = Instant::now();
                let id = client.execute_text(&thread, "bench").await.unwrap();
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
    let histogram = histogram.lock().await.clone();
    let ids = ids.lock().await.clone();
    (histogram, elapsed, ids)
}

/// Waits until `expected` executions ended. Each probe reads the unfinished executions
/// first (index `executions_unfinished`) and counts only once none is left, so the
/// polling takes next to nothing from the processes being measured.
async fn wait_terminal(pool: &sqlx::PgPool, expected: i64, timeout: Duration) {
    let query = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM executions WHERE status NOT IN {TERMINAL})
                AND (SELECT count(*) FROM executions) >= $1"
    );
    until(
        timeout,
        &format!("{expected} executions to end"),
        || async {
            sqlx::query_scalar(&query)
                .bind(expected)
                .fetch_one(pool)
                .await
                .unwrap_or(false)
        },
    )
    .await
    .unwrap();
}

/// Executions that did not complete (a figure over failed turns would mean nothing).
async fn report_failures(pool: &sqlx::PgPool) {
    let failed: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, error_text FROM executions WHERE status <> 'completed' LIMIT 3",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    if !failed.is_empty() {
        println!("  !! executions that did not complete: {failed:?}");
    }
}

/// Executions per second between the first claim and the last completion of the
/// executions after `after_seq`.
async fn rows_rate(pool: &sqlx::PgPool, after_seq: i64) -> f64 {
    let (count, seconds): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM max(completed_at) - min(claimed_at))::float8
         FROM executions WHERE seq > $1",
    )
    .bind(after_seq)
    .fetch_one(pool)
    .await
    .unwrap();
    count as f64 / seconds.unwrap_or(f64::NAN)
}

/// Prints how many claims and how many ends of the executions after `after_seq` one
/// statement made on average (the rows a statement writes share its `now()`).
async fn print_turns_per_statement(pool: &sqlx::PgPool, after_seq: i64) {
    let (claims, ends): (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*)::float8 / NULLIF(count(DISTINCT claimed_at), 0),
                count(*)::float8 / NULLIF(count(DISTINCT completed_at), 0)
         FROM executions WHERE seq > $1",
    )
    .bind(after_seq)
    .fetch_one(pool)
    .await
    .unwrap();
    println!(
        "{:<58} {:>8.2}  (ends {:.2})",
        "  claims per statement (group commit)",
        claims.unwrap_or(f64::NAN),
        ends.unwrap_or(f64::NAN)
    );
}

async fn max_seq(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM executions")
        .fetch_one(pool)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// execute

async fn execute_figures(requests: usize, clients: usize) {
    println!("\n--- POST /agent/execute (one-call, a new thread each; API alone) ---");
    let mut processes = Processes::new(&[]).await.unwrap();
    let url = processes.database.url.clone();
    let pool = processes.database.pool().await.unwrap();
    processes.start_api(&url).await.unwrap();
    let client = ApiClient::new(&processes.api_url);
    let warm = (0..100).map(|i| format!("warm-{i}")).collect();
    submit(&client, warm, clients).await;
    let checkpointer = pg_cpu::checkpointer(&pool).await;
    let api_pid = processes.api_pid();
    let cpu = |client: Option<u32>| CpuReading {
        server: checkpointer.and_then(pg_cpu::server_seconds),
        client: client.and_then(pg_cpu::process_seconds),
    };
    let before = cpu(api_pid);
    let threads = (0..requests).map(|i| format!("load-{i}")).collect();
    let (histogram, elapsed, _) = submit(&client, threads, clients).await;
    let api_cpu = cpu(api_pid).since(&before, requests);
    let rate = requests as f64 / elapsed.as_secs_f64();
    print_histogram(
        &format!("POST /agent/execute ({clients} clients, {requests} req)"),
        &histogram,
        "ms",
    );
    println!("{:<58} {rate:>8.1} req/s", "  accepted rate");
    api_cpu.print("  CPU per execute", "api");
    print_executes_per_transaction(&pool, "load-%").await;
    store_path::executes_per_second(&url, "warm", 100, clients)
        .await
        .unwrap();
    let bench_pid = Some(std::process::id());
    let before = cpu(bench_pid);
    let store_rate = store_path::executes_per_second(&url, "load", requests, clients)
        .await
        .unwrap();
    let store_cpu = cpu(bench_pid).since(&before, requests);
    println!(
        "{:<58} {store_rate:>8.1} executes/s",
        format!("the execute's SQL path, no HTTP ({clients} tasks, {requests})")
    );
    store_cpu.print("  CPU per execute", "this process");
    print_executes_per_transaction(&pool, "store-load-%").await;
    match pgbench::run(&url, clients, 5) {
        Ok(floor) => {
            println!(
                "{:<58} {:>8.1} tps  (latency avg {:.2} ms)",
                format!("pgbench, the execute's statements before issue 11 ({clients} clients)"),
                floor.tps,
                floor.latency_ms
            );
            println!(
                "{:<58} {:>8.2}",
                "  API req/s ÷ that floor's tps",
                rate / floor.tps
            );
            println!(
                "{:<58} {:>8.2}",
                "  SQL path without HTTP ÷ that floor's tps",
                store_rate / floor.tps
            );
        }
        Err(err) => println!("pgbench floor: not measured ({err})"),
    }
    processes.stop().await.unwrap();
}

/// Prints how many executes of the threads matching `threads` (a LIKE pattern) a
/// transaction wrote on average (the executions a transaction writes share its `now()`).
async fn print_executes_per_transaction(pool: &sqlx::PgPool, threads: &str) {
    let per_transaction: Option<f64> = sqlx::query_scalar(
        "SELECT count(*)::float8 / NULLIF(count(DISTINCT created_at), 0)
         FROM executions WHERE thread_key LIKE $1",
    )
    .bind(threads)
    .fetch_one(pool)
    .await
    .unwrap();
    println!(
        "{:<58} {:>8.2}",
        "  executes per transaction (group commit)",
        per_transaction.unwrap_or(f64::NAN)
    );
}

/// CPU used by the Postgres server and by its client process (`api`, or this one for the
/// SQL path): seconds so far, or milliseconds per request ([`CpuReading::since`]); `None`
/// when not readable here.
struct CpuReading {
    server: Option<f64>,
    client: Option<f64>,
}

impl CpuReading {
    /// Milliseconds of CPU per request between `before` and this reading.
    fn since(&self, before: &CpuReading, requests: usize) -> CpuReading {
        let per_request = |after: Option<f64>, before: Option<f64>| {
            after
                .zip(before)
                .map(|(after, before)| (after - before) * 1000.0 / requests as f64)
        };
        CpuReading {
            server: per_request(self.server, before.server),
            client: per_request(self.client, before.client),
        }
    }

    /// Prints a per-request reading under `label`, the client named `client`.
    fn print(&self, label: &str, client: &str) {
        let shown =
            |ms: Option<f64>| ms.map_or("not readable".to_owned(), |ms| format!("{ms:.3} ms"));
        println!(
            "{label:<58} Postgres {}, {client} {}",
            shown(self.server),
            shown(self.client)
        );
    }
}

// ---------------------------------------------------------------------------------------
// drain

/// One dispatcher drains `turns` turns over `threads` threads whose sandboxes run already.
/// A drain's rate and the WAL the server wrote per turn (or job) while it ran.
struct Drain {
    rate: f64,
    wal_per_turn: f64,
    /// The Postgres server's CPU seconds per turn (or job), when readable here.
    cpu_per_turn: Option<f64>,
}

async fn reused_drain(threads: usize, turns: usize, concurrency: usize) -> Drain {
    let concurrency_env = concurrency.to_string();
    let extra = [
        ("DISPATCHER_CONCURRENCY", concurrency_env.as_str()),
        (
            "DATABASE_MAX_CONNECTIONS",
            if concurrency > 8 { "40" } else { "10" },
        ),
    ];
    let mut processes = Processes::new(&extra).await.unwrap();
    let url = processes.database.url.clone();
    let pool = processes.database.pool().await.unwrap();
    processes.start_api(&url).await.unwrap();
    processes.start_dispatcher(&url, &[]).await.unwrap();
    let client = ApiClient::new(&processes.api_url);
    let names: Vec<String> = (0..threads).map(|i| format!("reuse-{i}")).collect();
    submit(&client, names.clone(), 16).await;
    wait_terminal(&pool, threads as i64, Duration::from_secs(120)).await;
    processes.kill_dispatchers();
    let after_seq = max_seq(&pool).await;
    let backlog = (0..turns).map(|i| names[i % threads].clone()).collect();
    submit(&client, backlog, 16).await;
    let wal_start = wal_position(&pool).await;
    let (parties, before) = drain_profile::before_dispatcher(&processes, &pool).await;
    let started = Instant::now();
    processes.start_dispatcher(&url, &[]).await.unwrap();
    wait_terminal(&pool, (threads + turns) as i64, Duration::from_secs(600)).await;
    let wall = started.elapsed();
    let after = parties.read_with(&processes).await;
    let cpu_per_turn = after.postgres_per_turn(&before, turns);
    let wal_per_turn = wal_bytes_since(&pool, &wal_start).await / turns as f64;
    let rate = rows_rate(&pool, after_seq).await;
    println!(
        "{:<58} {rate:>8.1} executions/s  (wall, dispatcher start included: {:.1}/s)",
        format!("drain, reused sandboxes ({turns} turns / {threads} threads), c={concurrency}"),
        turns as f64 / wall.as_secs_f64(),
    );
    print_turns_per_statement(&pool, after_seq).await;
    after.print_since(&before, turns);
    report_failures(&pool).await;
    processes.stop().await.unwrap();
    Drain {
        rate,
        wal_per_turn,
        cpu_per_turn,
    }
}

/// One dispatcher drains `threads` one-call executes on new threads (a sandbox each);
/// returns the rate.
async fn new_thread_drain(threads: usize, concurrency: usize) -> f64 {
    let concurrency_env = concurrency.to_string();
    let extra = [("DISPATCHER_CONCURRENCY", concurrency_env.as_str())];
    let mut processes = Processes::new(&extra).await.unwrap();
    let url = processes.database.url.clone();
    let pool = processes.database.pool().await.unwrap();
    processes.start_api(&url).await.unwrap();
    let client = ApiClient::new(&processes.api_url);
    let names = (0..threads).map(|i| format!("fresh-{i}")).collect();
    submit(&client, names, 16).await;
    let (parties, before) = drain_profile::before_dispatcher(&processes, &pool).await;
    let started = Instant::now();
    processes.start_dispatcher(&url, &[]).await.unwrap();
    wait_terminal(&pool, threads as i64, Duration::from_secs(600)).await;
    let wall = started.elapsed();
    let after = parties.read_with(&processes).await;
    let rate = rows_rate(&pool, 0).await;
    println!(
        "{:<58} {rate:>8.1} executions/s  (wall: {:.1}/s)",
        format!("drain, new threads (a sandbox each, {threads}), c={concurrency}"),
        threads as f64 / wall.as_secs_f64(),
    );
    after.print_since(&before, threads);
    report_failures(&pool).await;
    processes.stop().await.unwrap();
    rate
}

/// graphile-worker draining `jobs` no-op jobs at `concurrency`, on a database of its own.
async fn graphile_drain(
    script: &std::path::Path,
    jobs: usize,
    concurrency: usize,
) -> Option<Drain> {
    let database = TestDatabase::create().await.unwrap();
    let (url, script) = (database.url.clone(), script.to_path_buf());
    let seconds =
        tokio::task::spawn_blocking(move || graphile::drain(&script, &url, jobs, concurrency))
            .await
            .unwrap();
    database.drop_database().await.unwrap();
    match seconds {
        Ok(drained) => {
            let rate = jobs as f64 / drained.seconds;
            println!(
                "{:<58} {rate:>8.1} jobs/s",
                format!(
                    "graphile-worker {} ({jobs} no-op jobs), c={concurrency}",
                    graphile::VERSION
                ),
            );
            Some(Drain {
                rate,
                wal_per_turn: drained.wal_bytes / jobs as f64,
                cpu_per_turn: drained.server_seconds.map(|seconds| seconds / jobs as f64),
            })
        }
        Err(err) => {
            println!("graphile-worker c={concurrency}: not measured ({err})");
            None
        }
    }
}

/// Sandbox start-ups alone, as a dispatcher's backend makes one for a new thread (create,
/// then attach once its ready line came), `count` at `concurrency`: the floor of a
/// new-thread drain. Returns the rate.
async fn sandbox_start_floor(count: usize, concurrency: usize) -> f64 {
    use centaur_core::{ExecutionId, Harness, SandboxId};
    use centaur_sandbox::{SandboxBackend, SandboxSpec};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let processes = Processes::new(&[]).await.unwrap();
    let backend = Arc::new(processes.sandbox_backend().unwrap());
    let api_url = processes.api_url.clone();
    let taken = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let starters: Vec<_> = (0..concurrency)
        .map(|_| {
            let (backend, taken, api_url) = (backend.clone(), taken.clone(), api_url.clone());
            tokio::spawn(async move {
                while taken.fetch_add(1, Ordering::Relaxed) < count {
                    let id = SandboxId::for_execution(&ExecutionId::generate());
                    // What the dispatcher's spec holds: placeholders, the API, the harness.
                    let env = BTreeMap::from([
                        ("OPENAI_API_KEY".to_owned(), "OPENAI_API_KEY".to_owned()),
                        ("CENTAUR_API_URL".to_owned(), api_url.clone()),
                        ("CENTAUR_HARNESS".to_owned(), "echo".to_owned()),
                        ("CENTAUR_THREAD_KEY".to_owned(), format!("floor-{id}")),
                    ]);
                    let spec = SandboxSpec {
                        thread_key: Some(format!("floor-{id}")),
                        id,
                        harness: Harness::Echo,
                        env,
                        prompt_files: BTreeMap::from([(
                            "AGENTS_BASE.md".to_owned(),
                            "You are a coding agent.".to_owned(),
                        )]),
                        warm: false,
                    };
                    let id = backend.create(&spec).await.unwrap();
                    backend.attach(&id).await.unwrap();
                }
            })
        })
        .collect();
    for starter in starters {
        starter.await.unwrap();
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<58} {rate:>8.1} sandboxes/s",
        format!("sandbox start-ups alone (create → ready, {count}), c={concurrency}"),
    );
    processes.stop().await.unwrap();
    rate
}

/// The concurrencies of the reused-sandbox drains: `BENCH_DRAIN_CONCURRENCY` (8,32).
fn drain_concurrencies() -> Vec<usize> {
    std::env::var("BENCH_DRAIN_CONCURRENCY")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|c| c.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![8, 32])
}

async fn drain_figures(threads: usize, turns: usize, new_threads: usize) {
    println!("\n--- drain: one dispatcher (Postgres queue, echo) vs graphile-worker ---");
    let script = match tokio::task::spawn_blocking(graphile::install)
        .await
        .unwrap()
    {
        Ok(script) => Some(script),
        Err(err) => {
            println!("graphile-worker: not installed ({err})");
            None
        }
    };
    for concurrency in drain_concurrencies() {
        let ours = reused_drain(threads, turns, concurrency).await;
        if let Some(script) = &script {
            if let Some(theirs) = graphile_drain(script, turns, concurrency).await {
                println!(
                    "{:<58} {:>8.2}",
                    format!("  centaur ÷ graphile-worker, c={concurrency}"),
                    ours.rate / theirs.rate
                );
                println!(
                    "{:<58} {:>8.1}  (centaur {:.0} B per turn, graphile-worker {:.0} B per job)",
                    format!("  WAL written per turn ÷ per job, c={concurrency}"),
                    ours.wal_per_turn / theirs.wal_per_turn,
                    ours.wal_per_turn,
                    theirs.wal_per_turn
                );
                if let Some((ours_cpu, theirs_cpu)) = ours.cpu_per_turn.zip(theirs.cpu_per_turn) {
                    println!(
                        "{:<58} {:>8.1}  (centaur {:.3} ms per turn, graphile-worker {:.3} ms per job)",
                        format!("  Postgres CPU per turn ÷ per job, c={concurrency}"),
                        ours_cpu / theirs_cpu,
                        ours_cpu * 1000.0,
                        theirs_cpu * 1000.0
                    );
                }
            }
        }
    }
    let ours = new_thread_drain(new_threads, 8).await;
    let floor = sandbox_start_floor(new_threads, 8).await;
    println!(
        "{:<58} {:>8.2}",
        "  new threads ÷ sandbox start-ups alone, c=8",
        ours / floor
    );
}

// ---------------------------------------------------------------------------------------
// rounds

/// `host:port` of the server `DATABASE_URL` names.
fn server_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

async fn xact_commit(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The server's WAL insert position now: what is written after it is
/// [`wal_bytes_since`] it (exact and at once, unlike `pg_stat_wal`'s counters).
async fn wal_position(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Bytes of WAL the whole server wrote since `position` ([`wal_position`]).
async fn wal_bytes_since(pool: &sqlx::PgPool, position: &str) -> f64 {
    sqlx::query_scalar::<_, f64>(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8",
    )
    .bind(position)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `(records, bytes)` of WAL written by the whole server so far (`pg_stat_wal`).
async fn wal_written(pool: &sqlx::PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT wal_records, wal_bytes::bigint FROM pg_stat_wal")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn round_trip_figures(threads: usize, turns: usize) {
    println!("\n--- rounds: what a turn costs the database (counted on the wire) ---");
    let mut processes = Processes::new(&[]).await.unwrap();
    let url = processes.database.url.clone();
    let pool = processes.database.pool().await.unwrap();
    let upstream = server_address(&url);
    let api_proxy = pg_count::PgCounter::start(&upstream).await.unwrap();
    let dispatcher_proxy = pg_count::PgCounter::start(&upstream).await.unwrap();
    processes.start_api(&api_proxy.url_for(&url)).await.unwrap();
    processes
        .start_dispatcher(&dispatcher_proxy.url_for(&url), &[])
        .await
        .unwrap();
    let client = ApiClient::new(&processes.api_url);

    let names: Vec<String> = (0..threads).map(|i| format!("rounds-{i}")).collect();
    let before = api_proxy.snapshot();
    submit(&client, names.clone(), 1).await;
    let new_thread = api_proxy.snapshot().since(&before);
    wait_terminal(&pool, threads as i64, Duration::from_secs(120)).await;
    processes.kill_dispatchers();

    let before = api_proxy.snapshot();
    let backlog = (0..turns).map(|i| names[i % threads].clone()).collect();
    submit(&client, backlog, 1).await;
    let existing_thread = api_proxy.snapshot().since(&before);

    // Let every backend report its counters before the cross-check starts.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let commits_before = xact_commit(&pool).await;
    let wal_before = wal_written(&pool).await;
    let before = dispatcher_proxy.snapshot();
    processes
        .start_dispatcher(&dispatcher_proxy.url_for(&url), &[])
        .await
        .unwrap();
    wait_terminal(&pool, (threads + turns) as i64, Duration::from_secs(600)).await;
    let turn = dispatcher_proxy.snapshot().since(&before);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let transactions = xact_commit(&pool).await - commits_before;
    let wal_after = wal_written(&pool).await;
    report_failures(&pool).await;

    pg_count::print_per(
        "one-call execute, new thread (API)",
        &new_thread,
        threads,
        "execute",
    );
    pg_count::print_per(
        "one-call execute, thread with a sandbox (API)",
        &existing_thread,
        turns,
        "execute",
    );
    pg_count::print_per(
        &format!("202 → terminal, reused sandbox, echo (dispatcher, {turns} turns)"),
        &turn,
        turns,
        "turn",
    );
    println!(
        "{:<58} {:>6.1} per turn  (pg_stat_database.xact_commit Δ: every transaction of the database, read-only included, the bench's polling too)",
        "  transactions, cross-check",
        transactions as f64 / turns as f64
    );
    println!(
        "{:<58} {:>6.1} records {:>8.0} bytes per turn  (pg_stat_wal Δ, the whole server: counts the CPU's speed does not change)",
        "  WAL written",
        (wal_after.0 - wal_before.0) as f64 / turns as f64,
        (wal_after.1 - wal_before.1) as f64 / turns as f64
    );
    processes.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// latency

/// Execute-202 → first harness event of each turn, read two ways.
struct FirstEvent {
    /// From the moment the 202 arrived to the moment a follower of the thread's event
    /// stream (`GET /agent/threads/{thread}/events`, SSE, opened before the execute)
    /// received the turn's first harness event: what a watching client waits.
    followed: Histogram<u64>,
    /// From the execution row's `created_at` to the first harness event row's: the
    /// database's own clock, which starts with the execute's transaction (before its 202)
    /// and stops when the writing transaction began (before its commit).
    rows: Histogram<u64>,
}

impl FirstEvent {
    fn print(&self, what: &str) {
        print_histogram(
            &format!("execute-202 -> first harness event, followed ({what})"),
            &self.followed,
            "ms",
        );
        print_histogram(
            &format!("  rows: execution created -> first event row ({what})"),
            &self.rows,
            "ms",
        );
    }
}

/// The chunks of an SSE response as they arrive.
type SseFrames = futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>;

/// Follows `thread`'s events after the newest one stored, as a client watching the
/// thread would; returns once the stream is open (the API subscribed before answering).
async fn follow_thread(api_url: &str, pool: &sqlx::PgPool, thread: &str) -> SseFrames {
    let newest: i64 = sqlx::query_scalar(
        "SELECT COALESCE(max(thread_seq), 0) FROM execution_events WHERE thread_key = $1",
    )
    .bind(thread)
    .fetch_one(pool)
    .await
    .unwrap();
    let response = reqwest::get(format!(
        "{api_url}/agent/threads/{thread}/events?after_event_id={newest}"
    ))
    .await
    .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response
        .bytes_stream()
        .map(|chunk| chunk.map(|bytes| bytes.to_vec()))
        .boxed()
}

/// Reads SSE frames until one of kind `harness_event` arrived.
async fn until_harness_event(frames: &mut SseFrames) {
    let mut buffered = String::new();
    while !buffered.contains("event: harness_event\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(60), frames.next())
            .await
            .expect("an SSE frame within 60 s")
            .expect("the stream is open")
            .unwrap();
        buffered.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn first_event_latency(
    api_url: &str,
    client: &ApiClient,
    pool: &sqlx::PgPool,
    turns: usize,
    same_thread: bool,
) -> FirstEvent {
    let mut followed = Histogram::<u64>::new(3).unwrap();
    let mut rows = Histogram::<u64>::new(3).unwrap();
    for index in 0..turns {
        let thread = if same_thread {
            "bench-warm".to_owned()
        } else {
            format!("bench-first-{index}")
        };
        let mut frames = follow_thread(api_url, pool, &thread).await;
        let id = client.execute_text(&thread, "latency probe").await.unwrap();
        let accepted = Instant::now();
        until_harness_event(&mut frames).await;
        followed
            .record(accepted.elapsed().as_micros() as u64)
            .unwrap();
        drop(frames);
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
        rows.record(micros.max(0.0) as u64).unwrap();
    }
    FirstEvent { followed, rows }
}

/// Prints the first harness event of `turns` turns on new threads, then of as many on one
/// thread whose sandbox is reused.
async fn first_event_figures(api_url: &str, client: &ApiClient, pool: &sqlx::PgPool, turns: usize) {
    first_event_latency(api_url, client, pool, turns, false)
        .await
        .print("new thread, new sandbox");
    first_event_latency(api_url, client, pool, turns, true)
        .await
        .print("sandbox reused");
}

fn mib(value: Option<u64>) -> String {
    value.map_or("n/a".to_owned(), |v| {
        format!("{:.1} MiB", v as f64 / 1024.0)
    })
}

async fn latency_figures(turns: usize) {
    println!("\n--- latency: execute-202 → first harness event (Postgres queue) ---");
    let mut processes = Processes::new(&[]).await.unwrap();
    let url = processes.database.url.clone();
    let pool = processes.database.pool().await.unwrap();
    processes.start_api(&url).await.unwrap();
    processes.start_dispatcher(&url, &[]).await.unwrap();
    let client = ApiClient::new(&processes.api_url);
    let api_url = &processes.api_url;
    // One turn first: the processes' pools and the sandbox program's pages are warm.
    first_event_latency(api_url, &client, &pool, 1, true).await;
    first_event_figures(api_url, &client, &pool, turns).await;
    let (api, dispatcher) = processes.peak_rss_kib();
    println!("{:<58} {}", "peak RSS api", mib(api));
    println!("{:<58} {}", "peak RSS dispatcher", mib(dispatcher));
    processes.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// sqs

async fn sqs_figures(load_threads: usize, latency_turns: usize) {
    println!("\n--- queue: SQS (moto) ---");
    let options = StackOptions {
        queue: QueueKind::Sqs,
        dispatchers: 0,
        lease_secs: 60,
        extra_env: BTreeMap::from([("RUST_LOG".to_owned(), "warn".to_owned())]),
        ..StackOptions::default()
    };
    let mut stack = Stack::start(options).await.unwrap();
    let pool = stack.database.pool().await.unwrap();
    let client = stack.client();
    let names = (0..load_threads).map(|i| format!("sqs-load-{i}")).collect();
    let (histogram, elapsed, ids) = submit(&client, names, 16).await;
    print_histogram(
        &format!("POST /agent/execute (16 clients, {load_threads} req)"),
        &histogram,
        "ms",
    );
    println!(
        "{:<58} {:>8.1} req/s",
        "  accepted rate",
        load_threads as f64 / elapsed.as_secs_f64()
    );
    let started = Instant::now();
    stack.start_dispatcher().await.unwrap();
    wait_terminal(&pool, ids.len() as i64, Duration::from_secs(600)).await;
    println!(
        "{:<58} {:>8.1} executions/s  (wall: {:.1}/s)",
        format!("drain, new threads (a sandbox each, {})", ids.len()),
        rows_rate(&pool, 0).await,
        ids.len() as f64 / started.elapsed().as_secs_f64()
    );
    let api_url = &stack.api_url;
    first_event_figures(api_url, &client, &pool, latency_turns).await;
    stack.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// functions

/// Exec → first answer to `GET /health/live` over HTTP, retrying the connection every
/// 200 µs (blocking, on a thread of its own): a `200` from the functions that serve
/// liveness (`health`, `api`, the hello-world), the JSON `404` of a function that does
/// not (its first answer, after its start-up check). Returns the time and the status.
fn http_cold_start(
    path: &std::path::Path,
    env: &BTreeMap<String, String>,
    log_dir: &std::path::Path,
) -> (Duration, u16) {
    use std::io::{Read, Write};
    let port: u16 = env["PORT"].parse().unwrap();
    let started = Instant::now();
    let _process = ChildProcess::spawn("cold", path, &[], env, log_dir).unwrap();
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let request =
                "GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut head = [0u8; 12];
                if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ") {
                    let status = std::str::from_utf8(&head[9..]).unwrap_or("0").parse();
                    return (started.elapsed(), status.unwrap_or(0));
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} never answered /health/live",
            path.display()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

const FUNCTIONS: [&str; 11] = [
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
    "api",
];

async fn function_figures(runs: usize) {
    let log_dir = std::env::temp_dir().join(format!("centaur-bench-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    println!(
        "\n--- cold start over HTTP: exec → first answer to GET /health/live (x86_64 release build) ---"
    );
    let database = TestDatabase::create().await.unwrap();
    // Round after round, each binary once per round: a drift of the machine during the
    // section weighs on every binary alike instead of on whichever ran last.
    let names: Vec<&str> = std::iter::once("bench-hello-axum")
        .chain(FUNCTIONS)
        .collect();
    let mut figures: Vec<(Histogram<u64>, u16)> = names
        .iter()
        .map(|_| (Histogram::<u64>::new(3).unwrap(), 0))
        .collect();
    for _ in 0..runs {
        for (name, (histogram, status)) in names.iter().zip(figures.iter_mut()) {
            let env: BTreeMap<String, String> = [
                ("DATABASE_URL", database.url.as_str()),
                ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
                ("SLACKBOT_API_KEY", centaur_tests::stack::TEST_SLACKBOT_KEY),
                ("RUST_LOG", "warn"),
                ("PORT", &free_port().unwrap().to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let (path, log_dir) = (binary(name), log_dir.clone());
            let (took, answered) =
                tokio::task::spawn_blocking(move || http_cold_start(&path, &env, &log_dir))
                    .await
                    .unwrap();
            *status = answered;
            histogram.record(took.as_micros() as u64).unwrap();
        }
    }
    let reference = figures[0].0.value_at_quantile(0.5) as f64 / 1000.0;
    for (name, (histogram, status)) in names.iter().zip(&figures) {
        let p50 = histogram.value_at_quantile(0.5) as f64 / 1000.0;
        println!(
            "{name:<18} p50 {p50:>7.2} ms  p90 {:>7.2} ms  max {:>7.2} ms  {:>5.2}× the hello-world (n={runs}, answered {status})",
            histogram.value_at_quantile(0.9) as f64 / 1000.0,
            histogram.max() as f64 / 1000.0,
            p50 / reference,
        );
    }
    database.drop_database().await.unwrap();

    println!(
        "\n--- functions under the Lambda runtime API: exec → first response to GET /health ---"
    );
    for function in FUNCTIONS.iter().take(10) {
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

/// Every party of a run — Centaur's processes, pgbench and graphile-worker — reads the same
/// `DATABASE_URL`, so all reach Postgres over the same transport: plain TCP on loopback
/// unless the URL names an `sslmode` (libpq and sqlx would each pick TLS on their own with
/// a server that offers it, node-postgres would not, and TLS costs each round trip). A run
/// whose URL names none runs itself again with `sslmode=disable` added (the environment
/// is read, never changed, in this process); returns the URL otherwise.
fn pinned_transport() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| centaur_tests::database::DEFAULT_SERVER_URL.to_owned());
    if url.contains("sslmode=") {
        return url;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(
            "DATABASE_URL",
            centaur_tests::database::with_parameters(&url, "sslmode=disable"),
        )
        .status()
        .unwrap();
    std::process::exit(status.code().unwrap_or(1));
}

fn main() {
    let url = pinned_transport();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&url));
}

async fn run(url: &str) {
    println!(
        "centaur control-plane benchmark (embedded defaults, echo harness, {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let transport = url.split_once("sslmode=").map_or("", |(_, mode)| mode);
    let transport = transport.split('&').next().unwrap_or(transport);
    println!("every party on the same Postgres transport: sslmode={transport}");
    let clients = env_usize("BENCH_LOAD_CLIENTS", 16);
    let latency_turns = env_usize("BENCH_LATENCY_TURNS", 40);
    if wanted("execute") {
        execute_figures(env_usize("BENCH_EXECUTE_REQUESTS", 2000), clients).await;
    }
    if wanted("drain") {
        drain_figures(
            env_usize("BENCH_DRAIN_THREADS", 50),
            env_usize("BENCH_DRAIN_TURNS", 2000),
            env_usize("BENCH_NEW_THREADS", 200),
        )
        .await;
    }
    if wanted("rounds") {
        round_trip_figures(
            env_usize("BENCH_DRAIN_THREADS", 50),
            env_usize("BENCH_COUNT_TURNS", 500),
        )
        .await;
    }
    if wanted("latency") {
        latency_figures(latency_turns).await;
    }
    if wanted("sqs") {
        sqs_figures(env_usize("BENCH_SQS_THREADS", 200), latency_turns).await;
    }
    if wanted("functions") {
        function_figures(env_usize("BENCH_COLD_STARTS", 20)).await;
    }
}
