//! `executions` from the API's side: create (with its `queued` event and outbox row, in
//! one transaction), read, list, cancel.

use crate::assignments::{check_attach, lock_thread, prompt_ref, Assignment, WorkspaceChoice};
use crate::audit::{Actor, INSERT_COLUMNS as AUDIT_COLUMNS};
use crate::error::{column, optional_column, TurnError};
use crate::events::{self, kinds};
use crate::inflight;
use crate::messages::NewMessage;
use crate::wakeups;
use crate::StoreError;
use centaur_core::api::{Delivery, ExecuteResponse, ExecutionView, Usage};
use centaur_core::{ExecutionId, ExecutionStatus, Harness, TerminalReason};

pub use crate::inflight::CancelOutcome;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;

/// Failed executions on one thread within [`FAILURE_LOOP_WINDOW_SECS`] that block new ones.
pub const FAILURE_LOOP_LIMIT: i64 = 3;
/// The failure-loop window.
pub const FAILURE_LOOP_WINDOW_SECS: f64 = 300.0;

/// What `POST /agent/execute` asks for.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub thread_key: String,
    /// `None`: use the active assignment (or, with `first_message`, spawn one).
    pub assignment_generation: Option<i64>,
    pub execute_id: Option<String>,
    pub delivery: Delivery,
    pub metadata: Value,
    pub request_hash: String,
    /// The one-call path: spawn-or-attach with this harness and store this message first.
    pub first_message: Option<NewMessage>,
    pub harness: Option<Harness>,
    /// Who asks: the `execute` audit row is written by the statement that creates the
    /// execution (not for a replay).
    pub actor: Actor,
}

/// Creates a queued execution. Returns the 202 answer and whether a new row was created
/// (false for an idempotent replay, which must not be enqueued again).
pub async fn create(
    pool: &PgPool,
    request: &NewExecution,
    default_harness: Harness,
) -> Result<(ExecuteResponse, bool), TurnError> {
    create_in_workspace(pool, request, default_harness, &WorkspaceChoice::default()).await
}

/// [`create`], where the one-call path's spawn gets `workspace` (repo, override).
pub async fn create_in_workspace(
    pool: &PgPool,
    request: &NewExecution,
    default_harness: Harness,
    workspace: &WorkspaceChoice,
) -> Result<(ExecuteResponse, bool), TurnError> {
    create_and_enqueue(pool, request, default_harness, workspace, None).await
}

/// What the execute reads under the thread's lock, in one statement: the `execute_id`
/// replay, the active assignment, the message replay and the recent failures.
#[derive(sqlx::FromRow)]
struct ExecuteRead {
    replay_hash: Option<String>,
    replay_execution_id: Option<String>,
    replay_generation: Option<i64>,
    replay_status: Option<String>,
    assignment_generation: Option<i64>,
    harness: Option<String>,
    prompt_ref: Option<String>,
    repo: Option<String>,
    same_override: Option<bool>,
    message_replay_hash: Option<String>,
    recent_failures: i64,
}

impl ExecuteRead {
    fn active(&self, thread_key: &str) -> Result<Option<Assignment>, StoreError> {
        let (Some(assignment_generation), Some(harness), Some(prompt_ref)) = (
            self.assignment_generation,
            self.harness.clone(),
            self.prompt_ref.clone(),
        ) else {
            return Ok(None);
        };
        Ok(Some(Assignment {
            thread_key: thread_key.to_owned(),
            assignment_generation,
            harness: column("runtime_assignments.harness", harness)?,
            prompt_ref,
            repo: self.repo.clone(),
        }))
    }
}

