//! The HTTP side: one client for the API's base URL, sending `X-Api-Key` when a key is
//! configured (never printing it).

use crate::error::{chain, ApiFailure, CliError};
use crate::request::{endpoint, is_loopback};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary request (not the event stream) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one Centaur API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    has_key: bool,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base.as_str())
            .field("has_key", &self.has_key)
            .finish()
    }
}

impl Api {
    /// A client for `base`, sending `key` (trimmed) as `X-Api-Key` when given. A loopback
    /// API is called directly, never through a proxy from the environment (the API would
    /// not treat a proxied request as the local operator).
    pub fn new(base: Url, key: Option<&str>) -> Result<Self, CliError> {
        let key = key.map(str::trim).filter(|key| !key.is_empty());
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            let mut value = HeaderValue::from_str(key).map_err(|_| {
                CliError::Usage(
                    "the API key holds characters an HTTP header cannot carry; check CENTAUR_API_KEY / --api-key"
                        .into(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .default_headers(headers)
            .user_agent(concat!("centaur-cli/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|err| {
            CliError::Usage(format!("cannot set up the HTTP client: {}", chain(&err)))
        })?;
        Ok(Self {
            http,
            base,
            has_key: key.is_some(),
        })
    }

    /// The API's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// True when requests carry an API key.
    pub fn has_key(&self) -> bool {
        self.has_key
    }

    /// The base URL as shown in messages (no trailing slash).
    pub fn shown_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn transport(&self, err: &reqwest::Error) -> CliError {
        // reqwest's own message repeats the URL; its causes say what happened.
        let cause = match std::error::Error::source(err) {
            Some(source) => chain(source),
            None => chain(err),
        };
        let cause = if err.is_timeout() {
            format!("no answer in time ({cause})")
        } else {
            cause
        };
        CliError::Unreachable {
            url: self.shown_url(),
            cause,
        }
    }

    /// Sends a request and returns the status and the body text, whatever the status.
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(u16, String), CliError> {
        let mut request = self
            .http
            .request(method, endpoint(&self.base, segments, query))
            .timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| self.transport(&err))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|err| self.transport(&err))?;
        Ok((status, text))
    }

    /// Sends a request and returns its JSON body; an error status is [`CliError::Api`].
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let (status, text) = self.send(method, segments, query, body).await?;
        if !(200..300).contains(&status) {
            return Err(CliError::Api(ApiFailure::from_answer(status, &text)));
        }
        serde_json::from_str(&text).map_err(|err| CliError::BadAnswer {
            url: self.shown_url(),
            cause: format!("not JSON ({err})"),
        })
    }

    /// `GET` with JSON answer.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.call(Method::GET, segments, query, None).await
    }

    /// `POST` a JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        self.call(Method::POST, segments, &[], Some(body)).await
    }

    /// `DELETE`.
    pub async fn delete(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.call(Method::DELETE, segments, &[], None).await
    }

    /// `GET` for a check: any status is an answer (the body as JSON, or as a string when it
    /// is not JSON); only no answer at all is an error.
    pub async fn probe(&self, segments: &[&str]) -> Result<(u16, Value), CliError> {
        let (status, text) = self.send(Method::GET, segments, &[], None).await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// Opens `GET /agent/threads/{thread_key}/events?execution_id=…&after_event_id=…` (no
    /// overall timeout: the stream lasts as long as the turn).
    pub async fn open_events(
        &self,
        thread_key: &str,
        execution_id: &str,
        after_event_id: i64,
    ) -> Result<reqwest::Response, CliError> {
        let url = endpoint(
            &self.base,
            &["agent", "threads", thread_key, "events"],
            &[
                ("execution_id", execution_id.to_owned()),
                ("after_event_id", after_event_id.to_string()),
            ],
        );
        let response = self
            .http
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|err| self.transport(&err))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response.text().await.unwrap_or_default();
            return Err(CliError::Api(ApiFailure::from_answer(status, &text)));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_with_a_newline_inside_is_a_usage_error_and_is_never_shown() {
        let base = Url::parse("http://localhost:8000").unwrap();
        let err = Api::new(base.clone(), Some("cnt_secret\nvalue")).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)));
        assert!(!err.to_string().contains("cnt_secret"), "{err}");
        let api = Api::new(base.clone(), Some(" cnt_secret\n")).unwrap();
        assert!(api.has_key());
        assert!(!format!("{api:?}").contains("cnt_secret"));
        assert!(!Api::new(base, Some("  ")).unwrap().has_key());
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let base = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let api = Api::new(base, None).unwrap();
        let err = api.get(&["health"], &[]).await.unwrap_err();
        assert!(matches!(err, CliError::Unreachable { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot reach the API at http://127.0.0.1:"),
            "{err}"
        );
    }
}
