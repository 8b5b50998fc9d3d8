//! Who is calling: the local operator, a database API key, or a sandbox token.

use crate::error::ApiError;
use crate::peer_uid::client_uid;
use crate::state::AppState;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::serve::IncomingStream;
use centaur_auth::scope::{self, Scope};
use centaur_auth::{api_key, sandbox_token, SandboxClaims};
use centaur_store::audit::Actor;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Headers that mean "this request was forwarded by a proxy, load balancer, CDN or mesh
/// sidecar": never the local operator. Besides these exact names, any header whose name
/// contains `forwarded` or ends in `client-ip` / `connecting-ip` / `real-ip`, and every
/// `x-envoy-*` header, counts (see [`is_forwarding_header`]).
pub const FORWARDING_HEADERS: [&str; 14] = [
    "forwarded",
    "forwarded-for",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-original-forwarded-for",
    "x-real-ip",
    "via",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-envoy-external-address",
];

/// True if a header of this (lower-case) name says the request passed through a proxy.
pub fn is_forwarding_header(name: &str) -> bool {
    FORWARDING_HEADERS.contains(&name)
        || name.contains("forwarded")
        || name.ends_with("client-ip")
        || name.ends_with("connecting-ip")
        || name.ends_with("real-ip")
        || name.starts_with("x-envoy-")
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A request from loopback with no forwarding header: full access, no key needed.
    LocalOperator,
    /// A database API key: its id (`api_keys.id`), name and scopes.
    ApiKey {
        id: uuid::Uuid,
        name: String,
        scopes: Vec<Scope>,
    },
    /// A sandbox token: scope `agent`, limited to one thread.
    Sandbox(SandboxClaims),
}

fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_owned());
    }
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// True for a loopback peer whose request carries no forwarding header.
pub fn is_local_operator(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    peer.is_some_and(|addr| addr.ip().is_loopback())
        && headers
            .keys()
            .all(|name| !is_forwarding_header(name.as_str()))
}

/// One TCP connection as the server accepted it (the router's connect info): the
/// client's address and the local address it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
}

impl Connected<IncomingStream<'_, TcpListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        let peer = *stream.remote_addr();
        let local = stream.io().local_addr().unwrap_or(peer);
        Connection { peer, local }
    }
}

/// True if the process on the client end of a loopback connection runs as this process's
/// user or as root. Local sandboxes run as another user, so a sandbox calling the API
/// over loopback without a key is not the operator.
fn is_operator_user(connection: Connection) -> bool {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self").map(|meta| meta.uid()).ok();
    match (client_uid(connection.peer, connection.local), own) {
        (Some(caller), Some(own)) => caller == own || caller == 0,
        _ => false,
    }
}

impl Principal {
    /// Authenticates a request from its headers and connection.
    pub async fn authenticate(
        state: &AppState,
        headers: &HeaderMap,
        connection: Option<Connection>,
    ) -> Result<Self, ApiError> {
        let Some(token) = credential(headers).filter(|token| !token.is_empty()) else {
            if state.config.auth.local_operator
                && is_local_operator(connection.map(|c| c.peer), headers)
                && connection.is_some_and(is_operator_user)
            {
                return Ok(Principal::LocalOperator);
            }
            return Err(ApiError::Unauthorized("Missing API key".into()));
        };
        if sandbox_token::looks_like_sandbox_token(&token) {
            let now = chrono::Utc::now().timestamp();
            return sandbox_token::verify(&state.config.auth.sandbox_signing_key, &token, now)
                .map(Principal::Sandbox)
                .map_err(|err| ApiError::Unauthorized(format!("Invalid sandbox token: {err}")));
        }
        let record =
            centaur_store::api_keys::find_active_by_hash(&state.pool, &api_key::hash(&token))
                .await?
                .ok_or_else(|| ApiError::Unauthorized("Invalid API key".into()))?;
        let scopes =
            scope::parse_all(&record.scopes).map_err(|err| ApiError::Internal(err.to_string()))?;
        Ok(Principal::ApiKey {
            id: record.id,
            name: record.name,
            scopes,
        })
    }

