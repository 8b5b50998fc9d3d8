//! Exit codes: the outcome of the command, as `operator.md` defines them (0 completed,
//! 1 failed, 2 usage error, 3 cancelled), plus 4 when the API cannot be reached.

use crate::error::CliError;
use centaur_core::ExecutionStatus;

/// How `centaur` ends. The discriminant is the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked; for `run`/`watch`: the turn completed.
    Success = 0,
    /// The turn ended `failed_permanent`; for `doctor`: something is not ready.
    Failed = 1,
    /// Bad flags or arguments (clap's own exit code), or the API refused the request
    /// (a 4xx answer: unknown id, missing scope, invalid key, conflict).
    Usage = 2,
    /// The turn ended `cancelled`.
    Cancelled = 3,
    /// The API could not be reached, or answered with a server error (5xx) or garbage.
    Unreachable = 4,
    /// Ctrl-C while following a turn (the turn goes on): the shell's 128 + SIGINT.
    Interrupted = 130,
}

/// The text `--help` shows about exit codes.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  completed (for run/watch: the turn completed)
  1  the turn failed (failed_permanent); doctor: something is not ready
  2  usage error: bad flags or arguments, or the API refused the request (4xx)
  3  the turn was cancelled
  4  cannot reach the API (connection refused, timeout, 5xx, unreadable answer)
  130  interrupted (Ctrl-C while following a turn; the turn goes on)";

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit of a turn that reached `status`; `None` while it is not terminal.
    pub fn for_status(status: &str) -> Option<Exit> {
        match status.parse::<ExecutionStatus>().ok()? {
            ExecutionStatus::Completed => Some(Exit::Success),
            ExecutionStatus::FailedPermanent => Some(Exit::Failed),
            ExecutionStatus::Cancelled => Some(Exit::Cancelled),
            _ => None,
        }
    }

    /// The exit of a command that failed with `error`.
    pub fn for_error(error: &CliError) -> Exit {
        match error {
            CliError::Usage(_) => Exit::Usage,
            CliError::Api(failure) if failure.status < 500 => Exit::Usage,
            CliError::Api(_) | CliError::Unreachable { .. } | CliError::BadAnswer { .. } => {
                Exit::Unreachable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiFailure;

    #[test]
    fn terminal_statuses_map_to_their_outcome_and_others_to_none() {
        assert_eq!(Exit::for_status("completed"), Some(Exit::Success));
        assert_eq!(Exit::for_status("failed_permanent"), Some(Exit::Failed));
        assert_eq!(Exit::for_status("cancelled"), Some(Exit::Cancelled));
        for status in [
            "queued",
            "running",
            "retry_wait",
            "cancel_requested",
            "bogus",
        ] {
            assert_eq!(Exit::for_status(status), None, "{status}");
        }
    }

    #[test]
    fn codes_are_the_documented_numbers() {
        let codes: Vec<i32> = [
            Exit::Success,
            Exit::Failed,
            Exit::Usage,
            Exit::Cancelled,
            Exit::Unreachable,
            Exit::Interrupted,
        ]
        .into_iter()
        .map(Exit::code)
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 130]);
        for code in codes {
            assert!(EXIT_CODES_HELP.contains(&format!("  {code}  ")), "{code}");
        }
    }

    #[test]
    fn refusals_are_usage_errors_and_server_trouble_is_unreachable() {
        let api = |status| {
            CliError::Api(ApiFailure {
                status,
                code: None,
                message: "x".into(),
            })
        };
        assert_eq!(Exit::for_error(&api(404)), Exit::Usage);
        assert_eq!(Exit::for_error(&api(401)), Exit::Usage);
        assert_eq!(Exit::for_error(&api(409)), Exit::Usage);
        assert_eq!(Exit::for_error(&api(503)), Exit::Unreachable);
        assert_eq!(Exit::for_error(&CliError::Usage("bad".into())), Exit::Usage);
        let unreachable = CliError::Unreachable {
            url: "http://localhost:8000".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(Exit::for_error(&unreachable), Exit::Unreachable);
    }
}
