//! `/healthz`, `/readyz` and `/metrics` on `DISPATCHER_PORT`.

use crate::Dispatcher;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(dispatcher): State<Arc<Dispatcher>>) -> impl IntoResponse {
    let database = sqlx::query("SELECT 1").execute(&dispatcher.pool).await;
    let queue = dispatcher.queue.ping().await;
    let ready = database.is_ok() && queue.is_ok();
    let mut body = json!({
        "status": if ready { "ok" } else { "degraded" },
        "database": database.is_ok(),
        "queue": queue.is_ok(),
        "worker_id": dispatcher.config.worker_id,
        "running_executions": dispatcher.running_count(),
    });
    if let Some(err) = database
        .err()
        .map(|e| e.to_string())
        .or(queue.err().map(|e| e.to_string()))
    {
        body["error"] = json!(err);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn metrics_text(State(dispatcher): State<Arc<Dispatcher>>) -> impl IntoResponse {
    let recorder = centaur_telemetry::metrics();
    if let Ok(counts) = centaur_store::dispatch::count_by_status(&dispatcher.pool).await {
        for (status, count) in counts {
            metrics::gauge!("centaur_executions", "status" => status).set(count as f64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        recorder.render(),
    )
}

/// The dispatcher's HTTP routes.
pub fn router(dispatcher: Arc<Dispatcher>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(dispatcher)
}
