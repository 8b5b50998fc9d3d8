//! Group commit: calls that arrive while others are being written are written together,
//! by one statement or transaction. Postgres's cost of a write is mostly per statement
//! (plan start-up, commit, round trips), not per row, so a busy process pays it once per
//! batch instead of once per call. A call that finds the writer idle is written at once,
//! alone: nobody waits for a batch to fill.
//!
//! One collector task per [`GroupCommit`] hands out batches: at most
//! [`Limits::in_flight`] at a time, each with up to [`Limits::max_batch`] calls of distinct
//! keys. Calls of one key are written in the order they arrived: one whose key has a call
//! in flight waits for that batch to finish.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

/// A call written in batches: calls with the same key never share a batch and are written
/// one batch after another, in arrival order.
pub trait Keyed: Send + 'static {
    /// The key (a thread, an execution) whose calls keep their order.
    fn key(&self) -> &str;
}

/// How batches are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Batches being written at once (each holds a pooled connection).
    pub in_flight: usize,
    /// Calls in one batch at most.
    pub max_batch: usize,
    /// The batch's span name.
    pub name: &'static str,
}

/// Writes a batch and returns one answer per call, in the calls' order.
pub type WriteBatch<In, Out> =
    Arc<dyn Fn(Vec<In>) -> Pin<Box<dyn Future<Output = Vec<Out>> + Send>> + Send + Sync>;

/// A process's group-commit writer; cheap to clone (clones share one collector).
pub struct GroupCommit<In, Out> {
    limits: Limits,
    write: WriteBatch<In, Out>,
    collector: Arc<OnceLock<mpsc::UnboundedSender<Call<In, Out>>>>,
}

impl<In, Out> Clone for GroupCommit<In, Out> {
    fn clone(&self) -> Self {
        Self {
            limits: self.limits,
            write: self.write.clone(),
            collector: self.collector.clone(),
        }
    }
}

/// A call waiting to be written, and where its answer goes.
struct Call<In, Out> {
    input: In,
    reply: oneshot::Sender<Out>,
}

impl<In: Keyed, Out: Send + 'static> GroupCommit<In, Out> {
    /// A writer that writes each batch with `write`. Nothing runs until the first call.
    pub fn new(limits: Limits, write: WriteBatch<In, Out>) -> Self {
        Self {
            limits,
            write,
            collector: Arc::default(),
        }
    }

    /// Writes `input` with the batch it joins and answers once that batch is written.
    /// The first call starts the collector on the current runtime. `None` only when the
    /// runtime shuts down under the collector.
    pub async fn call(&self, input: In) -> Option<Out> {
        let collector = self.collector.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(collect(self.limits, self.write.clone(), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        if let Err(unsent) = collector.send(Call { input, reply }) {
            // The collector's runtime is gone (a test's): write it here, alone.
            return (self.write)(vec![unsent.0.input]).await.pop();
        }
        answer.await.ok()
    }
}

/// The collector: starts a batch whenever fewer than `in_flight` are being written and
/// calls wait.
async fn collect<In: Keyed, Out: Send + 'static>(
    limits: Limits,
    write: WriteBatch<In, Out>,
    mut receiver: mpsc::UnboundedReceiver<Call<In, Out>>,
) {
    let mut waiting: VecDeque<Call<In, Out>> = VecDeque::new();
    let mut busy_keys: HashSet<String> = HashSet::new();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut keys_of: HashMap<tokio::task::Id, Vec<String>> = HashMap::new();
    let mut open = true;
    loop {
        while in_flight.len() < limits.in_flight {
            let batch = take_batch(&mut waiting, &busy_keys, limits.max_batch);
            if batch.is_empty() {
                break;
            }
            let keys: Vec<String> = batch
                .iter()
                .map(|call| call.input.key().to_owned())
                .collect();
            busy_keys.extend(keys.iter().cloned());
            let span = tracing::info_span!("batch", name = limits.name, calls = batch.len());
            let task = in_flight.spawn(write_and_answer(write.clone(), batch).instrument(span));
            keys_of.insert(task.id(), keys);
        }
        if !open && waiting.is_empty() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            call = receiver.recv(), if open => match call {
                Some(call) => {
                    waiting.push_back(call);
                    while let Ok(more) = receiver.try_recv() {
                        waiting.push_back(more);
                    }
                }
                None => open = false,
            },
            Some(done) = in_flight.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(err) => err.id(),
                };
                for key in keys_of.remove(&id).unwrap_or_default() {
                    busy_keys.remove(&key);
                }
            }
        }
    }
}

