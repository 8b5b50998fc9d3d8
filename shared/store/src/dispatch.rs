//! What the dispatcher does to executions: claim with a lease, heartbeat, hand the turn's
//! messages over, append harness events, finish, hand back. Every write of a lease holder
//! is fenced by the expected status AND the holder (`worker_id` + `attempt`, see
//! [`Lease`]): a worker whose lease was taken over changes nothing. Every state change is
//! one conditional statement that also writes its `execution_state` event (a data-
//! modifying CTE: `WITH t AS (UPDATE … RETURNING …) INSERT INTO execution_events …`).

use crate::error::optional_column;
use crate::events::{self, kinds};
use crate::StoreError;
use crate::{harness_reports, wakeups};
use centaur_core::api::MessagePart;
use centaur_core::{ExecutionStatus, TerminalReason};
use serde_json::{json, Value};
use sqlx::{FromRow, PgPool, Row};
use std::sync::Arc;
use std::time::Duration;

const ACTIVE: &str = "('running','cancel_requested')";
const TERMINAL: &str = "('completed','failed_permanent','cancelled')";

/// The fence of every write a lease holder makes (binds `$1` execution, `$2` worker,
/// `$3` attempt).
const HELD: &str = "execution_id = $1 AND worker_id = $2 AND attempt = $3
                    AND status IN ('running','cancel_requested')";

/// Who holds an execution: the claim's worker and its number. A later claim — by another
/// worker, or by the same one after its lease expired — fences off every earlier holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub execution_id: String,
    /// The execution's thread (whose followers a write under the lease wakes).
    pub thread_key: String,
    pub worker_id: String,
    pub attempt: i32,
}

/// The columns the dispatcher works with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedExecution {
    pub execution_id: String,
    pub thread_key: String,
    /// The stored harness name, as written. Deliberately not parsed here: the claim has
    /// already committed, and a name this build does not know makes the turn unrunnable
    /// (the dispatcher fails it with `sandbox_start_failed`) instead of failing the claim,
    /// which would hand the execution back to be claimed again forever.
    pub harness: String,
    /// `running` or `cancel_requested` (the column's CHECK allows only known statuses).
    #[sqlx(try_from = "String")]
    pub status: ExecutionStatus,
    /// The claimer (the lease holder).
    pub worker_id: String,
    /// The claim's number (1 for the first claim).
    pub attempt: i32,
    pub sandbox_id: Option<String>,
    pub turn_sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub claimed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub hard_deadline_at: Option<chrono::DateTime<chrono::Utc>>,
    pub delivery: Value,
    /// The assignment generation the execution belongs to (the `n` of the thread's branch).
    pub assignment_generation: i64,
    /// The thread's repository (normal form, see `centaur_core::RepoRef`), if any.
    pub repo: Option<String>,
    /// The thread's `agents_md_override` from spawn, if any.
    pub agents_md_override: Option<String>,
    /// The receipt of the queue message behind this claim: the claimer's own, or (for a
    /// reclaim after a crash, which has none) the one the previous holder received.
    pub queue_receipt: Option<String>,
    /// The thread's live sandbox session when the claim was made (`sandbox_sessions`,
    /// read by the claim's statement): its sandbox, harness and harness session id.
    pub session_sandbox_id: Option<String>,
    pub session_harness: Option<String>,
    pub session_agent_thread_id: Option<String>,
    /// The sandbox that ran the thread's previous turn (the newest earlier execution whose
    /// turn was sent), `None` on the thread's first turn.
    pub previous_sandbox_id: Option<String>,
    /// The sandbox this claim started the turn in (the thread's live session of its
    /// harness), as [`start_turn`] would have: the turn is recorded as sent there, with its
    /// `execution_started` event. `None`: the claim started nothing.
    pub started_in: Option<String>,
    /// The turn's messages, read by the claim that started it (`started_in`).
    pub start_messages: Option<sqlx::types::Json<Vec<TurnMessageRow>>>,
}

impl ClaimedExecution {
    /// True when an earlier attempt already sent the turn to a sandbox (re-attach path);
    /// a turn this claim started ([`Self::started_in`]) is not sent yet.
    pub fn turn_was_sent(&self) -> bool {
        self.turn_sent_at.is_some() && self.sandbox_id.is_some() && self.started_in.is_none()
    }

    /// Milliseconds between acceptance and this claim.
    pub fn queue_delay_ms(&self) -> i64 {
        self.claimed_at
            .map(|claimed| (claimed - self.created_at).num_milliseconds().max(0))
            .unwrap_or(0)
    }

    /// The lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            execution_id: self.execution_id.clone(),
            thread_key: self.thread_key.clone(),
            worker_id: self.worker_id.clone(),
            attempt: self.attempt,
        }
    }
}

/// The result of trying to claim an execution.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// This worker now holds the lease.
    Claimed(Box<ClaimedExecution>),
    /// An older execution of the thread is not finished yet: try again later.
    WaitingForThread,
    /// Another worker holds a live lease.
    HeldElsewhere,
    /// Terminal already, or unknown: the message is stale.
    Finished,
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Claims `execution_id` for `worker_id`: `queued|retry_wait`, or `running|cancel_requested`
/// whose lease expired. Refused while an older execution of the same thread is unfinished
/// (or another one runs). `receipt` is the queue message that woke this claim (`None` for
/// a reclaim by the recovery loop, which then adopts the stored one). A batch of one
/// [`claim_many`].
pub async fn claim(
    pool: &PgPool,
    execution_id: &str,
    worker_id: &str,
    receipt: Option<&str>,
    lease: Duration,
    silence: Duration,
    hard: Duration,
) -> Result<ClaimOutcome, StoreError> {
    let terms = ClaimTerms {
        worker_id: Arc::from(worker_id),
        lease,
        silence,
        hard,
    };
    let call = ClaimCall {
        execution_id,
        receipt,
    };
    only_answer(claim_many(pool, &terms, &[call]).await)
}

