//! Arguments → requests: URLs and bodies, decided without IO.

use crate::error::CliError;
use centaur_core::api::ExecuteRequest;
use centaur_core::{Harness, ThreadKey};
use reqwest::Url;
use serde_json::{json, Value};

/// The API's base URL from `--api-url` / `CENTAUR_API_URL`: http or https with a host.
pub fn base_url(raw: &str) -> Result<Url, CliError> {
    let trimmed = raw.trim();
    let url = Url::parse(trimmed).map_err(|err| {
        CliError::Usage(format!(
            "the API URL '{trimmed}' is not a URL ({err}); expected e.g. http://localhost:8000"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CliError::Usage(format!(
            "the API URL '{trimmed}' must be http:// or https:// with a host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::Usage(format!(
            "the API URL '{trimmed}' must not carry a query or fragment"
        )));
    }
    Ok(url)
}

/// True when the API is on this machine: requests then go direct (no proxy from the
/// environment), so that the API sees a loopback peer and the local operator works.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `base` + path segments (each percent-encoded: a thread key may hold spaces, `?` or
/// `#`) + query pairs.
pub fn endpoint(base: &Url, segments: &[&str], query: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(name, value)| (*name, value.as_str())));
    }
    url
}

/// A fresh thread key for `centaur run` without `--thread`.
pub fn new_thread_key() -> String {
    format!("cli-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// What `centaur run` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The message text.
    pub text: String,
    /// The thread (given or generated).
    pub thread_key: ThreadKey,
    /// `--harness` (a name or alias the API accepts).
    pub harness: Option<Harness>,
    /// `--repo`.
    pub repo: Option<String>,
}

/// Checks a thread key the way the API does, so a bad one is a usage error before any
/// request.
pub fn thread_key(raw: &str) -> Result<String, CliError> {
    centaur_core::ThreadKey::parse(raw)
        .map(|key| key.as_str().to_owned())
        .map_err(|err| CliError::Usage(format!("--thread '{raw}': {err}")))
}

impl RunRequest {
    /// The request of `centaur run`: a blank message is refused here; a missing thread
    /// gets a fresh key.
    pub fn new(
        text: &str,
        thread: Option<&str>,
        harness: Option<&str>,
        repo: Option<&str>,
    ) -> Result<Self, CliError> {
        if text.trim().is_empty() {
            return Err(CliError::Usage("the message must not be empty".into()));
        }
        let blank_to_none = |value: Option<&str>| {
            value
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let raw_thread = thread.map_or_else(new_thread_key, str::to_owned);
        let thread_key = ThreadKey::parse(raw_thread.as_str())
            .map_err(|err| CliError::Usage(format!("--thread '{raw_thread}': {err}")))?;
        let harness = blank_to_none(harness)
            .map(|name| {
                name.parse::<Harness>()
                    .map_err(|err| CliError::Usage(format!("--harness: {err}")))
            })
            .transpose()?;
        Ok(Self {
            text: text.to_owned(),
            thread_key,
            harness,
            repo: blank_to_none(repo),
        })
    }

    /// The body of the one-call `POST /agent/execute`.
    pub fn body(&self) -> Value {
        let request = ExecuteRequest {
            harness: self.harness,
            repo: self.repo.clone(),
            ..ExecuteRequest::one_call(self.thread_key.clone(), self.text.clone())
        };
        serde_json::to_value(request).unwrap_or_else(|_| json!({}))
    }
}

/// The body of `POST /admin/api-keys`. Scopes may be given repeated or comma-separated;
/// blanks are dropped and none left is a usage error.
pub fn key_create_body(
    name: &str,
    scopes: &[String],
    created_by: Option<&str>,
) -> Result<Value, CliError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CliError::Usage("--name must not be empty".into()));
    }
    let scopes: Vec<&str> = scopes
        .iter()
        .flat_map(|scope| scope.split(','))
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .collect();
    if scopes.is_empty() {
        return Err(CliError::Usage(
            "give at least one --scope (admin, agent, agent:execute, agent:status, agent:stop, *)"
                .into(),
        ));
    }
    let mut body = json!({"name": name, "scopes": scopes});
    if let Some(created_by) = created_by.map(str::trim).filter(|c| !c.is_empty()) {
        body["created_by"] = json!(created_by);
    }
    Ok(body)
}

