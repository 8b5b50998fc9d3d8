//! In-process test support for function crates (feature `testing`): a state over the test
//! database and a client that drives the real router with the real layers.

use crate::app::app;
use crate::auth::Connection;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use centaur_auth::api_key;
use centaur_config::{ApiConfig, Env};
use centaur_store::PgPool;
use serde_json::Value;
use std::net::SocketAddr;
use tower::ServiceExt;

/// The signing key test states use.
pub const TEST_SIGNING_KEY: &str = "test-signing-key-0123456789abcdef0123456789";

/// A configuration for tests (the database URL is unused: the pool is given).
pub fn test_config() -> ApiConfig {
    ApiConfig::from_env(&Env::from_pairs([
        ("DATABASE_URL", "postgres://unused"),
        ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
        ("CENTAUR_DEFAULT_HARNESS", "codex"),
        ("IRON_PROXY_BOUND_SECRETS", "OPENAI_API_KEY"),
    ]))
    .unwrap_or_else(|err| panic!("test config: {err}"))
}

/// A state over the test pool with the Postgres queue.
pub fn test_state(pool: PgPool) -> AppState {
    AppState::new(pool, test_config())
}

/// Spawns `thread` on the echo harness (generation 1 on a new thread), as the local
/// operator would.
pub async fn spawn_echo_thread(pool: &PgPool, thread: &str) {
    centaur_store::assignments::spawn(
        pool,
        thread,
        None,
        Some(centaur_core::Harness::Echo),
        centaur_core::Harness::Codex,
        "h",
    )
    .await
    .expect("spawn an echo thread");
}

/// Creates an API key with `scopes` and returns its plaintext.
pub async fn create_key(pool: &PgPool, scopes: &[&str]) -> String {
    let key = api_key::generate();
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    centaur_store::api_keys::create(
        pool,
        "test",
        &key.display_prefix,
        &key.hash,
        &scopes,
        Some("test"),
        &centaur_store::audit::Actor::local_operator(None),
    )
    .await
    .unwrap_or_else(|err| panic!("create key: {err}"));
    key.plaintext
}

/// Who a test request comes from.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Loopback peer, no key: the local operator.
    LocalOperator,
    /// A remote peer sending this credential in `X-Api-Key`.
    Key(String),
    /// A remote peer with no credential.
    Anonymous,
}

/// A real loopback TCP connection opened by this process: requests sent as
/// [`Caller::LocalOperator`] carry its addresses, which the kernel traces to this process's
/// user, as the API's local-operator rule requires.
struct OperatorConnection {
    client: std::net::TcpStream,
    _server: std::net::TcpStream,
    _listener: std::net::TcpListener,
}

impl OperatorConnection {
    fn open() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|err| panic!("bind a loopback port: {err}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("listener address: {err}"));
        let client = std::net::TcpStream::connect(address)
            .unwrap_or_else(|err| panic!("connect over loopback: {err}"));
        let (server, _) = listener
            .accept()
            .unwrap_or_else(|err| panic!("accept over loopback: {err}"));
        Self {
            client,
            _server: server,
            _listener: listener,
        }
    }

    fn connection(&self) -> Connection {
        let address = |end: std::io::Result<SocketAddr>| {
            end.unwrap_or_else(|err| panic!("connection address: {err}"))
        };
        Connection {
            peer: address(self.client.local_addr()),
            local: address(self.client.peer_addr()),
        }
    }
}

/// Drives a router in-process.
pub struct TestClient {
    router: Router,
    operator: OperatorConnection,
}

impl TestClient {
    /// A client for `routes` wrapped with the shared layers.
    pub fn new(routes: Router) -> Self {
        Self {
            router: app(routes),
            operator: OperatorConnection::open(),
        }
    }

    /// Sends a request with a raw body; returns the status and the JSON (or text) body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        caller: &Caller,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.raw_with_headers(method, path, caller, &[], body).await
    }

    /// [`TestClient::raw`] with extra headers (`content-type` defaults to JSON).
    pub async fn raw_with_headers(
        &self,
        method: Method,
        path: &str,
        caller: &Caller,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(path);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let remote = Connection {
            peer: SocketAddr::from(([10, 0, 0, 9], 50000)),
            local: SocketAddr::from(([10, 0, 0, 1], 8000)),
        };
        let connection = match caller {
            Caller::LocalOperator => self.operator.connection(),
            Caller::Key(key) => {
                builder = builder.header("x-api-key", key);
                remote
            }
            Caller::Anonymous => remote,
        };
        let mut request = builder
            .body(Body::from(body))
            .unwrap_or_else(|err| panic!("request: {err}"));
        request.extensions_mut().insert(ConnectInfo(connection));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|err| panic!("router: {err}"));
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_else(|err| panic!("body: {err}"));
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// GET as `caller`.
    pub async fn get(&self, path: &str, caller: &Caller) -> (StatusCode, Value) {
        self.raw(Method::GET, path, caller, Vec::new()).await
    }

    /// POST JSON as `caller`.
    pub async fn post(&self, path: &str, caller: &Caller, body: &Value) -> (StatusCode, Value) {
        self.raw(Method::POST, path, caller, body.to_string().into_bytes())
            .await
    }

    /// DELETE as `caller`.
    pub async fn delete(&self, path: &str, caller: &Caller) -> (StatusCode, Value) {
        self.raw(Method::DELETE, path, caller, Vec::new()).await
    }
}

/// A real API Gateway v2 (HTTP API, payload format 2.0) event, as Lambda receives it.
pub fn apigw_v2_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let mut header_map = serde_json::Map::new();
    for (name, value) in [
        ("accept", "*/*"),
        ("host", "abc123xyz.execute-api.us-east-1.amazonaws.com"),
        ("user-agent", "curl/8.5.0"),
        (
            "x-amzn-trace-id",
            "Root=1-6744f0a0-3c1e5b7d2f9a8e6b4d2c0a18",
        ),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-proto", "https"),
    ] {
        header_map.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    for (name, value) in headers {
        header_map.insert((*name).to_owned(), Value::String((*value).to_owned()));
    }
    if let Some(body) = body {
        header_map.insert(
            "content-type".into(),
            Value::String("application/json".into()),
        );
        header_map.insert(
            "content-length".into(),
            Value::String(body.len().to_string()),
        );
    }
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123xyz",
            "domainName": "abc123xyz.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123xyz",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:05:00:00 +0000",
            "timeEpoch": 1795582800000_i64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

impl TestClient {
    /// Feeds an API Gateway v2 event through `lambda_http`'s request conversion to the
    /// router, as the Lambda runtime does (no peer address: never the local operator).
    pub async fn lambda(&self, event: &Value) -> (StatusCode, Value) {
        let request = lambda_http::request::from_str(&event.to_string())
            .unwrap_or_else(|err| panic!("API Gateway event: {err}"));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|err| panic!("router: {err}"));
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_else(|err| panic!("body: {err}"));
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }
}

/// A TCP peer that accepts connections and never answers (a database that hangs), and the
/// `DATABASE_URL` that points at it. Dropping the handle does not stop it; it lives as long
/// as the test's runtime.
pub async fn unresponsive_database() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let port = listener.local_addr().expect("local address").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        task,
    )
}
