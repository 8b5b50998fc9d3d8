//! The local-process backend (`SANDBOX_BACKEND=local`): each sandbox is a `sandbox`
//! process serving a Unix socket in its own directory under the state dir. Processes are
//! detached (own process group) so they outlive a crashed dispatcher, and any dispatcher
//! sharing the state dir can re-attach to them. Egress is direct: this backend is for one
//! machine and is not credential-safe.

use crate::{
    Attachment, LineSink, ManagedSandbox, SandboxBackend, SandboxError, SandboxSpec, SandboxStatus,
};
use async_trait::async_trait;
use centaur_core::SandboxId;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;

const PID_FILE: &str = "pid";
const SPEC_FILE: &str = "spec.json";
const SOCKET_FILE: &str = "sandbox.sock";
const LOG_FILE: &str = "sandbox.log";
const EXIT_CODE_FILE: &str = "exit_code";
/// How long `attach` waits for a just-started sandbox to open its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the backend records about a sandbox next to its process.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSpec {
    harness: String,
    warm: bool,
    thread_key: Option<String>,
}

/// Runs sandboxes as local child processes.
pub struct LocalBackend {
    command: PathBuf,
    state_dir: PathBuf,
}

impl LocalBackend {
    /// A backend running `command` (the `sandbox` program), keeping state in `state_dir`.
    pub fn new(
        command: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> Result<Self, SandboxError> {
        let state_dir = state_dir.into();
        std::fs::create_dir_all(&state_dir).map_err(|err| {
            SandboxError::Backend(format!(
                "cannot create sandbox state dir {}: {err}",
                state_dir.display()
            ))
        })?;
        Ok(Self {
            command: command.into(),
            state_dir,
        })
    }

    fn dir(&self, id: &SandboxId) -> PathBuf {
        self.state_dir.join(id.as_str())
    }

    fn read_pid(dir: &Path) -> Option<u32> {
        std::fs::read_to_string(dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn local_status(&self, id: &SandboxId) -> SandboxStatus {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return SandboxStatus::Gone {
                detail: format!("local sandbox {id} does not exist (no state directory)"),
            };
        }
        match Self::read_pid(&dir) {
            Some(pid) if process_is_alive(pid) => SandboxStatus::Running,
            Some(pid) => SandboxStatus::Exited {
                code: std::fs::read_to_string(dir.join(EXIT_CODE_FILE))
                    .ok()
                    .and_then(|code| code.trim().parse().ok()),
                detail: format!(
                    "local sandbox {id} process {pid} has exited; its log is {}",
                    dir.join(LOG_FILE).display()
                ),
            },
            None => SandboxStatus::Pending,
        }
    }

    fn spawn_process(&self, spec: &SandboxSpec, dir: &Path) -> Result<u32, SandboxError> {
        let start_failed = |reason: String| SandboxError::StartFailed {
            id: spec.id.to_string(),
            reason,
        };
        let prompts = dir.join("prompts");
        std::fs::create_dir_all(&prompts).map_err(|err| start_failed(err.to_string()))?;
        for (name, content) in &spec.prompt_files {
            let file_name = Path::new(name)
                .file_name()
                .ok_or_else(|| start_failed(format!("bad prompt file name {name}")))?;
            std::fs::write(prompts.join(file_name), content)
                .map_err(|err| start_failed(err.to_string()))?;
        }
        let stored = StoredSpec {
            harness: spec.harness.as_str().to_owned(),
            warm: spec.warm,
            thread_key: spec.thread_key.clone(),
        };
        let json = serde_json::to_vec(&stored).map_err(|err| start_failed(err.to_string()))?;
        std::fs::write(dir.join(SPEC_FILE), json).map_err(|err| start_failed(err.to_string()))?;
        let log = std::fs::File::create(dir.join(LOG_FILE))
            .map_err(|err| start_failed(err.to_string()))?;
        let log_err = log
            .try_clone()
            .map_err(|err| start_failed(err.to_string()))?;
        let mut command = tokio::process::Command::new(&self.command);
        command
            .arg("--harness")
            .arg(spec.harness.as_str())
            .arg("--listen")
            .arg(dir.join(SOCKET_FILE))
            .env_clear()
            .envs(&spec.env)
            .env("CENTAUR_PROMPTS_DIR", &prompts)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        for inherited in ["PATH", "HOME", "TMPDIR", "RUST_LOG"] {
            if let Ok(value) = std::env::var(inherited) {
                command.env(inherited, value);
            }
        }
        let mut child = command
            .spawn()
            .map_err(|err| start_failed(format!("cannot run {}: {err}", self.command.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| start_failed("the sandbox process exited at once".into()))?;
        std::fs::write(dir.join(PID_FILE), pid.to_string())
            .map_err(|err| start_failed(err.to_string()))?;
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

/// True if `pid` names a live (non-zombie) process.
fn process_is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: "pid (comm) state ..."; comm may contain spaces, so split after ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

async fn send_signal(pid: u32, signal: &str) {
    let _ = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
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
        let socket = self.dir(id).join(SOCKET_FILE);
        let deadline = tokio::time::Instant::now() + SOCKET_WAIT;
        let stream = loop {
            match UnixStream::connect(&socket).await {
                Ok(stream) => break stream,
                Err(err) => {
                    let status = self.local_status(id);
                    if !status.is_alive() || tokio::time::Instant::now() > deadline {
                        return Err(SandboxError::Gone {
                            id: id.to_string(),
                            detail: format!(
                                "cannot connect to {}: {err} ({status:?})",
                                socket.display()
                            ),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
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
        let dir = self.dir(id);
        if let Some(pid) = Self::read_pid(&dir) {
            if process_is_alive(pid) {
                send_signal(pid, "TERM").await;
                let deadline = tokio::time::Instant::now() + STOP_GRACE;
                while process_is_alive(pid) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if process_is_alive(pid) {
                    send_signal(pid, "KILL").await;
                }
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
