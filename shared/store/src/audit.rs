//! `audit_log`: who made each state-changing request (operator.md "Audit"). Every row is
//! written by the statement, or inside the transaction, that makes the change it records —
//! never by a commit of its own — so a change and its audit row are durable together.

use crate::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// The kinds of principal the audit log knows (`audit_log.principal_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A database API key: id is the key's id, name its name.
    ApiKey,
    /// A loopback request without a key: id `local`.
    LocalOperator,
    /// A sandbox token: id is the sandbox, name the thread the token is scoped to.
    Sandbox,
    /// A Slack user whose message started a turn: id `<team_id>:<user_id>`.
    SlackUser,
}

impl PrincipalKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::LocalOperator => "local_operator",
            PrincipalKind::Sandbox => "sandbox",
            PrincipalKind::SlackUser => "slack_user",
        }
    }
}

/// What was done (`audit_log.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /agent/spawn`.
    Spawn,
    /// `POST /agent/message`, `POST /agent/messages`.
    Message,
    /// `POST /agent/execute`, and a Slack message's turn.
    Execute,
    /// `POST /agent/executions/{id}/cancel`.
    Cancel,
    /// `POST /agent/threads/{tk}/release`, and a Slack flag that switches the thread.
    Release,
    /// `POST /admin/api-keys`.
    KeyCreate,
    /// `DELETE /admin/api-keys/{id}`.
    KeyRevoke,
}

impl Action {
    /// Every action, in the order the schema lists them.
    pub const ALL: [Action; 7] = [
        Action::Spawn,
        Action::Message,
        Action::Execute,
        Action::Cancel,
        Action::Release,
        Action::KeyCreate,
        Action::KeyRevoke,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Spawn => "spawn",
            Action::Message => "message",
            Action::Execute => "execute",
            Action::Cancel => "cancel",
            Action::Release => "release",
            Action::KeyCreate => "key_create",
            Action::KeyRevoke => "key_revoke",
        }
    }

    /// The action with this stored name.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == name)
    }
}

/// Who made a request, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The kind of principal.
    pub kind: PrincipalKind,
    /// Its stable id (see [`PrincipalKind`]).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The client's address as the server saw it, if known.
    pub peer: Option<String>,
}

impl Actor {
    /// The id every local-operator row has.
    pub const LOCAL_OPERATOR_ID: &'static str = "local";

    /// The local operator (a loopback request without a key).
    pub fn local_operator(peer: Option<String>) -> Self {
        Self {
            kind: PrincipalKind::LocalOperator,
            id: Self::LOCAL_OPERATOR_ID.to_owned(),
            name: "local operator".to_owned(),
            peer,
        }
    }

    /// A database API key.
    pub fn api_key(id: Uuid, name: &str, peer: Option<String>) -> Self {
        Self {
            kind: PrincipalKind::ApiKey,
            id: id.to_string(),
            name: name.to_owned(),
            peer,
        }
    }

    /// A sandbox token of sandbox `sandbox_id`, scoped to `thread_key`.
    pub fn sandbox(sandbox_id: &str, thread_key: &str, peer: Option<String>) -> Self {
        Self {
            kind: PrincipalKind::Sandbox,
            id: sandbox_id.to_owned(),
            name: thread_key.to_owned(),
            peer,
        }
    }

    /// A Slack user (`user_id` absent for some bot messages: `unknown`).
    pub fn slack_user(team_id: &str, user_id: Option<&str>, peer: Option<String>) -> Self {
        let user = user_id.unwrap_or("unknown");
        Self {
            kind: PrincipalKind::SlackUser,
            id: format!("{team_id}:{user}"),
            name: user.to_owned(),
            peer,
        }
    }
}

/// What an audit row is about, besides who and what.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The thread the request touched.
    pub thread_key: Option<&'a str>,
    /// The execution it created or cancelled.
    pub execution_id: Option<&'a str>,
    /// The API key it created or revoked.
    pub key_id: Option<Uuid>,
}

impl<'a> Target<'a> {
    /// A request on one thread.
    pub fn thread(thread_key: &'a str) -> Self {
        Self {
            thread_key: Some(thread_key),
            ..Self::default()
        }
    }
}

/// The columns an INSERT into `audit_log` names, in the order [`record`] binds them.
pub const INSERT_COLUMNS: &str =
    "principal_kind, principal_id, principal_name, peer, action, thread_key, execution_id, key_id";

