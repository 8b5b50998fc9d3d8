//! The turn state machine: what the driver of a claimed execution does next, as a pure
//! function of what happened. The dispatcher feeds it [`Input`]s — the claim, the result
//! of each effect it carried out, the sandbox's lines, heartbeats and timers — and carries
//! out the [`Effect`]s it returns. Every decision lives here: when the turn is sent,
//! resumed or interrupted, what a line, a heartbeat, a cancel, a deadline or the end of the
//! stream does to the turn, when a start failure is retried. No IO, no clock.
//!
//! ```text
//! Claimed ─fresh──────► Acquiring ─ready─► RecordingStart ─► Attaching ─► SendingTurn ─┐
//!    │                     ▲                                                           │
//!    ├─re-attach─► ReadingBack ─► Reattaching ─► Resuming ─────────────────────────────┤
//!    │                     │ (retry not sent yet)                                      ▼
//!    │                     └──────────────► Acquiring (fresh sandbox)            Streaming
//!    │     turn.done / stream end / deadline / cancel: store what is pending ──► Flushing
//!    │     Flushing ─► Finishing | HandingBack | RecordingStartRetry ─► Acquiring
//!    └─unrunnable─► Finishing ─────────────────────────────────────────────────────► Done
//! ```
//!
//! A database or queue error is never a verdict on the turn: the execution is handed back
//! (`retry_wait`) to run again, and if even that cannot be written its lease is left to
//! expire. Only the sandbox, the harness, a deadline or a cancel ends a turn. A lost lease
//! means another worker owns the execution: nothing more is touched.
//!
//! Each step returns at most one effect whose result is fed back as the next input, and it
//! comes last ([`Effect::awaits_result`]); outside `Streaming` (where the sandbox, the
//! heartbeat and the timers provide inputs) and `Done`, a step always ends with one.

use crate::execution::TerminalReason;
use crate::ids::{ExecutionId, SandboxId};
use serde_json::{json, Value};
use std::time::Duration;

/// Harness events are stored once this many wait (else on [`Input::FlushDue`]).
pub const FLUSH_AT: usize = 64;
/// A turn whose output stream closed while its sandbox lives is claimed again (and
/// re-attached) after this.
pub const REATTACH_AFTER: Duration = Duration::from_secs(1);
/// A turn handed back after a database or queue error runs again after this.
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(2);
/// `error` event kinds that mean the harness never started.
pub const START_FAILURE_KINDS: [&str; 3] = ["start_failed", "auth", "cli_missing"];
/// An unreadable line is kept up to this many characters.
const UNREADABLE_LINE_CHARS: usize = 2000;

/// The fresh sandbox of an execution's start retry, derived from the execution so that a
/// retried create names the same sandbox (and adopts it).
pub fn retry_sandbox_id(execution_id: &ExecutionId) -> SandboxId {
    SandboxId::from_stored(format!(
        "{}-r1",
        SandboxId::for_execution(execution_id).as_str()
    ))
}

/// What the machine knows about the turn it drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnSetup {
    /// The harness's name, for error texts.
    pub harness: String,
    /// Where a start retry runs; `None` (a malformed execution id) makes a start failure
    /// final.
    pub retry_sandbox_id: Option<SandboxId>,
    /// `EXECUTION_SILENCE_TIMEOUT_S`, for the error text.
    pub silence_timeout: Duration,
    /// `EXECUTION_HARD_TIMEOUT_S`, for the error text.
    pub hard_timeout: Duration,
}

impl TurnSetup {
    /// The setup of `execution_id`'s turn.
    pub fn new(
        execution_id: &str,
        harness: &str,
        silence_timeout: Duration,
        hard_timeout: Duration,
    ) -> Self {
        Self {
            harness: harness.to_owned(),
            retry_sandbox_id: ExecutionId::parse(execution_id).map(|id| retry_sandbox_id(&id)),
            silence_timeout,
            hard_timeout,
        }
    }
}

/// What the claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimKind {
    /// The turn never reached a sandbox (a first claim, or one after a hand back before
    /// the turn was sent): get the thread's sandbox and send it.
    Fresh,
    /// An earlier attempt already sent the turn to `sandbox_id`: read back what it stored
    /// and re-attach, never resending it.
    Reattach { sandbox_id: SandboxId },
    /// The execution cannot run at all (unknown harness): it fails
    /// `sandbox_start_failed: <reason>`.
    Unrunnable { reason: String },
}

/// What the backend says about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxState {
    /// Running or starting: it can be attached to.
    Alive,
    /// Its process or container ended.
    Exited { code: Option<i32>, detail: String },
    /// Nothing by that id exists any more (deleted, evicted), or it could not be reached.
    Gone { detail: String },
}

impl SandboxState {
    /// How the sandbox ended, for an error text.
    pub fn describe(&self) -> String {
        match self {
            SandboxState::Alive => "still alive".into(),
            SandboxState::Exited {
                code: Some(code),
                detail,
            } => format!("exited with code {code}: {detail}"),
            SandboxState::Exited { code: None, detail } | SandboxState::Gone { detail } => {
                detail.clone()
            }
        }
    }
}

/// The end of the turn as the harness reported it (`turn.done`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnEnd {
    /// `status: ok`.
    pub ok: bool,
    pub result_text: Option<String>,
    /// The harness's own session id, to resume in the same sandbox.
    pub agent_thread_id: Option<String>,
    /// What the harness said went wrong.
    pub error: Option<String>,
}

/// What a harness event means to the turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HarnessSignal {
    /// Model output (assistant text, a tool call or result, a command): the harness started.
    ModelOutput,
    /// An `error` event; `kind` classifies it (see [`START_FAILURE_KINDS`]).
    Error { kind: String, message: String },
    /// `turn.done`.
    TurnDone(TurnEnd),
    /// Anything else (`turn.started`, usage, heartbeat).
    Other,
}

/// One line the sandbox wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum SandboxLine {
    /// Not a protocol line: kept as a `malformed_output` error event.
    Unreadable { error: String, line: String },
    /// A line of another execution: ignored.
    OtherExecution,
    /// The sandbox never received this turn (its answer to `resume`): send it now.
    TurnUnknown,
    /// A harness event of this turn, numbered `seq` by the sandbox; `stored` is the line
    /// as the event trail keeps it.
    Event {
        seq: u64,
        signal: HarnessSignal,
        stored: Value,
    },
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The lease was extended.
    Held {
        cancel_requested: bool,
        silence_exceeded: bool,
        hard_exceeded: bool,
    },
    /// Another worker holds the execution now.
    Lost,
    /// The heartbeat could not be written (database error). The next beat tries again; if
    /// the lease expires meanwhile, every later write of this driver is fenced off.
    Failed,
}

/// A recorded start retry: the turn runs once more in `sandbox_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRetry {
    pub sandbox_id: SandboxId,
    /// What the first sandbox reported (`<step>: <cause>`).
    pub first_failure: String,
}

/// What earlier attempts of the turn stored, read back before a re-attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredAttempt {
    /// The start retry, if one was recorded.
    pub start_retry: Option<StartRetry>,
    /// The highest harness event `seq` stored for the current sandbox (0 when none).
    pub max_seq: u64,
    /// The stored events that decide the attempt (errors, model output, the end of the
    /// turn), oldest first.
    pub signals: Vec<HarnessSignal>,
}

/// How a sandbox's session row ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Stopped on purpose (cancel, deadline).
    Stopped,
    /// Its harness failed to start.
    Failed,
    /// It vanished.
    Lost,
}

impl SessionEnd {
    /// The `sandbox_sessions.state` it writes.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Stopped => "stopped",
            SessionEnd::Failed => "failed",
            SessionEnd::Lost => "lost",
        }
    }
}

/// How the execution ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub reason: TerminalReason,
    pub result_text: Option<String>,
    pub error_text: Option<String>,
    pub agent_thread_id: Option<String>,
}

impl Ending {
    fn failed(reason: TerminalReason, error_text: String) -> Self {
        Self {
            reason,
            result_text: None,
            error_text: Some(error_text),
            agent_thread_id: None,
        }
    }

    fn start_failed(reason: &str) -> Self {
        Self::failed(
            TerminalReason::SandboxStartFailed,
            format!("sandbox_start_failed: {reason}"),
        )
    }
}

