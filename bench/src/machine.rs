//! The machine a run happens on, and what `/proc` says about a process: resident memory
//! and CPU time. Linux only, like the appliance.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub ram_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` when the run started and ended: other work on the machine shows here.
    pub load_start: String,
    pub load_end: String,
    /// How the bench itself was built.
    pub bench_profile: &'static str,
    /// The server's binary and its size, or the URL of a server started elsewhere.
    pub server: String,
}

impl Machine {
    pub fn now(server: String) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            load_start: load_average(),
            load_end: String::new(),
            bench_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            server,
        }
    }
}

/// The first three fields of `/proc/loadavg`: the 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A process's resident set (`VmRSS`) in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// A process's peak resident set (`VmHWM`) in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The name livechat gives its store writer thread (`/proc/PID/task/TID/comm`).
pub const WRITER_THREAD: &str = "livechat-writer";

/// The name of its checkpointer thread (`src/store/checkpoint.rs`).
pub const CHECKPOINT_THREAD: &str = "livechat-checkpoint";

/// The thread of `pid` named `name`, if there is one. The kernel keeps the first 15 bytes
/// of a thread's name (`livechat-checkpoint` is `livechat-checkp` in `comm`).
fn thread_named(pid: u32, name: &str) -> Option<u32> {
    let comm = &name.as_bytes()[..name.len().min(15)];
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(Result::ok)
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end_matches('\n').as_bytes() == comm)
        })?
        .file_name()
        .to_str()?
        .parse()
        .ok()
}

/// User plus system CPU time of a process or thread so far, from its `stat` file.
fn stat_cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// CPU use of a process (or one of its threads) over a stretch of wall time, as a share of
/// one core (1.0 = 100 %).
pub struct CpuMeter {
    stat: String,
    cpu: Duration,
    wall: Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> CpuMeter {
        let stat = format!("/proc/{pid}/stat");
        CpuMeter {
            cpu: stat_cpu_time(&stat).unwrap_or_default(),
            stat,
            wall: Instant::now(),
        }
    }

    /// The same for the thread of `pid` named `name`.
    pub fn thread(pid: u32, name: &str) -> Option<CpuMeter> {
        let tid = thread_named(pid, name)?;
        let stat = format!("/proc/{pid}/task/{tid}/stat");
        Some(CpuMeter {
            cpu: stat_cpu_time(&stat)?,
            stat,
            wall: Instant::now(),
        })
    }

    /// Cores used on average since `start`.
    pub fn cores(&self) -> f64 {
        let cpu = stat_cpu_time(&self.stat)
            .unwrap_or_default()
            .saturating_sub(self.cpu);
        cpu.as_secs_f64() / self.wall.elapsed().as_secs_f64().max(1e-9)
    }
}

/// Bytes a process has handed to `write`-like system calls so far (`wchar` of
/// `/proc/PID/io`: files and sockets alike, whether or not they reached the disk yet).
pub fn written_bytes(pid: u32) -> Option<u64> {
    wchar(&format!("/proc/{pid}/io"))
}

/// The same for the thread of `pid` named `name`: what that thread alone handed to `write`.
pub fn thread_written_bytes(pid: u32, name: &str) -> Option<u64> {
    let tid = thread_named(pid, name)?;
    wchar(&format!("/proc/{pid}/task/{tid}/io"))
}

fn wchar(io: &str) -> Option<u64> {
    std::fs::read_to_string(io)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))?
        .trim()
        .parse()
        .ok()
}

/// The size of a file in MiB.
pub fn file_mib(path: &Path) -> Option<f64> {
    Some(std::fs::metadata(path).ok()?.len() as f64 / 1024.0 / 1024.0)
}
