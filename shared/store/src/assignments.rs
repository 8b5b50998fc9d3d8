//! `runtime_assignments`: which harness serves a thread, fenced by a per-thread
//! increasing generation. Spawn, message, execute and release serialise per thread with
//! `pg_advisory_xact_lock(hashtext(thread_key))`.

use crate::audit::{self, Action, Actor, Target};
use crate::error::TurnError;
use crate::idempotency::{self, Keyed};
use crate::inflight;
use crate::wakeups;
use crate::StoreError;
use centaur_core::api::{ReleaseResponse, SpawnResponse};
use centaur_core::Harness;
use sqlx::{PgConnection, PgPool};

/// The active assignment of a thread.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Assignment {
    pub thread_key: String,
    pub assignment_generation: i64,
    /// The column's CHECK allows only the canonical names.
    #[sqlx(try_from = "String")]
    pub harness: Harness,
    pub prompt_ref: String,
    /// The repository the thread works in (normal form), if any.
    pub repo: Option<String>,
}

/// The workspace a spawn asks for, after the API validated `repo` against the deployment's
/// allowlist. A named repo or override that differs from the active assignment's is a
/// [`TurnError::WorkspaceMismatch`], like a different harness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceChoice {
    /// The repository the caller named (normal form).
    pub requested_repo: Option<String>,
    /// The deployment's `AGENT_REPO` (normal form), for a new assignment that names none.
    pub default_repo: Option<String>,
    /// The caller's `agents_md_override`.
    pub agents_md_override: Option<String>,
}

/// Takes the serialisation locks of `thread_keys` for the rest of the transaction, in one
/// statement and always in the same order (so two batches never wait on each other in a
/// cycle); the same locks as [`lock_thread`].
pub async fn lock_threads(
    conn: &mut PgConnection,
    thread_keys: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT count(pg_advisory_xact_lock(k))
         FROM (SELECT DISTINCT hashtext(t) AS k FROM unnest($1::text[]) AS t ORDER BY k) AS keys",
    )
    .bind(thread_keys)
    .execute(conn)
    .await?;
    Ok(())
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
        "SELECT thread_key, assignment_generation, harness, prompt_ref, repo FROM runtime_assignments
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

/// The prompt bundle a harness's sandboxes receive.
pub fn prompt_ref(harness: Harness) -> String {
    format!("prompts/{harness}/v1")
}

/// Whether a caller asking for harness `requested` and `workspace` may attach to the thread's
/// `active` assignment: the same harness, repo and override (`same_override`: whether the
/// requested override equals the stored one, `None` when none is requested), else the
/// refusal.
pub fn check_attach(
    active: &Assignment,
    requested: Option<Harness>,
    workspace: &WorkspaceChoice,
    same_override: Option<bool>,
) -> Result<(), TurnError> {
    if let Some(requested) = requested.filter(|requested| *requested != active.harness) {
        return Err(TurnError::PromptMismatch {
            active: active.harness,
            requested,
        });
    }
    if let Some(repo) = &workspace.requested_repo {
        if active.repo.as_ref() != Some(repo) {
            return Err(TurnError::WorkspaceMismatch(format!(
                "thread already has an active assignment with repo '{}'; release it before spawning with repo '{repo}'",
                active.repo.as_deref().unwrap_or("(none)"),
            )));
        }
    }
    if same_override == Some(false) {
        return Err(TurnError::WorkspaceMismatch(
            "thread already has an active assignment with another agents_md_override; release it before spawning with a new one".to_owned(),
        ));
    }
    Ok(())
}

/// Attaches to the active assignment, or creates generation + 1 (inside the caller's
/// locked transaction). `requested` is the harness the caller asked for, if any; a
/// different harness, repo or override than the active assignment's is refused.
pub async fn attach_or_create(
    conn: &mut PgConnection,
    thread_key: &str,
    requested: Option<Harness>,
    default_harness: Harness,
    workspace: &WorkspaceChoice,
) -> Result<Assignment, TurnError> {
    if let Some(active) = active(conn, thread_key).await? {
        let same_override = match &workspace.agents_md_override {
            Some(text) => Some(
                sqlx::query_scalar(
                    "SELECT agents_md_override IS NOT DISTINCT FROM $3 FROM runtime_assignments
                     WHERE thread_key = $1 AND assignment_generation = $2",
                )
                .bind(thread_key)
                .bind(active.assignment_generation)
                .bind(text)
                .fetch_one(&mut *conn)
                .await?,
            ),
            None => None,
        };
        check_attach(&active, requested, workspace, same_override)?;
        return Ok(active);
    }
    let harness = requested.unwrap_or(default_harness);
    let repo = workspace
        .requested_repo
        .as_ref()
        .or(workspace.default_repo.as_ref());
    Ok(sqlx::query_as(
        "INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref, state,
                                         repo, agents_md_override)
         SELECT $1, COALESCE(max(assignment_generation), 0) + 1, $2, $3, 'active', $4, $5
         FROM runtime_assignments WHERE thread_key = $1
         RETURNING thread_key, assignment_generation, harness, prompt_ref, repo",
    )
    .bind(thread_key)
    .bind(harness.as_str())
    .bind(prompt_ref(harness))
    .bind(repo)
    .bind(&workspace.agents_md_override)
    .fetch_one(conn)
    .await?)
}