/// [`create_in_workspace`], and with `queue_channel` (the Postgres queue's NOTIFY
/// channel) the execution's `queue_messages` row in the same transaction: the turn is
/// durable and enqueued with one commit. The wake-ups (events, queue) follow the commit.
///
/// Four statements in one transaction: the thread's lock; one read (idempotency replay,
/// active assignment, recent failures); one write (the assignment if the one-call path
/// creates it, the message and its event, the execution, the binding of the thread's
/// pending messages, the `queued` event, the outbox row, the queue row, the audit row);
/// the commit.
pub async fn create_and_enqueue(
    pool: &PgPool,
    request: &NewExecution,
    default_harness: Harness,
    workspace: &WorkspaceChoice,
    queue_channel: Option<&str>,
) -> Result<(ExecuteResponse, bool), TurnError> {
    let thread_key = request.thread_key.as_str();
    let message = request.first_message.as_ref();
    let message_key = message.and_then(|m| m.message_id.as_deref());
    let mut tx = pool.begin().await?;
    lock_thread(&mut tx, thread_key).await?;
    let read: ExecuteRead = sqlx::query_as(
        "SELECT r.request_hash AS replay_hash, r.execution_id AS replay_execution_id,
                r.assignment_generation AS replay_generation, r.status AS replay_status,
                a.assignment_generation, a.harness, a.prompt_ref, a.repo,
                CASE WHEN $3::text IS NULL THEN NULL
                     ELSE a.agents_md_override IS NOT DISTINCT FROM $3 END AS same_override,
                mr.request_hash AS message_replay_hash,
                (SELECT count(*) FROM executions f
                 WHERE f.thread_key = $1 AND f.status = 'failed_permanent'
                   AND f.completed_at > now() - make_interval(secs => $5)) AS recent_failures
         FROM (SELECT 1) AS one
         LEFT JOIN executions r ON r.thread_key = $1 AND r.execute_id = $2
         LEFT JOIN runtime_assignments a ON a.thread_key = $1 AND a.state = 'active'
         LEFT JOIN message_requests mr ON mr.thread_key = $1 AND mr.message_id = $4",
    )
    .bind(thread_key)
    .bind(&request.execute_id)
    .bind(&workspace.agents_md_override)
    .bind(message_key)
    .bind(FAILURE_LOOP_WINDOW_SECS)
    .fetch_one(&mut *tx)
    .await?;
    if let (Some(key), Some(hash), Some(execution_id), Some(generation), Some(status)) = (
        &request.execute_id,
        &read.replay_hash,
        &read.replay_execution_id,
        read.replay_generation,
        &read.replay_status,
    ) {
        if *hash != request.request_hash {
            return Err(TurnError::IdempotencyMismatch {
                key_name: "execute_id",
                key: key.clone(),
            });
        }
        let response = ExecuteResponse {
            ok: true,
            execution_id: execution_id.clone(),
            execute_id: key.clone(),
            assignment_generation: generation,
            status: column("executions.status", status.clone())?,
            idempotent: true,
        };
        return Ok((response, false));
    }
    // The assignment: the caller's generation, the active one, or (one-call path) a new one.
    let active = read.active(thread_key)?;
    let (assignment, new_assignment): (Assignment, bool) =
        match (request.assignment_generation, message, active) {
            (Some(_), _, None) | (None, None, None) => {
                return Err(TurnError::NoActiveAssignment(thread_key.to_owned()));
            }
            (Some(given), _, Some(active)) if active.assignment_generation != given => {
                return Err(TurnError::GenerationStale {
                    given,
                    active: active.assignment_generation,
                });
            }
            (Some(_), _, Some(active)) | (None, None, Some(active)) => (active, false),
            (None, Some(_), Some(active)) => {
                check_attach(&active, request.harness, workspace, read.same_override)?;
                (active, false)
            }
            (None, Some(_), None) => {
                let harness = request.harness.unwrap_or(default_harness);
                let repo = workspace
                    .requested_repo
                    .as_ref()
                    .or(workspace.default_repo.as_ref());
                let new = Assignment {
                    thread_key: thread_key.to_owned(),
                    assignment_generation: 0,
                    harness,
                    prompt_ref: prompt_ref(harness),
                    repo: repo.cloned(),
                };
                (new, true)
            }
        };
    if read.recent_failures >= FAILURE_LOOP_LIMIT {
        return Err(TurnError::FailureLoop(thread_key.to_owned()));
    }
    // A message whose key was used before is not stored again (same payload) or refused.
    let message = match (message, &read.message_replay_hash) {
        (Some(message), Some(hash)) => {
            if *hash != message.request_hash {
                return Err(TurnError::IdempotencyMismatch {
                    key_name: "message_id",
                    key: message_key.unwrap_or_default().to_owned(),
                });
            }
            None
        }
        (message, _) => message,
    };
    let execution_id = ExecutionId::generate();
    let execute_id = request
        .execute_id
        .clone()
        .unwrap_or_else(|| execution_id.to_string());
    let message_id = message.map(|message| {
        message
            .message_id
            .clone()
            .unwrap_or_else(|| centaur_core::ids::random_id("msg_", 8))
    });
    // Messages bind to an execution when it is created: this turn carries exactly the
    // thread's messages posted since the previous execute (the new one included).
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT $1::text AS thread_key, NULL::text AS execution_id, '{message_kind}' AS event_kind,
                    jsonb_build_object('message_id', id, 'role', role, 'parts', parts,
                                       'user_id', user_id) AS event_json, 1 AS ord
             FROM message
             UNION ALL
             SELECT $1, $2, '{state_kind}', jsonb_build_object('status', 'queued'), 2
             FROM pending WHERE n > 0",
            message_kind = kinds::MESSAGE,
            state_kind = kinds::EXECUTION_STATE,
        ),
    );
    let (pending, generation): (i64, i64) = sqlx::query_as(&format!(
        "WITH created AS (
             INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref,
                                              state, repo, agents_md_override)
             SELECT $1, COALESCE(max(assignment_generation), 0) + 1, $8, $9, 'active', $10, $11
             FROM runtime_assignments WHERE thread_key = $1 HAVING $12::boolean
             RETURNING assignment_generation),
         generation AS (
             SELECT COALESCE((SELECT assignment_generation FROM created), $7) AS n),
         message AS (
             INSERT INTO messages (id, thread_key, assignment_generation, role, parts, user_id,
                                   metadata, delivered_execution_id)
             SELECT $13, $1, g.n, $14, $15, $16, $17, $2 FROM generation g
             WHERE $13::text IS NOT NULL
             RETURNING id, role, parts, user_id),
         execution AS (
             INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                     execute_id, request_hash, status, delivery, metadata)
             SELECT $2, $1, g.n, $8, $3, $4, 'queued', $5, $6 FROM generation g
             RETURNING execution_id),
         bound AS (
             UPDATE messages SET delivered_execution_id = $2
             WHERE thread_key = $1 AND delivered_execution_id IS NULL
             RETURNING id),
         pending AS (
             SELECT (SELECT count(*) FROM bound) + (SELECT count(*) FROM message) AS n),
         {trail},
         remembered AS (
             INSERT INTO message_requests (thread_key, message_id, request_hash, response_json)
             SELECT $1, $13, $18, jsonb_build_object('ok', true, 'message_id', $13,
                                                     'stored_event_id', min(trail.event_id))
             FROM trail HAVING $18::text IS NOT NULL AND count(*) > 0
             RETURNING 1),
         outbox AS (
             INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state)
             SELECT $2, $1, $5, 'awaiting_terminal' FROM pending WHERE $19 AND n > 0
             RETURNING 1),
         queued AS (
             INSERT INTO queue_messages (execution_id, thread_key)
             SELECT $2, $1 FROM pending WHERE $20::text IS NOT NULL AND n > 0
             ON CONFLICT (execution_id) DO NOTHING
             RETURNING 1),
         audited AS (
             INSERT INTO audit_log ({AUDIT_COLUMNS})
             SELECT $21, $22, $23, $24, 'execute', $1, $2, NULL FROM pending WHERE n > 0)
         SELECT (SELECT n FROM pending), (SELECT n FROM generation)"
    ))
    .bind(thread_key)
    .bind(execution_id.as_str())
    .bind(&execute_id)
    .bind(&request.request_hash)
    .bind(Json(&request.delivery))
    .bind(&request.metadata)
    .bind(assignment.assignment_generation)
    .bind(assignment.harness.as_str())
    .bind(&assignment.prompt_ref)
    .bind(&assignment.repo)
    .bind(&workspace.agents_md_override)
    .bind(new_assignment)
    .bind(&message_id)
    .bind(message.map(|m| m.role.as_str()))
    .bind(message.map(|m| Json(&m.parts)))
    .bind(message.and_then(|m| m.user_id.as_deref()))
    .bind(message.map(|m| &m.metadata))
    .bind(
        message
            .filter(|m| m.message_id.is_some())
            .map(|m| m.request_hash.as_str()),
    )
    .bind(!request.delivery.is_dev())
    .bind(queue_channel)
    .bind(request.actor.kind.as_str())
    .bind(&request.actor.id)
    .bind(&request.actor.name)
    .bind(&request.actor.peer)
    .fetch_one(&mut *tx)
    .await?;
    if pending == 0 {
        return Err(TurnError::NoPendingMessages(thread_key.to_owned()));
    }
    tx.commit().await?;
    wakeups::announce(pool, &[thread_key], queue_channel).await;
    let response = ExecuteResponse {
        ok: true,
        execution_id: execution_id.to_string(),
        execute_id,
        assignment_generation: generation,
        status: ExecutionStatus::Queued,
        idempotent: false,
    };
    Ok((response, true))
}

