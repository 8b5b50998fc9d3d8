//! The CPU time the Postgres server (or another process) spent, read off `/proc`. The
//! server's is the postmaster's own time, the time of the backends it has reaped (its
//! children's time), and the time of its live children. A drain's share is the difference
//! of two readings. It moves less than a rate with what else the machine runs (about ±15 %
//! between runs of one build here, where the rate moved ±30 %), so it helps compare two
//! builds on a noisy host. Only readable when the server runs on this machine (as the
//! benchmark's does).

use procfs::process::{all_processes, Process};

/// The pid of the server's checkpointer: a child of the postmaster that lives as long as
/// the server does (a client's backend may exit between two readings).
pub async fn checkpointer(pool: &sqlx::PgPool) -> Option<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

/// Seconds of CPU the server has used so far, or `None` when its processes are not
/// readable here. `checkpointer` is the server's [`checkpointer`].
pub fn server_seconds(checkpointer: i32) -> Option<f64> {
    let postmaster = Process::new(checkpointer).ok()?.stat().ok()?.ppid;
    let own = Process::new(postmaster).ok()?.stat().ok()?;
    let mut ticks = own.utime + own.stime + own.cutime.max(0) as u64 + own.cstime.max(0) as u64;
    for process in all_processes().ok()?.flatten() {
        if let Ok(stat) = process.stat() {
            if stat.ppid == postmaster {
                ticks += stat.utime + stat.stime;
            }
        }
    }
    Some(ticks as f64 / procfs::ticks_per_second() as f64)
}

/// Seconds of CPU process `pid` (all its threads) has used so far, if readable.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}