/// The next batch: waiting calls, oldest first, up to `max_batch`, at most one per key
/// and none of a key being written (or with an older call still waiting), so each key's
/// calls keep their order.
fn take_batch<T: Keyed>(
    waiting: &mut VecDeque<T>,
    busy_keys: &HashSet<String>,
    max_batch: usize,
) -> Vec<T> {
    let mut batch = Vec::new();
    let mut passed_over: HashSet<String> = HashSet::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    while let Some(call) = waiting.pop_front() {
        let key = call.key().to_owned();
        let free = !busy_keys.contains(&key) && !passed_over.contains(&key);
        if free && batch.len() < max_batch {
            batch.push(call);
        } else {
            kept.push_back(call);
        }
        passed_over.insert(key);
    }
    *waiting = kept;
    batch
}

impl<In: Keyed, Out: Send + 'static> Keyed for Call<In, Out> {
    fn key(&self) -> &str {
        self.input.key()
    }
}

/// Writes one batch and answers each of its calls.
async fn write_and_answer<In, Out>(write: WriteBatch<In, Out>, batch: Vec<Call<In, Out>>) {
    let (inputs, replies): (Vec<In>, Vec<oneshot::Sender<Out>>) = batch
        .into_iter()
        .map(|call| (call.input, call.reply))
        .unzip();
    let answers = write(inputs).await;
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that went away still has its call written; nobody to answer.
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    impl Keyed for Named {
        fn key(&self) -> &str {
            self.0
        }
    }

    fn keys(calls: &[Named]) -> Vec<&str> {
        calls.iter().map(|call| call.0).collect()
    }

    fn waiting(names: &[&'static str]) -> VecDeque<Named> {
        names.iter().map(|name| Named(name)).collect()
    }

    #[test]
    fn a_batch_takes_one_call_per_key_and_keeps_the_rest_in_order() {
        let mut waiting = waiting(&["a", "b", "a", "c", "b"]);
        let batch = take_batch(&mut waiting, &HashSet::new(), 32);
        assert_eq!(keys(&batch), ["a", "b", "c"]);
        assert_eq!(keys(waiting.make_contiguous()), ["a", "b"]);
    }

    #[test]
    fn a_key_being_written_waits_for_its_batch() {
        let mut waiting = waiting(&["a", "b"]);
        let busy = HashSet::from(["a".to_owned()]);
        let batch = take_batch(&mut waiting, &busy, 32);
        assert_eq!(keys(&batch), ["b"]);
        assert_eq!(keys(waiting.make_contiguous()), ["a"]);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_calls() {
        let names: Vec<&'static str> = ["a", "b", "c", "d", "e"].to_vec();
        let mut waiting = waiting(&names);
        let batch = take_batch(&mut waiting, &HashSet::new(), 3);
        assert_eq!(keys(&batch), ["a", "b", "c"]);
        assert_eq!(keys(waiting.make_contiguous()), ["d", "e"]);
    }

    /// Polls `future` once: a call is handed to the collector on its first poll.
    fn poll_once<F: Future>(future: Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test]
    async fn calls_made_while_a_batch_is_written_are_written_together_each_key_in_order() {
        let (started, mut first_started) = mpsc::unbounded_channel::<()>();
        let (release, released) = tokio::sync::watch::channel(false);
        let batches = Arc::new(std::sync::Mutex::new(Vec::<Vec<&'static str>>::new()));
        let seen = batches.clone();
        let write: WriteBatch<Named, &'static str> = Arc::new(move |batch: Vec<Named>| {
            let (started, mut released, seen) = (started.clone(), released.clone(), seen.clone());
            Box::pin(async move {
                let names: Vec<&'static str> = batch.iter().map(|call| call.0).collect();
                seen.lock().expect("batches").push(names.clone());
                let _ = started.send(());
                let _ = released.wait_for(|go| *go).await;
                names
            })
        });
        let limits = Limits {
            in_flight: 1,
            max_batch: 32,
            name: "test",
        };
        let writer = GroupCommit::new(limits, write);
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.call(Named("a")).await }
        });
        first_started.recv().await.expect("the first batch starts");
        let mut later = ["b", "a", "b", "c"].map(|name| Box::pin(writer.call(Named(name))));
        for call in &mut later {
            assert!(poll_once(call.as_mut()).is_pending());
        }
        release.send_replace(true);
        assert_eq!(first.await.expect("first"), Some("a"));
        for (call, name) in later.into_iter().zip(["b", "a", "b", "c"]) {
            assert_eq!(call.await, Some(name));
        }
        let batches = batches.lock().expect("batches").clone();
        assert_eq!(batches, [vec!["a"], vec!["b", "a", "c"], vec!["b"]]);
    }
}
