//! Retention: deleting finished data older than its window, in small batches (every
//! DELETE is bounded by the batch size and picks its rows by key through an index), so no
//! statement holds long locks or makes a long transaction. The dispatcher's maintenance
//! loop calls [`prune_once`] with the time it wants to prune as of (tests pass a clock far
//! in the future instead of waiting).
//!
//! What is never pruned, whatever its age:
//! - an execution that is not terminal, the messages bound to it and its events;
//! - messages not yet bound to an execution (the next turn carries them);
//! - thread-level events (no execution) of a thread with an unfinished execution;
//! - the newest [`Policy::keep_newest_turns`] executions of a *live* thread (an active
//!   assignment, or an execution not yet terminal), with their messages: the transcript a
//!   turn carries into a fresh sandbox is read from them (`history::before_execution`);
//! - an execution whose final answer is still being delivered (outbox row not yet
//!   `delivered`/`dead_letter`), or whose usage no dispatcher has counted yet;
//! - the per-thread event counters (the next event continues the thread's sequence).
//!
//! An execution's events go first, in bounded DELETEs outside any transaction; the rows a
//! transcript reads (the execution and its messages) go in one short transaction after the
//! conditions are checked again, so a thread spawned again meanwhile keeps its turns (at
//! worst without the trail of those few).

use crate::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;

/// The terminal statuses, as an SQL list.
const TERMINAL: &str = "('completed','failed_permanent','cancelled')";
/// The other statuses (an unfinished execution), as an SQL list: the rows of the
/// `executions_unfinished` index.
const UNFINISHED: &str = "('queued','running','retry_wait','cancel_requested')";

/// What to prune: each window is `None` when disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Terminal executions (by `completed_at`) with their events, messages, outbox rows,
    /// usage and queue rows; thread-level events and dead-lettered Slack notices (by
    /// `created_at`).
    pub executions: Option<Duration>,
    /// `spawn_requests`, `message_requests`, `release_requests` (by `created_at`).
    pub idempotency: Option<Duration>,
    /// Queue rows of terminal (or vanished) executions (by `created_at`).
    pub queue: Option<Duration>,
    /// Delivered outbox rows and Slack notices (by `delivered_at`).
    pub outbox: Option<Duration>,
    /// Audit log rows (by `at`).
    pub audit: Option<Duration>,
    /// Most rows one DELETE removes (and most executions one batch removes).
    pub batch: i64,
    /// Executions of a live thread kept whatever their age, newest first.
    pub keep_newest_turns: i64,
}

/// Rows deleted per table by one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    rows: BTreeMap<&'static str, u64>,
    /// True if some DELETE was full: more may be due now.
    pub more: bool,
}

impl Pruned {
    fn add(&mut self, table: &'static str, rows: u64) {
        if rows > 0 {
            *self.rows.entry(table).or_default() += rows;
        }
    }

    /// Records a bounded DELETE of `rows` with limit `batch`.
    fn batch(&mut self, table: &'static str, rows: u64, batch: i64) {
        self.add(table, rows);
        self.more |= rows >= u64::try_from(batch).unwrap_or(u64::MAX);
    }

    /// Rows deleted from `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.rows.get(table).copied().unwrap_or(0)
    }

    /// Rows deleted, per table (only tables with deletions).
    pub fn tables(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.rows.iter().map(|(table, rows)| (*table, *rows))
    }

    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }

    /// Adds `other`'s rows (and its `more`) to these.
    pub fn absorb(&mut self, other: Pruned) {
        for (table, rows) in other.rows {
            self.add(table, rows);
        }
        self.more |= other.more;
    }
}

/// `now - window`, or `None` for a disabled window (or one reaching before the epoch).
fn cutoff(now: DateTime<Utc>, window: Option<Duration>) -> Option<DateTime<Utc>> {
    let window = chrono::Duration::from_std(window?).ok()?;
    now.checked_sub_signed(window)
}