/// An [`ExecutionView`] as stored: status, terminal reason and harness as text.
#[derive(sqlx::FromRow)]
struct ExecutionRow {
    execution_id: String,
    thread_key: String,
    assignment_generation: i64,
    execute_id: String,
    status: String,
    terminal_reason: Option<String>,
    result_text: Option<String>,
    error_text: Option<String>,
    agent_thread_id: Option<String>,
    harness: String,
    sandbox_id: Option<String>,
    attempt: i32,
    delivery: Value,
    metadata: Value,
    created_at: chrono::DateTime<chrono::Utc>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    completed_at: Option<chrono::DateTime<chrono::Utc>>,
    updated_at: chrono::DateTime<chrono::Utc>,
    input_tokens: i64,
    output_tokens: i64,
}

impl TryFrom<ExecutionRow> for ExecutionView {
    type Error = StoreError;
    fn try_from(row: ExecutionRow) -> Result<Self, StoreError> {
        Ok(ExecutionView {
            execution_id: row.execution_id,
            thread_key: row.thread_key,
            assignment_generation: row.assignment_generation,
            execute_id: row.execute_id,
            status: column("executions.status", row.status)?,
            terminal_reason: optional_column("executions.terminal_reason", row.terminal_reason)?,
            result_text: row.result_text,
            error_text: row.error_text,
            agent_thread_id: row.agent_thread_id,
            harness: column("executions.harness", row.harness)?,
            sandbox_id: row.sandbox_id,
            attempt: row.attempt,
            delivery: row.delivery,
            metadata: row.metadata,
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            updated_at: row.updated_at,
            usage: Usage {
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
            },
            events: None,
        })
    }
}

