//! The whole control plane on the embedded defaults, as real processes: `api` and one or
//! more `dispatcher`s (local sandboxes, Postgres queue) on a fresh database.

use crate::binaries::binary;
use crate::client::ApiClient;
use crate::database::TestDatabase;
use crate::moto::Moto;
use crate::process::ChildProcess;
use centaur_sandbox::local::SandboxProcess;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

/// The signing key every test stack uses (tests only).
pub const TEST_SIGNING_KEY: &str = "test-signing-key-0123456789abcdef0123456789abcdef";
/// The Slackbot service key every test stack bootstraps (tests only).
pub const TEST_SLACKBOT_KEY: &str = "cnt_test_slackbot_key_0123456789abcdef";

/// Which queue the stack's processes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// `QUEUE_BACKEND=postgres`.
    Postgres,
    /// `QUEUE_BACKEND=sqs` against a `moto_server` started for the stack.
    Sqs,
}

/// How to start a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The queue backend.
    pub queue: QueueKind,
    /// Dispatchers started with the stack.
    pub dispatchers: usize,
    /// `EXECUTION_LEASE_S`: short, so a killed dispatcher's lease expires quickly.
    pub lease_secs: u64,
    /// Extra environment for every process (overrides the defaults).
    pub extra_env: BTreeMap<String, String>,
    /// Extra environment for the `api` process only (applied last).
    pub api_env: BTreeMap<String, String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            queue: QueueKind::Postgres,
            dispatchers: 1,
            lease_secs: 3,
            extra_env: BTreeMap::new(),
            api_env: BTreeMap::new(),
        }
    }
}

