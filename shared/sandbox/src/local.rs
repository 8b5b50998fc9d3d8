//! The local-process backend (`SANDBOX_BACKEND=local`): each sandbox is a `sandbox`
//! process serving a Unix socket in its own directory under the state dir. Processes are
//! detached (own session, no controlling terminal) so they outlive a crashed dispatcher,
//! and any dispatcher sharing the state dir can re-attach to them.
//!
//! Isolation on one machine (workspace.md): a sandbox must not read the control plane's
//! secrets. It starts from a clean environment (the spec's env, `PATH`, `RUST_LOG`, a home
//! and temp dir of its own, and the egress settings of [`crate::egress`] when a proxy is
//! configured), and [`Isolation`] keeps it from the dispatcher's files and processes:
//! as root, a separate unprivileged user; otherwise bubblewrap's PID namespace and a
//! read-only view of the machine with the state dir hidden.
//!
//! A sandbox's directory (`<state_dir>/<id>`):
//!
//! | path | owner | what |
//! |---|---|---|
//! | `pid` (pid and start time: [`SandboxProcess`]), `exit_code`; `spec.json`, `sandbox.log` (0600) | dispatcher | control files the sandbox cannot touch (it could otherwise make `stop` signal any process) |
//! | `prompts/`, `ca.crt` | dispatcher, world-readable | prompt files; the proxy CA copied from `SANDBOX_CA_FILE` |
//! | `home/` (`HOME`, working dir), `tmp/` (`TMPDIR`), `run/sandbox.sock` | sandbox, 0700 | everything the sandbox may write |

mod process;

pub use process::SandboxProcess;

use crate::egress::egress_env;
use crate::{
    Attachment, LineSink, ManagedSandbox, SandboxBackend, SandboxError, SandboxSpec, SandboxStatus,
};
use async_trait::async_trait;
use centaur_config::{ConfigError, LocalSandboxConfig, SandboxConfig};
use centaur_core::SandboxId;
use futures::StreamExt;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::watch;

const SPEC_FILE: &str = "spec.json";
const LOG_FILE: &str = "sandbox.log";
const EXIT_CODE_FILE: &str = "exit_code";
const PROMPTS_DIR: &str = "prompts";
const CA_FILE: &str = "ca.crt";
const HOME_DIR: &str = "home";
const TMP_DIR: &str = "tmp";
const RUN_DIR: &str = "run";
const SOCKET_FILE: &str = "sandbox.sock";
/// Variables passed through from the dispatcher's own environment (nothing secret).
const INHERITED_VARS: [&str; 2] = ["PATH", "RUST_LOG"];
/// How long `attach` waits for a just-started sandbox to open its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);
/// What the sandbox program writes on its stdout once its socket listens
/// (`sandbox --listen`): the backend waits for this line instead of retrying the socket.
pub const READY_LINE: &str = "ready";
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the backend records about a sandbox next to its process.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSpec {
    harness: String,
    warm: bool,
    thread_key: Option<String>,
}

/// How local sandboxes are kept from the control plane's secrets. Chosen once at start-up
/// by [`Isolation::from_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// The dispatcher runs as root: sandboxes run as this unprivileged user (its uid and
    /// gid, no supplementary groups), so the dispatcher's and the API's
    /// `/proc/<pid>/environ` and the control plane's mode-600 files are out of reach.
    User { name: String, uid: u32, gid: u32 },
    /// The dispatcher is not root: each sandbox runs under `bwrap` (bubblewrap) in its own
    /// PID, IPC and UTS namespaces, on a read-only view of the machine with a private
    /// `/proc`, `/dev` and `/tmp`, the state dir (other sandboxes) and its parent
    /// (`.centaur/`: `env`, logs) hidden, and only its own home, temp and socket dirs
    /// writable. Same uid as the dispatcher: the user's other files stay readable.
    Bubblewrap { bwrap: PathBuf },
    /// `SANDBOX_LOCAL_ISOLATION=off`, for developers only: the dispatcher's own user with
    /// nothing but a clean environment between the sandbox and the control plane.
    Off,
}