/// One batch of every enabled window, as of `now`.
pub async fn prune_once(
    pool: &PgPool,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Pruned, StoreError> {
    let batch = policy.batch.max(1);
    let mut pruned = Pruned::default();
    if let Some(before) = cutoff(now, policy.executions) {
        pruned.absorb(prune_executions(pool, before, policy.keep_newest_turns, batch).await?);
        pruned.absorb(prune_thread_leftovers(pool, before, batch).await?);
    }
    if let Some(before) = cutoff(now, policy.idempotency) {
        pruned.absorb(prune_idempotency(pool, before, batch).await?);
    }
    if let Some(before) = cutoff(now, policy.queue) {
        pruned.absorb(prune_queue(pool, before, batch).await?);
    }
    if let Some(before) = cutoff(now, policy.outbox) {
        pruned.absorb(prune_delivered(pool, before, batch).await?);
    }
    if let Some(before) = cutoff(now, policy.audit) {
        pruned.absorb(prune_audit(pool, before, batch).await?);
    }
    Ok(pruned)
}

/// The query for prunable executions: terminal, completed before `$1`, not among the newest
/// `$2` of a live thread, answer delivered (or given up) and usage counted; oldest first, at
/// most `$3`; with `among_ids`, only those in `$4`. A live thread's newest turns are found
/// once per thread (one index walk of `$2` rows), not once per execution.
fn candidates(among_ids: bool) -> String {
    let among = if among_ids {
        "AND e.execution_id = ANY($4)"
    } else {
        ""
    };
    format!(
        "WITH old AS (
             SELECT e.execution_id, e.thread_key, e.seq, e.completed_at FROM executions e
             WHERE e.status IN {TERMINAL} AND e.completed_at < $1 {among}),
         live AS (
             SELECT t.thread_key,
                    (SELECT x.seq FROM executions x WHERE x.thread_key = t.thread_key
                     ORDER BY x.seq DESC OFFSET greatest($2 - 1, 0) LIMIT 1) AS oldest_kept_seq
             FROM (SELECT DISTINCT thread_key FROM old) t
             WHERE $2 > 0
               AND (EXISTS (SELECT 1 FROM runtime_assignments a
                            WHERE a.thread_key = t.thread_key AND a.state = 'active')
                    OR EXISTS (SELECT 1 FROM executions x
                               WHERE x.thread_key = t.thread_key AND x.status IN {UNFINISHED})))
         SELECT old.execution_id FROM old LEFT JOIN live ON live.thread_key = old.thread_key
         WHERE (live.thread_key IS NULL OR old.seq < live.oldest_kept_seq)
           AND NOT EXISTS (SELECT 1 FROM delivery_outbox o WHERE o.execution_id = old.execution_id
                             AND o.state IN ('awaiting_terminal','pending','sending'))
           AND NOT EXISTS (SELECT 1 FROM execution_usage u WHERE u.execution_id = old.execution_id
                             AND (u.input_tokens <> u.metered_input_tokens
                                  OR u.output_tokens <> u.metered_output_tokens))
         ORDER BY old.completed_at LIMIT $3"
    )
}

