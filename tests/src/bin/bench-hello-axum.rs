//! The cold-start reference of the control-plane benchmark: a minimal axum hello-world
//! (one route, the same runtime and profile as the functions), serving `$PORT`.

use axum::routing::get;
use axum::{Json, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8000);
    let router = Router::new().route(
        "/health/live",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    );
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    axum::serve(listener, router).await
}
