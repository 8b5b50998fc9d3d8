//! One sandbox session: runs one turn at a time, never the same execution twice, and
//! handles `resume` and `interrupt`.

use crate::harnesses::{cli, HarnessDriver, Turn, TurnContext, TurnEvents, TurnResult};
use crate::output::Output;
use crate::prepare::Preparation;
use centaur_harness::{HarnessEvent, SandboxInput, TurnStatus, Workspace};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex, OnceCell};
use tokio::task::JoinHandle;

struct RunningTurn {
    execution_id: String,
    interrupt: Option<oneshot::Sender<()>>,
    /// Set just before the turn's `turn.done` is written: a caller that has read it may
    /// send the next turn while the task is still returning.
    ended: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// The sandbox's state: its harness driver, the event output, the running turn.
pub struct Session {
    harness: String,
    driver: Option<Arc<dyn HarnessDriver>>,
    output: Arc<Output>,
    running: Mutex<Option<RunningTurn>>,
    /// The harness CLI's presence and version, probed at the first turn.
    cli: Arc<OnceCell<(bool, Option<String>)>>,
    /// The checkout and other state kept between turns.
    preparation: Arc<Preparation>,
}

/// A turn as received, before preparation.
struct Received {
    turn: Turn,
    workspace: Option<Workspace>,
    instructions: Option<String>,
}

impl Session {
    /// A session for `harness` (whose driver may be missing: turns then fail clearly).
    pub fn new(harness: &str, driver: Option<Arc<dyn HarnessDriver>>, output: Arc<Output>) -> Self {
        Self {
            harness: harness.to_owned(),
            driver,
            output,
            running: Mutex::new(None),
            cli: Arc::new(OnceCell::new()),
            preparation: Arc::new(Preparation::default()),
        }
    }

    /// The session's output (for transports that attach sinks).
    pub fn output(&self) -> &Arc<Output> {
        &self.output
    }

    /// True while a turn is running.
    pub async fn is_busy(&self) -> bool {
        self.running
            .lock()
            .await
            .as_ref()
            .is_some_and(|running| !running.task.is_finished())
    }

    /// Handles one input line. Malformed lines are logged (stderr) and ignored: they carry
    /// no execution id to report against.
    pub async fn handle_line(&self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match SandboxInput::parse(line) {
            Ok(input) => self.handle(input).await,
            Err(err) => tracing::warn!(%err, "ignoring malformed input line"),
        }
    }

    /// Handles one parsed input.
    pub async fn handle(&self, input: SandboxInput) {
        match input {
            SandboxInput::User {
                message,
                thread_key,
                execution_id,
                agent_thread_id,
                env,
                workspace,
                instructions,
            } => {
                let turn = Turn {
                    execution_id,
                    thread_key,
                    message,
                    agent_thread_id,
                    env,
                };
                self.start_turn(Received {
                    turn,
                    workspace,
                    instructions,
                })
                .await;
            }
            SandboxInput::Resume {
                execution_id,
                after_seq,
            } => self.output.replay(&execution_id, after_seq).await,
            SandboxInput::Interrupt { execution_id } => self.interrupt(&execution_id).await,
        }
    }

    async fn start_turn(&self, received: Received) {
        let turn = &received.turn;
        let mut running = self.running.lock().await;
        if running
            .as_ref()
            .is_some_and(|r| r.ended.load(Ordering::SeqCst))
        {
            if let Some(ended) = running.take() {
                let _ = ended.task.await;
            }
        }
        if let Some(current) = running.as_ref().filter(|r| !r.task.is_finished()) {
            if current.execution_id != turn.execution_id {
                let events = TurnEvents::new(self.output.clone(), &turn.execution_id);
                let busy = format!(
                    "sandbox is busy with execution {}; turns must be sent one at a time",
                    current.execution_id
                );
                events
                    .emit(HarnessEvent::Error {
                        kind: "busy".into(),
                        message: busy.clone(),
                    })
                    .await;
                emit_done(&events, TurnResult::failed(busy)).await;
            }
            return;
        }
        if self.output.knows(&turn.execution_id).await {
            tracing::warn!(execution_id = %turn.execution_id, "turn already received; not running it twice");
            return;
        }
        let (interrupt_tx, interrupt_rx) = oneshot::channel();
        let events = TurnEvents::new(self.output.clone(), &turn.execution_id);
        let execution_id = turn.execution_id.clone();
        let ended = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run_turn(
            self.harness.clone(),
            self.driver.clone(),
            self.cli.clone(),
            self.preparation.clone(),
            received,
            events,
            interrupt_rx,
            ended.clone(),
        ));
        *running = Some(RunningTurn {
            execution_id,
            interrupt: Some(interrupt_tx),
            ended,
            task,
        });
    }

