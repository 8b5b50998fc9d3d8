//! A minimal AWS Lambda Runtime API (the HTTP contract a `provided.al2023` bootstrap
//! polls), so each function binary can be run exactly as Lambda runs it.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};

/// One invocation's outcome as the function reported it.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// `POST /runtime/invocation/{id}/response`.
    Response(Value),
    /// `POST /runtime/invocation/{id}/error` or `/runtime/init/error`.
    Error(Value),
}

struct Runtime {
    events: Mutex<mpsc::Receiver<(String, Value)>>,
    results: mpsc::Sender<(String, Invocation)>,
}

/// A running fake runtime API.
pub struct FakeLambdaRuntime {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    events: mpsc::Sender<(String, Value)>,
    results: mpsc::Receiver<(String, Invocation)>,
    server: tokio::task::JoinHandle<()>,
}

async fn next(State(runtime): State<Arc<Runtime>>) -> impl IntoResponse {
    let next = runtime.events.lock().await.recv().await;
    let Some((request_id, event)) = next else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|now| now.as_millis() + 30_000)
        .unwrap_or_default();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", request_id.clone()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:centaur-test".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-6744f0a0-3c1e5b7d2f9a8e6b4d2c0a18;Sampled=0".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (StatusCode::OK, headers, event.to_string())
}

async fn respond(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = runtime
        .results
        .send((id, Invocation::Response(value)))
        .await;
    StatusCode::ACCEPTED
}

async fn fail(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = runtime.results.send((id, Invocation::Error(value))).await;
    StatusCode::ACCEPTED
}

async fn init_error(State(runtime): State<Arc<Runtime>>, body: String) -> StatusCode {
    let _ = runtime
        .results
        .send(("init".into(), Invocation::Error(Value::String(body))))
        .await;
    StatusCode::ACCEPTED
}

impl FakeLambdaRuntime {
    /// Starts the runtime API on 127.0.0.1 with a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let (event_tx, event_rx) = mpsc::channel(16);
        let (result_tx, result_rx) = mpsc::channel(16);
        let runtime = Arc::new(Runtime {
            events: Mutex::new(event_rx),
            results: result_tx,
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(runtime);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            address,
            events: event_tx,
            results: result_rx,
            server,
        })
    }

    /// Queues one invocation and waits for the function's answer to it.
    pub async fn invoke(
        &mut self,
        request_id: &str,
        event: Value,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Invocation> {
        self.events.send((request_id.to_owned(), event)).await?;
        let (id, outcome) = tokio::time::timeout(timeout, self.results.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("runtime closed"))?;
        if id != request_id && id != "init" {
            anyhow::bail!("answer for {id}, expected {request_id}");
        }
        Ok(outcome)
    }
}

impl Drop for FakeLambdaRuntime {
    fn drop(&mut self) {
        self.server.abort();
    }
}