/// What every claim of a worker is made with: the claimer and its lease, silence and hard
/// timeouts.
#[derive(Debug, Clone)]
pub struct ClaimTerms {
    pub worker_id: Arc<str>,
    pub lease: Duration,
    pub silence: Duration,
    pub hard: Duration,
}

/// One claim of a batch: the execution and the queue message that woke it, if any.
#[derive(Debug, Clone, Copy)]
pub struct ClaimCall<'a> {
    pub execution_id: &'a str,
    pub receipt: Option<&'a str>,
}

/// Claims each of `calls` (distinct executions, of distinct threads) as [`claim`] would,
/// in one statement, and answers each in order. If the statement fails for several, each
/// is tried again alone, so each gets its own answer.
///
/// One statement: the claims, their `execution_state` events, and what each turn needs to
/// start (the thread's repository, its live sandbox session, the sandbox of its previous
/// turn). Two claims of one thread cannot both win without a lock: only the thread's
/// oldest unfinished execution is claimable, and that one row is taken by one of them
/// (the loser re-reads it and finds it running); a stale view of an older execution only
/// defers a claim, never lets two run. The check reads only the thread's unfinished
/// executions older than the claimed one (index `executions_unfinished`) and its running
/// one (index `executions_running`), whatever its history and however many turns wait
/// behind.
///
/// A turn never sent whose thread has a live sandbox session of its harness is started in
/// that sandbox by the same statement, as [`start_turn`] would
/// ([`ClaimedExecution::started_in`]): the sandbox and the moment the turn is sent, the
/// `execution_started` event and the turn's messages. The dispatcher still checks that the
/// sandbox lives before it writes the turn; if it does not, the turn is started again in
/// the sandbox it gets instead (a second `execution_started`).
pub async fn claim_many(
    pool: &PgPool,
    terms: &ClaimTerms,
    calls: &[ClaimCall<'_>],
) -> Vec<Result<ClaimOutcome, StoreError>> {
    together_or_alone(calls, "claims", |calls| claim_together(pool, terms, calls)).await
}

/// [`claim_many`]'s statement.
async fn claim_together(
    pool: &PgPool,
    terms: &ClaimTerms,
    calls: &[ClaimCall<'_>],
) -> Result<Vec<ClaimOutcome>, StoreError> {
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT thread_key, execution_id, '{state_kind}' AS event_kind,
                    jsonb_build_object('status', status, 'attempt', attempt,
                                       'worker_id', worker_id) AS event_json, 1 AS ord
             FROM claimed
             UNION ALL
             SELECT thread_key, execution_id, '{started_kind}',
                    jsonb_build_object('harness', harness, 'sandbox_id', sandbox_id,
                                       'queue_delay_ms', queue_delay_ms, 'attempt', attempt),
                    2
             FROM claimed WHERE started_now",
            state_kind = kinds::EXECUTION_STATE,
            started_kind = kinds::EXECUTION_STARTED,
        ),
    );
    let blocked = blocked_cte();
    let session = LIVE_SESSION_OF_UNSENT_TURN;
    let messages = turn_messages("c.execution_id");
    let ids: Vec<&str> = calls.iter().map(|call| call.execution_id).collect();
    let receipts: Vec<Option<&str>> = calls.iter().map(|call| call.receipt).collect();
    let rows = sqlx::query(&format!(
        "WITH wanted AS (
             SELECT execution_id, receipt, n
             FROM unnest($1::text[], $6::text[]) WITH ORDINALITY AS u(execution_id, receipt, n)),
         target AS (
             SELECT e.execution_id, e.thread_key, e.seq, e.status
             FROM executions e JOIN wanted w USING (execution_id)),
         {blocked},
         claimed AS (
             UPDATE executions SET
                 status = CASE WHEN status = 'cancel_requested' THEN 'cancel_requested' ELSE 'running' END,
                 worker_id = $2,
                 lease_expires_at = now() + make_interval(secs => $3),
                 claimed_at = now(),
                 started_at = COALESCE(started_at, now()),
                 last_progress_at = now(),
                 silence_deadline_at = now() + make_interval(secs => $4),
                 hard_deadline_at = COALESCE(hard_deadline_at, now() + make_interval(secs => $5)),
                 attempt = attempt + 1,
                 queue_receipt = COALESCE(w.receipt, queue_receipt),
                 sandbox_id = COALESCE({session}, sandbox_id),
                 turn_sent_at = CASE WHEN {session} IS NULL THEN turn_sent_at ELSE now() END,
                 updated_at = now()
             FROM wanted w, blocked b
             WHERE executions.execution_id = w.execution_id AND b.execution_id = w.execution_id
               AND NOT b.blocked
               AND (executions.status IN ('queued','retry_wait')
                    OR (executions.status IN {ACTIVE} AND executions.lease_expires_at < now()))
             RETURNING executions.execution_id, executions.thread_key, executions.harness,
                       executions.status, executions.worker_id, executions.attempt,
                       executions.sandbox_id, executions.turn_sent_at, executions.created_at,
                       executions.claimed_at, executions.hard_deadline_at, executions.delivery,
                       executions.assignment_generation, executions.queue_receipt,
                       executions.seq,
                       -- Both are this statement's now() only when it started the turn.
                       COALESCE(executions.turn_sent_at = executions.claimed_at, false)
                           AS started_now,
                       GREATEST(0, floor(extract(epoch FROM
                           executions.claimed_at - executions.created_at) * 1000))::bigint
                           AS queue_delay_ms),
         {trail}
         SELECT t.status AS found_status, COALESCE(b.blocked, false) AS blocked,
                c.execution_id IS NOT NULL AS won,
                c.execution_id, c.thread_key, c.harness, c.status, c.worker_id, c.attempt,
                c.sandbox_id, c.turn_sent_at, c.created_at, c.claimed_at, c.hard_deadline_at,
                c.delivery, c.assignment_generation, c.queue_receipt, a.repo, a.agents_md_override,
                s.sandbox_id AS session_sandbox_id, s.harness AS session_harness,
                s.agent_thread_id AS session_agent_thread_id,
                (SELECT p.sandbox_id FROM executions p
                 WHERE p.thread_key = c.thread_key AND p.seq < c.seq
                   AND p.sandbox_id IS NOT NULL AND p.turn_sent_at IS NOT NULL
                 ORDER BY p.seq DESC LIMIT 1) AS previous_sandbox_id,
                CASE WHEN c.started_now THEN c.sandbox_id END AS started_in,
                CASE WHEN c.started_now THEN {messages} END AS start_messages
         FROM wanted w
         LEFT JOIN target t ON t.execution_id = w.execution_id
         LEFT JOIN blocked b ON b.execution_id = w.execution_id
         LEFT JOIN claimed c ON c.execution_id = w.execution_id
         LEFT JOIN runtime_assignments a
           ON a.thread_key = c.thread_key AND a.assignment_generation = c.assignment_generation
         LEFT JOIN sandbox_sessions s ON s.thread_key = c.thread_key AND s.state = 'live'
         ORDER BY w.n"
    ))
    .bind(&ids)
    .bind(&*terms.worker_id)
    .bind(secs(terms.lease))
    .bind(secs(terms.silence))
    .bind(secs(terms.hard))
    .bind(&receipts)
    .fetch_all(pool)
    .await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut woke: Vec<String> = Vec::new();
    for row in &rows {
        let outcome = claim_outcome(row)?;
        if let ClaimOutcome::Claimed(claimed) = &outcome {
            woke.push(claimed.thread_key.clone());
        }
        outcomes.push(outcome);
    }
    let threads: Vec<&str> = woke.iter().map(String::as_str).collect();
    wakeups::announce(pool, &threads, None).await;
    Ok(outcomes)
}

