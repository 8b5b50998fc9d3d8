//! Starting a turn: the one piece of turn logic `POST /agent/execute` and the Slack webhook
//! share, called in-process by both (the webhook makes no HTTP call to its own API).

use crate::state::AppState;
use centaur_core::api::ExecuteResponse;
use centaur_queue::QueueMessage;
use centaur_store::assignments::WorkspaceChoice;
use centaur_store::executions::NewExecution;
use centaur_store::TurnError;

/// Creates the execution — on the one-call path also attaching to (or creating) the
/// thread's assignment and storing its first message, all in one transaction (shared with
/// the executes that arrive at the same time: [`crate::execute_batch`]), so the turn is
/// durable when this returns. On the Postgres queue the queue message and its NOTIFY
/// are written in that same transaction (one commit); on SQS the wake-up is sent after it
/// (a lost send is repaired by the dispatcher's sweep). Returns the 202 answer and whether a
/// new execution was created (false for an idempotent replay, which is not enqueued again).
pub async fn execute(
    state: &AppState,
    request: &NewExecution,
    workspace: &WorkspaceChoice,
) -> Result<(ExecuteResponse, bool), TurnError> {
    let in_database = state.queue.in_database();
    let (response, created) = state.executes.execute(request, workspace).await?;
    if created && !in_database {
        let message = QueueMessage {
            execution_id: response.execution_id.clone(),
            thread_key: request.thread_key.clone(),
        };
        if let Err(err) = state.queue.send(&message).await {
            tracing::warn!(%err, execution_id = %message.execution_id, "queue send failed; the sweep will re-send");
        }
    }
    Ok((response, created))
}