/// Writes one audit row inside the caller's transaction (the one making the change).
pub async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    action: Action,
    target: Target<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO audit_log ({INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(actor.kind.as_str())
    .bind(&actor.id)
    .bind(&actor.name)
    .bind(&actor.peer)
    .bind(action.as_str())
    .bind(target.thread_key)
    .bind(target.execution_id)
    .bind(target.key_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// One audit row as `GET /admin/audit` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The row's id: increasing, the paging cursor (`before`).
    pub id: i64,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// `api_key`, `local_operator`, `sandbox` or `slack_user`.
    pub principal_kind: String,
    /// The key's id, `local`, the sandbox id, or `<team_id>:<user_id>`.
    pub principal_id: String,
    /// The key's name, `local operator`, the sandbox token's thread, or the Slack user id.
    pub principal_name: String,
    /// `spawn`, `message`, `execute`, `cancel`, `release`, `key_create` or `key_revoke`.
    pub action: String,
    /// The thread the request touched.
    pub thread_key: Option<String>,
    /// The execution it created or cancelled.
    pub execution_id: Option<String>,
    /// The API key it created or revoked.
    pub key_id: Option<Uuid>,
    /// The client's address as the server saw it (socket address, or Lambda's source IP).
    pub peer: Option<String>,
}

/// Which rows a page holds.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows whose principal id or name is this.
    pub principal: Option<String>,
    /// Only this action.
    pub action: Option<Action>,
    /// Only rows older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Most rows (at least 1).
    pub limit: i64,
}

/// One page of the audit log, newest first.
pub async fn page(pool: &PgPool, filter: &Filter) -> Result<Vec<AuditEntry>, StoreError> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, at, principal_kind, principal_id, principal_name, action, thread_key,
                execution_id, key_id, peer FROM audit_log WHERE true",
    );
    if let Some(since) = filter.since {
        query.push(" AND at >= ").push_bind(since);
    }
    if let Some(principal) = &filter.principal {
        query
            .push(" AND (principal_id = ")
            .push_bind(principal)
            .push(" OR principal_name = ")
            .push_bind(principal)
            .push(")");
    }
    if let Some(action) = filter.action {
        query.push(" AND action = ").push_bind(action.as_str());
    }
    if let Some(before) = filter.before {
        query.push(" AND id < ").push_bind(before);
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(filter.limit.max(1));
    Ok(query.build_query_as().fetch_all(pool).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_back_from_its_name() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("delete"), None);
    }

    #[test]
    fn a_slack_user_is_named_by_team_and_user() {
        let actor = Actor::slack_user("T1", Some("U1"), None);
        assert_eq!(
            (actor.kind, actor.id.as_str(), actor.name.as_str()),
            (PrincipalKind::SlackUser, "T1:U1", "U1")
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn pages_go_newest_first_and_filter_by_principal_action_and_time(pool: PgPool) {
        let key = Uuid::new_v4();
        let ops = Actor::api_key(key, "ops", Some("10.0.0.9:5000".into()));
        let local = Actor::local_operator(None);
        let mut conn = pool.acquire().await.unwrap();
        for (actor, action, thread) in [
            (&ops, Action::Spawn, "t1"),
            (&local, Action::Execute, "t1"),
            (&ops, Action::Release, "t2"),
        ] {
            record(&mut conn, actor, action, Target::thread(thread))
                .await
                .unwrap();
        }
        drop(conn);
        let all = |filter: Filter| {
            let pool = pool.clone();
            async move { page(&pool, &filter).await.unwrap() }
        };
        let newest = all(Filter {
            limit: 10,
            ..Filter::default()
        })
        .await;
        let actions: Vec<&str> = newest.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["release", "execute", "spawn"]);
        assert_eq!(newest[0].peer.as_deref(), Some("10.0.0.9:5000"));
        for principal in [key.to_string(), "ops".to_owned()] {
            let by_key = all(Filter {
                principal: Some(principal),
                limit: 10,
                ..Filter::default()
            })
            .await;
            assert_eq!(by_key.len(), 2);
            assert!(by_key.iter().all(|e| e.principal_kind == "api_key"));
        }
        let first = all(Filter {
            limit: 2,
            ..Filter::default()
        })
        .await;
        let rest = all(Filter {
            before: Some(first[1].id),
            limit: 2,
            ..Filter::default()
        })
        .await;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].action, "spawn");
        let executes = all(Filter {
            action: Some(Action::Execute),
            limit: 10,
            ..Filter::default()
        })
        .await;
        assert_eq!(executes.len(), 1);
        assert_eq!(executes[0].principal_id, "local");
        let future = all(Filter {
            since: Some(Utc::now() + chrono::Duration::minutes(1)),
            limit: 10,
            ..Filter::default()
        })
        .await;
        assert!(future.is_empty());
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn unknown_kinds_and_actions_are_refused_by_the_schema(pool: PgPool) {
        for (kind, action) in [("robot", "spawn"), ("api_key", "drop_table")] {
            let refused = sqlx::query(
                "INSERT INTO audit_log (principal_kind, principal_id, principal_name, action)
                 VALUES ($1, 'x', 'x', $2)",
            )
            .bind(kind)
            .bind(action)
            .execute(&pool)
            .await;
            assert!(refused.is_err(), "{kind} {action}");
        }
    }
}