/// `POST /agent/spawn` without a repository or override, recorded as the local operator
/// (tests and tools; see [`spawn_in_workspace`]).
pub async fn spawn(
    pool: &PgPool,
    thread_key: &str,
    spawn_id: Option<&str>,
    requested: Option<Harness>,
    default_harness: Harness,
    request_hash: &str,
) -> Result<SpawnResponse, TurnError> {
    spawn_in_workspace(
        pool,
        thread_key,
        spawn_id,
        requested,
        default_harness,
        &WorkspaceChoice::default(),
        request_hash,
        &Actor::local_operator(None),
    )
    .await
}

/// `POST /agent/spawn`: attach or create, with `spawn_id` idempotency. The response
/// carries the thread's `repo`. `actor`'s `spawn` audit row is written in the transaction
/// (not for a replay).
#[allow(clippy::too_many_arguments)]
pub async fn spawn_in_workspace(
    pool: &PgPool,
    thread_key: &str,
    spawn_id: Option<&str>,
    requested: Option<Harness>,
    default_harness: Harness,
    workspace: &WorkspaceChoice,
    request_hash: &str,
    actor: &Actor,
) -> Result<SpawnResponse, TurnError> {
    let mut tx = pool.begin().await?;
    lock_thread(&mut tx, thread_key).await?;
    if let Some(key) = spawn_id {
        if let Some(stored) =
            idempotency::replay(&mut tx, Keyed::Spawn, thread_key, key, request_hash).await?
        {
            return Ok(stored);
        }
    }
    let assignment =
        attach_or_create(&mut tx, thread_key, requested, default_harness, workspace).await?;
    let busy = inflight::has_unfinished(&mut tx, thread_key).await?;
    let response = SpawnResponse {
        ok: true,
        thread_key: thread_key.to_owned(),
        assignment_generation: assignment.assignment_generation,
        assignment_state: if busy {
            "assigned_busy"
        } else {
            "assigned_idle"
        }
        .to_owned(),
        harness: assignment.harness,
        prompt_ref: assignment.prompt_ref,
        repo: assignment.repo,
        idempotent: false,
    };
    if let Some(key) = spawn_id {
        idempotency::remember(
            &mut tx,
            Keyed::Spawn,
            thread_key,
            key,
            request_hash,
            &response,
        )
        .await?;
    }
    audit::record(&mut tx, actor, Action::Spawn, Target::thread(thread_key)).await?;
    tx.commit().await?;
    Ok(response)
}

/// The repository and `agents_md_override` of one assignment of a thread (`None`s when
/// the assignment names none, or does not exist).
pub async fn workspace_of(
    pool: &PgPool,
    thread_key: &str,
    assignment_generation: i64,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let found: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT repo, agents_md_override FROM runtime_assignments
         WHERE thread_key = $1 AND assignment_generation = $2",
    )
    .bind(thread_key)
    .bind(assignment_generation)
    .fetch_optional(pool)
    .await?;
    Ok(found.unwrap_or_default())
}

/// `POST /agent/threads/{tk}/release`: releases the active assignment (optionally
/// cancelling in-flight executions), with `release_id` idempotency. `actor`'s `release`
/// audit row is written in the transaction (not for a replay).
pub async fn release(
    pool: &PgPool,
    thread_key: &str,
    release_id: Option<&str>,
    cancel_inflight: bool,
    request_hash: &str,
    actor: &Actor,
) -> Result<ReleaseResponse, TurnError> {
    let mut tx = pool.begin().await?;
    lock_thread(&mut tx, thread_key).await?;
    if let Some(key) = release_id {
        if let Some(stored) =
            idempotency::replay(&mut tx, Keyed::Release, thread_key, key, request_hash).await?
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
        inflight::cancel_thread(&mut tx, thread_key).await?
    } else {
        Vec::new()
    };
    let response = ReleaseResponse {
        ok: true,
        thread_key: thread_key.to_owned(),
        released: released.is_some(),
        assignment_generation: generation,
        cancelled_execution_ids: cancelled,
        idempotent: false,
    };
    if let Some(key) = release_id {
        idempotency::remember(
            &mut tx,
            Keyed::Release,
            thread_key,
            key,
            request_hash,
            &response,
        )
        .await?;
    }
    audit::record(&mut tx, actor, Action::Release, Target::thread(thread_key)).await?;
    tx.commit().await?;
    if !response.cancelled_execution_ids.is_empty() {
        wakeups::announce(pool, &[thread_key], None).await;
    }
    Ok(response)
}
