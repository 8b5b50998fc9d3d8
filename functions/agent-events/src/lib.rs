//! `agent-events`: `GET /agent/threads/{thread_key}/events` streams a thread's events as
//! Server-Sent Events, resumable with `after_event_id` or `Last-Event-ID` (both a
//! `thread_seq`: the SSE `id` of the last event seen). With `execution_id` the stream ends
//! after that execution's terminal state. Streams are pushed: a stream re-reads the table
//! when the process's LISTEN connection says its thread has news.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use centaur_auth::Scope;
use centaur_core::api::{EventView, Route};
use centaur_core::ExecutionStatus;
use centaur_http::{validate, ApiError, ApiPath, ApiQuery, AppState, Principal};
use centaur_store::wakeups::{wait_for_thread, Wakeup};
use futures::stream::{self, Stream};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// The routes this function serves.
pub const ROUTES: &[Route] = &[Route {
    method: "GET",
    path: "/agent/threads/{thread_key}/events",
}];

/// The longest a quiet stream waits before re-reading anyway (a missed notification
/// costs at most this much delay).
pub const REREAD_AT_LEAST_EVERY: Duration = Duration::from_secs(5);
/// Keep-alive comment interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
const PAGE: i64 = 500;

/// The query of `GET /agent/threads/{thread_key}/events`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Resume after this `thread_seq` (the SSE `id` of the last event seen); wins over
    /// `Last-Event-ID`.
    after_event_id: Option<i64>,
    /// Follow one execution: only its events, and the stream ends after its terminal state.
    #[param(value_type = Option<centaur_core::ExecutionId>)]
    execution_id: Option<String>,
}

/// True for a terminal `execution_state` event (the query is already filtered to the
/// execution being followed).
fn is_terminal_state(event: &EventView) -> bool {
    event.event_kind == "execution_state"
        && event.event_json["status"]
            .as_str()
            .and_then(|status| status.parse::<ExecutionStatus>().ok())
            .is_some_and(ExecutionStatus::is_terminal)
}

struct Cursor {
    state: AppState,
    wakeups: tokio::sync::broadcast::Receiver<Wakeup>,
    thread_key: String,
    execution_id: Option<String>,
    after: i64,
    buffered: std::collections::VecDeque<EventView>,
    done: bool,
}

fn sse_event(event: &EventView) -> Event {
    Event::default()
        .id(event.thread_seq.to_string())
        .event(event.event_kind.clone())
        .data(event.event_json.to_string())
}

/// The next event of the stream, waiting for one; `None` once a followed execution ended.
async fn next_event(cursor: &mut Cursor) -> Option<Event> {
    loop {
        if let Some(event) = cursor.buffered.pop_front() {
            if cursor.execution_id.is_some() && is_terminal_state(&event) {
                cursor.done = true;
            }
            return Some(sse_event(&event));
        }
        if cursor.done {
            return None;
        }
        let page = centaur_store::events::for_thread_after(
            &cursor.state.pool,
            &cursor.thread_key,
            cursor.after,
            cursor.execution_id.as_deref(),
            PAGE,
        )
        .await;
        match page {
            Ok(page) if !page.is_empty() => {
                cursor.after = page.last().map_or(cursor.after, |e| e.thread_seq);
                cursor.buffered.extend(page);
            }
            Ok(_) => {
                wait_for_thread(
                    &mut cursor.wakeups,
                    &cursor.thread_key,
                    REREAD_AT_LEAST_EVERY,
                )
                .await
            }
            Err(err) => {
                tracing::warn!(%err, "event stream query failed; retrying");
                wait_for_thread(
                    &mut cursor.wakeups,
                    &cursor.thread_key,
                    REREAD_AT_LEAST_EVERY,
                )
                .await
            }
        }
    }
}

fn event_stream(cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(cursor, |mut cursor| async move {
        next_event(&mut cursor)
            .await
            .map(|event| (Ok(event), cursor))
    })
}

