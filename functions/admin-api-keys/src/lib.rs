//! `admin-api-keys`: create (plaintext returned once), list and revoke API keys; read the
//! audit log (`GET /admin/audit`: who spawned, messaged, executed, cancelled, released and
//! changed keys).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use centaur_auth::{api_key, scope, Scope};
use centaur_core::api::{ErrorBody, Route};
use centaur_http::{
    require, validate, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Authorized, Peer, Principal,
};
use centaur_store::api_keys::{self, ApiKeyRecord};
use centaur_store::audit::{self, Action, AuditEntry};
use serde::{Deserialize, Serialize};

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/admin/api-keys",
    },
    Route {
        method: "GET",
        path: "/admin/api-keys",
    },
    Route {
        method: "DELETE",
        path: "/admin/api-keys/{id}",
    },
    Route {
        method: "GET",
        path: "/admin/audit",
    },
];

/// Default and largest page of `GET /admin/audit`.
const AUDIT_PAGE: (i64, i64) = (100, 500);

/// `POST /admin/api-keys`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateKeyRequest {
    /// A name for people (not unique).
    #[schema(min_length = 1)]
    pub name: String,
    #[schema(schema_with = scope_names)]
    pub scopes: Vec<String>,
    /// Who asked for it; default the caller.
    pub created_by: Option<String>,
}

/// The schema of `scopes`: at least one known scope name.
fn scope_names() -> utoipa::openapi::schema::Array {
    let names = [
        Scope::All,
        Scope::Admin,
        Scope::Agent,
        Scope::AgentExecute,
        Scope::AgentStatus,
        Scope::AgentStop,
    ]
    .map(Scope::as_str);
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .enum_values(Some(names)),
        )
        .min_items(Some(1))
        .description(Some(
            "At least one of `*`, `admin`, `agent` (covers `agent:execute`, `agent:status`, \
             `agent:stop`), `agent:execute`, `agent:status`, `agent:stop`.",
        ))
        .build()
}

/// An API key as listings show it: never the key or its hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    /// False once revoked.
    pub active: bool,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(record: ApiKeyRecord) -> Self {
        Self {
            active: record.revoked_at.is_none(),
            record,
        }
    }
}

/// Response of `POST /admin/api-keys` (201): the key's plaintext, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The plaintext key (`cnt_` + 43 characters): store it now, it is never shown again.
    pub key: String,
    #[serde(flatten)]
    pub view: ApiKeyView,
}

/// Response of `GET /admin/api-keys`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<ApiKeyView>,
}

/// Response of `DELETE /admin/api-keys/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevokedKey {
    /// `revoked`.
    pub status: &'static str,
    pub id: uuid::Uuid,
}

fn admin(principal: &Principal) -> Result<(), ApiError> {
    principal.require_not_sandbox()?;
    principal.require(Scope::Admin)
}

/// `POST /admin/api-keys`: a new key; its plaintext is in this answer only.
#[utoipa::path(
    post,
    path = "/admin/api-keys",
    tag = "admin",
    request_body = CreateKeyRequest,
    responses((status = 201, description = "The key, with its plaintext (shown once).", body = CreatedKey)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn create(
    State(state): State<AppState>,
    principal: Authorized<require::Admin>,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let name = request.name.trim();
    if name.is_empty() {
        return Err(ApiError::validation("name must not be empty"));
    }
    if request.scopes.is_empty() {
        return Err(ApiError::validation("scopes must list at least one scope"));
    }
    scope::parse_all(&request.scopes).map_err(|err| ApiError::validation(err.to_string()))?;
    let key = api_key::generate();
    let created_by = request.created_by.or_else(|| Some(principal.label()));
    let record = api_keys::create(
        &state.pool,
        name,
        &key.display_prefix,
        &key.hash,
        &request.scopes,
        created_by.as_deref(),
        &principal.actor(),
    )
    .await?;
    tracing::info!(key_id = %record.id, name, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.plaintext,
            view: record.into(),
        }),
    ))
}

