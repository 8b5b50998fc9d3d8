//! Drives one claimed execution. The decisions — when the turn is sent, resumed or
//! interrupted, what a line, a heartbeat, a cancel, a deadline or the end of the stream
//! does to it, when a start failure is retried, what a database error means — are the turn
//! state machine's ([`centaur_core::turn`]); this module feeds it what happens (the claim,
//! the result of each effect, the sandbox's lines, heartbeats, timers) and carries out the
//! effects it returns.

use crate::batches::End;
use crate::{sandboxes, steps, transcript};
use crate::{DispatchError, Dispatcher};
use centaur_core::turn::{
    self, Beat, ClaimKind, Effect, Ending, HarnessSignal, Input, Phase, SandboxLine, SandboxState,
    SessionEnd, StoredAttempt, Turn, TurnEnd, TurnSetup,
};
use centaur_core::{branch_name, ExecutionId, Harness, RepoRef, SandboxId, TerminalReason};
use centaur_harness::{
    HarnessEvent, MessagePart, SandboxInput, SandboxOutput, TurnMessage, TurnStatus, Workspace,
};
use centaur_sandbox::{Attachment, SandboxError, SandboxStatus};
use centaur_store::dispatch::{
    self, ClaimedExecution, Finish, Lease, QueueRelease, TurnMessageRow,
};
use centaur_store::{history, sessions, start_retries, StoreError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{Interval, MissedTickBehavior, Sleep};
use tracing::Instrument;

/// How long a cancelled turn may take to stop after `interrupt` before its sandbox is stopped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Harness events are stored at least this often (or once `turn::FLUSH_AT` wait).
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// An exiting sandbox gets this long to be seen as exited after its stream ends.
const EXIT_SETTLE: Duration = Duration::from_millis(100);
/// A message for an execution still waiting behind an older one comes back after this.
pub const THREAD_BUSY_DELAY: Duration = Duration::from_secs(2);

/// Drives `execution` to its end; `receipt` is the queue message behind the claim (the
/// claimer's own, or the one a dead holder received). Always releases the in-process
/// marker and the slot.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    execution: ClaimedExecution,
    receipt: Option<String>,
) {
    let span = tracing::info_span!(
        "execution",
        execution_id = %execution.execution_id,
        thread_key = %execution.thread_key,
        harness = %execution.harness,
        attempt = execution.attempt,
    );
    async {
        metrics::gauge!("centaur_dispatcher_running_executions").increment(1.0);
        let mut driver = Driver::new(&dispatcher, &execution, receipt);
        driver.drive().await;
        metrics::gauge!("centaur_dispatcher_running_executions").decrement(1.0);
    }
    .instrument(span)
    .await;
    dispatcher.end(&execution.execution_id);
}

/// What the sandbox's side of the turn woke the driver with.
enum Wake {
    Line(Option<Result<String, SandboxError>>),
    Flush,
    Heartbeat,
    CancelGrace,
}

/// Carries out one turn's effects.
struct Driver<'a> {
    dispatcher: &'a Dispatcher,
    execution: &'a ClaimedExecution,
    lease: Lease,
    receipt: Option<String>,
    harness: Option<Harness>,
    execution_id: Option<ExecutionId>,
    attachment: Option<Attachment>,
    /// Armed when an interrupt is sent: the turn must end before it fires.
    cancel_grace: Option<Pin<Box<Sleep>>>,
    started: Instant,
    /// The turn's messages as the start of the turn read them, for the sandbox they were
    /// read for (sending the turn then needs no query).
    turn_messages: Option<(SandboxId, Vec<TurnMessageRow>)>,
    /// The sandbox the claim already started the turn in (the thread's live session):
    /// recording the start there again has nothing to write.
    started_by_claim: Option<SandboxId>,
    /// The last batch of harness events before the turn concludes: stored with the end
    /// (one statement) instead of on its own.
    deferred: Vec<Value>,
    /// The end was written with the thread's session row: recording the session turn has
    /// nothing left to do.
    session_in_finish: bool,
    /// The end was written with the queue message deleted and the thread's next turn woken
    /// (Postgres queue): releasing the thread has nothing left to do.
    released_in_finish: bool,
}

impl<'a> Driver<'a> {
    fn new(
        dispatcher: &'a Dispatcher,
        execution: &'a ClaimedExecution,
        receipt: Option<String>,
    ) -> Self {
        let started_by_claim = execution.started_in.clone().map(SandboxId::from_stored);
        let start_messages = execution.start_messages.as_ref();
        Self {
            dispatcher,
            execution,
            lease: execution.lease(),
            receipt,
            harness: execution.harness.parse().ok(),
            execution_id: ExecutionId::parse(&execution.execution_id),
            attachment: None,
            cancel_grace: None,
            started: Instant::now(),
            turn_messages: started_by_claim.clone().map(|id| {
                let messages = start_messages.map(|json| json.0.clone());
                (id, messages.unwrap_or_default())
            }),
            started_by_claim,
            deferred: Vec::new(),
            session_in_finish: false,
            released_in_finish: false,
        }
    }

    /// What the claim found, for the machine's first input.
    fn claim_kind(&self) -> ClaimKind {
        let execution = self.execution;
        if self.harness.is_none() {
            return ClaimKind::Unrunnable {
                reason: format!("unknown harness '{}'", execution.harness),
            };
        }
        if self.execution_id.is_none() {
            return ClaimKind::Unrunnable {
                reason: format!("malformed execution id '{}'", execution.execution_id),
            };
        }
        match &execution.sandbox_id {
            Some(sandbox_id) if execution.turn_was_sent() => ClaimKind::Reattach {
                sandbox_id: SandboxId::from_stored(sandbox_id.clone()),
            },
            _ => ClaimKind::Fresh,
        }
    }