/// `GET /agent/threads/{thread_key}/events`: the thread's events as Server-Sent Events
/// (`id: <thread_seq>`, `event: <event_kind>`, `data: <event_json>`), keep-alive comments
/// every 15 s.
#[utoipa::path(
    get,
    path = "/agent/threads/{thread_key}/events",
    tag = "agent",
    params(
        ("thread_key" = centaur_core::ThreadKey, Path, description = "The thread."),
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this `thread_seq` (what an EventSource sends on reconnect)."),
    ),
    responses((
        status = 200,
        description = "A stream of Server-Sent Events: `id` is the event's `thread_seq`, `event` its `event_kind` (`execution_state`, `execution_started`, `harness_event`, `execution_summary`, `final_delivery_ready`, `final_delivery_delivered`), `data` its JSON. Open until the client leaves, or, with `execution_id`, until that execution's terminal `execution_state`.",
        content_type = "text/event-stream",
        body = String,
    )),
    security(("api_key" = []), ("bearer" = []), ("sandbox_token" = [])),
)]
async fn events(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(thread_key): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    principal.require(Scope::AgentStatus)?;
    let thread_key = validate::thread_key(&thread_key)?;
    principal.require_thread(thread_key.as_str())?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok());
    let execution_id = match query.execution_id.as_deref() {
        None => None,
        Some(raw) => Some(
            centaur_core::ExecutionId::parse(raw)
                .ok_or_else(|| {
                    ApiError::validation(format!("execution_id '{raw}' is not an execution id"))
                })?
                .to_string(),
        ),
    };
    let wakeups = state.event_wakeups.subscribe(&state.pool).await;
    let cursor = Cursor {
        state,
        wakeups,
        thread_key: thread_key.to_string(),
        execution_id,
        after: query.after_event_id.or(last_event_id).unwrap_or(0),
        buffered: Default::default(),
        done: false,
    };
    Ok(Sse::new(event_stream(cursor)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The documented handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(events))]
struct ApiDoc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The function's routes, added to `router` (`api` adds every function's routes to one
/// router).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/agent/threads/{thread_key}/events", get(events))
}

/// The function's router.
pub fn router(state: AppState) -> Router {
    routes(Router::new()).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use centaur_http::testing::{apigw_v2_event, test_state, Caller, TestClient};
    use serde_json::json;
    use sqlx::PgPool;

    async fn seed(pool: &PgPool) {
        sqlx::query(
            "INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id, request_hash, status, delivery, completed_at, terminal_reason)
             VALUES ('exe_00000000000000aa', 't1', 1, 'echo', 'x', 'h', 'completed', '{}', now(), 'completed')",
        )
        .execute(pool)
        .await
        .unwrap();
        for (kind, body) in [
            ("execution_state", json!({"status": "queued"})),
            ("harness_event", json!({"type": "turn.started"})),
            (
                "execution_state",
                json!({"status": "completed", "terminal_reason": "completed"}),
            ),
        ] {
            centaur_store::events::append(pool, "t1", Some("exe_00000000000000aa"), kind, &body)
                .await
                .unwrap();
        }
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn an_execution_stream_replays_its_events_and_ends_at_the_terminal_state(pool: PgPool) {
        seed(&pool).await;
        let client = TestClient::new(router(test_state(pool)));
        let (status, body) = client
            .get(
                "/agent/threads/t1/events?execution_id=exe_00000000000000aa",
                &Caller::LocalOperator,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let text = body.as_str().unwrap();
        assert_eq!(text.matches("event: execution_state").count(), 2, "{text}");
        assert!(text.contains("event: harness_event"), "{text}");
        assert!(text.contains("id: "), "{text}");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_stream_resumes_after_the_given_event_id(pool: PgPool) {
        seed(&pool).await;
        let first: i64 = sqlx::query_scalar("SELECT min(thread_seq) FROM execution_events")
            .fetch_one(&pool)
            .await
            .unwrap();
        let client = TestClient::new(router(test_state(pool)));
        let path = format!(
            "/agent/threads/t1/events?execution_id=exe_00000000000000aa&after_event_id={first}"
        );
        let (_, body) = client.get(&path, &Caller::LocalOperator).await;
        let text = body.as_str().unwrap();
        assert!(!text.contains(&format!("id: {first}\n")), "{text}");
        assert_eq!(text.matches("event: execution_state").count(), 1, "{text}");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn invalid_stream_parameters_are_refused_at_once(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        for (path, field) in [
            ("/agent/threads/t1/events?execution_id=%00", "execution_id"),
            ("/agent/threads/t1/events?execution_id=nope", "execution_id"),
            (
                "/agent/threads/t1/events?after_event_id=x",
                "after_event_id",
            ),
            ("/agent/threads/t%00/events", "thread_key"),
        ] {
            let (status, body) = client.get(path, &Caller::LocalOperator).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
            assert!(body["message"].as_str().unwrap().contains(field), "{body}");
        }
        let (status, body) = client
            .get("/agent/threads/%FF%FE/events", &Caller::LocalOperator)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "INVALID_PATH");
    }

    #[sqlx::test(migrator = "centaur_store::MIGRATOR")]
    async fn a_lambda_event_without_a_key_is_refused(pool: PgPool) {
        let client = TestClient::new(router(test_state(pool)));
        let event = apigw_v2_event("GET", "/agent/threads/t1/events", "", &[], None);
        let (status, _) = client.lambda(&event).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