impl Isolation {
    /// Picks the isolation for this process: `off` when `SANDBOX_LOCAL_ISOLATION=off`;
    /// as root, the user `SANDBOX_LOCAL_USER` (looked up now: a missing user is an error
    /// saying how to create it); otherwise bubblewrap from `PATH`, or an error.
    pub fn from_config(config: &LocalSandboxConfig) -> Result<Self, ConfigError> {
        if !config.isolation {
            tracing::warn!(
                "SANDBOX_LOCAL_ISOLATION=off: local sandboxes run as the dispatcher's user and \
                 can read its files (developers only)"
            );
            return Ok(Self::Off);
        }
        if nix::unistd::geteuid().is_root() {
            return Self::sandbox_user(&config.user);
        }
        match find_program("bwrap") {
            Some(bwrap) => Ok(Self::Bubblewrap { bwrap }),
            None => Err(ConfigError::Invalid {
                name: "SANDBOX_LOCAL_ISOLATION",
                reason: "local sandboxes must be isolated from the control plane, and this \
                         dispatcher is neither root (sandboxes would run as \
                         SANDBOX_LOCAL_USER) nor finds bubblewrap on PATH: install it \
                         (apt-get install bubblewrap), or set SANDBOX_LOCAL_ISOLATION=off \
                         on a developer machine to run sandboxes unisolated"
                    .into(),
            }),
        }
    }

    /// Looks `name` up in the user database.
    fn sandbox_user(name: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            name: "SANDBOX_LOCAL_USER",
            reason,
        };
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) if user.uid.is_root() || user.gid.as_raw() == 0 => Err(invalid(
                format!("'{name}' is root or in group root: name an unprivileged user"),
            )),
            Ok(Some(user)) => Ok(Self::User {
                name: name.to_owned(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }),
            Ok(None) => Err(invalid(format!(
                "no user '{name}' on this machine; local sandboxes run as that user when the \
                 dispatcher is root. Create it with `useradd --system --user-group \
                 --no-create-home --shell /usr/sbin/nologin {name}` (scripts/lib.sh: \
                 ensure_sandbox_user)"
            ))),
            Err(err) => Err(invalid(format!("cannot look up user '{name}': {err}"))),
        }
    }
}

/// Egress settings for local sandboxes: `SANDBOX_PROXY_URL` and `SANDBOX_CA_FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEgress {
    /// The proxy every sandbox's HTTP(S) goes through.
    pub proxy_url: String,
    /// The proxy's CA certificate (PEM), copied into each sandbox.
    pub ca_file: PathBuf,
}

impl LocalEgress {
    /// The configured egress, or `None` without `SANDBOX_PROXY_URL` (no proxy settings).
    pub fn from_config(config: &SandboxConfig) -> Option<Self> {
        Some(Self {
            proxy_url: config.proxy_url.clone()?,
            ca_file: config.local.ca_file.clone()?,
        })
    }
}

/// Runs sandboxes as local child processes.
pub struct LocalBackend {
    command: PathBuf,
    state_dir: PathBuf,
    isolation: Isolation,
    egress: Option<LocalEgress>,
    /// `setsid`: starts each sandbox in a session of its own, without the dispatcher's
    /// controlling terminal (no keystroke injection into an operator's shell).
    setsid: Option<PathBuf>,
    /// Sandboxes this process started whose readiness `attach` can wait for: their ready
    /// line (or the end of their stdout) is sent on the channel.
    starting: std::sync::Mutex<HashMap<String, watch::Receiver<Readiness>>>,
}

/// Where a sandbox this process started is on its way up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Starting,
    /// It wrote [`READY_LINE`]: its socket listens.
    Ready,
    /// Its stdout closed before the ready line: it exited (or never got going).
    Ended,
}

