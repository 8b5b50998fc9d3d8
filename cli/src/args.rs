//! The command line: nouns then verbs, each with examples in `--help`.

use clap::{Args, Parser, Subcommand};

const MAIN_HELP: &str = "\
Examples:
  centaur run \"Reply with exactly PONG.\"          run a turn on a new thread and watch it
  centaur run --thread demo --harness codex \"Fix the failing test\"
  centaur executions get exe_0123456789abcdef     why did my turn fail?
  centaur executions watch exe_0123456789abcdef   what is it doing right now?
  centaur threads list
  centaur doctor                                  is the deployment ready?

Environment:
  CENTAUR_API_URL  the API (default http://localhost:8000)
  CENTAUR_API_KEY  an API key; without one, requests from localhost act as the local operator

Exit codes:
  0  completed (for run/watch: the turn completed)
  1  the turn failed (failed_permanent); doctor: something is not ready
  2  usage error: bad flags or arguments, or the API refused the request (4xx)
  3  the turn was cancelled
  4  cannot reach the API (connection refused, timeout, 5xx, unreadable answer)
  130  interrupted (Ctrl-C while following a turn; the turn goes on)";

const RUN_HELP: &str = "\
Examples:
  centaur run \"Reply with exactly PONG.\"
  centaur run --thread demo \"And now in French.\"        continue a thread
  centaur run --harness claude --repo acme/api \"Run the tests and fix what fails\"
  centaur run --detach \"Long job\"                        print the execution id and return
  git diff | centaur run --thread review -                read the message from stdin
  centaur run --json \"hi\" | jq -c .event_kind           one JSON object per line

The live stream shows assistant text as it arrives, one line per tool call, command (with
its exit code) and error, then how the turn ended.
Output with --json: the execute answer, then one line per event ({thread_seq, event_kind,
event_json}), then the execution as GET /agent/executions/{id}?events=false returns it.

Exit codes: 0 completed, 1 failed, 2 usage error or refused, 3 cancelled, 4 API unreachable.";

const EXECUTIONS_HELP: &str = "\
Examples:
  centaur executions get exe_0123456789abcdef
  centaur executions get exe_0123456789abcdef --events    with the event trail
  centaur executions list --thread demo --limit 5
  centaur executions watch exe_0123456789abcdef
  centaur executions cancel exe_0123456789abcdef";

const GET_HELP: &str = "\
Examples:
  centaur executions get exe_0123456789abcdef
  centaur executions get exe_0123456789abcdef --events
  centaur executions get exe_0123456789abcdef --json | jq .status";

const LIST_HELP: &str = "\
Examples:
  centaur executions list --thread demo
  centaur executions list --thread demo --limit 100 --json";

const CANCEL_HELP: &str = "\
A queued execution is cancelled at once; a running one is marked cancel_requested and the
dispatcher stops its sandbox. Cancelling a finished execution changes nothing.

Examples:
  centaur executions cancel exe_0123456789abcdef";

const WATCH_HELP: &str = "\
Follows the execution's events until it ends (an execution that already ended is replayed).

Examples:
  centaur executions watch exe_0123456789abcdef
  centaur executions watch exe_0123456789abcdef --json

Exit codes: 0 completed, 1 failed, 2 usage error or refused, 3 cancelled, 4 API unreachable.";

const THREADS_HELP: &str = "\
Examples:
  centaur threads list
  centaur threads list --limit 10 --json
  centaur threads release demo
  centaur threads release demo --cancel-inflight";

const RELEASE_HELP: &str = "\
Ends the thread's active assignment: the next turn starts a new generation (and may use
another harness or repo).

Examples:
  centaur threads release demo
  centaur threads release demo --cancel-inflight     also cancel its queued/running turns";

const KEYS_HELP: &str = "\
API keys need the admin scope (or the local operator).

Examples:
  centaur keys create --name ci --scope agent
  centaur keys create --name ops --scope admin --scope agent
  centaur keys list
  centaur keys revoke 0b5c5a8e-9c1f-4a8e-9d6e-7c7f2f0e2a11";

const CREATE_HELP: &str = "\
The key is printed once: store it then.
Scopes: * (all), admin, agent (= agent:execute, agent:status, agent:stop), or one of those three.

Examples:
  centaur keys create --name ci --scope agent
  centaur keys create --name ops --scope admin,agent --created-by alice";

