//! `slack-webhook`: Slack's Events API in. Verifies the v0 signature on the raw body,
//! answers `url_verification`, normalises `app_mention` and `message` events, refuses
//! authors outside `SLACK_ALLOWED_TEAMS` (Slack Connect guests) and bots outside
//! `SLACK_ALLOWED_BOTS`, dedupes durably (`slack_events`), reads a thread's earlier messages
//! when the bot is first mentioned inside it, and starts the turn **in process** with the
//! same turn logic as `POST /agent/execute` ([`handoff`]) — no HTTP call to its own API. A
//! refused turn gets a short reply in its thread (a `slack_notices` row the dispatcher
//! posts). No API key is needed here: the signature is the authentication. (An external
//! Slackbot may still drive the HTTP API with `SLACKBOT_API_KEY`.)

pub mod handoff;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use centaur_config::slack::SlackAccessConfig;
use centaur_core::api::Route;
use centaur_http::{AppState, Peer};
use centaur_slack::event::{self, Identity, SlackRequest};
use centaur_slack::{context, signature, IncomingMessage, SlackClient};
use centaur_store::notices::{self, NewNotice};
use centaur_store::{messages, slack_events};
use handoff::Outcome;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The webhook path and Slack's compatibility paths, all served by one handler.
pub const PATHS: [&str; 5] = [
    "/api/webhooks/slack",
    "/api/slack/events",
    "/api/slack/actions",
    "/api/slack/options",
    "/api/slack/commands",
];

/// The routes this function serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: PATHS[0],
    },
    Route {
        method: "POST",
        path: PATHS[1],
    },
    Route {
        method: "POST",
        path: PATHS[2],
    },
    Route {
        method: "POST",
        path: PATHS[3],
    },
    Route {
        method: "POST",
        path: PATHS[4],
    },
];

/// The longest the webhook spends reading a thread's earlier messages (Slack wants its
/// answer within 3 s); past it the turn starts without them.
pub const CONTEXT_BUDGET: Duration = Duration::from_millis(1500);
/// Pages of `conversations.replies` read at most for a thread's context.
const CONTEXT_PAGES: usize = 5;

/// What the webhook answers: Slack reads only the status (and `challenge`); the rest says
/// what became of the event, for logs and tests.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SlackAnswer {
    /// False for a refused request (bad signature, unparseable payload, not configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// `url_verification`: the challenge echoed back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// Why the event started no turn (`external_user`, `team_not_allowed`, a bot, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// The event was seen before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// The turn the message started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// False when the turn was refused (its thread is told why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// A refusal's code (`invalid_signature`, `THREAD_FAILURE_LOOP`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A refused turn's reason, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl SlackAnswer {
    fn ok() -> Self {
        Self {
            ok: Some(true),
            ..Self::default()
        }
    }
}