impl LocalBackend {
    /// A backend running `command` (the `sandbox` program, found on `PATH` when it has no
    /// `/`), keeping state in `state_dir`, isolated by `isolation`. Checks that the
    /// sandbox user can reach both.
    pub fn new(
        command: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        isolation: Isolation,
    ) -> Result<Self, SandboxError> {
        let command = command.into();
        let command = if command.components().count() == 1 {
            find_program(&command.to_string_lossy()).unwrap_or(command)
        } else {
            command
        };
        let state_dir = state_dir.into();
        std::fs::create_dir_all(&state_dir).map_err(|err| {
            SandboxError::Backend(format!(
                "cannot create sandbox state dir {}: {err}",
                state_dir.display()
            ))
        })?;
        let state_dir = state_dir.canonicalize().unwrap_or(state_dir);
        let setsid = find_program("setsid");
        if setsid.is_none() && isolation != Isolation::Off {
            return Err(SandboxError::Backend(
                "isolated local sandboxes need `setsid` (util-linux) on PATH".into(),
            ));
        }
        match &isolation {
            Isolation::User { name, uid, gid } => {
                // Traversable, not listable: a sandbox reaches its own dir, never the list
                // of the others.
                set_mode(&state_dir, 0o711).map_err(SandboxError::Backend)?;
                let reachable = |path: &Path, what: &str| {
                    reachable_by(path, *uid, *gid).map_err(|reason| {
                        SandboxError::Backend(format!(
                            "the sandbox user '{name}' cannot reach the {what} {}: {reason}",
                            path.display()
                        ))
                    })
                };
                reachable(&command, "sandbox program (SANDBOX_COMMAND)")?;
                reachable(&state_dir, "state dir (SANDBOX_STATE_DIR)")?;
            }
            Isolation::Bubblewrap { .. } => {
                set_mode(&state_dir, 0o700).map_err(SandboxError::Backend)?;
            }
            Isolation::Off => {}
        }
        Ok(Self {
            command,
            state_dir,
            isolation,
            egress: None,
            setsid,
            starting: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Gives every sandbox created from now on the egress proxy settings.
    pub fn with_egress(mut self, egress: Option<LocalEgress>) -> Self {
        self.egress = egress;
        self
    }

    /// The isolation in force.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    fn dir(&self, id: &SandboxId) -> PathBuf {
        self.state_dir.join(id.as_str())
    }

    fn local_status(&self, id: &SandboxId) -> SandboxStatus {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return SandboxStatus::Gone {
                detail: format!("local sandbox {id} does not exist (no state directory)"),
            };
        }
        match SandboxProcess::recorded_in(&dir) {
            Some(process) if process.is_alive() => SandboxStatus::Running,
            Some(process) => SandboxStatus::Exited {
                code: std::fs::read_to_string(dir.join(EXIT_CODE_FILE))
                    .ok()
                    .and_then(|code| code.trim().parse().ok()),
                detail: format!(
                    "local sandbox {id} process {} has exited; its log is {}",
                    process.pid,
                    dir.join(LOG_FILE).display()
                ),
            },
            None => SandboxStatus::Pending,
        }
    }

    /// Lays out `dir` (see the module docs) with the ownership and modes the isolation needs.
    fn prepare_dir(&self, spec: &SandboxSpec, dir: &Path) -> Result<(), String> {
        let control_mode = match self.isolation {
            Isolation::User { .. } => 0o711,
            Isolation::Bubblewrap { .. } | Isolation::Off => 0o700,
        };
        set_mode(dir, control_mode)?;
        let prompts = dir.join(PROMPTS_DIR);
        make_dir(&prompts)?;
        set_mode(&prompts, 0o755)?;
        for (name, content) in &spec.prompt_files {
            let file_name = Path::new(name)
                .file_name()
                .ok_or_else(|| format!("bad prompt file name {name}"))?;
            let path = prompts.join(file_name);
            std::fs::write(&path, content).map_err(|err| err.to_string())?;
            set_mode(&path, 0o644)?;
        }
        let stored = StoredSpec {
            harness: spec.harness.as_str().to_owned(),
            warm: spec.warm,
            thread_key: spec.thread_key.clone(),
        };
        let json = serde_json::to_vec(&stored).map_err(|err| err.to_string())?;
        std::fs::write(dir.join(SPEC_FILE), json).map_err(|err| err.to_string())?;
        set_mode(&dir.join(SPEC_FILE), 0o600)?;
        if let Some(egress) = &self.egress {
            let copy = dir.join(CA_FILE);
            std::fs::copy(&egress.ca_file, &copy).map_err(|err| {
                format!(
                    "cannot copy SANDBOX_CA_FILE {}: {err}",
                    egress.ca_file.display()
                )
            })?;
            set_mode(&copy, 0o644)?;
        }
        for own in [HOME_DIR, TMP_DIR, RUN_DIR] {
            let path = dir.join(own);
            make_dir(&path)?;
            set_mode(&path, 0o700)?;
            if let Isolation::User { uid, gid, .. } = self.isolation {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|err| format!("cannot chown {}: {err}", path.display()))?;
            }
        }
        Ok(())
    }

    /// The sandbox's whole environment (see [`sandbox_env`]).
    fn env_for(&self, spec: &SandboxSpec, dir: &Path) -> BTreeMap<String, String> {
        let inherited = INHERITED_VARS
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
            .collect();
        let user = match &self.isolation {
            Isolation::User { name, .. } => Some(name.as_str()),
            Isolation::Bubblewrap { .. } | Isolation::Off => None,
        };
        sandbox_env(spec, dir, self.egress.as_ref(), user, inherited)
    }

