//! Idempotency records: the answer of a keyed spawn, message or release, stored with the
//! request's hash in the same transaction, and replayed (as the same typed answer, marked
//! `idempotent`) when the key comes again with the same payload.

use crate::error::TurnError;
use crate::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgConnection;

/// A kind of keyed request and where its records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// `POST /agent/spawn` with `spawn_id` (`spawn_requests`).
    Spawn,
    /// `POST /agent/message(s)` with `message_id` (`message_requests`).
    Message,
    /// `POST /agent/threads/{tk}/release` with `release_id` (`release_requests`).
    Release,
}

impl Keyed {
    fn table(self) -> &'static str {
        match self {
            Keyed::Spawn => "spawn_requests",
            Keyed::Message => "message_requests",
            Keyed::Release => "release_requests",
        }
    }

    /// The key's field (and column) name.
    pub fn key_name(self) -> &'static str {
        match self {
            Keyed::Spawn => "spawn_id",
            Keyed::Message => "message_id",
            Keyed::Release => "release_id",
        }
    }
}

/// Looks up an idempotency record: `Some(stored answer)` (with `idempotent: true`) for the
/// same payload, [`TurnError::IdempotencyMismatch`] for a different one, `None` if the key
/// is new. A stored answer that is not a `T` is [`StoreError::Corrupt`].
pub async fn replay<T: DeserializeOwned>(
    conn: &mut PgConnection,
    keyed: Keyed,
    thread_key: &str,
    key: &str,
    request_hash: &str,
) -> Result<Option<T>, TurnError> {
    let stored: Option<(String, Value)> = sqlx::query_as(&format!(
        "SELECT request_hash, response_json FROM {} WHERE thread_key = $1 AND {} = $2",
        keyed.table(),
        keyed.key_name(),
    ))
    .bind(thread_key)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    match stored {
        None => Ok(None),
        Some((hash, mut response)) if hash == request_hash => {
            response["idempotent"] = Value::Bool(true);
            let answer = serde_json::from_value(response).map_err(|err| {
                StoreError::Corrupt(format!(
                    "{}.response_json of {} '{key}' is not the answer it should be: {err}",
                    keyed.table(),
                    keyed.key_name(),
                ))
            })?;
            Ok(Some(answer))
        }
        Some(_) => Err(TurnError::IdempotencyMismatch {
            key_name: keyed.key_name(),
            key: key.to_owned(),
        }),
    }
}

/// Stores an idempotency record: `response` as JSON, replayed by [`replay`].
pub async fn remember<T: Serialize + Sync>(
    conn: &mut PgConnection,
    keyed: Keyed,
    thread_key: &str,
    key: &str,
    request_hash: &str,
    response: &T,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {} (thread_key, {}, request_hash, response_json) VALUES ($1, $2, $3, $4)",
        keyed.table(),
        keyed.key_name(),
    ))
    .bind(thread_key)
    .bind(key)
    .bind(request_hash)
    .bind(Json(response))
    .execute(conn)
    .await?;
    Ok(())
}
