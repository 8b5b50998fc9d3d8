//! `api`: every function's routes on one port (8000), for the Helm chart's API Deployment
//! and local development.

pub mod openapi;

use axum::Router;
use centaur_core::api::Route;
use centaur_http::AppState;

/// Every function crate with its routes: what the AWS template and the chart are checked
/// against.
pub const FUNCTIONS: &[(&str, &[Route])] = &[
    ("health", health::ROUTES),
    ("admin-api-keys", admin_api_keys::ROUTES),
    ("agent-spawn", agent_spawn::ROUTES),
    ("agent-message", agent_message::ROUTES),
    ("agent-execute", agent_execute::ROUTES),
    ("agent-executions", agent_executions::ROUTES),
    ("agent-events", agent_events::ROUTES),
    ("agent-threads", agent_threads::ROUTES),
    ("final-deliveries", final_deliveries::ROUTES),
    ("slack-webhook", slack_webhook::ROUTES),
    ("console", console::ROUTES),
];

/// `FUNCTIONS` as JSON: `{"<function>": [{"method": …, "path": …}, …], …}`.
pub fn routes_json() -> String {
    let functions: serde_json::Map<String, serde_json::Value> = FUNCTIONS
        .iter()
        .map(|(name, routes)| {
            let routes = routes
                .iter()
                .map(|route| serde_json::json!({"method": route.method, "path": route.path}))
                .collect();
            ((*name).to_owned(), serde_json::Value::Array(routes))
        })
        .collect();
    serde_json::Value::Object(functions).to_string()
}

/// Every function's routes on one router, with `GET /openapi.json`. The routes are added
/// to one router instead of merging one router per function: a merge inserts each route
/// again, and `api` builds this on every start.
pub fn router(state: AppState) -> Router {
    let stateful: [fn(Router<AppState>) -> Router<AppState>; 10] = [
        health::routes,
        admin_api_keys::routes,
        agent_spawn::routes,
        agent_message::routes,
        agent_execute::routes,
        agent_executions::routes,
        agent_events::routes,
        agent_threads::routes,
        final_deliveries::routes,
        slack_webhook::routes,
    ];
    stateful
        .iter()
        .fold(openapi::routes(Router::new()), |router, add| add(router))
        .with_state(state)
        .merge(console::routes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use centaur_http::testing::{test_state, Caller, TestClient};
    use sqlx::PgPool;

    fn concrete(path: &str) -> String {
        path.replace("{execution_id}", "exe_0123456789abcdef")
            .replace("{thread_key}", "t1")
            .replace("{id}", "0b5c5a8e-9c1f-4a8e-9d6e-7c7f2f0e2a11")
            .replace("{asset}", "app.js")
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn every_error_answer_is_json_whatever_refused_the_request(pool: PgPool) {
        use axum::http::{Method, StatusCode};
        let client = TestClient::new(router(test_state(pool)));
        let long_url = format!(
            "/agent/executions/exe_0123456789abcdef?x={}",
            "a".repeat(9000)
        );
        let oversize = vec![b'x'; 2 * 1024 * 1024];
        for (method, path, body, status, code) in [
            (
                Method::POST,
                "/api/webhooks/slack",
                oversize.clone(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                Method::POST,
                "/agent/execute",
                oversize,
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                Method::GET,
                long_url.as_str(),
                Vec::new(),
                StatusCode::URI_TOO_LONG,
                "URI_TOO_LONG",
            ),
            (
                Method::GET,
                "/no/such/route",
                Vec::new(),
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            ),
            (
                Method::DELETE,
                "/agent/execute",
                Vec::new(),
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
            ),
            (
                Method::GET,
                "/agent/executions/%FF",
                Vec::new(),
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
            ),
        ] {
            let (got, answer) = client
                .raw(method.clone(), path, &Caller::LocalOperator, body)
                .await;
            let shown = &path[..path.len().min(60)];
            assert_eq!(got, status, "{method} {shown}: {answer}");
            assert_eq!(answer["code"], code, "{method} {shown}: {answer}");
            assert!(answer["message"].is_string(), "{answer}");
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn every_listed_route_is_served_by_the_merged_router(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        for (function, routes) in FUNCTIONS {
            for route in *routes {
                let method = route.method.parse().unwrap();
                let (status, body) = client
                    .raw(
                        method,
                        &concrete(route.path),
                        &Caller::Anonymous,
                        b"{}".to_vec(),
                    )
                    .await;
                let unrouted = status == axum::http::StatusCode::NOT_FOUND
                    && body["message"] == "no such route";
                assert!(
                    !unrouted && status != axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "{function}: {} {} is not routed ({status})",
                    route.method,
                    route.path
                );
            }
        }
    }
}