/// The query of `GET /admin/audit` for `centaur audit` (the API checks the values).
pub fn audit_query(args: &crate::args::AuditArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(since) = text(&args.since) {
        query.push(("since", since));
    }
    if let Some(principal) = text(&args.principal) {
        query.push(("principal", principal));
    }
    if let Some(action) = text(&args.action) {
        query.push(("action", action));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(before) = args.before {
        query.push(("before", before.to_string()));
    }
    query
}

/// The body of `POST /agent/threads/{thread_key}/release`.
pub fn release_body(cancel_inflight: bool) -> Value {
    json!({"cancel_inflight": cancel_inflight})
}

/// An execution id as typed: trimmed, and refused when blank (any other text goes to the
/// API, which answers 404 for what is not an execution).
pub fn execution_id(raw: &str) -> Result<String, CliError> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(CliError::Usage("the execution id must not be empty".into()));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(raw: &str) -> Url {
        base_url(raw).unwrap()
    }

    #[test]
    fn base_urls_must_be_http_with_a_host() {
        assert!(base_url("http://localhost:8000").is_ok());
        assert!(base_url(" https://centaur.example.com/api/ ").is_ok());
        for bad in [
            "localhost:8000",
            "ftp://x",
            "not a url",
            "",
            "http://h/?x=1",
        ] {
            let err = base_url(bad).expect_err(bad);
            assert!(matches!(err, CliError::Usage(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn endpoints_encode_segments_and_keep_a_path_prefix() {
        let url = endpoint(
            &base("http://localhost:8000"),
            &["agent", "threads", "a b?#/c", "events"],
            &[
                ("execution_id", "exe_1".into()),
                ("after_event_id", "7".into()),
            ],
        );
        assert_eq!(
            url.as_str(),
            "http://localhost:8000/agent/threads/a%20b%3F%23%2Fc/events?execution_id=exe_1&after_event_id=7"
        );
        let prefixed = endpoint(&base("https://h/api/"), &["health", "ready"], &[]);
        assert_eq!(prefixed.as_str(), "https://h/api/health/ready");
        let bare = endpoint(&base("https://h/api"), &["health"], &[]);
        assert_eq!(bare.as_str(), "https://h/api/health");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for local in [
            "http://localhost:8000",
            "http://127.0.0.1:1",
            "http://[::1]:8000",
        ] {
            assert!(is_loopback(&base(local)), "{local}");
        }
        assert!(!is_loopback(&base("https://centaur.example.com")));
        assert!(!is_loopback(&base("http://10.0.0.1")));
    }

    #[test]
    fn a_run_becomes_the_one_call_execute_body() {
        let run = RunRequest::new("hello", Some("demo"), Some("echo"), Some("acme/api")).unwrap();
        assert_eq!(
            run.body(),
            json!({"thread_key": "demo", "message": "hello", "harness": "echo", "repo": "acme/api"})
        );
        let bare = RunRequest::new("hi", Some("demo"), None, Some("  ")).unwrap();
        assert_eq!(bare.body(), json!({"thread_key": "demo", "message": "hi"}));
    }

    #[test]
    fn a_run_without_a_thread_gets_a_fresh_valid_key() {
        let one = RunRequest::new("hi", None, None, None).unwrap();
        let two = RunRequest::new("hi", None, None, None).unwrap();
        assert!(
            one.thread_key.as_str().starts_with("cli-"),
            "{}",
            one.thread_key
        );
        assert_ne!(one.thread_key, two.thread_key);
        assert!(centaur_core::ThreadKey::parse(one.thread_key.as_str()).is_ok());
    }

    #[test]
    fn blank_messages_and_bad_thread_keys_are_usage_errors() {
        for (text, thread) in [(" \n", None), ("hi", Some("a/b")), ("hi", Some(" "))] {
            let err = RunRequest::new(text, thread, None, None).expect_err(text);
            assert!(matches!(err, CliError::Usage(_)), "{err}");
        }
    }

    #[test]
    fn key_bodies_split_comma_separated_scopes() {
        let body = key_create_body(
            " ci ",
            &["agent,admin".into(), " ".into(), "agent:status".into()],
            Some("ops"),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"name": "ci", "scopes": ["agent", "admin", "agent:status"], "created_by": "ops"})
        );
        assert!(key_create_body("ci", &[",".into()], None).is_err());
        assert!(key_create_body(" ", &["admin".into()], None).is_err());
    }

    #[test]
    fn release_and_ids() {
        assert_eq!(release_body(true), json!({"cancel_inflight": true}));
        assert_eq!(execution_id(" exe_1 ").unwrap(), "exe_1");
        assert!(execution_id("  ").is_err());
    }
}
