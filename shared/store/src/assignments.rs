//! `runtime_assignments`: which harness serves a thread, fenced by a per-thread
//! increasing generation. Spawn, message, execute and release serialise per thread with
//! `pg_advisory_xact_lock(hashtext(thread_key))`.

use crate::error::TurnError;
use crate::executions;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

/// The active assignment of a thread.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Assignment {
    pub thread_key: String,
    pub assignment_generation: i64,
    pub harness: String,
    pub prompt_ref: String,
}

/// Takes the thread's serialisation lock for the rest of the transaction.
pub async fn lock_thread(conn: &mut PgConnection, thread_key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(thread_key)
        .execute(conn)
        .await?;
    Ok(())
}

/// The thread's active assignment, if any.
pub async fn active(
    conn: &mut PgConnection,
    thread_key: &str,
) -> Result<Option<Assignment>, sqlx::Error> {
    sqlx::query_as(
        "SELECT thread_key, assignment_generation, harness, prompt_ref FROM runtime_assignments
         WHERE thread_key = $1 AND state = 'active'",
    )
    .bind(thread_key)
    .fetch_optional(conn)
    .await
}

/// The active assignment, checked against the caller's generation (the fencing token).
pub async fn require_generation(
    conn: &mut PgConnection,
    thread_key: &str,
    generation: i64,
) -> Result<Assignment, TurnError> {
    let assignment = active(conn, thread_key)
        .await?
        .ok_or_else(|| TurnError::NoActiveAssignment(thread_key.to_owned()))?;
    if assignment.assignment_generation != generation {
        return Err(TurnError::GenerationStale {
            given: generation,
            active: assignment.assignment_generation,
        });
    }
    Ok(assignment)
}

/// Looks up an idempotency record: `Some(stored response)` for the same payload,
/// a mismatch error for a different one, `None` if the key is new.
pub async fn replay(
    conn: &mut PgConnection,
    table: &'static str,
    key_column: &'static str,
    thread_key: &str,
    key: &str,
    request_hash: &str,
) -> Result<Option<Value>, TurnError> {
    let stored: Option<(String, Value)> = sqlx::query_as(&format!(
        "SELECT request_hash, response_json FROM {table} WHERE thread_key = $1 AND {key_column} = $2"
    ))
    .bind(thread_key)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    match stored {
        None => Ok(None),
        Some((hash, mut response)) if hash == request_hash => {
            response["idempotent"] = json!(true);
            Ok(Some(response))
        }
        Some(_) => Err(TurnError::IdempotencyMismatch {
            key_name: key_column,
            key: key.to_owned(),
        }),
    }
}

/// Stores an idempotency record.
pub async fn remember(
    conn: &mut PgConnection,
    table: &'static str,
    key_column: &'static str,
    thread_key: &str,
    key: &str,
    request_hash: &str,
    response: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} (thread_key, {key_column}, request_hash, response_json) VALUES ($1, $2, $3, $4)"
    ))
    .bind(thread_key)
    .bind(key)
    .bind(request_hash)
    .bind(response)
    .execute(conn)
    .await?;
    Ok(())
}

/// The prompt bundle a harness's sandboxes receive.
pub fn prompt_ref(harness: &str) -> String {
    format!("prompts/{harness}/v1")
}

/// Attaches to the active assignment, or creates generation + 1 (inside the caller's
/// locked transaction). `requested` is the harness the caller asked for, if any.
pub async fn attach_or_create(
    conn: &mut PgConnection,
    thread_key: &str,
    requested: Option<&str>,
    default_harness: &str,
) -> Result<Assignment, TurnError> {
    if let Some(active) = active(conn, thread_key).await? {
        if let Some(requested) = requested.filter(|requested| *requested != active.harness) {
            return Err(TurnError::PromptMismatch {
                active: active.harness,
                requested: requested.to_owned(),
            });
        }
        return Ok(active);
    }
    let harness = requested.unwrap_or(default_harness);
    Ok(sqlx::query_as(
        "INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref, state)
         SELECT $1, COALESCE(max(assignment_generation), 0) + 1, $2, $3, 'active'
         FROM runtime_assignments WHERE thread_key = $1
         RETURNING thread_key, assignment_generation, harness, prompt_ref",
    )
    .bind(thread_key)
    .bind(harness)
    .bind(prompt_ref(harness))
    .fetch_one(conn)
    .await?)
}

/// `POST /agent/spawn`: attach or create, with `spawn_id` idempotency.
pub async fn spawn(
    pool: &PgPool,
    thread_key: &str,
    spawn_id: Option<&str>,
    requested: Option<&str>,
    default_harness: &str,
    request_hash: &str,
) -> Result<Value, TurnError> {
    let mut tx = pool.begin().await?;
    lock_thread(&mut tx, thread_key).await?;
    if let Some(key) = spawn_id {
        if let Some(stored) = replay(
            &mut tx,
            "spawn_requests",
            "spawn_id",
            thread_key,
            key,
            request_hash,
        )
        .await?
        {
            return Ok(stored);
        }
    }
    let assignment = attach_or_create(&mut tx, thread_key, requested, default_harness).await?;
    let busy = executions::has_unfinished(&mut tx, thread_key).await?;
    let response = json!({
        "ok": true,
        "thread_key": thread_key,
        "assignment_generation": assignment.assignment_generation,
        "assignment_state": if busy { "assigned_busy" } else { "assigned_idle" },
        "harness": assignment.harness,
        "prompt_ref": assignment.prompt_ref,
    });
    if let Some(key) = spawn_id {
        remember(
            &mut tx,
            "spawn_requests",
            "spawn_id",
            thread_key,
            key,
            request_hash,
            &response,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(response)
}

/// `POST /agent/threads/{tk}/release`: releases the active assignment (optionally
/// cancelling in-flight executions), with `release_id` idempotency.
pub async fn release(
    pool: &PgPool,
    thread_key: &str,
    release_id: Option<&str>,
    cancel_inflight: bool,
    request_hash: &str,
) -> Result<Value, TurnError> {
    let mut tx = pool.begin().await?;
    lock_thread(&mut tx, thread_key).await?;
    if let Some(key) = release_id {
        if let Some(stored) = replay(
            &mut tx,
            "release_requests",
            "release_id",
            thread_key,
            key,
            request_hash,
        )
        .await?
        {
            return Ok(stored);
        }
    }
    let released: Option<i64> = sqlx::query_scalar(
        "UPDATE runtime_assignments SET state = 'released', released_at = now(), updated_at = now()
         WHERE thread_key = $1 AND state = 'active' RETURNING assignment_generation",
    )
    .bind(thread_key)
    .fetch_optional(&mut *tx)
    .await?;
    let generation =
        match released {
            Some(generation) => Some(generation),
            None => sqlx::query_scalar(
                "SELECT max(assignment_generation) FROM runtime_assignments WHERE thread_key = $1",
            )
            .bind(thread_key)
            .fetch_one(&mut *tx)
            .await?,
        };
    let cancelled = if cancel_inflight && released.is_some() {
        executions::cancel_thread_inflight(&mut tx, thread_key).await?
    } else {
        Vec::new()
    };
    let response = json!({
        "ok": true,
        "thread_key": thread_key,
        "released": released.is_some(),
        "assignment_generation": generation,
        "cancelled_execution_ids": cancelled,
    });
    if let Some(key) = release_id {
        remember(
            &mut tx,
            "release_requests",
            "release_id",
            thread_key,
            key,
            request_hash,
            &response,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(response)
}