const AUDIT_HELP: &str = "\
Who spawned, messaged, executed, cancelled, released and changed keys, newest first.
Needs the admin scope. --since takes an RFC 3339 time, a date or a span back from now
(90m, 24h, 7d); --principal a key's id or name, `local`, a sandbox id or a thread, or a
Slack user as <team_id>:<user_id>.

Examples:
  centaur audit
  centaur audit --since 24h --principal ci
  centaur audit --action execute --limit 20 --json";

const POOL_HELP: &str = "\
Needs the admin scope.

Examples:
  centaur pool
  centaur pool --json";

const DOCTOR_HELP: &str = "\
Checks, in words: the API answers, the credential is accepted, the database and the queue
are reachable, and each harness (credential bound in iron-proxy, CLI present and its
version), Slack and the sandbox backend as /health/tools reports them (admin), plus
configuration problems such as a default harness that is not ready.

Examples:
  centaur doctor
  CENTAUR_API_URL=https://centaur.example.com CENTAUR_API_KEY=cnt_… centaur doctor
  centaur doctor --json

Exit codes: 0 ready, 1 something is not ready, 4 the API cannot be reached.";

/// The `centaur` command line.
#[derive(Debug, Parser)]
#[command(
    name = "centaur",
    version,
    about = "Run and watch Centaur turns, inspect executions, manage threads, API keys and the warm pool, check a deployment.",
    after_help = MAIN_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// An API key from the command line or the environment; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(Self(raw.to_owned()))
    }
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The API's base URL.
    #[arg(
        long,
        global = true,
        env = "CENTAUR_API_URL",
        hide_env_values = true,
        default_value = "http://localhost:8000",
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub api_url: String,
    /// An API key, sent as X-Api-Key (never printed). Without one, requests from localhost
    /// act as the local operator.
    #[arg(
        long,
        global = true,
        env = "CENTAUR_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        help_heading = "Global options"
    )]
    pub api_key: Option<ApiKey>,
    /// Print the API's raw JSON instead of text (run/watch: one JSON object per line).
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a turn (spawn, message and execute in one call) and stream its events live.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Inspect, list, watch and cancel executions.
    #[command(subcommand, after_help = EXECUTIONS_HELP)]
    Executions(ExecutionsCommand),
    /// List threads, release a thread's assignment.
    #[command(subcommand, after_help = THREADS_HELP)]
    Threads(ThreadsCommand),
    /// Create, list and revoke API keys (admin).
    #[command(subcommand, after_help = KEYS_HELP)]
    Keys(KeysCommand),
    /// The audit log: who changed what (admin).
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),
    /// The warm pool of sandboxes (admin).
    #[command(after_help = POOL_HELP)]
    Pool,
    /// Check the deployment: health, readiness, harnesses and configuration, in words.
    #[command(after_help = DOCTOR_HELP)]
    Doctor,
}

/// `centaur run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The message; `-` reads it from standard input.
    #[arg(value_name = "TEXT")]
    pub text: String,
    /// The thread to run on (default: a new thread, whose key is printed).
    #[arg(long, value_name = "KEY")]
    pub thread: Option<String>,
    /// The harness for a new assignment: codex, claude-code (claude), amp, pi-mono (pi), echo.
    #[arg(long, value_name = "HARNESS")]
    pub harness: Option<String>,
    /// The repository to work in: owner/name or https://host/owner/name.
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// Print the execution id and return without following the turn.
    #[arg(long)]
    pub detach: bool,
}

/// `centaur audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries at or after: an RFC 3339 time, a date or a span (90m, 24h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only entries of this principal (id or name).
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Only this action: spawn, message, execute, cancel, release, key_create, key_revoke.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// How many (1–500).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=500))]
    pub limit: Option<u16>,
    /// Only entries older than this id (the previous page's next_before).
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub before: Option<u64>,
}

