//! `api` and `dispatcher` started by hand for the figures that need each process on a
//! database URL of its own (through a counting proxy): the same environment the test
//! stack gives them (Postgres queue, local sandboxes, echo harness).

use centaur_config::{DispatcherConfig, Env};
use centaur_sandbox::{Isolation, LocalBackend, LocalEgress};
use centaur_tests::binaries::binary;
use centaur_tests::stack::{
    ensure_sandbox_user, free_port, kill_local_sandboxes, TEST_SIGNING_KEY,
};
use centaur_tests::{until, ChildProcess, TestDatabase};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A database, an `api` and dispatchers, each process with the database URL it was given.
pub struct Processes {
    pub database: TestDatabase,
    pub api_url: String,
    work_dir: PathBuf,
    env: BTreeMap<String, String>,
    api: Option<ChildProcess>,
    /// The dispatchers started, with their `DISPATCHER_PORT`.
    dispatchers: Vec<(ChildProcess, u16)>,
}

async fn wait_ok(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    until(Duration::from_secs(30), url, || async {
        client
            .get(url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await
}

impl Processes {
    /// A fresh database and the shared environment; nothing started yet.
    pub async fn new(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        ensure_sandbox_user()?;
        let database = TestDatabase::create().await?;
        let name = database.name().to_owned();
        let work_dir = std::env::temp_dir().join(format!("centaur-bench-{name}"));
        std::fs::create_dir_all(work_dir.join("sandboxes"))?;
        let api_url = format!("http://127.0.0.1:{}", free_port()?);
        let mut env: BTreeMap<String, String> = [
            ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
            ("CENTAUR_DEFAULT_HARNESS", "echo"),
            ("QUEUE_BACKEND", "postgres"),
            ("SANDBOX_BACKEND", "local"),
            ("CENTAUR_API_URL", api_url.as_str()),
            ("RUST_LOG", "warn"),
            ("EXECUTION_LEASE_S", "60"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert(
            "SANDBOX_COMMAND".into(),
            binary("sandbox").display().to_string(),
        );
        env.insert(
            "SANDBOX_STATE_DIR".into(),
            work_dir.join("sandboxes").display().to_string(),
        );
        Ok(Self {
            database,
            api_url,
            work_dir,
            env,
            api: None,
            dispatchers: Vec::new(),
        })
    }

    /// Starts `api` on `database_url` and waits for `/health/live`.
    pub async fn start_api(&mut self, database_url: &str) -> anyhow::Result<()> {
        let mut env = self.env.clone();
        env.insert("DATABASE_URL".into(), database_url.to_owned());
        let port = self.api_url.rsplit(':').next().unwrap_or("8000").to_owned();
        env.insert("PORT".into(), port);
        let api = ChildProcess::spawn("api", &binary("api"), &[], &env, &self.work_dir)?;
        self.api = Some(api);
        wait_ok(&format!("{}/health/live", self.api_url)).await
    }

    /// Starts a dispatcher on `database_url` (with `extra` environment) and waits for
    /// `/readyz`.
    pub async fn start_dispatcher(
        &mut self,
        database_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let index = self.dispatchers.len();
        let port = free_port()?;
        let mut env = self.env.clone();
        env.insert("DATABASE_URL".into(), database_url.to_owned());
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env.insert("DISPATCHER_PORT".into(), port.to_string());
        env.insert("DISPATCHER_WORKER_ID".into(), format!("bench-{index}"));
        let name = format!("dispatcher-{index}");
        let process = ChildProcess::spawn(&name, &binary("dispatcher"), &[], &env, &self.work_dir)?;
        self.dispatchers.push((process, port));
        wait_ok(&format!("http://127.0.0.1:{port}/readyz")).await
    }

    /// The sandbox backend a dispatcher started here builds from the same environment:
    /// the same program, state directory, isolation and egress settings.
    pub fn sandbox_backend(&self) -> anyhow::Result<LocalBackend> {
        let mut env = self.env.clone();
        env.insert("DATABASE_URL".into(), self.database.url.clone());
        let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let config = DispatcherConfig::from_env(&env)?;
        let isolation = Isolation::from_config(&config.sandbox.local)?;
        Ok(LocalBackend::new(
            &config.sandbox_command,
            &config.sandbox_state_dir,
            isolation,
        )?
        .with_egress(LocalEgress::from_config(&config.sandbox)))
    }

    /// The API's process id, once started.
    pub fn api_pid(&self) -> Option<u32> {
        self.api.as_ref().map(ChildProcess::pid)
    }

    /// The newest dispatcher's process id and `/metrics` address, once started.
    pub fn dispatcher(&self) -> Option<(u32, String)> {
        self.dispatchers.last().map(|(dispatcher, port)| {
            (dispatcher.pid(), format!("http://127.0.0.1:{port}/metrics"))
        })
    }

    /// Where the sandboxes keep their state (and their recorded process ids).
    pub fn sandbox_dir(&self) -> PathBuf {
        self.work_dir.join("sandboxes")
    }

    /// Kills the dispatchers (SIGKILL); sandboxes and the API keep running.
    pub fn kill_dispatchers(&mut self) {
        for (dispatcher, _) in &mut self.dispatchers {
            dispatcher.sigkill();
        }
    }

    /// Peak RSS (VmHWM) of the API and of the newest dispatcher, in KiB.
    pub fn peak_rss_kib(&self) -> (Option<u64>, Option<u64>) {
        (
            self.api.as_ref().and_then(ChildProcess::peak_rss_kib),
            self.dispatchers
                .last()
                .and_then(|(dispatcher, _)| dispatcher.peak_rss_kib()),
        )
    }

    /// Kills every process and sandbox and drops the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.kill_all();
        self.database.drop_database().await
    }

    fn kill_all(&mut self) {
        self.kill_dispatchers();
        if let Some(api) = self.api.as_mut() {
            api.sigkill();
        }
        kill_local_sandboxes(&self.sandbox_dir());
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}