    /// The program and arguments that start the sandbox under the isolation in force.
    fn launch_command(&self, spec: &SandboxSpec, dir: &Path) -> tokio::process::Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Isolation::Bubblewrap { bwrap } = &self.isolation {
            argv.push(bwrap.clone().into());
            argv.extend(bwrap_args(&self.state_dir, dir, &self.command));
            argv.push("--".into());
        }
        argv.push(self.command.clone().into());
        argv.extend(["--harness".into(), spec.harness.as_str().into()]);
        argv.extend([
            "--listen".into(),
            dir.join(RUN_DIR).join(SOCKET_FILE).into_os_string(),
        ]);
        let mut command = match &self.setsid {
            Some(setsid) => {
                let mut command = tokio::process::Command::new(setsid);
                command.args(&argv);
                command
            }
            None => {
                let mut command = tokio::process::Command::new(&argv[0]);
                command.args(&argv[1..]).process_group(0);
                command
            }
        };
        if let Isolation::User { uid, gid, .. } = self.isolation {
            // std drops the supplementary groups too when it changes the uid.
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Reads the sandbox's stdout until its ready line (or its end) and publishes it for
    /// `attach`; anything after the line is read and dropped.
    fn watch_readiness(&self, id: &SandboxId, stdout: tokio::process::ChildStdout) {
        let (sender, receiver) = watch::channel(Readiness::Starting);
        if let Ok(mut starting) = self.starting.lock() {
            starting.insert(id.as_str().to_owned(), receiver);
        }
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let readiness = loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.trim() == READY_LINE => break Readiness::Ready,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break Readiness::Ended,
                }
            };
            let _ = sender.send(readiness);
            // Keep the pipe open and drained while this process lives: a stray write on
            // the sandbox's stdout never fails or blocks it.
            while let Ok(Some(_)) = lines.next_line().await {}
        });
    }

    /// Waits until the sandbox `id` this process started is ready (`Some(true)`), ended
    /// before it was (`Some(false)`), or `None`: not started by this process.
    async fn wait_ready(&self, id: &SandboxId) -> Option<bool> {
        let receiver = self
            .starting
            .lock()
            .ok()
            .and_then(|starting| starting.get(id.as_str()).cloned());
        let mut receiver = receiver?;
        let waited = tokio::time::timeout(
            SOCKET_WAIT,
            receiver.wait_for(|readiness| *readiness != Readiness::Starting),
        )
        .await;
        let ready = matches!(waited, Ok(Ok(readiness)) if *readiness == Readiness::Ready);
        self.forget_start(id);
        Some(ready)
    }

    fn forget_start(&self, id: &SandboxId) {
        if let Ok(mut starting) = self.starting.lock() {
            starting.remove(id.as_str());
        }
    }

    fn spawn_process(&self, spec: &SandboxSpec, dir: &Path) -> Result<u32, SandboxError> {
        let start_failed = |reason: String| SandboxError::StartFailed {
            id: spec.id.to_string(),
            reason,
        };
        self.prepare_dir(spec, dir).map_err(start_failed)?;
        // The sandbox writes its log (stderr) through the inherited descriptor; nobody else
        // reads it. Its stdout carries the ready line only (see `watch_readiness`).
        let log = std::fs::File::create(dir.join(LOG_FILE))
            .map_err(|err| start_failed(err.to_string()))?;
        set_mode(&dir.join(LOG_FILE), 0o600).map_err(start_failed)?;
        let mut command = self.launch_command(spec, dir);
        command
            .env_clear()
            .envs(self.env_for(spec, dir))
            .current_dir(dir.join(HOME_DIR))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command
            .spawn()
            .map_err(|err| start_failed(format!("cannot run {}: {err}", self.command.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| start_failed("the sandbox process exited at once".into()))?;
        SandboxProcess::started(pid)
            .record_in(dir)
            .map_err(|err| start_failed(err.to_string()))?;
        if let Some(stdout) = child.stdout.take() {
            self.watch_readiness(&spec.id, stdout);
        }
        // Reap the child when it exits (no zombie while we live) and record its exit code
        // for the operator; a sandbox outliving this process is reaped by init instead.
        let exit_code_path = dir.join(EXIT_CODE_FILE);
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                if let Some(code) = status.code() {
                    let _ = std::fs::write(exit_code_path, code.to_string());
                }
            }
        });
        Ok(pid)
    }
}