/// What one row of the claim statement says of its claim.
fn claim_outcome(row: &sqlx::postgres::PgRow) -> Result<ClaimOutcome, StoreError> {
    if row.try_get::<bool, _>("won")? {
        return Ok(ClaimOutcome::Claimed(Box::new(ClaimedExecution::from_row(
            row,
        )?)));
    }
    let found: Option<ExecutionStatus> =
        optional_column("executions.status", row.try_get("found_status")?)?;
    let terminal = found.is_none_or(ExecutionStatus::is_terminal);
    Ok(if terminal {
        ClaimOutcome::Finished
    } else if row.try_get::<bool, _>("blocked")? {
        ClaimOutcome::WaitingForThread
    } else {
        ClaimOutcome::HeldElsewhere
    })
}

/// The sandbox a claim starts the turn in, inside its `UPDATE executions` (whose old row
/// it reads): the thread's live session of the execution's harness, for a turn never sent
/// that is claimed from `queued|retry_wait`. NULL otherwise.
const LIVE_SESSION_OF_UNSENT_TURN: &str = "(SELECT s.sandbox_id FROM sandbox_sessions s
      WHERE s.thread_key = executions.thread_key AND s.state = 'live'
        AND s.harness = executions.harness AND executions.turn_sent_at IS NULL
        AND executions.status IN ('queued','retry_wait'))";

/// The messages bound to the execution `execution` names (a parameter or a column),
/// oldest first, as one jsonb array of [`TurnMessageRow`]s (`[]` when none): what starting
/// a turn reads.
fn turn_messages(execution: &str) -> String {
    format!(
        "COALESCE((SELECT jsonb_agg(jsonb_build_object('id', m.id,
              'role', m.role, 'parts', m.parts) ORDER BY m.seq)
          FROM messages m WHERE m.delivered_execution_id = {execution}), '[]')"
    )
}

/// The claim's wait check, a CTE named `blocked` over the CTE `target` (the executions to
/// claim): for each, whether its thread has an older unfinished execution (read off
/// `executions_unfinished` below its `seq`) or another running one (off
/// `executions_running`). Neither probe reads the turns queued behind it.
fn blocked_cte() -> String {
    format!(
        "blocked AS (
             SELECT t.execution_id,
                    EXISTS (
                        SELECT 1 FROM executions o
                        WHERE o.thread_key = t.thread_key AND o.seq < t.seq
                          AND o.status NOT IN {TERMINAL})
                    OR EXISTS (
                        SELECT 1 FROM executions o
                        WHERE o.thread_key = t.thread_key AND o.execution_id <> t.execution_id
                          AND o.status IN {ACTIVE}) AS blocked
             FROM target t)"
    )
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Heartbeat {
    /// The API asked to cancel the turn.
    pub cancel_requested: bool,
    /// No progress for longer than the silence timeout.
    pub silence_exceeded: bool,
    /// Past the hard deadline.
    pub hard_exceeded: bool,
}