fn slack_error(status: StatusCode, error: &str) -> Response {
    let answer = SlackAnswer {
        ok: Some(false),
        error: Some(error.to_owned()),
        ..SlackAnswer::default()
    };
    (status, Json(answer)).into_response()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `POST /api/webhooks/slack` (and Slack's compatibility paths): Slack's Events API.
#[utoipa::path(
    post,
    path = "/api/webhooks/slack",
    tag = "slack",
    params(
        ("X-Slack-Request-Timestamp" = Option<String>, Header, description = "Seconds since the epoch; within 5 minutes of now."),
        ("X-Slack-Retry-Num" = Option<String>, Header, description = "Slack's retry count (a retry of a seen event is a duplicate)."),
    ),
    request_body(
        description = "An Events API payload (JSON) or an interactive/command payload (form-encoded), exactly as Slack signed it.",
        content(
            (serde_json::Value = "application/json"),
            (String = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Acknowledged: the challenge, a queued turn, a refused one (its thread is told why), a duplicate or an ignored event.", body = SlackAnswer),
        (status = 400, description = "`invalid_slack_payload`: signed, but not a payload this webhook reads.", body = SlackAnswer),
        (status = 401, description = "The signature or timestamp is missing, stale or wrong.", body = SlackAnswer),
        (status = 503, description = "`slack_not_configured` (no SLACK_SIGNING_SECRET) or `database_unavailable` (Slack retries).", body = SlackAnswer),
    ),
    security(("slack_signature" = [])),
)]
async fn webhook(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let response = handle(&state, &peer, &headers, &body).await;
    let (status, seconds) = (response.status(), started.elapsed().as_secs_f64());
    centaur_telemetry::record(move || {
        metrics::histogram!("centaur_slack_webhook_seconds", "status" => status.as_str().to_owned())
            .record(seconds);
    });
    response
}

async fn handle(state: &AppState, peer: &Peer, headers: &HeaderMap, body: &[u8]) -> Response {
    let config = &state.config;
    let Some(secret) = config.slack_signing_secret.as_deref() else {
        return slack_error(StatusCode::SERVICE_UNAVAILABLE, "slack_not_configured");
    };
    if let Err(err) = signature::verify(
        secret,
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::warn!(error = err.code(), "refused a Slack request");
        return slack_error(StatusCode::UNAUTHORIZED, err.code());
    }
    let identity = Identity {
        bot_user_id: config.slack_bot_user_id.as_deref(),
        allowed_bots: &config.slack_access.allowed_bots,
    };
    let request = match event::parse(header(headers, "content-type"), body, identity) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(error = %err, "unparseable Slack payload");
            return slack_error(StatusCode::BAD_REQUEST, "invalid_slack_payload");
        }
    };
    match request {
        SlackRequest::UrlVerification { challenge } => Json(SlackAnswer {
            challenge: Some(challenge),
            ..SlackAnswer::default()
        })
        .into_response(),
        SlackRequest::Ignored { reason } => {
            tracing::debug!(reason, "Slack event acknowledged without a turn");
            Json(SlackAnswer {
                ignored: Some(reason.to_string()),
                ..SlackAnswer::ok()
            })
            .into_response()
        }
        SlackRequest::Message(message) => {
            let retry = header(headers, "x-slack-retry-num")
                .unwrap_or("0")
                .to_owned();
            let span = tracing::info_span!("slack_event",
                event_id = message.event_id.as_deref().unwrap_or(""),
                thread_key = %message.thread_key, retry = %retry);
            async {
                if let Err(reason) = team_allowed(&config.slack_access, &message) {
                    tracing::warn!(
                        reason,
                        team_id = %message.team_id,
                        author_team = %message.author_team,
                        user = message.user_id.as_deref().unwrap_or(""),
                        "Slack event from outside the allowed teams ignored"
                    );
                    return Json(SlackAnswer {
                        ignored: Some(reason.to_string()),
                        ..SlackAnswer::ok()
                    })
                    .into_response();
                }
                accept(state, peer, &message).await
            }
            .instrument(span)
            .await
        }
    }
}

/// Whether the event's workspace and its author's workspace may start turns: listed in
/// `SLACK_ALLOWED_TEAMS` (by team or enterprise id), or — without the list — the workspace
/// the event came from. A Slack Connect guest (an author from another organisation) is
/// refused either way.
pub fn team_allowed(
    access: &SlackAccessConfig,
    message: &IncomingMessage,
) -> Result<(), &'static str> {
    let listed = |id: &str| access.allowed_teams.iter().any(|allowed| allowed == id);
    let enterprise_listed = message.enterprise_id.as_deref().is_some_and(listed);
    if access.allowed_teams.is_empty() {
        let same_org = message.author_team == message.team_id
            || (message.enterprise_id.is_some() && !message.external_channel);
        return if same_org {
            Ok(())
        } else {
            Err("external_user")
        };
    }
    if !listed(&message.team_id) && !enterprise_listed {
        return Err("team_not_allowed");
    }
    if listed(&message.author_team) || (enterprise_listed && !message.external_channel) {
        Ok(())
    } else {
        Err("external_user")
    }
}

/// The Web API client for thread context: one per token and URL for the process (and its
/// connection pool), built at first use.
fn context_client(access: &SlackAccessConfig) -> Option<SlackClient> {
    static CLIENTS: OnceLock<Mutex<HashMap<(String, String), SlackClient>>> = OnceLock::new();
    let (token, url) = access.web_api.as_ref()?;
    let mut clients = CLIENTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(
        clients
            .entry((token.clone(), url.clone()))
            .or_insert_with(|| SlackClient::with_timeout(url, token, Duration::from_millis(1000)))
            .clone(),
    )
}

/// The thread's earlier messages, when the bot is first mentioned inside an existing
/// thread; `None` otherwise, or when Slack cannot be read within [`CONTEXT_BUDGET`].
async fn thread_context(
    state: &AppState,
    message: &IncomingMessage,
) -> Result<Option<String>, centaur_store::StoreError> {
    if !message.in_existing_thread()
        || messages::thread_has_messages(&state.pool, &message.thread_key).await?
    {
        return Ok(None);
    }
    let Some(client) = context_client(&state.config.slack_access) else {
        tracing::warn!(
            "SLACK_BOT_TOKEN unset: the turn starts without the thread's earlier messages"
        );
        return Ok(None);
    };
    let read = client.thread(&message.channel, &message.thread_ts, CONTEXT_PAGES);
    match tokio::time::timeout(CONTEXT_BUDGET, read).await {
        Ok(Ok(thread)) => Ok(context::thread_context(
            &thread,
            &message.ts,
            message.bot_user_id.as_deref(),
        )),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "could not read the thread's earlier messages");
            Ok(None)
        }
        Err(_) => {
            tracing::warn!("reading the thread's earlier messages took too long");
            Ok(None)
        }
    }
}

