//! `messages`: what people said on a thread, handed to the next execution.

use crate::assignments::{lock_thread, require_generation};
use crate::audit::{self, Action, Actor, Target};
use crate::error::TurnError;
use crate::events::{self, kinds};
use crate::idempotency::{self, Keyed};
use crate::wakeups;
use crate::StoreError;
use centaur_core::api::{MessagePart, MessageResponse};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

/// A validated message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Caller's id (an idempotency key per thread), or `None` to generate one.
    pub message_id: Option<String>,
    pub role: String,
    pub parts: Vec<MessagePart>,
    pub user_id: Option<String>,
    pub metadata: Value,
    /// Canonical hash of the request, for idempotent replays.
    pub request_hash: String,
}

impl NewMessage {
    /// A plain-text user message with a generated id.
    pub fn user_text(text: &str, request_hash: String) -> Self {
        Self {
            message_id: None,
            role: "user".into(),
            parts: vec![MessagePart::text(text)],
            user_id: None,
            metadata: serde_json::json!({}),
            request_hash,
        }
    }
}

/// Stores one message inside the caller's locked transaction and returns its answer (the
/// stored one, marked `idempotent`, for a replayed `message_id`).
pub async fn insert(
    conn: &mut PgConnection,
    thread_key: &str,
    generation: i64,
    message: &NewMessage,
) -> Result<MessageResponse, TurnError> {
    if let Some(key) = &message.message_id {
        if let Some(stored) =
            idempotency::replay(conn, Keyed::Message, thread_key, key, &message.request_hash)
                .await?
        {
            return Ok(stored);
        }
    }
    let message_id = message
        .message_id
        .clone()
        .unwrap_or_else(|| centaur_core::ids::random_id("msg_", 8));
    sqlx::query(
        "INSERT INTO messages (id, thread_key, assignment_generation, role, parts, user_id, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&message_id)
    .bind(thread_key)
    .bind(generation)
    .bind(&message.role)
    .bind(Json(&message.parts))
    .bind(&message.user_id)
    .bind(&message.metadata)
    .execute(&mut *conn)
    .await?;
    let event = json!({
        "message_id": message_id, "role": message.role, "parts": message.parts, "user_id": message.user_id,
    });
    let stored_event_id =
        events::append(&mut *conn, thread_key, None, kinds::MESSAGE, &event).await?;
    let response = MessageResponse {
        ok: true,
        message_id,
        stored_event_id,
        idempotent: false,
    };
    if let Some(key) = &message.message_id {
        idempotency::remember(
            conn,
            Keyed::Message,
            thread_key,
            key,
            &message.request_hash,
            &response,
        )
        .await?;
    }
    Ok(response)
}

/// `POST /agent/message` / `/agent/messages`: stores messages under the thread's lock,
/// fenced by the assignment generation, all or nothing. One `message` audit row for
/// `actor` is written in the transaction, unless every message was a replay.
pub async fn post(
    pool: &PgPool,
    thread_key: &str,
    generation: i64,
    messages: &[NewMessage],
    actor: &Actor,
) -> Result<Vec<MessageResponse>, TurnError> {
    let mut tx = pool.begin().await?;
    lock_thread(&mut tx, thread_key).await?;
    require_generation(&mut tx, thread_key, generation).await?;
    let mut responses = Vec::with_capacity(messages.len());
    for message in messages {
        responses.push(insert(&mut tx, thread_key, generation, message).await?);
    }
    let stored = responses.iter().any(|response| !response.idempotent);
    if stored {
        audit::record(&mut tx, actor, Action::Message, Target::thread(thread_key)).await?;
    }
    tx.commit().await?;
    if stored {
        wakeups::announce(pool, &[thread_key], None).await;
    }
    Ok(responses)
}

/// True if the thread has any stored message (a Slack thread Centaur already took part in).
pub async fn thread_has_messages(pool: &PgPool, thread_key: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages WHERE thread_key = $1)")
            .bind(thread_key)
            .fetch_one(pool)
            .await?,
    )
}

/// A stored message as `GET /agent/messages` lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MessageView {
    pub message_id: String,
    pub thread_key: String,
    pub assignment_generation: i64,
    pub role: String,
    // Read once from the stored jsonb, tolerantly (see the `parts` module). (No doc
    // comment: it would become the OpenAPI field's description.)
    #[sqlx(try_from = "crate::parts::StoredParts")]
    pub parts: Vec<MessagePart>,
    pub user_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The execution that carried the message to the harness, once one did.
    pub delivered_execution_id: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(skip)]
    pub seq: i64,
}

/// A page of a thread's messages after `cursor` (a `seq`), oldest first.
pub async fn page(
    pool: &PgPool,
    thread_key: &str,
    cursor: i64,
    limit: i64,
) -> Result<Vec<MessageView>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id AS message_id, thread_key, assignment_generation, role, parts, user_id, metadata,
                delivered_execution_id, created_at, seq
         FROM messages WHERE thread_key = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(thread_key)
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
