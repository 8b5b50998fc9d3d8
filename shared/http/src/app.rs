//! The layers every function's router gets: the 1 MiB body limit, JSON 404/405, request
//! metrics and tracing.

use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use centaur_core::api::codes;
use serde_json::json;
use std::time::Instant;
use tower::ServiceBuilder;

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> Response {
    let error = ApiError::BadRequest {
        code: codes::METHOD_NOT_ALLOWED,
        message: "method not allowed on this route".into(),
    };
    let mut response = error.into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    let seconds = started.elapsed().as_secs_f64();
    centaur_telemetry::record(move || {
        metrics::counter!("centaur_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("centaur_http_request_duration_seconds", "route" => route, "method" => method)
            .record(seconds);
    });
    response
}

/// The longest accepted request target (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The code of an error response that was not built as an [`ApiError`] (an extractor's or
/// a layer's own rejection).
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => codes::PAYLOAD_TOO_LARGE,
        StatusCode::URI_TOO_LONG => codes::URI_TOO_LONG,
        StatusCode::METHOD_NOT_ALLOWED => codes::METHOD_NOT_ALLOWED,
        StatusCode::NOT_FOUND => codes::NOT_FOUND,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => codes::UNSUPPORTED_MEDIA_TYPE,
        status if status.is_server_error() => codes::INTERNAL,
        _ => codes::BAD_REQUEST,
    }
}

/// Every error answer is JSON: an over-long URL is refused here, and an error response
/// some layer or extractor wrote as text becomes `{"code","message"}` with the same status.
async fn json_errors(request: Request, next: Next) -> Response {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        let body = json!({
            "code": codes::URI_TOO_LONG,
            "message": format!("the request URL is longer than {MAX_URI_BYTES} bytes"),
        });
        return (StatusCode::URI_TOO_LONG, Json(body)).into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .filter(|text| !text.is_empty() && !status.is_server_error())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    (
        status,
        Json(json!({"code": code_for(status), "message": text})),
    )
        .into_response()
}

/// A handler that panicked answers a JSON 500 (and the panic is logged), instead of its
/// connection being dropped unanswered; the server goes on serving.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %detail, "a request handler panicked");
    let body = json!({"code": codes::INTERNAL, "message": "internal error"});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// Wraps a function's routes (or every function's, in `api`) with the shared layers, outermost
/// first: tracing, request metrics, a handler's panic as a JSON 500, JSON errors, the body limit. One stack in one
/// `Router::layer` call: each call wraps every route again, which a start pays for.
pub fn app(routes: Router) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(tower_http::trace::TraceLayer::new_for_http())
                .layer(middleware::from_fn(record_metrics))
                .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
                .layer(middleware::from_fn(json_errors))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::get(path)
            .body(Body::empty())
            .unwrap_or_else(|err| panic!("request: {err}"));
        let response = router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|err| match err {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_else(|err| panic!("body: {err}"));
        let body = serde_json::from_slice(&bytes).unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500_and_the_next_request_is_served() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let router = app(Router::new()
            .route("/boom", axum::routing::get(boom))
            .route(
                "/fine",
                axum::routing::get(|| async { Json(json!({"ok": true})) }),
            ));
        let (status, body) = get(&router, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"code": codes::INTERNAL, "message": "internal error"})
        );
        assert_eq!(
            get(&router, "/fine").await,
            (StatusCode::OK, json!({"ok": true}))
        );
    }
}