    /// Requires `needed`; 403 names the scope.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        let granted = match self {
            Principal::LocalOperator => true,
            Principal::ApiKey { scopes, .. } => scope::grants(scopes, needed),
            Principal::Sandbox(_) => Scope::Agent.covers(needed),
        };
        if granted {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "API key scope does not permit '{needed}'"
            )))
        }
    }

    /// A sandbox token may only touch its own thread.
    pub fn require_thread(&self, thread_key: &str) -> Result<(), ApiError> {
        match self {
            Principal::Sandbox(claims) if claims.thread_key != thread_key => Err(
                ApiError::Forbidden("Sandbox token is scoped to a different thread".into()),
            ),
            _ => Ok(()),
        }
    }

    /// Refuses sandbox tokens (thread listings, final deliveries, admin routes).
    pub fn require_not_sandbox(&self) -> Result<(), ApiError> {
        match self {
            Principal::Sandbox(_) => Err(ApiError::Forbidden(
                "Sandbox tokens are not accepted on this route".into(),
            )),
            _ => Ok(()),
        }
    }

    /// A short label for logs (never a key).
    pub fn label(&self) -> String {
        match self {
            Principal::LocalOperator => "local-operator".into(),
            Principal::ApiKey { name, .. } => format!("key:{name}"),
            Principal::Sandbox(claims) => format!("sandbox:{}", claims.sandbox_id),
        }
    }

    /// Who this principal is in the audit log, calling from `peer`.
    pub fn actor(&self, peer: &Peer) -> Actor {
        let peer = peer.0.clone();
        match self {
            Principal::LocalOperator => Actor::local_operator(peer),
            Principal::ApiKey { id, name, .. } => Actor::api_key(*id, name, peer),
            Principal::Sandbox(claims) => {
                Actor::sandbox(&claims.sandbox_id, &claims.thread_key, peer)
            }
        }
    }
}

/// The client's address as this server saw it, for the audit log: the socket peer
/// (`ip:port`), or on Lambda the source IP of the API Gateway request context; `None` when
/// neither is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer(pub Option<String>);

impl Peer {
    /// The peer of a request.
    pub fn of(parts: &Parts) -> Self {
        if let Some(ConnectInfo(connection)) = parts.extensions.get::<ConnectInfo<Connection>>() {
            return Peer(Some(connection.peer.to_string()));
        }
        use lambda_http::request::RequestContext;
        let source_ip = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
            Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.clone(),
            _ => None,
        };
        Peer(source_ip.filter(|ip| !ip.is_empty()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer::of(parts))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let connection = parts
            .extensions
            .get::<ConnectInfo<Connection>>()
            .map(|info| info.0);
        Principal::authenticate(state, &parts.headers, connection).await
    }
}

/// What a route demands of its caller, checked by [`Authorized`] before the body is read.
pub trait Requirement: Send + Sync + 'static {
    /// Ok if `principal` may call the route.
    fn check(principal: &Principal) -> Result<(), ApiError>;
}

/// Requirements of the routes that take a body.
pub mod require {
    use super::{Principal, Requirement};
    use crate::error::ApiError;
    use centaur_auth::scope::Scope;

    /// Scope `agent:execute` (spawn, message, execute; sandbox tokens included).
    pub struct AgentExecute;
    impl Requirement for AgentExecute {
        fn check(principal: &Principal) -> Result<(), ApiError> {
            principal.require(Scope::AgentExecute)
        }
    }

    /// Scope `admin`, never a sandbox token.
    pub struct Admin;
    impl Requirement for Admin {
        fn check(principal: &Principal) -> Result<(), ApiError> {
            principal.require_not_sandbox()?;
            principal.require(Scope::Admin)
        }
    }

