//! Following one execution on `GET /agent/threads/{thread_key}/events?execution_id=…`
//! until its terminal state, resuming after the last event seen when the connection drops.

use crate::client::Api;
use crate::error::CliError;
use crate::exit::Exit;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// The longest silence accepted on the stream (the API sends a keep-alive every 15 s).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Reconnections in a row, without an event in between, before giving up.
pub const MAX_RECONNECTS: u32 = 5;

/// One event of the stream: the API's stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedEvent {
    /// The SSE `id`: the event's place in its thread (`thread_seq`), the stream's resume
    /// cursor (`after_event_id`).
    pub thread_seq: Option<i64>,
    /// The SSE `event` (`execution_state`, `harness_event`, …).
    pub event_kind: String,
    /// The SSE `data`, parsed.
    pub event_json: Value,
}

impl StreamedEvent {
    /// An event from its SSE fields; `data` must be JSON.
    pub fn from_sse(id: &str, event: &str, data: &str) -> Result<Self, String> {
        let event_json = serde_json::from_str(data)
            .map_err(|err| format!("event data is not JSON ({err}): {data}"))?;
        Ok(Self {
            thread_seq: id.trim().parse().ok(),
            event_kind: if event.is_empty() {
                "message".to_owned()
            } else {
                event.to_owned()
            },
            event_json,
        })
    }

    /// An event as stored in an execution's trail (`GET /agent/executions/{id}`).
    pub fn from_stored(value: &Value) -> Self {
        Self {
            thread_seq: value["thread_seq"].as_i64(),
            event_kind: value["event_kind"].as_str().unwrap_or("unknown").to_owned(),
            event_json: value["event_json"].clone(),
        }
    }

    /// The terminal status this event announces, if it is the execution's end.
    pub fn terminal_status(&self) -> Option<&str> {
        if self.event_kind != "execution_state" {
            return None;
        }
        let status = self.event_json["status"].as_str()?;
        Exit::for_status(status).map(|_| status)
    }

    /// The `--json` line of the event.
    pub fn to_json(&self) -> Value {
        json!({
            "thread_seq": self.thread_seq,
            "event_kind": self.event_kind,
            "event_json": self.event_json,
        })
    }
}

/// How long to wait before reconnection `attempt` (1-based): 250 ms doubling, at most 4 s.
pub fn backoff(attempt: u32) -> Duration {
    let millis = 250u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(10));
    Duration::from_millis(millis.min(4000))
}

