//! Tracing and metrics set-up shared by every binary.
//!
//! Logs go to stderr: compact text by default, JSON lines with `LOG_FORMAT=json`; the
//! filter comes from `RUST_LOG` (default `info`). Metrics use the `metrics` facade with a
//! Prometheus recorder installed once per process; label values must stay bounded
//! (harness, status, route template — never an execution or sandbox id).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber for `service`. Safe to call more than once.
pub fn init_tracing(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let installed = if json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .compact()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init()
    };
    if installed.is_ok() {
        tracing::info!(service, "starting");
    }
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// How long a function waits after its first answer before the start-up work it put off
/// (building the metrics recorder, the schema check): long enough for that answer's bytes
/// to leave and reach a client on the same two cores, short enough to be done long before
/// a scrape or a second request needs it (a request that needs the database does the
/// schema check itself).
pub const AFTER_FIRST_ANSWER: Duration = Duration::from_millis(10);

/// Recordings waiting for the recorder: `Some` once its builder is on its way, which then
/// runs them all (one builder per process, however many requests come before it is done).
type Pending = Option<Vec<Box<dyn FnOnce() + Send>>>;
static PENDING: Mutex<Pending> = Mutex::new(None);

/// Runs `record` (which records metrics through the `metrics` macros) against the
/// Prometheus recorder: at once when it is installed, otherwise once one thread has built
/// and installed it. Building it calibrates `quanta`'s clock, a busy loop of a few
/// milliseconds that would otherwise be the larger part of a function's cold start: a
/// function builds it only once it has answered its first request, and nothing recorded
/// meanwhile is lost to the no-op recorder. Inside a Tokio runtime that thread starts
/// [`AFTER_FIRST_ANSWER`] later, so that the answer being recorded goes out first rather
/// than share the CPU with the busy loop.
pub fn record(record: impl FnOnce() + Send + 'static) {
    if METRICS.get().is_some() {
        record();
        return;
    }
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    // Installed meanwhile: its builder has run (or is running) what was queued before.
    if METRICS.get().is_some() {
        drop(pending);
        record();
        return;
    }
    if let Some(queued) = pending.as_mut() {
        queued.push(Box::new(record));
        return;
    }
    *pending = Some(vec![Box::new(record)]);
    drop(pending);
    let build_then_record = || {
        metrics();
        let queued = PENDING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for record in queued.into_iter().flatten() {
            record();
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(async move {
            tokio::time::sleep(AFTER_FIRST_ANSWER).await;
            std::thread::spawn(build_then_record);
        })),
        Err(_) => drop(std::thread::spawn(build_then_record)),
    }
}

/// The process's Prometheus recorder, installed on first use. If another recorder was
/// already installed (tests), a detached one still renders what this handle records.
pub fn metrics() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders until `needle` appears (a recording thread may still be running).
    fn rendered_eventually(needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = metrics().render();
            if text.contains(needle) || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_metric_recorded_before_the_recorder_is_built_is_kept() {
        record(|| {
            metrics::counter!("centaur_test_early_total").increment(1);
        });

        let text = rendered_eventually("centaur_test_early_total 1");
        assert!(text.contains("centaur_test_early_total 1"), "{text}");
    }

    #[test]
    fn every_recording_made_while_the_recorder_is_built_is_kept() {
        for _ in 0..50 {
            record(|| {
                metrics::counter!("centaur_test_burst_total").increment(1);
            });
        }

        let text = rendered_eventually("centaur_test_burst_total 50");
        assert!(text.contains("centaur_test_burst_total 50"), "{text}");
    }

    #[test]
    fn recorded_counters_appear_in_the_prometheus_text() {
        let handle = metrics();
        metrics::counter!("centaur_test_events_total", "kind" => "unit").increment(2);
        let text = handle.render();
        assert!(
            text.contains("centaur_test_events_total{kind=\"unit\"} 2"),
            "{text}"
        );
    }
}
