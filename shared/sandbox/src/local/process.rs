//! A local sandbox's process as its `pid` file names it: the pid and the kernel's start
//! time of that process. The kernel hands a freed pid to the next process that needs one
//! (within seconds on a busy machine, with its default `pid_max` of 32768), so a pid alone
//! could make a long-dead sandbox look alive, or make `stop` signal a stranger that was
//! given its pid. With the start time, such a pid is never taken for the sandbox.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::path::Path;

/// The file in a sandbox's directory naming its process: `<pid> <start time>`.
const PID_FILE: &str = "pid";

/// The process a local sandbox runs as; it leads its own process group (its harness CLIs
/// run in that group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxProcess {
    /// The process id, also the id of the group it leads.
    pub pid: u32,
    /// When the process started, in clock ticks after boot (`/proc/<pid>/stat`, field 22);
    /// `None` in a pid file written before start times were recorded (the pid alone is
    /// trusted then, as it was when that file was written).
    start_time: Option<u64>,
}

impl SandboxProcess {
    /// The process `pid`, just started: its start time is read now, while it cannot have
    /// been reaped yet (its parent has not waited for it).
    pub fn started(pid: u32) -> Self {
        Self {
            pid,
            start_time: ProcStat::read(pid).map(|stat| stat.start_time),
        }
    }

    /// The process named in `dir`'s pid file, if the file is there and readable.
    pub fn recorded_in(dir: &Path) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(dir.join(PID_FILE)).ok()?)
    }

    /// Writes this process into `dir`'s pid file.
    pub fn record_in(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join(PID_FILE), self.file_text())
    }

    fn file_text(&self) -> String {
        match self.start_time {
            Some(start_time) => format!("{} {start_time}", self.pid),
            None => self.pid.to_string(),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace();
        let pid = fields.next()?.parse().ok()?;
        let start_time = match fields.next() {
            Some(start_time) => Some(start_time.parse().ok()?),
            None => None,
        };
        Some(Self { pid, start_time })
    }

    /// True while this very process runs: its pid names a process that is not a zombie
    /// and that started when this one did.
    pub fn is_alive(&self) -> bool {
        ProcStat::read(self.pid).is_some_and(|stat| {
            stat.is_running() && self.start_time.is_none_or(|start| start == stat.start_time)
        })
    }

    /// Sends `signal` to the process group this process leads. The caller checks
    /// [`Self::is_alive`] first; the group may outlive its leader by a little (a harness
    /// CLI still exiting), and its id is not handed out again while any member lives.
    pub fn signal_group(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// SIGKILL to the process and its group, if it is still this process (a stopped
    /// test stack, a benchmark's end); nothing when its pid went to another process.
    pub fn kill_if_alive(&self) {
        if !self.is_alive() {
            return;
        }
        self.signal_group(Signal::SIGKILL);
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The two fields of `/proc/<pid>/stat` a sandbox's identity needs.
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    state: char,
    /// Field 22: the start time in clock ticks after boot.
    start_time: u64,
}

impl ProcStat {
    fn read(pid: u32) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parses `pid (comm) state ppid …`; `comm` may hold spaces and parentheses, so the
    /// fields are counted after the last `)`.
    fn parse(stat: &str) -> Option<Self> {
        let (_, after_comm) = stat.rsplit_once(')')?;
        let mut fields = after_comm.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // Fields 4 to 21 lie between the state and the start time.
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(Self { state, start_time })
    }

    fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (sandbox (x) y) S 1 4242 4242 0 -1 4194560 1061 0 0 0 \
                        3 1 0 0 20 0 3 0 987654 12345678 900 18446744073709551615";

    #[test]
    fn the_start_time_is_field_22_counted_after_the_last_parenthesis() {
        assert_eq!(
            ProcStat::parse(STAT),
            Some(ProcStat {
                state: 'S',
                start_time: 987_654
            })
        );
        assert_eq!(ProcStat::parse("4242 (cut) S 1 2"), None);
    }

    #[test]
    fn a_pid_file_holds_the_pid_and_start_time_and_an_older_one_the_pid_alone() {
        let process = SandboxProcess {
            pid: 4242,
            start_time: Some(987_654),
        };
        assert_eq!(process.file_text(), "4242 987654");
        assert_eq!(SandboxProcess::parse("4242 987654\n"), Some(process));
        assert_eq!(
            SandboxProcess::parse("4242\n"),
            Some(SandboxProcess {
                pid: 4242,
                start_time: None
            })
        );
        assert_eq!(SandboxProcess::parse("4242 soon"), None);
        assert_eq!(SandboxProcess::parse(""), None);
    }

    #[test]
    fn this_process_is_alive_and_a_process_with_its_pid_but_another_start_time_is_not() {
        let me = SandboxProcess::started(std::process::id());
        assert!(me.start_time.is_some());
        assert!(me.is_alive());
        let stranger = SandboxProcess {
            start_time: me.start_time.map(|start| start + 1),
            ..me
        };
        assert!(!stranger.is_alive());
        let recorded_before_start_times = SandboxProcess {
            start_time: None,
            ..me
        };
        assert!(recorded_before_start_times.is_alive());
    }

    #[test]
    fn an_exited_and_reaped_process_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|err| panic!("spawn: {err}"));
        let process = SandboxProcess::started(child.id());
        let _ = child.wait();
        assert!(!process.is_alive());
    }
}
