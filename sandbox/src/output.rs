//! The numbered event log and the current output sink, behind one lock so that replaying
//! missed events and attaching a new sink happen atomically with respect to new events.

use centaur_harness::{HarnessEvent, SandboxOutput};
use std::collections::VecDeque;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

/// How many executions' events are kept for replay.
pub const KEPT_EXECUTIONS: usize = 16;

/// Where output lines go: stdout, or the current socket connection.
pub type Sink = Box<dyn AsyncWrite + Send + Unpin>;

struct ExecutionLog {
    execution_id: String,
    events: Vec<SandboxOutput>,
}

#[derive(Default)]
struct State {
    executions: VecDeque<ExecutionLog>,
    sink: Option<Sink>,
}

/// The event log plus the attached sink.
#[derive(Default)]
pub struct Output {
    state: Mutex<State>,
}

async fn write_line(sink: &mut Option<Sink>, line: &str) {
    if let Some(writer) = sink.as_mut() {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let written = async {
            writer.write_all(&bytes).await?;
            writer.flush().await
        }
        .await;
        if written.is_err() {
            // The reader went away: keep logging, and wait for a re-attach.
            *sink = None;
        }
    }
}

async fn replay_locked(state: &mut State, execution_id: &str, after_seq: u64) {
    let missed: Vec<String> = match state
        .executions
        .iter()
        .find(|log| log.execution_id == execution_id)
    {
        Some(log) => log
            .events
            .iter()
            .filter(|event| event.seq > after_seq)
            .map(SandboxOutput::to_line)
            .collect(),
        None => vec![SandboxOutput {
            execution_id: execution_id.to_owned(),
            seq: 0,
            event: HarnessEvent::TurnUnknown,
        }
        .to_line()],
    };
    for line in missed {
        write_line(&mut state.sink, &line).await;
    }
}

impl Output {
    /// An output with `sink` attached from the start (stdio mode).
    pub fn with_sink(sink: Sink) -> Self {
        Self {
            state: Mutex::new(State {
                executions: VecDeque::new(),
                sink: Some(sink),
            }),
        }
    }

    /// Numbers `event` for `execution_id`, logs it and writes it to the sink if attached.
    pub async fn emit(&self, execution_id: &str, event: HarnessEvent) {
        let mut state = self.state.lock().await;
        let position = state
            .executions
            .iter()
            .position(|log| log.execution_id == execution_id);
        let index = match position {
            Some(index) => index,
            None => {
                if state.executions.len() == KEPT_EXECUTIONS {
                    state.executions.pop_front();
                }
                state.executions.push_back(ExecutionLog {
                    execution_id: execution_id.to_owned(),
                    events: Vec::new(),
                });
                state.executions.len() - 1
            }
        };
        let log = &mut state.executions[index];
        let output = SandboxOutput {
            execution_id: execution_id.to_owned(),
            seq: log.events.len() as u64 + 1,
            event,
        };
        let line = output.to_line();
        log.events.push(output);
        write_line(&mut state.sink, &line).await;
    }

    /// True if a turn for `execution_id` was ever received (and is still in the log).
    pub async fn knows(&self, execution_id: &str) -> bool {
        let state = self.state.lock().await;
        state
            .executions
            .iter()
            .any(|log| log.execution_id == execution_id)
    }

    /// Attaches `sink` (replacing any other), first replaying `execution_id`'s events with
    /// `seq > after_seq`, or a `turn.unknown` line if that execution never arrived here.
    pub async fn attach_and_replay(&self, sink: Sink, execution_id: &str, after_seq: u64) {
        let mut state = self.state.lock().await;
        state.sink = Some(sink);
        replay_locked(&mut state, execution_id, after_seq).await;
    }

    /// Replays to the current sink (stdio mode, where the sink never changes).
    pub async fn replay(&self, execution_id: &str, after_seq: u64) {
        let mut state = self.state.lock().await;
        replay_locked(&mut state, execution_id, after_seq).await;
    }

    /// Attaches `sink` without replay (a connection that starts with a new turn).
    pub async fn attach(&self, sink: Sink) {
        self.state.lock().await.sink = Some(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn collect(mut reader: tokio::io::DuplexStream) -> Vec<SandboxOutput> {
        let mut text = String::new();
        reader.read_to_string(&mut text).await.expect("read");
        text.lines()
            .map(|l| SandboxOutput::parse(l).expect("line"))
            .collect()
    }

    #[tokio::test]
    async fn events_are_numbered_per_execution_and_replayed_after_a_given_seq() {
        let output = Output::default();
        output.emit("exe_a", HarnessEvent::Heartbeat).await;
        output.emit("exe_a", HarnessEvent::Heartbeat).await;
        output.emit("exe_b", HarnessEvent::Heartbeat).await;
        output
            .emit("exe_a", HarnessEvent::AssistantMessage { text: "x".into() })
            .await;

        let (writer, reader) = tokio::io::duplex(4096);
        output.attach_and_replay(Box::new(writer), "exe_a", 1).await;
        drop(output);
        let replayed = collect(reader).await;
        let seqs: Vec<u64> = replayed.iter().map(|o| o.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        assert!(replayed.iter().all(|o| o.execution_id == "exe_a"));
    }

    #[tokio::test]
    async fn resuming_an_unknown_execution_answers_turn_unknown() {
        let output = Output::default();
        let (writer, reader) = tokio::io::duplex(4096);
        output
            .attach_and_replay(Box::new(writer), "exe_never", 0)
            .await;
        drop(output);
        let replayed = collect(reader).await;
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].event, HarnessEvent::TurnUnknown);
        assert_eq!(replayed[0].seq, 0);
    }

    #[tokio::test]
    async fn only_the_most_recent_executions_are_kept() {
        let output = Output::default();
        for index in 0..=KEPT_EXECUTIONS {
            output
                .emit(&format!("exe_{index}"), HarnessEvent::Heartbeat)
                .await;
        }
        assert!(!output.knows("exe_0").await);
        assert!(output.knows(&format!("exe_{KEPT_EXECUTIONS}")).await);
    }
}
