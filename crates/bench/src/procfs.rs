//! Reading a process's CPU time, memory and open descriptors from `/proc`, and the
//! open-files limit. The comparison runner measures servers with these; the load generator
//! checks the limit before it opens anything.

use std::fs;
use std::io;
use std::time::Duration;

/// A point-in-time sample of one process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct ProcSample {
    /// User plus system CPU time of every thread of the process so far, plus that of its
    /// children, live or reaped.
    pub cpu: Duration,
    /// Resident memory now (`VmRSS`), plus the private resident memory of live children
    /// (`Private_Clean + Private_Dirty`), bytes.
    pub rss_bytes: u64,
    /// Peak resident memory (`VmHWM`), plus the live children's private memory now, bytes.
    pub rss_peak_bytes: u64,
    /// Context switches (voluntary + involuntary) of every live thread so far, and of live
    /// children. Threads and children that already exited are not counted, which is fine
    /// for servers with long-lived threads.
    pub context_switches: u64,
}

/// Samples process `pid` (`None`: this process).
pub(crate) fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let dir = proc_dir(pid);
    let stat = fs::read_to_string(format!("{dir}/stat"))?;
    let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse {dir}/stat"),
        )
    })?;
    let status = fs::read_to_string(format!("{dir}/status"))?;
    let rss_kib = parse_status_kib(&status, "VmRSS:").unwrap_or(0);
    let hwm_kib = parse_status_kib(&status, "VmHWM:").unwrap_or(0);
    // Read after the parent, so a child reaped in between is missed, never counted twice.
    let kids = children_totals(&dir);
    let cpu_ticks = ticks + kids.cpu_ticks;
    let switches = context_switches(&dir) + kids.switches;
    let private_kib = kids.private_kib;
    Ok(ProcSample {
        cpu: ticks_to_duration(cpu_ticks, clock_ticks_per_second()),
        rss_bytes: (rss_kib + private_kib) * 1024,
        rss_peak_bytes: (hwm_kib + private_kib) * 1024,
        context_switches: switches,
    })
}

/// What the live children of a process add to it.
#[derive(Debug, Default)]
struct ChildTotals {
    /// CPU time, clock ticks (their own, and their reaped children's).
    cpu_ticks: u64,
    /// Context switches.
    switches: u64,
    /// Resident memory that is theirs alone (`Private_Clean + Private_Dirty`), KiB: pages
    /// still shared copy-on-write with the parent are in the parent's RSS already.
    private_kib: u64,
}

/// Children still running (the fork model's connections) count as they go, not only once
/// reaped: a long-lived connection's child would otherwise show no CPU and no memory.
fn children_totals(dir: &str) -> ChildTotals {
    let mut totals = ChildTotals::default();
    for child in children(dir) {
        let child_dir = format!("/proc/{child}");
        let Some(ticks) = fs::read_to_string(format!("{child_dir}/stat"))
            .ok()
            .and_then(|stat| parse_stat_cpu_ticks(&stat))
        else {
            continue;
        };
        totals.cpu_ticks += ticks;
        totals.switches += context_switches(&child_dir);
        if let Ok(rollup) = fs::read_to_string(format!("{child_dir}/smaps_rollup")) {
            totals.private_kib += parse_status_kib(&rollup, "Private_Clean:").unwrap_or(0)
                + parse_status_kib(&rollup, "Private_Dirty:").unwrap_or(0);
        }
    }
    totals
}

/// The live children of the process at `dir`, from every thread's `task/TID/children`.
fn children(dir: &str) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("{dir}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_ascii_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Sum of `voluntary_ctxt_switches + nonvoluntary_ctxt_switches` over `dir/task/*/status`.
fn context_switches(dir: &str) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("{dir}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            parse_status_kib(&status, "voluntary_ctxt_switches:").unwrap_or(0)
                + parse_status_kib(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0)
        })
        .sum()
}

/// Number of open descriptors of process `pid`.
pub(crate) fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    }
}

/// `utime + stime + cutime + cstime` (fields 14 to 17, in clock ticks) from the text of
/// `/proc/PID/stat`: the process's own CPU time plus that of its children it has reaped, so
/// the fork model's per-connection children count (each once reaped; the other models have
/// no children). The command name (field 2) may contain spaces and parentheses, so fields
/// are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts with field 3 (state); utime is field 14, i.e. the 12th from here.
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let mut ticks = 0;
    for _ in 0..4 {
        let v: u64 = fields.next()?.parse().ok()?;
        ticks += v;
    }
    Some(ticks)
}

/// The number in a `Name:   1234 kB` (or `Name:   1234`) line of `/proc/PID/status`.
fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    let per_second = per_second.max(1);
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU times in `/proc/PID/stat` (100 nearly always).
pub(crate) fn clock_ticks_per_second() -> u64 {
    reactor_pool::sys::process::clock_ticks_per_second().unwrap_or(100)
}

/// The open-files limit of this process: (soft, hard).
pub(crate) fn nofile_limit() -> io::Result<(u64, u64)> {
    reactor_pool::sys::rlimit::nofile()
}

/// Makes sure this process may open `needed` descriptors: raises the soft limit up to the
/// hard limit if that is enough. Returns the limit in force, or says what the limit is
/// ("the open-files limit (RLIMIT_NOFILE) is 20000") when it cannot cover `needed`.
pub(crate) fn ensure_nofile(needed: u64) -> Result<u64, String> {
    let (soft, hard) = nofile_limit().map_err(|e| format!("cannot read RLIMIT_NOFILE: {e}"))?;
    if needed <= soft {
        return Ok(soft);
    }
    if needed <= hard && reactor_pool::sys::rlimit::set_nofile(needed, hard).is_ok() {
        return Ok(needed);
    }
    Err(format!("the open-files limit (RLIMIT_NOFILE) is {hard}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        // Reaped children's time (cutime, cstime) counts: the fork model's connections.
        let stat = "7 (fork) S 1 2 3 4 5 6 7 8 9 10 250 75 30 12 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(367));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_status_lines() {
        let status = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn ticks_convert_exactly() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
        assert_eq!(ticks_to_duration(1, 3), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(None).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.rss_peak_bytes >= s.rss_bytes);
        assert!(s.context_switches > 0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }

    #[test]
    fn a_small_need_is_within_the_limit() {
        assert!(ensure_nofile(16).is_ok());
        let err = ensure_nofile(u64::MAX / 2).unwrap_err();
        assert!(err.contains("RLIMIT_NOFILE"), "{err}");
    }

    /// A child's CPU and memory count while it runs: the fork model's long-lived
    /// connections would otherwise show none until the run ends. (Fails without the
    /// children's part: the child is never reaped before the checks.)
    #[test]
    fn live_children_count() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let me = proc_dir(None);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut kids = children_totals(&me);
        while kids.cpu_ticks < clock_ticks_per_second() / 10 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            kids = children_totals(&me);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            kids.cpu_ticks >= clock_ticks_per_second() / 10,
            "a running child's CPU is counted: {kids:?}"
        );
        assert!(kids.private_kib > 0, "and its own memory: {kids:?}");
        assert!(kids.switches > 0, "and its switches: {kids:?}");
    }
}
