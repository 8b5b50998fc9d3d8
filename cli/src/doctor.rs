//! `centaur doctor`: what the API's health, readiness and tools answers mean, in words,
//! decided without IO from what was observed.

use serde_json::{json, Value};

/// What one probe got: the status and body, or why there was no answer.
pub type Probe = Result<(u16, Value), String>;

/// Everything `doctor` looked at.
#[derive(Debug, Clone)]
pub struct Observations {
    /// The API's base URL.
    pub api_url: String,
    /// Whether requests carried an API key.
    pub has_key: bool,
    /// `GET /health`.
    pub health: Probe,
    /// `GET /health/ready` (not asked when `/health` had no answer).
    pub ready: Option<Probe>,
    /// `GET /agent/threads?limit=1`: whether the credential is accepted.
    pub auth: Option<Probe>,
    /// `GET /health/tools` (admin).
    pub tools: Option<Probe>,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Ready.
    Ok,
    /// Worth knowing, not a failure (a harness not enabled, Slack not configured).
    Note,
    /// Could not be checked (e.g. the key lacks the admin scope).
    Unknown,
    /// Not ready: `doctor` exits non-zero.
    Fail,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Note => "note",
            State::Unknown => "unknown",
            State::Fail => "fail",
        }
    }
}

/// One line of the report: `subject: text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`api`, `database`, `codex`, …).
    pub subject: String,
    /// How it came out.
    pub state: State,
    /// The finding in words.
    pub text: String,
}

/// The verdict of `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything checked is ready.
    Ready,
    /// The API answered, but something is not ready.
    NotReady,
    /// The API did not answer at all.
    Unreachable,
}

/// The findings and the verdict.
#[derive(Debug, Clone)]
pub struct Report {
    /// One line per finding, in order.
    pub checks: Vec<Check>,
    /// The overall verdict.
    pub verdict: Verdict,
}

fn check(subject: &str, state: State, text: impl Into<String>) -> Check {
    Check {
        subject: subject.to_owned(),
        state,
        text: text.into(),
    }
}

fn message_of(body: &Value) -> String {
    ["message", "detail", "error"]
        .iter()
        .find_map(|field| body[field].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| match body {
            Value::String(text) => crate::error::truncate_chars(text.trim(), 200),
            other => other.to_string(),
        })
}

/// The part of a degraded readiness `error` about `what` (`database: …; queue: …`).
fn readiness_error(body: &Value, what: &str) -> Option<String> {
    body["error"].as_str()?.split("; ").find_map(|part| {
        part.strip_prefix(what)
            .and_then(|rest| rest.strip_prefix(": "))
            .map(str::to_owned)
    })
}

