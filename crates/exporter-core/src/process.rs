//! The standard `process_*` metrics from `/proc/self`, written as exposition text.
//!
//! The prometheus crate's process collector divides CPU ticks by the tick rate in whole
//! numbers, so an idle exporter showed `process_cpu_seconds_total 0` for hours. Here the CPU
//! time keeps the kernel's resolution (1/100 s: `USER_HZ` is 100 on every architecture this
//! project builds for).

use std::fmt::Write as _;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`).
const USER_HZ: f64 = 100.0;
/// Page size for `rss` in `/proc/<pid>/stat`; 4 KiB on x86_64 and on the arm64 kernels of
/// Debian and Raspberry Pi OS. Only used when `/proc/self/status` has no `VmRSS`.
const PAGE_SIZE: f64 = 4096.0;

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
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64);
        Process::parse(&stat, &status, &limits, &boot, open_fds)
    }

    /// The pure part of [`Process::read_self`].
    pub(crate) fn parse(
        stat: &str,
        status: &str,
        limits: &str,
        proc_stat: &str,
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
        let btime = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        let start_time_seconds = match (btime, field(22)) {
            (Some(btime), Some(ticks)) => Some(btime + ticks / USER_HZ),
            _ => None,
        };
        let vm_rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib * 1024.0);
        let (max_fds, max_as) = limits.lines().fold((None, None), |(fds, mem), line| {
            let soft = |prefix: &str| {
                line.strip_prefix(prefix).and_then(|rest| {
                    let v = rest.split_whitespace().next()?;
                    if v == "unlimited" { Some(f64::MAX) } else { v.parse::<f64>().ok() }
                })
            };
            (fds.or_else(|| soft("Max open files")), mem.or_else(|| soft("Max address space")))
        });
        Process {
            cpu_seconds,
            open_fds,
            max_fds,
            virtual_memory_bytes: field(23),
            virtual_memory_max_bytes: max_as.map(|v| if v == f64::MAX { -1.0 } else { v }),
            resident_memory_bytes: vm_rss.or_else(|| field(24).map(|pages| pages * PAGE_SIZE)),
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
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n\
                      Max address space         unlimited            unlimited            bytes\n";
        let p = Process::parse(
            STAT,
            "VmRSS:\t    6144 kB\n",
            limits,
            "cpu 1 2\nbtime 1700000000\n",
            Some(9.0),
        );
        assert_eq!(p.cpu_seconds, Some(0.1), "7 + 3 ticks at 100 Hz");
        assert_eq!(p.threads, Some(2.0));
        assert_eq!(p.start_time_seconds, Some(1_700_000_000.0 + 1234.56));
        assert_eq!(p.virtual_memory_bytes, Some(12_345_678.0));
        assert_eq!(p.resident_memory_bytes, Some(6144.0 * 1024.0));
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
        let p = Process::parse("garbage", "", "", "", None);
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
    }
}
