//! The dispatcher's store functions against Postgres: claim, heartbeat, take the turn's
//! messages, record the start, append harness events, record a start retry, finish and
//! hand back — each fenced by status and lease holder (`worker_id` + `attempt`), each
//! state change one statement with its `execution_state` event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use centaur_core::{ExecutionStatus, TerminalReason};
use centaur_store::dispatch::{
    self, ClaimCall, ClaimOutcome, ClaimTerms, ClaimedExecution, Finish, FinishCall, Lease,
};
use centaur_store::start_retries;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

const THREAD: &str = "slack:T1:C1:1700000000.000100";
const FIRST: &str = "exe_00000000000000a1";
const SECOND: &str = "exe_00000000000000a2";
const MINUTE: Duration = Duration::from_secs(60);

/// A queued execution on `THREAD` with one bound message and (for `slack`) an outbox row.
async fn seed(pool: &PgPool, execution_id: &str, slack: bool) {
    seed_on(pool, THREAD, execution_id, slack).await;
}

/// A queued execution on `thread` with one bound message and (for `slack`) an outbox row.
async fn seed_on(pool: &PgPool, thread: &str, execution_id: &str, slack: bool) {
    let delivery = if slack {
        json!({"platform": "slack", "channel": "C1", "thread_ts": "1700000000.000100"})
    } else {
        json!({"platform": "dev"})
    };
    sqlx::query(
        "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness,
                                 execute_id, request_hash, status, delivery)
         VALUES ($1, $2, 1, 'echo', $1, 'h', 'queued', $3)",
    )
    .bind(execution_id)
    .bind(thread)
    .bind(&delivery)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO messages (id, thread_key, assignment_generation, role, parts,
                               delivered_execution_id)
         VALUES ($1, $2, 1, 'user', $3, $4)",
    )
    .bind(format!("msg_{execution_id}"))
    .bind(thread)
    .bind(json!([{"type": "text", "text": format!("hello from {execution_id}")}]))
    .bind(execution_id)
    .execute(pool)
    .await
    .unwrap();
    if slack {
        sqlx::query(
            "INSERT INTO delivery_outbox (execution_id, thread_key, delivery, state)
             VALUES ($1, $2, $3, 'awaiting_terminal')",
        )
        .bind(execution_id)
        .bind(thread)
        .bind(&delivery)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn claim_as(pool: &PgPool, execution_id: &str, worker: &str) -> ClaimOutcome {
    dispatch::claim(
        pool,
        execution_id,
        worker,
        Some("receipt-1"),
        MINUTE,
        MINUTE,
        MINUTE,
    )
    .await
    .unwrap()
}

async fn claimed(pool: &PgPool, execution_id: &str, worker: &str) -> ClaimedExecution {
    match claim_as(pool, execution_id, worker).await {
        ClaimOutcome::Claimed(execution) => *execution,
        other => panic!("{worker} could not claim {execution_id}: {other:?}"),
    }
}

async fn expire_lease(pool: &PgPool, execution_id: &str) {
    sqlx::query(
        "UPDATE executions SET lease_expires_at = now() - interval '1 second'
         WHERE execution_id = $1",
    )
    .bind(execution_id)
    .execute(pool)
    .await
    .unwrap();
}

/// `(event_kind, event_json)` of an execution's events, oldest first.
async fn trail(pool: &PgPool, execution_id: &str) -> Vec<(String, Value)> {
    sqlx::query_as(
        "SELECT event_kind, event_json FROM execution_events
         WHERE execution_id = $1 ORDER BY event_id",
    )
    .bind(execution_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// `(status, worker_id, attempt)` of an execution.
async fn row(pool: &PgPool, execution_id: &str) -> (String, Option<String>, i32) {
    sqlx::query_as("SELECT status, worker_id, attempt FROM executions WHERE execution_id = $1")
        .bind(execution_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn completed(text: &str) -> Finish {
    Finish {
        reason: TerminalReason::Completed,
        result_text: Some(text.into()),
        error_text: None,
        agent_thread_id: Some("session-1".into()),
        summary: json!({"status": "completed"}),
        delivery_payload: json!({"text": text}),
        events: Vec::new(),
        session_sandbox_id: None,
        queue: None,
    }
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_claim_takes_a_queued_execution_with_its_event_and_holds_the_lease(pool: PgPool) {
    seed(&pool, FIRST, false).await;

    let execution = claimed(&pool, FIRST, "w1").await;

    assert_eq!(execution.status, ExecutionStatus::Running);
    assert_eq!(execution.worker_id, "w1");
    assert_eq!(execution.attempt, 1);
    assert_eq!(execution.queue_receipt.as_deref(), Some("receipt-1"));
    assert!(!execution.turn_was_sent());
    assert_eq!(
        execution.lease(),
        Lease {
            execution_id: FIRST.into(),
            thread_key: execution.thread_key.clone(),
            worker_id: "w1".into(),
            attempt: 1
        }
    );
    assert_eq!(
        trail(&pool, FIRST).await,
        [(
            "execution_state".to_owned(),
            json!({"status": "running", "attempt": 1, "worker_id": "w1"})
        )]
    );
    assert!(matches!(
        claim_as(&pool, FIRST, "w2").await,
        ClaimOutcome::HeldElsewhere
    ));
    assert!(matches!(
        claim_as(&pool, "exe_00000000000000ff", "w2").await,
        ClaimOutcome::Finished
    ));
    assert_eq!(
        trail(&pool, FIRST).await.len(),
        1,
        "a lost claim writes nothing"
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_claim_waits_while_an_older_execution_of_the_thread_is_unfinished(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    seed(&pool, SECOND, false).await;

    assert!(matches!(
        claim_as(&pool, SECOND, "w1").await,
        ClaimOutcome::WaitingForThread
    ));
    let first = claimed(&pool, FIRST, "w1").await;
    assert!(matches!(
        claim_as(&pool, SECOND, "w2").await,
        ClaimOutcome::WaitingForThread
    ));
    assert!(
        dispatch::finish(&pool, &first.lease(), &completed("one"))
            .await
            .unwrap()
            .written
    );
    let second = claimed(&pool, SECOND, "w2").await;
    assert_eq!(second.attempt, 1);
    assert!(matches!(
        claim_as(&pool, FIRST, "w2").await,
        ClaimOutcome::Finished
    ));
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn an_expired_lease_is_reclaimed_as_the_next_attempt_adopting_the_receipt(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    claimed(&pool, FIRST, "w1").await;
    expire_lease(&pool, FIRST).await;

    let outcome = dispatch::claim(&pool, FIRST, "w2", None, MINUTE, MINUTE, MINUTE)
        .await
        .unwrap();

    let ClaimOutcome::Claimed(reclaimed) = outcome else {
        panic!("not reclaimed: {outcome:?}");
    };
    assert_eq!((reclaimed.worker_id.as_str(), reclaimed.attempt), ("w2", 2));
    assert_eq!(
        reclaimed.queue_receipt.as_deref(),
        Some("receipt-1"),
        "the dead holder's queue message is adopted"
    );
    let states: Vec<_> = trail(&pool, FIRST).await.into_iter().map(|e| e.1).collect();
    assert_eq!(states[1]["attempt"], 2);
    assert_eq!(states[1]["worker_id"], "w2");
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_heartbeat_extends_the_lease_and_reports_cancel_and_deadlines(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();
    expire_lease(&pool, FIRST).await;

    let beat = dispatch::heartbeat(&pool, &lease, MINUTE).await.unwrap();

    assert_eq!(
        beat,
        Some(dispatch::Heartbeat {
            cancel_requested: false,
            silence_exceeded: false,
            hard_exceeded: false
        })
    );
    let live: bool = sqlx::query_scalar(
        "SELECT lease_expires_at > now() + interval '50 seconds' FROM executions
         WHERE execution_id = $1",
    )
    .bind(FIRST)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(live, "the heartbeat extended the lease");
    sqlx::query(
        "UPDATE executions SET status = 'cancel_requested',
             silence_deadline_at = now() - interval '1 second',
             hard_deadline_at = now() - interval '1 second'
         WHERE execution_id = $1",
    )
    .bind(FIRST)
    .execute(&pool)
    .await
    .unwrap();
    let beat = dispatch::heartbeat(&pool, &lease, MINUTE).await.unwrap();
    assert_eq!(
        beat,
        Some(dispatch::Heartbeat {
            cancel_requested: true,
            silence_exceeded: true,
            hard_exceeded: true
        })
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn the_turn_takes_its_own_messages_and_records_its_sandbox(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    seed(&pool, SECOND, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();

    let messages = dispatch::take_turn_messages(&pool, &lease, "sbx-a")
        .await
        .unwrap()
        .expect("held");

    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, format!("msg_{FIRST}"));
    let (sandbox, sent): (Option<String>, bool) = sqlx::query_as(
        "SELECT sandbox_id, turn_sent_at IS NOT NULL FROM executions WHERE execution_id = $1",
    )
    .bind(FIRST)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((sandbox.as_deref(), sent), (Some("sbx-a"), true));
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn harness_events_are_appended_in_order_and_push_the_silence_deadline(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();
    sqlx::query(
        "UPDATE executions SET silence_deadline_at = now() - interval '1 second'
         WHERE execution_id = $1",
    )
    .bind(FIRST)
    .execute(&pool)
    .await
    .unwrap();
    let batch: Vec<Value> = (1..=3)
        .map(|seq| json!({"type": "heartbeat", "seq": seq, "execution_id": FIRST}))
        .collect();

    assert!(
        dispatch::record_start(&pool, &lease, &json!({"sandbox_id": "sbx-a"}))
            .await
            .unwrap()
    );
    assert!(
        dispatch::append_harness_events(&pool, &lease, MINUTE, &batch)
            .await
            .unwrap()
    );

    let events = trail(&pool, FIRST).await;
    assert_eq!(events[1].0, "execution_started");
    let seqs: Vec<_> = events[2..]
        .iter()
        .map(|(kind, json)| (kind.as_str(), json["seq"].as_i64()))
        .collect();
    assert_eq!(
        seqs,
        [
            ("harness_event", Some(1)),
            ("harness_event", Some(2)),
            ("harness_event", Some(3))
        ]
    );
    let beat = dispatch::heartbeat(&pool, &lease, MINUTE)
        .await
        .unwrap()
        .expect("held");
    assert!(!beat.silence_exceeded, "output is progress");
    assert_eq!(dispatch::max_harness_seq(&pool, FIRST).await.unwrap(), 3);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_finish_writes_status_events_and_outbox_at_once_and_only_once(pool: PgPool) {
    seed(&pool, FIRST, true).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();

    assert!(
        dispatch::finish(&pool, &lease, &completed("PONG"))
            .await
            .unwrap()
            .written
    );
    assert!(
        !dispatch::finish(&pool, &lease, &completed("again"))
            .await
            .unwrap()
            .written,
        "a finished execution is not finished twice"
    );

    let (status, result, agent, completed_at): (String, Option<String>, Option<String>, bool) =
        sqlx::query_as(
            "SELECT status, result_text, agent_thread_id, completed_at IS NOT NULL
             FROM executions WHERE execution_id = $1",
        )
        .bind(FIRST)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (
            status.as_str(),
            result.as_deref(),
            agent.as_deref(),
            completed_at
        ),
        ("completed", Some("PONG"), Some("session-1"), true)
    );
    let events = trail(&pool, FIRST).await;
    let kinds: Vec<_> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "execution_state",
            "execution_state",
            "execution_summary",
            "final_delivery_ready"
        ]
    );
    assert_eq!(
        events[1].1,
        json!({"status": "completed", "terminal_reason": "completed", "result_text": "PONG"})
    );
    assert_eq!(events[2].1, json!({"status": "completed"}));
    assert_eq!(events[3].1["status"], "completed");
    assert_eq!(events[3].1["delivery"]["platform"], "slack");
    let (state, payload): (String, Value) =
        sqlx::query_as("SELECT state, payload FROM delivery_outbox WHERE execution_id = $1")
            .bind(FIRST)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), payload),
        ("pending", json!({"text": "PONG"}))
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_failure_records_its_error_text_and_no_delivery_event_without_an_outbox(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();
    let failure = Finish {
        reason: TerminalReason::SandboxLost,
        result_text: None,
        error_text: Some("sandbox_lost: sandbox sbx-a is gone mid-turn (deleted)".into()),
        agent_thread_id: None,
        summary: json!({}),
        delivery_payload: json!({}),
        events: Vec::new(),
        session_sandbox_id: None,
        queue: None,
    };

    assert!(
        dispatch::finish(&pool, &lease, &failure)
            .await
            .unwrap()
            .written
    );

    assert_eq!(row(&pool, FIRST).await.0, "failed_permanent");
    let kinds: Vec<_> = trail(&pool, FIRST)
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(
        kinds,
        ["execution_state", "execution_state", "execution_summary"]
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_hand_back_makes_the_execution_retry_wait_for_the_next_claim(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();

    assert!(
        dispatch::hand_back(&pool, &lease, "database or queue error: connection reset")
            .await
            .unwrap()
    );

    assert_eq!(row(&pool, FIRST).await, ("retry_wait".into(), None, 1));
    assert_eq!(
        trail(&pool, FIRST).await[1],
        (
            "execution_state".to_owned(),
            json!({"status": "retry_wait", "reason": "database or queue error: connection reset"})
        )
    );
    assert!(
        !dispatch::hand_back(&pool, &lease, "twice").await.unwrap(),
        "handed back already"
    );
    let next = claimed(&pool, FIRST, "w2").await;
    assert_eq!((next.status.as_str(), next.attempt), ("running", 2));
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_cancel_requested_execution_handed_back_keeps_its_cancel_and_ends_its_lease(
    pool: PgPool,
) {
    seed(&pool, FIRST, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();
    sqlx::query("UPDATE executions SET status = 'cancel_requested' WHERE execution_id = $1")
        .bind(FIRST)
        .execute(&pool)
        .await
        .unwrap();

    assert!(dispatch::hand_back(&pool, &lease, "store error")
        .await
        .unwrap());

    let next = claimed(&pool, FIRST, "w2").await;
    assert_eq!(
        (next.status.as_str(), next.attempt),
        ("cancel_requested", 2),
        "the lease ended at once and the cancel is carried on"
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_start_retry_is_recorded_once_and_read_back(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();

    let retry = start_retries::record(&pool, &lease, "sbx-a-r1", "clone: 403")
        .await
        .unwrap()
        .expect("recorded");

    assert_eq!(retry.sandbox_id, "sbx-a-r1");
    assert_eq!(
        start_retries::load(&pool, FIRST).await.unwrap(),
        Some(retry)
    );
    assert_eq!(
        start_retries::record(&pool, &lease, "sbx-a-r1", "again")
            .await
            .unwrap(),
        None,
        "at most one start retry per execution"
    );
}

/// Every fenced write of `stale`, none of which may change anything.
async fn every_write_of(pool: &PgPool, stale: &Lease) -> Vec<(&'static str, bool)> {
    let batch = [json!({"type": "heartbeat", "seq": 9})];
    vec![
        (
            "heartbeat",
            dispatch::heartbeat(pool, stale, MINUTE)
                .await
                .unwrap()
                .is_some(),
        ),
        (
            "take_turn_messages",
            dispatch::take_turn_messages(pool, stale, "sbx-stale")
                .await
                .unwrap()
                .is_some(),
        ),
        (
            "record_start",
            dispatch::record_start(pool, stale, &json!({"sandbox_id": "sbx-stale"}))
                .await
                .unwrap(),
        ),
        (
            "start_turn",
            dispatch::start_turn(
                pool,
                stale,
                "sbx-stale",
                &json!({"sandbox_id": "sbx-stale"}),
            )
            .await
            .unwrap()
            .is_some(),
        ),
        (
            "append_harness_events",
            dispatch::append_harness_events(pool, stale, MINUTE, &batch)
                .await
                .unwrap(),
        ),
        (
            "start_retries::record",
            start_retries::record(pool, stale, "sbx-stale-r1", "stale")
                .await
                .unwrap()
                .is_some(),
        ),
        (
            "finish",
            dispatch::finish(pool, stale, &completed("stale"))
                .await
                .unwrap()
                .written,
        ),
        (
            "hand_back",
            dispatch::hand_back(pool, stale, "stale").await.unwrap(),
        ),
    ]
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_dispatcher_whose_lease_was_taken_over_can_change_nothing(pool: PgPool) {
    seed(&pool, FIRST, true).await;
    let stale = claimed(&pool, FIRST, "w1").await.lease();
    expire_lease(&pool, FIRST).await;
    let current = claimed(&pool, FIRST, "w2").await.lease();
    let events_before = trail(&pool, FIRST).await;

    let writes = every_write_of(&pool, &stale).await;

    assert!(
        writes.iter().all(|(_, changed)| !changed),
        "a stale holder changed something: {writes:?}"
    );
    assert_eq!(
        trail(&pool, FIRST).await,
        events_before,
        "no event was appended"
    );
    assert_eq!(
        row(&pool, FIRST).await,
        ("running".into(), Some("w2".into()), 2)
    );
    let (sandbox, outbox): (Option<String>, String) = sqlx::query_as(
        "SELECT e.sandbox_id, o.state FROM executions e
         JOIN delivery_outbox o USING (execution_id) WHERE e.execution_id = $1",
    )
    .bind(FIRST)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((sandbox, outbox.as_str()), (None, "awaiting_terminal"));
    assert!(
        dispatch::heartbeat(&pool, &current, MINUTE)
            .await
            .unwrap()
            .is_some(),
        "the new holder still holds it"
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn the_same_worker_reclaiming_its_expired_lease_fences_off_its_older_attempt(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    let older = claimed(&pool, FIRST, "w1").await.lease();
    expire_lease(&pool, FIRST).await;
    let newer = claimed(&pool, FIRST, "w1").await.lease();
    assert_eq!(newer.attempt, 2);
    let events_before = trail(&pool, FIRST).await;

    let writes = every_write_of(&pool, &older).await;

    assert!(
        writes.iter().all(|(_, changed)| !changed),
        "the older attempt changed something: {writes:?}"
    );
    assert_eq!(trail(&pool, FIRST).await, events_before);
    assert!(
        dispatch::finish(&pool, &newer, &completed("PONG"))
            .await
            .unwrap()
            .written
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_finished_execution_takes_no_more_writes_from_its_holder(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();
    assert!(
        dispatch::finish(&pool, &lease, &completed("PONG"))
            .await
            .unwrap()
            .written
    );
    let events_before = trail(&pool, FIRST).await;

    let writes = every_write_of(&pool, &lease).await;

    assert!(writes.iter().all(|(_, changed)| !changed), "{writes:?}");
    assert_eq!(trail(&pool, FIRST).await, events_before);
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn many_claims_of_one_thread_at_once_let_exactly_its_oldest_execution_run(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    seed(&pool, SECOND, false).await;
    let claims = (0..8).map(|n| {
        let pool = pool.clone();
        let execution = if n % 2 == 0 { FIRST } else { SECOND };
        tokio::spawn(async move { claim_as(&pool, execution, &format!("w{n}")).await })
    });
    let outcomes: Vec<ClaimOutcome> = futures_join(claims).await;
    let won: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ClaimOutcome::Claimed(execution) => Some(execution.execution_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(won, [FIRST], "{outcomes:?}");
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM executions WHERE status = 'running'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(running, 1);
}

async fn futures_join(
    handles: impl Iterator<Item = tokio::task::JoinHandle<ClaimOutcome>>,
) -> Vec<ClaimOutcome> {
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    outcomes
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_claim_reads_the_threads_live_session_and_previous_sandbox(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    seed(&pool, SECOND, false).await;
    let first = claimed(&pool, FIRST, "w1").await;
    assert_eq!(
        (
            first.session_sandbox_id.as_deref(),
            first.previous_sandbox_id.as_deref()
        ),
        (None, None),
        "the thread's first turn"
    );
    live_session(&pool, "sbx-a", "echo").await;
    dispatch::start_turn(&pool, &first.lease(), "sbx-a", &json!({}))
        .await
        .unwrap()
        .expect("held");
    let mut end = completed("one");
    end.agent_thread_id = Some("session-7".into());
    end.session_sandbox_id = Some("sbx-a".into());
    assert!(
        dispatch::finish(&pool, &first.lease(), &end)
            .await
            .unwrap()
            .written
    );

    let second = claimed(&pool, SECOND, "w1").await;
    assert_eq!(second.session_sandbox_id.as_deref(), Some("sbx-a"));
    assert_eq!(second.session_harness.as_deref(), Some("echo"));
    assert_eq!(
        second.session_agent_thread_id.as_deref(),
        Some("session-7"),
        "the finish recorded the harness session with the end"
    );
    assert_eq!(second.previous_sandbox_id.as_deref(), Some("sbx-a"));
}

/// Makes `sandbox_id` (running `harness`) the live sandbox of `THREAD`.
async fn live_session(pool: &PgPool, sandbox_id: &str, harness: &str) {
    sqlx::query(
        "INSERT INTO sandbox_sessions (thread_key, sandbox_id, harness, state)
         VALUES ($1, $2, $3, 'live')",
    )
    .bind(THREAD)
    .bind(sandbox_id)
    .bind(harness)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_claim_starts_a_turn_never_sent_in_the_threads_live_sandbox_of_its_harness(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    live_session(&pool, "sbx-live", "echo").await;

    let execution = claimed(&pool, FIRST, "w1").await;

    assert_eq!(execution.started_in.as_deref(), Some("sbx-live"));
    assert_eq!(execution.sandbox_id.as_deref(), Some("sbx-live"));
    assert!(execution.turn_sent_at.is_some());
    assert!(
        !execution.turn_was_sent(),
        "started by this claim, not sent by an earlier attempt"
    );
    let messages = execution
        .start_messages
        .clone()
        .expect("read with the start")
        .0;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, format!("msg_{FIRST}"));
    let events = trail(&pool, FIRST).await;
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["execution_state", "execution_started"]);
    assert_eq!(
        events[1].1,
        json!({
            "harness": "echo",
            "sandbox_id": "sbx-live",
            "queue_delay_ms": execution.queue_delay_ms(),
            "attempt": 1,
        }),
        "the event start_turn writes"
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_claim_starts_nothing_in_a_sandbox_of_another_harness_or_for_a_turn_already_sent(
    pool: PgPool,
) {
    seed(&pool, FIRST, false).await;
    live_session(&pool, "sbx-codex", "codex").await;
    let other_harness = claimed(&pool, FIRST, "w1").await;
    assert_eq!(
        (
            other_harness.started_in.as_deref(),
            other_harness.turn_sent_at
        ),
        (None, None),
        "a sandbox of another harness is replaced by the dispatcher, not started in"
    );

    sqlx::query("UPDATE sandbox_sessions SET harness = 'echo' WHERE thread_key = $1")
        .bind(THREAD)
        .execute(&pool)
        .await
        .unwrap();
    dispatch::start_turn(&pool, &other_harness.lease(), "sbx-first", &json!({}))
        .await
        .unwrap()
        .expect("held");
    expire_lease(&pool, FIRST).await;
    let reclaimed = claimed(&pool, FIRST, "w2").await;
    assert_eq!(reclaimed.started_in, None);
    assert_eq!(
        reclaimed.sandbox_id.as_deref(),
        Some("sbx-first"),
        "a reclaim re-attaches where the turn was sent"
    );
    assert!(reclaimed.turn_was_sent());
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn the_start_of_a_turn_records_its_sandbox_and_event_and_reads_its_messages(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    seed(&pool, SECOND, false).await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();

    let messages = dispatch::start_turn(&pool, &lease, "sbx-a", &json!({"sandbox_id": "sbx-a"}))
        .await
        .unwrap()
        .expect("held");

    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, format!("msg_{FIRST}"));
    assert_eq!(
        messages[0].parts[0].text.as_deref(),
        Some(format!("hello from {FIRST}").as_str())
    );
    let (sandbox, sent): (Option<String>, bool) = sqlx::query_as(
        "SELECT sandbox_id, turn_sent_at IS NOT NULL FROM executions WHERE execution_id = $1",
    )
    .bind(FIRST)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((sandbox.as_deref(), sent), (Some("sbx-a"), true));
    let events = trail(&pool, FIRST).await;
    assert_eq!(
        events[1],
        (
            "execution_started".to_owned(),
            json!({"sandbox_id": "sbx-a"})
        )
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_finish_stores_the_last_events_first_and_releases_the_queue_in_the_same_statement(
    pool: PgPool,
) {
    seed(&pool, FIRST, true).await;
    seed(&pool, SECOND, false).await;
    let receipt = "6f1f3b1e-8d8e-4c9e-9a53-3a3c2b1d0e0f";
    sqlx::query(
        "INSERT INTO queue_messages (execution_id, thread_key, receipt, visible_at)
         VALUES ($1, $3, $2::uuid, now() + interval '1 minute'),
                ($4, $3, NULL, now() + interval '1 minute')",
    )
    .bind(FIRST)
    .bind(receipt)
    .bind(THREAD)
    .bind(SECOND)
    .execute(&pool)
    .await
    .unwrap();
    live_session(&pool, "sbx-a", "echo").await;
    let lease = claimed(&pool, FIRST, "w1").await.lease();
    let mut end = completed("PONG");
    end.events = vec![
        json!({"type": "turn.started", "seq": 1, "harness": "echo", "cli_present": true}),
        json!({"type": "turn.done", "seq": 2}),
    ];
    end.session_sandbox_id = Some("sbx-a".into());
    end.queue = Some(dispatch::QueueRelease {
        receipt: Some(receipt.into()),
        channel: "centaur_queue".into(),
    });

    let finished = dispatch::finish(&pool, &lease, &end).await.unwrap();

    assert!(finished.written && finished.woke_next, "{finished:?}");
    let kinds: Vec<String> = trail(&pool, FIRST)
        .await
        .into_iter()
        .map(|(kind, json)| match json["seq"].as_i64() {
            Some(seq) => format!("{kind}:{seq}"),
            None => kind,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "execution_state",
            "execution_started",
            "harness_event:1",
            "harness_event:2",
            "execution_state",
            "execution_summary",
            "final_delivery_ready"
        ]
    );
    let queue: Vec<(String, bool)> = sqlx::query_as(
        "SELECT execution_id, visible_at <= now() FROM queue_messages ORDER BY execution_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        queue,
        [(SECOND.to_owned(), true)],
        "the message went, the thread's next turn is visible now"
    );
    let (agent, report): (Option<String>, Option<bool>) = sqlx::query_as(
        "SELECT s.agent_thread_id,
                (SELECT cli_present FROM harness_cli_reports WHERE harness = 'echo')
         FROM sandbox_sessions s WHERE s.thread_key = $1",
    )
    .bind(THREAD)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((agent.as_deref(), report), (Some("session-1"), Some(true)));
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn stored_parts_are_read_once_and_tolerantly_at_every_row_boundary(pool: PgPool) {
    use centaur_core::api::MessagePart;
    use centaur_store::{history, messages};
    seed(&pool, FIRST, false).await;
    seed(&pool, SECOND, false).await;
    // An old or hand-written row: a part without type, a bare number, a part whose text
    // is not a string, and a part the API would have taken (with another field).
    sqlx::query("UPDATE messages SET parts = $2 WHERE id = $1")
        .bind(format!("msg_{FIRST}"))
        .bind(json!([
            {"text": "old"},
            7,
            {"type": "text", "text": 1},
            {"type": "image", "url": "u"},
        ]))
        .execute(&pool)
        .await
        .unwrap();
    let image: MessagePart = serde_json::from_value(json!({"type": "image", "url": "u"})).unwrap();
    let expected = vec![
        MessagePart::text("old"),
        MessagePart::text("7"),
        MessagePart::text(r#"{"text":1,"type":"text"}"#),
        image,
    ];

    let first = claimed(&pool, FIRST, "w1").await;
    let started = dispatch::start_turn(&pool, &first.lease(), "sbx-a", &json!({}))
        .await
        .unwrap()
        .expect("held");
    assert_eq!(started[0].parts, expected, "start_turn (jsonb_agg)");
    let taken = dispatch::take_turn_messages(&pool, &first.lease(), "sbx-a")
        .await
        .unwrap()
        .expect("held");
    assert_eq!(taken[0].parts, expected, "take_turn_messages (row)");
    let page = messages::page(&pool, THREAD, 0, 10).await.unwrap();
    assert_eq!(page[0].parts, expected, "GET /agent/messages");

    assert!(
        dispatch::finish(&pool, &first.lease(), &completed("done"))
            .await
            .unwrap()
            .written
    );
    let rows = history::before_execution(&pool, THREAD, SECOND, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].is_outcome() && rows[0].parts.is_empty());
    assert_eq!(rows[1].parts, expected, "history");
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_finish_wakes_the_threads_followers_and_the_queue_once_it_has_committed(pool: PgPool) {
    seed(&pool, FIRST, false).await;
    seed(&pool, SECOND, false).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener
        .listen_all([centaur_store::events::CHANNEL, "centaur_queue"])
        .await
        .unwrap();
    let lease = claimed(&pool, FIRST, "w1").await.lease();
    let claim_wakeup = listener.recv().await.unwrap();
    assert_eq!(
        (claim_wakeup.channel(), claim_wakeup.payload()),
        (centaur_store::events::CHANNEL, THREAD)
    );
    let mut end = completed("PONG");
    end.queue = Some(dispatch::QueueRelease {
        receipt: None,
        channel: "centaur_queue".into(),
    });

    dispatch::finish(&pool, &lease, &end).await.unwrap();

    let mut woken = Vec::new();
    for _ in 0..2 {
        let notification = listener.recv().await.unwrap();
        // Sent after the commit: whoever is woken already sees what woke it.
        let visible: i64 =
            sqlx::query_scalar("SELECT count(*) FROM queue_messages WHERE execution_id = $1")
                .bind(SECOND)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(visible, 1);
        woken.push((
            notification.channel().to_owned(),
            notification.payload().to_owned(),
        ));
    }
    woken.sort();
    assert_eq!(
        woken,
        [
            ("centaur_events".to_owned(), THREAD.to_owned()),
            ("centaur_queue".to_owned(), String::new())
        ]
    );
}

/// `(execution_id, claimed_at)` of the executions, whose claims share one `now()` when one
/// statement made them.
async fn claim_times(pool: &PgPool) -> Vec<Option<chrono::DateTime<chrono::Utc>>> {
    sqlx::query_scalar("SELECT claimed_at FROM executions ORDER BY execution_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn claims_made_together_each_win_their_own_thread_and_a_later_turn_still_waits(pool: PgPool) {
    seed_on(&pool, "thread-a", "exe_00000000000000b1", false).await;
    seed_on(&pool, "thread-b", "exe_00000000000000b2", false).await;
    seed_on(&pool, "thread-a", "exe_00000000000000b3", false).await;
    let terms = ClaimTerms {
        worker_id: "w1".into(),
        lease: MINUTE,
        silence: MINUTE,
        hard: MINUTE,
    };
    let calls = [
        ("exe_00000000000000b1", Some("r1")),
        ("exe_00000000000000b2", None),
        ("exe_00000000000000b3", Some("r3")),
        ("exe_00000000000000ff", None),
    ]
    .map(|(execution_id, receipt)| ClaimCall {
        execution_id,
        receipt,
    });

    let outcomes = dispatch::claim_many(&pool, &terms, &calls).await;

    let outcomes: Vec<ClaimOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    match &outcomes[..] {
        [ClaimOutcome::Claimed(a), ClaimOutcome::Claimed(b), ClaimOutcome::WaitingForThread, ClaimOutcome::Finished] =>
        {
            assert_eq!((a.thread_key.as_str(), a.attempt), ("thread-a", 1));
            assert_eq!(a.queue_receipt.as_deref(), Some("r1"));
            assert_eq!((b.thread_key.as_str(), b.attempt), ("thread-b", 1));
            assert_eq!(a.claimed_at, b.claimed_at, "one statement claimed both");
        }
        other => panic!("unexpected outcomes: {other:?}"),
    }
    for execution_id in ["exe_00000000000000b1", "exe_00000000000000b2"] {
        let events = trail(&pool, execution_id).await;
        assert_eq!(events.len(), 1, "{execution_id}: {events:?}");
        assert_eq!(events[0].1["worker_id"], "w1");
    }
    assert_eq!(row(&pool, "exe_00000000000000b3").await.0, "queued");
    assert_eq!(
        claim_times(&pool).await[2],
        None,
        "the later turn was not claimed"
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn ends_written_together_each_get_their_events_and_a_stale_lease_writes_nothing(
    pool: PgPool,
) {
    let threads = ["thread-a", "thread-b", "thread-c"];
    let ids = [
        "exe_00000000000000c1",
        "exe_00000000000000c2",
        "exe_00000000000000c3",
    ];
    for (thread, id) in threads.iter().zip(ids) {
        seed_on(&pool, thread, id, true).await;
    }
    seed_on(&pool, "thread-a", "exe_00000000000000c4", false).await;
    let mut leases = Vec::new();
    for id in ids {
        leases.push(claimed(&pool, id, "w1").await.lease());
    }
    leases[2].attempt += 1;
    let mut first = completed("one");
    first.events = vec![json!({"type": "turn.done", "seq": 1})];
    first.queue = Some(dispatch::QueueRelease {
        receipt: None,
        channel: "centaur_queue".into(),
    });
    let mut second = completed("two");
    second.queue = first.queue.clone();
    let third = completed("stale");
    let ends = [&first, &second, &third];
    let calls: Vec<FinishCall> = leases
        .iter()
        .zip(ends)
        .map(|(holder, finish)| FinishCall { holder, finish })
        .collect();

    let finished = dispatch::finish_many(&pool, &calls).await;

    let finished: Vec<(bool, bool)> = finished
        .into_iter()
        .map(|end| end.map(|end| (end.written, end.woke_next)).unwrap())
        .collect();
    assert_eq!(
        finished,
        [(true, true), (true, false), (false, false)],
        "thread-a's next turn was woken; the stale lease wrote nothing"
    );
    let kinds = |events: Vec<(String, Value)>| -> Vec<String> {
        events.into_iter().map(|(kind, _)| kind).collect()
    };
    assert_eq!(
        kinds(trail(&pool, ids[0]).await),
        [
            "execution_state",
            "harness_event",
            "execution_state",
            "execution_summary",
            "final_delivery_ready"
        ]
    );
    assert_eq!(
        kinds(trail(&pool, ids[1]).await),
        [
            "execution_state",
            "execution_state",
            "execution_summary",
            "final_delivery_ready"
        ]
    );
    assert_eq!(kinds(trail(&pool, ids[2]).await), ["execution_state"]);
    assert_eq!(row(&pool, ids[0]).await.0, "completed");
    assert_eq!(row(&pool, ids[1]).await.0, "completed");
    assert_eq!(row(&pool, ids[2]).await.0, "running");
    let pending: Vec<(String, Value)> = sqlx::query_as(
        "SELECT execution_id, payload FROM delivery_outbox WHERE state = 'pending'
         ORDER BY execution_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        pending,
        [
            (ids[0].to_owned(), json!({"text": "one"})),
            (ids[1].to_owned(), json!({"text": "two"}))
        ]
    );
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT thread_seq FROM execution_events WHERE thread_key = 'thread-a' ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5],
        "thread-a's events are numbered in order"
    );
}