/// The harness `/health/tools` names as the default (`…; default harness codex`).
fn default_harness(entries: &[Value]) -> Option<String> {
    entries
        .iter()
        .find(|entry| entry["kind"] == "sandbox")
        .and_then(|entry| entry["detail"].as_str())
        .and_then(|detail| detail.split("default harness ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|name| name.trim_end_matches([',', ';', '.']).to_owned())
}

/// The credential part of a harness's detail, short: `OPENAI_API_KEY bound`.
fn credential_words(detail: &str) -> String {
    let first = detail.split(';').next().unwrap_or_default().trim();
    match first.split_once(" bound in iron-proxy") {
        Some((secret, _)) if !secret.contains(' ') => format!("{secret} bound"),
        _ if first == "needs no credential" => "no credential needed".to_owned(),
        _ => first.to_owned(),
    }
}

fn harness_check(entry: &Value, is_default: bool) -> Check {
    let name = entry["name"].as_str().unwrap_or("harness");
    let detail = entry["detail"].as_str().unwrap_or_default();
    let cli = match (
        entry["cli_version"].as_str(),
        entry["cli_present"].as_bool(),
    ) {
        (Some(version), _) => format!("CLI {version}"),
        (None, Some(true)) if name == "echo" => "built into the sandbox".to_owned(),
        (None, Some(true)) => "CLI present".to_owned(),
        (None, Some(false)) => "CLI missing from the sandbox image".to_owned(),
        (None, None) => "CLI not reported yet".to_owned(),
    };
    let default = if is_default {
        ", the default harness"
    } else {
        ""
    };
    if entry["ready"] == true {
        return check(
            name,
            State::Ok,
            format!("ready ({cli}, {}{default})", credential_words(detail)),
        );
    }
    if entry["credential_bound"] == false {
        let state = if is_default { State::Fail } else { State::Note };
        let first = detail.split(';').next().unwrap_or(detail).trim();
        return check(name, state, format!("not enabled: {first}{default}"));
    }
    check(name, State::Fail, format!("not ready: {detail}{default}"))
}

fn tools_checks(entries: &[Value], readiness_seen: bool, checks: &mut Vec<Check>) {
    let default = default_harness(entries);
    let mut any_harness_ready = false;
    // Harnesses first, then integrations, other tools and the sandbox backend.
    let (mut harnesses, mut integrations, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        let name = entry["name"].as_str().unwrap_or("tool");
        let ready = entry["ready"] == true;
        let detail = entry["detail"].as_str().unwrap_or_default();
        match entry["kind"].as_str().unwrap_or_default() {
            "harness" => {
                any_harness_ready |= ready;
                harnesses.push(harness_check(entry, default.as_deref() == Some(name)));
            }
            "integration" if ready => {
                integrations.push(check(name, State::Ok, format!("configured ({detail})")))
            }
            "integration" => integrations.push(check(
                name,
                State::Note,
                format!("not configured: {detail}"),
            )),
            "queue" if readiness_seen => {}
            "sandbox" => others.push(check("sandboxes", State::Note, detail)),
            _ if ready => others.insert(0, check(name, State::Ok, format!("ready ({detail})"))),
            _ => others.insert(0, check(name, State::Fail, format!("not ready: {detail}"))),
        }
    }
    checks.extend(harnesses);
    checks.extend(integrations);
    checks.extend(others);
    if let Some(default) = &default {
        let listed = entries
            .iter()
            .any(|entry| entry["kind"] == "harness" && entry["name"] == default.as_str());
        if !listed {
            checks.push(check(
                "config",
                State::Fail,
                format!("the default harness '{default}' (CENTAUR_DEFAULT_HARNESS) is not a known harness"),
            ));
        }
    }
    if !any_harness_ready {
        checks.push(check(
            "config",
            State::Fail,
            "no harness is ready: bind a harness credential (the chart's harnesses.enabled) or use echo",
        ));
    }
}

/// Reads the observations into findings and a verdict.
pub fn diagnose(seen: &Observations) -> Report {
    let mut checks = Vec::new();
    match &seen.health {
        Err(cause) => {
            checks.push(check("api", State::Fail, format!("unreachable: {cause}")));
            return Report {
                checks,
                verdict: Verdict::Unreachable,
            };
        }
        Ok((200, _)) => checks.push(check(
            "api",
            State::Ok,
            format!("reachable at {}", seen.api_url),
        )),
        Ok((status, body)) => checks.push(check(
            "api",
            State::Fail,
            format!("/health answered HTTP {status}: {}", message_of(body)),
        )),
    }
    match &seen.auth {
        None => {}
        Some(Err(cause)) => checks.push(check(
            "auth",
            State::Unknown,
            format!("not checked: {cause}"),
        )),
        Some(Ok((200, _))) if seen.has_key => {
            checks.push(check("auth", State::Ok, "the API key is accepted"))
        }
        Some(Ok((200, _))) => checks.push(check(
            "auth",
            State::Ok,
            "local operator (no key: requests from this machine get every scope)",
        )),
        Some(Ok((status @ (401 | 403), body))) => {
            let hint = if seen.has_key {
                "check CENTAUR_API_KEY / --api-key"
            } else {
                "set CENTAUR_API_KEY or pass --api-key"
            };
            checks.push(check(
                "auth",
                State::Fail,
                format!("refused (HTTP {status}): {}; {hint}", message_of(body)),
            ));
        }
        Some(Ok((status, body))) => checks.push(check(
            "auth",
            State::Unknown,
            format!("not checked: HTTP {status}: {}", message_of(body)),
        )),
    }
    let readiness_seen = matches!(&seen.ready, Some(Ok((200 | 503, _))));
    match &seen.ready {
        None => {}
        Some(Err(cause)) => checks.push(check(
            "readiness",
            State::Fail,
            format!("no answer: {cause}"),
        )),
        Some(Ok((status @ (200 | 503), body))) => {
            for what in ["database", "queue"] {
                if body[what] == true {
                    checks.push(check(what, State::Ok, "ready"));
                } else {
                    let why = readiness_error(body, what).unwrap_or_else(|| {
                        if *status == 503 {
                            message_of(body)
                        } else {
                            "not reported".to_owned()
                        }
                    });
                    checks.push(check(what, State::Fail, format!("unreachable: {why}")));
                }
            }
        }
        Some(Ok((status, body))) => checks.push(check(
            "readiness",
            State::Fail,
            format!("/health/ready answered HTTP {status}: {}", message_of(body)),
        )),
    }
    match &seen.tools {
        None => {}
        Some(Err(cause)) => checks.push(check(
            "tools",
            State::Unknown,
            format!("not checked: {cause}"),
        )),
        Some(Ok((200, body))) => {
            let entries: Vec<Value> = ["loaded", "failed"]
                .iter()
                .flat_map(|list| body[list].as_array().cloned().unwrap_or_default())
                .collect();
            tools_checks(&entries, readiness_seen, &mut checks);
        }
        Some(Ok((status @ (401 | 403), body))) => checks.push(check(
            "tools",
            State::Unknown,
            format!(
                "not checked: {} (HTTP {status}; /health/tools needs the admin scope)",
                message_of(body)
            ),
        )),
        Some(Ok((status, body))) => checks.push(check(
            "tools",
            State::Fail,
            format!("/health/tools answered HTTP {status}: {}", message_of(body)),
        )),
    }
    let verdict = if checks.iter().any(|c| c.state == State::Fail) {
        Verdict::NotReady
    } else {
        Verdict::Ready
    };
    Report { checks, verdict }
}

impl Report {
    /// The report in words, ending with the verdict.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            out.push_str(&format!("{}: {}\n", check.subject, check.text));
        }
        let failing: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.state == State::Fail)
            .map(|c| c.subject.as_str())
            .collect();
        match self.verdict {
            Verdict::Ready => out.push_str("ready\n"),
            Verdict::NotReady => out.push_str(&format!("not ready: {}\n", failing.join(", "))),
            Verdict::Unreachable => out.push_str("not ready: the API cannot be reached\n"),
        }
        out
    }

    /// The report as JSON (`--json`), with the raw answers.
    pub fn json(&self, seen: &Observations) -> Value {
        let raw = |probe: &Option<Probe>| match probe {
            Some(Ok((status, body))) => json!({"status": status, "body": body}),
            Some(Err(cause)) => json!({"error": cause}),
            None => Value::Null,
        };
        json!({
            "api_url": seen.api_url,
            "ready": self.verdict == Verdict::Ready,
            "checks": self.checks.iter().map(|c| json!({
                "subject": c.subject, "state": c.state.as_str(), "text": c.text,
            })).collect::<Vec<_>>(),
            "health": raw(&Some(seen.health.clone())),
            "readiness": raw(&seen.ready),
            "auth": raw(&seen.auth),
            "tools": raw(&seen.tools),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(default: &str, entries: Value) -> Value {
        let mut all: Vec<Value> = entries.as_array().cloned().unwrap_or_default();
        all.push(json!({"name": "queue", "kind": "queue", "ready": true, "detail": "postgres queue reachable"}));
        all.push(
            json!({"name": "sandbox_backend", "kind": "sandbox", "ready": true,
                        "detail": format!("Local backend; default harness {default}")}),
        );
        let (loaded, failed): (Vec<Value>, Vec<Value>) =
            all.into_iter().partition(|e| e["ready"] == true);
        json!({"loaded": loaded, "failed": failed})
    }

    fn healthy(tools_body: Value) -> Observations {
        Observations {
            api_url: "http://localhost:8000".into(),
            has_key: false,
            health: Ok((200, json!({"status": "ok"}))),
            ready: Some(Ok((
                200,
                json!({"status": "ok", "database": true, "queue": true}),
            ))),
            auth: Some(Ok((200, json!({"threads": []})))),
            tools: Some(Ok((200, tools_body))),
        }
    }

    fn echo() -> Value {
        json!({"name": "echo", "kind": "harness", "ready": true, "credential_bound": true,
               "cli_present": true, "cli_version": null,
               "detail": "needs no credential; built into the sandbox program"})
    }

    fn codex(bound: bool, present: Option<bool>) -> Value {
        let detail = if bound {
            "OPENAI_API_KEY bound in iron-proxy for api.openai.com (authorization); CLI present: codex-cli 0.171.0 (reported x)"
        } else {
            "OPENAI_API_KEY is not bound in iron-proxy (IRON_PROXY_BOUND_SECRETS); enable the harness in the chart's harnesses.enabled; CLI not reported yet"
        };
        json!({"name": "codex", "kind": "harness", "ready": bound && present != Some(false),
               "credential_bound": bound, "cli_present": present,
               "cli_version": if present == Some(true) { json!("codex-cli 0.171.0") } else { Value::Null },
               "detail": detail})
    }

    fn line<'a>(report: &'a Report, subject: &str) -> &'a Check {
        report
            .checks
            .iter()
            .find(|c| c.subject == subject)
            .unwrap_or_else(|| panic!("no {subject} in {:?}", report.checks))
    }

    #[test]
    fn a_healthy_echo_stack_is_ready_and_says_so_in_words() {
        let seen = healthy(tools(
            "echo",
            json!([echo(), codex(false, None),
                   {"name": "slack", "kind": "integration", "ready": false,
                    "detail": "set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET to use Slack"}]),
        ));
        let report = diagnose(&seen);
        assert_eq!(report.verdict, Verdict::Ready, "{}", report.text());
        let text = report.text();
        for expected in [
            "api: reachable at http://localhost:8000\n",
            "auth: local operator",
            "database: ready\n",
            "queue: ready\n",
            "echo: ready (built into the sandbox, no credential needed, the default harness)\n",
            "codex: not enabled: OPENAI_API_KEY is not bound in iron-proxy (IRON_PROXY_BOUND_SECRETS)\n",
            "slack: not configured: set SLACK_BOT_TOKEN",
            "sandboxes: Local backend; default harness echo\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(text.ends_with("ready\n"));
        assert!(
            !text.contains("queue: ready (postgres"),
            "the queue is reported once"
        );
    }

    #[test]
    fn a_bound_harness_reports_its_cli_version_and_credential() {
        let report = diagnose(&healthy(tools(
            "codex",
            json!([echo(), codex(true, Some(true))]),
        )));
        assert_eq!(
            line(&report, "codex").text,
            "ready (CLI codex-cli 0.171.0, OPENAI_API_KEY bound, the default harness)"
        );
        assert_eq!(report.verdict, Verdict::Ready);
    }

    #[test]
    fn a_missing_cli_or_an_unbound_default_harness_is_not_ready() {
        let report = diagnose(&healthy(tools(
            "echo",
            json!([echo(), codex(true, Some(false))]),
        )));
        assert_eq!(line(&report, "codex").state, State::Fail);
        assert_eq!(report.verdict, Verdict::NotReady);
        assert!(
            report.text().ends_with("not ready: codex\n"),
            "{}",
            report.text()
        );

        let report = diagnose(&healthy(tools(
            "codex",
            json!([echo(), codex(false, None)]),
        )));
        assert_eq!(line(&report, "codex").state, State::Fail);
        assert!(line(&report, "codex").text.ends_with("the default harness"));
        assert_eq!(report.verdict, Verdict::NotReady);
    }

    #[test]
    fn no_ready_harness_is_a_config_problem() {
        let report = diagnose(&healthy(tools("codex", json!([codex(false, None)]))));
        assert!(report
            .checks
            .iter()
            .any(|c| c.subject == "config" && c.text.starts_with("no harness is ready")));
    }

    #[test]
    fn a_degraded_queue_is_named_with_its_error() {
        let mut seen = healthy(tools("echo", json!([echo()])));
        seen.ready = Some(Ok((
            503,
            json!({"status": "degraded", "database": true, "queue": false,
                   "error": "queue: connection refused"}),
        )));
        let report = diagnose(&seen);
        assert_eq!(line(&report, "database").state, State::Ok);
        assert_eq!(
            line(&report, "queue").text,
            "unreachable: connection refused"
        );
        assert_eq!(report.verdict, Verdict::NotReady);
    }

    #[test]
    fn no_answer_at_all_is_unreachable_and_nothing_else_is_claimed() {
        let seen = Observations {
            api_url: "http://localhost:1".into(),
            has_key: false,
            health: Err("connection refused".into()),
            ready: None,
            auth: None,
            tools: None,
        };
        let report = diagnose(&seen);
        assert_eq!(report.verdict, Verdict::Unreachable);
        assert_eq!(report.checks.len(), 1);
        assert_eq!(report.checks[0].text, "unreachable: connection refused");
        assert_eq!(report.json(&seen)["ready"], false);
    }

    #[test]
    fn a_refused_key_fails_and_a_missing_admin_scope_only_skips_the_tools() {
        let mut seen = healthy(json!({}));
        seen.has_key = true;
        seen.auth = Some(Ok((401, json!({"detail": "Invalid API key"}))));
        seen.tools = Some(Ok((401, json!({"detail": "Invalid API key"}))));
        let report = diagnose(&seen);
        assert_eq!(
            line(&report, "auth").text,
            "refused (HTTP 401): Invalid API key; check CENTAUR_API_KEY / --api-key"
        );
        assert_eq!(report.verdict, Verdict::NotReady);

        let mut seen = healthy(json!({}));
        seen.has_key = true;
        seen.tools = Some(Ok((
            403,
            json!({"detail": "API key scope does not permit 'admin'"}),
        )));
        let report = diagnose(&seen);
        assert_eq!(line(&report, "auth").text, "the API key is accepted");
        assert_eq!(line(&report, "tools").state, State::Unknown);
        assert_eq!(report.verdict, Verdict::Ready, "{}", report.text());
    }

    #[test]
    fn the_json_report_carries_checks_and_raw_answers() {
        let seen = healthy(tools("echo", json!([echo()])));
        let report = diagnose(&seen);
        let json = report.json(&seen);
        assert_eq!(json["ready"], true);
        assert_eq!(json["health"]["status"], 200);
        assert_eq!(json["checks"][0]["subject"], "api");
        assert_eq!(json["checks"][0]["state"], "ok");
    }
}
