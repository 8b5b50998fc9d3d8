//! The hand-off of a Slack message to a turn, in process: the same turn logic
//! `POST /agent/execute` runs ([`centaur_http::turn::execute`], the one-call path: attach to
//! or create the thread's assignment, store the message, create the execution and enqueue
//! it, durably in one transaction), with the message id as message id and execute id so
//! Slack's retries are idempotent end to end. A harness or repository flag other than the
//! thread's releases its assignment and starts the next one, keeping whichever of the two
//! the message did not name.

use centaur_core::api::{codes, Delivery, ExecuteResponse, MessagePart};
use centaur_core::canonical::request_hash;
use centaur_core::ExecutionStatus;
use centaur_http::{turn, validate, ApiError, AppState, Peer};
use centaur_slack::IncomingMessage;
use centaur_store::assignments::{self, WorkspaceChoice};
use centaur_store::audit::Actor;
use centaur_store::executions::{self, NewExecution};
use centaur_store::messages::NewMessage;
use centaur_store::{StoreError, TurnError};
use serde_json::json;

/// What became of a Slack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The turn is queued (or was already: a retry of the same message).
    Queued { execution_id: String },
    /// The turn was refused for good; `reason` is the short reply the thread gets.
    Refused { code: &'static str, reason: String },
    /// The database could not be reached: Slack should retry.
    Unavailable(String),
}

/// The hash that makes a retry of the same Slack message an idempotent replay: over what
/// the message asks for, never over the thread context read from Slack (which a retry may
/// read differently).
fn message_hash(message: &IncomingMessage, delivery: &Delivery) -> String {
    request_hash(&json!({
        "slack_message": message.message_id,
        "text": message.text,
        "user": message.user_id,
        "harness": message.harness.map(|h| h.as_str()),
        "repo": message.repo,
        "delivery": delivery,
    }))
}

/// The Slack delivery of the turn's answer.
pub fn delivery(message: &IncomingMessage) -> Delivery {
    Delivery::new(Delivery::SLACK)
        .with("channel", message.channel.clone())
        .with("thread_ts", message.thread_ts.clone())
        .with("team_id", message.team_id.clone())
        .with("user_id", message.user_id.clone())
}

fn unavailable(err: &StoreError) -> Option<String> {
    match err {
        StoreError::Database(
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
        ) => Some(err.to_string()),
        _ => None,
    }
}

/// Starts the turn for `message`, with the thread's earlier messages as `context`; the
/// audit log records its author as a Slack user (`<team_id>:<user_id>`), from `peer`.
pub async fn run_turn(
    state: &AppState,
    peer: &Peer,
    message: &IncomingMessage,
    context: Option<String>,
) -> Outcome {
    let actor = Actor::slack_user(&message.team_id, message.user_id.as_deref(), peer.0.clone());
    let delivery = delivery(message);
    let hash = message_hash(message, &delivery);
    let mut parts = Vec::new();
    if let Some(context) = &context {
        let mut part = MessagePart::text(context.as_str());
        part.extra
            .insert("source".to_owned(), json!("slack_thread_context"));
        parts.push(part);
    }
    parts.push(MessagePart::text(message.text.as_str()));
    let stored = NewMessage {
        message_id: Some(message.message_id.clone()),
        role: "user".into(),
        parts,
        user_id: message.user_id.clone(),
        metadata: json!({"slack": {
            "team_id": message.team_id, "channel": message.channel, "ts": message.ts,
            "thread_ts": message.thread_ts, "event_id": message.event_id,
            "thread_context": context.is_some(),
        }}),
        request_hash: hash.clone(),
    };
    let mut request = NewExecution {
        thread_key: message.thread_key.clone(),
        assignment_generation: None,
        execute_id: Some(message.message_id.clone()),
        delivery,
        metadata: json!({}),
        request_hash: hash,
        first_message: Some(stored),
        harness: message.harness,
        actor: actor.clone(),
    };
    let workspace = match workspace_for(state, message.repo.as_deref()) {
        Ok(workspace) => workspace,
        Err(refused) => return refused,
    };
    match turn::execute(state, &request, &workspace).await {
        Err(TurnError::PromptMismatch { .. } | TurnError::WorkspaceMismatch(_)) => {}
        other => return outcome(state, message, other).await,
    }
    // Another harness or repository than the thread's: release it and start the next
    // assignment, keeping what the message did not name.
    let active = match state.pool.acquire().await {
        Ok(mut conn) => assignments::active(&mut conn, &message.thread_key).await,
        Err(err) => Err(err),
    };
    let active = match active {
        Ok(active) => active,
        Err(err) => return store_failure(message, StoreError::Database(err)),
    };
    if let Some(active) = &active {
        if request.harness.is_none() {
            request.harness = Some(active.harness);
        }
    }
    let repo = message
        .repo
        .clone()
        .or_else(|| active.as_ref().and_then(|a| a.repo.clone()));
    let workspace = match workspace_for(state, repo.as_deref()) {
        Ok(workspace) => workspace,
        Err(refused) => return refused,
    };
    let release_id = format!("{}:release", message.message_id);
    let released = assignments::release(
        &state.pool,
        &message.thread_key,
        Some(&release_id),
        false,
        &request_hash(&json!({"release_id": release_id})),
        &actor,
    )
    .await;
    if let Err(err) = released {
        return outcome(state, message, Err(err)).await;
    }
    let executed = turn::execute(state, &request, &workspace).await;
    outcome(state, message, executed).await
}