/// What happened: the claim, the result of an effect, a line, a heartbeat or a timer.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The execution was claimed (the first input).
    Claimed(ClaimKind),
    /// Result of [`Effect::ReadBack`].
    ReadBack(StoredAttempt),
    /// Result of [`Effect::AcquireSandbox`] / [`Effect::CreateSandbox`]: the sandbox is up.
    SandboxReady(SandboxId),
    /// ... the sandbox could not be created (a backend failure, never a database one).
    SandboxCouldNotStart(String),
    /// Result of [`Effect::RecordStart`].
    StartRecorded,
    /// Result of [`Effect::Attach`] / [`Effect::Reattach`].
    Attached,
    /// ... the sandbox could not be attached to; the state says why.
    AttachFailed(SandboxState),
    /// Result of [`Effect::SendTurn`]: the turn line was written.
    TurnSent,
    /// ... the turn cannot be built (the thread's stored repository no longer parses).
    TurnUnsendable(String),
    /// Result of [`Effect::SendResume`].
    ResumeSent,
    /// ... a line could not be written to the sandbox.
    SendFailed(String),
    /// The sandbox wrote a line.
    Line(SandboxLine),
    /// The flush timer fired: store what is pending.
    FlushDue,
    /// Result of [`Effect::AppendHarnessEvents`].
    Appended,
    /// A heartbeat's result.
    Heartbeat(Beat),
    /// The grace after an interrupt passed without the turn ending.
    CancelGraceElapsed,
    /// The sandbox's output stream ended; the sandbox's state as checked just after.
    StreamEnded(SandboxState),
    /// Result of [`Effect::RecordStartRetry`].
    StartRetryRecorded,
    /// Result of [`Effect::Finish`]: written.
    Finished,
    /// ... refused: the execution is no longer this worker's to finish.
    FinishRefused,
    /// Result of [`Effect::HandBack`].
    HandedBack,
    /// A fenced write found another worker holding the execution.
    LeaseLost,
    /// A database or queue call failed.
    StoreFailed(String),
}

/// What the dispatcher must do. Effects marked "→" feed their result back as the next
/// input; the others are best effort (their failure is logged, and changes nothing the
/// turn depends on).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Read back what earlier attempts stored → [`Input::ReadBack`].
    ReadBack,
    /// Get the thread's sandbox: its live session, a warm one, or a new one named after
    /// the execution → [`Input::SandboxReady`] | `SandboxCouldNotStart` | `StoreFailed`.
    AcquireSandbox,
    /// Create (or adopt) this fresh sandbox for the start retry → as `AcquireSandbox`.
    CreateSandbox(SandboxId),
    /// Record `execution_started` in `sandbox_id` (fenced; `retry_of`: the first
    /// attempt's start failure) → [`Input::StartRecorded`] | `LeaseLost` | `StoreFailed`.
    RecordStart {
        sandbox_id: SandboxId,
        retry_of: Option<String>,
    },
    /// Attach to a sandbox just acquired → [`Input::Attached`] | `AttachFailed`.
    Attach(SandboxId),
    /// Check that the sandbox of an earlier attempt lives and attach to it →
    /// [`Input::Attached`] | `AttachFailed`.
    Reattach(SandboxId),
    /// Bind the turn to the sandbox (fenced) and write the turn line →
    /// [`Input::TurnSent`] | `TurnUnsendable` | `SendFailed` | `LeaseLost` | `StoreFailed`.
    SendTurn(SandboxId),
    /// Ask the sandbox to replay the events after `after_seq` → [`Input::ResumeSent`] |
    /// `SendFailed`.
    SendResume { after_seq: u64 },
    /// Ask the harness to stop, and start the cancel grace (which ends in
    /// [`Input::CancelGraceElapsed`]). A failed write is logged: the grace ends it anyway.
    SendInterrupt,
    /// Store these harness events (fenced) and push the silence deadline →
    /// [`Input::Appended`] | `LeaseLost` | `StoreFailed`.
    AppendHarnessEvents(Vec<Value>),
    /// Record the start retry in `sandbox_id` (fenced, at most once per execution) →
    /// [`Input::StartRetryRecorded`] | `LeaseLost` | `StoreFailed`.
    RecordStartRetry {
        sandbox_id: SandboxId,
        first_failure: String,
    },
    /// Stop a sandbox and end its session row.
    StopSandbox {
        sandbox_id: SandboxId,
        session: SessionEnd,
    },
    /// End the session row of a sandbox that vanished.
    MarkSandboxLost(SandboxId),
    /// Keep the queue message invisible while the turn runs.
    ExtendQueueMessage,
    /// Finish the execution (fenced, with its events, summary and outbox row) →
    /// [`Input::Finished`] | `FinishRefused` | `StoreFailed`.
    Finish(Ending),
    /// Hand the execution back (`retry_wait`, fenced) to run again after `retry_after` →
    /// [`Input::HandedBack`] | `LeaseLost` | `StoreFailed`.
    HandBack { why: String, retry_after: Duration },
    /// After a completed turn: remember the harness session the sandbox can resume.
    RecordSessionTurn {
        sandbox_id: SandboxId,
        agent_thread_id: Option<String>,
    },
    /// The execution is over: delete its queue message and wake the thread's next turn.
    ReleaseThread,
    /// Wake the handed-back execution again after this.
    Requeue { after: Duration },
    /// Touch nothing more: the lease expires and another attempt continues the turn.
    GiveUpLease { why: String },
}

impl Effect {
    /// The effect's name, a bounded metric label (`centaur_dispatcher_step_seconds`).
    pub fn name(&self) -> &'static str {
        match self {
            Effect::ReadBack => "read_back",
            Effect::AcquireSandbox => "acquire_sandbox",
            Effect::CreateSandbox(_) => "create_sandbox",
            Effect::RecordStart { .. } => "record_start",
            Effect::Attach(_) => "attach",
            Effect::Reattach(_) => "reattach",
            Effect::SendTurn(_) => "send_turn",
            Effect::SendResume { .. } => "send_resume",
            Effect::SendInterrupt => "send_interrupt",
            Effect::AppendHarnessEvents(_) => "append_harness_events",
            Effect::RecordStartRetry { .. } => "record_start_retry",
            Effect::StopSandbox { .. } => "stop_sandbox",
            Effect::MarkSandboxLost(_) => "mark_sandbox_lost",
            Effect::ExtendQueueMessage => "extend_queue_message",
            Effect::Finish(_) => "finish",
            Effect::HandBack { .. } => "hand_back",
            Effect::RecordSessionTurn { .. } => "record_session_turn",
            Effect::ReleaseThread => "release_thread",
            Effect::Requeue { .. } => "requeue",
            Effect::GiveUpLease { .. } => "give_up_lease",
        }
    }

    /// True when the dispatcher feeds this effect's result back as the next input.
    pub fn awaits_result(&self) -> bool {
        matches!(
            self,
            Effect::ReadBack
                | Effect::AcquireSandbox
                | Effect::CreateSandbox(_)
                | Effect::RecordStart { .. }
                | Effect::Attach(_)
                | Effect::Reattach(_)
                | Effect::SendTurn(_)
                | Effect::SendResume { .. }
                | Effect::AppendHarnessEvents(_)
                | Effect::RecordStartRetry { .. }
                | Effect::Finish(_)
                | Effect::HandBack { .. }
        )
    }
}

/// Where the turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for [`Input::Claimed`].
    Claimed,
    /// Reading back what earlier attempts stored.
    ReadingBack,
    /// Getting a sandbox (the thread's, or the start retry's fresh one).
    Acquiring,
    /// Recording `execution_started`.
    RecordingStart,
    /// Attaching to the sandbox just acquired.
    Attaching,
    /// Writing the turn line.
    SendingTurn,
    /// Checking and attaching to the sandbox of an earlier attempt.
    Reattaching,
    /// Asking the sandbox to replay what was missed.
    Resuming,
    /// Reading the sandbox's lines, heartbeating.
    Streaming,
    /// Storing the last pending events before the end is written.
    Flushing,
    /// Recording the start retry.
    RecordingStartRetry,
    /// Writing the finish.
    Finishing,
    /// Writing the hand back.
    HandingBack,
    /// Nothing more to do.
    Done,
}

/// How the turn concludes once the pending events are stored.
#[derive(Debug, Clone, PartialEq)]
enum Conclusion {
    /// Finish the execution, after `cleanup` (stop or mark the sandbox).
    Finish {
        cleanup: Option<Effect>,
        ending: Ending,
    },
    /// Hand the execution back to run again.
    HandBack { why: String, retry_after: Duration },
    /// The harness failed to start: record the retry in a fresh sandbox.
    RetryStart(StartRetry),
}

/// What one attempt of the turn showed so far: did the harness start?
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StartWatch {
    model_output: bool,
    failure: Option<String>,
}

impl StartWatch {
    fn observe(&mut self, signal: &HarnessSignal) {
        match signal {
            HarnessSignal::ModelOutput => self.model_output = true,
            HarnessSignal::Error { kind, message }
                if self.failure.is_none() && START_FAILURE_KINDS.contains(&kind.as_str()) =>
            {
                self.failure = Some(message.clone());
            }
            _ => {}
        }
    }

    /// The start failure (`<step>: <cause>`) the attempt showed before any model output.
    fn start_failure(&self) -> Option<&str> {
        if self.model_output {
            return None;
        }
        self.failure.as_deref()
    }
}

