//! Final delivery to Slack: claims `pending` Slack outbox rows (leased, `SKIP LOCKED`, so
//! several dispatchers share the work), posts the answer into the thread in chunks tagged
//! `{execution_id, chunk_index, chunk_count}`, records each chunk as it lands so a retry or
//! a takeover never posts one twice, and marks the row delivered. Rate limits wait for
//! `Retry-After`, transient errors back off exponentially, permanent errors dead-letter at
//! once; every failure is an event on the execution's trail.

use crate::Dispatcher;
use centaur_slack::chunk::{self, MAX_CHUNK_CHARS};
use centaur_slack::web_api::ChunkTag;
use centaur_slack::{SlackApiError, SlackClient};
use centaur_store::outbox::{self, ClaimedDelivery, FailedOutcome, Retry};
use centaur_store::StoreError;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// How long a claimed row is ours.
const LEASE: Duration = Duration::from_secs(60);
/// Rows claimed per round.
const BATCH: i64 = 10;
/// Longest wait between rounds when nothing wakes the loop.
const POLL: Duration = Duration::from_secs(1);
/// Longest backoff after transient errors.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Delivers due Slack rows until `shutdown` turns true.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    slack: SlackClient,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match deliver_due(&dispatcher, &slack).await {
            Ok(delivered) if delivered == BATCH as usize => continue,
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "delivery round failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = dispatcher.deliveries_due.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One round: claims due Slack rows and delivers each; how many were claimed.
pub async fn deliver_due(
    dispatcher: &Dispatcher,
    slack: &SlackClient,
) -> Result<usize, StoreError> {
    let owner = &dispatcher.config.worker_id;
    let claimed = outbox::claim(&dispatcher.pool, owner, BATCH, Some("slack"), LEASE).await?;
    let count = claimed.len();
    for row in claimed {
        let span = tracing::info_span!("final_delivery",
            execution_id = %row.execution_id, thread_key = %row.thread_key);
        deliver(dispatcher, slack, row).instrument(span).await?;
    }
    Ok(count)
}

fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(2u64.saturating_pow(exponent)).min(MAX_BACKOFF)
}

async fn deliver(
    dispatcher: &Dispatcher,
    slack: &SlackClient,
    row: ClaimedDelivery,
) -> Result<(), StoreError> {
    let pool = &dispatcher.pool;
    let owner = dispatcher.config.worker_id.as_str();
    let id = row.execution_id.as_str();
    let fail = |error: String, retry: Retry| async move {
        let outcome = outbox::failed(pool, id, owner, &error, retry).await?;
        let label = match outcome {
            FailedOutcome::RetryScheduled => "retry",
            FailedOutcome::DeadLettered => "dead_letter",
            FailedOutcome::NotOwner => "lease_lost",
        };
        metrics::counter!("centaur_final_deliveries_total", "outcome" => label).increment(1);
        tracing::warn!(error, outcome = label, "Slack delivery failed");
        Ok::<(), StoreError>(())
    };
    let Some(channel) = row.delivery["channel"].as_str() else {
        return fail("the delivery names no Slack channel".into(), Retry::Never).await;
    };
    let thread_ts = row.delivery["thread_ts"].as_str();
    let text = row
        .payload
        .as_ref()
        .and_then(|p| p["text"].as_str())
        .unwrap_or_default();
    let chunks = chunk::split(text, MAX_CHUNK_CHARS);
    let mut next = usize::try_from(row.delivered_chunks).unwrap_or(0);
    if row.reclaimed {
        // The previous deliverer died mid-send: what it posted may not be recorded yet.
        if let Some(thread_ts) = thread_ts {
            match slack.posted_chunks(channel, thread_ts, id).await {
                Ok(posted) => {
                    while posted.contains(&next) {
                        next += 1;
                    }
                }
                Err(err) => {
                    return fail(err.to_string(), Retry::After(backoff(row.attempt_count))).await
                }
            }
        }
    }
    for (index, text) in chunks.iter().enumerate().skip(next) {
        let tag = ChunkTag {
            execution_id: id,
            chunk_index: index,
            chunk_count: chunks.len(),
        };
        match slack.post_chunk(channel, thread_ts, text, tag).await {
            Ok(_) => {
                let posted = i32::try_from(index + 1).unwrap_or(i32::MAX);
                if !outbox::record_chunks(pool, id, owner, posted).await? {
                    tracing::warn!("lost the delivery lease mid-send; the next deliverer resumes");
                    return Ok(());
                }
            }
            Err(SlackApiError::RateLimited { retry_after }) => {
                let error = format!("ratelimited (Retry-After {}s)", retry_after.as_secs());
                return fail(error, Retry::After(retry_after)).await;
            }
            Err(err @ SlackApiError::Transient(_)) => {
                return fail(err.to_string(), Retry::After(backoff(row.attempt_count))).await
            }
            Err(err @ SlackApiError::Permanent { .. }) => {
                return fail(err.to_string(), Retry::Never).await
            }
        }
    }
    let detail = json!({"platform": "slack", "channel": channel, "chunks": chunks.len()});
    if outbox::delivered(pool, id, owner, &detail).await? {
        metrics::counter!("centaur_final_deliveries_total", "outcome" => "delivered").increment(1);
        tracing::info!(chunks = chunks.len(), "reply posted to Slack");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