/// A running control plane.
pub struct Stack {
    /// The database all processes share.
    pub database: TestDatabase,
    /// Base URL of the `api` process.
    pub api_url: String,
    api: ChildProcess,
    dispatchers: Vec<ChildProcess>,
    /// Base URL of each dispatcher's health and metrics port, in start order.
    dispatcher_urls: Vec<String>,
    /// The SQS server, kept alive (and killed on drop) with the stack.
    _moto: Option<Moto>,
    base_env: BTreeMap<String, String>,
    /// The stack's own directory: process logs, and its local sandboxes under `sandboxes/`.
    pub work_dir: PathBuf,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One function binary (`health`, `agent-execute`…) started alone on `database_url` with
/// the keys every function needs and a port of its own, its log under a directory named
/// after `label`; returns it and its base URL (`http://127.0.0.1:<port>`).
pub fn start_function(
    function: &str,
    label: &str,
    database_url: &str,
) -> anyhow::Result<(ChildProcess, String)> {
    let port = free_port()?.to_string();
    let env: BTreeMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
        ("SLACKBOT_API_KEY", TEST_SLACKBOT_KEY),
        ("PORT", port.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let log_dir = std::env::temp_dir().join(format!("centaur-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir)?;
    let process = ChildProcess::spawn(label, &binary(function), &[], &env, &log_dir)?;
    Ok((process, format!("http://127.0.0.1:{port}")))
}

async fn wait_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    crate::until(timeout, &format!("{url} to answer 200"), || async {
        client
            .get(url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await
}

impl Stack {
    /// Creates a database and starts `api` and the dispatchers, waiting until all are ready.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        ensure_sandbox_user()?;
        let database = TestDatabase::create().await?;
        let work_dir = std::env::temp_dir().join(format!("centaur-stack-{}", database.name()));
        std::fs::create_dir_all(work_dir.join("sandboxes"))?;
        let api_port = free_port()?;
        let api_url = format!("http://127.0.0.1:{api_port}");
        let mut base_env: BTreeMap<String, String> = [
            ("DATABASE_URL", database.url.as_str()),
            ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
            ("SLACKBOT_API_KEY", TEST_SLACKBOT_KEY),
            ("CENTAUR_DEFAULT_HARNESS", "echo"),
            ("QUEUE_BACKEND", "postgres"),
            ("SANDBOX_BACKEND", "local"),
            ("CENTAUR_API_URL", api_url.as_str()),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        base_env.insert("EXECUTION_LEASE_S".into(), options.lease_secs.to_string());
        base_env.insert(
            "SANDBOX_COMMAND".into(),
            sandbox_program(&binary("sandbox"), &work_dir)?
                .display()
                .to_string(),
        );
        base_env.insert(
            "SANDBOX_STATE_DIR".into(),
            work_dir.join("sandboxes").display().to_string(),
        );
        let moto = match options.queue {
            QueueKind::Postgres => None,
            QueueKind::Sqs => {
                let moto = Moto::start().await;
                let name = database.name().replace('_', "-");
                let (queue_url, _) = moto.fifo_queue_with_dlq(&name, 5).await;
                for (key, value) in [
                    ("QUEUE_BACKEND", "sqs"),
                    ("SQS_QUEUE_URL", queue_url.as_str()),
                    ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
                    ("AWS_ACCESS_KEY_ID", "test"),
                    ("AWS_SECRET_ACCESS_KEY", "test"),
                    ("AWS_REGION", "us-east-1"),
                    // moto's long poll does not notice a FIFO group unblocking mid-poll
                    // (real SQS does), so poll briefly instead of for 20 s.
                    ("QUEUE_WAIT_S", "1"),
                ] {
                    base_env.insert(key.to_owned(), value.to_owned());
                }
                Some(moto)
            }
        };
        base_env.extend(options.extra_env.clone());

        let mut api_env = base_env.clone();
        api_env.insert("PORT".into(), api_port.to_string());
        api_env.extend(options.api_env.clone());
        let api = ChildProcess::spawn("api", &binary("api"), &[], &api_env, &work_dir)?;
        let mut stack = Self {
            database,
            api_url,
            api,
            dispatchers: Vec::new(),
            dispatcher_urls: Vec::new(),
            _moto: moto,
            base_env,
            work_dir,
        };
        // Liveness, not readiness: a test may give the API a broken queue on purpose.
        let ready = format!("{}/health/live", stack.api_url);
        if let Err(err) = wait_http_ok(&ready, Duration::from_secs(30)).await {
            anyhow::bail!("{err}\n{}", stack.api.log_tail(40));
        }
        for _ in 0..options.dispatchers {
            stack.start_dispatcher().await?;
        }
        Ok(stack)
    }

    /// Starts one more dispatcher and waits for its `/readyz`.
    pub async fn start_dispatcher(&mut self) -> anyhow::Result<()> {
        let index = self.dispatchers.len();
        let port = free_port()?;
        let mut env = self.base_env.clone();
        env.insert("DISPATCHER_PORT".into(), port.to_string());
        env.insert("DISPATCHER_WORKER_ID".into(), format!("dispatcher-{index}"));
        let name = format!("dispatcher-{index}");
        let process = ChildProcess::spawn(&name, &binary("dispatcher"), &[], &env, &self.work_dir)?;
        let url = format!("http://127.0.0.1:{port}");
        let outcome = wait_http_ok(&format!("{url}/readyz"), Duration::from_secs(30)).await;
        let tail = process.log_tail(40);
        self.dispatchers.push(process);
        self.dispatcher_urls.push(url);
        outcome.map_err(|err| anyhow::anyhow!("{err}\n{tail}"))
    }

    /// The dispatcher started `index`-th.
    pub fn dispatcher(&mut self, index: usize) -> &mut ChildProcess {
        &mut self.dispatchers[index]
    }

    /// Base URL of the dispatcher started `index`-th (`/healthz`, `/readyz`, `/metrics`).
    pub fn dispatcher_url(&self, index: usize) -> &str {
        &self.dispatcher_urls[index]
    }

    /// The `api` process.
    pub fn api(&self) -> &ChildProcess {
        &self.api
    }

    /// The stack's private directory (logs; the local backend's state dir `sandboxes/`).
    pub fn work_dir(&self) -> &std::path::Path {
        &self.work_dir
    }

    /// `SANDBOX_STATE_DIR` of the stack's dispatchers.
    pub fn sandbox_state_dir(&self) -> PathBuf {
        self.work_dir.join("sandboxes")
    }

    /// A client for the API (local operator: no key).
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.api_url)
    }

    /// Runs one turn (spawn → message → execute) and waits up to a minute for its end;
    /// returns the execution. Panics with the processes' logs if it does not end.
    pub async fn finished_turn(&self, thread_key: &str, text: &str) -> serde_json::Value {
        let client = self.client();
        let execution_id = client
            .turn(thread_key, text)
            .await
            .unwrap_or_else(|err| panic!("{err:#}\n{}", self.logs()));
        client
            .wait_terminal(&execution_id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|err| panic!("{err:#}\n{}", self.logs()))
    }

    /// [`Stack::finished_turn`] that must have completed.
    pub async fn completed_turn(&self, thread_key: &str, text: &str) -> serde_json::Value {
        let execution = self.finished_turn(thread_key, text).await;
        assert_eq!(
            execution["status"],
            "completed",
            "{execution}\n{}",
            self.logs()
        );
        execution
    }

    /// Recent output of every process, for failure messages.
    pub fn logs(&self) -> String {
        std::iter::once(&self.api)
            .chain(&self.dispatchers)
            .map(|process| process.log_tail(60))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops every process and sandbox and drops the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.kill_all();
        self.database.drop_database().await
    }

    fn kill_all(&mut self) {
        for dispatcher in &mut self.dispatchers {
            dispatcher.sigkill();
        }
        self.api.sigkill();
        kill_local_sandboxes(&self.work_dir.join("sandboxes"));
    }
}

/// Kills sandbox processes the local backend left in `state_dir` (they are detached from
/// the dispatcher on purpose, so a dispatcher crash does not kill them): each sandbox's
/// process group, which holds its harness CLIs too — never a process that was given the
/// pid of a sandbox that exited before.
pub fn kill_local_sandboxes(state_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(process) = SandboxProcess::recorded_in(&entry.path()) {
            process.kill_if_alive();
        }
    }
}

/// The sandbox program as the stack's dispatchers run it. As root, sandboxes run as
/// [`SANDBOX_USER`], who must be able to execute it: a build in a directory that user
/// cannot search (a clone under `/root`) is copied into `work_dir` first.
fn sandbox_program(built: &std::path::Path, work_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    if !running_as_root() || executable_by_sandbox_user(built) {
        return Ok(built.to_path_buf());
    }
    use std::os::unix::fs::PermissionsExt;
    let bin = work_dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let copy = bin.join("sandbox");
    std::fs::copy(built, &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    Ok(copy)
}

/// Whether [`SANDBOX_USER`] may execute `path` (every directory on the way searchable).
fn executable_by_sandbox_user(path: &std::path::Path) -> bool {
    std::process::Command::new("runuser")
        .args(["-u", SANDBOX_USER, "--", "test", "-x"])
        .arg(path)
        .status()
        .is_ok_and(|status| status.success())
}

/// The user local sandboxes run as when the dispatcher is root (the default of
/// `SANDBOX_LOCAL_USER`).
pub const SANDBOX_USER: &str = "centaur-sandbox";

/// True when this process runs as root (`/proc/self` belongs to the effective uid).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// As root, makes sure [`SANDBOX_USER`] exists (as `scripts/lib.sh`'s
/// `ensure_sandbox_user` does), since a root dispatcher refuses to start without it.
/// Concurrent test processes may race to create it: `useradd` then fails on its lock or
/// on the user another process just made, and the user is looked up again.
pub fn ensure_sandbox_user() -> anyhow::Result<()> {
    let exists = || {
        std::process::Command::new("getent")
            .args(["passwd", SANDBOX_USER])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !running_as_root() || exists() {
        return Ok(());
    }
    for _ in 0..50 {
        let _ = std::process::Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SANDBOX_USER,
            ])
            .stderr(std::process::Stdio::null())
            .status();
        if exists() {
            return Ok(());
        }
        // Another process holds the user database lock: try again shortly.
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("cannot create the sandbox user {SANDBOX_USER} with useradd")
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sandbox_program_the_sandbox_user_cannot_reach_is_copied_where_it_can() {
        ensure_sandbox_user().expect("sandbox user");
        let root = std::env::temp_dir().join(format!("centaur-stack-bin-{}", std::process::id()));
        let hidden = root.join("private");
        let work_dir = root.join("work");
        std::fs::create_dir_all(&hidden).expect("dir");
        std::fs::create_dir_all(&work_dir).expect("dir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let built = hidden.join("sandbox");
        std::fs::copy("/bin/true", &built).expect("copy");

        let program = sandbox_program(&built, &work_dir).expect("program");
        if running_as_root() {
            assert_eq!(program, work_dir.join("bin").join("sandbox"));
            assert!(executable_by_sandbox_user(&program));
            let reachable = sandbox_program(&program, &work_dir).expect("program");
            assert_eq!(
                reachable, program,
                "a reachable program is used where it is"
            );
        } else {
            assert_eq!(
                program, built,
                "sandboxes run as this user: nothing to copy"
            );
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