/// The view's columns over [`VIEW_FROM`] (`x`: the execution, `u`: its usage, if any).
const VIEW_COLUMNS: &str = "x.execution_id, x.thread_key, x.assignment_generation, x.execute_id, x.status,
    x.terminal_reason, x.result_text, x.error_text, x.agent_thread_id, x.harness, x.sandbox_id, x.attempt,
    x.delivery, x.metadata, x.created_at, x.started_at, x.completed_at, x.updated_at,
    COALESCE(u.input_tokens, 0) AS input_tokens, COALESCE(u.output_tokens, 0) AS output_tokens";

/// Executions with their usage summary (one index lookup each).
const VIEW_FROM: &str =
    "executions x LEFT JOIN execution_usage u ON u.execution_id = x.execution_id";

/// One execution, optionally with its events.
pub async fn get(
    pool: &PgPool,
    execution_id: &str,
    with_events: bool,
) -> Result<Option<ExecutionView>, StoreError> {
    let row: Option<ExecutionRow> = sqlx::query_as(&format!(
        "SELECT {VIEW_COLUMNS} FROM {VIEW_FROM} WHERE x.execution_id = $1"
    ))
    .bind(execution_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut view = ExecutionView::try_from(row)?;
    if with_events {
        view.events = Some(events::for_execution(pool, execution_id).await?);
    }
    Ok(Some(view))
}

/// The thread of an execution (for sandbox-token scoping), if it exists.
pub async fn thread_of(pool: &PgPool, execution_id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT thread_key FROM executions WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A thread's executions, newest first.
pub async fn list_for_thread(
    pool: &PgPool,
    thread_key: &str,
    limit: i64,
) -> Result<Vec<ExecutionView>, StoreError> {
    let rows: Vec<ExecutionRow> = sqlx::query_as(&format!(
        "SELECT {VIEW_COLUMNS} FROM {VIEW_FROM} WHERE x.thread_key = $1 ORDER BY x.seq DESC LIMIT $2"
    ))
    .bind(thread_key)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(ExecutionView::try_from).collect()
}

/// `POST /agent/executions/{id}/cancel`; a cancel that changed something writes `actor`'s
/// `cancel` audit row in the same transaction.
pub async fn cancel(
    pool: &PgPool,
    execution_id: &str,
    actor: &Actor,
) -> Result<CancelOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = inflight::cancel(&mut tx, execution_id, TerminalReason::Cancelled).await?;
    let changed_thread: Option<String> =
        if matches!(outcome, CancelOutcome::Cancelled | CancelOutcome::Requested) {
            sqlx::query_scalar(&format!(
                "INSERT INTO audit_log ({AUDIT_COLUMNS})
             SELECT $2, $3, $4, $5, 'cancel', thread_key, execution_id, NULL
             FROM executions WHERE execution_id = $1
             RETURNING thread_key"
            ))
            .bind(execution_id)
            .bind(actor.kind.as_str())
            .bind(&actor.id)
            .bind(&actor.name)
            .bind(&actor.peer)
            .fetch_optional(&mut *tx)
            .await?
        } else {
            None
        };
    tx.commit().await?;
    if let Some(thread_key) = &changed_thread {
        wakeups::announce(pool, &[thread_key], None).await;
    }
    Ok(outcome)
}