/// The reply a refused turn gets.
fn refusal_text(reason: &str, code: &str) -> String {
    format!("I didn't start this run: {reason}. ({code})")
}

/// Dedupes and starts the turn. The dedupe keys are recorded first and completed once the
/// turn is stored (or refused for good, its reply recorded), beside the answer to Slack; if
/// the database cannot be reached they are released and Slack is told to retry (503). A retry arriving while the
/// first delivery is in flight is a duplicate. The turn itself is idempotent per Slack
/// message as well (message id = execute id), so even a lost dedupe row cannot make two.
async fn accept(state: &AppState, peer: &Peer, message: &IncomingMessage) -> Response {
    let unavailable = |err: &dyn std::fmt::Display| {
        tracing::error!(error = %err, "Slack event not accepted; Slack will retry");
        slack_error(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
    };
    let keys = &message.dedupe_keys;
    let mut step = Step::start();
    let recorded = slack_events::record_new(&state.pool, keys).await;
    step.done("dedupe");
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!("duplicate Slack event");
            return Json(SlackAnswer {
                duplicate: Some(true),
                ..SlackAnswer::ok()
            })
            .into_response();
        }
        Err(err) => return unavailable(&err),
    }
    let release = || async {
        if let Err(err) = slack_events::release(&state.pool, keys).await {
            tracing::warn!(error = %err, "could not release dedupe keys; a retry may wait for the takeover window");
        }
    };
    let context = thread_context(state, message).await;
    step.done("context");
    let outcome = match context {
        Ok(context) => handoff::run_turn(state, peer, message, context).await,
        Err(err) => Outcome::Unavailable(err.to_string()),
    };
    step.done("turn");
    let answer = match outcome {
        Outcome::Unavailable(detail) => {
            release().await;
            return unavailable(&detail);
        }
        Outcome::Queued { execution_id } => {
            tracing::info!(execution_id, "Slack message queued as a turn");
            SlackAnswer {
                execution_id: Some(execution_id),
                ..SlackAnswer::ok()
            }
        }
        Outcome::Refused { code, reason } => {
            tracing::warn!(code, reason, "Slack turn refused; the thread is told why");
            let notice = NewNotice {
                notice_id: message.message_id.clone(),
                thread_key: message.thread_key.clone(),
                delivery: handoff::delivery(message),
                text: refusal_text(&reason, code),
            };
            if let Err(err) = notices::create(&state.pool, &notice).await {
                release().await;
                return unavailable(&err);
            }
            SlackAnswer {
                accepted: Some(false),
                error: Some(code.to_string()),
                message: Some(reason),
                ..SlackAnswer::ok()
            }
        }
    };
    // The turn (or its refusal) is durable: Slack gets its answer now and the keys are
    // completed beside it. Should that never happen (the process dies first), a retry after
    // the takeover window replays the same stored turn: idempotent per Slack message.
    let pool = state.pool.clone();
    let keys = keys.clone();
    tokio::spawn(async move {
        if let Err(err) = slack_events::complete(&pool, &keys).await {
            tracing::warn!(error = %err, "could not complete dedupe keys");
        }
    });
    Json(answer).into_response()
}

/// The documented handler.
#[derive(utoipa::OpenApi)]
#[openapi(paths(webhook))]
struct ApiDoc;

/// This function's part of the OpenAPI document: the webhook, and the same operation on
/// each of Slack's compatibility paths.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = <ApiDoc as utoipa::OpenApi>::openapi();
    for path in &PATHS[1..] {
        centaur_http::openapi::alias(&mut document, PATHS[0], path);
    }
    document
}

/// Times the webhook's steps (`centaur_slack_webhook_step_seconds{step}`), so its own time
/// can be told apart: dedupe, thread context, the turn.
struct Step(Instant);

impl Step {
    fn start() -> Self {
        Self(Instant::now())
    }

    fn done(&mut self, step: &'static str) {
        let seconds = self.0.elapsed().as_secs_f64();
        centaur_telemetry::record(move || {
            metrics::histogram!("centaur_slack_webhook_step_seconds", "step" => step)
                .record(seconds);
        });
        self.0 = Instant::now();
    }
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    PATHS
        .iter()
        .fold(router, |router, path| router.route(path, post(webhook)))
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    routes(Router::new()).with_state(state)
}

#[cfg(test)]
mod tests;
