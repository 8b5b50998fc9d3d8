//! The OpenAPI 3.1 document of every route `api` serves, merged from each function's own
//! part (its handlers' `#[utoipa::path]` attributes over the request and response types
//! they really read and write), completed with the auth schemes and the shared error
//! answers ([`centaur_http::openapi::complete`]). Served at `GET /openapi.json` (no auth);
//! `api openapi` prints it, and `contrib/openapi.json` is a copy a test keeps current.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::OnceLock;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::Type;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, PathItem, Required,
    ResponseBuilder,
};

/// The path the document is served at.
pub const PATH: &str = "/openapi.json";

/// Functions whose routes serve static files (the web console's page and assets), not
/// JSON: documented as such from the route table, with no request to describe.
pub const STATIC_FUNCTIONS: &[&str] = &["console"];

/// What a static route may answer with.
const STATIC_CONTENT_TYPES: [&str; 4] =
    ["text/html", "text/javascript", "text/css", "image/svg+xml"];

/// Each function's part of the document, by the name it has in [`crate::FUNCTIONS`].
fn parts() -> Vec<(&'static str, OpenApi)> {
    vec![
        ("health", health::openapi()),
        ("admin-api-keys", admin_api_keys::openapi()),
        ("agent-spawn", agent_spawn::openapi()),
        ("agent-message", agent_message::openapi()),
        ("agent-execute", agent_execute::openapi()),
        ("agent-executions", agent_executions::openapi()),
        ("agent-events", agent_events::openapi()),
        ("agent-threads", agent_threads::openapi()),
        ("final-deliveries", final_deliveries::openapi()),
        ("slack-webhook", slack_webhook::openapi()),
    ]
}

/// The path parameters of a route template (`{id}` segments), in order.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// A static file route of `function`: any of [`STATIC_CONTENT_TYPES`], or the API's JSON 404.
fn static_route(function: &str, path: &str) -> PathItem {
    let mut ok = ResponseBuilder::new().description("The file.");
    for content_type in STATIC_CONTENT_TYPES {
        ok = ok.content(
            content_type,
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        );
    }
    let operation_id: String = format!("{function}.{}", path.trim_matches('/'))
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '.' => c,
            _ => '_',
        })
        .collect();
    let mut operation = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .tag(function)
        .summary(Some(format!("A static file of {function}")))
        .response("200", ok)
        .response("404", utoipa::openapi::Ref::from_response_name("NotFound"));
    for name in path_parameters(path) {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    PathItem::new(HttpMethod::Get, operation)
}

/// `GET /openapi.json` itself.
fn document_route() -> PathItem {
    let operation = OperationBuilder::new()
        .operation_id(Some("openapi"))
        .tag("openapi")
        .summary(Some("This document"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI 3.1 document of every route.")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                        .build(),
                ),
        );
    PathItem::new(HttpMethod::Get, operation)
}

/// The document: every function's part, the static routes, `/openapi.json`, the auth
/// schemes and the shared error answers.
pub fn document() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Centaur API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The control plane for AI coding agents: spawn a thread's assignment, post \
                     messages, execute turns, follow their events, deliver answers. Errors are \
                     `{code, message}`; authentication and authorisation errors are \
                     `{detail}`. Generated from the handlers' own types.",
                ))
                .build(),
        )
        .build();
    for (function, mut part) in parts() {
        centaur_http::openapi::prefix_operation_ids(&mut part, function);
        document.merge(part);
    }
    for (function, routes) in crate::FUNCTIONS {
        if STATIC_FUNCTIONS.contains(function) {
            for route in *routes {
                document
                    .paths
                    .paths
                    .insert(route.path.to_owned(), static_route(function, route.path));
            }
        }
    }
    document
        .paths
        .paths
        .insert(PATH.to_owned(), document_route());
    centaur_http::openapi::complete(&mut document);
    document
}

/// The document as pretty JSON with a final newline: what `api openapi` prints and
/// `contrib/openapi.json` holds.
pub fn json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"));
    text.push('\n');
    text
}

