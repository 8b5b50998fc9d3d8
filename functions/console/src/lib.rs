//! `console`: the operator's web console at `/console`: threads, a thread's executions, one
//! execution with its event trail streaming live, cancel, health and tools, the warm pool,
//! token usage and API keys. Plain HTML, JavaScript and CSS embedded in the binary (no build
//! step, nothing fetched from anywhere else); the page talks to the API of its own origin
//! with the key the operator typed, which it keeps in memory only.
//!
//! Every console response carries a strict `Content-Security-Policy` (no inline script or
//! style, no other origin), `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//! no-referrer`; an unknown asset is the API's JSON 404.

use axum::http::header::{self, HeaderValue};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use centaur_core::api::Route;
use centaur_http::{ApiError, ApiPath, AppState};

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/console",
    },
    Route {
        method: "GET",
        path: "/console/{asset}",
    },
];

/// The policy of every console response: scripts, styles, images and requests from this
/// origin only (images also as `data:` URLs), never framed, no `<base>`, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// One embedded file of the console.
pub struct Asset {
    /// Its name under `/console/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes, compiled into the binary.
    pub body: &'static [u8],
}

/// Every file of the console; `/console` itself is `index.html`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
    },
];

fn serve(asset: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // The assets change with the binary: revalidate rather than keep a stale copy.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response()
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

async fn index() -> Response {
    match find("index.html") {
        Some(asset) => serve(asset),
        None => {
            ApiError::Internal("the console's index.html is not embedded".into()).into_response()
        }
    }
}

async fn asset(ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    find(&name).map(serve).ok_or_else(|| {
        let shown: String = name.chars().take(64).collect();
        ApiError::NotFound(format!("no console asset '{shown}'"))
    })
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The console's routes, with the security headers on every answer (errors included).
pub fn routes() -> Router {
    Router::new()
        .route("/console", get(index))
        .route("/console/{asset}", get(asset))
        .layer(middleware::map_response(security_headers))
}

/// The function's router (the console reads no state: the page calls the API itself).
pub fn router(_state: AppState) -> Router {
    routes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = centaur_http::app(routes())
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }

    fn assert_secured(path: &str, headers: &axum::http::HeaderMap) {
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{path}");
    }

    fn text(asset: &str) -> &'static str {
        let asset = find(asset).expect("asset");
        std::str::from_utf8(asset.body).expect("utf-8")
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_the_security_headers() {
        let (status, headers, body) = get("/console").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(body, text("index.html").as_bytes());
        assert_secured("/console", &headers);
        for asset in ASSETS {
            let path = format!("/console/{}", asset.name);
            let (status, headers, body) = get(&path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type, "{path}");
            assert_eq!(body, asset.body, "{path}");
            assert_secured(&path, &headers);
        }
    }

    #[tokio::test]
    async fn bad_asset_paths_are_json_errors_with_the_security_headers() {
        for (path, status, code) in [
            ("/console/nope.js", StatusCode::NOT_FOUND, "NOT_FOUND"),
            ("/console/..%2Fsecret", StatusCode::NOT_FOUND, "NOT_FOUND"),
            ("/console/%FF", StatusCode::BAD_REQUEST, "INVALID_PATH"),
        ] {
            let (got, headers, body) = get(path).await;
            assert_eq!(got, status, "{path}");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(body["code"], code, "{path}: {body}");
            assert!(body["message"].is_string(), "{path}: {body}");
            assert_secured(path, &headers);
        }
        let (status, _, body) = get(&format!("/console/{}", "x".repeat(500))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert!(
            body["message"].as_str().is_some_and(|m| m.len() < 120),
            "{body}"
        );
        // Deeper paths are not console routes: the API's own JSON 404.
        let (status, _, body) = get("/console/a/b").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["code"], "NOT_FOUND");
    }

    #[test]
    fn the_page_loads_nothing_from_outside_the_binary_and_nothing_inline() {
        let html = text("index.html");
        for reference in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(reference) {
                let target = &html[at + reference.len()..];
                assert!(
                    target.starts_with("/console/") || target.starts_with('#'),
                    "index.html refers outside the console: {}",
                    &target[..target.len().min(60)]
                );
            }
        }
        assert!(!html.contains("<style"), "no inline style element");
        assert!(!html.contains("style="), "no inline style attribute");
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=\"/console/").count(),
            "every script is an embedded file"
        );
        for asset in ASSETS {
            let body = String::from_utf8_lossy(asset.body);
            let external = body
                .match_indices("http")
                .filter(|(at, _)| !body[*at..].starts_with("http://www.w3.org/2000/svg"))
                .count();
            assert_eq!(external, 0, "{} names an outside address", asset.name);
            assert!(!body.contains("@import"), "{}", asset.name);
        }
    }

    #[test]
    fn the_key_lives_in_memory_and_text_is_never_parsed_as_html() {
        let js = text("app.js");
        for forbidden in [
            "localStorage",
            "sessionStorage",
            "indexedDB",
            "cookie",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "EventSource",
        ] {
            assert!(!js.contains(forbidden), "app.js uses {forbidden}");
        }
        assert!(js.contains("'X-Api-Key'"), "the key is sent as X-Api-Key");
    }
}
