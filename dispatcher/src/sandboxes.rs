//! Getting a sandbox for a thread (its live session, a warm one, or a new one) and the
//! environment a sandbox receives: placeholders and a scoped token, never a real secret.

use crate::{DispatchError, Dispatcher};
use centaur_auth::sandbox_token;
use centaur_core::{ExecutionId, Harness, SandboxId};
use centaur_sandbox::SandboxSpec;
use centaur_store::{sessions, warm};
use std::collections::BTreeMap;

/// Credential placeholders every sandbox gets; iron-proxy swaps them on the way out.
pub const PLACEHOLDERS: [&str; 4] = [
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AMP_API_KEY",
    "GITHUB_TOKEN",
];

/// The built-in base prompt, used when the deployment sets no `AGENTS_BASE_FILE`.
pub const AGENTS_BASE: &str = include_str!("prompts/AGENTS_BASE.md");

/// The base prompt every sandbox receives as `AGENTS_BASE.md`: the deployment's
/// (`AGENTS_BASE_FILE`, read at start-up) or the built-in default.
pub fn base_prompt(dispatcher: &Dispatcher) -> &str {
    dispatcher
        .config
        .agents_base_prompt
        .as_deref()
        .unwrap_or(AGENTS_BASE)
}

/// A fresh `sbx1.` token for `thread_key` / `sandbox_id`.
pub fn mint_token(dispatcher: &Dispatcher, thread_key: &str, sandbox_id: &SandboxId) -> String {
    sandbox_token::mint(
        &dispatcher.config.auth.sandbox_signing_key,
        thread_key,
        sandbox_id.as_str(),
        chrono::Utc::now().timestamp(),
        sandbox_token::DEFAULT_TTL_SECS,
    )
}

/// The per-turn environment sent with each turn (fresh token: it outlives no turn by much).
pub fn turn_env(
    dispatcher: &Dispatcher,
    thread_key: &str,
    sandbox_id: &SandboxId,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "CENTAUR_API_KEY".to_owned(),
            mint_token(dispatcher, thread_key, sandbox_id),
        ),
        ("CENTAUR_THREAD_KEY".to_owned(), thread_key.to_owned()),
    ])
}

/// The spec of a sandbox for `harness`, for a thread or (None) the warm pool.
pub fn spec(
    dispatcher: &Dispatcher,
    id: SandboxId,
    harness: Harness,
    thread_key: Option<&str>,
) -> SandboxSpec {
    let mut env: BTreeMap<String, String> = PLACEHOLDERS
        .iter()
        .map(|name| ((*name).to_owned(), (*name).to_owned()))
        .collect();
    env.insert(
        "CENTAUR_API_URL".into(),
        dispatcher.config.sandbox.api_url.clone(),
    );
    env.insert("CENTAUR_HARNESS".into(), harness.as_str().to_owned());
    if let Some(thread_key) = thread_key {
        env.extend(turn_env(dispatcher, thread_key, &id));
    }
    SandboxSpec {
        id,
        harness,
        thread_key: thread_key.map(str::to_owned),
        env,
        prompt_files: BTreeMap::from([(
            "AGENTS_BASE.md".to_owned(),
            base_prompt(dispatcher).to_owned(),
        )]),
        warm: thread_key.is_none(),
    }
}

/// The thread's live sandbox session, as the claim read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub sandbox_id: String,
    pub harness: String,
}

/// The thread's sandbox: its live session (`live`, as the claim read it) if the backend
/// says it is alive (same harness), else a ready warm one, else a new one named after the
/// execution. The session row is written before the backend creates anything, so orphan
/// collection never sees it unowned. A database error is returned as such
/// ([`DispatchError::Store`]), never as a sandbox that could not start: the turn is handed
/// back, not failed.
pub async fn acquire(
    dispatcher: &Dispatcher,
    thread_key: &str,
    execution_id: &ExecutionId,
    harness: Harness,
    live: Option<LiveSession>,
) -> Result<SandboxId, DispatchError> {
    let pool = &dispatcher.pool;
    let backend = &dispatcher.backend;
    if let Some(session) = live {
        let id = SandboxId::from_stored(session.sandbox_id.clone());
        let alive = backend
            .status(&id)
            .await
            .is_ok_and(|status| status.is_alive());
        if alive && session.harness == harness.as_str() {
            return Ok(id);
        }
        if alive {
            // Another harness's sandbox: stopped here; if that fails, orphan collection
            // stops it once its session no longer owns it.
            if let Err(err) = backend.stop(&id).await {
                tracing::warn!(sandbox_id = %id, %err, "could not stop the thread's sandbox of another harness");
            }
        }
        let state = if alive { "stopped" } else { "lost" };
        sessions::end(pool, thread_key, &session.sandbox_id, state).await?;
    }
    let config = &dispatcher.config.sandbox;
    if config.warm_pool_enabled && config.warm_pool_harness == harness {
        if let Some(warm_id) = warm::claim_ready(pool, harness.as_str(), thread_key).await? {
            let id = SandboxId::from_stored(warm_id);
            if backend
                .status(&id)
                .await
                .is_ok_and(|status| status.is_alive())
            {
                sessions::set_live(pool, thread_key, id.as_str(), harness.as_str()).await?;
                return Ok(id);
            }
            warm::remove(pool, id.as_str()).await?;
        }
    }
    create_for_thread(
        dispatcher,
        thread_key,
        SandboxId::for_execution(execution_id),
        harness,
    )
    .await
}

/// Creates sandbox `id` for the thread (adopting it if it already exists) and makes it the
/// thread's live session. The session row is written first, so orphan collection never
/// sees the sandbox unowned; a new sandbox starts a new harness session. A backend failure
/// is [`DispatchError::Sandbox`], a database one [`DispatchError::Store`].
pub async fn create_for_thread(
    dispatcher: &Dispatcher,
    thread_key: &str,
    id: SandboxId,
    harness: Harness,
) -> Result<SandboxId, DispatchError> {
    let pool = &dispatcher.pool;
    sessions::set_live(pool, thread_key, id.as_str(), harness.as_str()).await?;
    let spec = spec(dispatcher, id.clone(), harness, Some(thread_key));
    match dispatcher.backend.create(&spec).await {
        Ok(id) => Ok(id),
        Err(err) => {
            sessions::end(pool, thread_key, id.as_str(), "lost").await?;
            Err(err.into())
        }
    }
}