/// `centaur executions …`.
#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// One execution: status, reason, error, result, timings, usage.
    #[command(after_help = GET_HELP)]
    Get {
        /// The execution id (exe_…).
        #[arg(value_name = "EXECUTION_ID")]
        id: String,
        /// Also show the event trail.
        #[arg(long)]
        events: bool,
    },
    /// A thread's executions, newest first.
    #[command(after_help = LIST_HELP)]
    List {
        /// The thread.
        #[arg(long, value_name = "KEY")]
        thread: String,
        /// How many (1–100).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: Option<u16>,
    },
    /// Cancel an execution.
    #[command(after_help = CANCEL_HELP)]
    Cancel {
        /// The execution id (exe_…).
        #[arg(value_name = "EXECUTION_ID")]
        id: String,
    },
    /// Stream an execution's events until it ends.
    #[command(after_help = WATCH_HELP)]
    Watch {
        /// The execution id (exe_…).
        #[arg(value_name = "EXECUTION_ID")]
        id: String,
    },
}

/// `centaur threads …`.
#[derive(Debug, Subcommand)]
pub enum ThreadsCommand {
    /// Threads, most recently changed first.
    #[command(after_help = THREADS_HELP)]
    List {
        /// How many (1–500).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=500))]
        limit: Option<u16>,
    },
    /// Release a thread's assignment.
    #[command(after_help = RELEASE_HELP)]
    Release {
        /// The thread.
        #[arg(value_name = "KEY")]
        thread: String,
        /// Also cancel the thread's queued and running executions.
        #[arg(long)]
        cancel_inflight: bool,
    },
}

/// `centaur keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key (printed once).
    #[command(after_help = CREATE_HELP)]
    Create {
        /// A name for the key.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A scope (repeat, or separate with commas).
        #[arg(long = "scope", value_name = "SCOPE", required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// Who the key is for (default: the caller).
        #[arg(long, value_name = "WHO")]
        created_by: Option<String>,
    },
    /// Every key (never the secret).
    #[command(after_help = KEYS_HELP)]
    List,
    /// Revoke a key: requests with it are refused from then on.
    #[command(after_help = KEYS_HELP)]
    Revoke {
        /// The key's id (a UUID, from `keys list`).
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("centaur").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        fn walk(command: &clap::Command, path: &str) {
            let help = command.clone().render_long_help().to_string();
            assert!(
                help.contains("Examples:"),
                "{path} --help has no examples:\n{help}"
            );
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "centaur");
    }

    #[test]
    fn the_top_help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(crate::exit::EXIT_CODES_HELP), "{help}");
    }

    #[test]
    fn run_takes_text_and_options_in_any_order_with_global_flags_anywhere() {
        let cli = parse(&[
            "run",
            "hello",
            "--thread",
            "demo",
            "--json",
            "--harness",
            "echo",
        ])
        .unwrap();
        assert!(cli.global.json);
        match cli.command {
            Command::Run(run) => {
                assert_eq!(run.text, "hello");
                assert_eq!(run.thread.as_deref(), Some("demo"));
                assert_eq!(run.harness.as_deref(), Some("echo"));
                assert!(!run.detach);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_flags_are_clap_errors_not_panics() {
        use clap::error::ErrorKind;
        for (args, kind) in [
            (&["run"][..], ErrorKind::MissingRequiredArgument),
            (
                &["executions", "list"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["executions", "list", "--thread", "t", "--limit", "0"][..],
                ErrorKind::ValueValidation,
            ),
            (
                &["executions", "list", "--thread", "t", "--limit", "abc"][..],
                ErrorKind::ValueValidation,
            ),
            (
                &["threads", "list", "--limit", "501"][..],
                ErrorKind::ValueValidation,
            ),
            (
                &["keys", "create", "--name", "x"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (&["audit", "--limit", "0"][..], ErrorKind::ValueValidation),
            (&["audit", "--before", "x"][..], ErrorKind::ValueValidation),
            (&["frobnicate"][..], ErrorKind::InvalidSubcommand),
            (&["run", "x", "--nope"][..], ErrorKind::UnknownArgument),
        ] {
            let err = parse(args).expect_err(&format!("{args:?}"));
            assert_eq!(err.kind(), kind, "{args:?}: {err}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn scopes_repeat_and_the_key_never_shows_in_debug() {
        let cli = parse(&[
            "--api-key",
            "cnt_secret",
            "keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "agent",
            "--scope",
            "admin",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("cnt_secret"));
        assert_eq!(cli.global.api_key, Some(ApiKey("cnt_secret".into())));
        match cli.command {
            Command::Keys(KeysCommand::Create { scopes, .. }) => {
                assert_eq!(scopes, ["agent", "admin"])
            }
            other => panic!("{other:?}"),
        }
    }
}
