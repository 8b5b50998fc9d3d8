//! graphile-worker (npm), the peer the drain figure is compared with: installed into a
//! scratch directory with npm, run with its default settings at a given concurrency
//! against a database of its own on the same Postgres server, draining no-op jobs.

use std::path::PathBuf;
use std::process::Command;

/// The version the figures were taken with.
pub const VERSION: &str = "0.18.0";

const DRAIN_JS: &str = r#"
const { run, runMigrations, makeWorkerUtils, Logger } = require("graphile-worker");
const { Client } = require("pg");
const jobs = Number(process.env.JOBS);
const concurrency = Number(process.env.CONCURRENCY);
const connectionString = process.env.DATABASE_URL;
// Default settings, but silent: a log line per job would measure the terminal.
const logger = new Logger(() => (level, message) => {
  if (level === "error") console.error(message);
});
// One value read on a connection of its own (the worker's pool is busy or stopped).
async function readOne(sql, params) {
  const client = new Client({ connectionString });
  await client.connect();
  const { rows } = await client.query(sql, params);
  await client.end();
  return Object.values(rows[0])[0];
}
// The server's WAL insert position: what the drain wrote is the difference.
const walPosition = () => readOne("SELECT pg_current_wal_insert_lsn()::text");
const walSince = async (start) => Number(await readOne(
  "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::bigint", [start]));
// The server's CPU clock ticks so far, as the Rust side reads them (support/pg_cpu.rs):
// the postmaster's own and its reaped children's, plus its live children's. Null when the
// server's processes are not readable here.
const fs = require("fs");
const statFields = (pid) => {
  const line = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  return line.slice(line.lastIndexOf(")") + 2).split(" "); // [1] ppid, [11..14] times
};
const serverTicks = (checkpointer) => {
  try {
    const postmaster = Number(statFields(checkpointer)[1]);
    const own = statFields(postmaster).slice(11, 15).map(Number);
    let ticks = own.reduce((a, b) => a + b, 0);
    for (const entry of fs.readdirSync("/proc").filter((name) => /^[0-9]+$/.test(name))) {
      try {
        const fields = statFields(entry);
        if (Number(fields[1]) === postmaster) ticks += Number(fields[11]) + Number(fields[12]);
      } catch (_) { /* exited meanwhile */ }
    }
    return ticks;
  } catch (_) {
    return null;
  }
};
(async () => {
  await runMigrations({ connectionString, logger });
  const utils = await makeWorkerUtils({ connectionString, logger });
  const specs = Array.from({ length: jobs }, (_, i) => ({ identifier: "noop", payload: { i } }));
  for (let i = 0; i < jobs; i += 1000) await utils.addJobs(specs.slice(i, i + 1000));
  await utils.release();
  const checkpointer = await readOne(
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
  const walStart = await walPosition();
  const ticksStart = serverTicks(checkpointer);
  let done = 0;
  let started = null;
  let seconds = null;
  const runner = await run({
    connectionString, concurrency, logger, noHandleSignals: true,
    taskList: { noop: async () => {} },
  });
  runner.events.on("job:start", () => {
    if (started === null) started = process.hrtime.bigint();
  });
  runner.events.on("job:success", () => {
    done += 1;
    if (done === jobs) {
      seconds = Number(process.hrtime.bigint() - started) / 1e9;
      runner.stop();
    }
  });
  await runner.promise;
  const ticksEnd = serverTicks(checkpointer);
  const server_ticks = ticksStart === null || ticksEnd === null ? null : ticksEnd - ticksStart;
  const wal_bytes = await walSince(walStart);
  console.log(JSON.stringify({ jobs, concurrency, seconds, wal_bytes, server_ticks }));
})().catch((err) => { console.error(err); process.exit(1); });
"#;

/// The scratch directory graphile-worker is installed in (kept between runs).
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("centaur-bench-graphile-worker-{VERSION}"))
}

/// Installs graphile-worker with npm (once) and writes the drain script; returns the
/// script's path, or why it cannot run.
pub fn install() -> Result<PathBuf, String> {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
    let installed = dir
        .join("node_modules/graphile-worker/package.json")
        .is_file();
    if !installed {
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&dir)
            .arg(format!("graphile-worker@{VERSION}"))
            .status()
            .map_err(|err| format!("cannot run npm: {err}"))?;
        if !status.success() {
            return Err(format!(
                "npm install graphile-worker@{VERSION} failed: {status}"
            ));
        }
    }
    let script = dir.join("drain.js");
    std::fs::write(&script, DRAIN_JS).map_err(|err| err.to_string())?;
    Ok(script)
}

/// What a drain took.
pub struct Drained {
    /// From the first job's start to the last job's success.
    pub seconds: f64,
    /// WAL the server wrote from the worker's start to its stop (its own start-up and
    /// shutdown included).
    pub wal_bytes: f64,
    /// The server's CPU time over the same span, when its processes are readable here.
    pub server_seconds: Option<f64>,
}

/// Drains `jobs` no-op jobs queued before the worker starts, at `concurrency`, on
/// `database_url`.
pub fn drain(
    script: &std::path::Path,
    database_url: &str,
    jobs: usize,
    concurrency: usize,
) -> Result<Drained, String> {
    let output = Command::new("node")
        .arg(script)
        .env("DATABASE_URL", database_url)
        .env("JOBS", jobs.to_string())
        .env("CONCURRENCY", concurrency.to_string())
        .output()
        .map_err(|err| format!("cannot run node: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "graphile-worker drain failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .ok_or_else(|| format!("no result from the drain script: {stdout}"))?;
    let value: serde_json::Value = serde_json::from_str(line).map_err(|err| err.to_string())?;
    let number = |field: &str| {
        value[field]
            .as_f64()
            .ok_or_else(|| format!("no {field} in {line}"))
    };
    Ok(Drained {
        seconds: number("seconds")?,
        wal_bytes: number("wal_bytes")?,
        server_seconds: value["server_ticks"]
            .as_f64()
            .map(|ticks| ticks / procfs::ticks_per_second() as f64),
    })
}