/// One claimed execution's turn.
#[derive(Debug, Clone)]
pub struct Turn {
    setup: TurnSetup,
    phase: Phase,
    sandbox_id: Option<SandboxId>,
    /// The highest `seq` of the current sandbox's events seen (stored or pending).
    seen_seq: u64,
    event_count: u64,
    pending: Vec<Value>,
    last_error: Option<String>,
    watch: StartWatch,
    start_retry: Option<StartRetry>,
    /// The retry being recorded (phase `RecordingStartRetry`).
    retry_to_record: Option<StartRetry>,
    interrupt_sent: bool,
    /// What follows once the pending events are stored (phase `Flushing`).
    after_flush: Option<Conclusion>,
    /// The ending being written (phase `Finishing`).
    ending: Option<Ending>,
    /// The delay of the hand back being written (phase `HandingBack`).
    retry_after: Duration,
}

impl Turn {
    /// A turn just claimed: feed it [`Input::Claimed`].
    pub fn new(setup: TurnSetup) -> Self {
        Self {
            setup,
            phase: Phase::Claimed,
            sandbox_id: None,
            seen_seq: 0,
            event_count: 0,
            pending: Vec::new(),
            last_error: None,
            watch: StartWatch::default(),
            start_retry: None,
            retry_to_record: None,
            interrupt_sent: false,
            after_flush: None,
            ending: None,
            retry_after: Duration::ZERO,
        }
    }

    /// Where the turn is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once nothing more is to be done.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The sandbox the turn runs in, once there is one.
    pub fn sandbox_id(&self) -> Option<&SandboxId> {
        self.sandbox_id.as_ref()
    }

    /// Harness events of this turn seen by this driver.
    pub fn event_count(&self) -> u64 {
        self.event_count
    }

    /// True once the turn was sent to a fresh sandbox after a start failure.
    pub fn start_retried(&self) -> bool {
        self.start_retry.is_some()
    }

    /// Takes `input` into account and says what to do.
    pub fn on(&mut self, input: Input) -> Vec<Effect> {
        use Phase as P;
        match (self.phase, input) {
            (P::Done, _) | (P::Claimed, Input::LeaseLost | Input::StoreFailed(_)) => vec![],
            (_, Input::LeaseLost) => self.give_up("another worker holds the execution now"),
            (P::Finishing | P::HandingBack, Input::StoreFailed(err)) => self.give_up(&format!(
                "could not write the end of the turn ({err}); the lease will expire and the turn will be continued"
            )),
            (_, Input::StoreFailed(err)) => self.carry_out(Conclusion::HandBack {
                why: format!("database or queue error: {err}"),
                retry_after: STORE_RETRY_AFTER,
            }),
            (P::Claimed, Input::Claimed(kind)) => self.on_claimed(kind),
            (P::ReadingBack, Input::ReadBack(stored)) => self.on_read_back(stored),
            (P::Acquiring, Input::SandboxReady(id)) => {
                let retry_of = self
                    .start_retry
                    .as_ref()
                    .filter(|retry| retry.sandbox_id == id)
                    .map(|retry| retry.first_failure.clone());
                self.sandbox_id = Some(id.clone());
                self.phase = P::RecordingStart;
                vec![Effect::RecordStart {
                    sandbox_id: id,
                    retry_of,
                }]
            }
            (P::Acquiring, Input::SandboxCouldNotStart(reason)) => self.finish_now(&reason),
            (P::RecordingStart, Input::StartRecorded) => match self.sandbox_id.clone() {
                Some(id) => self.enter(P::Attaching, Effect::Attach(id)),
                None => self.finish_now("no sandbox was acquired"),
            },
            (P::Attaching, Input::Attached) => match self.sandbox_id.clone() {
                Some(id) => self.enter(P::SendingTurn, Effect::SendTurn(id)),
                None => self.finish_now("no sandbox was acquired"),
            },
            (P::Attaching, Input::AttachFailed(state)) => self.finish_now(&state.describe()),
            (P::SendingTurn, Input::TurnSent) | (P::Resuming, Input::ResumeSent) => {
                self.phase = P::Streaming;
                vec![]
            }
            (P::SendingTurn, Input::TurnUnsendable(reason)) => self.finish_now(&reason),
            (P::SendingTurn, Input::SendFailed(err)) => self.carry_out(Conclusion::HandBack {
                why: format!("could not write the turn: {err}"),
                retry_after: REATTACH_AFTER,
            }),
            (P::Reattaching, Input::Attached) => self.enter(
                P::Resuming,
                Effect::SendResume {
                    after_seq: self.seen_seq,
                },
            ),
            (P::Reattaching, Input::AttachFailed(state)) => self.carry_out(self.lost(&state)),
            (P::Resuming, Input::SendFailed(err)) => self.carry_out(Conclusion::HandBack {
                why: format!("could not resume: {err}"),
                retry_after: REATTACH_AFTER,
            }),
            (P::Streaming, Input::Line(line)) => self.on_line(line),
            (P::Streaming, Input::FlushDue) => self.flush(),
            (P::Streaming, Input::Heartbeat(beat)) => self.on_heartbeat(beat),
            (P::Streaming, Input::CancelGraceElapsed) if self.interrupt_sent => {
                self.conclude(Conclusion::Finish {
                    cleanup: self.stop_sandbox(SessionEnd::Stopped),
                    ending: self.cancelled(None),
                })
            }
            (P::Streaming, Input::StreamEnded(state)) => self.on_stream_end(state),
            (P::Flushing, Input::Appended) => match self.after_flush.take() {
                Some(conclusion) => self.carry_out(conclusion),
                None => self.give_up("nothing was planned after storing the events"),
            },
            (P::RecordingStartRetry, Input::StartRetryRecorded) => {
                self.start_retry = self.retry_to_record.take();
                self.start_in_fresh_sandbox()
            }
            (P::Finishing, Input::Finished) => {
                self.phase = P::Done;
                let mut effects = Vec::new();
                if let (Some(ending), Some(sandbox_id)) = (&self.ending, &self.sandbox_id) {
                    if ending.reason == TerminalReason::Completed {
                        effects.push(Effect::RecordSessionTurn {
                            sandbox_id: sandbox_id.clone(),
                            agent_thread_id: ending.agent_thread_id.clone(),
                        });
                    }
                }
                effects.push(Effect::ReleaseThread);
                effects
            }
            (P::Finishing, Input::FinishRefused) => {
                self.phase = P::Done;
                vec![Effect::ReleaseThread]
            }
            (P::HandingBack, Input::HandedBack) => {
                self.phase = P::Done;
                vec![Effect::Requeue {
                    after: self.retry_after,
                }]
            }
            // Anything else cannot happen in this phase: it changes nothing.
            _ => vec![],
        }
    }

    fn enter(&mut self, phase: Phase, effect: Effect) -> Vec<Effect> {
        self.phase = phase;
        vec![effect]
    }

    fn give_up(&mut self, why: &str) -> Vec<Effect> {
        self.phase = Phase::Done;
        vec![Effect::GiveUpLease {
            why: why.to_owned(),
        }]
    }

    /// Fails the turn `sandbox_start_failed: <reason>` (nothing is pending before the
    /// turn streams).
    fn finish_now(&mut self, reason: &str) -> Vec<Effect> {
        self.carry_out(Conclusion::Finish {
            cleanup: None,
            ending: Ending::start_failed(reason),
        })
    }

    fn on_claimed(&mut self, kind: ClaimKind) -> Vec<Effect> {
        match kind {
            ClaimKind::Fresh => self.enter(Phase::Acquiring, Effect::AcquireSandbox),
            ClaimKind::Reattach { sandbox_id } => {
                self.sandbox_id = Some(sandbox_id);
                self.enter(Phase::ReadingBack, Effect::ReadBack)
            }
            ClaimKind::Unrunnable { reason } => self.finish_now(&reason),
        }
    }

    fn on_read_back(&mut self, stored: StoredAttempt) -> Vec<Effect> {
        self.start_retry = stored.start_retry;
        let retry_not_sent = self
            .start_retry
            .as_ref()
            .is_some_and(|retry| self.sandbox_id.as_ref() != Some(&retry.sandbox_id));
        if retry_not_sent {
            // The retry was decided, but its fresh sandbox never got the turn.
            return self.start_in_fresh_sandbox();
        }
        self.seen_seq = stored.max_seq;
        let mut end = None;
        for signal in stored.signals {
            match signal {
                HarnessSignal::TurnDone(turn_end) => end = Some(turn_end),
                other => self.observe(&other),
            }
        }
        if let Some(end) = end {
            // The turn had ended before the re-attach: conclude it from its stored end.
            let conclusion = self.turn_done(end);
            return self.conclude(conclusion);
        }
        match self.sandbox_id.clone() {
            Some(id) => self.enter(Phase::Reattaching, Effect::Reattach(id)),
            None => self.carry_out(self.lost(&SandboxState::Gone {
                detail: "no sandbox recorded".into(),
            })),
        }
    }

