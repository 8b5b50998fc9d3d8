//! Group commit for the two writes every turn makes: its claim and its end
//! ([`centaur_store::group_commit`]). Claims and ends that come while others are being
//! written go together in one statement ([`dispatch::claim_many`],
//! [`dispatch::finish_many`]); one that finds the writer idle is written at once, alone.
//! A thread's claims and ends never share a batch and keep their order.

use centaur_config::DispatcherConfig;
use centaur_store::dispatch::{
    self, ClaimCall, ClaimOutcome, ClaimTerms, ExecutionRef, Finish, FinishCall, Finished, Lease,
};
use centaur_store::group_commit::{GroupCommit, Keyed, Limits, WriteBatch};
use centaur_store::StoreError;
use sqlx::PgPool;
use std::sync::Arc;

/// Claim statements in flight at once, and the most claims one makes. One in flight
/// (measured with the drain benchmark, echo turns on reused sandboxes, two cores): at
/// concurrency 32, batches of 7 and about 1,000 turns/s with Postgres spending 1.0 ms per
/// turn, against batches of 4, 860–980/s and 1.2–1.3 ms with two in flight (1.8–2.4 ms
/// per turn before group commit). A claim that finds none in flight is made at once.
const CLAIM_LIMITS: Limits = Limits {
    in_flight: 1,
    max_batch: 32,
    name: "claim_batch",
};

/// End statements in flight at once, and the most ends one writes (measured with the
/// claims, see [`CLAIM_LIMITS`]).
const END_LIMITS: Limits = Limits {
    in_flight: 1,
    max_batch: 32,
    name: "end_batch",
};

/// A claim waiting to be made.
pub struct Claim {
    pub execution: ExecutionRef,
    /// The queue message that woke the claim, if any.
    pub receipt: Option<String>,
}

impl Keyed for Claim {
    fn key(&self) -> &str {
        &self.execution.thread_key
    }
}

/// An end waiting to be written, under its lease.
pub struct End {
    pub holder: Lease,
    pub finish: Finish,
}

impl Keyed for End {
    fn key(&self) -> &str {
        &self.holder.thread_key
    }
}

/// The dispatcher's claim and end writers; cheap to clone.
#[derive(Clone)]
pub struct Batches {
    claims: GroupCommit<Claim, Result<ClaimOutcome, StoreError>>,
    ends: GroupCommit<End, Result<Finished, StoreError>>,
}

impl Batches {
    /// Writers on `pool`, claiming as `config`'s worker with its lease and timeouts.
    pub fn new(pool: &PgPool, config: &DispatcherConfig) -> Self {
        let terms = ClaimTerms {
            worker_id: Arc::from(config.worker_id.as_str()),
            lease: config.lease,
            silence: config.silence_timeout,
            hard: config.hard_timeout,
        };
        let claim_pool = pool.clone();
        let claim: WriteBatch<Claim, Result<ClaimOutcome, StoreError>> =
            Arc::new(move |batch| Box::pin(claim_batch(claim_pool.clone(), terms.clone(), batch)));
        let end_pool = pool.clone();
        let end: WriteBatch<End, Result<Finished, StoreError>> =
            Arc::new(move |batch| Box::pin(end_batch(end_pool.clone(), batch)));
        Self {
            claims: GroupCommit::new(CLAIM_LIMITS, claim),
            ends: GroupCommit::new(END_LIMITS, end),
        }
    }

    /// Claims the execution with the batch it joins ([`dispatch::claim`]).
    pub async fn claim(&self, claim: Claim) -> Result<ClaimOutcome, StoreError> {
        self.claims.call(claim).await.unwrap_or(Err(shut_down()))
    }

    /// Writes the end with the batch it joins ([`dispatch::finish`]).
    pub async fn finish(&self, end: End) -> Result<Finished, StoreError> {
        self.ends.call(end).await.unwrap_or(Err(shut_down()))
    }
}

/// Makes a batch of claims ([`dispatch::claim_many`]).
async fn claim_batch(
    pool: PgPool,
    terms: ClaimTerms,
    batch: Vec<Claim>,
) -> Vec<Result<ClaimOutcome, StoreError>> {
    let calls: Vec<ClaimCall> = batch
        .iter()
        .map(|claim| ClaimCall {
            execution_id: &claim.execution.execution_id,
            receipt: claim.receipt.as_deref(),
        })
        .collect();
    dispatch::claim_many(&pool, &terms, &calls).await
}

/// Writes a batch of ends ([`dispatch::finish_many`]).
async fn end_batch(pool: PgPool, batch: Vec<End>) -> Vec<Result<Finished, StoreError>> {
    let calls: Vec<FinishCall> = batch
        .iter()
        .map(|end| FinishCall {
            holder: &end.holder,
            finish: &end.finish,
        })
        .collect();
    dispatch::finish_many(&pool, &calls).await
}

/// The answer of a call whose runtime shut down under the collector.
fn shut_down() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}