    /// A final-delivery worker: scope `agent`, never a sandbox token.
    pub struct DeliveryWorker;
    impl Requirement for DeliveryWorker {
        fn check(principal: &Principal) -> Result<(), ApiError> {
            principal.require(Scope::Agent)?;
            principal.require_not_sandbox()
        }
    }
}

/// A caller that passed `R`: as an extractor it runs before the body extractor, so an
/// unauthorised caller gets its 401/403 whatever the body holds.
pub struct Authorized<R: Requirement> {
    pub principal: Principal,
    /// Where the request came from.
    pub peer: Peer,
    requirement: std::marker::PhantomData<R>,
}

impl<R: Requirement> Authorized<R> {
    /// The caller as the audit log records it.
    pub fn actor(&self) -> Actor {
        self.principal.actor(&self.peer)
    }
}

impl<R: Requirement> std::ops::Deref for Authorized<R> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<R: Requirement> FromRequestParts<AppState> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        R::check(&principal)?;
        Ok(Self {
            principal,
            peer: Peer::of(parts),
            requirement: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn loopback() -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], 40000)))
    }

    #[test]
    fn loopback_without_forwarding_headers_is_the_local_operator() {
        assert!(is_local_operator(loopback(), &HeaderMap::new()));
    }

    #[test]
    fn a_forwarding_header_means_not_local_even_on_loopback() {
        for name in FORWARDING_HEADERS {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static("10.0.0.1"));
            assert!(!is_local_operator(loopback(), &headers), "{name}");
        }
    }

    #[test]
    fn any_proxy_or_mesh_header_means_not_local() {
        for name in [
            "x-forwarded-port",
            "x-original-forwarded-for",
            "x-envoy-attempt-count",
            "akamai-true-client-ip",
            "x-forwarded-client-cert",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                axum::http::HeaderName::from_static(name),
                HeaderValue::from_static("1"),
            );
            assert!(!is_local_operator(loopback(), &headers), "{name}");
        }
        let mut plain = HeaderMap::new();
        plain.insert("user-agent", HeaderValue::from_static("curl/8"));
        plain.insert("content-type", HeaderValue::from_static("application/json"));
        assert!(is_local_operator(loopback(), &plain));
    }

    #[tokio::test]
    async fn a_loopback_connection_is_traced_to_the_user_that_opened_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(local).await.unwrap();
        let (_server_side, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(is_operator_user(Connection { peer, local }));
        let nobody_there = SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(
            !is_operator_user(Connection {
                peer: nobody_there,
                local
            }),
            "an untraceable peer is not the operator"
        );
    }

    #[test]
    fn remote_peers_and_unknown_peers_are_not_local() {
        assert!(!is_local_operator(
            Some(SocketAddr::from(([10, 1, 2, 3], 1))),
            &HeaderMap::new()
        ));
        assert!(!is_local_operator(None, &HeaderMap::new()));
    }

    #[test]
    fn bearer_tokens_are_read_when_no_api_key_header_is_present() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer cnt_abc"));
        assert_eq!(credential(&headers).as_deref(), Some("cnt_abc"));
        headers.insert("x-api-key", HeaderValue::from_static("cnt_first"));
        assert_eq!(credential(&headers).as_deref(), Some("cnt_first"));
    }

    #[test]
    fn sandbox_tokens_cannot_reach_other_threads_or_admin_scope() {
        let sandbox = Principal::Sandbox(SandboxClaims {
            thread_key: "t1".into(),
            sandbox_id: "s".into(),
            created_at: 0,
            expires_at: i64::MAX,
        });
        assert!(sandbox.require_thread("t1").is_ok());
        assert!(sandbox.require_thread("t2").is_err());
        assert!(sandbox.require(Scope::Admin).is_err());
        assert!(sandbox.require(Scope::AgentExecute).is_ok());
        assert!(sandbox.require_not_sandbox().is_err());
    }
}
