//! `api_keys`: create, list, revoke, look up by hash, bootstrap service keys.

use crate::audit::{Actor, INSERT_COLUMNS as AUDIT_COLUMNS};
use crate::StoreError;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A stored key as listings show it (never the hash or plaintext).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub key_prefix: String,
    pub scopes: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

const COLUMNS: &str = "id, name, key_prefix, scopes, created_by, created_at, revoked_at";

/// Stores a new key (by hash) and returns its record; `actor`'s `key_create` audit row is
/// written by the same statement.
pub async fn create(
    pool: &PgPool,
    name: &str,
    key_prefix: &str,
    key_hash: &str,
    scopes: &[String],
    created_by: Option<&str>,
    actor: &Actor,
) -> Result<ApiKeyRecord, StoreError> {
    Ok(sqlx::query_as(&format!(
        "WITH created AS (
             INSERT INTO api_keys (id, name, key_prefix, key_hash, scopes, created_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}),
         audited AS (
             INSERT INTO audit_log ({AUDIT_COLUMNS})
             SELECT $7, $8, $9, $10, 'key_create', NULL, NULL, id FROM created)
         SELECT {COLUMNS} FROM created"
    ))
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(key_prefix)
    .bind(key_hash)
    .bind(scopes)
    .bind(created_by)
    .bind(actor.kind.as_str())
    .bind(&actor.id)
    .bind(&actor.name)
    .bind(&actor.peer)
    .fetch_one(pool)
    .await?)
}

/// Every key, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ApiKeyRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC"
    ))
    .fetch_all(pool)
    .await?)
}

/// Revokes a key; `None` if no such key. Revoking twice keeps the first time; the revocation
/// (not a repeat) writes `actor`'s `key_revoke` audit row in the same statement.
pub async fn revoke(
    pool: &PgPool,
    id: Uuid,
    actor: &Actor,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "WITH revoked AS (
             UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
             RETURNING {COLUMNS}),
         audited AS (
             INSERT INTO audit_log ({AUDIT_COLUMNS})
             SELECT $2, $3, $4, $5, 'key_revoke', NULL, NULL, id FROM revoked)
         SELECT {COLUMNS} FROM revoked
         UNION ALL
         SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM revoked)"
    ))
    .bind(id)
    .bind(actor.kind.as_str())
    .bind(&actor.id)
    .bind(&actor.name)
    .bind(&actor.peer)
    .fetch_optional(pool)
    .await?)
}

/// The active (not revoked) key with this hash. Looked up per request, so a revocation
/// takes effect on the next request.
pub async fn find_active_by_hash(
    pool: &PgPool,
    key_hash: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
    ))
    .bind(key_hash)
    .fetch_optional(pool)
    .await?)
}

/// Ensures a service key exists with `scopes` and is not revoked (start-up bootstrap). A
/// key that is already so is left untouched: a start writes nothing when nothing changed.
pub async fn bootstrap(
    pool: &PgPool,
    name: &str,
    key_prefix: &str,
    key_hash: &str,
    scopes: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_prefix, key_hash, scopes, created_by)
         VALUES ($1, $2, $3, $4, $5, 'bootstrap')
         ON CONFLICT (key_hash) DO UPDATE SET name = EXCLUDED.name, scopes = EXCLUDED.scopes,
             revoked_at = NULL
         WHERE (api_keys.name, api_keys.scopes) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.scopes)
            OR api_keys.revoked_at IS NOT NULL",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(key_prefix)
    .bind(key_hash)
    .bind(scopes)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn row_version(pool: &PgPool) -> String {
        sqlx::query_scalar("SELECT xmin::text FROM api_keys WHERE key_hash = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'")
            .fetch_one(pool)
            .await
            .expect("the key exists")
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn bootstrapping_an_unchanged_key_writes_nothing(pool: PgPool) {
        let scopes = vec!["agent".to_owned()];
        bootstrap(
            &pool,
            "service:slackbot",
            "cnt_abcd",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &scopes,
        )
        .await
        .expect("first");
        let written = row_version(&pool).await;
        bootstrap(
            &pool,
            "service:slackbot",
            "cnt_abcd",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &scopes,
        )
        .await
        .expect("again");
        assert_eq!(
            row_version(&pool).await,
            written,
            "an unchanged key was rewritten"
        );
        sqlx::query("UPDATE api_keys SET revoked_at = now()")
            .execute(&pool)
            .await
            .expect("revoke");
        bootstrap(
            &pool,
            "service:slackbot",
            "cnt_abcd",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &scopes,
        )
        .await
        .expect("un-revoke");
        let revoked: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE key_hash = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'")
                .fetch_one(&pool)
                .await
                .expect("row");
        assert!(revoked.is_none(), "a revoked service key is restored");
    }
}
