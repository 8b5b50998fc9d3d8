//! Background work every few seconds: recover expired leases, re-send lost wake-ups, keep
//! the warm pool, reap idle sandboxes, stop orphans no row owns, prune old Slack dedupe
//! keys, count the tokens the harnesses reported ([`usage`]) and, every
//! `RETENTION_INTERVAL_S`, prune what is past its retention window ([`retention`]).

pub mod retention;
pub mod usage;

use crate::consumer::{claim, spawn_driver};
use crate::sandboxes;
use crate::Dispatcher;
use centaur_core::SandboxId;
use centaur_queue::QueueMessage;
use centaur_store::dispatch::{self, ClaimOutcome};
use centaur_store::{sessions, slack_events, warm, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the loop runs.
pub const TICK: Duration = Duration::from_secs(5);
/// How often orphans are collected (a backend listing can be expensive).
const ORPHAN_EVERY: Duration = Duration::from_secs(30);
/// Most rows handled per kind per tick.
const BATCH: i64 = 100;

/// Reclaims executions whose holder's lease expired and drives them (re-attach or fail).
pub async fn recover_expired_leases(dispatcher: &Arc<Dispatcher>) -> Result<usize, StoreError> {
    let mut recovered = 0;
    for expired in dispatch::expired_leases(&dispatcher.pool, BATCH).await? {
        match claim(dispatcher, &expired, None).await {
            Some(Ok(ClaimOutcome::Claimed(execution))) => {
                tracing::info!(execution_id = %expired.execution_id, thread_key = %expired.thread_key, "recovered an expired lease");
                recovered += 1;
                spawn_driver(dispatcher, *execution).await;
            }
            Some(Err(err)) => {
                tracing::warn!(%err, execution_id = %expired.execution_id, thread_key = %expired.thread_key, "could not reclaim an expired lease; the next tick tries again");
            }
            _ => {}
        }
    }
    Ok(recovered)
}

/// Re-sends the wake-up of executions that waited too long (their message may be lost).
pub async fn sweep(dispatcher: &Dispatcher) -> Result<usize, StoreError> {
    let waiting =
        dispatch::sweep_waiting(&dispatcher.pool, dispatcher.config.sweep_after, BATCH).await?;
    for execution in &waiting {
        let message = QueueMessage {
            execution_id: execution.execution_id.clone(),
            thread_key: execution.thread_key.clone(),
        };
        if let Err(err) = dispatcher.queue.send(&message).await {
            tracing::warn!(%err, execution_id = %execution.execution_id, "sweep could not re-send");
        }
    }
    Ok(waiting.len())
}

/// Stops sandboxes of idle or released threads, and the least recently used beyond the cap.
pub async fn reap_idle_sandboxes(dispatcher: &Dispatcher) -> Result<usize, StoreError> {
    let config = &dispatcher.config;
    let reapable = sessions::reapable(
        &dispatcher.pool,
        config.sandbox_idle_ttl,
        i64::from(config.sandbox_max_live),
    )
    .await?;
    for session in &reapable {
        let id = SandboxId::from_stored(session.sandbox_id.clone());
        if let Err(err) = dispatcher.backend.stop(&id).await {
            tracing::warn!(%err, sandbox_id = %id, "could not stop an idle sandbox");
            continue;
        }
        sessions::end(
            &dispatcher.pool,
            &session.thread_key,
            &session.sandbox_id,
            "stopped",
        )
        .await?;
        warm::remove(&dispatcher.pool, &session.sandbox_id).await?;
    }
    Ok(reapable.len())
}

/// Recycles old warm sandboxes and starts new ones up to the pool size.
pub async fn replenish_warm_pool(dispatcher: &Dispatcher) -> Result<usize, StoreError> {
    let config = &dispatcher.config.sandbox;
    if !config.warm_pool_enabled {
        return Ok(0);
    }
    for expired in warm::take_expired(&dispatcher.pool, dispatcher.config.warm_pool_max_age).await?
    {
        let id = SandboxId::from_stored(expired);
        if let Err(err) = dispatcher.backend.stop(&id).await {
            tracing::warn!(%err, sandbox_id = %id, "could not stop an expired warm sandbox; orphan collection will");
        }
    }
    let harness = config.warm_pool_harness;
    let ready = warm::count_ready(&dispatcher.pool, harness.as_str()).await?;
    let missing = i64::from(config.warm_pool_size)
        .saturating_sub(ready)
        .max(0);
    for _ in 0..missing {
        let id = SandboxId::warm();
        warm::insert_ready(&dispatcher.pool, id.as_str(), harness.as_str()).await?;
        let spec = sandboxes::spec(dispatcher, id.clone(), harness, None);
        if let Err(err) = dispatcher.backend.create(&spec).await {
            tracing::warn!(%err, sandbox_id = %id, "could not start a warm sandbox");
            warm::remove(&dispatcher.pool, id.as_str()).await?;
        }
    }
    Ok(missing as usize)
}

/// Stops managed sandboxes that no session, warm-pool or execution row owns.
pub async fn collect_orphans(dispatcher: &Dispatcher) -> Result<usize, StoreError> {
    let owned: HashSet<String> = sessions::owned_sandbox_ids(&dispatcher.pool)
        .await?
        .into_iter()
        .collect();
    let managed = match dispatcher.backend.list_managed().await {
        Ok(managed) => managed,
        Err(err) => {
            tracing::warn!(%err, "could not list managed sandboxes");
            return Ok(0);
        }
    };
    let mut stopped = 0;
    for sandbox in managed
        .into_iter()
        .filter(|s| !owned.contains(s.id.as_str()))
    {
        tracing::info!(sandbox_id = %sandbox.id, "stopping an orphaned sandbox");
        if dispatcher.backend.stop(&sandbox.id).await.is_ok() {
            stopped += 1;
        }
    }
    Ok(stopped)
}

/// Runs the maintenance tasks every [`TICK`] until `shutdown` turns true.
pub async fn run(dispatcher: Arc<Dispatcher>, mut shutdown: watch::Receiver<bool>) {
    let mut last_orphan_pass = Instant::now();
    let mut last_retention_pass: Option<Instant> = None;
    usage::register();
    loop {
        if dispatcher.config.execution_worker_enabled {
            log_failure("lease recovery", recover_expired_leases(&dispatcher).await);
            log_failure("sweep", sweep(&dispatcher).await);
        }
        log_failure(
            "idle sandbox reaping",
            reap_idle_sandboxes(&dispatcher).await,
        );
        log_failure("warm pool", replenish_warm_pool(&dispatcher).await);
        log_failure(
            "slack dedupe pruning",
            slack_events::prune(&dispatcher.pool).await.map(|pruned| {
                retention::record("slack_events", pruned);
                usize::try_from(pruned).unwrap_or(usize::MAX)
            }),
        );
        // Before retention: an execution whose usage is not counted yet is not pruned.
        log_failure("usage metering", usage::meter(&dispatcher.pool).await);
        let retention = &dispatcher.config.retention;
        if last_retention_pass.is_none_or(|at| at.elapsed() >= retention.interval) {
            last_retention_pass = Some(Instant::now());
            log_failure(
                "retention",
                retention::prune(&dispatcher.pool, retention, chrono::Utc::now()).await,
            );
        }
        if last_orphan_pass.elapsed() >= ORPHAN_EVERY {
            last_orphan_pass = Instant::now();
            log_failure("orphan collection", collect_orphans(&dispatcher).await);
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn log_failure(task: &str, result: Result<usize, StoreError>) {
    if let Err(err) = result {
        tracing::warn!(%err, task, "maintenance task failed");
    }
}