/// `GET /admin/api-keys`: every key, revoked ones included.
#[utoipa::path(
    get,
    path = "/admin/api-keys",
    tag = "admin",
    responses((status = 200, description = "Every key (never a key or hash).", body = KeyList)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<KeyList>, ApiError> {
    admin(&principal)?;
    let keys = api_keys::list(&state.pool)
        .await?
        .into_iter()
        .map(ApiKeyView::from)
        .collect();
    Ok(Json(KeyList { keys }))
}

/// `DELETE /admin/api-keys/{id}`: revokes a key (its requests get 401 from now on).
#[utoipa::path(
    delete,
    path = "/admin/api-keys/{id}",
    tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The key's id.")),
    responses(
        (status = 200, description = "Revoked.", body = RevokedKey),
        (status = 404, description = "`NOT_FOUND`: no such key.", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    peer: Peer,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RevokedKey>, ApiError> {
    admin(&principal)?;
    let not_found = || ApiError::NotFound(format!("API key '{id}' not found"));
    let uuid = id.parse::<uuid::Uuid>().map_err(|_| not_found())?;
    api_keys::revoke(&state.pool, uuid, &principal.actor(&peer))
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(key_id = %uuid, "API key revoked");
    Ok(Json(RevokedKey {
        status: "revoked",
        id: uuid,
    }))
}

/// The query of `GET /admin/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only entries at or after this time: an RFC 3339 time, a date (midnight UTC) or a span
    /// back from now (`90m`, `24h`, `7d`).
    since: Option<String>,
    /// Only entries of this principal, by id (an API key's id, `local`, a sandbox id,
    /// `<team_id>:<user_id>`) or by name (a key's name, a sandbox token's thread, a Slack
    /// user id).
    principal: Option<String>,
    /// Only this action.
    #[param(schema_with = action_names)]
    action: Option<String>,
    /// How many entries: 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Only entries older than this id: the previous page's `next_before`.
    #[param(minimum = 1)]
    before: Option<i64>,
}

/// The schema of `action`: one of the audited actions.
fn action_names() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Action::ALL.map(Action::as_str)))
        .description(Some("Only this action."))
        .build()
}

