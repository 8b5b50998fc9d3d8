//! The execute's own SQL path without HTTP: `clients` tasks in this process hand one-call
//! executes on new threads to an `ExecuteBatcher` — what `POST /agent/execute` runs — on
//! a pool of the API's default size, with the API's background wake-up sender. What the
//! API would do if its HTTP layer cost nothing: the ceiling of the API's rate with today's
//! statements.

use centaur_core::api::Delivery;
use centaur_core::harness::Harness;
use centaur_http::execute_batch::ExecuteBatcher;
use centaur_store::assignments::WorkspaceChoice;
use centaur_store::audit::Actor;
use centaur_store::executions::NewExecution;
use centaur_store::messages::NewMessage;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The API's pool size when `DATABASE_MAX_CONNECTIONS` is unset.
const API_POOL_SIZE: u32 = 10;

/// Runs `requests` executes (threads `store-<label>-<i>`) from `clients` tasks on
/// `database_url`; returns executes per second.
pub async fn executes_per_second(
    database_url: &str,
    label: &str,
    requests: usize,
    clients: usize,
) -> anyhow::Result<f64> {
    let pool = centaur_store::pool_options(API_POOL_SIZE)
        .connect(database_url)
        .await?;
    centaur_store::wakeups::announce_in_background(pool.clone());
    let batcher = ExecuteBatcher::new(
        pool.clone(),
        Harness::Echo,
        Some(centaur_queue::postgres::CHANNEL),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let (next, label, batcher) = (next.clone(), label.to_owned(), batcher.clone());
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return anyhow::Ok(());
                }
                let request = NewExecution {
                    thread_key: format!("store-{label}-{i}"),
                    assignment_generation: None,
                    execute_id: None,
                    delivery: Delivery::dev(),
                    metadata: serde_json::json!({}),
                    request_hash: format!("{i:064x}"),
                    first_message: Some(NewMessage::user_text("bench", format!("{i:064x}"))),
                    harness: None,
                    actor: Actor::local_operator(Some("127.0.0.1:1".to_owned())),
                };
                batcher
                    .execute(&request, &WorkspaceChoice::default())
                    .await?;
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}
