//! How long each step of the dispatcher's work takes, for operators (`/metrics`) and the
//! drain benchmark: `centaur_dispatcher_step_seconds{step}`, where `step` is a turn's
//! effect ([`centaur_core::turn::Effect::name`]), `stream` (waiting on the sandbox's
//! lines), `claim` (with the batch it joined) or `receive` (a queue receive).

use std::time::Instant;

/// The metric's name.
pub const STEP_SECONDS: &str = "centaur_dispatcher_step_seconds";

/// Records that `step`, started at `started`, has just ended.
pub fn record(step: &'static str, started: Instant) {
    metrics::histogram!(STEP_SECONDS, "step" => step).record(started.elapsed().as_secs_f64());
}