    /// Feeds the machine until it is done: the result of each effect, and while the turn
    /// streams, the sandbox's lines, the flush and heartbeat timers and the cancel grace.
    async fn drive(&mut self) {
        let config = &self.dispatcher.config;
        let mut turn = Turn::new(TurnSetup::new(
            &self.execution.execution_id,
            &self.execution.harness,
            config.silence_timeout,
            config.hard_timeout,
        ));
        let mut flush = timer(FLUSH_EVERY);
        let mut heartbeat = timer((config.lease / 3).max(Duration::from_millis(200)));
        let mut inputs = VecDeque::from([Input::Claimed(self.claim_kind())]);
        loop {
            while let Some(input) = inputs.pop_front() {
                for effect in turn.on(input) {
                    if let Some(result) = self.perform(effect, &turn).await {
                        inputs.push_back(result);
                    }
                }
            }
            if turn.is_done() {
                return;
            }
            if turn.phase() != Phase::Streaming {
                tracing::error!(
                    phase = ?turn.phase(),
                    "the turn waits for an input nothing will give; leaving the lease to expire"
                );
                return;
            }
            let sandbox = turn.sandbox_id().cloned();
            let waited = Instant::now();
            let input = self
                .next_stream_input(sandbox, &mut flush, &mut heartbeat)
                .await;
            steps::record("stream", waited);
            inputs.push_back(input);
        }
    }