/// `GET /openapi.json`, built once per process.
async fn serve() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(json).as_str(),
    )
}

/// The route serving the document (no auth, no state), added to `router`.
pub fn routes<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.route(PATH, get(serve))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FUNCTIONS;
    use centaur_http::testing::{test_state, Caller, TestClient};
    use serde_json::Value;
    use sqlx::PgPool;
    use std::collections::BTreeSet;

    /// The committed copy, next to the workspace root.
    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/openapi.json");

    fn document_json() -> Value {
        serde_json::from_str(&json()).unwrap_or_else(|err| panic!("the document: {err}"))
    }

    /// Every (METHOD, path) the document describes.
    fn documented(document: &Value) -> BTreeSet<(String, String)> {
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().cloned().unwrap_or_default();
                methods
                    .into_iter()
                    .filter(|(method, _)| {
                        ["get", "post", "put", "delete", "patch"].contains(&method.as_str())
                    })
                    .map(|(method, _)| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_route_of_the_route_table_is_in_the_document_and_nothing_else() {
        let document = document_json();
        let documented = documented(&document);
        let table: BTreeSet<(String, String)> = FUNCTIONS
            .iter()
            .flat_map(|(_, routes)| routes.iter())
            .map(|route| (route.method.to_owned(), route.path.to_owned()))
            .collect();
        let missing: Vec<_> = table.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the document: {missing:?}"
        );
        let mut extra: Vec<_> = documented.difference(&table).collect();
        extra.retain(|(method, path)| !(method == "GET" && path == PATH));
        assert!(
            extra.is_empty(),
            "documented routes nobody serves: {extra:?}"
        );
    }

    #[test]
    fn every_function_with_routes_documents_them_itself_or_serves_static_files() {
        let documented_functions: BTreeSet<&str> = parts().iter().map(|(name, _)| *name).collect();
        for (function, _) in FUNCTIONS {
            assert!(
                documented_functions.contains(function) || STATIC_FUNCTIONS.contains(function),
                "{function} has routes but no part of the OpenAPI document"
            );
        }
    }

    #[test]
    fn the_committed_copy_is_current() {
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == json(),
            "contrib/openapi.json is stale: run `cargo run -q -p api -- openapi > contrib/openapi.json`"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let document = document_json();
        assert_eq!(document["openapi"], "3.1.0");
        let text = document.to_string();
        let mut unresolved = Vec::new();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap_or_default();
            let pointer = target.trim_start_matches('#');
            if document.pointer(pointer).is_none() {
                unresolved.push(target.to_owned());
            }
        }
        assert!(unresolved.is_empty(), "unresolved: {unresolved:?}");
    }

    #[test]
    fn operations_name_the_auth_schemes_and_errors_of_api_md() {
        let document = document_json();
        let schemes = &document["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["type"], "apiKey");
        assert_eq!(schemes["api_key"]["name"], "X-Api-Key");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["sandbox_token"]["bearerFormat"], "sbx1.");
        let spawn = &document["paths"]["/agent/spawn"]["post"];
        let security = spawn["security"].to_string();
        for scheme in ["api_key", "bearer", "sandbox_token"] {
            assert!(security.contains(scheme), "{security}");
        }
        let admin = document["paths"]["/admin/api-keys"]["post"]["security"].to_string();
        assert!(!admin.contains("sandbox_token"), "{admin}");
        let responses = &document["components"]["responses"];
        assert_eq!(
            responses["Unauthorized"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/AuthErrorBody"
        );
        assert_eq!(
            responses["Unprocessable"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        for status in ["401", "403", "400", "413", "422", "409", "503"] {
            assert!(
                spawn["responses"][status].is_object(),
                "spawn lacks {status}"
            );
        }
        assert!(document["paths"]["/health"]["get"]["security"].is_null());
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn the_document_is_served_without_a_key(pool: PgPool) {
        let client = TestClient::new(crate::router(test_state(pool)));
        let (status, body) = client.get(PATH, &Caller::Anonymous).await;
        assert_eq!(status, axum::http::StatusCode::OK);
        assert_eq!(body, document_json());
    }
}