/// The workspace a message asks for (its `--repo`, checked against the allowlist).
fn workspace_for(state: &AppState, repo: Option<&str>) -> Result<WorkspaceChoice, Outcome> {
    validate::workspace(&state.config.workspace, repo, None).map_err(|err| match err {
        ApiError::Unprocessable { code, message } => Outcome::Refused {
            code,
            reason: message,
        },
        other => Outcome::Refused {
            code: codes::VALIDATION_ERROR,
            reason: other.to_string(),
        },
    })
}

async fn outcome(
    state: &AppState,
    message: &IncomingMessage,
    executed: Result<(ExecuteResponse, bool), TurnError>,
) -> Outcome {
    let err = match executed {
        Ok((response, _)) => {
            return Outcome::Queued {
                execution_id: response.execution_id,
            };
        }
        Err(err) => err,
    };
    let refused = |code: &'static str, reason: String| Outcome::Refused { code, reason };
    match err {
        TurnError::Store(err) => store_failure(message, err),
        TurnError::FailureLoop(_) => {
            let latest = latest_failure(state, &message.thread_key).await;
            let named = latest
                .map(|id| format!(" (the latest: {id}; GET /agent/executions/{id} shows why)"))
                .unwrap_or_default();
            refused(
                codes::THREAD_FAILURE_LOOP,
                format!(
                    "this thread's last {} runs failed within {} minutes{named}; wait a few \
                     minutes or start a new thread",
                    executions::FAILURE_LOOP_LIMIT,
                    (executions::FAILURE_LOOP_WINDOW_SECS / 60.0).round()
                ),
            )
        }
        TurnError::NoPendingMessages(_) => refused(
            codes::NO_PENDING_MESSAGES,
            "this message is already part of another run of this thread".into(),
        ),
        TurnError::IdempotencyMismatch { .. } => refused(
            codes::IDEMPOTENCY_PAYLOAD_MISMATCH,
            "this Slack message was already handed over with different content".into(),
        ),
        TurnError::PromptMismatch { .. } | TurnError::WorkspaceMismatch(_) => refused(
            codes::ACTIVE_ASSIGNMENT_PROMPT_MISMATCH,
            format!("{err}; another message switched this thread at the same moment, try again"),
        ),
        TurnError::NoActiveAssignment(_) | TurnError::GenerationStale { .. } => {
            refused(codes::ASSIGNMENT_GENERATION_STALE, err.to_string())
        }
    }
}

fn store_failure(message: &IncomingMessage, err: StoreError) -> Outcome {
    if let Some(detail) = unavailable(&err) {
        return Outcome::Unavailable(detail);
    }
    tracing::error!(error = %err, event_id = message.event_id.as_deref().unwrap_or(""),
        "could not store the Slack turn");
    Outcome::Refused {
        code: codes::INTERNAL,
        reason: format!(
            "an internal error stopped it (logged with Slack event {})",
            message.event_id.as_deref().unwrap_or("without an id")
        ),
    }
}

/// The newest failed execution of a thread, to name in a failure-loop refusal.
async fn latest_failure(state: &AppState, thread_key: &str) -> Option<String> {
    executions::list_for_thread(&state.pool, thread_key, 10)
        .await
        .ok()?
        .into_iter()
        .find(|execution| execution.status == ExecutionStatus::FailedPermanent)
        .map(|execution| execution.execution_id)
}