    /// Waits for what happens next while the turn streams.
    async fn next_stream_input(
        &mut self,
        sandbox: Option<SandboxId>,
        flush: &mut Interval,
        heartbeat: &mut Interval,
    ) -> Input {
        let wake = {
            let Some(attachment) = self.attachment.as_mut() else {
                return self.stream_ended(sandbox).await;
            };
            let grace = async {
                match self.cancel_grace.as_mut() {
                    Some(grace) => grace.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                line = attachment.output.next() => Wake::Line(line),
                _ = flush.tick() => Wake::Flush,
                _ = heartbeat.tick() => Wake::Heartbeat,
                () = grace => Wake::CancelGrace,
            }
        };
        match wake {
            Wake::Line(Some(Ok(line))) => {
                Input::Line(sandbox_line(&self.execution.execution_id, &line))
            }
            Wake::Line(Some(Err(err))) => {
                tracing::warn!(%err, "reading the sandbox's output failed");
                self.stream_ended(sandbox).await
            }
            Wake::Line(None) => self.stream_ended(sandbox).await,
            Wake::Flush => Input::FlushDue,
            Wake::Heartbeat => Input::Heartbeat(self.heartbeat().await),
            Wake::CancelGrace => {
                self.cancel_grace = None;
                Input::CancelGraceElapsed
            }
        }
    }

    /// The stream ended: what the backend says about the sandbox, a moment later.
    async fn stream_ended(&mut self, sandbox: Option<SandboxId>) -> Input {
        self.attachment = None;
        let Some(id) = sandbox else {
            return Input::StreamEnded(SandboxState::Gone {
                detail: "no sandbox".into(),
            });
        };
        tokio::time::sleep(EXIT_SETTLE).await;
        Input::StreamEnded(sandbox_state(self.dispatcher.backend.status(&id).await))
    }

    /// Carries out one effect, timed ([`steps`]); returns its result when the machine
    /// awaits one.
    async fn perform(&mut self, effect: Effect, turn: &Turn) -> Option<Input> {
        let (step, started) = (effect.name(), Instant::now());
        let result = self.carry_out_or_await(effect, turn).await;
        steps::record(step, started);
        result
    }

    /// Carries out one effect; returns its result when the machine awaits one.
    async fn carry_out_or_await(&mut self, effect: Effect, turn: &Turn) -> Option<Input> {
        let result = match effect {
            Effect::ReadBack => self.read_back().await,
            Effect::AcquireSandbox => self.acquire().await,
            Effect::CreateSandbox(id) => self.create(id).await,
            Effect::RecordStart {
                sandbox_id,
                retry_of,
            } => self.record_start(&sandbox_id, retry_of).await,
            Effect::Attach(id) => self.attach(&id).await,
            Effect::Reattach(id) => self.reattach(&id).await,
            Effect::SendTurn(id) => self.send_turn(&id).await,
            Effect::SendResume { after_seq } => self.send_resume(after_seq).await,
            Effect::AppendHarnessEvents(batch) if turn.phase() == Phase::Flushing => {
                self.defer(batch)
            }
            Effect::AppendHarnessEvents(batch) => self.append(&batch).await,
            Effect::RecordStartRetry {
                sandbox_id,
                first_failure,
            } => self.record_start_retry(&sandbox_id, &first_failure).await,
            Effect::Finish(ending) => self.finish(ending, turn).await,
            Effect::HandBack { why, retry_after } => self.hand_back(&why, retry_after).await,
            effect => {
                self.carry_out(effect).await;
                return None;
            }
        };
        Some(result)
    }

    /// Carries out an effect whose result the machine does not await (each failure is
    /// logged: nothing the turn depends on hangs on it).
    async fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::SendInterrupt => self.send_interrupt().await,
            Effect::StopSandbox {
                sandbox_id,
                session,
            } => self.stop_sandbox(&sandbox_id, session).await,
            Effect::MarkSandboxLost(id) => self.end_session(&id, SessionEnd::Lost).await,
            Effect::ExtendQueueMessage => self.extend_queue_message().await,
            Effect::RecordSessionTurn {
                sandbox_id,
                agent_thread_id,
            } => self.record_session_turn(&sandbox_id, agent_thread_id).await,
            Effect::ReleaseThread => self.release_thread().await,
            Effect::Requeue { after } => self.requeue(after).await,
            Effect::GiveUpLease { why } => {
                tracing::warn!(%why, "touching nothing more; the lease will expire and the turn be continued")
            }
            awaited => tracing::error!(?awaited, "an awaited effect was carried out blind"),
        }
    }

    /// What earlier attempts stored: the start retry, the highest `seq` and the deciding
    /// events of the current sandbox.
    async fn read_back(&mut self) -> Input {
        let pool = &self.dispatcher.pool;
        let execution_id = &self.execution.execution_id;
        let read = async {
            let retry = start_retries::load(pool, execution_id).await?;
            let after = retry.as_ref().map_or(0, |retry| retry.event_id);
            let record = start_retries::attempt_record(pool, execution_id, after).await?;
            Ok::<_, StoreError>(StoredAttempt {
                start_retry: retry.map(|retry| turn::StartRetry {
                    sandbox_id: SandboxId::from_stored(retry.sandbox_id),
                    first_failure: retry.first_failure,
                }),
                max_seq: record.max_seq,
                signals: record
                    .events
                    .into_iter()
                    .filter_map(|stored| serde_json::from_value::<SandboxOutput>(stored).ok())
                    .map(|output| signal(&output.event))
                    .collect(),
            })
        };
        match read.await {
            Ok(stored) => Input::ReadBack(stored),
            Err(err) => failed(err.into()),
        }
    }

    async fn acquire(&mut self) -> Input {
        let (Some(harness), Some(execution_id)) = (self.harness, &self.execution_id) else {
            return Input::SandboxCouldNotStart("the execution cannot run".into());
        };
        let execution = self.execution;
        let live = execution
            .session_sandbox_id
            .clone()
            .zip(execution.session_harness.clone())
            .map(|(sandbox_id, harness)| sandboxes::LiveSession {
                sandbox_id,
                harness,
            });
        let acquired = sandboxes::acquire(
            self.dispatcher,
            &execution.thread_key,
            execution_id,
            harness,
            live,
        )
        .await;
        sandbox_ready(acquired)
    }

    async fn create(&mut self, id: SandboxId) -> Input {
        let Some(harness) = self.harness else {
            return Input::SandboxCouldNotStart("the execution cannot run".into());
        };
        let created =
            sandboxes::create_for_thread(self.dispatcher, &self.execution.thread_key, id, harness)
                .await;
        sandbox_ready(created)
    }

    /// The `execution_started` event (`retry_of`: the first attempt's start failure), with
    /// the sandbox and the turn's messages (one statement, [`dispatch::start_turn`]) —
    /// unless the claim already wrote them for this sandbox.
    async fn record_start(&mut self, id: &SandboxId, retry_of: Option<String>) -> Input {
        if retry_of.is_none() && self.started_by_claim.take().as_ref() == Some(id) {
            return Input::StartRecorded;
        }
        let mut started = json!({
            "harness": self.execution.harness,
            "sandbox_id": id.as_str(),
            "queue_delay_ms": self.execution.queue_delay_ms(),
            "attempt": self.execution.attempt,
        });
        if let Some(first_failure) = retry_of {
            started["start_retry"] = json!({ "first_failure": first_failure });
        }
        let pool = &self.dispatcher.pool;
        match dispatch::start_turn(pool, &self.lease, id.as_str(), &started).await {
            Ok(Some(messages)) => {
                self.turn_messages = Some((id.clone(), messages));
                Input::StartRecorded
            }
            Ok(None) => Input::LeaseLost,
            Err(err) => failed(err.into()),
        }
    }

    async fn attach(&mut self, id: &SandboxId) -> Input {
        match self.dispatcher.backend.attach(id).await {
            Ok(attachment) => {
                self.attachment = Some(attachment);
                Input::Attached
            }
            Err(err) => Input::AttachFailed(SandboxState::Gone {
                detail: err.to_string(),
            }),
        }
    }

    /// Re-attach after a reclaim: only to a sandbox the backend still sees alive.
    async fn reattach(&mut self, id: &SandboxId) -> Input {
        let state = sandbox_state(self.dispatcher.backend.status(id).await);
        if state != SandboxState::Alive {
            return Input::AttachFailed(state);
        }
        self.attach(id).await
    }

    async fn send_line(&mut self, line: &str) -> Result<(), SandboxError> {
        match self.attachment.as_mut() {
            Some(attachment) => attachment.input.send_line(line).await,
            None => Err(SandboxError::Io("not attached to the sandbox".into())),
        }
    }

    /// Binds the turn to sandbox `id` and writes the turn line.
    async fn send_turn(&mut self, id: &SandboxId) -> Input {
        let dispatcher = self.dispatcher;
        let execution = self.execution;
        let workspace =
            match workspace(execution, dispatcher.config.workspace.default_repo.as_ref()) {
                Ok(workspace) => workspace,
                Err(reason) => return Input::TurnUnsendable(reason),
            };
        let continuity = match self.continuity(id).await {
            Ok(continuity) => continuity,
            Err(err) => return failed(err.into()),
        };
        let messages = match self.turn_messages.take() {
            Some((read_for, messages)) if read_for == *id => messages,
            _ => match dispatch::take_turn_messages(&dispatcher.pool, &self.lease, id.as_str())
                .await
            {
                Ok(Some(messages)) => messages,
                Ok(None) => return Input::LeaseLost,
                Err(err) => return failed(err.into()),
            },
        };
        if continuity.transcript.is_some() {
            tracing::info!(
                sandbox_id = %id,
                "the sandbox did not run the thread's previous turn; the turn carries the thread's transcript"
            );
        }
        let context = TurnContext {
            continuity,
            workspace,
            instructions: instructions(execution),
            env: sandboxes::turn_env(dispatcher, &execution.thread_key, id),
        };
        let line = turn_line(execution, &messages, context);
        match self.send_line(&line).await {
            Ok(()) => Input::TurnSent,
            Err(err) => Input::SendFailed(err.to_string()),
        }
    }

    /// Asks the sandbox to replay what was not stored.
    async fn send_resume(&mut self, after_seq: u64) -> Input {
        let resume = SandboxInput::Resume {
            execution_id: self.execution.execution_id.clone(),
            after_seq,
        };
        match self.send_line(&resume.to_line()).await {
            Ok(()) => {
                tracing::info!(after_seq, "re-attached to the sandbox");
                Input::ResumeSent
            }
            Err(err) => Input::SendFailed(err.to_string()),
        }
    }

    /// Asks the harness to stop and arms the cancel grace.
    async fn send_interrupt(&mut self) {
        tracing::info!("cancel requested; interrupting the turn");
        let interrupt = SandboxInput::Interrupt {
            execution_id: self.execution.execution_id.clone(),
        };
        if let Err(err) = self.send_line(&interrupt.to_line()).await {
            tracing::warn!(%err, "could not send the interrupt; the sandbox is stopped after the grace");
        }
        self.cancel_grace = Some(Box::pin(tokio::time::sleep(CANCEL_GRACE)));
    }

    /// Keeps the turn's last batch for the statement that concludes the turn (the machine
    /// flushes before it concludes).
    fn defer(&mut self, batch: Vec<Value>) -> Input {
        metrics::counter!("centaur_harness_events_total", "harness" => self.execution.harness.clone())
            .increment(batch.len() as u64);
        self.deferred.extend(batch);
        Input::Appended
    }

    /// Stores the deferred batch on its own (before a hand-back or a start retry).
    async fn store_deferred(&mut self) -> Result<bool, StoreError> {
        if self.deferred.is_empty() {
            return Ok(true);
        }
        let silence = self.dispatcher.config.silence_timeout;
        let batch = std::mem::take(&mut self.deferred);
        dispatch::append_harness_events(&self.dispatcher.pool, &self.lease, silence, &batch).await
    }

    async fn append(&mut self, batch: &[Value]) -> Input {
        metrics::counter!("centaur_harness_events_total", "harness" => self.execution.harness.clone())
            .increment(batch.len() as u64);
        let silence = self.dispatcher.config.silence_timeout;
        match dispatch::append_harness_events(&self.dispatcher.pool, &self.lease, silence, batch)
            .await
        {
            Ok(true) => Input::Appended,
            Ok(false) => Input::LeaseLost,
            Err(err) => failed(err.into()),
        }
    }

    async fn record_start_retry(&mut self, id: &SandboxId, first_failure: &str) -> Input {
        match self.store_deferred().await {
            Ok(true) => {}
            Ok(false) => return Input::LeaseLost,
            Err(err) => return failed(err.into()),
        }
        match start_retries::record(
            &self.dispatcher.pool,
            &self.lease,
            id.as_str(),
            first_failure,
        )
        .await
        {
            Ok(Some(_)) => {
                tracing::warn!(
                    first_failure,
                    sandbox_id = %id,
                    "the harness failed to start; retrying the turn once in a fresh sandbox"
                );
                Input::StartRetryRecorded
            }
            Ok(None) => Input::LeaseLost,
            Err(err) => failed(err.into()),
        }
    }

    /// Stops a sandbox and ends its session row.
    async fn stop_sandbox(&mut self, id: &SandboxId, session: SessionEnd) {
        if let Err(err) = self.dispatcher.backend.stop(id).await {
            tracing::warn!(sandbox_id = %id, %err, "could not stop the sandbox; orphan collection will");
        }
        self.end_session(id, session).await;
    }

    async fn end_session(&mut self, id: &SandboxId, session: SessionEnd) {
        if let Err(err) = sessions::end(
            &self.dispatcher.pool,
            &self.execution.thread_key,
            id.as_str(),
            session.as_str(),
        )
        .await
        {
            tracing::warn!(sandbox_id = %id, %err, state = session.as_str(), "could not end the sandbox's session; the reaper will");
        }
    }

    async fn extend_queue_message(&mut self) {
        let Some(receipt) = &self.receipt else {
            return;
        };
        let visibility = self.dispatcher.config.queue_visibility;
        if let Err(err) = self.dispatcher.queue.extend(receipt, visibility).await {
            tracing::warn!(%err, "could not extend the queue message visibility");
        }
    }

    /// Writes the end: the terminal status, its events and summary, the outbox row.
    async fn finish(&mut self, ending: Ending, turn: &Turn) -> Input {
        let execution = self.execution;
        let status = ending.reason.status();
        let summary = json!({
            "status": status.as_str(),
            "terminal_reason": ending.reason.as_str(),
            "duration_ms": u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "harness_event_count": turn.event_count(),
            "queue_delay_ms": execution.queue_delay_ms(),
            "attempt": execution.attempt,
            "sandbox_id": turn.sandbox_id().map(SandboxId::as_str),
            "start_retried": turn.start_retried(),
        });
        let delivery_payload = centaur_core::delivery::payload(
            &execution.execution_id,
            ending.reason,
            ending.result_text.as_deref(),
        );
        let queue = self.dispatcher.queue.in_database().then(|| QueueRelease {
            receipt: self.receipt.clone(),
            channel: centaur_queue::postgres::CHANNEL.to_owned(),
        });
        let session_sandbox_id = (ending.reason == TerminalReason::Completed)
            .then(|| turn.sandbox_id().map(|id| id.as_str().to_owned()))
            .flatten();
        let end = Finish {
            reason: ending.reason,
            result_text: ending.result_text,
            error_text: ending.error_text,
            agent_thread_id: ending.agent_thread_id,
            summary,
            delivery_payload,
            events: std::mem::take(&mut self.deferred),
            session_sandbox_id,
            queue,
        };
        let (reason, error_text) = (end.reason, end.error_text.clone());
        let (session_in_finish, released_in_finish) =
            (end.session_sandbox_id.is_some(), end.queue.is_some());
        let end = End {
            holder: self.lease.clone(),
            finish: end,
        };
        match self.dispatcher.batches.finish(end).await {
            Ok(finished) if finished.written => {
                self.session_in_finish = session_in_finish;
                self.released_in_finish = released_in_finish;
                if finished.woke_next {
                    tracing::debug!("woke the thread's next turn");
                }
                metrics::counter!(
                    "centaur_executions_finished_total",
                    "harness" => execution.harness.clone(),
                    "status" => status.as_str(),
                    "reason" => reason.as_str(),
                )
                .increment(1);
                tracing::info!(
                    status = status.as_str(),
                    reason = reason.as_str(),
                    error_text = error_text.as_deref(),
                    "execution finished"
                );
                Input::Finished
            }
            Ok(_) => {
                tracing::info!("the execution is no longer this worker's to finish");
                Input::FinishRefused
            }
            Err(err) => failed(err.into()),
        }
    }

    async fn hand_back(&mut self, why: &str, retry_after: Duration) -> Input {
        tracing::warn!(%why, ?retry_after, "handing the execution back to run again");
        match self.store_deferred().await {
            Ok(true) => {}
            Ok(false) => return Input::LeaseLost,
            Err(err) => return failed(err.into()),
        }
        match dispatch::hand_back(&self.dispatcher.pool, &self.lease, why).await {
            Ok(true) => Input::HandedBack,
            Ok(false) => Input::LeaseLost,
            Err(err) => failed(err.into()),
        }
    }

    async fn record_session_turn(&mut self, id: &SandboxId, agent_thread_id: Option<String>) {
        if self.session_in_finish {
            // Written with the end (the finish statement updates the session row).
            return;
        }
        if let Err(err) = sessions::record_turn(
            &self.dispatcher.pool,
            &self.execution.thread_key,
            id.as_str(),
            agent_thread_id.as_deref(),
        )
        .await
        {
            tracing::warn!(%err, "could not record the harness session; the next turn carries the transcript instead");
        }
    }

    /// The execution is over: its queue message goes, the thread's next turn is woken.
    async fn release_thread(&mut self) {
        if self.released_in_finish {
            // The end's statement deleted the message and woke the thread's next turn.
            return;
        }
        let queue = &self.dispatcher.queue;
        if let Some(receipt) = &self.receipt {
            if let Err(err) = queue.delete(receipt).await {
                tracing::warn!(%err, "could not delete the queue message; a claim will find the execution finished");
            }
        }
        let next = match dispatch::next_waiting_on_thread(
            &self.dispatcher.pool,
            &self.execution.thread_key,
        )
        .await
        {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(%err, "could not find the thread's next execution; the sweep will wake it");
                return;
            }
        };
        if let Some(next) = next {
            let message = centaur_queue::QueueMessage {
                execution_id: next.execution_id,
                thread_key: next.thread_key,
            };
            if let Err(err) = queue.send(&message).await {
                tracing::warn!(%err, "could not wake the thread's next execution; the sweep will");
            }
        }
    }

    /// Wakes the handed-back execution again after `delay`.
    async fn requeue(&mut self, delay: Duration) {
        let queue = &self.dispatcher.queue;
        let result = match &self.receipt {
            Some(receipt) => queue.release(receipt, delay).await,
            None => {
                queue
                    .send(&centaur_queue::QueueMessage {
                        execution_id: self.execution.execution_id.clone(),
                        thread_key: self.execution.thread_key.clone(),
                    })
                    .await
            }
        };
        if let Err(err) = result {
            tracing::warn!(%err, "could not re-queue; the sweep will");
        }
    }

    /// What the heartbeat found (and the lease extended).
    async fn heartbeat(&mut self) -> Beat {
        let config = &self.dispatcher.config;
        match dispatch::heartbeat(&self.dispatcher.pool, &self.lease, config.lease).await {
            Ok(Some(beat)) => Beat::Held {
                cancel_requested: beat.cancel_requested,
                silence_exceeded: beat.silence_exceeded,
                hard_exceeded: beat.hard_exceeded,
            },
            Ok(None) => Beat::Lost,
            Err(err) => {
                tracing::warn!(%err, "heartbeat failed; will retry");
                Beat::Failed
            }
        }
    }

    /// A turn in the sandbox that ran the thread's previous turn resumes the harness's own
    /// session; any other sandbox (or one with no session to resume) gets the thread's
    /// transcript and never a session id.
    async fn continuity(&mut self, id: &SandboxId) -> Result<Continuity, StoreError> {
        let pool = &self.dispatcher.pool;
        let execution = self.execution;
        // What the claim read: the sandbox of the thread's previous turn (earlier turns are
        // over, it cannot change) and the thread's live session.
        let same_sandbox = execution.previous_sandbox_id.as_deref() == Some(id.as_str())
            && execution.session_sandbox_id.as_deref() == Some(id.as_str());
        if same_sandbox {
            if let Some(session) = execution.session_agent_thread_id.clone() {
                return Ok(Continuity {
                    agent_thread_id: Some(session),
                    transcript: None,
                });
            }
        }
        let rows = history::before_execution(
            pool,
            &execution.thread_key,
            &execution.execution_id,
            transcript::MAX_ENTRIES,
        )
        .await?;
        let more_exist = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= transcript::MAX_ENTRIES;
        Ok(Continuity {
            agent_thread_id: None,
            transcript: transcript::build(&rows, transcript::BUDGET_BYTES, more_exist),
        })
    }
}