/// Streams `execution_id`'s events to `on_event` until its terminal state and returns
/// that terminal event. A dropped connection is resumed after the last event seen; a
/// refusal (4xx) ends at once.
pub async fn follow<F>(
    api: &Api,
    thread_key: &str,
    execution_id: &str,
    mut on_event: F,
) -> Result<StreamedEvent, CliError>
where
    F: FnMut(&StreamedEvent),
{
    let mut after = 0;
    let mut failures = 0;
    loop {
        let problem = match api.open_events(thread_key, execution_id, after).await {
            Ok(response) => {
                let mut events = response.bytes_stream().eventsource();
                loop {
                    match tokio::time::timeout(READ_TIMEOUT, events.next()).await {
                        Err(_) => {
                            break CliError::BadAnswer {
                                url: api.shown_url(),
                                cause: format!("the event stream was silent for {READ_TIMEOUT:?}"),
                            }
                        }
                        Ok(None) => {
                            break CliError::BadAnswer {
                                url: api.shown_url(),
                                cause: "the event stream ended before the execution did".into(),
                            }
                        }
                        Ok(Some(Err(err))) => {
                            break CliError::Unreachable {
                                url: api.shown_url(),
                                cause: format!("the event stream broke: {err}"),
                            }
                        }
                        Ok(Some(Ok(sse))) => {
                            let event = StreamedEvent::from_sse(&sse.id, &sse.event, &sse.data)
                                .map_err(|cause| CliError::BadAnswer {
                                    url: api.shown_url(),
                                    cause,
                                })?;
                            if let Some(id) = event.thread_seq {
                                after = after.max(id);
                            }
                            failures = 0;
                            on_event(&event);
                            if event.terminal_status().is_some() {
                                return Ok(event);
                            }
                        }
                    }
                }
            }
            Err(CliError::Api(failure)) if failure.status < 500 => {
                return Err(CliError::Api(failure))
            }
            Err(err) => err,
        };
        failures += 1;
        if failures > MAX_RECONNECTS {
            return Err(problem);
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_fields_become_an_event() {
        let event = StreamedEvent::from_sse(
            "42",
            "execution_state",
            r#"{"status":"completed","terminal_reason":"completed"}"#,
        )
        .unwrap();
        assert_eq!(event.thread_seq, Some(42));
        assert_eq!(event.terminal_status(), Some("completed"));
        assert_eq!(
            event.to_json(),
            json!({"thread_seq": 42, "event_kind": "execution_state",
                   "event_json": {"status": "completed", "terminal_reason": "completed"}})
        );
        assert!(StreamedEvent::from_sse("1", "harness_event", "not json").is_err());
        assert_eq!(
            StreamedEvent::from_sse("", "", "{}").unwrap().event_kind,
            "message"
        );
    }

    #[test]
    fn only_a_terminal_execution_state_ends_the_stream() {
        let event = |kind: &str, status: &str| StreamedEvent {
            thread_seq: Some(1),
            event_kind: kind.into(),
            event_json: json!({"status": status}),
        };
        assert_eq!(event("execution_state", "running").terminal_status(), None);
        assert_eq!(
            event("execution_state", "failed_permanent").terminal_status(),
            Some("failed_permanent")
        );
        assert_eq!(
            event("execution_state", "cancelled").terminal_status(),
            Some("cancelled")
        );
        assert_eq!(
            event("execution_summary", "completed").terminal_status(),
            None
        );
    }

    #[test]
    fn stored_events_read_like_streamed_ones() {
        let stored = json!({"thread_seq": 3, "event_kind": "harness_event",
                            "event_json": {"type": "heartbeat"}, "created_at": "2025-01-01T00:00:00Z"});
        let event = StreamedEvent::from_stored(&stored);
        assert_eq!(event.thread_seq, Some(3));
        assert_eq!(event.event_kind, "harness_event");
    }

    /// Serves one canned SSE body per connection (then closes it) and reports each
    /// request line.
    async fn sse_server(
        bodies: Vec<&'static str>,
    ) -> (String, tokio::sync::mpsc::Receiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (seen, requests) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            for body in bodies {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let read = socket.read(&mut buffer).await.unwrap();
                    if read == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..read]);
                }
                let text = String::from_utf8_lossy(&request);
                let _ = seen
                    .send(text.lines().next().unwrap_or_default().to_owned())
                    .await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                socket.write_all(head.as_bytes()).await.unwrap();
                socket.write_all(body.as_bytes()).await.unwrap();
                let _ = socket.shutdown().await;
            }
        });
        (url, requests)
    }

    #[tokio::test]
    async fn a_dropped_stream_resumes_after_the_last_event_seen() {
        let (url, mut requests) = sse_server(vec![
            ": keep-alive\n\nid: 7\nevent: execution_state\ndata: {\"status\":\"running\"}\n\n",
            "id: 8\nevent: harness_event\ndata: {\"type\":\"assistant.delta\",\"text\":\"hi\"}\n\n\
             id: 9\nevent: execution_state\ndata: {\"status\":\"completed\"}\n\n",
        ])
        .await;
        let api = Api::new(reqwest::Url::parse(&url).unwrap(), None).unwrap();
        let mut kinds = Vec::new();
        let terminal = follow(&api, "a b", "exe_0123456789abcdef", |event| {
            kinds.push((event.thread_seq, event.event_kind.clone()));
        })
        .await
        .unwrap();
        assert_eq!(terminal.terminal_status(), Some("completed"));
        assert_eq!(
            kinds,
            [
                (Some(7), "execution_state".to_owned()),
                (Some(8), "harness_event".to_owned()),
                (Some(9), "execution_state".to_owned()),
            ]
        );
        let first = requests.recv().await.unwrap();
        let second = requests.recv().await.unwrap();
        assert!(
            first.starts_with("GET /agent/threads/a%20b/events?execution_id=exe_0123456789abcdef&after_event_id=0 "),
            "{first}"
        );
        assert!(second.contains("&after_event_id=7 "), "{second}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(backoff(u32::MAX), Duration::from_millis(4000));
    }
}