    /// Discards the sandbox that failed to start and creates the retry's fresh one.
    fn start_in_fresh_sandbox(&mut self) -> Vec<Effect> {
        let Some(retry) = self.start_retry.clone() else {
            return self.finish_now("no start retry was recorded");
        };
        let mut effects = Vec::new();
        if let Some(failed) = self.sandbox_id.take().filter(|id| *id != retry.sandbox_id) {
            effects.push(Effect::StopSandbox {
                sandbox_id: failed,
                session: SessionEnd::Failed,
            });
        }
        // The next events come from the fresh sandbox, numbered from 1 again.
        self.sandbox_id = Some(retry.sandbox_id.clone());
        self.seen_seq = 0;
        self.last_error = None;
        self.watch = StartWatch::default();
        self.phase = Phase::Acquiring;
        effects.push(Effect::CreateSandbox(retry.sandbox_id));
        effects
    }

    fn observe(&mut self, signal: &HarnessSignal) {
        if let HarnessSignal::Error { message, .. } = signal {
            self.last_error = Some(message.clone());
        }
        self.watch.observe(signal);
    }

    fn on_line(&mut self, line: SandboxLine) -> Vec<Effect> {
        match line {
            SandboxLine::OtherExecution => vec![],
            SandboxLine::TurnUnknown => match self.sandbox_id.clone() {
                Some(id) => self.enter(Phase::SendingTurn, Effect::SendTurn(id)),
                None => vec![],
            },
            SandboxLine::Unreadable { error, line } => {
                self.pending.push(json!({
                    "type": "error",
                    "kind": "malformed_output",
                    "message": error,
                    "line": line.chars().take(UNREADABLE_LINE_CHARS).collect::<String>(),
                }));
                self.flush_if_full()
            }
            SandboxLine::Event { seq, .. } if seq <= self.seen_seq => vec![],
            SandboxLine::Event {
                seq,
                signal,
                stored,
            } => {
                self.seen_seq = seq;
                self.event_count += 1;
                self.pending.push(stored);
                match signal {
                    HarnessSignal::TurnDone(end) => {
                        let conclusion = self.turn_done(end);
                        self.conclude(conclusion)
                    }
                    other => {
                        self.observe(&other);
                        self.flush_if_full()
                    }
                }
            }
        }
    }

    fn flush_if_full(&mut self) -> Vec<Effect> {
        if self.pending.len() >= FLUSH_AT {
            self.flush()
        } else {
            vec![]
        }
    }

    fn flush(&mut self) -> Vec<Effect> {
        if self.pending.is_empty() {
            return vec![];
        }
        vec![Effect::AppendHarnessEvents(std::mem::take(
            &mut self.pending,
        ))]
    }

    fn on_heartbeat(&mut self, beat: Beat) -> Vec<Effect> {
        let Beat::Held {
            cancel_requested,
            silence_exceeded,
            hard_exceeded,
        } = beat
        else {
            return match beat {
                Beat::Lost => self.give_up("lost the lease; another worker holds the execution"),
                _ => vec![],
            };
        };
        let mut effects = vec![Effect::ExtendQueueMessage];
        if cancel_requested && !self.interrupt_sent {
            self.interrupt_sent = true;
            effects.push(Effect::SendInterrupt);
        }
        let deadline = if hard_exceeded {
            Some((
                TerminalReason::HardDeadlineExceeded,
                "ran longer than the hard deadline",
                self.setup.hard_timeout,
            ))
        } else if silence_exceeded {
            Some((
                TerminalReason::SilenceDeadlineExceeded,
                "produced no output for longer than the silence timeout",
                self.setup.silence_timeout,
            ))
        } else {
            None
        };
        if let Some((reason, what, limit)) = deadline {
            let ending = Ending::failed(
                reason,
                format!(
                    "{reason}: the turn {what} ({}s); the sandbox was stopped",
                    limit.as_secs()
                ),
            );
            let conclusion = Conclusion::Finish {
                cleanup: self.stop_sandbox(SessionEnd::Stopped),
                ending,
            };
            effects.extend(self.conclude(conclusion));
        }
        effects
    }

    fn on_stream_end(&mut self, state: SandboxState) -> Vec<Effect> {
        let conclusion = if self.interrupt_sent {
            Conclusion::Finish {
                cleanup: None,
                ending: self.cancelled(None),
            }
        } else if state == SandboxState::Alive {
            let sandbox = self
                .sandbox_id
                .as_ref()
                .map_or_else(|| "the sandbox".to_owned(), ToString::to_string);
            Conclusion::HandBack {
                why: format!("output stream of {sandbox} closed while it is still alive"),
                retry_after: REATTACH_AFTER,
            }
        } else {
            self.lost(&state)
        };
        self.conclude(conclusion)
    }

    /// How the harness's end of the turn ends the execution.
    fn turn_done(&self, end: TurnEnd) -> Conclusion {
        if self.interrupt_sent {
            return Conclusion::Finish {
                cleanup: None,
                ending: self.cancelled(end.agent_thread_id),
            };
        }
        if end.ok {
            return Conclusion::Finish {
                cleanup: None,
                ending: Ending {
                    reason: TerminalReason::Completed,
                    result_text: Some(end.result_text.unwrap_or_default()),
                    error_text: None,
                    agent_thread_id: end.agent_thread_id,
                },
            };
        }
        if let Some(failure) = self.watch.start_failure() {
            return self.start_failure(failure);
        }
        let error = end
            .error
            .or_else(|| self.last_error.clone())
            .unwrap_or_else(|| "unknown error".into());
        Conclusion::Finish {
            cleanup: None,
            ending: Ending {
                reason: TerminalReason::HarnessError,
                result_text: end.result_text,
                error_text: Some(format!(
                    "harness_error: {} reported: {error}",
                    self.setup.harness
                )),
                agent_thread_id: end.agent_thread_id,
            },
        }
    }

    /// A start failure is retried once in a fresh sandbox; a second one fails the turn
    /// naming the step, and its sandbox is discarded.
    fn start_failure(&self, failure: &str) -> Conclusion {
        match (&self.start_retry, &self.setup.retry_sandbox_id) {
            (None, Some(fresh)) => Conclusion::RetryStart(StartRetry {
                sandbox_id: fresh.clone(),
                first_failure: failure.to_owned(),
            }),
            _ => Conclusion::Finish {
                cleanup: self.stop_sandbox(SessionEnd::Failed),
                ending: Ending::start_failed(failure),
            },
        }
    }

    fn cancelled(&self, agent_thread_id: Option<String>) -> Ending {
        Ending {
            reason: TerminalReason::Cancelled,
            result_text: None,
            error_text: None,
            agent_thread_id,
        }
    }

    fn stop_sandbox(&self, session: SessionEnd) -> Option<Effect> {
        self.sandbox_id
            .clone()
            .map(|sandbox_id| Effect::StopSandbox {
                sandbox_id,
                session,
            })
    }

    fn lost(&self, state: &SandboxState) -> Conclusion {
        let Some(id) = self.sandbox_id.clone() else {
            return Conclusion::Finish {
                cleanup: None,
                ending: Ending::failed(
                    TerminalReason::SandboxLost,
                    "sandbox_lost: no sandbox".into(),
                ),
            };
        };
        Conclusion::Finish {
            ending: Ending::failed(
                TerminalReason::SandboxLost,
                format!(
                    "sandbox_lost: sandbox {id} is gone mid-turn ({})",
                    state.describe()
                ),
            ),
            cleanup: Some(Effect::MarkSandboxLost(id)),
        }
    }

    /// Stores what is pending, then carries out `conclusion`.
    fn conclude(&mut self, conclusion: Conclusion) -> Vec<Effect> {
        if self.pending.is_empty() {
            return self.carry_out(conclusion);
        }
        self.after_flush = Some(conclusion);
        self.phase = Phase::Flushing;
        self.flush()
    }

