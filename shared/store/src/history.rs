//! A thread's conversation as Postgres records it, for a turn that runs in a sandbox that
//! did not run the thread's previous turn (continuity lives here, not in a sandbox).

use crate::StoreError;
use centaur_core::api::MessagePart;
use sqlx::PgPool;

/// The sandbox that ran the thread's previous turn: the newest execution before
/// `execution_id` whose turn was sent to a sandbox (`None`: this is the thread's first turn).
pub async fn previous_turn_sandbox(
    pool: &PgPool,
    thread_key: &str,
    execution_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT sandbox_id FROM executions
         WHERE thread_key = $1 AND sandbox_id IS NOT NULL AND turn_sent_at IS NOT NULL
           AND seq < (SELECT seq FROM executions WHERE execution_id = $2)
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(thread_key)
    .bind(execution_id)
    .fetch_optional(pool)
    .await?)
}

/// One entry of a thread's history: a message (`role`, `parts`) or the end of an earlier
/// turn (`status`, `result_text`, `error_text`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryRow {
    /// The `seq` of the execution the entry belongs to.
    pub execution_seq: i64,
    pub role: Option<String>,
    /// A message's parts (none for a turn's end), read once from the stored jsonb,
    /// tolerantly (see the `parts` module).
    #[sqlx(try_from = "crate::parts::StoredParts")]
    pub parts: Vec<MessagePart>,
    pub status: Option<String>,
    pub result_text: Option<String>,
    pub error_text: Option<String>,
}

impl HistoryRow {
    /// True for a turn's end, false for a message.
    pub fn is_outcome(&self) -> bool {
        self.status.is_some()
    }
}

/// The thread's conversation before `execution_id`, **newest first**, at most `limit`
/// entries: the messages bound to each earlier execution (in the order they were posted),
/// each followed by that execution's end (answer, error or cancellation — also when it
/// ended before reaching a sandbox). One query.
pub async fn before_execution(
    pool: &PgPool,
    thread_key: &str,
    execution_id: &str,
    limit: i64,
) -> Result<Vec<HistoryRow>, StoreError> {
    Ok(sqlx::query_as(
        "WITH current AS (SELECT seq FROM executions WHERE execution_id = $2),
         earlier AS (
             SELECT e.* FROM executions e, current
             WHERE e.thread_key = $1 AND e.seq < current.seq)
         SELECT execution_seq, role, parts, status, result_text, error_text FROM (
             SELECT e.seq AS execution_seq, m.seq AS item_seq, m.role, m.parts,
                    NULL::text AS status, NULL::text AS result_text, NULL::text AS error_text
             FROM messages m JOIN earlier e ON e.execution_id = m.delivered_execution_id
             WHERE m.thread_key = $1
             UNION ALL
             SELECT e.seq, 9223372036854775807, NULL, '[]'::jsonb, e.status, e.result_text, e.error_text
             FROM earlier e
             WHERE e.status IN ('completed','failed_permanent','cancelled')
         ) entries
         ORDER BY execution_seq DESC, item_seq DESC
         LIMIT $3",
    )
    .bind(thread_key)
    .bind(execution_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
