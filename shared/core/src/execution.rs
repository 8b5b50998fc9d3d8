//! The execution state machine, as pure functions over statuses.
//!
//! ```text
//! queued ─claim─► running ─turn done ok──────────► completed
//!   │               ├─ harness error ─────────────► failed_permanent (harness_error)
//!   │               ├─ stream ends, sandbox alive ► retry_wait ─reclaim─► running
//!   │               ├─ stream ends, sandbox gone ─► failed_permanent (sandbox_lost)
//!   │               ├─ silence / hard deadline ───► failed_permanent (…_deadline_exceeded)
//!   │               ├─ sandbox could not start ───► failed_permanent (sandbox_start_failed)
//!   │               └─ cancel ─► cancel_requested ─► cancelled
//!   └─ cancel / release(cancel_inflight) ─────────► cancelled
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Queued,
    Running,
    RetryWait,
    CancelRequested,
    Completed,
    FailedPermanent,
    Cancelled,
}

/// A status string that is not one of the known statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown execution status '{0}'")]
pub struct UnknownStatus(pub String);

impl ExecutionStatus {
    /// Statuses no transition leaves.
    pub const TERMINAL: [ExecutionStatus; 3] = [
        ExecutionStatus::Completed,
        ExecutionStatus::FailedPermanent,
        ExecutionStatus::Cancelled,
    ];

    /// Every status, for metrics.
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Queued,
        ExecutionStatus::Running,
        ExecutionStatus::RetryWait,
        ExecutionStatus::CancelRequested,
        ExecutionStatus::Completed,
        ExecutionStatus::FailedPermanent,
        ExecutionStatus::Cancelled,
    ];

    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::RetryWait => "retry_wait",
            ExecutionStatus::CancelRequested => "cancel_requested",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::FailedPermanent => "failed_permanent",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// True for `completed`, `failed_permanent` and `cancelled`.
    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// Whether the state machine allows going from `self` to `next`.
    pub fn can_become(self, next: ExecutionStatus) -> bool {
        use ExecutionStatus::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Cancelled)
                | (RetryWait, Running)
                | (RetryWait, Cancelled)
                | (RetryWait, FailedPermanent)
                | (Running, Running) // reclaim of an expired lease
                | (Running, Completed)
                | (Running, FailedPermanent)
                | (Running, RetryWait)
                | (Running, CancelRequested)
                | (CancelRequested, Cancelled)
                | (CancelRequested, Completed)
                | (CancelRequested, FailedPermanent)
        )
    }

    /// The statuses from which a transition to `next` is allowed (for conditional UPDATEs).
    pub fn sources_of(next: ExecutionStatus) -> Vec<ExecutionStatus> {
        Self::ALL
            .into_iter()
            .filter(|from| from.can_become(next))
            .collect()
    }
}

impl FromStr for ExecutionStatus {
    type Err = UnknownStatus;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or_else(|| UnknownStatus(raw.to_owned()))
    }
}

impl TryFrom<String> for ExecutionStatus {
    type Error = UnknownStatus;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an execution reached a terminal status. Stored as text in `terminal_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TerminalReason {
    /// The harness finished its turn.
    Completed,
    /// The harness reported an error for the turn.
    HarnessError,
    /// The sandbox vanished (exited, deleted, evicted) mid-turn.
    SandboxLost,
    /// No output for longer than the silence timeout.
    SilenceDeadlineExceeded,
    /// The turn ran past its hard deadline.
    HardDeadlineExceeded,
    /// The sandbox could not be created or attached.
    SandboxStartFailed,
    /// Cancelled through the API.
    Cancelled,
    /// Cancelled because the thread's assignment was released with `cancel_inflight`.
    Released,
}

/// A terminal-reason string that is not one of the known reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown terminal reason '{0}'")]
pub struct UnknownTerminalReason(pub String);

impl TerminalReason {
    /// Every reason.
    pub const ALL: [TerminalReason; 8] = [
        TerminalReason::Completed,
        TerminalReason::HarnessError,
        TerminalReason::SandboxLost,
        TerminalReason::SilenceDeadlineExceeded,
        TerminalReason::HardDeadlineExceeded,
        TerminalReason::SandboxStartFailed,
        TerminalReason::Cancelled,
        TerminalReason::Released,
    ];

    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalReason::Completed => "completed",
            TerminalReason::HarnessError => "harness_error",
            TerminalReason::SandboxLost => "sandbox_lost",
            TerminalReason::SilenceDeadlineExceeded => "silence_deadline_exceeded",
            TerminalReason::HardDeadlineExceeded => "hard_deadline_exceeded",
            TerminalReason::SandboxStartFailed => "sandbox_start_failed",
            TerminalReason::Cancelled => "cancelled",
            TerminalReason::Released => "released",
        }
    }

    /// The terminal status this reason leads to.
    pub fn status(self) -> ExecutionStatus {
        match self {
            TerminalReason::Completed => ExecutionStatus::Completed,
            TerminalReason::Cancelled | TerminalReason::Released => ExecutionStatus::Cancelled,
            _ => ExecutionStatus::FailedPermanent,
        }
    }
}

impl FromStr for TerminalReason {
    type Err = UnknownTerminalReason;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == raw)
            .ok_or_else(|| UnknownTerminalReason(raw.to_owned()))
    }
}

impl fmt::Display for TerminalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ExecutionStatus::*;
    use super::*;

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for terminal in ExecutionStatus::TERMINAL {
            for next in ExecutionStatus::ALL {
                assert!(!terminal.can_become(next), "{terminal} -> {next}");
            }
        }
    }

    #[test]
    fn queued_executions_can_only_run_or_be_cancelled() {
        assert_eq!(
            ExecutionStatus::sources_of(Cancelled),
            vec![Queued, RetryWait, CancelRequested]
        );
        assert!(Queued.can_become(Running));
        assert!(!Queued.can_become(Completed));
    }

    #[test]
    fn a_running_cancel_goes_through_cancel_requested() {
        assert!(!Running.can_become(Cancelled));
        assert!(Running.can_become(CancelRequested));
        assert!(CancelRequested.can_become(Cancelled));
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in ExecutionStatus::ALL {
            assert_eq!(status.as_str().parse::<ExecutionStatus>(), Ok(status));
        }
    }

    #[test]
    fn statuses_and_reasons_serialise_as_their_stored_names() {
        for status in ExecutionStatus::ALL {
            let json = serde_json::to_value(status).ok();
            assert_eq!(json, Some(serde_json::Value::from(status.as_str())));
        }
        for reason in TerminalReason::ALL {
            assert_eq!(reason.as_str().parse::<TerminalReason>(), Ok(reason));
            let json = serde_json::to_value(reason).ok();
            assert_eq!(json, Some(serde_json::Value::from(reason.as_str())));
        }
        assert!("nope".parse::<TerminalReason>().is_err());
    }

    #[test]
    fn reasons_map_to_the_right_terminal_status() {
        assert_eq!(TerminalReason::SandboxLost.status(), FailedPermanent);
        assert_eq!(TerminalReason::Released.status(), Cancelled);
        assert_eq!(TerminalReason::Completed.status(), Completed);
    }
}