/// Extends the lease by `lease` if `holder` still holds it. `None`: the lease was lost.
pub async fn heartbeat(
    pool: &PgPool,
    holder: &Lease,
    lease: Duration,
) -> Result<Option<Heartbeat>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE executions SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
         WHERE {HELD}
         RETURNING status = 'cancel_requested' AS cancel_requested,
                   COALESCE(silence_deadline_at < now(), false) AS silence_exceeded,
                   COALESCE(hard_deadline_at < now(), false) AS hard_exceeded"
    ))
    .bind(&holder.execution_id)
    .bind(&holder.worker_id)
    .bind(holder.attempt)
    .bind(secs(lease))
    .fetch_optional(pool)
    .await?)
}

/// A message handed to a turn.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct TurnMessageRow {
    pub id: String,
    pub role: String,
    /// Read once from the stored jsonb, tolerantly: never an error that would hand the
    /// turn back (see the `parts` module).
    #[sqlx(try_from = "crate::parts::StoredParts")]
    #[serde(deserialize_with = "crate::parts::deserialize")]
    pub parts: Vec<MessagePart>,
}

/// Records the sandbox and the moment the turn is sent (if `holder` still holds the
/// execution), and returns the messages bound to it when it was created, oldest first (a
/// re-sent turn after `turn.unknown` carries the same messages). `None`: the lease was lost.
pub async fn take_turn_messages(
    pool: &PgPool,
    holder: &Lease,
    sandbox_id: &str,
) -> Result<Option<Vec<TurnMessageRow>>, StoreError> {
    let mut tx = pool.begin().await?;
    let held: Option<String> = sqlx::query_scalar(&format!(
        "UPDATE executions SET sandbox_id = $4, turn_sent_at = COALESCE(turn_sent_at, now()),
             updated_at = now()
         WHERE {HELD} RETURNING execution_id"
    ))
    .bind(&holder.execution_id)
    .bind(&holder.worker_id)
    .bind(holder.attempt)
    .bind(sandbox_id)
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(None);
    }
    let messages = sqlx::query_as(
        "SELECT id, role, parts FROM messages WHERE delivered_execution_id = $1 ORDER BY seq",
    )
    .bind(&holder.execution_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(messages))
}

/// Records the `execution_started` event (the sandbox the turn starts in) if `holder`
/// still holds the execution. `false`: the lease was lost, nothing was written.
pub async fn record_start(
    pool: &PgPool,
    holder: &Lease,
    started: &Value,
) -> Result<bool, StoreError> {
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT thread_key, execution_id, '{}' AS event_kind, $4::jsonb AS event_json,
                    1 AS ord
             FROM held",
            kinds::EXECUTION_STARTED
        ),
    );
    let held: i64 = sqlx::query_scalar(&format!(
        "WITH held AS (
             UPDATE executions SET updated_at = now() WHERE {HELD}
             RETURNING thread_key, execution_id),
         {trail}
         SELECT count(*) FROM held"
    ))
    .bind(&holder.execution_id)
    .bind(&holder.worker_id)
    .bind(holder.attempt)
    .bind(started)
    .fetch_one(pool)
    .await?;
    announce_if(pool, held > 0, holder).await;
    Ok(held > 0)
}

/// Starts the turn in `sandbox_id` if `holder` still holds the execution, in one
/// statement: the `execution_started` event (`started`), the sandbox and the moment the
/// turn is sent (kept from an earlier attempt), and the messages bound to the execution,
/// oldest first — what [`record_start`] and [`take_turn_messages`] write and read, in one
/// round trip. Recording the send before the line is written is safe: a turn a sandbox
/// never received answers `turn.unknown` on re-attach and is sent again. `None`: the lease
/// was lost, nothing was written.
pub async fn start_turn(
    pool: &PgPool,
    holder: &Lease,
    sandbox_id: &str,
    started: &Value,
) -> Result<Option<Vec<TurnMessageRow>>, StoreError> {
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT thread_key, execution_id, '{}' AS event_kind, $5::jsonb AS event_json,
                    1 AS ord
             FROM held",
            kinds::EXECUTION_STARTED
        ),
    );
    let messages = turn_messages("$1");
    let (held, messages): (i64, sqlx::types::Json<Vec<TurnMessageRow>>) = sqlx::query_as(&format!(
        "WITH held AS (
                 UPDATE executions SET sandbox_id = $4,
                     turn_sent_at = COALESCE(turn_sent_at, now()), updated_at = now()
                 WHERE {HELD}
                 RETURNING thread_key, execution_id),
             {trail}
             SELECT (SELECT count(*) FROM held), {messages}"
    ))
    .bind(&holder.execution_id)
    .bind(&holder.worker_id)
    .bind(holder.attempt)
    .bind(sandbox_id)
    .bind(started)
    .fetch_one(pool)
    .await?;
    if held == 0 {
        return Ok(None);
    }
    wakeups::announce(pool, &[&holder.thread_key], None).await;
    Ok(Some(messages.0))
}

