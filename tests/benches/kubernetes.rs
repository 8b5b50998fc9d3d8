//! Kubernetes backend benchmark against the fake API server (real HTTP, real WebSockets; no
//! real API server can run here, so the figures measure Centaur's side, not a kubelet).
//! Prints figures; asserts nothing about speed.
//!
//!   cargo build --release --bins && cargo bench -p centaur-tests --bench kubernetes
//!
//! 1. Pods created per second by one dispatcher's backend (secret + pod per sandbox, as
//!    many at once as `DISPATCHER_CONCURRENCY`, 8).
//! 2. Warm claim → sandbox attached, p50/p99: a warm pod already running; the claim's
//!    status check (watch cache) plus the `pods/attach` WebSocket handshake.
//! 3. Dispatcher RSS with 1,000 live sandboxes: the real `dispatcher` binary watching and
//!    garbage-collecting 1,000 sandbox pods that 1,000 live session rows own.
#![allow(clippy::unwrap_used)]

use centaur_config::{Env, KubernetesConfig};
use centaur_core::{Harness, SandboxId};
use centaur_kubernetes::KubernetesBackend;
use centaur_sandbox::{SandboxBackend, SandboxSpec};
use centaur_tests::binaries::binary;
use centaur_tests::fake_kube::FakeKube;
use centaur_tests::stack::{free_port, TEST_SIGNING_KEY};
use centaur_tests::{ChildProcess, TestDatabase};
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "centaur-bench";
const LIVE_SANDBOXES: usize = 1000;
const WARM_PODS: usize = 60;
const CONCURRENCY: usize = 8;

fn backend(fake: &FakeKube, image: &str) -> KubernetesBackend {
    KubernetesBackend::install_crypto_provider();
    let mut client_config = kube::Config::new(fake.url.parse().unwrap());
    client_config.default_namespace = NAMESPACE.into();
    let config = KubernetesConfig::from_env(&Env::from_pairs([
        ("KUBERNETES_NAMESPACE", NAMESPACE),
        ("SANDBOX_PROXY_URL", "http://iron-proxy:8080"),
        ("SANDBOX_IMAGE", image),
    ]))
    .unwrap();
    KubernetesBackend::new(kube::Client::try_from(client_config).unwrap(), config)
}

fn spec(id: String, warm: bool) -> SandboxSpec {
    SandboxSpec {
        id: SandboxId::from_stored(id),
        harness: Harness::Echo,
        thread_key: (!warm).then(|| "bench".to_owned()),
        env: BTreeMap::from([("OPENAI_API_KEY".to_owned(), "OPENAI_API_KEY".to_owned())]),
        prompt_files: BTreeMap::from([("AGENTS_BASE.md".to_owned(), "bench".to_owned())]),
        warm,
    }
}

/// Creates `ids` with `CONCURRENCY` creates in flight; the elapsed time.
async fn create_all(backend: &Arc<KubernetesBackend>, ids: Vec<String>, warm: bool) -> Duration {
    let started = Instant::now();
    futures::stream::iter(ids)
        .map(|id| {
            let backend = backend.clone();
            async move { backend.create(&spec(id, warm)).await.unwrap() }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn warm_claim_to_attached() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let backend = Arc::new(backend(&fake, "centaur-agent:bench"));
    let ids: Vec<String> = (0..WARM_PODS)
        .map(|i| format!("sbx-warm-bench-{i}"))
        .collect();
    create_all(&backend, ids.clone(), true).await;
    for id in &ids {
        let id = SandboxId::from_stored(id.clone());
        while !backend.status(&id).await.unwrap().is_alive()
            || backend.status(&id).await.unwrap() != centaur_sandbox::SandboxStatus::Running
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for id in ids {
        let id = SandboxId::from_stored(id);
        let started = Instant::now();
        assert!(backend.status(&id).await.unwrap().is_alive());
        let attachment = backend.attach(&id).await.unwrap();
        histogram
            .record(started.elapsed().as_micros() as u64)
            .unwrap();
        drop(attachment);
    }
    println!(
        "warm claim → sandbox attached   p50 {:>7.2} ms  p99 {:>7.2} ms  (n={WARM_PODS}, status from the watch cache + pods/attach handshake)",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

async fn creation_rate_and_dispatcher_rss() {
    let fake = FakeKube::start(binary("sandbox")).await.unwrap();
    let backend = Arc::new(backend(&fake, "centaur-agent:parked"));
    let ids: Vec<String> = (0..LIVE_SANDBOXES)
        .map(|i| format!("sbx-bench-{i}"))
        .collect();
    let elapsed = create_all(&backend, ids, false).await;
    println!(
        "pods created by one dispatcher  {:>7.1} pods/s  ({LIVE_SANDBOXES} pods + prompt secrets, {CONCURRENCY} in flight, {:.2} s)",
        LIVE_SANDBOXES as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );

    let database = TestDatabase::create().await.unwrap();
    let work_dir = std::env::temp_dir().join(format!("centaur-k8s-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).unwrap();
    let kubeconfig = work_dir.join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, NAMESPACE).unwrap();
    let port = free_port().unwrap();
    let env: BTreeMap<String, String> = [
        ("DATABASE_URL", database.url.as_str()),
        ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
        ("SANDBOX_BACKEND", "kubernetes"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("KUBERNETES_NAMESPACE", NAMESPACE),
        ("SANDBOX_PROXY_URL", "http://iron-proxy:8080"),
        ("SANDBOX_MAX_LIVE", "5000"),
        ("DISPATCHER_PORT", &port.to_string()),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let pool = database.pool().await.unwrap();
    sqlx::query(
        "INSERT INTO sandbox_sessions (thread_key, sandbox_id, harness, state) \
         SELECT 'bench-' || i, 'sbx-bench-' || i, 'echo', 'live' FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(LIVE_SANDBOXES as i32)
    .execute(&pool)
    .await
    .unwrap();
    // Active threads: their sandboxes are neither idle-reaped nor orphans.
    sqlx::query(
        "INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref, state) \
         SELECT 'bench-' || i, 1, 'echo', 'prompts/echo/v1', 'active' FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(LIVE_SANDBOXES as i32)
    .execute(&pool)
    .await
    .unwrap();
    let dispatcher =
        ChildProcess::spawn("dispatcher", &binary("dispatcher"), &[], &env, &work_dir).unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&ready)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "dispatcher never ready\n{}",
            dispatcher.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the watch list all pods and the maintenance loops (GC, reaping) run a few rounds.
    tokio::time::sleep(Duration::from_secs(12)).await;
    println!(
        "dispatcher with {LIVE_SANDBOXES} live sandboxes  RSS {:>6.1} MiB  peak {:>6.1} MiB  ({} pods watched and kept through the GC and reaping rounds)",
        rss_kib(dispatcher.pid(), "VmRSS:") as f64 / 1024.0,
        rss_kib(dispatcher.pid(), "VmHWM:") as f64 / 1024.0,
        fake.pod_names().len()
    );
    drop(dispatcher);
    pool.close().await;
    database.drop_database().await.unwrap();
}

#[tokio::main]
async fn main() {
    println!("centaur Kubernetes backend benchmark (fake API server over real HTTP)");
    creation_rate_and_dispatcher_rss().await;
    warm_claim_to_attached().await;
}