/// The environment of the sandbox in `dir`: the spec's env (placeholders, API URL, token),
/// the `inherited` variables, `HOME`/`TMPDIR`/`CENTAUR_PROMPTS_DIR` inside `dir`, `USER`
/// and `LOGNAME` for a sandbox user, and, with `egress`, the proxy and CA variables
/// pointing at the CA copied into `dir`. The backend's values win over the spec's.
pub fn sandbox_env(
    spec: &SandboxSpec,
    dir: &Path,
    egress: Option<&LocalEgress>,
    user: Option<&str>,
    inherited: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    env.extend(inherited);
    let path = |name: &str| dir.join(name).display().to_string();
    env.insert("HOME".into(), path(HOME_DIR));
    env.insert("TMPDIR".into(), path(TMP_DIR));
    env.insert("CENTAUR_PROMPTS_DIR".into(), path(PROMPTS_DIR));
    if let Some(user) = user {
        env.insert("USER".into(), user.to_owned());
        env.insert("LOGNAME".into(), user.to_owned());
    }
    if let Some(egress) = egress {
        let api_url = spec.env.get("CENTAUR_API_URL").map_or("", String::as_str);
        env.extend(egress_env(&egress.proxy_url, &path(CA_FILE), api_url));
    }
    env
}

/// bubblewrap's options for the sandbox in `dir`: the machine read-only, private `/proc`
/// (new PID namespace), `/dev` and `/tmp`; the state dir, and its parent when that does
/// not hold the sandbox program, hidden under empty tmpfs; the sandbox's own home, temp
/// and socket dirs writable and its prompts and CA read-only, at their real paths.
fn bwrap_args(state_dir: &Path, dir: &Path, command: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |items: &[&std::ffi::OsStr]| args.extend(items.iter().map(|s| s.into()));
    push(&[
        "--ro-bind".as_ref(),
        "/".as_ref(),
        "/".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
        "--unshare-pid".as_ref(),
        "--unshare-ipc".as_ref(),
        "--unshare-uts".as_ref(),
        "--unshare-cgroup-try".as_ref(),
    ]);
    let mut hidden = Vec::new();
    if let Some(parent) = state_dir.parent() {
        let already_hidden = parent == Path::new("/") || parent == Path::new("/tmp");
        if !already_hidden && !command.starts_with(parent) {
            hidden.push(parent);
        }
    }
    hidden.push(state_dir);
    for path in hidden {
        push(&["--tmpfs".as_ref(), path.as_os_str()]);
    }
    push(&[
        "--ro-bind".as_ref(),
        command.as_os_str(),
        command.as_os_str(),
    ]);
    for own in [HOME_DIR, TMP_DIR, RUN_DIR] {
        let path = dir.join(own);
        push(&["--bind".as_ref(), path.as_os_str(), path.as_os_str()]);
    }
    for shared in [PROMPTS_DIR, CA_FILE] {
        let path = dir.join(shared);
        push(&["--ro-bind-try".as_ref(), path.as_os_str(), path.as_os_str()]);
    }
    let home = dir.join(HOME_DIR);
    push(&["--chdir".as_ref(), home.as_os_str()]);
    args
}

/// The first executable `name` on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

fn make_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|err| format!("cannot create {}: {err}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|err| format!("cannot chmod {:o} {}: {err}", mode, path.display()))
}

/// Whether `uid`/`gid` may search every directory leading to `path` and search (a dir) or
/// execute (a file) `path` itself; the reason when not.
fn reachable_by(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let allows = |meta: &std::fs::Metadata| {
        let mode = meta.mode();
        let bit = if meta.uid() == uid {
            0o100
        } else if meta.gid() == gid {
            0o010
        } else {
            0o001
        };
        mode & bit != 0
    };
    let target = path
        .canonicalize()
        .map_err(|err| format!("cannot resolve it: {err}"))?;
    for ancestor in target.ancestors() {
        let meta = std::fs::metadata(ancestor)
            .map_err(|err| format!("cannot stat {}: {err}", ancestor.display()))?;
        if !allows(&meta) {
            let what = if ancestor == target && !meta.is_dir() {
                "not executable"
            } else {
                "not searchable"
            };
            return Err(format!(
                "{} is {what} by it (mode {:o}, owner {}:{}); \
                 chmod o+x it or move the path",
                ancestor.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ));
        }
    }
    Ok(())
}

/// Connects to `socket` once it appears in `dir`, giving up after `wait`: inotify wakes
/// the wait when the sandbox binds it (no polling interval). On a blocking thread.
async fn socket_appears(dir: &Path, socket: &Path, wait: Duration) -> Result<UnixStream, String> {
    let (dir, socket) = (dir.to_path_buf(), socket.to_path_buf());
    let stream = tokio::task::spawn_blocking(move || wait_for_socket(&dir, &socket, wait))
        .await
        .map_err(|err| format!("waiting for the socket: {err}"))??;
    stream
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(stream))
        .map_err(|err| err.to_string())
}