/// The CLI facts of the `turn.started` events `events_from` yields (a `FROM` list with
/// columns `e`, the event, and `n`, its place; `harness_cli_reports`, see
/// [`crate::harness_reports`]) as a CTE named `reports` (with its leading comma): the last
/// report per harness wins, and one that changes nothing recent is not written. Empty
/// when `batch` holds no `turn.started` event: most batches hold none, and a statement
/// Postgres does not have to set up the upsert for costs less on every call.
fn reports_cte<'v>(events_from: &str, batch: impl IntoIterator<Item = &'v Value>) -> String {
    let reports_a_turn_start = batch
        .into_iter()
        .any(|event| event.get("type").and_then(Value::as_str) == Some("turn.started"));
    if !reports_a_turn_start {
        return String::new();
    }
    let upsert = harness_reports::upsert_sql(&format!(
        "SELECT DISTINCT ON (e->>'harness') e->>'harness' AS harness,
                (e->>'cli_present')::boolean AS cli_present, e->>'cli_version' AS cli_version
         FROM {events_from}
         WHERE e->>'type' = 'turn.started' AND jsonb_typeof(e->'harness') = 'string'
           AND jsonb_typeof(e->'cli_present') = 'boolean'
         ORDER BY e->>'harness', n DESC"
    ));
    format!(",\n reports AS ({upsert} RETURNING 1)")
}

/// Appends a batch of harness events and pushes the silence deadline (output is
/// progress), if `holder` still holds the execution, with the CLI facts of any
/// `turn.started` among them — one statement. `false`: the lease was lost, nothing was
/// written.
pub async fn append_harness_events(
    pool: &PgPool,
    holder: &Lease,
    silence: Duration,
    batch: &[Value],
) -> Result<bool, StoreError> {
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT held.thread_key, held.execution_id, '{}' AS event_kind, e AS event_json,
                    n AS ord
             FROM held, UNNEST($5::jsonb[]) WITH ORDINALITY AS t(e, n)",
            kinds::HARNESS_EVENT
        ),
    );
    let reports = reports_cte(
        "(SELECT 1 FROM held LIMIT 1) AS g, UNNEST($5::jsonb[]) WITH ORDINALITY AS t(e, n)",
        batch,
    );
    let held: i64 = sqlx::query_scalar(&format!(
        "WITH held AS (
             UPDATE executions SET last_progress_at = now(),
                 silence_deadline_at = now() + make_interval(secs => $4), updated_at = now()
             WHERE {HELD}
             RETURNING thread_key, execution_id),
         {trail}{reports}
         SELECT count(*) FROM held"
    ))
    .bind(&holder.execution_id)
    .bind(&holder.worker_id)
    .bind(holder.attempt)
    .bind(secs(silence))
    .bind(batch)
    .fetch_one(pool)
    .await?;
    announce_if(pool, held > 0, holder).await;
    Ok(held > 0)
}

/// The highest harness event `seq` stored for an execution (0 when none).
pub async fn max_harness_seq(pool: &PgPool, execution_id: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT max((event_json->>'seq')::bigint) FROM execution_events
         WHERE execution_id = $1 AND event_kind = 'harness_event'",
    )
    .bind(execution_id)
    .fetch_one(pool)
    .await?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// The end of an execution, as the dispatcher saw it.
#[derive(Debug, Clone)]
pub struct Finish {
    pub reason: TerminalReason,
    pub result_text: Option<String>,
    pub error_text: Option<String>,
    pub agent_thread_id: Option<String>,
    /// The `execution_summary` event body.
    pub summary: Value,
    /// What a deliverer posts (`{"text": …}`).
    pub delivery_payload: Value,
    /// Harness events not stored yet (the turn's last batch), stored before the end.
    pub events: Vec<Value>,
    /// The sandbox that ran a completed turn: the thread's session row, if it still names
    /// that sandbox, records the harness session (`agent_thread_id`) and its use.
    pub session_sandbox_id: Option<String>,
    /// With the queue in this database ([`QueueRelease`]): the execution's message goes
    /// and the thread's next turn is woken, in the same statement.
    pub queue: Option<QueueRelease>,
}

/// What ending a turn does to the Postgres queue (`queue_messages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRelease {
    /// The receipt of the execution's message (the claim's or the adopted one), deleted.
    pub receipt: Option<String>,
    /// `NOTIFY` channel of the queue's receivers (`centaur_queue::postgres::CHANNEL`).
    pub channel: String,
}

/// What [`finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The end was written (`false`: the lease was lost or the execution no longer runs,
    /// and nothing was written).
    pub written: bool,
    /// The thread's next execution waits for its turn: its queue message is visible and
    /// the queue's receivers were woken.
    pub woke_next: bool,
}

/// Finishes an execution `holder` holds, in one statement: the events still pending, the
/// terminal status, its `execution_state` and `execution_summary` events, the outbox row
/// made `pending` and its `final_delivery_ready` event — and, as `finish` asks, the
/// thread's session row and (Postgres queue) the queue message deleted and the thread's
/// next waiting execution woken. Nothing is written unless the end is. A batch of one
/// [`finish_many`].
pub async fn finish(
    pool: &PgPool,
    holder: &Lease,
    finish: &Finish,
) -> Result<Finished, StoreError> {
    only_answer(finish_many(pool, &[FinishCall { holder, finish }]).await)
}

/// One end of a batch: the lease it is written under, and the end.
#[derive(Debug, Clone, Copy)]
pub struct FinishCall<'a> {
    pub holder: &'a Lease,
    pub finish: &'a Finish,
}

