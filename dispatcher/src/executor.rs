//! Runs one claimed execution: gets the sandbox, sends (or resumes) the turn, stores the
//! harness's events, keeps the lease, watches cancel and deadlines, and finishes the
//! execution exactly once.

use crate::sandboxes;
use crate::Dispatcher;
use centaur_core::{ExecutionId, Harness, SandboxId, TerminalReason};
use centaur_harness::{
    ContentBlock, HarnessEvent, SandboxInput, SandboxOutput, TurnMessage, TurnStatus,
};
use centaur_sandbox::{Attachment, SandboxStatus};
use centaur_store::dispatch::{self, ClaimedExecution, Finish, TurnMessageRow};
use centaur_store::events::{self, kinds};
use centaur_store::sessions;
use futures::StreamExt;
use serde_json::{json, Value};
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

fn turn_line(
    execution: &ClaimedExecution,
    messages: &[TurnMessageRow],
    agent_thread_id: Option<String>,
    env: std::collections::BTreeMap<String, String>,
) -> String {
    let content: Vec<ContentBlock> = messages
        .iter()
        .flat_map(|message| message.parts.as_array().cloned().unwrap_or_default())
        .map(|part| ContentBlock {
            kind: part["type"].as_str().unwrap_or("text").to_owned(),
            text: part["text"].as_str().map(str::to_owned),
        })
        .collect();
    SandboxInput::User {
        message: TurnMessage {
            role: "user".into(),
            content,
        },
        thread_key: execution.thread_key.clone(),
        execution_id: execution.execution_id.clone(),
        agent_thread_id,
        env,
        workspace: None,
        instructions: None,
    }
    .to_line()
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
        let attachment = if self.execution.turn_was_sent() {
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
        let status = backend
            .status(&id)
            .await
            .unwrap_or_else(|err| SandboxStatus::Gone {
                detail: err.to_string(),
            });
        if !status.is_alive() {
            return Err(self.lost(&id, &status).await);
        }
        self.stored_seq =
            dispatch::max_harness_seq(&self.dispatcher.pool, &self.execution.execution_id)
                .await
                .unwrap_or(0);
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
        self.sandbox_id = Some(id.clone());
        let started = json!({
            "harness": harness.as_str(),
            "sandbox_id": id.as_str(),
            "queue_delay_ms": self.execution.queue_delay_ms(),
            "attempt": self.execution.attempt,
        });
        let _ = events::append(
            &dispatcher.pool,
            &self.execution.thread_key,
            Some(&self.execution.execution_id),
            kinds::EXECUTION_STARTED,
            &started,
        )
        .await;
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
        let messages = dispatch::take_turn_messages(
            &dispatcher.pool,
            &execution.execution_id,
            &execution.thread_key,
            &dispatcher.config.worker_id,
            id.as_str(),
        )
        .await
        .map_err(|err| {
            tracing::warn!(%err, "could not hand the messages to the turn");
            Outcome::LeaseLost
        })?;
        let agent_thread_id = sessions::live(&dispatcher.pool, &execution.thread_key)
            .await
            .ok()
            .flatten()
            .filter(|session| session.sandbox_id == id.as_str())
            .and_then(|session| session.agent_thread_id);
        let env = sandboxes::turn_env(dispatcher, &execution.thread_key, id);
        let line = turn_line(execution, &messages, agent_thread_id, env);
        attachment
            .input
            .send_line(&line)
            .await
            .map_err(|err| Outcome::HandBack(format!("could not write the turn: {err}")))
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
        dispatch::append_harness_events(
            &self.dispatcher.pool,
            &self.execution.thread_key,
            &self.execution.execution_id,
            self.dispatcher.config.silence_timeout,
            &batch,
        )
        .await
        .map_err(|err| Outcome::HandBack(format!("could not store harness events: {err}")))
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
        if let HarnessEvent::Error { message, .. } = &output.event {
            self.last_error = Some(message.clone());
        }
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
        let cancelled = self.cancel_sent_at.is_some();
        Some(Outcome::Finished(match (status, cancelled) {
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
        }))
    }

    async fn on_heartbeat(&mut self, attachment: &mut Attachment) -> Option<Outcome> {
        let dispatcher = self.dispatcher;
        let config = &dispatcher.config;
        let beat = match dispatch::heartbeat(
            &dispatcher.pool,
            &self.execution.execution_id,
            &config.worker_id,
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
        if beat.status == "cancel_requested" {
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
        let worker = &dispatcher.config.worker_id;
        let pool = &dispatcher.pool;
        match outcome {
            Outcome::LeaseLost => return,
            Outcome::HandBack(why) => {
                tracing::warn!(%why, "handing the execution back for re-attach");
                if let Ok(true) =
                    dispatch::hand_back(pool, &execution.execution_id, worker, &why).await
                {
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
                });
                end.delivery_payload = centaur_core::delivery::payload(
                    &execution.execution_id,
                    end.reason,
                    end.result_text.as_deref(),
                );
                match dispatch::finish(pool, &execution.execution_id, worker, &end).await {
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
                        if end.reason == TerminalReason::Completed {
                            let _ = sessions::record_turn(
                                pool,
                                &execution.thread_key,
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