/// Terminal executions completed before `before` (at most `batch`), with their events (in
/// DELETEs of at most `batch` rows), bound messages, outbox rows, usage and queue rows.
pub async fn prune_executions(
    pool: &PgPool,
    before: DateTime<Utc>,
    keep_newest_turns: i64,
    batch: i64,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    let keep = keep_newest_turns.max(0);
    let ids: Vec<String> = sqlx::query_scalar(&candidates(false))
        .bind(before)
        .bind(keep)
        .bind(batch)
        .fetch_all(pool)
        .await?;
    if ids.is_empty() {
        return Ok(pruned);
    }
    pruned.more = ids.len() as i64 >= batch;
    // The trail first, a bounded DELETE at a time: a long turn has thousands of events, and
    // a cascade from the executions would delete them all in one statement. (A terminal
    // execution's trail never changes; what a transcript reads — the execution rows and
    // their messages — is checked again below before it goes.)
    loop {
        let deleted = sqlx::query(
            "DELETE FROM execution_events WHERE (thread_key, thread_seq) IN (
                 SELECT thread_key, thread_seq FROM execution_events
                 WHERE execution_id = ANY($1) LIMIT $2)",
        )
        .bind(&ids)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        pruned.add("execution_events", deleted);
        if deleted < batch as u64 {
            break;
        }
    }
    let mut tx = pool.begin().await?;
    // Still prunable now (a thread may have been spawned again meanwhile): only those go.
    let ids: Vec<String> = sqlx::query_scalar(&candidates(true))
        .bind(before)
        .bind(keep)
        .bind(ids.len() as i64)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
    for (table, statement) in [
        (
            "messages",
            "DELETE FROM messages WHERE delivered_execution_id = ANY($1)",
        ),
        (
            "queue_messages",
            "DELETE FROM queue_messages WHERE execution_id = ANY($1)",
        ),
        (
            "delivery_outbox",
            "DELETE FROM delivery_outbox WHERE execution_id = ANY($1)",
        ),
        (
            "execution_usage",
            "DELETE FROM execution_usage WHERE execution_id = ANY($1)",
        ),
        (
            "execution_events",
            "DELETE FROM execution_events WHERE execution_id = ANY($1)",
        ),
        (
            "executions",
            "DELETE FROM executions WHERE execution_id = ANY($1)",
        ),
    ] {
        let deleted = sqlx::query(statement)
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        pruned.add(table, deleted);
    }
    tx.commit().await?;
    Ok(pruned)
}

/// Thread-level events (no execution: e.g. `message`) created before `before`, except on a
/// thread with an execution not yet terminal; dead-lettered Slack notices created before
/// `before`.
pub async fn prune_thread_leftovers(
    pool: &PgPool,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    let events = sqlx::query(&format!(
        "DELETE FROM execution_events WHERE (thread_key, thread_seq) IN (
             SELECT ev.thread_key, ev.thread_seq FROM execution_events ev
             WHERE ev.execution_id IS NULL AND ev.created_at < $1
               AND NOT EXISTS (SELECT 1 FROM executions live
                               WHERE live.thread_key = ev.thread_key
                                 AND live.status IN {UNFINISHED})
             LIMIT $2)"
    ))
    .bind(before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    pruned.batch("execution_events", events, batch);
    let notices = sqlx::query(
        "DELETE FROM slack_notices WHERE notice_id IN (
             SELECT notice_id FROM slack_notices
             WHERE state = 'dead_letter' AND created_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    pruned.batch("slack_notices", notices, batch);
    Ok(pruned)
}

/// Idempotency records created before `before`: a replay of such a key after the window
/// is a new request.
pub async fn prune_idempotency(
    pool: &PgPool,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    for (table, key) in [
        ("spawn_requests", "spawn_id"),
        ("message_requests", "message_id"),
        ("release_requests", "release_id"),
    ] {
        let deleted = sqlx::query(&format!(
            "DELETE FROM {table} WHERE (thread_key, {key}) IN (
                 SELECT thread_key, {key} FROM {table} WHERE created_at < $1 LIMIT $2)"
        ))
        .bind(before)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        pruned.batch(table, deleted, batch);
    }
    Ok(pruned)
}

/// Postgres queue rows created before `before` whose execution is terminal or gone (a
/// queued or running execution's message is never touched).
pub async fn prune_queue(
    pool: &PgPool,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    let deleted = sqlx::query(&format!(
        "DELETE FROM queue_messages WHERE execution_id IN (
             SELECT q.execution_id FROM queue_messages q
             LEFT JOIN executions e ON e.execution_id = q.execution_id
             WHERE q.created_at < $1 AND (e.execution_id IS NULL OR e.status IN {TERMINAL})
             LIMIT $2)"
    ))
    .bind(before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    pruned.batch("queue_messages", deleted, batch);
    Ok(pruned)
}