    async fn interrupt(&self, execution_id: &str) {
        let mut running = self.running.lock().await;
        if let Some(current) = running.as_mut() {
            if current.execution_id == execution_id {
                if let Some(interrupt) = current.interrupt.take() {
                    let _ = interrupt.send(());
                }
            }
        }
    }

    /// Waits for the running turn (if any) to end.
    pub async fn wait_idle(&self) {
        let task = self.running.lock().await.take().map(|running| running.task);
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn emit_done(events: &TurnEvents, result: TurnResult) {
    events
        .emit(HarnessEvent::TurnDone {
            status: result.status,
            result_text: result.result_text,
            agent_thread_id: result.agent_thread_id,
            error: result.error,
        })
        .await;
}

#[allow(clippy::too_many_arguments)]
async fn run_turn(
    harness: String,
    driver: Option<Arc<dyn HarnessDriver>>,
    cli: Arc<OnceCell<(bool, Option<String>)>>,
    preparation: Arc<Preparation>,
    received: Received,
    events: TurnEvents,
    interrupt: oneshot::Receiver<()>,
    ended: Arc<AtomicBool>,
) {
    let program = driver.as_ref().and_then(|d| d.cli_program());
    let (cli_present, cli_version) = match program {
        Some(program) => {
            let (present, version) = cli.get_or_init(|| cli::probe(program)).await.clone();
            (Some(present), version)
        }
        None => (None, None),
    };
    events
        .emit(HarnessEvent::TurnStarted {
            harness: harness.clone(),
            cli_present,
            cli_version,
        })
        .await;
    let Some(driver) = driver else {
        let message = format!("no driver for harness '{harness}' in this sandbox image");
        events
            .emit(HarnessEvent::Error {
                kind: "cli_missing".into(),
                message: message.clone(),
            })
            .await;
        ended.store(true, Ordering::SeqCst);
        emit_done(&events, TurnResult::failed(message)).await;
        return;
    };
    let Received {
        turn,
        workspace,
        instructions,
    } = received;
    let agent_thread_id = turn.agent_thread_id.clone();
    let work = async {
        // A missing CLI is reported by the driver as `cli_missing`: nothing to start up.
        let mut context = TurnContext::default();
        if cli_present != Some(false) {
            let prepared = preparation
                .prepare(
                    driver.as_ref(),
                    &turn,
                    workspace.as_ref(),
                    instructions.as_deref(),
                )
                .await;
            match prepared {
                Ok(prepared) => context = prepared,
                Err(failure) => {
                    let message = failure.to_string();
                    events
                        .emit(HarnessEvent::Error {
                            kind: failure.kind.clone(),
                            message: message.clone(),
                        })
                        .await;
                    return TurnResult {
                        agent_thread_id: turn.agent_thread_id.clone(),
                        ..TurnResult::failed(message)
                    };
                }
            }
        }
        driver.run_in(&turn, &context, &events).await
    };
    let result = tokio::select! {
        result = work => result,
        Ok(()) = interrupt => {
            events
                .emit(HarnessEvent::Error {
                    kind: "interrupted".into(),
                    message: "the turn was interrupted (cancelled)".into(),
                })
                .await;
            TurnResult {
                status: TurnStatus::Error,
                result_text: None,
                agent_thread_id,
                error: Some("interrupted".into()),
            }
        }
    };
    ended.store(true, Ordering::SeqCst);
    emit_done(&events, result).await;
}