    fn carry_out(&mut self, conclusion: Conclusion) -> Vec<Effect> {
        match conclusion {
            Conclusion::Finish { cleanup, ending } => {
                self.phase = Phase::Finishing;
                self.ending = Some(ending.clone());
                cleanup
                    .into_iter()
                    .chain([Effect::Finish(ending)])
                    .collect()
            }
            Conclusion::HandBack { why, retry_after } => {
                self.phase = Phase::HandingBack;
                self.retry_after = retry_after;
                vec![Effect::HandBack { why, retry_after }]
            }
            Conclusion::RetryStart(retry) => {
                self.phase = Phase::RecordingStartRetry;
                let effect = Effect::RecordStartRetry {
                    sandbox_id: retry.sandbox_id.clone(),
                    first_failure: retry.first_failure.clone(),
                };
                self.retry_to_record = Some(retry);
                vec![effect]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase as P;

    const EXECUTION: &str = "exe_0123456789abcdef";

    fn setup() -> TurnSetup {
        TurnSetup::new(
            EXECUTION,
            "codex",
            Duration::from_secs(600),
            Duration::from_secs(3600),
        )
    }

    fn sandbox(name: &str) -> SandboxId {
        SandboxId::from_stored(name)
    }

    fn fresh_sandbox() -> SandboxId {
        sandbox("sbx-0123456789abcdef-r1")
    }

    fn event(seq: u64, signal: HarnessSignal) -> Input {
        Input::Line(SandboxLine::Event {
            seq,
            signal,
            stored: json!({ "seq": seq }),
        })
    }

    fn error(kind: &str, message: &str) -> HarnessSignal {
        HarnessSignal::Error {
            kind: kind.to_owned(),
            message: message.to_owned(),
        }
    }

    fn ok(text: &str) -> HarnessSignal {
        HarnessSignal::TurnDone(TurnEnd {
            ok: true,
            result_text: Some(text.to_owned()),
            agent_thread_id: Some("session-1".into()),
            error: None,
        })
    }

    fn failed(error: Option<&str>) -> HarnessSignal {
        HarnessSignal::TurnDone(TurnEnd {
            ok: false,
            error: error.map(str::to_owned),
            ..TurnEnd::default()
        })
    }

    fn held(cancel_requested: bool, silence_exceeded: bool, hard_exceeded: bool) -> Input {
        Input::Heartbeat(Beat::Held {
            cancel_requested,
            silence_exceeded,
            hard_exceeded,
        })
    }

    fn gone(detail: &str) -> SandboxState {
        SandboxState::Gone {
            detail: detail.to_owned(),
        }
    }

    fn drive(inputs: impl IntoIterator<Item = Input>) -> Turn {
        let mut turn = Turn::new(setup());
        for input in inputs {
            turn.on(input);
        }
        turn
    }

    fn started() -> Vec<Input> {
        vec![
            Input::Claimed(ClaimKind::Fresh),
            Input::SandboxReady(sandbox("sbx-a")),
            Input::StartRecorded,
            Input::Attached,
            Input::TurnSent,
        ]
    }

    fn streaming() -> Turn {
        drive(started())
    }

    fn then(mut inputs: Vec<Input>, more: impl IntoIterator<Item = Input>) -> Vec<Input> {
        inputs.extend(more);
        inputs
    }

    fn finish_of(effects: &[Effect]) -> &Ending {
        match effects.last() {
            Some(Effect::Finish(ending)) => ending,
            other => panic!("expected a finish last, got {other:?} in {effects:?}"),
        }
    }

    /// One turn in each phase (and the cancelling variant of `Streaming`).
    fn fixtures() -> Vec<(&'static str, Turn)> {
        let reattach = Input::Claimed(ClaimKind::Reattach {
            sandbox_id: sandbox("sbx-a"),
        });
        vec![
            ("claimed", drive([])),
            ("reading_back", drive([reattach.clone()])),
            ("acquiring", drive([Input::Claimed(ClaimKind::Fresh)])),
            ("recording_start", drive(started().into_iter().take(2))),
            ("attaching", drive(started().into_iter().take(3))),
            ("sending_turn", drive(started().into_iter().take(4))),
            ("streaming", streaming()),
            (
                "cancelling",
                drive(then(started(), [held(true, false, false)])),
            ),
            (
                "reattaching",
                drive([reattach.clone(), Input::ReadBack(StoredAttempt::default())]),
            ),
            (
                "resuming",
                drive([
                    reattach,
                    Input::ReadBack(StoredAttempt::default()),
                    Input::Attached,
                ]),
            ),
            (
                "flushing",
                drive(then(
                    started(),
                    [
                        event(1, HarnessSignal::Other),
                        Input::StreamEnded(SandboxState::Alive),
                    ],
                )),
            ),
            (
                "recording_start_retry",
                drive(then(
                    started(),
                    [
                        event(1, error("start_failed", "clone acme/api: 403")),
                        event(2, failed(None)),
                        Input::Appended,
                    ],
                )),
            ),
            (
                "finishing",
                drive(then(started(), [Input::StreamEnded(gone("deleted"))])),
            ),
            (
                "handing_back",
                drive(then(started(), [Input::StreamEnded(SandboxState::Alive)])),
            ),
            (
                "done",
                drive(then(
                    started(),
                    [Input::StreamEnded(gone("deleted")), Input::Finished],
                )),
            ),
        ]
    }

    fn phase_of_fixture(name: &str) -> Phase {
        match name {
            "claimed" => P::Claimed,
            "reading_back" => P::ReadingBack,
            "acquiring" => P::Acquiring,
            "recording_start" => P::RecordingStart,
            "attaching" => P::Attaching,
            "sending_turn" => P::SendingTurn,
            "streaming" | "cancelling" => P::Streaming,
            "reattaching" => P::Reattaching,
            "resuming" => P::Resuming,
            "flushing" => P::Flushing,
            "recording_start_retry" => P::RecordingStartRetry,
            "finishing" => P::Finishing,
            "handing_back" => P::HandingBack,
            "done" => P::Done,
            other => panic!("no fixture {other}"),
        }
    }

    /// One input of every kind (and the variants that decide differently).
    fn inputs() -> Vec<(&'static str, Input)> {
        vec![
            ("claimed_fresh", Input::Claimed(ClaimKind::Fresh)),
            (
                "claimed_reattach",
                Input::Claimed(ClaimKind::Reattach {
                    sandbox_id: sandbox("sbx-a"),
                }),
            ),
            (
                "claimed_unrunnable",
                Input::Claimed(ClaimKind::Unrunnable {
                    reason: "unknown harness 'x'".into(),
                }),
            ),
            ("read_back", Input::ReadBack(StoredAttempt::default())),
            ("sandbox_ready", Input::SandboxReady(sandbox("sbx-b"))),
            (
                "sandbox_could_not_start",
                Input::SandboxCouldNotStart("image pull failed".into()),
            ),
            ("start_recorded", Input::StartRecorded),
            ("attached", Input::Attached),
            ("attach_failed", Input::AttachFailed(gone("no such pod"))),
            ("turn_sent", Input::TurnSent),
            ("turn_unsendable", Input::TurnUnsendable("bad repo".into())),
            ("resume_sent", Input::ResumeSent),
            ("send_failed", Input::SendFailed("broken pipe".into())),
            ("line_event", event(1, HarnessSignal::Other)),
            ("line_turn_done", event(1, ok("PONG"))),
            ("line_turn_unknown", Input::Line(SandboxLine::TurnUnknown)),
            (
                "line_unreadable",
                Input::Line(SandboxLine::Unreadable {
                    error: "not json".into(),
                    line: "garbage".into(),
                }),
            ),
            (
                "line_other_execution",
                Input::Line(SandboxLine::OtherExecution),
            ),
            ("flush_due", Input::FlushDue),
            ("appended", Input::Appended),
            ("heartbeat_held", held(false, false, false)),
            ("heartbeat_cancel", held(true, false, false)),
            ("heartbeat_silence", held(false, true, false)),
            ("heartbeat_hard", held(false, false, true)),
            ("heartbeat_lost", Input::Heartbeat(Beat::Lost)),
            ("heartbeat_failed", Input::Heartbeat(Beat::Failed)),
            ("cancel_grace_elapsed", Input::CancelGraceElapsed),
            (
                "stream_ended_alive",
                Input::StreamEnded(SandboxState::Alive),
            ),
            (
                "stream_ended_exited",
                Input::StreamEnded(SandboxState::Exited {
                    code: Some(137),
                    detail: "OOMKilled".into(),
                }),
            ),
            ("start_retry_recorded", Input::StartRetryRecorded),
            ("finished", Input::Finished),
            ("finish_refused", Input::FinishRefused),
            ("handed_back", Input::HandedBack),
            ("lease_lost", Input::LeaseLost),
            (
                "store_failed",
                Input::StoreFailed("connection reset".into()),
            ),
        ]
    }

    fn kind(effect: &Effect) -> &'static str {
        match effect {
            Effect::ReadBack => "ReadBack",
            Effect::AcquireSandbox => "AcquireSandbox",
            Effect::CreateSandbox(_) => "CreateSandbox",
            Effect::RecordStart { .. } => "RecordStart",
            Effect::Attach(_) => "Attach",
            Effect::Reattach(_) => "Reattach",
            Effect::SendTurn(_) => "SendTurn",
            Effect::SendResume { .. } => "SendResume",
            Effect::SendInterrupt => "SendInterrupt",
            Effect::AppendHarnessEvents(_) => "AppendHarnessEvents",
            Effect::RecordStartRetry { .. } => "RecordStartRetry",
            Effect::StopSandbox { .. } => "StopSandbox",
            Effect::MarkSandboxLost(_) => "MarkSandboxLost",
            Effect::ExtendQueueMessage => "ExtendQueueMessage",
            Effect::Finish(_) => "Finish",
            Effect::HandBack { .. } => "HandBack",
            Effect::RecordSessionTurn { .. } => "RecordSessionTurn",
            Effect::ReleaseThread => "ReleaseThread",
            Effect::Requeue { .. } => "Requeue",
            Effect::GiveUpLease { .. } => "GiveUpLease",
        }
    }

    /// What each phase does with the inputs it expects: (fixture, input) → (effects, next
    /// phase). Every pair not listed (nor covered by the lease/store rules) is ignored.
    fn handled(fixture: &str, input: &str) -> Option<(Vec<&'static str>, Phase)> {
        let streaming_common = |input: &str| -> Option<(Vec<&'static str>, Phase)> {
            Some(match input {
                "line_event"
                | "line_unreadable"
                | "line_other_execution"
                | "flush_due"
                | "appended"
                | "heartbeat_failed" => (vec![], P::Streaming),
                "line_turn_done" => (vec!["AppendHarnessEvents"], P::Flushing),
                "line_turn_unknown" => (vec!["SendTurn"], P::SendingTurn),
                "heartbeat_held" => (vec!["ExtendQueueMessage"], P::Streaming),
                "heartbeat_silence" | "heartbeat_hard" => (
                    vec!["ExtendQueueMessage", "StopSandbox", "Finish"],
                    P::Finishing,
                ),
                "heartbeat_lost" => (vec!["GiveUpLease"], P::Done),
                _ => return None,
            })
        };
        Some(match (fixture, input) {
            (fixture, "lease_lost") if !matches!(fixture, "claimed" | "done") => {
                (vec!["GiveUpLease"], P::Done)
            }
            ("finishing" | "handing_back", "store_failed") => (vec!["GiveUpLease"], P::Done),
            (fixture, "store_failed") if !matches!(fixture, "claimed" | "done") => {
                (vec!["HandBack"], P::HandingBack)
            }
            ("claimed", "claimed_fresh") => (vec!["AcquireSandbox"], P::Acquiring),
            ("claimed", "claimed_reattach") => (vec!["ReadBack"], P::ReadingBack),
            ("claimed", "claimed_unrunnable") => (vec!["Finish"], P::Finishing),
            ("reading_back", "read_back") => (vec!["Reattach"], P::Reattaching),
            ("acquiring", "sandbox_ready") => (vec!["RecordStart"], P::RecordingStart),
            ("acquiring", "sandbox_could_not_start") => (vec!["Finish"], P::Finishing),
            ("recording_start", "start_recorded") => (vec!["Attach"], P::Attaching),
            ("attaching", "attached") => (vec!["SendTurn"], P::SendingTurn),
            ("attaching", "attach_failed") => (vec!["Finish"], P::Finishing),
            ("sending_turn", "turn_sent") => (vec![], P::Streaming),
            ("sending_turn", "turn_unsendable") => (vec!["Finish"], P::Finishing),
            ("sending_turn", "send_failed") => (vec!["HandBack"], P::HandingBack),
            ("reattaching", "attached") => (vec!["SendResume"], P::Resuming),
            ("reattaching", "attach_failed") => (vec!["MarkSandboxLost", "Finish"], P::Finishing),
            ("resuming", "resume_sent") => (vec![], P::Streaming),
            ("resuming", "send_failed") => (vec!["HandBack"], P::HandingBack),
            ("streaming", "heartbeat_cancel") => {
                (vec!["ExtendQueueMessage", "SendInterrupt"], P::Streaming)
            }
            ("streaming", "cancel_grace_elapsed") => (vec![], P::Streaming),
            ("streaming", "stream_ended_alive") => (vec!["HandBack"], P::HandingBack),
            ("streaming", "stream_ended_exited") => {
                (vec!["MarkSandboxLost", "Finish"], P::Finishing)
            }
            ("cancelling", "heartbeat_cancel") => (vec!["ExtendQueueMessage"], P::Streaming),
            ("cancelling", "cancel_grace_elapsed") => (vec!["StopSandbox", "Finish"], P::Finishing),
            ("cancelling", "stream_ended_alive" | "stream_ended_exited") => {
                (vec!["Finish"], P::Finishing)
            }
            ("streaming" | "cancelling", input) => streaming_common(input)?,
            ("flushing", "appended") => (vec!["HandBack"], P::HandingBack),
            ("recording_start_retry", "start_retry_recorded") => {
                (vec!["StopSandbox", "CreateSandbox"], P::Acquiring)
            }
            ("finishing", "finished" | "finish_refused") => (vec!["ReleaseThread"], P::Done),
            ("handing_back", "handed_back") => (vec!["Requeue"], P::Done),
            _ => return None,
        })
    }

    #[test]
    fn every_input_in_every_phase_does_what_the_table_says() {
        for (fixture, turn) in fixtures() {
            assert_eq!(turn.phase(), phase_of_fixture(fixture), "fixture {fixture}");
            for (name, input) in inputs() {
                let mut turn = turn.clone();
                let before = turn.phase();
                let effects = turn.on(input);
                let kinds: Vec<_> = effects.iter().map(kind).collect();
                let (expected, phase) = handled(fixture, name).unwrap_or((vec![], before));
                assert_eq!(
                    (kinds, turn.phase()),
                    (expected, phase),
                    "{name} in {fixture}: {effects:?}"
                );
            }
        }
    }

    #[test]
    fn no_step_leaves_the_driver_waiting_for_nothing() {
        for (fixture, turn) in fixtures() {
            for (name, input) in inputs() {
                let mut turn = turn.clone();
                let effects = turn.on(input);
                let awaiting: Vec<_> = effects
                    .iter()
                    .enumerate()
                    .filter(|(_, effect)| effect.awaits_result())
                    .map(|(at, _)| at)
                    .collect();
                assert!(
                    awaiting.len() <= 1 && awaiting.iter().all(|at| at + 1 == effects.len()),
                    "{name} in {fixture}: at most one effect awaits a result, and last: {effects:?}"
                );
                if !effects.is_empty() {
                    assert!(
                        matches!(turn.phase(), P::Streaming | P::Done) || awaiting.len() == 1,
                        "{name} in {fixture} leaves {:?} waiting for nothing: {effects:?}",
                        turn.phase()
                    );
                }
            }
        }
    }

    #[test]
    fn a_database_or_queue_error_is_never_a_verdict_on_the_turn() {
        for (fixture, turn) in fixtures() {
            let mut turn = turn.clone();
            let effects = turn.on(Input::StoreFailed("connection reset by peer".into()));
            assert!(
                !effects.iter().any(|e| matches!(e, Effect::Finish(_))),
                "{fixture}: {effects:?}"
            );
            if let Some(Effect::HandBack { why, retry_after }) = effects.last() {
                assert!(why.contains("connection reset by peer"), "{why}");
                assert_eq!(*retry_after, STORE_RETRY_AFTER);
            }
        }
    }

    #[test]
    fn a_fresh_turn_is_sent_streamed_stored_and_completed() {
        let mut turn = Turn::new(setup());
        assert_eq!(
            turn.on(Input::Claimed(ClaimKind::Fresh)),
            [Effect::AcquireSandbox]
        );
        assert_eq!(
            turn.on(Input::SandboxReady(sandbox("sbx-a"))),
            [Effect::RecordStart {
                sandbox_id: sandbox("sbx-a"),
                retry_of: None
            }]
        );
        assert_eq!(
            turn.on(Input::StartRecorded),
            [Effect::Attach(sandbox("sbx-a"))]
        );
        assert_eq!(
            turn.on(Input::Attached),
            [Effect::SendTurn(sandbox("sbx-a"))]
        );
        assert_eq!(turn.on(Input::TurnSent), []);
        assert_eq!(turn.on(event(1, HarnessSignal::Other)), []);
        assert_eq!(turn.on(event(2, HarnessSignal::ModelOutput)), []);
        assert_eq!(
            turn.on(Input::FlushDue),
            [Effect::AppendHarnessEvents(vec![
                json!({"seq": 1}),
                json!({"seq": 2})
            ])]
        );
        assert_eq!(turn.on(Input::Appended), []);
        assert_eq!(turn.on(Input::FlushDue), [], "nothing pending");
        assert_eq!(
            turn.on(event(3, ok("PONG"))),
            [Effect::AppendHarnessEvents(vec![json!({"seq": 3})])],
            "the end of the turn is stored before the finish"
        );
        let effects = turn.on(Input::Appended);
        assert_eq!(
            effects,
            [Effect::Finish(Ending {
                reason: TerminalReason::Completed,
                result_text: Some("PONG".into()),
                error_text: None,
                agent_thread_id: Some("session-1".into()),
            })]
        );
        assert_eq!(
            turn.on(Input::Finished),
            [
                Effect::RecordSessionTurn {
                    sandbox_id: sandbox("sbx-a"),
                    agent_thread_id: Some("session-1".into())
                },
                Effect::ReleaseThread
            ]
        );
        assert!(turn.is_done());
        assert_eq!(turn.event_count(), 3);
        assert!(!turn.start_retried());
    }

    #[test]
    fn a_database_error_while_choosing_the_sandbox_hands_the_turn_back() {
        let mut turn = drive([Input::Claimed(ClaimKind::Fresh)]);
        let effects = turn.on(Input::StoreFailed("Connection reset by peer".into()));
        assert_eq!(
            effects,
            [Effect::HandBack {
                why: "database or queue error: Connection reset by peer".into(),
                retry_after: STORE_RETRY_AFTER,
            }]
        );
        assert_eq!(
            turn.on(Input::HandedBack),
            [Effect::Requeue {
                after: STORE_RETRY_AFTER
            }]
        );
        assert!(turn.is_done());
    }

    #[test]
    fn a_hand_back_that_cannot_be_written_leaves_the_lease_to_expire() {
        let mut turn = drive([
            Input::Claimed(ClaimKind::Fresh),
            Input::StoreFailed("pool timed out".into()),
        ]);
        let effects = turn.on(Input::StoreFailed("pool timed out".into()));
        assert!(
            matches!(effects.as_slice(), [Effect::GiveUpLease { why }] if why.contains("pool timed out")),
            "{effects:?}"
        );
        assert!(turn.is_done());
    }

    #[test]
    fn a_backend_that_cannot_start_the_sandbox_fails_the_turn_naming_why() {
        let mut turn = drive([Input::Claimed(ClaimKind::Fresh)]);
        let effects = turn.on(Input::SandboxCouldNotStart("image pull failed".into()));
        let ending = finish_of(&effects);
        assert_eq!(ending.reason, TerminalReason::SandboxStartFailed);
        assert_eq!(
            ending.error_text.as_deref(),
            Some("sandbox_start_failed: image pull failed")
        );
    }

    #[test]
    fn an_unrunnable_execution_fails_at_once() {
        let mut turn = Turn::new(setup());
        let effects = turn.on(Input::Claimed(ClaimKind::Unrunnable {
            reason: "unknown harness 'nope'".into(),
        }));
        assert_eq!(
            finish_of(&effects).error_text.as_deref(),
            Some("sandbox_start_failed: unknown harness 'nope'")
        );
    }

    #[test]
    fn a_reattach_resumes_after_the_stored_events_and_skips_their_replay() {
        let mut turn = drive([Input::Claimed(ClaimKind::Reattach {
            sandbox_id: sandbox("sbx-a"),
        })]);
        let effects = turn.on(Input::ReadBack(StoredAttempt {
            start_retry: None,
            max_seq: 4,
            signals: vec![HarnessSignal::ModelOutput],
        }));
        assert_eq!(effects, [Effect::Reattach(sandbox("sbx-a"))]);
        assert_eq!(
            turn.on(Input::Attached),
            [Effect::SendResume { after_seq: 4 }]
        );
        assert_eq!(turn.on(Input::ResumeSent), []);
        assert_eq!(turn.on(event(3, HarnessSignal::Other)), []);
        assert_eq!(turn.on(event(4, HarnessSignal::Other)), []);
        assert_eq!(turn.on(event(5, HarnessSignal::Other)), []);
        assert_eq!(
            turn.on(Input::FlushDue),
            [Effect::AppendHarnessEvents(vec![json!({"seq": 5})])],
            "only the events not stored before are stored"
        );
    }

    #[test]
    fn a_reattach_to_a_vanished_sandbox_fails_the_turn_as_sandbox_lost() {
        let mut turn = drive([
            Input::Claimed(ClaimKind::Reattach {
                sandbox_id: sandbox("sbx-a"),
            }),
            Input::ReadBack(StoredAttempt::default()),
        ]);
        let effects = turn.on(Input::AttachFailed(SandboxState::Exited {
            code: Some(137),
            detail: "killed".into(),
        }));
        assert_eq!(effects[0], Effect::MarkSandboxLost(sandbox("sbx-a")));
        let ending = finish_of(&effects);
        assert_eq!(ending.reason, TerminalReason::SandboxLost);
        assert_eq!(
            ending.error_text.as_deref(),
            Some("sandbox_lost: sandbox sbx-a is gone mid-turn (exited with code 137: killed)")
        );
    }

    #[test]
    fn a_turn_that_ended_before_the_reattach_is_finished_from_its_stored_end() {
        let mut turn = drive([Input::Claimed(ClaimKind::Reattach {
            sandbox_id: sandbox("sbx-a"),
        })]);
        let effects = turn.on(Input::ReadBack(StoredAttempt {
            start_retry: None,
            max_seq: 3,
            signals: vec![HarnessSignal::ModelOutput, ok("done before the crash")],
        }));
        let ending = finish_of(&effects);
        assert_eq!(ending.reason, TerminalReason::Completed);
        assert_eq!(ending.result_text.as_deref(), Some("done before the crash"));
    }

    #[test]
    fn the_stream_ending_while_the_sandbox_lives_hands_the_turn_back_for_reattach() {
        let mut turn = streaming();
        turn.on(event(1, HarnessSignal::Other));
        assert_eq!(
            turn.on(Input::StreamEnded(SandboxState::Alive)),
            [Effect::AppendHarnessEvents(vec![json!({"seq": 1})])]
        );
        assert_eq!(
            turn.on(Input::Appended),
            [Effect::HandBack {
                why: "output stream of sbx-a closed while it is still alive".into(),
                retry_after: REATTACH_AFTER,
            }]
        );
    }

    #[test]
    fn the_stream_ending_with_the_sandbox_gone_fails_the_turn_as_sandbox_lost() {
        let mut turn = streaming();
        let effects = turn.on(Input::StreamEnded(gone("pod deleted")));
        assert_eq!(effects[0], Effect::MarkSandboxLost(sandbox("sbx-a")));
        assert_eq!(
            finish_of(&effects).error_text.as_deref(),
            Some("sandbox_lost: sandbox sbx-a is gone mid-turn (pod deleted)")
        );
    }

    #[test]
    fn a_cancel_interrupts_once_and_the_turns_end_finishes_it_cancelled() {
        let mut turn = streaming();
        assert_eq!(
            turn.on(held(true, false, false)),
            [Effect::ExtendQueueMessage, Effect::SendInterrupt]
        );
        assert_eq!(
            turn.on(held(true, false, false)),
            [Effect::ExtendQueueMessage]
        );
        turn.on(event(1, failed(Some("interrupted"))));
        let effects = turn.on(Input::Appended);
        assert_eq!(finish_of(&effects).reason, TerminalReason::Cancelled);
        assert_eq!(finish_of(&effects).error_text, None);
    }

    #[test]
    fn a_cancel_the_harness_ignores_stops_the_sandbox_after_the_grace() {
        let mut turn = drive(then(started(), [held(true, false, false)]));
        let effects = turn.on(Input::CancelGraceElapsed);
        assert_eq!(
            effects[0],
            Effect::StopSandbox {
                sandbox_id: sandbox("sbx-a"),
                session: SessionEnd::Stopped
            }
        );
        assert_eq!(finish_of(&effects).reason, TerminalReason::Cancelled);
    }

    #[test]
    fn a_cancelled_interrupted_start_failure_is_not_retried() {
        let mut turn = drive(then(started(), [held(true, false, false)]));
        turn.on(event(1, error("auth", "codex login: refused")));
        turn.on(event(2, failed(None)));
        let effects = turn.on(Input::Appended);
        assert_eq!(finish_of(&effects).reason, TerminalReason::Cancelled);
    }

    #[test]
    fn deadlines_stop_the_sandbox_and_the_hard_one_wins() {
        let mut turn = streaming();
        let effects = turn.on(held(false, true, true));
        assert_eq!(
            effects[1],
            Effect::StopSandbox {
                sandbox_id: sandbox("sbx-a"),
                session: SessionEnd::Stopped
            }
        );
        let ending = finish_of(&effects);
        assert_eq!(ending.reason, TerminalReason::HardDeadlineExceeded);
        assert_eq!(
            ending.error_text.as_deref(),
            Some("hard_deadline_exceeded: the turn ran longer than the hard deadline (3600s); the sandbox was stopped")
        );
        let mut turn = streaming();
        turn.on(event(1, HarnessSignal::Other));
        let effects = turn.on(held(false, true, false));
        assert_eq!(
            effects,
            [
                Effect::ExtendQueueMessage,
                Effect::AppendHarnessEvents(vec![json!({"seq": 1})])
            ],
            "what is pending is stored first"
        );
        let ending = finish_of(&turn.on(Input::Appended)).clone();
        assert_eq!(ending.reason, TerminalReason::SilenceDeadlineExceeded);
        assert!(ending
            .error_text
            .is_some_and(|text| text.contains("(600s)")));
    }

    #[test]
    fn a_harness_error_names_the_harness_and_its_error() {
        let mut turn = streaming();
        turn.on(event(1, HarnessSignal::ModelOutput));
        turn.on(event(2, error("upstream", "model API 500")));
        turn.on(event(3, failed(None)));
        let effects = turn.on(Input::Appended);
        let ending = finish_of(&effects);
        assert_eq!(ending.reason, TerminalReason::HarnessError);
        assert_eq!(
            ending.error_text.as_deref(),
            Some("harness_error: codex reported: model API 500"),
            "the last error event, when turn.done names none"
        );
        let mut turn = streaming();
        turn.on(event(1, failed(Some("exit 2"))));
        let effects = turn.on(Input::Appended);
        assert_eq!(
            finish_of(&effects).error_text.as_deref(),
            Some("harness_error: codex reported: exit 2")
        );
    }

    #[test]
    fn a_start_failure_is_retried_once_in_a_fresh_sandbox_then_names_the_step() {
        let mut turn = streaming();
        turn.on(event(1, HarnessSignal::Other));
        turn.on(event(
            2,
            error("start_failed", "clone acme/api: 403 from the proxy"),
        ));
        turn.on(event(3, failed(Some("could not start"))));
        assert_eq!(
            turn.on(Input::Appended),
            [Effect::RecordStartRetry {
                sandbox_id: fresh_sandbox(),
                first_failure: "clone acme/api: 403 from the proxy".into()
            }]
        );
        assert_eq!(
            turn.on(Input::StartRetryRecorded),
            [
                Effect::StopSandbox {
                    sandbox_id: sandbox("sbx-a"),
                    session: SessionEnd::Failed
                },
                Effect::CreateSandbox(fresh_sandbox())
            ]
        );
        assert!(turn.start_retried());
        assert_eq!(
            turn.on(Input::SandboxReady(fresh_sandbox())),
            [Effect::RecordStart {
                sandbox_id: fresh_sandbox(),
                retry_of: Some("clone acme/api: 403 from the proxy".into())
            }]
        );
        turn.on(Input::StartRecorded);
        turn.on(Input::Attached);
        turn.on(Input::TurnSent);
        assert_eq!(
            turn.on(event(1, HarnessSignal::Other)),
            [],
            "the fresh sandbox numbers its events from 1 again"
        );
        turn.on(event(2, error("start_failed", "clone acme/api: timeout")));
        turn.on(event(3, failed(None)));
        let effects = turn.on(Input::Appended);
        assert_eq!(
            effects[0],
            Effect::StopSandbox {
                sandbox_id: fresh_sandbox(),
                session: SessionEnd::Failed
            }
        );
        let ending = finish_of(&effects);
        assert_eq!(ending.reason, TerminalReason::SandboxStartFailed);
        assert_eq!(
            ending.error_text.as_deref(),
            Some("sandbox_start_failed: clone acme/api: timeout")
        );
    }

    #[test]
    fn a_recorded_retry_whose_sandbox_never_got_the_turn_is_continued_after_a_reclaim() {
        let mut turn = drive([Input::Claimed(ClaimKind::Reattach {
            sandbox_id: sandbox("sbx-a"),
        })]);
        let effects = turn.on(Input::ReadBack(StoredAttempt {
            start_retry: Some(StartRetry {
                sandbox_id: fresh_sandbox(),
                first_failure: "auth: 401".into(),
            }),
            max_seq: 0,
            signals: vec![],
        }));
        assert_eq!(
            effects,
            [
                Effect::StopSandbox {
                    sandbox_id: sandbox("sbx-a"),
                    session: SessionEnd::Failed
                },
                Effect::CreateSandbox(fresh_sandbox())
            ]
        );
        assert_eq!(
            turn.on(Input::SandboxReady(fresh_sandbox())),
            [Effect::RecordStart {
                sandbox_id: fresh_sandbox(),
                retry_of: Some("auth: 401".into())
            }]
        );
    }

    #[test]
    fn a_reclaimed_retry_that_fails_to_start_again_is_not_retried_twice() {
        let mut turn = drive([Input::Claimed(ClaimKind::Reattach {
            sandbox_id: fresh_sandbox(),
        })]);
        let effects = turn.on(Input::ReadBack(StoredAttempt {
            start_retry: Some(StartRetry {
                sandbox_id: fresh_sandbox(),
                first_failure: "auth: 401".into(),
            }),
            max_seq: 2,
            signals: vec![error("auth", "auth: 401 again"), failed(None)],
        }));
        let ending = finish_of(&effects);
        assert_eq!(
            ending.error_text.as_deref(),
            Some("sandbox_start_failed: auth: 401 again")
        );
    }

    #[test]
    fn model_output_means_the_harness_did_start() {
        for signals in [
            vec![HarnessSignal::ModelOutput, error("auth", "401")],
            vec![error("auth", "401"), HarnessSignal::ModelOutput],
        ] {
            let mut turn = streaming();
            for (seq, signal) in signals.iter().enumerate() {
                turn.on(event(seq as u64 + 1, signal.clone()));
            }
            turn.on(event(3, failed(None)));
            let effects = turn.on(Input::Appended);
            assert_eq!(
                finish_of(&effects).reason,
                TerminalReason::HarnessError,
                "{signals:?}"
            );
        }
    }

    #[test]
    fn only_start_failure_kinds_are_start_failures_and_the_first_one_is_named() {
        for kind in START_FAILURE_KINDS {
            let mut turn = streaming();
            turn.on(event(1, error(kind, "first")));
            turn.on(event(2, error("start_failed", "second")));
            turn.on(event(3, failed(None)));
            assert_eq!(
                turn.on(Input::Appended),
                [Effect::RecordStartRetry {
                    sandbox_id: fresh_sandbox(),
                    first_failure: "first".into()
                }],
                "{kind}"
            );
        }
        for kind in [
            "upstream",
            "harness",
            "crash",
            "interrupted",
            "malformed_output",
        ] {
            let mut turn = streaming();
            turn.on(event(1, error(kind, "boom")));
            turn.on(event(2, failed(None)));
            let effects = turn.on(Input::Appended);
            assert_eq!(
                finish_of(&effects).reason,
                TerminalReason::HarnessError,
                "{kind}"
            );
        }
    }

    #[test]
    fn without_a_retry_sandbox_a_start_failure_is_final() {
        let mut turn = Turn::new(TurnSetup::new(
            "not-an-id",
            "codex",
            Duration::from_secs(1),
            Duration::from_secs(1),
        ));
        for input in started() {
            turn.on(input);
        }
        turn.on(event(1, error("cli_missing", "codex: not installed")));
        turn.on(event(2, failed(None)));
        let effects = turn.on(Input::Appended);
        assert_eq!(
            finish_of(&effects).error_text.as_deref(),
            Some("sandbox_start_failed: codex: not installed")
        );
    }

    #[test]
    fn the_sandbox_saying_it_never_got_the_turn_gets_it_now() {
        let mut turn = drive([
            Input::Claimed(ClaimKind::Reattach {
                sandbox_id: sandbox("sbx-a"),
            }),
            Input::ReadBack(StoredAttempt::default()),
            Input::Attached,
            Input::ResumeSent,
        ]);
        assert_eq!(
            turn.on(Input::Line(SandboxLine::TurnUnknown)),
            [Effect::SendTurn(sandbox("sbx-a"))]
        );
        assert_eq!(turn.on(Input::TurnSent), []);
        assert_eq!(turn.phase(), P::Streaming);
    }

    #[test]
    fn unreadable_lines_are_kept_as_malformed_output_errors() {
        let mut turn = streaming();
        turn.on(Input::Line(SandboxLine::Unreadable {
            error: "expected value".into(),
            line: "x".repeat(5000),
        }));
        let effects = turn.on(Input::FlushDue);
        let [Effect::AppendHarnessEvents(batch)] = effects.as_slice() else {
            panic!("{effects:?}");
        };
        assert_eq!(batch[0]["kind"], "malformed_output");
        assert_eq!(batch[0]["message"], "expected value");
        assert_eq!(batch[0]["line"].as_str().map(str::len), Some(2000));
        assert_eq!(turn.event_count(), 0, "not a harness event");
    }

    #[test]
    fn events_are_stored_in_batches_of_at_most_flush_at() {
        let mut turn = streaming();
        for seq in 1..FLUSH_AT as u64 {
            assert_eq!(turn.on(event(seq, HarnessSignal::Other)), []);
        }
        let effects = turn.on(event(FLUSH_AT as u64, HarnessSignal::Other));
        assert!(
            matches!(effects.as_slice(), [Effect::AppendHarnessEvents(batch)] if batch.len() == FLUSH_AT),
            "{effects:?}"
        );
    }

    #[test]
    fn a_lost_lease_touches_nothing_more() {
        let mut turn = streaming();
        turn.on(event(1, HarnessSignal::Other));
        let effects = turn.on(Input::Heartbeat(Beat::Lost));
        assert!(
            matches!(effects.as_slice(), [Effect::GiveUpLease { .. }]),
            "{effects:?}"
        );
        assert_eq!(turn.on(event(2, ok("late"))), []);
        assert_eq!(turn.on(Input::StreamEnded(SandboxState::Alive)), []);
    }

    #[test]
    fn a_finish_that_cannot_be_written_leaves_the_lease_to_expire() {
        let mut turn = drive(then(started(), [Input::StreamEnded(gone("deleted"))]));
        let effects = turn.on(Input::StoreFailed("connection refused".into()));
        assert!(
            matches!(effects.as_slice(), [Effect::GiveUpLease { why }] if why.contains("connection refused")),
            "{effects:?}"
        );
    }

    #[test]
    fn the_retry_sandbox_is_derived_from_the_execution() {
        let execution =
            ExecutionId::parse(EXECUTION).unwrap_or_else(|| panic!("a valid execution id"));
        assert_eq!(retry_sandbox_id(&execution), fresh_sandbox());
        assert_eq!(setup().retry_sandbox_id, Some(fresh_sandbox()));
    }
}
