//! Real-harness benchmark: what the egress proxy and the real codex CLI add to a turn.
//! Prints figures; asserts nothing about speed.
//!
//!   cargo build --release -p api -p dispatcher -p sandbox
//!   npm install --prefix tests/harnesses   # the pinned CLIs (scripts/test.sh does it)
//!   cargo bench -p centaur-tests --bench real_harness
//!
//! The model side is the conformance tests' own, imported, not copied: a Python helper
//! (below, `python3` with tests/requirements.txt) starts the scripted fake OpenAI Responses
//! server of tests/harnesses/fake_models.py and the egress proxy of tests/support/egress.py
//! (real `mitmdump` with contrib/egress-proxy/centaur_egress.py, the conformance bindings,
//! the real key in its environment only, api.openai.com routed to the fake).
//!
//! 1. The proxy's added latency on one model request: `POST /v1/responses` (`stream: true`,
//!    the fake's SSE answer) sent N times directly to the fake over plain HTTP with the real
//!    key, and N times as `https://api.openai.com/v1/responses` through the proxy (CONNECT +
//!    TLS to mitmdump, placeholder → real key, routed to the same fake), each side over one
//!    keep-alive HTTP/1.1 connection, interleaved, after a warm-up. Timed from send to the
//!    whole SSE body read, by a reqwest + rustls client (what the codex CLI uses). Also: the
//!    first request through a new tunnel (new connection + TLS), separately.
//! 2. execute-202 → first harness event, `echo` vs the real `codex` CLI, on the stack
//!    (`api` + `dispatcher`, Postgres queue, local sandboxes) on a fresh database, sandboxes
//!    given `SANDBOX_PROXY_URL`/`SANDBOX_CA_FILE` of that proxy (placeholders only) and the
//!    CLIs of tests/harnesses/node_modules/.bin on PATH. Per execution, from the rows' own
//!    timestamps: `executions.created_at` → first `harness_event`, → `turn.started`, → first
//!    assistant output, → `completed_at`; new thread each turn, and turns on one thread.
//!
//! BENCH_PROXY_REQUESTS (300), BENCH_PROXY_WARMUP (30), BENCH_PROXY_NEW_CONNECTIONS (20),
//! BENCH_PROXY_BODY_KIB (the request body; 76, about codex's, whose p50 part 2 prints),
//! BENCH_TURNS (20), BENCH_ONLY=proxy|turns.
//!
//! Why Rust and not a Python script: the stack (fresh database, sandbox user, release
//! binaries, killing detached sandboxes) is `centaur_tests::Stack`, the same one the
//! control-plane benchmark and the end-to-end tests start; the Python side is only what
//! exists only in Python (the fakes and the mitmproxy addon), used by import.
#![allow(clippy::unwrap_used)]

use centaur_tests::binaries::binary;
use centaur_tests::{ApiClient, Stack, StackOptions};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const PROXY_REQUESTS: usize = 300;
const PROXY_WARMUP: usize = 30;
const PROXY_NEW_CONNECTIONS: usize = 20;
const PROXY_BODY_KIB: usize = 76;
const TURNS: usize = 20;
const TURN_TIMEOUT: Duration = Duration::from_secs(180);
const PROMPT: &str = "Reply with exactly PONG.";

/// The helper: the fake OpenAI server and the egress proxy, from the test support code.
/// Prints one JSON line (addresses, CA, the real key), then answers `stats` / `reset`
/// lines; at EOF on stdin (the bench ended, however) it stops mitmdump and exits.
const HELPER: &str = r#"
import importlib.util, json, pathlib, secrets, sys
root = pathlib.Path(sys.argv[1])
sys.path[:0] = [str(root / "tests" / "support"), str(root / "tests" / "harnesses")]
from egress import EgressProxy, proxy_yaml
from fake_models import FakeModelServer
spec = importlib.util.spec_from_file_location("conformance", root / "tests" / "harnesses" / "conftest.py")
conformance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conformance)
key = "sk-bench-real-openai-" + secrets.token_hex(8)
fake = FakeModelServer("openai", key)
# TCP_NODELAY on the fake's connections, as a real API server has: otherwise its two writes
# per answer (headers, body) wait for the client's delayed ACK, +40 ms on a kept-alive connection.
fake.httpd.RequestHandlerClass.disable_nagle_algorithm = True
proxy = EgressProxy(proxy_yaml(conformance.BINDINGS), env={"OPENAI_API_KEY": key},
                    routes={"api.openai.com": fake.address}, skip_unset=True)
