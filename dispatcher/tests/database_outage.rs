//! D2: a database outage while a claimed turn chooses its sandbox must not fail the turn.
//! The dispatcher's only database connection is terminated (`pg_terminate_backend`, as a
//! Postgres restart or a network reset would) right after the claim, so the very first
//! statement of the sandbox choice fails with a connection error. The turn is handed back
//! (`retry_wait`, re-queued), and the next claim runs it to completion. Against a fake
//! sandbox backend that answers each turn with its text, so nothing but the database is real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use centaur_config::{DispatcherConfig, Env};
use centaur_core::SandboxId;
use centaur_harness::{HarnessEvent, SandboxInput, SandboxOutput, TurnStatus};
use centaur_queue::{PostgresQueue, Queue};
use centaur_sandbox::{
    Attachment, LineSink, ManagedSandbox, SandboxBackend, SandboxError, SandboxSpec, SandboxStatus,
};
use centaur_store::dispatch::{self, ClaimOutcome};
use dispatcher::{consumer, executor, Dispatcher};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

const EXECUTION: &str = "exe_00000000000000d2";
const THREAD: &str = "dev:d2-outage";
const WORKER: &str = "dispatcher-d2";

/// A sandbox backend whose sandboxes answer every turn at once with its text.
#[derive(Default)]
struct EchoBackend {
    created: Mutex<HashSet<String>>,
}

