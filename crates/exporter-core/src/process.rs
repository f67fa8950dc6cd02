//! The standard `process_*` metrics from `/proc/self`, written as exposition text.
//!
//! The prometheus crate's process collector divides CPU ticks by the tick rate in whole
//! numbers, so an idle exporter showed `process_cpu_seconds_total 0` for hours. Here the CPU
//! time keeps the kernel's resolution (1/100 s: `USER_HZ` is 100 on every architecture this
//! project builds for).
//!
//! A scrape reads one file, `/proc/self/stat`, and lists `/proc/self/fd`, as the Go client's
//! procfs does: resident memory is its page count times the page size, the limits come from
//! `getrlimit`, and the boot time in `/proc/stat` (whose text holds every interrupt's count,
//! the dearest file of all to produce) is read once.

use std::{fmt::Write as _, sync::OnceLock};

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// The soft limits the `process_*_max` metrics report (`f64::MAX` = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Limits {
    pub open_files: Option<f64>,
    pub address_space: Option<f64>,
}

/// The soft limit of `resource` by `getrlimit` (a macro: the resource's type differs between
/// glibc and musl).
macro_rules! soft_limit {
    ($resource:expr) => {{
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        #[allow(unsafe_code)]
        // SAFETY: getrlimit writes one `rlimit` into the pointer it is given, which points to
        // a live, writable value of that type.
        let read = unsafe { libc::getrlimit($resource, &raw mut limit) };
        (read == 0).then(|| {
            if limit.rlim_cur == libc::RLIM_INFINITY { f64::MAX } else { limit.rlim_cur as f64 }
        })
    }};
}

impl Limits {
    /// This process's soft limits.
    fn read_self() -> Limits {
        Limits {
            open_files: soft_limit!(libc::RLIMIT_NOFILE),
            address_space: soft_limit!(libc::RLIMIT_AS),
        }
    }
}

/// The system's boot time from `/proc/stat`, read once.
fn boot_time() -> Option<f64> {
    static BOOT: OnceLock<Option<f64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        parse_btime(&text)
    })
}

fn parse_btime(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// The page size, for `rss` in `/proc/<pid>/stat`.
#[allow(unsafe_code)]
fn page_size() -> f64 {
    static PAGE: OnceLock<f64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads a system constant.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 { size as f64 } else { 4096.0 }
    })
}

/// What the `process_*` metrics report.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Process {
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub virtual_memory_max_bytes: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<f64>,
}

impl Process {
    /// Reads this process's figures; what cannot be read is left out.
    pub(crate) fn read_self() -> Process {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64);
        Process::parse(&stat, page_size(), Limits::read_self(), boot_time(), open_fds)
    }

    /// The pure part of [`Process::read_self`].
    pub(crate) fn parse(
        stat: &str,
        page_size: f64,
        limits: Limits,
        btime: Option<f64>,
        open_fds: Option<f64>,
    ) -> Process {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rfind(')')
            .map(|i| stat.get(i + 1..).unwrap_or("").split_whitespace().collect())
            .unwrap_or_default();
        // `fields[0]` is field 3 (state) of proc(5).
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(utime), Some(stime)) => Some((utime + stime) / USER_HZ),
            _ => None,
        };
        let start_time_seconds = match (btime, field(22)) {
            (Some(btime), Some(ticks)) => Some(btime + ticks / USER_HZ),
            _ => None,
        };
        Process {
            cpu_seconds,
            open_fds,
            max_fds: limits.open_files,
            virtual_memory_bytes: field(23),
            virtual_memory_max_bytes: limits
                .address_space
                .map(|v| if v == f64::MAX { -1.0 } else { v }),
            resident_memory_bytes: field(24).map(|pages| pages * page_size),
            start_time_seconds,
            threads: field(20),
        }
    }

    /// The metrics as text format 0.0.4 (what the Go client writes for the same names).
    pub(crate) fn encode(&self, out: &mut String) {
        let metrics: [(&str, &str, &str, Option<f64>); 8] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            ("process_max_fds", "gauge", "Maximum number of open file descriptors.", self.max_fds),
            ("process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
            ("process_threads", "gauge", "Number of OS threads in the process.", self.threads),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_memory_bytes,
            ),
            (
                "process_virtual_memory_max_bytes",
                "gauge",
                "Maximum amount of virtual memory available in bytes.",
                self.virtual_memory_max_bytes,
            ),
        ];
        for (name, kind, help, value) in metrics {
            if let Some(value) = value {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (linkhub export) S 1 4242 4242 0 -1 4194624 1189 0 0 0 7 3 0 0 20 0 \
                        2 0 123456 12345678 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";

    #[test]
    fn cpu_time_is_fractional() {
        let limits = Limits { open_files: Some(1024.0), address_space: Some(f64::MAX) };
        let btime = parse_btime("cpu 1 2\nbtime 1700000000\n");
        let p = Process::parse(STAT, 4096.0, limits, btime, Some(9.0));
        assert_eq!(p.cpu_seconds, Some(0.1), "7 + 3 ticks at 100 Hz");
        assert_eq!(p.threads, Some(2.0));
        assert_eq!(p.start_time_seconds, Some(1_700_000_000.0 + 1234.56));
        assert_eq!(p.virtual_memory_bytes, Some(12_345_678.0));
        assert_eq!(p.resident_memory_bytes, Some(512.0 * 4096.0), "512 pages");
        assert_eq!(p.max_fds, Some(1024.0));
        assert_eq!(p.virtual_memory_max_bytes, Some(-1.0));
        assert_eq!(p.open_fds, Some(9.0));
        let mut text = String::new();
        p.encode(&mut text);
        assert!(text.contains("\nprocess_cpu_seconds_total 0.1\n"), "{text}");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
    }

    #[test]
    fn unreadable_values_are_absent() {
        let p = Process::parse("garbage", 4096.0, Limits::default(), parse_btime(""), None);
        assert_eq!(p, Process::default());
        let mut text = String::new();
        p.encode(&mut text);
        assert_eq!(text, "");
    }

    #[test]
    fn own_process_reads() {
        let p = Process::read_self();
        assert!(p.cpu_seconds.is_some() && p.resident_memory_bytes.is_some(), "{p:?}");
        assert!(p.start_time_seconds.unwrap() > 1.6e9);
        // The same figures as the kernel's own texts.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_rss_kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let rss = p.resident_memory_bytes.unwrap();
        assert!(
            (rss - vm_rss_kib * 1024.0).abs() < 4.0 * 1024.0 * 1024.0,
            "{rss} vs {vm_rss_kib} kB"
        );
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let max_files = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        assert_eq!(p.max_fds.map(|v| v.to_string()).as_deref(), Some(max_files));
        assert!(p.open_fds.unwrap() >= 3.0);
    }
}