/// A timer that ticks every `period`, first after one period, never in bursts.
fn timer(period: Duration) -> Interval {
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

/// How a failure reaches the machine: a database or queue error as such (the turn is
/// handed back), a sandbox one as a sandbox that could not be reached.
fn failed(err: DispatchError) -> Input {
    if err.is_transient() {
        Input::StoreFailed(err.to_string())
    } else {
        Input::SandboxCouldNotStart(err.to_string())
    }
}

/// The result of getting a sandbox, as the machine's input.
fn sandbox_ready(result: Result<SandboxId, DispatchError>) -> Input {
    match result {
        Ok(id) => Input::SandboxReady(id),
        Err(err) => failed(err),
    }
}

/// What the backend's answer says about a sandbox (an unanswered question: gone).
fn sandbox_state(status: Result<SandboxStatus, SandboxError>) -> SandboxState {
    match status {
        Ok(SandboxStatus::Pending | SandboxStatus::Running) => SandboxState::Alive,
        Ok(SandboxStatus::Exited { code, detail }) => SandboxState::Exited { code, detail },
        Ok(SandboxStatus::Gone { detail }) => SandboxState::Gone { detail },
        Err(err) => SandboxState::Gone {
            detail: err.to_string(),
        },
    }
}

/// One stdout line of the sandbox, as the machine sees it.
fn sandbox_line(execution_id: &str, line: &str) -> SandboxLine {
    let output = match SandboxOutput::parse(line) {
        Ok(output) => output,
        Err(err) => {
            return SandboxLine::Unreadable {
                error: err.to_string(),
                line: line.to_owned(),
            }
        }
    };
    if output.execution_id != execution_id {
        return SandboxLine::OtherExecution;
    }
    if output.event == HarnessEvent::TurnUnknown {
        return SandboxLine::TurnUnknown;
    }
    SandboxLine::Event {
        seq: output.seq,
        signal: signal(&output.event),
        stored: serde_json::to_value(&output).unwrap_or(Value::Null),
    }
}

/// What a harness event means to the turn.
fn signal(event: &HarnessEvent) -> HarnessSignal {
    match event {
        HarnessEvent::AssistantDelta { .. }
        | HarnessEvent::AssistantMessage { .. }
        | HarnessEvent::ToolCall { .. }
        | HarnessEvent::ToolResult { .. }
        | HarnessEvent::Command { .. } => HarnessSignal::ModelOutput,
        HarnessEvent::Error { kind, message } => HarnessSignal::Error {
            kind: kind.clone(),
            message: message.clone(),
        },
        HarnessEvent::TurnDone {
            status,
            result_text,
            agent_thread_id,
            error,
        } => HarnessSignal::TurnDone(TurnEnd {
            ok: *status == TurnStatus::Ok,
            result_text: result_text.clone(),
            agent_thread_id: agent_thread_id.clone(),
            error: error.clone(),
        }),
        HarnessEvent::TurnStarted { .. }
        | HarnessEvent::Usage { .. }
        | HarnessEvent::Heartbeat
        | HarnessEvent::TurnUnknown => HarnessSignal::Other,
    }
}

/// Whether a turn resumes the harness's own session or carries the thread's transcript.
#[derive(Debug, Default)]
struct Continuity {
    /// The harness session to resume: only ever the session of this very sandbox.
    agent_thread_id: Option<String>,
    /// The thread's earlier conversation, for a sandbox that did not run its previous turn.
    transcript: Option<String>,
}

/// What a turn line carries besides the execution's own messages.
struct TurnContext {
    continuity: Continuity,
    workspace: Option<Workspace>,
    instructions: Option<String>,
    env: BTreeMap<String, String>,
}

fn turn_line(
    execution: &ClaimedExecution,
    messages: &[TurnMessageRow],
    context: TurnContext,
) -> String {
    let content: Vec<MessagePart> = context
        .continuity
        .transcript
        .map(MessagePart::text)
        .into_iter()
        .chain(
            messages
                .iter()
                .flat_map(|message| &message.parts)
                .map(MessagePart::for_turn),
        )
        .collect();
    SandboxInput::User {
        message: TurnMessage {
            role: "user".into(),
            content,
        },
        thread_key: execution.thread_key.clone(),
        execution_id: execution.execution_id.clone(),
        agent_thread_id: context.continuity.agent_thread_id,
        env: context.env,
        workspace: context.workspace,
        instructions: context.instructions,
    }
    .to_line()
}

/// The thread's workspace: its repository (else the deployment's default), worked on in
/// the branch of its assignment generation. `Err` names a stored repository that no longer
/// parses.
fn workspace(
    execution: &ClaimedExecution,
    default_repo: Option<&RepoRef>,
) -> Result<Option<Workspace>, String> {
    let repo = match execution.repo.as_deref() {
        Some(raw) => RepoRef::parse(raw)
            .map_err(|err| format!("the thread's repository {raw:?} is invalid: {err}"))?,
        None => match default_repo {
            Some(repo) => repo.clone(),
            None => return Ok(None),
        },
    };
    let generation = u64::try_from(execution.assignment_generation).unwrap_or(1);
    Ok(Some(Workspace {
        repo: repo.as_str().to_owned(),
        clone_url: repo.clone_url(),
        branch: branch_name(&execution.thread_key, generation),
    }))
}

/// The thread's own instructions (`agents_md_override` from spawn), if it has any.
fn instructions(execution: &ClaimedExecution) -> Option<String> {
    execution
        .agents_md_override
        .clone()
        .filter(|text| !text.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(repo: Option<&str>, agents_md_override: Option<&str>) -> ClaimedExecution {
        ClaimedExecution {
            execution_id: "exe_0123456789abcdef".into(),
            thread_key: "slack:T1:C1:1700000000.000100".into(),
            harness: "echo".into(),
            status: centaur_core::ExecutionStatus::Running,
            worker_id: "w1".into(),
            attempt: 1,
            sandbox_id: None,
            turn_sent_at: None,
            created_at: chrono::Utc::now(),
            claimed_at: None,
            hard_deadline_at: None,
            delivery: Value::Null,
            assignment_generation: 2,
            repo: repo.map(str::to_owned),
            agents_md_override: agents_md_override.map(str::to_owned),
            queue_receipt: None,
            session_sandbox_id: None,
            session_harness: None,
            session_agent_thread_id: None,
            previous_sandbox_id: None,
            started_in: None,
            start_messages: None,
        }
    }

    fn parse(line: &str) -> SandboxInput {
        SandboxInput::parse(line).unwrap_or_else(|err| panic!("{err}: {line}"))
    }

    fn default_repo() -> RepoRef {
        RepoRef::parse("acme/default").unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn the_workspace_is_the_threads_repo_on_its_generations_branch() {
        let workspace = workspace(&execution(Some("acme/api"), None), Some(&default_repo()))
            .unwrap_or_else(|err| panic!("{err}"))
            .unwrap_or_else(|| panic!("a workspace"));
        assert_eq!(workspace.repo, "acme/api");
        assert_eq!(workspace.clone_url, "https://github.com/acme/api.git");
        assert_eq!(
            workspace.branch,
            branch_name("slack:T1:C1:1700000000.000100", 2)
        );
        assert!(workspace.branch.ends_with("-2"), "{}", workspace.branch);
    }

    #[test]
    fn a_thread_without_a_repo_gets_the_default_or_none() {
        let fallback = workspace(&execution(None, None), Some(&default_repo()))
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(fallback.map(|w| w.repo), Some("acme/default".to_owned()));
        let none = workspace(&execution(None, None), None).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(none, None);
        let broken = workspace(&execution(Some("git@github.com:a/b"), None), None);
        assert!(
            broken.is_err_and(|err| err.contains("git@github.com:a/b")),
            "a stored repo that no longer parses is named"
        );
    }

    #[test]
    fn the_turn_line_leads_with_the_transcript_and_carries_workspace_and_instructions() {
        let execution = execution(Some("https://git.example.com/team/svc"), Some("Be terse."));
        let messages = [TurnMessageRow {
            id: "msg_1".into(),
            role: "user".into(),
            parts: vec![MessagePart::text("new question")],
        }];
        let context = TurnContext {
            continuity: Continuity {
                agent_thread_id: None,
                transcript: Some("[Earlier conversation in this thread] …".into()),
            },
            workspace: workspace(&execution, None).unwrap_or_else(|err| panic!("{err}")),
            instructions: instructions(&execution),
            env: BTreeMap::new(),
        };
        let SandboxInput::User {
            message,
            agent_thread_id,
            workspace,
            instructions,
            ..
        } = parse(&turn_line(&execution, &messages, context))
        else {
            panic!("not a user turn");
        };
        let texts: Vec<_> = message
            .content
            .iter()
            .filter_map(|b| b.text.as_deref())
            .collect();
        assert_eq!(
            texts,
            ["[Earlier conversation in this thread] …", "new question"]
        );
        assert_eq!(agent_thread_id, None);
        let workspace = workspace.unwrap_or_else(|| panic!("a workspace"));
        assert_eq!(workspace.clone_url, "https://git.example.com/team/svc.git");
        assert_eq!(instructions.as_deref(), Some("Be terse."));
    }

    /// A turn line of `messages` with no transcript, workspace, instructions or env.
    fn plain_turn_line(messages: &[TurnMessageRow]) -> String {
        let context = TurnContext {
            continuity: Continuity::default(),
            workspace: None,
            instructions: None,
            env: BTreeMap::new(),
        };
        turn_line(&execution(None, None), messages, context)
    }

    /// A message row as `dispatch::start_turn` reads it from its `jsonb_agg`.
    fn stored_row(parts: Value) -> TurnMessageRow {
        serde_json::from_value(json!({"id": "msg_1", "role": "user", "parts": parts}))
            .unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn api_parts_are_stored_as_given_and_reach_the_sandbox_line_as_type_and_text() {
        let body = json!({
            "thread_key": "t1",
            "assignment_generation": 1,
            "parts": [
                {"type": "text", "text": "look at this"},
                {"type": "image", "url": "https://example.com/a.png"},
                {"type": "text", "text": "ctx", "source": "slack_thread_context"},
            ],
        });
        let request: centaur_core::api::MessageRequest =
            serde_json::from_value(body.clone()).unwrap_or_else(|err| panic!("{err}"));
        let stored =
            serde_json::to_value(&request.message.parts).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            stored, body["parts"],
            "the stored jsonb is the body's parts"
        );
        let line = plain_turn_line(&[stored_row(stored)]);
        assert_eq!(
            line,
            concat!(
                r#"{"type":"user","message":{"role":"user","content":["#,
                r#"{"type":"text","text":"look at this"},{"type":"image"},"#,
                r#"{"type":"text","text":"ctx"}]},"#,
                r#""thread_key":"slack:T1:C1:1700000000.000100","#,
                r#""execution_id":"exe_0123456789abcdef"}"#
            )
        );
        let SandboxInput::User { message, .. } = parse(&line) else {
            panic!("not a user turn");
        };
        assert_eq!(message.text(), "look at this\n\nctx");
    }

    #[test]
    fn odd_stored_parts_still_make_a_turn_line() {
        let line = plain_turn_line(&[stored_row(json!([{"text": "old row"}, 5]))]);
        let SandboxInput::User { message, .. } = parse(&line) else {
            panic!("not a user turn");
        };
        assert_eq!(
            message.content,
            [MessagePart::text("old row"), MessagePart::text("5")]
        );
    }

    #[test]
    fn a_resumed_turn_carries_the_session_id_and_no_transcript() {
        let execution = execution(None, Some("  "));
        let context = TurnContext {
            continuity: Continuity {
                agent_thread_id: Some("thread-123".into()),
                transcript: None,
            },
            workspace: None,
            instructions: instructions(&execution),
            env: BTreeMap::new(),
        };
        let messages = [TurnMessageRow {
            id: "msg_1".into(),
            role: "user".into(),
            parts: vec![MessagePart::text("again")],
        }];
        let SandboxInput::User {
            message,
            agent_thread_id,
            workspace,
            instructions,
            ..
        } = parse(&turn_line(&execution, &messages, context))
        else {
            panic!("not a user turn");
        };
        assert_eq!(message.text(), "again");
        assert_eq!(agent_thread_id.as_deref(), Some("thread-123"));
        assert_eq!(workspace, None);
        assert_eq!(instructions, None, "blank instructions are none");
    }

    #[test]
    fn sandbox_lines_become_the_machines_inputs() {
        let id = "exe_0123456789abcdef";
        let done = SandboxOutput {
            execution_id: id.into(),
            seq: 3,
            event: HarnessEvent::TurnDone {
                status: TurnStatus::Error,
                result_text: None,
                agent_thread_id: Some("s-1".into()),
                error: Some("boom".into()),
            },
        };
        let SandboxLine::Event {
            seq,
            signal,
            stored,
        } = sandbox_line(id, &done.to_line())
        else {
            panic!("not an event");
        };
        assert_eq!(seq, 3);
        assert_eq!(
            signal,
            HarnessSignal::TurnDone(TurnEnd {
                ok: false,
                result_text: None,
                agent_thread_id: Some("s-1".into()),
                error: Some("boom".into()),
            })
        );
        assert_eq!(stored["type"], "turn.done");
        assert_eq!(stored["seq"], 3);
        let unknown = SandboxOutput {
            execution_id: id.into(),
            seq: 0,
            event: HarnessEvent::TurnUnknown,
        };
        assert_eq!(
            sandbox_line(id, &unknown.to_line()),
            SandboxLine::TurnUnknown
        );
        assert_eq!(
            sandbox_line("exe_00000000000000ff", &unknown.to_line()),
            SandboxLine::OtherExecution
        );
        assert!(matches!(
            sandbox_line(id, "not json"),
            SandboxLine::Unreadable { line, .. } if line == "not json"
        ));
    }

    #[test]
    fn model_output_errors_and_the_rest_are_told_apart() {
        let output = [
            HarnessEvent::AssistantDelta { text: "a".into() },
            HarnessEvent::AssistantMessage { text: "a".into() },
            HarnessEvent::ToolCall {
                id: None,
                name: "shell".into(),
                input: Value::Null,
            },
            HarnessEvent::ToolResult {
                id: None,
                output: Value::Null,
                is_error: false,
            },
            HarnessEvent::Command {
                command: "ls".into(),
                exit_code: Some(0),
                output: None,
            },
        ];
        for event in output {
            assert_eq!(signal(&event), HarnessSignal::ModelOutput, "{event:?}");
        }
        assert_eq!(
            signal(&HarnessEvent::Error {
                kind: "auth".into(),
                message: "401".into()
            }),
            HarnessSignal::Error {
                kind: "auth".into(),
                message: "401".into()
            }
        );
        for event in [
            HarnessEvent::Heartbeat,
            HarnessEvent::Usage {
                input_tokens: 1,
                output_tokens: 1,
            },
            HarnessEvent::TurnStarted {
                harness: "codex".into(),
                cli_present: Some(true),
                cli_version: None,
            },
        ] {
            assert_eq!(signal(&event), HarnessSignal::Other, "{event:?}");
        }
    }

    #[test]
    fn a_sandbox_the_backend_cannot_answer_for_is_gone() {
        assert_eq!(
            sandbox_state(Ok(SandboxStatus::Pending)),
            SandboxState::Alive
        );
        assert_eq!(
            sandbox_state(Ok(SandboxStatus::Exited {
                code: Some(1),
                detail: "exit".into()
            })),
            SandboxState::Exited {
                code: Some(1),
                detail: "exit".into()
            }
        );
        assert_eq!(
            sandbox_state(Err(SandboxError::Backend("pods \"x\" not found".into()))),
            SandboxState::Gone {
                detail: "sandbox backend error: pods \"x\" not found".into()
            }
        );
    }

    #[test]
    fn a_database_error_reaches_the_machine_as_such_and_a_sandbox_error_as_a_start_failure() {
        let db = DispatchError::Store(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert!(matches!(failed(db), Input::StoreFailed(text) if text.contains("pool timed out")));
        let backend = DispatchError::Sandbox(SandboxError::StartFailed {
            id: "sbx-a".into(),
            reason: "image pull".into(),
        });
        assert!(matches!(
            sandbox_ready(Err(backend)),
            Input::SandboxCouldNotStart(text) if text.contains("image pull")
        ));
    }
}