/// Writes each of `calls` (ends of distinct threads) as [`finish`] would, in one
/// statement, and answers each in order. If the statement fails for several, each is
/// written again alone, so each gets its own answer.
pub async fn finish_many(
    pool: &PgPool,
    calls: &[FinishCall<'_>],
) -> Vec<Result<Finished, StoreError>> {
    together_or_alone(calls, "ends", |calls| finish_together(pool, calls)).await
}

/// The answer of a batch of one.
fn only_answer<T>(answers: Vec<Result<T, StoreError>>) -> Result<T, StoreError> {
    answers
        .into_iter()
        .next()
        .unwrap_or(Err(StoreError::Database(sqlx::Error::RowNotFound)))
}

/// Writes `calls` together with `write`, one answer per call; if that fails for several,
/// writes each alone, so each gets its own answer (one bad row does not fail the rest).
async fn together_or_alone<'c, C, T, F>(
    calls: &'c [C],
    what: &str,
    write: impl Fn(&'c [C]) -> F,
) -> Vec<Result<T, StoreError>>
where
    F: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    match write(calls).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(err) if calls.len() <= 1 => vec![Err(err)],
        Err(err) => {
            tracing::warn!(%err, batch = calls.len(), "a batch of {what} failed; writing each alone");
            let mut answers = Vec::with_capacity(calls.len());
            for call in calls {
                let alone = write(std::slice::from_ref(call)).await;
                answers.push(alone.and_then(|one| {
                    one.into_iter()
                        .next()
                        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
                }));
            }
            answers
        }
    }
}

/// The columns of one end, bound as arrays (one element per end).
#[derive(Default)]
struct EndColumns<'a> {
    execution_ids: Vec<&'a str>,
    worker_ids: Vec<&'a str>,
    attempts: Vec<i32>,
    statuses: Vec<&'static str>,
    reasons: Vec<&'static str>,
    result_texts: Vec<Option<&'a str>>,
    error_texts: Vec<Option<&'a str>>,
    agent_thread_ids: Vec<Option<&'a str>>,
    /// The statuses the end may leave, comma-separated.
    sources: Vec<String>,
    states: Vec<Value>,
    summaries: Vec<&'a Value>,
    payloads: Vec<&'a Value>,
    /// The pending harness events, one jsonb array per end.
    events: Vec<Value>,
    session_sandbox_ids: Vec<Option<&'a str>>,
    receipts: Vec<Option<uuid::Uuid>>,
    releases_queue: Vec<bool>,
}