try:
    print(json.dumps({"fake": fake.address, "proxy_url": proxy.url, "ca_file": proxy.ca_file,
                      "real_key": key, "placeholder": "OPENAI_API_KEY"}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            fake.reset()
            print("{}", flush=True)
        elif command == "stats":
            s = fake.script
            sizes = sorted(len(json.dumps(r["body"])) for r in s.requests if r["body"] is not None)
            print(json.dumps({"requests": len(s.requests), "violations": len(s.violations),
                              "websocket": sum(r["transport"] == "websocket" for r in s.requests),
                              "websocket_upgrades": s.websocket_upgrades,
                              "placeholder_seen": fake.placeholder_seen(),
                              "body_bytes_p50": sizes[len(sizes) // 2] if sizes else 0}), flush=True)
finally:
    proxy.close()
    fake.close()
"#;

/// The running helper process (fake model server + egress proxy).
struct ModelSide {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    fake: String,
    proxy_url: String,
    ca_file: PathBuf,
    real_key: String,
    placeholder: String,
}

impl ModelSide {
    fn start(root: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new("python3")
            .args(["-c", HELPER])
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let ready: Value = serde_json::from_str(&line).map_err(|err| {
            anyhow::anyhow!(
                "the model-side helper did not start ({err}): \
                 python3 -m pip install -r tests/requirements.txt"
            )
        })?;
        let field = |name: &str| ready[name].as_str().unwrap_or_default().to_owned();
        Ok(Self {
            fake: field("fake"),
            proxy_url: field("proxy_url"),
            ca_file: PathBuf::from(field("ca_file")),
            real_key: field("real_key"),
            placeholder: field("placeholder"),
            child,
            stdin,
            stdout,
        })
    }

    fn command(&mut self, command: &str) -> anyhow::Result<Value> {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for ModelSide {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the helper stops mitmdump and exits
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).unwrap()
}

fn print_row(label: &str, h: &Histogram<u64>) {
    println!(
        "  {label:<44} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  (n={})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.len()
    );
}

// --- 1. the proxy's added latency ----------------------------------------------------------

struct Target {
    client: reqwest::Client,
    url: String,
    authorization: String,
}

fn direct(side: &ModelSide) -> Target {
    Target {
        client: reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .build()
            .unwrap(),
        url: format!("http://{}/v1/responses", side.fake),
        authorization: format!("Bearer {}", side.real_key),
    }
}

fn through_proxy(side: &ModelSide) -> Target {
    let ca = std::fs::read(&side.ca_file).unwrap();
    Target {
        client: reqwest::Client::builder()
            .proxy(reqwest::Proxy::https(&side.proxy_url).unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .http1_only()
            .build()
            .unwrap(),
        url: "https://api.openai.com/v1/responses".to_owned(),
        authorization: format!("Bearer {}", side.placeholder),
    }
}

/// One model request, sent → whole SSE answer read; its duration in µs.
async fn model_request(target: &Target, body: &str) -> u64 {
    let started = Instant::now();
    let response = target
        .client
        .post(&target.url)
        .header("authorization", &target.authorization)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let micros = started.elapsed().as_micros() as u64;
    assert!(
        status == 200 && text.contains("response.completed"),
        "{} answered {status}: {text}",
        target.url
    );
    micros
}

fn request_body(kib: usize) -> String {
    // Shaped like codex's request: model, instructions, tools, one user message, stream.
    let filler = "You are a coding agent working in a repository. ".repeat(kib * 1024 / 48);
    let body = json!({
        "model": "gpt-5-codex",
        "instructions": filler,
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": PROMPT}]}],
        "tools": [],
        "stream": true,
        "store": false,
    });
    body.to_string()
}

async fn proxy_figures(side: &mut ModelSide) {
    let requests = env_usize("BENCH_PROXY_REQUESTS", PROXY_REQUESTS);
    let warmup = env_usize("BENCH_PROXY_WARMUP", PROXY_WARMUP);
    let new_connections = env_usize("BENCH_PROXY_NEW_CONNECTIONS", PROXY_NEW_CONNECTIONS);
    let body = request_body(env_usize("BENCH_PROXY_BODY_KIB", PROXY_BODY_KIB));
    side.command("reset").unwrap();
    println!("\n== 1. egress proxy: added latency on one model request ==");
    println!(
        "  POST /v1/responses (stream: true; request body {:.1} KiB; the fake's SSE answer) to one\n  \
         fake OpenAI Responses server (tests/harnesses/fake_models.py, TCP_NODELAY), timed from send\n  \
         to the whole SSE body read, reqwest + rustls client, HTTP/1.1:\n    \
         direct:  http://{} with the real key\n    \
         proxied: https://api.openai.com/v1/responses via {} (mitmdump + centaur_egress.py:\n             \
         CONNECT, TLS with the proxy's CA, placeholder -> real key, routed to the same fake)",
        body.len() as f64 / 1024.0,
        side.fake,
        side.proxy_url
    );

    // The first request through the proxy ever (mitmproxy also makes api.openai.com's cert).
    let first_direct = model_request(&direct(side), &body).await;
    let first_proxied = model_request(&through_proxy(side), &body).await;
    // New connection each time: a new client per request (new TCP, new tunnel + TLS).
    let (mut cold_direct, mut cold_proxied) = (histogram(), histogram());
    for _ in 0..new_connections {
        cold_direct
            .record(model_request(&direct(side), &body).await)
            .unwrap();
        cold_proxied
            .record(model_request(&through_proxy(side), &body).await)
            .unwrap();
    }
    // Keep-alive: one client (one connection) per side, interleaved, after a warm-up.
    let (warm_direct, warm_proxied) = (direct(side), through_proxy(side));
    for _ in 0..warmup {
        model_request(&warm_direct, &body).await;
        model_request(&warm_proxied, &body).await;
    }
    let (mut keep_direct, mut keep_proxied) = (histogram(), histogram());
    let mut added = Vec::with_capacity(requests);
    for _ in 0..requests {
        let d = model_request(&warm_direct, &body).await;
        let p = model_request(&warm_proxied, &body).await;
        keep_direct.record(d).unwrap();
        keep_proxied.record(p).unwrap();
        added.push(p as i64 - d as i64);
    }
    added.sort_unstable();
    let stats = side.command("stats").unwrap();

    println!("\n  keep-alive connection ({warmup} warm-up requests per side first):");
    print_row("direct", &keep_direct);
    print_row("through the proxy", &keep_proxied);
    let quantile = |h: &Histogram<u64>, q: f64| ms(h.value_at_quantile(q));
    println!(
        "  {:<44} p50 {:>+8.2} ms  p99 {:>+8.2} ms  (through - direct, per quantile)",
        "added by the proxy",
        quantile(&keep_proxied, 0.5) - quantile(&keep_direct, 0.5),
        quantile(&keep_proxied, 0.99) - quantile(&keep_direct, 0.99),
    );
    let pick = |q: f64| added[((added.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    println!(
        "  {:<44} p50 {:>+8.2} ms  p99 {:>+8.2} ms  (of each interleaved pair)",
        "added by the proxy, paired",
        pick(0.5),
        pick(0.99),
    );
    println!("\n  first request on a new connection:");
    println!(
        "  {:<44} {:>8.2} ms direct  {:>8.2} ms through the proxy\n  \
         {:<44} (the proxy's first tunnel also mints api.openai.com's certificate)",
        "very first request",
        ms(first_direct),
        ms(first_proxied),
        ""
    );
    print_row("new connection each, direct (new TCP)", &cold_direct);
    print_row("new connection each, proxy (tunnel + TLS)", &cold_proxied);
    println!(
        "  {:<44} p50 {:>+8.2} ms  p99 {:>+8.2} ms",
        "added on a new connection",
        quantile(&cold_proxied, 0.5) - quantile(&cold_direct, 0.5),
        quantile(&cold_proxied, 0.99) - quantile(&cold_direct, 0.99),
    );
    println!(
        "  the fake saw {} model requests, {} without the real key (placeholder seen: {})",
        stats["requests"], stats["violations"], stats["placeholder_seen"]
    );
}

// --- 2. execute-202 -> first harness event, echo vs codex ----------------------------------

/// The four intervals of one execution, in µs, from the database's timestamps.
struct Intervals {
    first_event: Histogram<u64>,
    turn_started: Histogram<u64>,
    first_output: Histogram<u64>,
    completed: Histogram<u64>,
    failed: Vec<String>,
    error_events: i64,
}

impl Intervals {
    fn new() -> Self {
        Self {
            first_event: histogram(),
            turn_started: histogram(),
            first_output: histogram(),
            completed: histogram(),
            failed: Vec::new(),
            error_events: 0,
        }
    }
}

async fn run_turn(
    client: &ApiClient,
    pool: &sqlx::PgPool,
    thread: &str,
    harness: &str,
    into: Option<&mut Intervals>,
) {
    let body = json!({
        "thread_key": thread,
        "message": PROMPT,
        "harness": harness,
        "delivery": {"platform": "dev"},
    });
    let (status, response) = client.post("/agent/execute", &body).await.unwrap();
    assert_eq!(status, 202, "execute: {response}");
    let id = response["execution_id"].as_str().unwrap().to_owned();
    let execution = client.wait_terminal(&id, TURN_TIMEOUT).await.unwrap();
    let Some(into) = into else { return };
    if execution["status"] != "completed" {
        into.failed.push(format!(
            "{id}: {} {}",
            execution["status"], execution["error_text"]
        ));
        return;
    }
    let row: (Option<f64>, Option<f64>, Option<f64>, Option<f64>, i64) = sqlx::query_as(
        "SELECT
           (EXTRACT(EPOCH FROM (min(ev.created_at) - e.created_at)) * 1e6)::float8,
           (EXTRACT(EPOCH FROM (min(ev.created_at) FILTER (WHERE ev.event_json->>'type' = 'turn.started')
                                - e.created_at)) * 1e6)::float8,
           (EXTRACT(EPOCH FROM (min(ev.created_at) FILTER (WHERE ev.event_json->>'type'
                                IN ('assistant.delta', 'assistant.message')) - e.created_at)) * 1e6)::float8,
           (EXTRACT(EPOCH FROM (e.completed_at - e.created_at)) * 1e6)::float8,
           count(*) FILTER (WHERE ev.event_json->>'type' = 'error')
         FROM executions e JOIN execution_events ev
           ON ev.execution_id = e.execution_id AND ev.event_kind = 'harness_event'
         WHERE e.execution_id = $1 GROUP BY e.execution_id",
    )
    .bind(&id)
    .fetch_one(pool)
    .await
    .unwrap();
    let record = |histogram: &mut Histogram<u64>, value: Option<f64>| {
        if let Some(micros) = value {
            histogram.record(micros.max(0.0) as u64).unwrap();
        }
    };
    record(&mut into.first_event, row.0);
    record(&mut into.turn_started, row.1);
    record(&mut into.first_output, row.2);
    record(&mut into.completed, row.3);
    into.error_events += row.4;
}

/// `turns` turns on new threads and `turns` on one thread (after its first turn, which
/// starts the sandbox and is not counted), after one uncounted warm-up turn.
async fn harness_figures(
    client: &ApiClient,
    pool: &sqlx::PgPool,
    harness: &str,
    turns: usize,
) -> (Intervals, Intervals) {
    run_turn(
        client,
        pool,
        &format!("bench-{harness}-warmup"),
        harness,
        None,
    )
    .await;
    let mut fresh = Intervals::new();
    for index in 0..turns {
        let thread = format!("bench-{harness}-new-{index}");
        run_turn(client, pool, &thread, harness, Some(&mut fresh)).await;
    }
    let mut reused = Intervals::new();
    let thread = format!("bench-{harness}-reused");
    run_turn(client, pool, &thread, harness, None).await;
    for _ in 0..turns {
        run_turn(client, pool, &thread, harness, Some(&mut reused)).await;
    }
    (fresh, reused)
}

/// One of the four intervals of [`Intervals`].
type Metric = fn(&Intervals) -> &Histogram<u64>;

fn print_side_by_side(title: &str, echo: &Intervals, codex: &Intervals) {
    println!("\n  {title}");
    println!(
        "  {:<40} {:>21}   {:>21}",
        "from executions.created_at to", "echo p50 / p99 ms", "codex p50 / p99 ms"
    );
    let rows: [(&str, Metric); 4] = [
        ("first harness_event", |i| &i.first_event),
        ("turn.started", |i| &i.turn_started),
        ("first assistant output", |i| &i.first_output),
        ("completed (completed_at)", |i| &i.completed),
    ];
    let cell = |h: &Histogram<u64>| {
        if h.is_empty() {
            "n/a".to_owned()
        } else {
            format!(
                "{:>9.1} / {:>9.1}",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99))
            )
        }
    };
    for (label, get) in rows {
        println!(
            "  {label:<40} {:>21}   {:>21}",
            cell(get(echo)),
            cell(get(codex))
        );
    }
    println!(
        "  {:<40} {:>21}   {:>21}",
        "turns measured (failed)",
        format!("{} ({})", echo.completed.len(), echo.failed.len()),
        format!("{} ({})", codex.completed.len(), codex.failed.len()),
    );
    println!(
        "  {:<40} {:>21}   {:>21}",
        "error events in completed turns", echo.error_events, codex.error_events
    );
    for failure in echo.failed.iter().chain(&codex.failed).take(5) {
        println!("  failed: {failure}");
    }
}

async fn turn_figures(side: &mut ModelSide, cli_bin: &Path) {
    let turns = env_usize("BENCH_TURNS", TURNS);
    side.command("reset").unwrap();
    let options = StackOptions {
        dispatchers: 1,
        lease_secs: 60,
        extra_env: BTreeMap::from([
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("SANDBOX_PROXY_URL".to_owned(), side.proxy_url.clone()),
            (
                "SANDBOX_CA_FILE".to_owned(),
                side.ca_file.display().to_string(),
            ),
        ]),
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.unwrap();
    let pool = stack.database.pool().await.unwrap();
    let client = stack.client();
    println!("\n== 2. execute-202 -> first harness event: real codex CLI vs echo ==");
    println!(
        "  stack: {} + dispatcher (Postgres queue, local sandboxes), fresh database; sandboxes\n  \
         get placeholders, HTTPS_PROXY={} and its CA; codex = {}/codex,\n  \
         default provider settings, api.openai.com routed by the proxy to the fake (real key).\n  \
         Measured per execution from the database's own timestamps (an event's created_at is\n  \
         its batch's insert time, so events written together share one). Prompt: {PROMPT:?}.\n  \
         One uncounted warm-up turn per harness; {turns} turns on new threads (a new sandbox\n  \
         each); {turns} turns on one thread after its first (the thread's sandbox reused).",
        binary("api").display(),
        side.proxy_url,
        cli_bin.display()
    );
    let (echo_new, echo_reused) = harness_figures(&client, &pool, "echo", turns).await;
    let (codex_new, codex_reused) = harness_figures(&client, &pool, "codex", turns).await;
    print_side_by_side(
        "new thread each turn (sandbox started for the turn):",
        &echo_new,
        &codex_new,
    );
    print_side_by_side(
        "one thread, later turns (sandbox reused; codex resumes its session):",
        &echo_reused,
        &codex_reused,
    );
    let stats = side.command("stats").unwrap();
    println!(
        "\n  the fake saw {} codex model requests ({} over WebSocket, {} upgrades), {} without the\n  \
         real key (placeholder seen: {}); request body p50 {:.1} KiB",
        stats["requests"],
        stats["websocket"],
        stats["websocket_upgrades"],
        stats["violations"],
        stats["placeholder_seen"],
        stats["body_bytes_p50"].as_f64().unwrap_or(0.0) / 1024.0
    );
    stack.stop().await.unwrap();
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let cli_bin = root.join("tests/harnesses/node_modules/.bin");
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "proxy" {
        assert!(
            cli_bin.join("codex").exists(),
            "run `npm install --prefix tests/harnesses` first (the pinned harness CLIs)"
        );
        // The stack's processes get this process's PATH (ChildProcess), and the dispatcher
        // hands PATH on to local sandboxes: the CLIs go first. Set once, before any thread.
        let path = std::env::var("PATH").unwrap_or_default();
        #[allow(clippy::disallowed_methods)]
        std::env::set_var("PATH", format!("{}:{path}", cli_bin.display()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "centaur real-harness benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut side = ModelSide::start(&root).unwrap();
    runtime.block_on(async {
        if only != "turns" {
            proxy_figures(&mut side).await;
        }
        if only != "proxy" {
            turn_figures(&mut side, &cli_bin).await;
        }
    });
}
