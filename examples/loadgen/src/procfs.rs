//! What the OS says about the server and about us: CPU time from `/proc/PID/stat` and
//! `getrusage`, resident memory from `/proc/PID/status`, and the open-files limit.

/// CPU seconds (user+system) used by this process so far.
pub fn cpu_self_s() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// (user, system) CPU seconds of another process, from /proc/PID/stat.
pub fn proc_cpu_split(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let hz = if hz > 0.0 { hz } else { 100.0 };
    stat_cpu_split(&s, hz)
}

/// (utime, stime) in seconds from the text of a `/proc/PID/stat` with `hz` ticks a second.
fn stat_cpu_split(stat: &str, hz: f64) -> Option<(f64, f64)> {
    // Fields after the ")" that closes comm: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime / hz, stime / hz))
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in kB.
fn vmrss_kb(status: &str) -> Option<u64> {
    status_kb(status, "VmRSS:")
}

/// The line of a `/proc/PID/status` text that starts with `key`, in kB.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of process `pid` in kB.
pub fn proc_rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:")
}

/// Anonymous resident memory of process `pid` in kB (`RssAnon:`: heap,
/// stacks, anonymous maps; not the executable's and libraries' pages,
/// which a process touches once whatever it serves).
pub fn proc_anon_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "RssAnon:")
}

/// The line `key` of `/proc/PID/status`, in kB.
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    status_kb(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        key,
    )
}

/// Resident memory of this process in kB.
pub fn self_rss_kb() -> Option<u64> {
    vmrss_kb(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// A server's resident memory over a run: the first sample and the highest.
pub struct RssWatch {
    /// `--server-pid`; without one every sample is `None`.
    pid: Option<u32>,
    /// Sampled when the watch was made.
    pub first: Option<u64>,
    /// The highest of all samples.
    pub max: Option<u64>,
}

impl RssWatch {
    /// Start watching `pid`, with a first sample.
    pub fn new(pid: Option<u32>) -> RssWatch {
        let first = pid.and_then(proc_rss_kb);
        RssWatch {
            pid,
            first,
            max: first,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Sample now (kB), counting the sample into `max`.
    pub fn sample(&mut self) -> Option<u64> {
        let v = self.pid.and_then(proc_rss_kb);
        if let Some(v) = v {
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
        v
    }
}

/// Raise RLIMIT_NOFILE to the hard limit.
pub fn raise_nofile() {
    // SAFETY: plain rlimit syscalls on a stack struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_read_after_the_command_name() {
        // A command name with spaces and a ")" of its own must not shift the fields.
        let stat = "4242 (my (odd) hub) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(stat_cpu_split(stat, 100.0), Some((2.5, 0.5)));
        assert_eq!(stat_cpu_split("4242 (hub) S 1", 100.0), None);
    }

    #[test]
    fn resident_memory_comes_from_the_vmrss_line() {
        let status = "Name:\thub\nVmPeak:\t  9000 kB\nVmRSS:\t    7440 kB\nThreads:\t3\n";
        assert_eq!(vmrss_kb(status), Some(7440));
        assert_eq!(vmrss_kb("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn anonymous_memory_comes_from_the_rssanon_line() {
        let status = "VmRSS:\t    7440 kB\nRssAnon:\t    1200 kB\nRssFile:\t    6240 kB\n";
        assert_eq!(status_kb(status, "RssAnon:"), Some(1200));
        assert_eq!(status_kb(status, "RssShmem:"), None);
        let pid = std::process::id();
        let anon = proc_anon_kb(pid).expect("this process's RssAnon");
        assert!(anon > 0 && anon <= proc_rss_kb(pid).expect("VmRSS"));
    }

    #[test]
    fn this_process_can_be_measured_like_a_server() {
        let pid = std::process::id();
        assert!(proc_rss_kb(pid).is_some_and(|kb| kb > 0));
        assert!(self_rss_kb().is_some_and(|kb| kb > 0));
        assert!(proc_cpu_split(pid).is_some());
        assert!(cpu_self_s() >= 0.0);
    }

    #[test]
    fn a_watch_keeps_the_first_and_the_highest_sample() {
        let mut w = RssWatch::new(Some(std::process::id()));
        let first = w.first.unwrap();
        let grown = vec![1u8; 32 << 20]; // touch 32 MiB
        assert!(std::hint::black_box(&grown).iter().all(|&b| b == 1));
        let now = w.sample().unwrap();
        drop(grown);
        assert_eq!(w.first, Some(first));
        assert!(now > first && w.max >= Some(now));
        let mut none = RssWatch::new(None);
        assert_eq!((none.first, none.sample(), none.max), (None, None, None));
    }
}