impl<'a> EndColumns<'a> {
    fn of(calls: &[FinishCall<'a>]) -> Self {
        let mut columns = Self::default();
        for FinishCall { holder, finish } in calls {
            let status = finish.reason.status();
            let sources: Vec<&str> = ExecutionStatus::sources_of(status)
                .into_iter()
                .filter(|from| {
                    matches!(
                        from,
                        ExecutionStatus::Running | ExecutionStatus::CancelRequested
                    )
                })
                .map(ExecutionStatus::as_str)
                .collect();
            let mut state =
                json!({"status": status.as_str(), "terminal_reason": finish.reason.as_str()});
            if let Some(text) = &finish.result_text {
                state["result_text"] = json!(text);
            }
            if let Some(text) = &finish.error_text {
                state["error_text"] = json!(text);
            }
            columns.execution_ids.push(&holder.execution_id);
            columns.worker_ids.push(&holder.worker_id);
            columns.attempts.push(holder.attempt);
            columns.statuses.push(status.as_str());
            columns.reasons.push(finish.reason.as_str());
            columns.result_texts.push(finish.result_text.as_deref());
            columns.error_texts.push(finish.error_text.as_deref());
            columns
                .agent_thread_ids
                .push(finish.agent_thread_id.as_deref());
            columns.sources.push(sources.join(","));
            columns.states.push(state);
            columns.summaries.push(&finish.summary);
            columns.payloads.push(&finish.delivery_payload);
            columns.events.push(Value::Array(finish.events.clone()));
            columns
                .session_sandbox_ids
                .push(finish.session_sandbox_id.as_deref());
            columns.receipts.push(
                finish
                    .queue
                    .as_ref()
                    .and_then(|queue| queue.receipt.as_deref())
                    .and_then(|receipt| uuid::Uuid::parse_str(receipt).ok()),
            );
            columns.releases_queue.push(finish.queue.is_some());
        }
        columns
    }
}

/// [`finish_many`]'s statement.
async fn finish_together(
    pool: &PgPool,
    calls: &[FinishCall<'_>],
) -> Result<Vec<Finished>, StoreError> {
    let columns = EndColumns::of(calls);
    // The pending harness events first, then the end's three events after them.
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT done.thread_key, done.execution_id, '{harness_kind}' AS event_kind,
                    t.e AS event_json, t.n AS ord
             FROM done, jsonb_array_elements(done.events) WITH ORDINALITY AS t(e, n)
             UNION ALL
             SELECT thread_key, execution_id, '{state_kind}', state,
                    jsonb_array_length(events) + 1 FROM done
             UNION ALL
             SELECT thread_key, execution_id, '{summary_kind}', summary,
                    jsonb_array_length(events) + 2 FROM done
             UNION ALL
             SELECT done.thread_key, done.execution_id, '{ready_kind}',
                    jsonb_build_object('delivery', outbox.delivery, 'status', done.status),
                    jsonb_array_length(done.events) + 3
             FROM done JOIN outbox USING (execution_id)",
            harness_kind = kinds::HARNESS_EVENT,
            state_kind = kinds::EXECUTION_STATE,
            summary_kind = kinds::EXECUTION_SUMMARY,
            ready_kind = kinds::FINAL_DELIVERY_READY,
        ),
    );
    let reports = reports_cte(
        "done, jsonb_array_elements(done.events) WITH ORDINALITY AS t(e, n)",
        calls.iter().flat_map(|call| &call.finish.events),
    );
    // The session and the queue parts are written into the statement only when an end
    // has them: Postgres sets up every part of a statement on each call, used or not.
    let session = if calls
        .iter()
        .any(|call| call.finish.session_sandbox_id.is_some())
    {
        ",
         session AS (
             UPDATE sandbox_sessions s
             SET agent_thread_id = COALESCE(done.agent_thread_id, s.agent_thread_id),
                 last_used_at = now(), updated_at = now()
             FROM done
             WHERE s.thread_key = done.thread_key AND s.sandbox_id = done.session_sandbox_id
             RETURNING 1)"
    } else {
        ""
    };
    // A thread's next execution is its oldest unfinished one after this (read off
    // `executions_unfinished` in order; once this one ended, it is the one a claim
    // accepts). Its message is written only when it has none or one put off for later: a
    // visible message is left as it is, and the receivers are woken either way.
    let (queue, woke_next) = if calls.iter().any(|call| call.finish.queue.is_some()) {
        (
            format!(
                ",
         dequeued AS (
             DELETE FROM queue_messages q USING done
             WHERE done.releases_queue AND q.receipt = done.receipt RETURNING 1),
         next AS (
             SELECT done.end_no, oldest.execution_id, oldest.thread_key
             FROM done, LATERAL (
                 SELECT e.execution_id, e.thread_key, e.status FROM executions e
                 WHERE e.thread_key = done.thread_key AND e.execution_id <> done.execution_id
                   AND e.status NOT IN {TERMINAL}
                 ORDER BY e.seq LIMIT 1) AS oldest
             WHERE done.releases_queue AND oldest.status IN ('queued','retry_wait')),
         woken AS (
             INSERT INTO queue_messages (execution_id, thread_key)
             SELECT n.execution_id, n.thread_key FROM next n
             WHERE NOT EXISTS (SELECT 1 FROM queue_messages m
                               WHERE m.execution_id = n.execution_id AND m.visible_at <= now())
             ON CONFLICT (execution_id) DO UPDATE SET visible_at = now()
             WHERE queue_messages.receipt IS NULL
             RETURNING 1)"
            ),
            "EXISTS (SELECT 1 FROM next WHERE next.end_no = u.end_no)",
        )
    } else {
        (String::new(), "false")
    };
    let rows: Vec<(bool, bool)> = sqlx::query_as(&format!(
        "WITH ending AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[],
                                  $11::jsonb[], $12::jsonb[], $13::jsonb[], $14::text[],
                                  $15::uuid[], $16::bool[])
                 WITH ORDINALITY AS u(execution_id, worker_id, attempt, status, reason,
                                      result_text, error_text, agent_thread_id, sources, state,
                                      summary, payload, events, session_sandbox_id, receipt,
                                      releases_queue, end_no)),
         done AS (
             UPDATE executions e SET status = u.status, terminal_reason = u.reason,
                 result_text = u.result_text, error_text = u.error_text,
                 agent_thread_id = COALESCE(u.agent_thread_id, e.agent_thread_id),
                 completed_at = now(), lease_expires_at = NULL, updated_at = now()
             FROM ending u
             WHERE e.execution_id = u.execution_id AND e.worker_id = u.worker_id
               AND e.attempt = u.attempt AND e.status = ANY(string_to_array(u.sources, ','))
             RETURNING e.thread_key, e.execution_id, u.end_no, u.status, u.state, u.summary,
                       u.payload, u.events, u.agent_thread_id, u.session_sandbox_id,
                       u.receipt, u.releases_queue),
         outbox AS (
             UPDATE delivery_outbox o SET state = 'pending', payload = done.payload,
                 next_attempt_at = now(), updated_at = now()
             FROM done
             WHERE o.execution_id = done.execution_id AND o.state = 'awaiting_terminal'
             RETURNING o.execution_id, o.delivery),
         {trail}{reports}{session}{queue}
         SELECT EXISTS (SELECT 1 FROM done WHERE done.end_no = u.end_no), {woke_next}
         FROM ending u ORDER BY u.end_no"
    ))
    .bind(&columns.execution_ids)
    .bind(&columns.worker_ids)
    .bind(&columns.attempts)
    .bind(&columns.statuses)
    .bind(&columns.reasons)
    .bind(&columns.result_texts)
    .bind(&columns.error_texts)
    .bind(&columns.agent_thread_ids)
    .bind(&columns.sources)
    .bind(&columns.states)
    .bind(&columns.summaries)
    .bind(&columns.payloads)
    .bind(&columns.events)
    .bind(&columns.session_sandbox_ids)
    .bind(&columns.receipts)
    .bind(&columns.releases_queue)
    .fetch_all(pool)
    .await?;
    let finished: Vec<Finished> = rows
        .into_iter()
        .map(|(written, woke_next)| Finished { written, woke_next })
        .collect();
    let threads: Vec<&str> = calls
        .iter()
        .zip(&finished)
        .filter(|(_, finished)| finished.written)
        .map(|(call, _)| call.holder.thread_key.as_str())
        .collect();
    let channel = calls
        .iter()
        .zip(&finished)
        .filter(|(_, finished)| finished.woke_next)
        .find_map(|(call, _)| call.finish.queue.as_ref())
        .map(|queue| queue.channel.as_str());
    wakeups::announce(pool, &threads, channel).await;
    Ok(finished)
}