/// Outbox rows and Slack notices delivered before `before` (their execution, if kept,
/// still has its `final_delivery_delivered` event).
pub async fn prune_delivered(
    pool: &PgPool,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    for (table, key) in [
        ("delivery_outbox", "execution_id"),
        ("slack_notices", "notice_id"),
    ] {
        let deleted = sqlx::query(&format!(
            "DELETE FROM {table} WHERE {key} IN (
                 SELECT {key} FROM {table}
                 WHERE state = 'delivered' AND delivered_at < $1 LIMIT $2)"
        ))
        .bind(before)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        pruned.batch(table, deleted, batch);
    }
    Ok(pruned)
}

/// Audit log rows written before `before`.
pub async fn prune_audit(
    pool: &PgPool,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    let deleted = sqlx::query(
        "DELETE FROM audit_log WHERE id IN (
             SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    pruned.batch("audit_log", deleted, batch);
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{self, kinds};
    use serde_json::json;

    const DAY: Duration = Duration::from_secs(86_400);

    fn policy() -> Policy {
        Policy {
            executions: Some(DAY * 30),
            idempotency: Some(DAY * 7),
            queue: Some(DAY),
            outbox: Some(DAY * 7),
            audit: Some(DAY * 90),
            batch: 100,
            keep_newest_turns: 2,
        }
    }

    /// The fast clock: a month and a day from now, everything created today is due.
    fn a_month_later() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::days(31)
    }

    /// An execution on `thread` in `status` (terminal ones completed now), with one bound
    /// message, its `queued` event and a harness event.
    async fn execution(pool: &PgPool, id: &str, thread: &str, status: &str) {
        let terminal = matches!(status, "completed" | "failed_permanent" | "cancelled");
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                 execute_id, request_hash, status, delivery, completed_at, terminal_reason,
                 error_text, worker_id, lease_expires_at)
             VALUES ($1, $2, 1, 'echo', $1, 'h', $3, '{}',
                     CASE WHEN $4 THEN now() END, CASE WHEN $4 THEN 'completed' END,
                     CASE WHEN $3 = 'failed_permanent' THEN 'boom' END,
                     CASE WHEN $3 IN ('running','cancel_requested') THEN 'w' END,
                     CASE WHEN $3 IN ('running','cancel_requested') THEN now() + interval '1 minute' END)",
        )
        .bind(id)
        .bind(thread)
        .bind(status)
        .bind(terminal)
        .execute(pool)
        .await
        .expect("execution");
        sqlx::query(
            "INSERT INTO messages (id, thread_key, assignment_generation, role, parts, delivered_execution_id)
             VALUES ($1, $2, 1, 'user', '[{\"type\":\"text\",\"text\":\"hi\"}]', $3)",
        )
        .bind(format!("msg-{id}"))
        .bind(thread)
        .bind(id)
        .execute(pool)
        .await
        .expect("message");
        events::append(
            pool,
            thread,
            Some(id),
            kinds::EXECUTION_STATE,
            &json!({"status": "queued"}),
        )
        .await
        .expect("state event");
        events::append(
            pool,
            thread,
            Some(id),
            kinds::HARNESS_EVENT,
            &json!({"type": "heartbeat"}),
        )
        .await
        .expect("harness event");
    }

    async fn count(pool: &PgPool, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
    }

    async fn exists(pool: &PgPool, execution_id: &str) -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM executions WHERE execution_id = $1)")
            .bind(execution_id)
            .fetch_one(pool)
            .await
            .expect("exists")
    }

    async fn active_assignment(pool: &PgPool, thread: &str) {
        sqlx::query(
            "INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref, state)
             VALUES ($1, 1, 'echo', 'default', 'active')",
        )
        .bind(thread)
        .execute(pool)
        .await
        .expect("assignment");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn an_old_terminal_execution_goes_with_its_trail_messages_outbox_and_queue_row(
        pool: PgPool,
    ) {
        let done = "exe_00000000000000d1";
        execution(&pool, done, "done-thread", "completed").await;
        sqlx::query(
            "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state)
             VALUES ($1, 'done-thread', '{}', 'dead_letter')",
        )
        .bind(done)
        .execute(&pool)
        .await
        .expect("outbox");
        sqlx::query(
            "INSERT INTO queue_messages (execution_id, thread_key) VALUES ($1, 'done-thread')",
        )
        .bind(done)
        .execute(&pool)
        .await
        .expect("queue row");
        events::append(&pool, "done-thread", None, kinds::MESSAGE, &json!({"n": 1}))
            .await
            .expect("thread event");
        // Running on another thread: untouched, with its messages and events, however old.
        let running = "exe_00000000000000d2";
        execution(&pool, running, "busy-thread", "running").await;
        events::append(&pool, "busy-thread", None, kinds::MESSAGE, &json!({"n": 1}))
            .await
            .expect("busy thread event");
        // A message no execution carries yet: the next turn needs it.
        sqlx::query(
            "INSERT INTO messages (id, thread_key, assignment_generation, role, parts)
             VALUES ('pending', 'done-thread', 1, 'user', '[{\"type\":\"text\",\"text\":\"later\"}]')",
        )
        .execute(&pool)
        .await
        .expect("pending message");

        let today = prune_once(&pool, &policy(), Utc::now())
            .await
            .expect("today");
        assert_eq!(today.total(), 0, "nothing is due yet: {today:?}");

        let pruned = prune_once(&pool, &policy(), a_month_later())
            .await
            .expect("a month later");
        assert!(!exists(&pool, done).await);
        for (table, rows) in [
            ("executions", 1),
            ("messages", 1),
            ("execution_events", 3),
            ("delivery_outbox", 1),
            ("queue_messages", 1),
        ] {
            assert_eq!(pruned.rows(table), rows, "{table}: {pruned:?}");
        }
        assert!(!pruned.more);
        assert!(exists(&pool, running).await);
        assert_eq!(
            count(&pool, "SELECT count(*) FROM messages").await,
            2,
            "the running turn's message and the pending one stay"
        );
        assert_eq!(
            count(
                &pool,
                "SELECT count(*) FROM execution_events WHERE thread_key = 'busy-thread'"
            )
            .await,
            3,
            "the running turn's thread keeps its trail"
        );
        assert_eq!(
            count(
                &pool,
                "SELECT last_seq FROM thread_event_counters WHERE thread_key = 'done-thread'"
            )
            .await,
            3,
            "the thread's sequence continues where it was"
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_live_thread_keeps_its_newest_turns_for_the_transcript(pool: PgPool) {
        active_assignment(&pool, "t1").await;
        let ids: Vec<String> = (1..=5).map(|n| format!("exe_00000000000000e{n}")).collect();
        for id in &ids {
            execution(&pool, id, "t1", "completed").await;
        }
        let pruned = prune_once(&pool, &policy(), a_month_later())
            .await
            .expect("prune");
        assert_eq!(pruned.rows("executions"), 3, "{pruned:?}");
        let kept: Vec<String> =
            sqlx::query_scalar("SELECT execution_id FROM executions ORDER BY seq")
                .fetch_all(&pool)
                .await
                .expect("kept");
        assert_eq!(kept, ids[3..], "the newest two turns stay");
        assert_eq!(count(&pool, "SELECT count(*) FROM messages").await, 2);
        let history = crate::history::before_execution(&pool, "t1", &ids[4], 200)
            .await
            .expect("history");
        assert_eq!(
            history.len(),
            2,
            "the previous turn's message and answer: {history:?}"
        );

        sqlx::query("UPDATE runtime_assignments SET state = 'released', released_at = now()")
            .execute(&pool)
            .await
            .expect("release");
        prune_once(&pool, &policy(), a_month_later())
            .await
            .expect("released");
        assert_eq!(count(&pool, "SELECT count(*) FROM executions").await, 0);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn an_unfinished_turn_makes_its_thread_live_and_zero_keeps_nothing(pool: PgPool) {
        let finished = "exe_00000000000004a1";
        execution(&pool, finished, "t1", "failed_permanent").await;
        execution(&pool, "exe_00000000000004a2", "t1", "queued").await;
        let pruned = prune_once(&pool, &policy(), a_month_later())
            .await
            .expect("prune");
        assert_eq!(
            pruned.rows("executions"),
            0,
            "among the newest two: {pruned:?}"
        );
        let keep_none = Policy {
            keep_newest_turns: 0,
            ..policy()
        };
        let pruned = prune_once(&pool, &keep_none, a_month_later())
            .await
            .expect("prune");
        assert_eq!(pruned.rows("executions"), 1, "{pruned:?}");
        assert!(!exists(&pool, finished).await);
        assert!(
            exists(&pool, "exe_00000000000004a2").await,
            "never the queued one"
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn an_undelivered_answer_or_uncounted_usage_holds_its_execution(pool: PgPool) {
        let undelivered = "exe_00000000000000f1";
        execution(&pool, undelivered, "t1", "completed").await;
        sqlx::query(
            "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state)
             VALUES ($1, 't1', '{}', 'pending')",
        )
        .bind(undelivered)
        .execute(&pool)
        .await
        .expect("outbox");
        let uncounted = "exe_00000000000000f2";
        execution(&pool, uncounted, "t2", "completed").await;
        events::append(
            &pool,
            "t2",
            Some(uncounted),
            kinds::HARNESS_EVENT,
            &json!({"type": "usage", "input_tokens": 5, "output_tokens": 1}),
        )
        .await
        .expect("usage");
        let pruned = prune_once(&pool, &policy(), a_month_later())
            .await
            .expect("prune");
        assert_eq!(pruned.rows("executions"), 0, "{pruned:?}");
        assert_eq!(pruned.rows("execution_events"), 0, "{pruned:?}");

        crate::usage::take_unmetered(&pool, 10)
            .await
            .expect("meter");
        let pruned = prune_once(&pool, &policy(), a_month_later())
            .await
            .expect("prune");
        assert_eq!(pruned.rows("executions"), 1, "{pruned:?}");
        assert_eq!(pruned.rows("execution_usage"), 1, "{pruned:?}");
        assert!(exists(&pool, undelivered).await);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn batches_are_bounded_and_say_when_more_is_due(pool: PgPool) {
        for n in 1..=5 {
            let id = format!("exe_00000000000001a{n}");
            execution(&pool, &id, &format!("t{n}"), "cancelled").await;
        }
        let policy = Policy {
            batch: 2,
            ..policy()
        };
        let mut rounds = Vec::new();
        loop {
            let pruned = prune_once(&pool, &policy, a_month_later())
                .await
                .expect("batch");
            rounds.push(pruned.rows("executions"));
            if !pruned.more {
                break;
            }
            assert!(rounds.len() < 10, "{rounds:?}");
        }
        assert_eq!(rounds, [2, 2, 1]);
        assert_eq!(
            count(&pool, "SELECT count(*) FROM execution_events").await,
            0
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn keys_queue_rows_and_delivered_answers_follow_their_own_windows(pool: PgPool) {
        for (table, key, age_days) in [
            ("spawn_requests", "spawn_id", 8),
            ("message_requests", "message_id", 8),
            ("release_requests", "release_id", 8),
            ("spawn_requests", "spawn_id", 6),
        ] {
            sqlx::query(&format!(
                "INSERT INTO {table} (thread_key, {key}, request_hash, response_json, created_at)
                 VALUES ('t1', 'k{age_days}', 'h', '{{}}', now() - make_interval(days => $1))"
            ))
            .bind(age_days)
            .execute(&pool)
            .await
            .expect("idempotency row");
        }
        let done = "exe_00000000000002a1";
        let queued = "exe_00000000000002a2";
        execution(&pool, done, "t1", "completed").await;
        execution(&pool, queued, "t2", "queued").await;
        for id in [done, queued] {
            sqlx::query(
                "INSERT INTO queue_messages (execution_id, thread_key, created_at)
                 VALUES ($1, 't', now() - interval '2 days')",
            )
            .bind(id)
            .execute(&pool)
            .await
            .expect("queue row");
        }
        sqlx::query(
            "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state, delivered_at)
             VALUES ($1, 't1', '{}', 'delivered', now() - interval '8 days')",
        )
        .bind(done)
        .execute(&pool)
        .await
        .expect("delivered");
        sqlx::query(
            "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state)
             VALUES ($1, 't2', '{}', 'awaiting_terminal')",
        )
        .bind(queued)
        .execute(&pool)
        .await
        .expect("awaiting");

        let pruned = prune_once(&pool, &policy(), Utc::now())
            .await
            .expect("prune");
        for (table, rows) in [
            ("spawn_requests", 1),
            ("message_requests", 1),
            ("release_requests", 1),
            ("queue_messages", 1),
            ("delivery_outbox", 1),
            ("executions", 0),
        ] {
            assert_eq!(pruned.rows(table), rows, "{table}: {pruned:?}");
        }
        assert_eq!(
            count(
                &pool,
                "SELECT count(*) FROM spawn_requests WHERE spawn_id = 'k6'"
            )
            .await,
            1,
            "a key inside its window stays"
        );
        let queue: Vec<String> = sqlx::query_scalar("SELECT execution_id FROM queue_messages")
            .fetch_all(&pool)
            .await
            .expect("queue");
        assert_eq!(
            queue,
            [queued],
            "a waiting execution's wake-up is never pruned"
        );
        assert!(
            exists(&pool, done).await,
            "the execution has its own window"
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn disabled_windows_prune_nothing(pool: PgPool) {
        execution(&pool, "exe_00000000000003a1", "t1", "completed").await;
        sqlx::query(
            "INSERT INTO spawn_requests (thread_key, spawn_id, request_hash, response_json)
             VALUES ('t1', 's', 'h', '{}')",
        )
        .execute(&pool)
        .await
        .expect("key");
        let off = Policy {
            executions: None,
            idempotency: None,
            queue: None,
            outbox: None,
            audit: None,
            ..policy()
        };
        crate::audit::record(
            &mut pool.acquire().await.expect("connection"),
            &crate::audit::Actor::local_operator(None),
            crate::audit::Action::Spawn,
            crate::audit::Target::thread("t1"),
        )
        .await
        .expect("audit row");
        let pruned = prune_once(&pool, &off, Utc::now() + chrono::Duration::days(3650))
            .await
            .expect("prune");
        assert_eq!(pruned, Pruned::default());
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn audit_rows_go_after_their_own_window(pool: PgPool) {
        use crate::audit::{record, Action, Actor, Target};
        let mut conn = pool.acquire().await.expect("connection");
        for _ in 0..3 {
            record(
                &mut conn,
                &Actor::local_operator(None),
                Action::Execute,
                Target::thread("t1"),
            )
            .await
            .expect("audit row");
        }
        drop(conn);
        let pruned = prune_once(&pool, &policy(), a_month_later())
            .await
            .expect("prune");
        assert_eq!(pruned.rows("audit_log"), 0, "a month is within 90 days");
        let policy = Policy {
            batch: 2,
            ..policy()
        };
        let later = Utc::now() + chrono::Duration::days(91);
        let first = prune_once(&pool, &policy, later).await.expect("prune");
        assert_eq!((first.rows("audit_log"), first.more), (2, true));
        let second = prune_once(&pool, &policy, later).await.expect("prune");
        assert_eq!(second.rows("audit_log"), 1);
        assert_eq!(count(&pool, "SELECT count(*) FROM audit_log").await, 0);
    }
}