fn wait_for_socket(
    dir: &Path,
    socket: &Path,
    wait: Duration,
) -> Result<std::os::unix::net::UnixStream, String> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|err| format!("inotify: {err}"))?;
    inotify
        .add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
        .map_err(|err| format!("cannot watch {}: {err}", dir.display()))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        // Tried after the watch is in place: a socket bound before it is not missed.
        let refused = match std::os::unix::net::UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            // Bound but not listening yet: the next moment will do.
            Err(err) => err.kind() == std::io::ErrorKind::ConnectionRefused,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{} did not appear within {wait:?}",
                socket.display()
            ));
        }
        let timeout = if refused {
            PollTimeout::from(1_u8)
        } else {
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
        };
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let woken = poll(&mut fds, timeout).map_err(|err| format!("inotify: {err}"))?;
        if woken > 0 {
            inotify
                .read_events()
                .map_err(|err| format!("inotify: {err}"))?;
        }
    }
}

struct SocketSink(OwnedWriteHalf);

#[async_trait]
impl LineSink for SocketSink {
    async fn send_line(&mut self, line: &str) -> Result<(), SandboxError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.0
            .write_all(&bytes)
            .await
            .map_err(|err| SandboxError::Io(err.to_string()))
    }
}

#[async_trait]
impl SandboxBackend for LocalBackend {
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxId, SandboxError> {
        let dir = self.dir(&spec.id);
        if dir.is_dir() {
            if let SandboxStatus::Running | SandboxStatus::Pending = self.local_status(&spec.id) {
                return Ok(spec.id.clone());
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).map_err(|err| SandboxError::StartFailed {
            id: spec.id.to_string(),
            reason: err.to_string(),
        })?;
        self.spawn_process(spec, &dir)?;
        Ok(spec.id.clone())
    }

    async fn attach(&self, id: &SandboxId) -> Result<Attachment, SandboxError> {
        let run_dir = self.dir(id).join(RUN_DIR);
        let socket = run_dir.join(SOCKET_FILE);
        let gone = |detail: String| SandboxError::Gone {
            id: id.to_string(),
            detail,
        };
        let stream = match self.wait_ready(id).await {
            // Started here: its ready line says the socket listens.
            Some(true) => UnixStream::connect(&socket)
                .await
                .map_err(|err| gone(format!("cannot connect to {}: {err}", socket.display())))?,
            Some(false) => {
                return Err(gone(format!(
                    "the sandbox ended before its socket listened ({:?})",
                    self.local_status(id)
                )))
            }
            // Started by another process (a dispatcher before a restart): its socket
            // normally listens already; else it appears in the run dir.
            None => match UnixStream::connect(&socket).await {
                Ok(stream) => stream,
                Err(err) => {
                    let status = self.local_status(id);
                    if !status.is_alive() {
                        return Err(gone(format!(
                            "cannot connect to {}: {err} ({status:?})",
                            socket.display()
                        )));
                    }
                    socket_appears(&run_dir, &socket, SOCKET_WAIT)
                        .await
                        .map_err(gone)?
                }
            },
        };
        let (read_half, write_half) = stream.into_split();
        let lines = tokio_stream::wrappers::LinesStream::new(BufReader::new(read_half).lines())
            .map(|line| line.map_err(|err| SandboxError::Io(err.to_string())));
        Ok(Attachment {
            input: Box::new(SocketSink(write_half)),
            output: lines.boxed(),
        })
    }

    async fn status(&self, id: &SandboxId) -> Result<SandboxStatus, SandboxError> {
        Ok(self.local_status(id))
    }

    async fn stop(&self, id: &SandboxId) -> Result<(), SandboxError> {
        self.forget_start(id);
        let dir = self.dir(id);
        if let Some(process) = SandboxProcess::recorded_in(&dir) {
            if process.is_alive() {
                process.signal_group(Signal::SIGTERM);
                let deadline = tokio::time::Instant::now() + STOP_GRACE;
                while process.is_alive() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Also when the leader has exited: its harness CLIs may still be running.
                process.signal_group(Signal::SIGKILL);
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(SandboxError::Backend(format!(
                "cannot remove {}: {err}",
                dir.display()
            ))),
        }
    }

    async fn list_managed(&self) -> Result<Vec<ManagedSandbox>, SandboxError> {
        let entries = std::fs::read_dir(&self.state_dir).map_err(|err| {
            SandboxError::Backend(format!("cannot list {}: {err}", self.state_dir.display()))
        })?;
        let mut sandboxes = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let id = SandboxId::from_stored(name);
            let stored: Option<StoredSpec> = std::fs::read(entry.path().join(SPEC_FILE))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            sandboxes.push(ManagedSandbox {
                status: self.local_status(&id),
                harness: stored.as_ref().map(|s| s.harness.clone()),
                warm: stored.as_ref().is_some_and(|s| s.warm),
                id,
            });
        }
        Ok(sandboxes)
    }

    fn backend_name(&self) -> &'static str {
        "local"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centaur_core::Harness;

    fn spec(id: &str) -> SandboxSpec {
        SandboxSpec {
            id: SandboxId::from_stored(id),
            harness: Harness::Echo,
            thread_key: Some("t".into()),
            env: [
                ("CENTAUR_API_URL", "http://127.0.0.1:8000"),
                ("OPENAI_API_KEY", "OPENAI_API_KEY"),
                ("HOME", "/root"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            prompt_files: [("AGENTS_BASE.md".to_owned(), "base".to_owned())].into(),
            warm: false,
        }
    }

    fn egress() -> LocalEgress {
        LocalEgress {
            proxy_url: "http://127.0.0.1:8080".into(),
            ca_file: "/etc/mitmproxy/mitmproxy-ca-cert.pem".into(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("centaur-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_sandbox_gets_its_own_home_and_temp_dir_and_no_proxy_without_one() {
        let dir = Path::new("/state/sbx-1");
        let env = sandbox_env(
            &spec("sbx-1"),
            dir,
            None,
            Some("centaur-sandbox"),
            [("PATH".to_owned(), "/usr/bin".to_owned())].into(),
        );
        assert_eq!(env["HOME"], "/state/sbx-1/home");
        assert_eq!(env["TMPDIR"], "/state/sbx-1/tmp");
        assert_eq!(env["CENTAUR_PROMPTS_DIR"], "/state/sbx-1/prompts");
        assert_eq!(env["PATH"], "/usr/bin");
        assert_eq!(env["USER"], "centaur-sandbox");
        assert_eq!(env["OPENAI_API_KEY"], "OPENAI_API_KEY");
        for name in crate::egress::CA_VARS
            .iter()
            .chain(&crate::egress::NO_PROXY_VARS)
        {
            assert!(!env.contains_key(*name), "{name}: {env:?}");
        }
        for name in crate::egress::PROXY_VARS {
            assert!(!env.contains_key(name), "{name}: {env:?}");
        }
    }

    #[test]
    fn with_a_proxy_a_sandbox_gets_the_pod_egress_contract_with_its_ca_copy() {
        let mut spec = spec("sbx-1");
        spec.env
            .insert("HTTPS_PROXY".into(), "http://caller.example:1".into());
        let env = sandbox_env(
            &spec,
            Path::new("/state/sbx-1"),
            Some(&egress()),
            None,
            BTreeMap::new(),
        );
        let expected = egress_env(
            "http://127.0.0.1:8080",
            "/state/sbx-1/ca.crt",
            "http://127.0.0.1:8000",
        );
        for (name, value) in &expected {
            assert_eq!(&env[name], value, "{name}");
        }
        assert_eq!(
            env["HTTPS_PROXY"], "http://127.0.0.1:8080",
            "not the caller's"
        );
        assert_eq!(env["SSL_CERT_FILE"], "/state/sbx-1/ca.crt");
        assert!(!env.contains_key("USER"));
    }

    #[test]
    fn bubblewrap_hides_the_state_dir_and_its_parent_but_not_the_program() {
        let args = bwrap_args(
            Path::new("/repo/.centaur/sandboxes"),
            Path::new("/repo/.centaur/sandboxes/sbx-1"),
            Path::new("/repo/target/debug/sandbox"),
        );
        let args: Vec<String> = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        for expected in [
            "--ro-bind / /",
            "--proc /proc",
            "--unshare-pid",
            "--tmpfs /repo/.centaur --tmpfs /repo/.centaur/sandboxes",
            "--ro-bind /repo/target/debug/sandbox /repo/target/debug/sandbox",
            "--bind /repo/.centaur/sandboxes/sbx-1/home /repo/.centaur/sandboxes/sbx-1/home",
            "--bind /repo/.centaur/sandboxes/sbx-1/run /repo/.centaur/sandboxes/sbx-1/run",
            "--ro-bind-try /repo/.centaur/sandboxes/sbx-1/prompts",
            "--chdir /repo/.centaur/sandboxes/sbx-1/home",
        ] {
            assert!(
                joined.contains(expected),
                "{expected} missing from {joined}"
            );
        }
        assert!(!joined.contains("--bind /repo/.centaur/sandboxes/sbx-1 "));
        // The parent holding the program itself stays visible.
        let args = bwrap_args(
            Path::new("/repo/sandboxes"),
            Path::new("/repo/sandboxes/sbx-1"),
            Path::new("/repo/target/debug/sandbox"),
        );
        let joined = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!joined.contains("--tmpfs /repo "), "{joined}");
        assert!(joined.contains("--tmpfs /repo/sandboxes"), "{joined}");
    }

    #[test]
    fn an_unsearchable_directory_on_the_way_is_named() {
        let dir = temp_dir("reach");
        let locked = dir.join("locked");
        std::fs::create_dir_all(locked.join("inner")).expect("dir");
        set_mode(&dir, 0o755).expect("chmod");
        set_mode(&locked, 0o700).expect("chmod");
        let err = reachable_by(&locked.join("inner"), 65_534, 65_534).expect_err("locked");
        assert!(err.contains(&locked.display().to_string()), "{err}");
        assert!(err.contains("not searchable"), "{err}");
        set_mode(&locked, 0o711).expect("chmod");
        reachable_by(&locked.join("inner"), 65_534, 65_534).expect("searchable");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn isolation_off_is_explicit_and_a_missing_user_says_how_to_create_it() {
        let off = LocalSandboxConfig {
            ca_file: None,
            user: "nobody-here".into(),
            isolation: false,
        };
        assert_eq!(Isolation::from_config(&off), Ok(Isolation::Off));
        let err = Isolation::sandbox_user("centaur-no-such-user").expect_err("missing");
        let message = err.to_string();
        assert!(message.contains("SANDBOX_LOCAL_USER"), "{message}");
        assert!(message.contains("useradd"), "{message}");
        let err = Isolation::sandbox_user("root").expect_err("root");
        assert!(err.to_string().contains("unprivileged"), "{err}");
    }

    /// A stand-in `sandbox` program: records its environment and arguments, then exits.
    fn recording_program(dir: &Path) -> PathBuf {
        let program = dir.join("record-env");
        std::fs::write(
            &program,
            "#!/bin/sh\nenv > \"$HOME/env.txt\"\necho \"$@\" > \"$HOME/args.txt\"\n",
        )
        .expect("script");
        set_mode(&program, 0o755).expect("chmod");
        program
    }

    async fn recorded_env(backend: &LocalBackend, id: &str) -> String {
        let id = SandboxId::from_stored(id);
        backend.create(&spec(id.as_str())).await.expect("create");
        let file = backend.dir(&id).join(HOME_DIR).join("env.txt");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if !backend.local_status(&id).is_alive() {
                if let Ok(env) = std::fs::read_to_string(&file) {
                    return env;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the program never wrote {}",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn local_sandboxes_get_the_egress_env_only_when_a_proxy_is_configured() {
        let dir = temp_dir("egress");
        let program = recording_program(&dir);
        let ca = dir.join("proxy-ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("ca");

        let plain =
            LocalBackend::new(&program, dir.join("plain"), Isolation::Off).expect("backend");
        let env = recorded_env(&plain, "sbx-plain").await;
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE"] {
            assert!(!env.contains(&format!("{name}=")), "{name} in {env}");
        }
        let home = plain
            .dir(&SandboxId::from_stored("sbx-plain"))
            .join(HOME_DIR);
        assert!(env.contains(&format!("HOME={}\n", home.display())), "{env}");

        let proxied = LocalBackend::new(&program, dir.join("proxied"), Isolation::Off)
            .expect("backend")
            .with_egress(Some(LocalEgress {
                proxy_url: "http://127.0.0.1:18080".into(),
                ca_file: ca.clone(),
            }));
        let env = recorded_env(&proxied, "sbx-proxied").await;
        let sandbox_dir = proxied.dir(&SandboxId::from_stored("sbx-proxied"));
        let ca_copy = sandbox_dir.join(CA_FILE);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert!(
                env.contains(&format!("{name}=http://127.0.0.1:18080\n")),
                "{name}: {env}"
            );
        }
        assert!(env.contains("NO_PROXY=localhost,127.0.0.1\n"), "{env}");
        for name in crate::egress::CA_VARS {
            assert!(
                env.contains(&format!("{name}={}\n", ca_copy.display())),
                "{name}: {env}"
            );
        }
        assert_eq!(
            std::fs::read(&ca_copy).expect("copy"),
            std::fs::read(&ca).expect("original")
        );
        let args =
            std::fs::read_to_string(sandbox_dir.join(HOME_DIR).join("args.txt")).expect("args");
        assert_eq!(
            args.trim(),
            format!(
                "--harness echo --listen {}",
                sandbox_dir.join(RUN_DIR).join(SOCKET_FILE).display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
