//! Delivery to Slack: claims `pending` Slack outbox rows (leased, `SKIP LOCKED`, so several
//! dispatchers share the work), posts the answer into the thread in chunks tagged
//! `{execution_id, chunk_index, chunk_count}`, records each chunk as it lands so a retry or
//! a takeover never posts one twice, and marks the row delivered. When the turn showed a
//! live status message ([`progress`]) the first chunk **replaces** it (`chat.update`),
//! so the answer is never posted next to a stale "working…" line nor twice. Refused turns'
//! notices (`slack_notices`) go out the same way. Rate limits wait for `Retry-After`,
//! transient errors back off exponentially, permanent errors dead-letter at once; every
//! failure of an answer is an event on the execution's trail. No message is ever empty.

pub mod progress;

use crate::Dispatcher;
use centaur_slack::chunk::{self, MAX_CHUNK_CHARS};
use centaur_slack::web_api::{self, ChunkTag, NOTICE_EVENT_TYPE, STATUS_EVENT_TYPE};
use centaur_slack::{SlackApiError, SlackClient};
use centaur_store::notices::{self, ClaimedNotice};
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

/// Delivers due Slack answers and notices until `shutdown` turns true, and runs the live
/// progress loop beside it when `SLACK_PROGRESS` is on.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    slack: SlackClient,
    mut shutdown: watch::Receiver<bool>,
) {
    let progress = dispatcher
        .config
        .slack
        .clone()
        .filter(|config| config.progress)
        .map(|config| {
            tokio::spawn(progress::run(
                dispatcher.clone(),
                slack.clone(),
                config,
                shutdown.clone(),
            ))
        });
    loop {
        let answers = deliver_due(&dispatcher, &slack).await;
        let notices = deliver_notices(&dispatcher, &slack).await;
        match (answers, notices) {
            (Ok(a), Ok(n)) if a == BATCH as usize || n == BATCH as usize => continue,
            (Err(err), _) | (_, Err(err)) => tracing::warn!(%err, "delivery round failed"),
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = dispatcher.deliveries_due.notified() => {}
            _ = shutdown.changed() => break,
        }
    }
    if let Some(progress) = progress {
        if let Err(err) = progress.await {
            tracing::error!(%err, "the Slack progress task panicked");
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

/// Exponential backoff after `attempts` failed attempts, capped.
pub fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(2u64.saturating_pow(exponent)).min(MAX_BACKOFF)
}

/// How a failed Slack call is retried.
fn retry_of(err: &SlackApiError, attempts: i32) -> Retry {
    match err {
        SlackApiError::RateLimited { retry_after } => Retry::After(*retry_after),
        SlackApiError::Transient(_) => Retry::After(backoff(attempts)),
        SlackApiError::Permanent { .. } => Retry::Never,
    }
}

/// `thread_not_found` on a lookup means nothing of ours is in the thread yet.
fn nothing_found<T: Default>(result: Result<T, SlackApiError>) -> Result<T, SlackApiError> {
    match result {
        Err(err) if err.code() == Some("thread_not_found") => Ok(T::default()),
        other => other,
    }
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
        .filter(|text| !text.trim().is_empty())
        .map_or_else(|| centaur_core::delivery::empty_answer(id), str::to_owned);
    let chunks = chunk::split(&text, MAX_CHUNK_CHARS);
    let mut next = usize::try_from(row.delivered_chunks).unwrap_or(0);
    let mut status_ts = row.status_ts.clone();
    if let Some(thread_ts) = thread_ts {
        if status_ts.is_none() && row.status_posting {
            // A progress updater posted the status message and died before recording it.
            let found = slack
                .find_tagged(channel, thread_ts, STATUS_EVENT_TYPE, "execution_id", id)
                .await;
            match nothing_found(found) {
                Ok(found) => status_ts = found,
                Err(err) => {
                    let retry = retry_of(&err, row.attempt_count);
                    return fail(err.to_string(), retry).await;
                }
            }
        }
        if row.reclaimed {
            // The previous deliverer died mid-send: what it posted may not be recorded yet.
            match nothing_found(slack.posted_chunks(channel, thread_ts, id).await) {
                Ok(posted) => {
                    while posted.contains(&next) {
                        next += 1;
                    }
                }
                Err(err) => {
                    let retry = retry_of(&err, row.attempt_count);
                    return fail(err.to_string(), retry).await;
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
        let sent = match (index, &status_ts) {
            (0, Some(ts)) => {
                match slack
                    .update_message(channel, ts, text, Some(tag.metadata()))
                    .await
                {
                    // The status message was deleted or can no longer be edited: post the
                    // answer instead.
                    Err(err)
                        if matches!(
                            err.code(),
                            Some(
                                "message_not_found" | "cant_update_message" | "edit_window_closed"
                            )
                        ) =>
                    {
                        slack
                            .post_chunk(channel, thread_ts, text, tag)
                            .await
                            .map(drop)
                    }
                    other => other,
                }
            }
            _ => slack
                .post_chunk(channel, thread_ts, text, tag)
                .await
                .map(drop),
        };
        match sent {
            Ok(()) => {
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
            Err(err) => {
                let retry = retry_of(&err, row.attempt_count);
                return fail(err.to_string(), retry).await;
            }
        }
    }
    let detail = json!({
        "platform": "slack", "channel": channel, "chunks": chunks.len(),
        "replaced_status": status_ts.is_some(),
    });
    if outbox::delivered(pool, id, owner, &detail).await? {
        metrics::counter!("centaur_final_deliveries_total", "outcome" => "delivered").increment(1);
        tracing::info!(chunks = chunks.len(), "reply posted to Slack");
    }
    Ok(())
}

/// One round of notices (refused turns' replies); how many were claimed.
pub async fn deliver_notices(
    dispatcher: &Dispatcher,
    slack: &SlackClient,
) -> Result<usize, StoreError> {
    let owner = &dispatcher.config.worker_id;
    let claimed = notices::claim(&dispatcher.pool, owner, BATCH, LEASE).await?;
    let count = claimed.len();
    for notice in claimed {
        let span = tracing::info_span!("slack_notice",
            notice_id = %notice.notice_id, thread_key = %notice.thread_key);
        deliver_notice(dispatcher, slack, notice)
            .instrument(span)
            .await?;
    }
    Ok(count)
}

async fn deliver_notice(
    dispatcher: &Dispatcher,
    slack: &SlackClient,
    notice: ClaimedNotice,
) -> Result<(), StoreError> {
    let pool = &dispatcher.pool;
    let owner = dispatcher.config.worker_id.as_str();
    let id = notice.notice_id.as_str();
    let fail = |error: String, retry: Retry| async move {
        let outcome = notices::failed(pool, id, owner, &error, retry).await?;
        tracing::warn!(error, ?outcome, "Slack notice not posted");
        Ok::<(), StoreError>(())
    };
    let Some(channel) = notice.delivery["channel"].as_str() else {
        return fail("the notice names no Slack channel".into(), Retry::Never).await;
    };
    let thread_ts = notice.delivery["thread_ts"].as_str();
    if let (true, Some(thread_ts)) = (notice.reclaimed, thread_ts) {
        let found = slack
            .find_tagged(channel, thread_ts, NOTICE_EVENT_TYPE, "notice_id", id)
            .await;
        match nothing_found(found) {
            Ok(Some(ts)) => {
                notices::delivered(pool, id, owner, &ts).await?;
                return Ok(());
            }
            Ok(None) => {}
            Err(err) => {
                let retry = retry_of(&err, notice.attempt_count);
                return fail(err.to_string(), retry).await;
            }
        }
    }
    let tag = web_api::tag(NOTICE_EVENT_TYPE, "notice_id", id);
    match slack
        .post_message(channel, thread_ts, &notice.text, Some(tag))
        .await
    {
        Ok(ts) => {
            if notices::delivered(pool, id, owner, &ts).await? {
                tracing::info!("refusal notice posted to Slack");
            }
            Ok(())
        }
        Err(err) => {
            let retry = retry_of(&err, notice.attempt_count);
            fail(err.to_string(), retry).await
        }
    }
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

    #[test]
    fn permanent_errors_are_never_retried_and_rate_limits_wait_as_told() {
        let permanent = SlackApiError::Permanent {
            method: "chat.postMessage".into(),
            code: "channel_not_found".into(),
        };
        assert_eq!(retry_of(&permanent, 0), Retry::Never);
        let limited = SlackApiError::RateLimited {
            retry_after: Duration::from_secs(7),
        };
        assert_eq!(retry_of(&limited, 9), Retry::After(Duration::from_secs(7)));
        let missing = Err::<Vec<usize>, _>(SlackApiError::Permanent {
            method: "conversations.replies".into(),
            code: "thread_not_found".into(),
        });
        assert_eq!(nothing_found(missing), Ok(Vec::new()));
    }
}