/// Response of `GET /admin/audit`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub ok: bool,
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// `GET /admin/audit`: who made each state-changing request, newest first, paged by id.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    params(AuditQuery),
    responses((status = 200, description = "Audit entries, newest first.", body = AuditPage)),
    security(("api_key" = []), ("bearer" = [])),
)]
async fn audit_log(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    admin(&principal)?;
    let since = query
        .since
        .as_deref()
        .map(|raw| validate::since(raw, chrono::Utc::now()))
        .transpose()?;
    let action = match query.action.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(Action::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            ApiError::validation(format!(
                "action must be one of {}; got '{}'",
                known.join(", "),
                name.chars().take(64).collect::<String>()
            ))
        })?),
    };
    if let Some(before) = query.before.filter(|before| *before < 1) {
        return Err(ApiError::validation(format!(
            "before must be a positive entry id, got {before}"
        )));
    }
    let limit = validate::limit(query.limit, AUDIT_PAGE.0, AUDIT_PAGE.1)?;
    let filter = audit::Filter {
        since,
        principal: query
            .principal
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty()),
        action,
        before: query.before,
        limit,
    };
    let entries = audit::page(&state.pool, &filter).await?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|entry| entry.id))
        .flatten();
    Ok(Json(AuditPage {
        ok: true,
        entries,
        next_before,
    }))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, revoke, audit_log))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/admin/api-keys", post(create).get(list))
        .route("/admin/api-keys/{id}", delete(revoke))
        .route("/admin/audit", get(audit_log))
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    routes(Router::new()).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use centaur_http::testing::{apigw_v2_event, create_key, test_state, Caller, TestClient};
    use serde_json::json;
    use sqlx::PgPool;

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_created_key_is_shown_once_and_listed_without_its_secret(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let request = json!({"name": "operator", "scopes": ["admin"], "created_by": "ops"});
        let (status, created) = client
            .post("/admin/api-keys", &Caller::LocalOperator, &request)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let key = created["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("cnt_"));
        assert_eq!(created["key_prefix"], json!(&key[..8]));
        let (_, listing) = client
            .get("/admin/api-keys", &Caller::Key(key.clone()))
            .await;
        let text = listing.to_string();
        assert!(!text.contains(&key), "plaintext must never be listed");
        assert!(!text.contains("key_hash"));
        assert_eq!(listing["keys"][0]["active"], true);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn revocation_takes_effect_on_the_next_request(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool.clone())));
        let (_, created) = client
            .post(
                "/admin/api-keys",
                &Caller::LocalOperator,
                &json!({"name": "tmp", "scopes": ["admin"]}),
            )
            .await;
        let key = created["key"].as_str().unwrap().to_owned();
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, body) = client
            .delete(&format!("/admin/api-keys/{id}"), &Caller::LocalOperator)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "revoked", "id": id}));
        let (status, body) = client.get("/admin/api-keys", &Caller::Key(key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["detail"], "Invalid API key");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn unknown_and_malformed_ids_are_404(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        for id in ["0b5c5a8e-9c1f-4a8e-9d6e-7c7f2f0e2a11", "not-a-uuid"] {
            let (status, _) = client
                .delete(&format!("/admin/api-keys/{id}"), &Caller::LocalOperator)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn unknown_scopes_and_empty_names_are_422(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        for request in [
            json!({"name": "x", "scopes": ["root"]}),
            json!({"name": " ", "scopes": ["admin"]}),
            json!({"name": "x"}),
        ] {
            let (status, body) = client
                .post("/admin/api-keys", &Caller::LocalOperator, &request)
                .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{request} -> {body}"
            );
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn with_local_operator_off_loopback_needs_a_key(pool: PgPool) {
        let mut config = centaur_http::testing::test_config();
        config.auth.local_operator = false;
        let client = TestClient::new(router(AppState::new(pool, config)));
        let (status, body) = client.get("/admin/api-keys", &Caller::LocalOperator).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["detail"], "Missing API key");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn agent_keys_cannot_manage_keys(pool: PgPool) {
        let key = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client.get("/admin/api-keys", &Caller::Key(key)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["detail"], "API key scope does not permit 'admin'");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn slackbot_and_local_dev_keys_are_bootstrapped_and_unrevoked(pool: PgPool) {
        let mut config = centaur_http::testing::test_config();
        config.auth.slackbot_api_key = Some("cnt_slackbot_bootstrap_key".into());
        config.auth.local_dev_api_key = Some("cnt_local_dev_bootstrap_key".into());
        let state = AppState::new(pool.clone(), config);
        state.bootstrap_keys().await.unwrap();
        sqlx::query("UPDATE api_keys SET revoked_at = now()")
            .execute(&pool)
            .await
            .unwrap();
        state.bootstrap_keys().await.unwrap();
        let client = TestClient::new(router(state));
        let (status, body) = client
            .get(
                "/admin/api-keys",
                &Caller::Key("cnt_local_dev_bootstrap_key".into()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let names: Vec<&str> = body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"service:slackbot") && names.contains(&"service:local-dev"),
            "{names:?}"
        );
        let (status, _) = client
            .get(
                "/admin/api-keys",
                &Caller::Key("cnt_slackbot_bootstrap_key".into()),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "the slackbot key has only the agent scope"
        );
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_without_a_key_cannot_create_keys(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let body = r#"{"name":"x","scopes":["admin"]}"#;
        let (status, body) = client
            .lambda(&apigw_v2_event(
                "POST",
                "/admin/api-keys",
                "",
                &[],
                Some(body),
            ))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["detail"], "Missing API key");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn key_changes_are_audited_with_their_principal_and_key(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool.clone())));
        let (_, created) = client
            .post(
                "/admin/api-keys",
                &Caller::LocalOperator,
                &json!({"name": "ops", "scopes": ["admin"]}),
            )
            .await;
        let ops_key = created["key"].as_str().unwrap().to_owned();
        let ops_id = created["id"].as_str().unwrap().to_owned();
        let (_, second) = client
            .post(
                "/admin/api-keys",
                &Caller::Key(ops_key.clone()),
                &json!({"name": "ci", "scopes": ["agent"]}),
            )
            .await;
        let ci_id = second["id"].as_str().unwrap().to_owned();
        for _ in 0..2 {
            let (status, _) = client
                .delete(
                    &format!("/admin/api-keys/{ci_id}"),
                    &Caller::Key(ops_key.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, page) = client
            .get("/admin/audit", &Caller::Key(ops_key.clone()))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["ok"], true);
        let entries = page["entries"].as_array().unwrap();
        let rows: Vec<(&str, &str, &str, &str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["principal_kind"].as_str().unwrap(),
                    e["principal_id"].as_str().unwrap(),
                    e["principal_name"].as_str().unwrap(),
                    e["key_id"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "key_revoke",
                    "api_key",
                    ops_id.as_str(),
                    "ops",
                    ci_id.as_str()
                ),
                (
                    "key_create",
                    "api_key",
                    ops_id.as_str(),
                    "ops",
                    ci_id.as_str()
                ),
                (
                    "key_create",
                    "local_operator",
                    "local",
                    "local operator",
                    ops_id.as_str()
                ),
            ],
            "a repeated revoke changes nothing and is not audited again"
        );
        assert_eq!(entries[0]["peer"], "10.0.0.9:50000");
        assert!(entries[2]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
        assert!(page["next_before"].is_null());
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_audit_log_filters_and_pages_newest_first(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool.clone())));
        for name in ["a", "b", "c"] {
            let (status, _) = client
                .post(
                    "/admin/api-keys",
                    &Caller::LocalOperator,
                    &json!({"name": name, "scopes": ["agent"]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (_, first) = client
            .get("/admin/audit?limit=2", &Caller::LocalOperator)
            .await;
        assert_eq!(first["entries"].as_array().unwrap().len(), 2);
        let next = first["next_before"].as_i64().unwrap();
        assert_eq!(first["entries"][1]["id"].as_i64().unwrap(), next);
        let (_, rest) = client
            .get(
                &format!("/admin/audit?limit=2&before={next}"),
                &Caller::LocalOperator,
            )
            .await;
        assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
        assert!(rest["next_before"].is_null());
        let ids: Vec<i64> = first["entries"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rest["entries"].as_array().unwrap())
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
        for (query, expected) in [
            ("principal=local", 3),
            ("principal=local%20operator", 3),
            ("principal=someone-else", 0),
            ("action=key_create", 3),
            ("action=key_revoke", 0),
            ("since=1h", 3),
            ("since=2099-01-01T00:00:00Z", 0),
        ] {
            let (status, page) = client
                .get(&format!("/admin/audit?{query}"), &Caller::LocalOperator)
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            assert_eq!(
                page["entries"].as_array().unwrap().len(),
                expected,
                "{query}: {page}"
            );
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn bad_audit_queries_are_named_422s_and_only_admins_may_read(pool: PgPool) {
        let agent = create_key(&pool, &["agent"]).await;
        let client = TestClient::new(router(test_state(pool)));
        for (query, names) in [
            ("since=yesterday", "since"),
            ("since=", "since"),
            ("action=drop", "action"),
            ("limit=0", "limit"),
            ("limit=many", "limit"),
            ("before=0", "before"),
            ("before=x", "before"),
        ] {
            let (status, body) = client
                .get(&format!("/admin/audit?{query}"), &Caller::LocalOperator)
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
            assert_eq!(body["code"], "VALIDATION_ERROR", "{query}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains(names),
                "{query}: {body}"
            );
        }
        let (status, body) = client.get("/admin/audit", &Caller::Key(agent)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["detail"], "API key scope does not permit 'admin'");
        let token = centaur_auth::sandbox_token::mint(
            centaur_http::testing::TEST_SIGNING_KEY,
            "t1",
            "sbx",
            chrono::Utc::now().timestamp(),
            600,
        );
        let (status, _) = client.get("/admin/audit", &Caller::Key(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = client.get("/admin/audit", &Caller::Anonymous).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn on_lambda_the_peer_is_the_source_ip_of_the_request_context(pool: PgPool) {
        let admin_key = create_key(&pool, &["admin"]).await;
        let client = TestClient::new(router(test_state(pool)));
        let body = r#"{"name":"from-lambda","scopes":["agent"]}"#;
        let (status, created) = client
            .lambda(&apigw_v2_event(
                "POST",
                "/admin/api-keys",
                "",
                &[("x-api-key", &admin_key)],
                Some(body),
            ))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let (_, page) = client
            .get("/admin/audit?action=key_create", &Caller::LocalOperator)
            .await;
        let entry = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key_id"] == created["id"])
            .unwrap_or_else(|| panic!("{page}"));
        assert_eq!(entry["peer"], "203.0.113.7");
        assert_eq!(entry["principal_kind"], "api_key");
        assert_eq!(entry["principal_name"], "test");
    }
}
