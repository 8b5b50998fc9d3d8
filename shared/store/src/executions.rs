//! `executions` from the API's side: create (with its `queued` event and outbox row, in
//! one transaction), read, list, cancel.

use crate::assignments::{check_attach, lock_threads, prompt_ref, Assignment, WorkspaceChoice};
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

/// What the execute reads under the thread's lock, one row per execute of a batch in one
/// statement: the `execute_id` replay, the active assignment, the message replay and the
/// recent failures.
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

/// One execute of a batch: the request and the workspace its one-call path asks for.
#[derive(Debug, Clone, Copy)]
pub struct ExecuteCall<'a> {
    pub request: &'a NewExecution,
    pub workspace: &'a WorkspaceChoice,
}

/// An execute's answer: the 202 body and whether a new execution was created (false for
/// an idempotent replay, which must not be enqueued again).
pub type ExecuteOutcome = Result<(ExecuteResponse, bool), TurnError>;

/// [`create_in_workspace`], and with `queue_channel` (the Postgres queue's NOTIFY
/// channel) the execution's `queue_messages` row in the same transaction: the turn is
/// durable and enqueued with one commit. The wake-ups (events, queue) follow the commit.
/// [`create_and_enqueue_many`] for one execute.
pub async fn create_and_enqueue(
    pool: &PgPool,
    request: &NewExecution,
    default_harness: Harness,
    workspace: &WorkspaceChoice,
    queue_channel: Option<&str>,
) -> ExecuteOutcome {
    let call = ExecuteCall { request, workspace };
    match write_batch(pool, &[call], default_harness, queue_channel).await? {
        Batch::Written(outcomes) => outcomes.into_iter().next().unwrap_or_else(|| {
            Err(StoreError::Corrupt("a batch of one execute answered nothing".to_owned()).into())
        }),
        Batch::NothingPending => Err(TurnError::NoPendingMessages(request.thread_key.clone())),
        Batch::CommitFailed(err) => Err(err.into()),
    }
}

/// Creates the executions of `calls` (each as [`create_and_enqueue`] would) with one
/// transaction of four statements, whatever their number: the threads' locks; one read
/// (idempotency replays, active assignments, recent failures); one write (the assignments
/// the one-call path creates, the messages and their events, the executions, the binding of
/// the threads' pending messages, the `queued` events, the outbox, queue and audit rows);
/// the commit. Postgres's cost of an execute is mostly per statement (plan start-up, commit,
/// round trips), so executes that arrive together are written together (group commit).
///
/// Answers in the order of `calls`. A refused execute (a 409) does not hold the others
/// back. When the write fails for the batch before its commit (a database error, or a
/// thread with nothing to run), each execute is tried again on its own, so each gets its
/// own answer; when the commit itself fails, each answers that failure (503), as one
/// execute alone would, and none is written again. Thread keys should be distinct (the
/// caller's batcher keeps a thread's executes in order); repeated ones are written one
/// after another.
pub async fn create_and_enqueue_many(
    pool: &PgPool,
    calls: &[ExecuteCall<'_>],
    default_harness: Harness,
    queue_channel: Option<&str>,
) -> Vec<ExecuteOutcome> {
    let distinct = calls
        .iter()
        .map(|call| call.request.thread_key.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        == calls.len();
    if calls.len() > 1 && distinct {
        match write_batch(pool, calls, default_harness, queue_channel).await {
            Ok(Batch::Written(outcomes)) => return outcomes,
            Ok(Batch::NothingPending) => {}
            // The batch may have committed: writing it again could run a turn twice.
            Ok(Batch::CommitFailed(err)) => {
                tracing::warn!(%err, executes = calls.len(), "the commit of a batch of executes failed");
                return calls
                    .iter()
                    .map(|_| {
                        Err(sqlx::Error::Io(std::io::Error::other(format!(
                            "the commit of this execute's transaction failed: {err}"
                        )))
                        .into())
                    })
                    .collect();
            }
            Err(err) => {
                tracing::warn!(%err, executes = calls.len(), "a batch of executes failed; writing each on its own")
            }
        }
    }
    let mut outcomes = Vec::with_capacity(calls.len());
    for call in calls {
        outcomes.push(
            create_and_enqueue(
                pool,
                call.request,
                default_harness,
                call.workspace,
                queue_channel,
            )
            .await,
        );
    }
    outcomes
}

/// How a batch's transaction ended.
enum Batch {
    /// Committed: an answer per call.
    Written(Vec<ExecuteOutcome>),
    /// Rolled back: an execute had no message to carry.
    NothingPending,
    /// The commit failed: whether it took effect is unknown.
    CommitFailed(sqlx::Error),
}

/// What one execute of a batch does, decided from its read ([`plan`]).
enum Plan<'a> {
    /// Answer with the stored execution (an idempotent replay).
    Replay(ExecuteResponse),
    /// Write a new execution.
    Write(Box<NewTurn<'a>>),
}

/// A new execution to write, with everything its rows need.
struct NewTurn<'a> {
    call: ExecuteCall<'a>,
    /// The active assignment, or (`new_assignment`) the one to create.
    assignment: Assignment,
    new_assignment: bool,
    /// The message to store (none when the request has none or replays a stored one).
    message: Option<&'a NewMessage>,
    message_id: Option<String>,
    execution_id: ExecutionId,
    execute_id: String,
}

/// Decides one execute from what was read under its thread's lock: a replay, a refusal,
/// or the turn to write.
fn plan<'a>(
    call: ExecuteCall<'a>,
    read: &ExecuteRead,
    default_harness: Harness,
) -> Result<Plan<'a>, TurnError> {
    let request = call.request;
    let workspace = call.workspace;
    let thread_key = request.thread_key.as_str();
    let message = request.first_message.as_ref();
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
        return Ok(Plan::Replay(ExecuteResponse {
            ok: true,
            execution_id: execution_id.clone(),
            execute_id: key.clone(),
            assignment_generation: generation,
            status: column("executions.status", status.clone())?,
            idempotent: true,
        }));
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
                    key: message.message_id.as_deref().unwrap_or_default().to_owned(),
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
    Ok(Plan::Write(Box::new(NewTurn {
        call,
        assignment,
        new_assignment,
        message,
        message_id,
        execution_id,
        execute_id,
    })))
}