/// Hands an execution `holder` holds back to run again, with its `execution_state` event
/// (`reason`: why), in one statement: `running` becomes `retry_wait` (the next claim
/// re-attaches, or starts the turn if it was never sent); a `cancel_requested` one keeps
/// its status and its lease ends now (the next claim carries the cancel out). `false`:
/// the lease was lost, nothing was written.
pub async fn hand_back(pool: &PgPool, holder: &Lease, why: &str) -> Result<bool, StoreError> {
    let trail = events::insert_cte(
        "trail",
        &format!(
            "SELECT thread_key, execution_id, '{}' AS event_kind,
                    jsonb_build_object('status', status, 'reason', $4::text) AS event_json,
                    1 AS ord
             FROM back",
            kinds::EXECUTION_STATE
        ),
    );
    let back: i64 = sqlx::query_scalar(&format!(
        "WITH back AS (
             UPDATE executions SET
                 status = CASE WHEN status = 'running' THEN 'retry_wait' ELSE status END,
                 worker_id = CASE WHEN status = 'running' THEN NULL ELSE worker_id END,
                 lease_expires_at = CASE WHEN status = 'running' THEN NULL ELSE now() END,
                 updated_at = now()
             WHERE {HELD}
             RETURNING thread_key, execution_id, status),
         {trail}
         SELECT count(*) FROM back"
    ))
    .bind(&holder.execution_id)
    .bind(&holder.worker_id)
    .bind(holder.attempt)
    .bind(why)
    .fetch_one(pool)
    .await?;
    announce_if(pool, back > 0, holder).await;
    Ok(back > 0)
}

/// Wakes the followers of `holder`'s thread after a write under the lease that stored
/// events (`wrote`).
async fn announce_if(pool: &PgPool, wrote: bool, holder: &Lease) {
    if wrote {
        wakeups::announce(pool, &[&holder.thread_key], None).await;
    }
}

/// An execution id with its thread.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExecutionRef {
    pub execution_id: String,
    pub thread_key: String,
}

/// The thread's oldest `queued`/`retry_wait` execution (to wake after one finishes).
pub async fn next_waiting_on_thread(
    pool: &PgPool,
    thread_key: &str,
) -> Result<Option<ExecutionRef>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT execution_id, thread_key FROM executions
         WHERE thread_key = $1 AND status IN ('queued','retry_wait') ORDER BY seq LIMIT 1",
    )
    .bind(thread_key)
    .fetch_optional(pool)
    .await?)
}

/// Executions whose holder's lease expired (a dispatcher died or stalled).
pub async fn expired_leases(pool: &PgPool, limit: i64) -> Result<Vec<ExecutionRef>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT execution_id, thread_key FROM executions
         WHERE status IN {ACTIVE} AND lease_expires_at < now() ORDER BY seq LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// `queued`/`retry_wait` executions untouched for `older_than`; marks them touched so each
/// is re-sent at most once per period.
pub async fn sweep_waiting(
    pool: &PgPool,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<ExecutionRef>, StoreError> {
    Ok(sqlx::query_as(
        "UPDATE executions SET updated_at = now()
         WHERE execution_id IN (
             SELECT execution_id FROM executions
             WHERE status IN ('queued','retry_wait') AND updated_at < now() - make_interval(secs => $1)
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING execution_id, thread_key",
    )
    .bind(secs(older_than))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Counts of executions by status (for metrics).
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT status, count(*) FROM executions GROUP BY status")
            .fetch_all(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thread `deep`: one finished turn, the one to claim (`exe_…02`), and `behind` turns
    /// queued after it; beside it, 100 other threads with 50 finished turns each.
    async fn deep_backlog(pool: &PgPool, behind: i64) {
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                     execute_id, request_hash, status, delivery,
                                     completed_at, terminal_reason)
             SELECT 'exe_' || lpad(to_hex(i), 16, '0'),
                    CASE WHEN i <= $1 + 2 THEN 'deep' ELSE 'other-' || (i % 100) END,
                    1, 'echo', 'x' || i, 'h',
                    CASE WHEN i BETWEEN 2 AND $1 + 2 THEN 'queued' ELSE 'completed' END, '{}',
                    CASE WHEN i BETWEEN 2 AND $1 + 2 THEN NULL ELSE now() END,
                    CASE WHEN i BETWEEN 2 AND $1 + 2 THEN NULL ELSE 'completed' END
             FROM generate_series(1, $1 + 2 + 5000) AS i",
        )
        .bind(behind)
        .execute(pool)
        .await
        .expect("backlog");
        sqlx::query("ANALYZE executions")
            .execute(pool)
            .await
            .expect("analyze");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_claims_wait_check_reads_no_turn_queued_behind_the_claimed_one(pool: PgPool) {
        deep_backlog(&pool, 500).await;
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN WITH target AS (
                 SELECT execution_id, thread_key, seq, status FROM executions
                 WHERE execution_id = 'exe_0000000000000002'),
             {}
             SELECT blocked FROM blocked",
            blocked_cte()
        ))
        .fetch_all(&pool)
        .await
        .expect("explain");
        let plan = plan.join("\n");
        assert!(plan.contains("executions_running"), "{plan}");
        assert!(
            plan.contains("executions_unfinished") && plan.contains("(seq < "),
            "older unfinished executions are a range of the index: {plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_expired_lease_scan_reads_only_running_executions(pool: PgPool) {
        deep_backlog(&pool, 500).await;
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN SELECT execution_id FROM executions
             WHERE status IN {ACTIVE} AND lease_expires_at < now() ORDER BY seq LIMIT 10"
        ))
        .fetch_all(&pool)
        .await
        .expect("explain");
        let plan = plan.join("\n");
        assert!(plan.contains("executions_running"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
