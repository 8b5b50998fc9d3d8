//! `slack-webhook`: Slack's Events API in. Verifies the v0 signature on the raw body,
//! answers `url_verification`, normalises `app_mention` and `message` events, dedupes them
//! durably (`slack_events`), and hands each new message to the API over HTTP as the
//! Slackbot (spawn → message → execute with Slack delivery). No API key is needed here: the
//! signature is the authentication.

pub mod api_client;

use api_client::{ApiClient, HandoffError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use centaur_core::api::Route;
use centaur_http::AppState;
use centaur_slack::event::{self, SlackRequest};
use centaur_slack::{signature, IncomingMessage};
use centaur_store::slack_events;
use serde_json::json;
use std::time::Instant;

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

fn slack_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"ok": false, "error": error}))).into_response()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let response = handle(&state, &headers, &body).await;
    metrics::histogram!("centaur_slack_webhook_seconds", "status" => response.status().as_str().to_owned())
        .record(started.elapsed().as_secs_f64());
    response
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Response {
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
    let request = match event::parse(
        header(headers, "content-type"),
        body,
        config.slack_bot_user_id.as_deref(),
    ) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(error = %err, "unparseable Slack payload");
            return slack_error(StatusCode::BAD_REQUEST, "invalid_slack_payload");
        }
    };
    match request {
        SlackRequest::UrlVerification { challenge } => {
            Json(json!({"challenge": challenge})).into_response()
        }
        SlackRequest::Ignored { reason } => {
            tracing::debug!(reason, "Slack event acknowledged without a turn");
            Json(json!({"ok": true, "ignored": reason})).into_response()
        }
        SlackRequest::Message(message) => {
            let retry = header(headers, "x-slack-retry-num")
                .unwrap_or("0")
                .to_owned();
            let span = tracing::info_span!("slack_event",
                event_id = message.event_id.as_deref().unwrap_or(""),
                thread_key = %message.thread_key, retry = %retry);
            let _guard = span.enter();
            let api_url = api_url(state, headers);
            accept(state, &api_url, &message).await
        }
    }
}

/// Where turns are handed to: `CENTAUR_API_URL`; on Lambda without it, the API Gateway
/// host this request came in on; else the local API (`http://127.0.0.1:8000`).
fn api_url(state: &AppState, headers: &HeaderMap) -> String {
    let config = &state.config;
    if let Some(url) = &config.api_url {
        return url.clone();
    }
    match header(headers, "host") {
        Some(host) if config.on_lambda => format!("https://{host}"),
        _ => config.sandbox.api_url.clone(),
    }
}

/// Dedupes and hands the message to the API. The dedupe keys are recorded first and
/// completed once the API has the turn (or refused it for good); if the API cannot be
/// reached they are released and Slack is told to retry (503). A retry arriving while the
/// first delivery is in flight is a duplicate. The API calls are idempotent per Slack
/// message as well (message id = execute id), so even a lost dedupe row cannot make two
/// turns.
async fn accept(state: &AppState, api_url: &str, message: &IncomingMessage) -> Response {
    let Some(api_key) = state.config.auth.slackbot_api_key.as_deref() else {
        return slack_error(StatusCode::SERVICE_UNAVAILABLE, "slack_not_configured");
    };
    let unavailable = |err: &dyn std::fmt::Display| {
        tracing::error!(error = %err, "Slack event not accepted; Slack will retry");
        slack_error(StatusCode::SERVICE_UNAVAILABLE, "api_unavailable")
    };
    let keys = &message.dedupe_keys;
    match slack_events::record_new(&state.pool, keys).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!("duplicate Slack event");
            return Json(json!({"ok": true, "duplicate": true})).into_response();
        }
        Err(err) => return unavailable(&err),
    }
    let client = ApiClient::new(api_url, api_key);
    let outcome = client.run_turn(message).await;
    if let Err(HandoffError::Unavailable(detail)) = &outcome {
        if let Err(err) = slack_events::release(&state.pool, keys).await {
            tracing::warn!(error = %err, "could not release dedupe keys; a retry may wait for the takeover window");
        }
        return unavailable(detail);
    }
    if let Err(err) = slack_events::complete(&state.pool, keys).await {
        tracing::warn!(error = %err, "could not complete dedupe keys");
    }
    match outcome {
        Ok(execution_id) => {
            tracing::info!(execution_id, "Slack message queued as a turn");
            Json(json!({"ok": true, "execution_id": execution_id})).into_response()
        }
        Err(refused) => {
            tracing::error!(error = %refused, "Slack event refused by the API; not retried");
            Json(json!({"ok": true, "accepted": false, "error": refused.to_string()}))
                .into_response()
        }
    }
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    PATHS
        .iter()
        .fold(Router::new(), |router, path| {
            router.route(path, post(webhook))
        })
        .with_state(state)
}

#[cfg(test)]
mod tests;