impl EchoBackend {
    fn created(&self) -> Vec<String> {
        self.created
            .lock()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The stdin of an echo sandbox: a turn line is answered on its stdout.
struct EchoStdin {
    stdout: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl LineSink for EchoStdin {
    async fn send_line(&mut self, line: &str) -> Result<(), SandboxError> {
        let Ok(SandboxInput::User {
            message,
            execution_id,
            ..
        }) = SandboxInput::parse(line)
        else {
            return Ok(());
        };
        let events = [
            HarnessEvent::TurnStarted {
                harness: "echo".into(),
                cli_present: None,
                cli_version: None,
            },
            HarnessEvent::TurnDone {
                status: TurnStatus::Ok,
                result_text: Some(message.text()),
                agent_thread_id: None,
                error: None,
            },
        ];
        for (seq, event) in (1..).zip(events) {
            let output = SandboxOutput {
                execution_id: execution_id.clone(),
                seq,
                event,
            };
            self.stdout
                .send(output.to_line())
                .map_err(|err| SandboxError::Io(err.to_string()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl SandboxBackend for EchoBackend {
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxId, SandboxError> {
        if let Ok(mut created) = self.created.lock() {
            created.insert(spec.id.as_str().to_owned());
        }
        Ok(spec.id.clone())
    }

    async fn attach(&self, _id: &SandboxId) -> Result<Attachment, SandboxError> {
        let (stdout, lines) = mpsc::unbounded_channel::<String>();
        let output = futures::stream::unfold(lines, |mut lines| async move {
            lines.recv().await.map(|line| (Ok(line), lines))
        });
        Ok(Attachment {
            input: Box::new(EchoStdin { stdout }),
            output: Box::pin(output),
        })
    }

    async fn status(&self, id: &SandboxId) -> Result<SandboxStatus, SandboxError> {
        let known = self
            .created
            .lock()
            .map(|created| created.contains(id.as_str()))
            .unwrap_or(false);
        Ok(if known {
            SandboxStatus::Running
        } else {
            SandboxStatus::Gone {
                detail: "never created".into(),
            }
        })
    }

    async fn stop(&self, _id: &SandboxId) -> Result<(), SandboxError> {
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<ManagedSandbox>, SandboxError> {
        Ok(Vec::new())
    }

    fn backend_name(&self) -> &'static str {
        "echo-fake"
    }
}

fn config() -> DispatcherConfig {
    DispatcherConfig::from_env(&Env::from_pairs([
        ("DATABASE_URL", "postgres://unused"),
        (
            "SANDBOX_SIGNING_KEY",
            "d2-signing-key-0123456789abcdef0123456789abcdef",
        ),
        ("DISPATCHER_WORKER_ID", WORKER),
        ("CENTAUR_DEFAULT_HARNESS", "echo"),
    ]))
    .expect("a valid dispatcher config")
}

/// A queued `echo` execution on `THREAD` carrying one message.
async fn seed(pool: &PgPool, text: &str) {
    sqlx::query(
        "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                 execute_id, request_hash, status, delivery)
         VALUES ($1, $2, 1, 'echo', $1, 'h', 'queued', '{\"platform\":\"dev\"}')",
    )
    .bind(EXECUTION)
    .bind(THREAD)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO messages (id, thread_key, assignment_generation, role, parts,
                               delivered_execution_id)
         VALUES ('msg_d2', $1, 1, 'user', $2, $3)",
    )
    .bind(THREAD)
    .bind(json!([{"type": "text", "text": text}]))
    .bind(EXECUTION)
    .execute(pool)
    .await
    .unwrap();
}

/// `(status, terminal_reason, result_text)` of the execution.
async fn outcome(pool: &PgPool) -> (String, Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT status, terminal_reason, result_text FROM executions WHERE execution_id = $1",
    )
    .bind(EXECUTION)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn states(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT event_json FROM execution_events
         WHERE execution_id = $1 AND event_kind = 'execution_state' ORDER BY event_id",
    )
    .bind(EXECUTION)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_database_outage_while_choosing_the_sandbox_hands_the_turn_back_and_it_completes_later(
    pool_options: PgPoolOptions,
    connect_options: PgConnectOptions,
) {
    let pool = pool_options
        .connect_with(connect_options.clone())
        .await
        .unwrap();
    // The dispatcher's own pool: one connection, handed out without a ping (as in
    // production), so a dead connection fails the statement that uses it.
    let dispatcher_pool = centaur_store::pool_options(1)
        .connect_with(connect_options)
        .await
        .unwrap();
    let backend = Arc::new(EchoBackend::default());
    let queue = Arc::new(PostgresQueue::new(pool.clone()));
    let config = config();
    let dispatcher = Dispatcher::new(
        dispatcher_pool.clone(),
        queue.clone(),
        backend.clone(),
        config.clone(),
    );
    seed(&pool, "survive the outage").await;
    let claimed = match dispatch::claim(
        &pool,
        EXECUTION,
        WORKER,
        None,
        config.lease,
        config.silence_timeout,
        config.hard_timeout,
    )
    .await
    .unwrap()
    {
        ClaimOutcome::Claimed(claimed) => *claimed,
        other => panic!("not claimed: {other:?}"),
    };
    let backend_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&dispatcher_pool)
        .await
        .unwrap();
    // The connection goes back to the pool in a task of its own (which may test it): it
    // must be idle there before it is killed, or that test finds it dead and the executor
    // gets a fresh one.
    while dispatcher_pool.num_idle() < 1 {
        tokio::task::yield_now().await;
    }
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(backend_pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated, "the dispatcher's connection is gone");

    executor::run(dispatcher.clone(), claimed, None).await;

    let (status, reason, _) = outcome(&pool).await;
    assert_eq!(
        (status.as_str(), reason),
        ("retry_wait", None),
        "a database error is no verdict on the turn: {:?}",
        states(&pool).await
    );
    let handed_back = states(&pool).await.pop().unwrap();
    assert_eq!(handed_back["status"], "retry_wait");
    assert!(
        handed_back["reason"]
            .as_str()
            .is_some_and(|why| why.starts_with("database or queue error")),
        "{handed_back}"
    );
    assert!(backend.created().is_empty(), "no sandbox was chosen");

    let woken = queue
        .receive(1, Duration::from_secs(10), config.queue_visibility)
        .await
        .unwrap();
    let [wake_up] = woken.as_slice() else {
        panic!("the handed-back turn was not re-queued: {woken:?}");
    };
    assert_eq!(wake_up.message.execution_id, EXECUTION);
    let execution = dispatch::ExecutionRef {
        execution_id: EXECUTION.to_owned(),
        thread_key: wake_up.message.thread_key.clone(),
    };
    let reclaimed = match consumer::claim(&dispatcher, &execution, Some(&wake_up.receipt)).await {
        Some(Ok(ClaimOutcome::Claimed(claimed))) => *claimed,
        other => panic!("not reclaimed: {other:?}"),
    };
    assert_eq!(reclaimed.attempt, 2);
    let receipt = reclaimed.queue_receipt.clone();
    executor::run(dispatcher.clone(), reclaimed, receipt).await;

    assert_eq!(
        outcome(&pool).await,
        (
            "completed".to_owned(),
            Some("completed".to_owned()),
            Some("survive the outage".to_owned())
        ),
        "{:?}",
        states(&pool).await
    );
    assert_eq!(backend.created(), ["sbx-00000000000000d2"]);
    let finished = states(&pool)
        .await
        .iter()
        .filter(|state| state["status"] == "completed")
        .count();
    assert_eq!(finished, 1);
}
