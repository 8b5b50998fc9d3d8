//! Runs one claimed execution: gets the sandbox, sends (or resumes) the turn, stores the
//! harness's events, keeps the lease, watches cancel and deadlines, and finishes the
//! execution exactly once.

use crate::start_failure::{self, StartWatch, Verdict};
use crate::Dispatcher;
use crate::{sandboxes, transcript};
use centaur_core::{branch_name, ExecutionId, Harness, RepoRef, SandboxId, TerminalReason};
use centaur_harness::{
    ContentBlock, HarnessEvent, SandboxInput, SandboxOutput, TurnMessage, TurnStatus, Workspace,
};
use centaur_sandbox::{Attachment, SandboxStatus};
use centaur_store::dispatch::{self, ClaimedExecution, Finish, TurnMessageRow};
use centaur_store::start_retries::{self, StartRetry};
use centaur_store::{history, sessions, StoreError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How long a cancelled turn may take to stop after `interrupt` before its sandbox is stopped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Harness events are stored in batches at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// ... or when this many are pending.
const FLUSH_AT: usize = 64;
/// A message for an execution still waiting behind an older one comes back after this.
pub const THREAD_BUSY_DELAY: Duration = Duration::from_secs(2);

/// How driving an execution ended.
enum Outcome {
    /// Finish the execution.
    Finished(Finish),
    /// The stream ended but the sandbox lives: hand the execution back for re-attach.
    HandBack(String),
    /// Another worker holds the lease now: touch nothing.
    LeaseLost,
    /// The harness failed to start (`<step>: <cause>`) before any model output: retried
    /// once in a fresh sandbox, then the execution fails (see `start_failure`).
    StartFailed(String),
}

/// Drives `execution` to its end; `receipt` is the queue message that woke it (none when
/// recovered from an expired lease). Always releases the in-process marker and the slot.
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
        let started = Instant::now();
        metrics::gauge!("centaur_dispatcher_running_executions").increment(1.0);
        let mut driver = Driver::new(&dispatcher, &execution, receipt.clone());
        let outcome = driver.drive().await;
        driver.settle(outcome, started).await;
        metrics::gauge!("centaur_dispatcher_running_executions").decrement(1.0);
    }
    .instrument(span)
    .await;
    dispatcher.end(&execution.execution_id);
}

struct Driver<'a> {
    dispatcher: &'a Dispatcher,
    execution: &'a ClaimedExecution,
    receipt: Option<String>,
    harness: String,
    sandbox_id: Option<SandboxId>,
    stored_seq: u64,
    event_count: u64,
    pending: Vec<Value>,
    last_error: Option<String>,
    cancel_sent_at: Option<Instant>,
    /// What the current attempt of the turn showed (did the harness start?).
    start_watch: StartWatch,
    /// The recorded start retry, once the turn was sent to a fresh sandbox.
    start_retry: Option<StartRetry>,
}

