//! A small client for the public API, as an operator's `curl` would use it.

use anyhow::{anyhow, bail};
use serde_json::{json, Value};
use std::time::Duration;

/// Statuses no execution leaves.
pub const TERMINAL_STATUSES: [&str; 3] = ["completed", "failed_permanent", "cancelled"];

/// HTTP client for one API base URL.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

impl ApiClient {
    /// A client without a key: on loopback the API treats it as the local operator.
    pub fn new(base_url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: None,
        }
    }

    /// The same client sending `X-Api-Key`.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.api_key {
            Some(key) => builder.header("X-Api-Key", key),
            None => builder,
        }
    }

    async fn read(response: reqwest::Response) -> anyhow::Result<(u16, Value)> {
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// POSTs JSON; returns the status and the body (JSON, or the raw text as a string).
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        Self::read(
            self.request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await?,
        )
        .await
    }

    /// GETs a path; returns the status and the body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        Self::read(self.request(reqwest::Method::GET, path).send().await?).await
    }

    async fn expect(&self, path: &str, body: &Value, status: u16) -> anyhow::Result<Value> {
        let (got, response) = self.post(path, body).await?;
        if got != status {
            bail!("POST {path} answered {got}, expected {status}: {response}");
        }
        Ok(response)
    }

    /// `POST /agent/spawn`; returns the assignment generation.
    pub async fn spawn(&self, thread_key: &str) -> anyhow::Result<i64> {
        let body = self
            .expect("/agent/spawn", &json!({"thread_key": thread_key}), 200)
            .await?;
        body["assignment_generation"]
            .as_i64()
            .ok_or_else(|| anyhow!("spawn answered without a generation: {body}"))
    }

    /// `POST /agent/message` with one text part.
    pub async fn message(
        &self,
        thread_key: &str,
        generation: i64,
        text: &str,
    ) -> anyhow::Result<()> {
        let body = json!({
            "thread_key": thread_key,
            "assignment_generation": generation,
            "role": "user",
            "parts": [{"type": "text", "text": text}],
        });
        self.expect("/agent/message", &body, 200).await.map(drop)
    }

    /// `POST /agent/execute` with `dev` delivery; returns the execution id.
    pub async fn execute(&self, thread_key: &str, generation: i64) -> anyhow::Result<String> {
        let body = json!({
            "thread_key": thread_key,
            "assignment_generation": generation,
            "delivery": {"platform": "dev"},
        });
        self.post_execute(&body).await
    }

    /// `POST /agent/execute` with `body`, expecting 202; returns the execution id.
    async fn post_execute(&self, body: &Value) -> anyhow::Result<String> {
        let response = self.expect("/agent/execute", body, 202).await?;
        response["execution_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("execute answered without an execution id: {response}"))
    }

    /// The one-call path: `POST /agent/execute` with the message text (the thread is
    /// spawned if needed, message and execution stored together); returns the execution id.
    pub async fn execute_text(&self, thread_key: &str, text: &str) -> anyhow::Result<String> {
        let body = json!({
            "thread_key": thread_key,
            "message": text,
            "delivery": {"platform": "dev"},
        });
        self.post_execute(&body).await
    }

    /// Spawn → message → execute, as in the deployment guide; returns the execution id.
    pub async fn turn(&self, thread_key: &str, text: &str) -> anyhow::Result<String> {
        let generation = self.spawn(thread_key).await?;
        self.message(thread_key, generation, text).await?;
        self.execute(thread_key, generation).await
    }

    /// `GET /agent/executions/{id}` (with events).
    pub async fn execution(&self, execution_id: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .get(&format!("/agent/executions/{execution_id}"))
            .await?;
        if status != 200 {
            bail!("GET execution {execution_id} answered {status}: {body}");
        }
        Ok(body)
    }

    /// Waits until the execution's trail holds a harness event of type `kind`
    /// (`turn.started`, `assistant.message`, …); returns the execution as then read.
    pub async fn wait_for_harness_event(
        &self,
        execution_id: &str,
        kind: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let what = format!("a {kind} event of {execution_id}");
        crate::eventually(timeout, &what, || async {
            let execution = self.execution(execution_id).await?;
            let seen = execution["events"].as_array().is_some_and(|events| {
                events.iter().any(|event| {
                    event["event_kind"] == "harness_event" && event["event_json"]["type"] == kind
                })
            });
            Ok(seen.then_some(execution))
        })
        .await
    }

    /// Polls the execution until it is terminal, or fails after `timeout`.
    pub async fn wait_terminal(
        &self,
        execution_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let what = format!("execution {execution_id} to end");
        crate::eventually(timeout, &what, || async {
            let execution = self.execution(execution_id).await?;
            let status = execution["status"].as_str().unwrap_or_default();
            if TERMINAL_STATUSES.contains(&status) {
                Ok(Some(execution))
            } else {
                Err(anyhow!("still '{status}': {execution}"))
            }
        })
        .await
    }
}
