//! The webhook's hand-off to the Centaur API over HTTP, as the Slackbot service
//! (`X-Api-Key: SLACKBOT_API_KEY`): spawn → message → execute, idempotent per Slack message.

use centaur_slack::IncomingMessage;
use serde_json::{json, Value};
use std::time::Duration;

/// Why a hand-off did not produce an execution.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The API (or the database behind it) could not be reached: Slack should retry.
    #[error("the Centaur API is unavailable: {0}")]
    Unavailable(String),
    /// The API refused the turn (4xx): retrying the same event will not help.
    #[error("the Centaur API refused the turn: {code}: {message}")]
    Refused { code: String, message: String },
}

/// One HTTP client (and connection pool) for the whole process, built at first use rather
/// than per Slack request.
fn shared_http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}

/// Calls the API as the Slackbot.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
}

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    fn refused(self) -> HandoffError {
        HandoffError::Refused {
            code: self.code().to_owned(),
            message: self.body["message"]
                .as_str()
                .or_else(|| self.body["detail"].as_str())
                .map_or_else(|| format!("HTTP {}", self.status), str::to_owned),
        }
    }
}

impl ApiClient {
    /// A client for `base_url` (`CENTAUR_API_URL`) with the Slackbot's key.
    pub fn new(base_url: &str, api_key: &str) -> Self {
        Self {
            http: shared_http().clone(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Answer, HandoffError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("X-Api-Key", &self.api_key)
            .json(body)
            .send()
            .await
            .map_err(|err| HandoffError::Unavailable(format!("POST {path}: {err}")))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        if status >= 500 {
            return Err(HandoffError::Unavailable(format!(
                "POST {path} answered {status}: {body}"
            )));
        }
        Ok(Answer { status, body })
    }

    /// Spawns (switching harness if the message selects another), stores the message and
    /// executes it with Slack delivery; the execution id. Retries once if another event on
    /// the thread moved the assignment on in between.
    pub async fn run_turn(&self, message: &IncomingMessage) -> Result<String, HandoffError> {
        match self.try_turn(message).await {
            Err(HandoffError::Refused { code, .. }) if code == "ASSIGNMENT_GENERATION_STALE" => {
                self.try_turn(message).await
            }
            outcome => outcome,
        }
    }

    async fn try_turn(&self, message: &IncomingMessage) -> Result<String, HandoffError> {
        let generation = self.spawn(message).await?;
        let stored = self
            .post(
                "/agent/message",
                &json!({
                    "thread_key": message.thread_key,
                    "assignment_generation": generation,
                    "message_id": message.message_id,
                    "role": "user",
                    "parts": [{"type": "text", "text": message.text}],
                    "user_id": message.user_id,
                    "metadata": {"slack": {
                        "team_id": message.team_id, "channel": message.channel,
                        "ts": message.ts, "thread_ts": message.thread_ts,
                        "event_id": message.event_id,
                    }},
                }),
            )
            .await?;
        if stored.status != 200 {
            return Err(stored.refused());
        }
        let executed = self
            .post(
                "/agent/execute",
                &json!({
                    "thread_key": message.thread_key,
                    "assignment_generation": generation,
                    "execute_id": message.message_id,
                    "delivery": {
                        "platform": "slack", "channel": message.channel,
                        "thread_ts": message.thread_ts, "team_id": message.team_id,
                        "user_id": message.user_id,
                    },
                }),
            )
            .await?;
        match executed.body["execution_id"].as_str() {
            Some(id) if executed.status == 202 || executed.status == 200 => Ok(id.to_owned()),
            _ => Err(executed.refused()),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer, HandoffError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .header("X-Api-Key", &self.api_key)
            .query(query)
            .send()
            .await
            .map_err(|err| HandoffError::Unavailable(format!("GET {path}: {err}")))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        if status >= 500 {
            return Err(HandoffError::Unavailable(format!(
                "GET {path} answered {status}: {body}"
            )));
        }
        Ok(Answer { status, body })
    }

    /// The thread's assignment generation, for the selected harness and repository. A
    /// selection different from the active assignment's releases it and spawns anew,
    /// keeping whichever of harness and repository the message did not name.
    async fn spawn(&self, message: &IncomingMessage) -> Result<i64, HandoffError> {
        let mut request = json!({"thread_key": message.thread_key});
        if let Some(harness) = message.harness {
            request["harness"] = json!(harness.as_str());
        }
        if let Some(repo) = &message.repo {
            request["repo"] = json!(repo);
        }
        let mut spawned = self.post("/agent/spawn", &request).await?;
        if spawned.status == 409 && spawned.code() == "ACTIVE_ASSIGNMENT_PROMPT_MISMATCH" {
            let status = self
                .get("/agent/status", &[("key", message.thread_key.as_str())])
                .await?;
            let active = &status.body["assignment"];
            if message.harness.is_none() {
                if let Some(harness) = active["harness"].as_str() {
                    request["harness"] = json!(harness);
                }
            }
            if message.repo.is_none() {
                if let Some(repo) = active["repo"].as_str() {
                    request["repo"] = json!(repo);
                }
            }
            let release = self
                .post(
                    &format!("/agent/threads/{}/release", message.thread_key),
                    &json!({"release_id": format!("{}:release", message.message_id)}),
                )
                .await?;
            if release.status != 200 {
                return Err(release.refused());
            }
            spawned = self.post("/agent/spawn", &request).await?;
        }
        match spawned.body["assignment_generation"].as_i64() {
            Some(generation) if spawned.status == 200 => Ok(generation),
            _ => Err(spawned.refused()),
        }
    }
}