fn finish(reason: TerminalReason, error_text: Option<String>) -> Outcome {
    Outcome::Finished(Finish {
        reason,
        result_text: None,
        error_text,
        agent_thread_id: None,
        summary: Value::Null,
        delivery_payload: Value::Null,
    })
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
    let transcript = context.continuity.transcript.map(|text| ContentBlock {
        kind: "text".into(),
        text: Some(text),
    });
    let content: Vec<ContentBlock> = transcript
        .into_iter()
        .chain(
            messages
                .iter()
                .flat_map(|message| message.parts.as_array().cloned().unwrap_or_default())
                .map(|part| ContentBlock {
                    kind: part["type"].as_str().unwrap_or("text").to_owned(),
                    text: part["text"].as_str().map(str::to_owned),
                }),
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

impl<'a> Driver<'a> {
    fn new(
        dispatcher: &'a Dispatcher,
        execution: &'a ClaimedExecution,
        receipt: Option<String>,
    ) -> Self {
        Self {
            dispatcher,
            execution,
            receipt,
            harness: execution.harness.clone(),
            sandbox_id: execution.sandbox_id.clone().map(SandboxId::from_stored),
            stored_seq: 0,
            event_count: 0,
            pending: Vec::new(),
            last_error: None,
            cancel_sent_at: None,
            start_watch: StartWatch::default(),
            start_retry: None,
        }
    }

    async fn drive(&mut self) -> Outcome {
        let Ok(harness) = self.execution.harness.parse::<Harness>() else {
            return finish(
                TerminalReason::SandboxStartFailed,
                Some(format!(
                    "sandbox_start_failed: unknown harness '{}'",
                    self.execution.harness
                )),
            );
        };
        let mut outcome = self.first_attempt(harness).await;
        // A harness that failed to start gets one more attempt, in a fresh sandbox.
        while let Outcome::StartFailed(failure) = outcome {
            outcome = match start_failure::verdict(&failure, self.start_retry.is_some()) {
                Verdict::Retry => self.retry_in_fresh_sandbox(harness, &failure).await,
                Verdict::GiveUp { error_text } => self.give_up(error_text).await,
            };
        }
        outcome
    }

    /// Starts the turn, or continues it after a reclaim (re-attach, or a start retry that
    /// was decided but not sent yet).
    async fn first_attempt(&mut self, harness: Harness) -> Outcome {
        let attachment = if self.execution.turn_was_sent() {
            match start_retries::load(&self.dispatcher.pool, &self.execution.execution_id).await {
                Ok(retry) => self.start_retry = retry,
                Err(err) => {
                    return Outcome::HandBack(format!("could not read the start retry: {err}"))
                }
            }
            if self.retry_not_sent_yet() {
                return self.run_retry(harness).await;
            }
            match self.reattach().await {
                Ok(attachment) => attachment,
                Err(outcome) => return outcome,
            }
        } else {
            match self.start_turn(harness).await {
                Ok(attachment) => attachment,
                Err(outcome) => return outcome,
            }
        };
        self.read(attachment).await
    }

    /// True when a start retry was recorded but the turn never reached its fresh sandbox.
    fn retry_not_sent_yet(&self) -> bool {
        self.start_retry.as_ref().is_some_and(|retry| {
            self.sandbox_id.as_ref().map(SandboxId::as_str) != Some(retry.sandbox_id.as_str())
        })
    }

    /// Records the start retry (at most one per execution, fenced by the lease) and runs it.
    async fn retry_in_fresh_sandbox(&mut self, harness: Harness, failure: &str) -> Outcome {
        let Some(execution_id) = ExecutionId::parse(&self.execution.execution_id) else {
            return finish(
                TerminalReason::SandboxStartFailed,
                Some(start_failure::error_text(failure)),
            );
        };
        let fresh = start_failure::retry_sandbox_id(&execution_id);
        match start_retries::record(
            &self.dispatcher.pool,
            &self.execution.lease(),
            fresh.as_str(),
            failure,
        )
        .await
        {
            Ok(Some(retry)) => self.start_retry = Some(retry),
            Ok(None) => {
                tracing::warn!("lost the lease before retrying the start");
                return Outcome::LeaseLost;
            }
            Err(err) => {
                return Outcome::HandBack(format!("could not record the start retry: {err}"))
            }
        }
        tracing::warn!(
            first_failure = failure,
            sandbox_id = %fresh,
            "the harness failed to start; retrying the turn once in a fresh sandbox"
        );
        self.run_retry(harness).await
    }

    /// Sends the turn to the recorded retry's fresh sandbox (created, or adopted after a
    /// crash) after discarding the sandbox that failed, and reads it.
    async fn run_retry(&mut self, harness: Harness) -> Outcome {
        let Some(retry) = self.start_retry.clone() else {
            return finish(
                TerminalReason::SandboxStartFailed,
                Some("sandbox_start_failed: no start retry was recorded".into()),
            );
        };
        let fresh = SandboxId::from_stored(retry.sandbox_id.clone());
        if let Some(failed) = self.sandbox_id.clone().filter(|id| *id != fresh) {
            self.discard_sandbox(&failed, "failed").await;
        }
        self.begin_attempt(fresh.clone());
        let id = match sandboxes::create_for_thread(
            self.dispatcher,
            &self.execution.thread_key,
            fresh,
            harness,
        )
        .await
        {
            Ok(id) => id,
            Err(reason) => {
                return finish(
                    TerminalReason::SandboxStartFailed,
                    Some(format!("sandbox_start_failed: {reason}")),
                )
            }
        };
        match self.open(harness, id, Some(&retry.first_failure)).await {
            Ok(attachment) => self.read(attachment).await,
            Err(outcome) => outcome,
        }
    }

    /// Forgets what an earlier attempt showed: the next events come from sandbox `id`.
    fn begin_attempt(&mut self, id: SandboxId) {
        self.sandbox_id = Some(id);
        self.stored_seq = 0;
        self.last_error = None;
        self.start_watch = StartWatch::default();
    }

    /// The retried start failed too: the sandbox is discarded and the execution fails.
    async fn give_up(&mut self, error_text: String) -> Outcome {
        tracing::warn!(%error_text, "the harness failed to start again; the turn fails");
        if let Some(id) = self.sandbox_id.clone() {
            self.discard_sandbox(&id, "failed").await;
        }
        finish(TerminalReason::SandboxStartFailed, Some(error_text))
    }

    /// Stops a sandbox and ends its session row as `state` (best effort).
    async fn discard_sandbox(&self, id: &SandboxId, state: &str) {
        if let Err(err) = self.dispatcher.backend.stop(id).await {
            tracing::warn!(sandbox_id = %id, %err, "could not stop the sandbox; orphan collection will");
        }
        if let Err(err) = sessions::end(
            &self.dispatcher.pool,
            &self.execution.thread_key,
            id.as_str(),
            state,
        )
        .await
        {
            tracing::warn!(sandbox_id = %id, %err, "could not end the sandbox's session");
        }
    }

    /// Re-attach after a crash: the sandbox replays what we missed (or says it never got
    /// the turn, which `read` answers by sending it).
    async fn reattach(&mut self) -> Result<Attachment, Outcome> {
        let backend = &self.dispatcher.backend;
        let Some(id) = self.sandbox_id.clone() else {
            return Err(finish(
                TerminalReason::SandboxLost,
                Some("sandbox_lost: no sandbox recorded".into()),
            ));
        };
        self.read_back_attempt().await?;
        let status = backend
            .status(&id)
            .await
            .unwrap_or_else(|err| SandboxStatus::Gone {
                detail: err.to_string(),
            });
        if !status.is_alive() {
            return Err(self.lost(&id, &status).await);
        }
        let mut attachment = match backend.attach(&id).await {
            Ok(attachment) => attachment,
            Err(err) => {
                return Err(self
                    .lost(
                        &id,
                        &SandboxStatus::Gone {
                            detail: err.to_string(),
                        },
                    )
                    .await)
            }
        };
        let resume = SandboxInput::Resume {
            execution_id: self.execution.execution_id.clone(),
            after_seq: self.stored_seq,
        };
        if let Err(err) = attachment.input.send_line(&resume.to_line()).await {
            return Err(Outcome::HandBack(format!("could not resume: {err}")));
        }
        tracing::info!(sandbox_id = %id, after_seq = self.stored_seq, "re-attached to the sandbox");
        Ok(attachment)
    }

    /// Reads back what was stored of the current attempt: the `seq` to resume after, what
    /// the start watch needs, and the end of the turn if it was stored before a crash (then
    /// the turn is concluded from it: the sandbox would have nothing left to replay).
    async fn read_back_attempt(&mut self) -> Result<(), Outcome> {
        let after_event_id = self.start_retry.as_ref().map_or(0, |retry| retry.event_id);
        let record = start_retries::attempt_record(
            &self.dispatcher.pool,
            &self.execution.execution_id,
            after_event_id,
        )
        .await
        .map_err(|err| Outcome::HandBack(format!("could not read the stored events: {err}")))?;
        self.stored_seq = record.max_seq;
        let mut done = None;
        for stored in record.events {
            let Ok(output) = serde_json::from_value::<SandboxOutput>(stored) else {
                continue;
            };
            match output.event {
                HarnessEvent::TurnDone { .. } => done = Some(output.event),
                event => self.observe(&event),
            }
        }
        if let Some(HarnessEvent::TurnDone {
            status,
            result_text,
            agent_thread_id,
            error,
        }) = done
        {
            tracing::info!(
                "the turn had ended before the re-attach; finishing it from its stored end"
            );
            return Err(self.turn_done(status, result_text, agent_thread_id, error));
        }
        Ok(())
    }

    async fn start_turn(&mut self, harness: Harness) -> Result<Attachment, Outcome> {
        let dispatcher = self.dispatcher;
        let execution_id = ExecutionId::parse(&self.execution.execution_id).ok_or_else(|| {
            finish(
                TerminalReason::SandboxStartFailed,
                Some("malformed execution id".into()),
            )
        })?;
        let id = sandboxes::acquire(
            dispatcher,
            &self.execution.thread_key,
            &execution_id,
            harness,
        )
        .await
        .map_err(|reason| {
            finish(
                TerminalReason::SandboxStartFailed,
                Some(format!("sandbox_start_failed: {reason}")),
            )
        })?;
        self.open(harness, id, None).await
    }

    /// Records the start in sandbox `id` (`retry_of`: the first attempt's start failure),
    /// attaches and sends the turn.
    async fn open(
        &mut self,
        harness: Harness,
        id: SandboxId,
        retry_of: Option<&str>,
    ) -> Result<Attachment, Outcome> {
        let dispatcher = self.dispatcher;
        self.sandbox_id = Some(id.clone());
        let mut started = json!({
            "harness": harness.as_str(),
            "sandbox_id": id.as_str(),
            "queue_delay_ms": self.execution.queue_delay_ms(),
            "attempt": self.execution.attempt,
        });
        if let Some(first_failure) = retry_of {
            started["start_retry"] = json!({ "first_failure": first_failure });
        }
        match dispatch::record_start(&dispatcher.pool, &self.execution.lease(), &started).await {
            Ok(true) => {}
            Ok(false) => return Err(Outcome::LeaseLost),
            Err(err) => {
                return Err(Outcome::HandBack(format!(
                    "could not record the start: {err}"
                )))
            }
        }
        let mut attachment = dispatcher.backend.attach(&id).await.map_err(|err| {
            finish(
                TerminalReason::SandboxStartFailed,
                Some(format!("sandbox_start_failed: {err}")),
            )
        })?;
        self.send_turn(&mut attachment, &id).await?;
        Ok(attachment)
    }

    async fn send_turn(
        &mut self,
        attachment: &mut Attachment,
        id: &SandboxId,
    ) -> Result<(), Outcome> {
        let dispatcher = self.dispatcher;
        let execution = self.execution;
        let workspace = workspace(execution, dispatcher.config.workspace.default_repo.as_ref())
            .map_err(|reason| {
                finish(
                    TerminalReason::SandboxStartFailed,
                    Some(format!("sandbox_start_failed: {reason}")),
                )
            })?;
        let continuity = self.continuity(id).await.map_err(|err| {
            Outcome::HandBack(format!("could not read the thread's history: {err}"))
        })?;
        let messages =
            dispatch::take_turn_messages(&dispatcher.pool, &execution.lease(), id.as_str())
                .await
                .map_err(|err| {
                    Outcome::HandBack(format!("could not hand the messages to the turn: {err}"))
                })?
                .ok_or(Outcome::LeaseLost)?;
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
        attachment
            .input
            .send_line(&line)
            .await
            .map_err(|err| Outcome::HandBack(format!("could not write the turn: {err}")))
    }

    /// A turn in the sandbox that ran the thread's previous turn resumes the harness's own
    /// session; any other sandbox (or one with no session to resume) gets the thread's
    /// transcript and never a session id.
    async fn continuity(&self, id: &SandboxId) -> Result<Continuity, StoreError> {
        let pool = &self.dispatcher.pool;
        let execution = self.execution;
        let previous =
            history::previous_turn_sandbox(pool, &execution.thread_key, &execution.execution_id)
                .await?;
        if previous.as_deref() == Some(id.as_str()) {
            let session =
                sessions::resumable_agent_thread(pool, &execution.thread_key, id.as_str()).await?;
            if session.is_some() {
                return Ok(Continuity {
                    agent_thread_id: session,
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

    async fn lost(&self, id: &SandboxId, status: &SandboxStatus) -> Outcome {
        let detail = match status {
            SandboxStatus::Exited {
                code: Some(code),
                detail,
            } => format!("exited with code {code}: {detail}"),
            SandboxStatus::Exited { code: None, detail } | SandboxStatus::Gone { detail } => {
                detail.clone()
            }
            other => format!("{other:?}"),
        };
        let _ = sessions::end(
            &self.dispatcher.pool,
            &self.execution.thread_key,
            id.as_str(),
            "lost",
        )
        .await;
        finish(
            TerminalReason::SandboxLost,
            Some(format!(
                "sandbox_lost: sandbox {id} is gone mid-turn ({detail})"
            )),
        )
    }

    async fn flush(&mut self) -> Result<(), Outcome> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        metrics::counter!("centaur_harness_events_total", "harness" => self.harness.clone())
            .increment(batch.len() as u64);
        match dispatch::append_harness_events(
            &self.dispatcher.pool,
            &self.execution.lease(),
            self.dispatcher.config.silence_timeout,
            &batch,
        )
        .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Outcome::LeaseLost),
            Err(err) => Err(Outcome::HandBack(format!(
                "could not store harness events: {err}"
            ))),
        }
    }

    /// Reads events until the turn ends, the stream ends, or the lease, cancel or a
    /// deadline ends the execution.
    async fn read(&mut self, mut attachment: Attachment) -> Outcome {
        let config = &self.dispatcher.config;
        let mut flush_timer = tokio::time::interval(FLUSH_EVERY);
        let mut heartbeat =
            tokio::time::interval((config.lease / 3).max(Duration::from_millis(200)));
        heartbeat.tick().await;
        loop {
            tokio::select! {
                line = attachment.output.next() => {
                    let Some(Ok(line)) = line else {
                        if let Err(outcome) = self.flush().await {
                            return outcome;
                        }
                        return self.stream_ended().await;
                    };
                    if let Some(outcome) = self.on_line(&line, &mut attachment).await {
                        return outcome;
                    }
                    if self.pending.len() >= FLUSH_AT {
                        if let Err(outcome) = self.flush().await {
                            return outcome;
                        }
                    }
                }
                _ = flush_timer.tick() => {
                    if let Err(outcome) = self.flush().await {
                        return outcome;
                    }
                }
                _ = heartbeat.tick() => {
                    if let Some(outcome) = self.on_heartbeat(&mut attachment).await {
                        return outcome;
                    }
                }
            }
        }
    }

    async fn on_line(&mut self, line: &str, attachment: &mut Attachment) -> Option<Outcome> {
        let output = match SandboxOutput::parse(line) {
            Ok(output) => output,
            Err(err) => {
                self.pending.push(json!({
                    "type": "error", "kind": "malformed_output",
                    "message": format!("{err}"), "line": line.chars().take(2000).collect::<String>(),
                }));
                return None;
            }
        };
        if output.execution_id != self.execution.execution_id {
            return None;
        }
        if output.event == HarnessEvent::TurnUnknown {
            let id = self.sandbox_id.clone()?;
            tracing::info!("the sandbox never received the turn; sending it now");
            return self.send_turn(attachment, &id).await.err();
        }
        if output.seq <= self.stored_seq {
            return None;
        }
        self.stored_seq = output.seq;
        self.event_count += 1;
        self.observe(&output.event);
        let done = match &output.event {
            HarnessEvent::TurnDone {
                status,
                result_text,
                agent_thread_id,
                error,
            } => Some((
                *status,
                result_text.clone(),
                agent_thread_id.clone(),
                error.clone(),
            )),
            _ => None,
        };
        self.pending
            .push(serde_json::to_value(&output).unwrap_or(Value::Null));
        let (status, result_text, agent_thread_id, error) = done?;
        if let Err(outcome) = self.flush().await {
            return Some(outcome);
        }
        Some(self.turn_done(status, result_text, agent_thread_id, error))
    }

    /// Takes an event of the current attempt into account (last error, start watch).
    fn observe(&mut self, event: &HarnessEvent) {
        if let HarnessEvent::Error { message, .. } = event {
            self.last_error = Some(message.clone());
        }
        self.start_watch.observe(event);
    }

    /// How the end of the turn ends the execution.
    fn turn_done(
        &self,
        status: TurnStatus,
        result_text: Option<String>,
        agent_thread_id: Option<String>,
        error: Option<String>,
    ) -> Outcome {
        let cancelled = self.cancel_sent_at.is_some();
        if status == TurnStatus::Error && !cancelled {
            if let Some(failure) = self.start_watch.start_failure() {
                return Outcome::StartFailed(failure.to_owned());
            }
        }
        Outcome::Finished(match (status, cancelled) {
            (_, true) => Finish {
                reason: TerminalReason::Cancelled,
                result_text: None,
                error_text: None,
                agent_thread_id,
                summary: Value::Null,
                delivery_payload: Value::Null,
            },
            (TurnStatus::Ok, false) => Finish {
                reason: TerminalReason::Completed,
                result_text: Some(result_text.unwrap_or_default()),
                error_text: None,
                agent_thread_id,
                summary: Value::Null,
                delivery_payload: Value::Null,
            },
            (TurnStatus::Error, false) => Finish {
                reason: TerminalReason::HarnessError,
                result_text,
                error_text: Some(format!(
                    "harness_error: {} reported: {}",
                    self.harness,
                    error
                        .or_else(|| self.last_error.clone())
                        .unwrap_or_else(|| "unknown error".into())
                )),
                agent_thread_id,
                summary: Value::Null,
                delivery_payload: Value::Null,
            },
        })
    }

    async fn on_heartbeat(&mut self, attachment: &mut Attachment) -> Option<Outcome> {
        let dispatcher = self.dispatcher;
        let config = &dispatcher.config;
        let beat = match dispatch::heartbeat(
            &dispatcher.pool,
            &self.execution.lease(),
            config.lease,
        )
        .await
        {
            Ok(Some(beat)) => beat,
            Ok(None) => {
                tracing::warn!("lost the lease; another dispatcher owns this execution now");
                return Some(Outcome::LeaseLost);
            }
            Err(err) => {
                tracing::warn!(%err, "heartbeat failed; will retry");
                return None;
            }
        };
        if let Some(receipt) = &self.receipt {
            if let Err(err) = dispatcher
                .queue
                .extend(receipt, config.queue_visibility)
                .await
            {
                tracing::warn!(%err, "could not extend the queue message visibility");
            }
        }
        if beat.cancel_requested {
            match self.cancel_sent_at {
                None => {
                    tracing::info!("cancel requested; interrupting the turn");
                    let interrupt = SandboxInput::Interrupt {
                        execution_id: self.execution.execution_id.clone(),
                    };
                    let _ = attachment.input.send_line(&interrupt.to_line()).await;
                    self.cancel_sent_at = Some(Instant::now());
                }
                Some(sent) if sent.elapsed() > CANCEL_GRACE => {
                    if let Some(id) = &self.sandbox_id {
                        let _ = dispatcher.backend.stop(id).await;
                        let _ = sessions::end(
                            &dispatcher.pool,
                            &self.execution.thread_key,
                            id.as_str(),
                            "stopped",
                        )
                        .await;
                    }
                    return Some(finish(TerminalReason::Cancelled, None));
                }
                Some(_) => {}
            }
        }
        if beat.hard_exceeded {
            return Some(
                self.deadline(TerminalReason::HardDeadlineExceeded, config.hard_timeout)
                    .await,
            );
        }
        if beat.silence_exceeded {
            return Some(
                self.deadline(
                    TerminalReason::SilenceDeadlineExceeded,
                    config.silence_timeout,
                )
                .await,
            );
        }
        None
    }

    async fn deadline(&mut self, reason: TerminalReason, limit: Duration) -> Outcome {
        let _ = self.flush().await;
        if let Some(id) = &self.sandbox_id {
            let _ = self.dispatcher.backend.stop(id).await;
            let _ = sessions::end(
                &self.dispatcher.pool,
                &self.execution.thread_key,
                id.as_str(),
                "stopped",
            )
            .await;
        }
        let what = match reason {
            TerminalReason::HardDeadlineExceeded => "ran longer than the hard deadline",
            _ => "produced no output for longer than the silence timeout",
        };
        finish(
            reason,
            Some(format!(
                "{reason}: the turn {what} ({}s); the sandbox was stopped",
                limit.as_secs()
            )),
        )
    }

    async fn stream_ended(&mut self) -> Outcome {
        let Some(id) = self.sandbox_id.clone() else {
            return finish(
                TerminalReason::SandboxLost,
                Some("sandbox_lost: no sandbox".into()),
            );
        };
        // Give an exiting process a moment to be seen as exited.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = self
            .dispatcher
            .backend
            .status(&id)
            .await
            .unwrap_or_else(|err| SandboxStatus::Gone {
                detail: err.to_string(),
            });
        if status.is_alive() && self.cancel_sent_at.is_none() {
            return Outcome::HandBack(format!(
                "output stream of {id} closed while it is still alive"
            ));
        }
        if self.cancel_sent_at.is_some() {
            return finish(TerminalReason::Cancelled, None);
        }
        self.lost(&id, &status).await
    }

    /// Writes the outcome: finish (summary, outbox, session), hand back, or nothing.
    async fn settle(&mut self, outcome: Outcome, started: Instant) {
        let dispatcher = self.dispatcher;
        let execution = self.execution;
        let pool = &dispatcher.pool;
        let outcome = match outcome {
            // `drive` turns every start failure into a retry or a finish; never left over.
            Outcome::StartFailed(failure) => finish(
                TerminalReason::SandboxStartFailed,
                Some(start_failure::error_text(&failure)),
            ),
            other => other,
        };
        match outcome {
            Outcome::StartFailed(_) | Outcome::LeaseLost => return,
            Outcome::HandBack(why) => {
                tracing::warn!(%why, "handing the execution back for re-attach");
                if let Ok(true) = dispatch::hand_back(pool, &execution.lease(), &why).await {
                    self.requeue_self(Duration::from_secs(1)).await;
                }
                return;
            }
            Outcome::Finished(mut end) => {
                let status = end.reason.status();
                end.summary = json!({
                    "status": status.as_str(),
                    "terminal_reason": end.reason.as_str(),
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "harness_event_count": self.event_count,
                    "queue_delay_ms": execution.queue_delay_ms(),
                    "attempt": execution.attempt,
                    "sandbox_id": self.sandbox_id.as_ref().map(SandboxId::as_str),
                    "start_retried": self.start_retry.is_some(),
                });
                end.delivery_payload = centaur_core::delivery::payload(
                    &execution.execution_id,
                    end.reason,
                    end.result_text.as_deref(),
                );
                match dispatch::finish(pool, &execution.lease(), &end).await {
                    Ok(true) => {
                        metrics::counter!(
                            "centaur_executions_finished_total",
                            "harness" => self.harness.clone(),
                            "status" => status.as_str(),
                            "reason" => end.reason.as_str(),
                        )
                        .increment(1);
                        tracing::info!(
                            status = status.as_str(),
                            reason = end.reason.as_str(),
                            "execution finished"
                        );
                        if let (TerminalReason::Completed, Some(id)) =
                            (end.reason, &self.sandbox_id)
                        {
                            let _ = sessions::record_turn(
                                pool,
                                &execution.thread_key,
                                id.as_str(),
                                end.agent_thread_id.as_deref(),
                            )
                            .await;
                        }
                    }
                    Ok(false) => tracing::info!("execution was already finished elsewhere"),
                    Err(err) => {
                        tracing::error!(%err, "could not finish the execution; its lease will expire and it will be retried");
                        return;
                    }
                }
            }
        }
        if let Some(receipt) = &self.receipt {
            if let Err(err) = dispatcher.queue.delete(receipt).await {
                tracing::warn!(%err, "could not delete the queue message");
            }
        }
        self.wake_next().await;
    }

    async fn requeue_self(&self, delay: Duration) {
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

    async fn wake_next(&self) {
        let pool = &self.dispatcher.pool;
        if let Ok(Some(next)) =
            dispatch::next_waiting_on_thread(pool, &self.execution.thread_key).await
        {
            let message = centaur_queue::QueueMessage {
                execution_id: next.execution_id,
                thread_key: next.thread_key,
            };
            if let Err(err) = self.dispatcher.queue.send(&message).await {
                tracing::warn!(%err, "could not wake the thread's next execution; the sweep will");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(repo: Option<&str>, agents_md_override: Option<&str>) -> ClaimedExecution {
        ClaimedExecution {
            execution_id: "exe_0123456789abcdef".into(),
            thread_key: "slack:T1:C1:1700000000.000100".into(),
            harness: "echo".into(),
            status: "running".into(),
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
            parts: json!([{"type": "text", "text": "new question"}]),
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
            parts: json!([{"type": "text", "text": "again"}]),
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
}
