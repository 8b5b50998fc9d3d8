//! Where a drain's time goes, read before and after it: the dispatcher's steps
//! (`centaur_dispatcher_step_seconds` on its `/metrics`: time and calls per turn) and the
//! CPU each party used per turn (the Postgres server, the dispatcher, the sandboxes, and
//! the whole machine), so a slot's time per turn can be split into waiting and working.

use crate::pg_cpu;
use crate::processes::Processes;
use centaur_sandbox::local::SandboxProcess;
use procfs::process::Process;
use procfs::{CurrentSI, KernelStats};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const STEP_SUM: &str = "centaur_dispatcher_step_seconds_sum{step=\"";
const STEP_COUNT: &str = "centaur_dispatcher_step_seconds_count{step=\"";

/// What the parties had used at one moment.
pub struct Reading {
    /// Per step: seconds and calls so far.
    steps: BTreeMap<String, (f64, f64)>,
    postgres: Option<f64>,
    dispatcher: Option<f64>,
    sandboxes: f64,
    /// Busy and total CPU seconds of the whole machine (`/proc/stat`).
    machine: Option<(f64, f64)>,
}

/// Where to read the server's and the sandboxes' CPU from.
pub struct Parties {
    checkpointer: Option<i32>,
    sandbox_dir: PathBuf,
}

/// The parties of `processes` on `pool`'s server, read once before the dispatcher starts
/// (it has used nothing yet).
pub async fn before_dispatcher(processes: &Processes, pool: &sqlx::PgPool) -> (Parties, Reading) {
    let parties = Parties {
        checkpointer: pg_cpu::checkpointer(pool).await,
        sandbox_dir: processes.sandbox_dir(),
    };
    let before = parties.read(None).await;
    (parties, before)
}

impl Parties {
    /// Reads every party now, with the newest dispatcher of `processes`.
    pub async fn read_with(&self, processes: &Processes) -> Reading {
        self.read(processes.dispatcher()).await
    }

    /// Reads every party now; with no `dispatcher` (its process id and `/metrics`
    /// address; none: not started yet), it has used nothing.
    async fn read(&self, dispatcher: Option<(u32, String)>) -> Reading {
        let (steps, dispatcher_cpu) = match dispatcher {
            Some((pid, metrics_url)) => (steps(&metrics_url).await, pg_cpu::process_seconds(pid)),
            None => (BTreeMap::new(), Some(0.0)),
        };
        Reading {
            steps,
            postgres: self.checkpointer.and_then(pg_cpu::server_seconds),
            dispatcher: dispatcher_cpu,
            sandboxes: sandbox_seconds(&self.sandbox_dir),
            machine: machine_seconds(),
        }
    }
}

impl Reading {
    /// The Postgres server's CPU seconds per turn between `before` and this reading.
    pub fn postgres_per_turn(&self, before: &Reading, turns: usize) -> Option<f64> {
        Some((self.postgres? - before.postgres?) / turns as f64)
    }

    /// Prints, per turn, the time and calls of each step the dispatcher took, and the CPU
    /// each party used, between `before` and this reading.
    pub fn print_since(&self, before: &Reading, turns: usize) {
        let per_turn = |seconds: f64| seconds * 1000.0 / turns as f64;
        let mut steps: Vec<(&String, f64, f64)> = self
            .steps
            .iter()
            .map(|(step, (seconds, calls))| {
                let (seconds_before, calls_before) =
                    before.steps.get(step).copied().unwrap_or_default();
                (step, seconds - seconds_before, calls - calls_before)
            })
            .filter(|(_, _, calls)| *calls > 0.0)
            .collect();
        steps.sort_by(|a, b| b.1.total_cmp(&a.1));
        let listed: Vec<String> = steps
            .iter()
            .map(|(step, seconds, calls)| {
                format!(
                    "{step} {:.2} ms ×{:.1}",
                    per_turn(*seconds),
                    calls / turns as f64
                )
            })
            .collect();
        println!(
            "  dispatcher steps per turn (time, calls): {}",
            listed.join(", ")
        );
        let cpu = |label: &str, seconds: Option<f64>| {
            seconds.map_or(format!("{label} ?"), |s| {
                format!("{label} {:.2} ms", per_turn(s))
            })
        };
        let machine = self.machine.zip(before.machine).map(|(after, before)| {
            let (busy, total) = (after.0 - before.0, after.1 - before.1);
            (busy, busy / total)
        });
        println!(
            "  CPU per turn: {}, {}, {}, {}{}",
            cpu(
                "Postgres",
                self.postgres.zip(before.postgres).map(|(a, b)| a - b)
            ),
            cpu(
                "dispatcher",
                self.dispatcher.zip(before.dispatcher).map(|(a, b)| a - b)
            ),
            cpu("sandboxes", Some(self.sandboxes - before.sandboxes)),
            cpu("machine", machine.map(|(busy, _)| busy)),
            machine.map_or(String::new(), |(_, share)| format!(
                " ({:.0} % of its CPUs busy)",
                share * 100.0
            )),
        );
    }
}

/// Seconds and calls per step, off the dispatcher's `/metrics` (empty if unreadable).
async fn steps(metrics_url: &str) -> BTreeMap<String, (f64, f64)> {
    let Ok(response) = reqwest::get(metrics_url).await else {
        return BTreeMap::new();
    };
    let text = response.text().await.unwrap_or_default();
    let mut steps: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let (slot, rest) = if let Some(rest) = line.strip_prefix(STEP_SUM) {
            (0, rest)
        } else if let Some(rest) = line.strip_prefix(STEP_COUNT) {
            (1, rest)
        } else {
            continue;
        };
        let Some((step, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let entry = steps.entry(step.to_owned()).or_default();
        if slot == 0 {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    steps
}

/// CPU seconds the sandboxes recorded under `state_dir` have used (those alive now), summed
/// over their threads off `schedstat`, in nanoseconds: a sandbox that ran one turn used
/// less than the 10 ms tick `/proc/<pid>/stat` counts in.
fn sandbox_seconds(state_dir: &Path) -> f64 {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return 0.0;
    };
    let nanoseconds: u64 = entries
        .flatten()
        .filter_map(|entry| SandboxProcess::recorded_in(&entry.path()))
        .filter_map(|process| threads_runtime(process.pid))
        .sum();
    nanoseconds as f64 / 1e9
}

/// Nanoseconds on CPU of process `pid`'s live threads.
fn threads_runtime(pid: u32) -> Option<u64> {
    let process = Process::new(i32::try_from(pid).ok()?).ok()?;
    Some(
        process
            .tasks()
            .ok()?
            .flatten()
            .filter_map(|task| task.schedstat().ok())
            .map(|stat| stat.sum_exec_runtime)
            .sum(),
    )
}

/// Busy and total CPU seconds of the machine since boot, all CPUs.
fn machine_seconds() -> Option<(f64, f64)> {
    let stat = KernelStats::current().ok()?;
    let total = &stat.total;
    let idle = total.idle + total.iowait.unwrap_or(0);
    let busy = total.user
        + total.nice
        + total.system
        + total.irq.unwrap_or(0)
        + total.softirq.unwrap_or(0)
        + total.steal.unwrap_or(0);
    let ticks = procfs::ticks_per_second() as f64;
    Some((busy as f64 / ticks, (busy + idle) as f64 / ticks))
}