/// One transaction for `calls` (distinct threads): lock, read, plan, write, commit.
async fn write_batch(
    pool: &PgPool,
    calls: &[ExecuteCall<'_>],
    default_harness: Harness,
    queue_channel: Option<&str>,
) -> Result<Batch, TurnError> {
    let threads: Vec<&str> = calls
        .iter()
        .map(|call| call.request.thread_key.as_str())
        .collect();
    let mut tx = pool.begin().await?;
    lock_threads(&mut tx, &threads).await?;
    let reads: Vec<ExecuteRead> = sqlx::query_as(
        "SELECT r.request_hash AS replay_hash, r.execution_id AS replay_execution_id,
                r.assignment_generation AS replay_generation, r.status AS replay_status,
                a.assignment_generation, a.harness, a.prompt_ref, a.repo,
                CASE WHEN i.agents_md_override IS NULL THEN NULL
                     ELSE a.agents_md_override IS NOT DISTINCT FROM i.agents_md_override END
                    AS same_override,
                mr.request_hash AS message_replay_hash,
                (SELECT count(*) FROM executions f
                 WHERE f.thread_key = i.thread_key AND f.status = 'failed_permanent'
                   AND f.completed_at > now() - make_interval(secs => $5)) AS recent_failures
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
              WITH ORDINALITY AS i(thread_key, execute_id, agents_md_override, message_id, ord)
         LEFT JOIN executions r ON r.thread_key = i.thread_key AND r.execute_id = i.execute_id
         LEFT JOIN runtime_assignments a ON a.thread_key = i.thread_key AND a.state = 'active'
         LEFT JOIN message_requests mr
           ON mr.thread_key = i.thread_key AND mr.message_id = i.message_id
         ORDER BY i.ord",
    )
    .bind(&threads)
    .bind(
        calls
            .iter()
            .map(|c| c.request.execute_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        calls
            .iter()
            .map(|c| c.workspace.agents_md_override.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        calls
            .iter()
            .map(|c| {
                c.request
                    .first_message
                    .as_ref()
                    .and_then(|m| m.message_id.as_deref())
            })
            .collect::<Vec<_>>(),
    )
    .bind(FAILURE_LOOP_WINDOW_SECS)
    .fetch_all(&mut *tx)
    .await?;
    if reads.len() != calls.len() {
        return Err(StoreError::Corrupt(format!(
            "the execute read {} rows for {} executes",
            reads.len(),
            calls.len()
        ))
        .into());
    }
    let plans: Vec<Result<Plan, TurnError>> = calls
        .iter()
        .zip(&reads)
        .map(|(call, read)| plan(*call, read, default_harness))
        .collect();
    let turns: Vec<&NewTurn> = plans
        .iter()
        .filter_map(|plan| match plan {
            Ok(Plan::Write(turn)) => Some(turn.as_ref()),
            _ => None,
        })
        .collect();
    let mut written = Vec::new();
    if !turns.is_empty() {
        written = write_turns(&mut tx, &turns, queue_channel).await?;
        if written.iter().any(|(pending, _)| *pending == 0) {
            tx.rollback().await?;
            return Ok(Batch::NothingPending);
        }
    }
    if let Err(err) = tx.commit().await {
        return Ok(Batch::CommitFailed(err));
    }
    let written_threads: Vec<&str> = turns
        .iter()
        .map(|turn| turn.call.request.thread_key.as_str())
        .collect();
    wakeups::announce(
        pool,
        &written_threads,
        queue_channel.filter(|_| !turns.is_empty()),
    )
    .await;
    let mut generations = written.into_iter().map(|(_, generation)| generation);
    let outcomes = plans
        .into_iter()
        .map(|plan| match plan? {
            Plan::Replay(response) => Ok((response, false)),
            Plan::Write(turn) => Ok((
                ExecuteResponse {
                    ok: true,
                    execution_id: turn.execution_id.to_string(),
                    execute_id: turn.execute_id,
                    assignment_generation: generations.next().unwrap_or_default(),
                    status: ExecutionStatus::Queued,
                    idempotent: false,
                },
                true,
            )),
        })
        .collect();
    Ok(Batch::Written(outcomes))
}

/// Writes `turns` (distinct threads, locked) in one statement; returns, in their order,
/// each turn's number of messages carried and its assignment generation.
async fn write_turns(
    tx: &mut sqlx::PgConnection,
    turns: &[&NewTurn<'_>],
    queue_channel: Option<&str>,
) -> Result<Vec<(i64, i64)>, TurnError> {
    // Messages bind to an execution when it is created: each turn carries exactly its
    // thread's messages posted since the previous execute (the new one included).
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT thread_key, NULL::text AS execution_id, '{message_kind}' AS event_kind,
                    jsonb_build_object('message_id', id, 'role', role, 'parts', parts,
                                       'user_id', user_id) AS event_json, 1 AS ord
             FROM message
             UNION ALL
             SELECT thread_key, execution_id, '{state_kind}', jsonb_build_object('status', 'queued'), 2
             FROM pending WHERE n > 0",
            message_kind = kinds::MESSAGE,
            state_kind = kinds::EXECUTION_STATE,
        ),
    );
    let column = |f: &dyn Fn(&NewTurn) -> Option<String>| -> Vec<Option<String>> {
        turns.iter().map(|turn| f(turn)).collect()
    };
    let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                                  $6::jsonb[], $7::int8[], $8::text[], $9::text[], $10::text[],
                                  $11::text[], $12::bool[], $13::text[], $14::text[],
                                  $15::jsonb[], $16::text[], $17::jsonb[], $18::text[],
                                  $19::bool[], $21::text[], $22::text[], $23::text[],
                                  $24::text[])
                 WITH ORDINALITY AS i(thread_key, execution_id, execute_id, request_hash,
                                      delivery, metadata, generation, harness, prompt_ref,
                                      repo, agents_md_override, new_assignment, message_id,
                                      role, parts, user_id, message_metadata,
                                      message_request_hash, needs_outbox, principal_kind,
                                      principal_id, principal_name, peer, ord)),
         created AS (
             INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref,
                                              state, repo, agents_md_override)
             SELECT i.thread_key,
                    COALESCE((SELECT max(x.assignment_generation) FROM runtime_assignments x
                              WHERE x.thread_key = i.thread_key), 0) + 1,
                    i.harness, i.prompt_ref, 'active', i.repo, i.agents_md_override
             FROM input i WHERE i.new_assignment
             RETURNING thread_key, assignment_generation),
         generation AS (
             SELECT i.thread_key, COALESCE(c.assignment_generation, i.generation) AS n
             FROM input i LEFT JOIN created c USING (thread_key)),
         message AS (
             INSERT INTO messages (id, thread_key, assignment_generation, role, parts, user_id,
                                   metadata, delivered_execution_id)
             SELECT i.message_id, i.thread_key, g.n, i.role, i.parts, i.user_id,
                    i.message_metadata, i.execution_id
             FROM input i JOIN generation g USING (thread_key)
             WHERE i.message_id IS NOT NULL
             RETURNING thread_key, id, role, parts, user_id),
         execution AS (
             INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                     execute_id, request_hash, status, delivery, metadata)
             SELECT i.execution_id, i.thread_key, g.n, i.harness, i.execute_id, i.request_hash,
                    'queued', i.delivery, i.metadata
             FROM input i JOIN generation g USING (thread_key)
             RETURNING execution_id),
         bound AS (
             UPDATE messages m SET delivered_execution_id = i.execution_id
             FROM input i
             WHERE m.thread_key = i.thread_key AND m.delivered_execution_id IS NULL
             RETURNING m.thread_key),
         pending AS (
             SELECT i.thread_key, i.execution_id, i.ord,
                    (SELECT count(*) FROM bound b WHERE b.thread_key = i.thread_key)
                    + (SELECT count(*) FROM message m WHERE m.thread_key = i.thread_key) AS n
             FROM input i),
         {trail},
         remembered AS (
             INSERT INTO message_requests (thread_key, message_id, request_hash, response_json)
             SELECT i.thread_key, i.message_id, i.message_request_hash,
                    jsonb_build_object('ok', true, 'message_id', i.message_id,
                                       'stored_event_id', min(t.event_id))
             FROM input i JOIN trail t ON t.thread_key = i.thread_key
             WHERE i.message_request_hash IS NOT NULL
             GROUP BY i.thread_key, i.message_id, i.message_request_hash
             RETURNING 1),
         outbox AS (
             INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state)
             SELECT p.execution_id, p.thread_key, i.delivery, 'awaiting_terminal'
             FROM pending p JOIN input i USING (thread_key)
             WHERE i.needs_outbox AND p.n > 0
             RETURNING 1),
         queued AS (
             INSERT INTO queue_messages (execution_id, thread_key)
             SELECT p.execution_id, p.thread_key FROM pending p
             WHERE $20::text IS NOT NULL AND p.n > 0
             ON CONFLICT (execution_id) DO NOTHING
             RETURNING 1),
         audited AS (
             INSERT INTO audit_log ({AUDIT_COLUMNS})
             SELECT i.principal_kind, i.principal_id, i.principal_name, i.peer, 'execute',
                    i.thread_key, i.execution_id, NULL
             FROM input i JOIN pending p USING (thread_key) WHERE p.n > 0)
         SELECT p.n, g.n FROM pending p JOIN generation g USING (thread_key) ORDER BY p.ord"
    ))
    .bind(column(&|t| Some(t.call.request.thread_key.clone())))
    .bind(column(&|t| Some(t.execution_id.to_string())))
    .bind(column(&|t| Some(t.execute_id.clone())))
    .bind(column(&|t| Some(t.call.request.request_hash.clone())))
    .bind(
        turns
            .iter()
            .map(|t| Json(&t.call.request.delivery))
            .collect::<Vec<_>>(),
    )
    .bind(
        turns
            .iter()
            .map(|t| &t.call.request.metadata)
            .collect::<Vec<_>>(),
    )
    .bind(
        turns
            .iter()
            .map(|t| t.assignment.assignment_generation)
            .collect::<Vec<_>>(),
    )
    .bind(column(&|t| Some(t.assignment.harness.as_str().to_owned())))
    .bind(column(&|t| Some(t.assignment.prompt_ref.clone())))
    .bind(column(&|t| t.assignment.repo.clone()))
    .bind(column(&|t| t.call.workspace.agents_md_override.clone()))
    .bind(turns.iter().map(|t| t.new_assignment).collect::<Vec<_>>())
    .bind(column(&|t| t.message_id.clone()))
    .bind(column(&|t| t.message.map(|m| m.role.clone())))
    .bind(
        turns
            .iter()
            .map(|t| t.message.map(|m| Json(&m.parts)))
            .collect::<Vec<_>>(),
    )
    .bind(column(&|t| t.message.and_then(|m| m.user_id.clone())))
    .bind(
        turns
            .iter()
            .map(|t| t.message.map(|m| &m.metadata))
            .collect::<Vec<_>>(),
    )
    .bind(column(&|t| {
        t.message
            .filter(|m| m.message_id.is_some())
            .map(|m| m.request_hash.clone())
    }))
    .bind(
        turns
            .iter()
            .map(|t| !t.call.request.delivery.is_dev())
            .collect::<Vec<_>>(),
    )
    .bind(queue_channel)
    .bind(column(&|t| Some(t.call.request.actor.kind.as_str().to_owned())))
    .bind(column(&|t| Some(t.call.request.actor.id.clone())))
    .bind(column(&|t| Some(t.call.request.actor.name.clone())))
    .bind(column(&|t| t.call.request.actor.peer.clone()))
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows)
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
