//! `cargo xtask bench`: every exporter (release build, as packaged) against device-sim at 0 ms
//! and 50 ms device latency, with 1, 4 and 64 concurrent scrapers (issue 9).
//!
//! Per exporter it measures idle resident memory, memory after the sequential scrapes, CPU
//! seconds per 1000 sequential scrapes (user + system time of the exporter process from
//! `/proc`), scrape latency p50/p99, the exporter's own share of each scrape's latency (the
//! latency minus the time the device was busy answering it, from the simulator's busy-time
//! counter), device requests per scrape, a burst of 64 simultaneous scrapes (one device round
//! in total), and the stripped binary and image sizes. It prints the tables, checks the goals
//! of the issue, and rewrites the generated part of `docs/performance.md`.
//!
//! The benchmark pins itself, and so the simulators and the exporter it starts, to one CPU
//! (`--no-pin` does not). On the virtual machines this project is measured on, a wake-up of a
//! process on the other, idle vCPU costs an inter-processor interrupt and a VM exit; with
//! the load generator, the simulator and the exporter on different vCPUs, that doubled the
//! exporter's CPU time per scrape and its latency. One CPU also stands in for the small
//! board, where Prometheus and the exporters share a few cores.
//!
//! CPU time is the exporter's on-CPU time from `/proc/<pid>/task/*/schedstat` (nanoseconds),
//! not the 10 ms ticks of `/proc/<pid>/stat`.
//!
//! Scrapes are sent as Prometheus sends them (keep-alive, `Accept-Encoding: gzip`,
//! `X-Prometheus-Scrape-Timeout-Seconds: 10`); every 500th sequential scrape asks for plain
//! text and must say `<ns>_up 1`. Every load loop is bounded in count; every wait in time.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    sync::Barrier,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use argh::FromArgs;

use crate::{
    load::{self, DeviceCount, Kind, Rig, RigOptions, Scraper, mib, percentile},
    stack::Group,
};

/// measure every exporter against device-sim (memory, CPU per 1000 scrapes, latency and the
/// exporter's own share, device requests, sizes) and write docs/performance.md
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
pub struct Bench {
    /// sequential scrapes at 0 ms device latency per exporter (default 10000); the other
    /// loads are scaled from it
    #[argh(option, default = "10000")]
    scrapes: u64,
    /// only these exporters, comma-separated: linkhub, mm, ttn, smarthub (default all)
    #[argh(option)]
    only: Option<String>,
    /// print the tables but leave docs/performance.md alone
    #[argh(switch)]
    no_write: bool,
    /// use the binaries already built (no cargo build)
    #[argh(switch)]
    no_build: bool,
    /// do not pin the benchmark, the simulators and the exporter to one CPU (see the module
    /// docs)
    #[argh(switch)]
    no_pin: bool,
    /// cargo profile of the exporters and simulators (default release, as packaged;
    /// `profiling` is release with symbols, for perf)
    #[argh(option, default = "String::from(\"release\")")]
    profile: String,
}

/// One benchmarked configuration.
#[derive(Debug, Clone)]
struct Case {
    label: &'static str,
    kind: Kind,
    opts: RigOptions,
    goal: Goal,
}

/// The goals for one exporter, and the earlier exporter's CPU figure.
#[derive(Debug, Clone, Copy)]
struct Goal {
    idle_rss_mib: f64,
    /// CPU seconds per 1000 sequential scrapes of the earlier exporter for this device.
    earlier_cpu: f64,
    cpu: f64,
    binary_mib: f64,
}

const OWN_P99_GOAL_MS: f64 = 2.0;

fn cases() -> Vec<Case> {
    let plain = |kind, label, earlier_cpu, cpu, rss, bin| Case {
        label,
        kind,
        opts: RigOptions::default(),
        goal: Goal { idle_rss_mib: rss, earlier_cpu, cpu, binary_mib: bin },
    };
    let ttn = |label, args: &[&str]| Case {
        label,
        kind: Kind::Ttn,
        opts: RigOptions {
            ttn_gateways: 10,
            exporter_args: args.iter().map(|a| (*a).to_owned()).collect(),
        },
        goal: Goal { idle_rss_mib: 6.0, earlier_cpu: 1.2, cpu: 0.25, binary_mib: 6.0 },
    };
    vec![
        plain(Kind::Linkhub, "linkhub", 1.0, 0.2, 6.0, 6.0),
        plain(Kind::Mm, "mm (1 modem)", 2.3, 0.45, 6.0, 6.0),
        ttn("ttn (10 gateways)", &[]),
        ttn("ttn (10 gateways, --stats-ttl 1ms)", &["--stats-ttl", "1ms"]),
        plain(Kind::Smarthub, "smarthub", 8.1, 1.6, 8.0, 8.0),
    ]
}

/// One load: `concurrency` scrapers, `per_scraper` scrapes each, at `latency_ms`.
#[derive(Debug, Clone, Default)]
struct Load {
    latency_ms: u64,
    concurrency: usize,
    scrapes: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// The exporter's own share (sequential loads only).
    own_p50_ms: Option<f64>,
    own_p99_ms: Option<f64>,
    /// The exporter's CPU time per scrape (sequential loads only), from schedstat.
    cpu_p50_ms: Option<f64>,
    cpu_p99_ms: Option<f64>,
    device_per_scrape: f64,
    /// Most device requests one sequential scrape caused.
    device_max: Option<u64>,
    cpu_per_1000: f64,
    seconds: f64,
}

/// Everything measured for one case.
#[derive(Debug, Clone, Default)]
struct Outcome {
    idle_rss_kib: u64,
    rss_after_kib: u64,
    sequential: u64,
    hwm_kib: u64,
    threads: u64,
    loads: Vec<Load>,
    /// Device requests caused by 64 simultaneous scrapes at 50 ms.
    burst_requests: u64,
    binary_bytes: u64,
    image_bytes: Option<u64>,
}

impl Bench {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(self.scrapes >= 100, "--scrapes: at least 100");
        let only = self.only.as_deref().map(Kind::parse_list).transpose()?;
        let cases: Vec<Case> = cases()
            .into_iter()
            .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.kind)))
            .collect();
        anyhow::ensure!(!cases.is_empty(), "--only selects no exporter");
        let bin_dir = if self.no_build {
            load::profile_dir(&self.profile)
        } else {
            load::build(&self.profile)?
        };
        if !self.no_pin {
            pin_to_one_cpu()?;
        }
        let started = Instant::now();
        let mut outcomes = Vec::new();
        for case in &cases {
            eprintln!("==> bench {}", case.label);
            let outcome = bench_case(&bin_dir, case, self.scrapes)
                .with_context(|| format!("bench {}", case.label))?;
            outcomes.push((case.clone(), outcome));
        }
        let report = render(&outcomes, self.scrapes, started.elapsed(), !self.no_pin);
        println!("{report}");
        if !self.no_write {
            write_docs(&report, &self)?;
        }
        let missed: Vec<String> = outcomes.iter().flat_map(|(case, o)| misses(case, o)).collect();
        if missed.is_empty() {
            eprintln!("bench: every goal met");
        } else {
            eprintln!("bench: goals missed:\n  {}", missed.join("\n  "));
        }
        Ok(())
    }
}

fn bench_case(bin_dir: &Path, case: &Case, scrapes: u64) -> anyhow::Result<Outcome> {
    let dir = crate::stack::target_dir().join("bench").join(case.kind.short());
    let mut group = Group::new(&dir, "bench: stopped the simulators and exporters")?;
    let mut rig = Rig::start(&mut group, bin_dir, case.kind, &case.opts)?;
    thread::sleep(Duration::from_secs(1));
    let idle = rig.stats()?;
    let mut out = Outcome { idle_rss_kib: idle.rss_kib, ..Outcome::default() };
    rig.check_up()?;

    let scaled = |div: u64| (scrapes / div).max(1);
    let plan: [(u64, usize, u64); 6] = [
        (0, 1, scrapes),
        (0, 4, scaled(20)),
        (0, 64, scaled(500)),
        (50, 1, scaled(100)),
        (50, 4, scaled(400)),
        (50, 64, scaled(2000)),
    ];
    for (latency_ms, concurrency, per_scraper) in plan {
        rig.device.set_latency(latency_ms)?;
        let load = run_load(&mut rig, latency_ms, concurrency, per_scraper)?;
        eprintln!(
            "  {latency_ms:>2} ms x{concurrency:<2}: {} scrapes in {:.1} s, p50 {:.2} ms, p99 {:.2} ms, own p99 {}, {:.2} device requests/scrape, {:.3} CPU s/1000, {} failed",
            load.scrapes,
            load.seconds,
            load.p50_ms,
            load.p99_ms,
            load.own_p99_ms.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms")),
            load.device_per_scrape,
            load.cpu_per_1000,
            load.failed
        );
        if latency_ms == 0 && concurrency == 1 {
            out.rss_after_kib = rig.stats()?.rss_kib;
            out.sequential = load.scrapes;
        }
        out.loads.push(load);
        group.check_running(rig.index)?;
    }
    out.burst_requests = burst(&mut rig, 64)?;
    rig.device.set_latency(0)?;
    rig.check_up()?;
    let end = rig.stats()?;
    out.hwm_kib = end.hwm_kib;
    out.threads = end.threads;
    out.binary_bytes = fs::metadata(bin_dir.join(case.kind.binary()))
        .with_context(|| format!("stat {}", case.kind.binary()))?
        .len();
    out.image_bytes = image_size(case.kind.binary());
    group.stop();
    Ok(out)
}

/// Runs one load and measures it.
fn run_load(
    rig: &mut Rig,
    latency_ms: u64,
    concurrency: usize,
    per_scraper: u64,
) -> anyhow::Result<Load> {
    let cpu0 = load::oncpu_ns(rig.pid)?;
    let dev0 = rig.device.count()?;
    let started = Instant::now();
    let mut load = Load { latency_ms, concurrency, ..Load::default() };
    let mut latencies = Vec::new();
    if concurrency == 1 {
        let mut conn = rig.scraper()?;
        let mut own = Vec::new();
        let mut cpu = Vec::new();
        let mut prev = dev0;
        let mut prev_ns = load::oncpu_ns(rig.pid)?;
        let mut device_max = 0;
        let up = format!("\n{}_up 1\n", rig.kind.namespace());
        for i in 0..per_scraper {
            let plain = i % 500 == 499;
            let t = Instant::now();
            let answer = conn.scrape("/metrics", !plain, 10.0);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let ok = match &answer {
                Ok(a) if plain => a.status == 200 && String::from_utf8_lossy(&a.body).contains(&up),
                Ok(a) => a.status == 200 && a.body.starts_with(&[0x1f, 0x8b]),
                Err(_) => false,
            };
            load.failed += u64::from(!ok);
            let ns = load::oncpu_ns(rig.pid)?;
            cpu.push(ns.saturating_sub(prev_ns) as f64 / 1e6);
            prev_ns = ns;
            let now = rig.device.count()?;
            let delta: DeviceCount = now - prev;
            prev = now;
            device_max = device_max.max(delta.requests);
            latencies.push(ms);
            own.push((ms - delta.busy_us as f64 / 1000.0).max(0.0));
        }
        own.sort_by(f64::total_cmp);
        load.own_p50_ms = Some(percentile(&own, 50.0));
        load.own_p99_ms = Some(percentile(&own, 99.0));
        cpu.sort_by(f64::total_cmp);
        load.cpu_p50_ms = Some(percentile(&cpu, 50.0));
        load.cpu_p99_ms = Some(percentile(&cpu, 99.0));
        load.device_max = Some(device_max);
    } else {
        let addr = rig.addr.clone();
        let results: Vec<anyhow::Result<(Vec<f64>, u64)>> = thread::scope(|s| {
            let handles: Vec<_> = (0..concurrency)
                .map(|_| {
                    let addr = addr.clone();
                    s.spawn(move || -> anyhow::Result<(Vec<f64>, u64)> {
                        let mut conn = Scraper::new(&format!("http://{addr}"))?;
                        let mut lat = Vec::new();
                        let mut failed = 0;
                        for _ in 0..per_scraper {
                            let t = Instant::now();
                            let ok =
                                conn.scrape("/metrics", true, 10.0).is_ok_and(|a| a.status == 200);
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            failed += u64::from(!ok);
                        }
                        Ok((lat, failed))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a scraper panicked"))))
                .collect()
        });
        for r in results {
            let (lat, failed) = r?;
            latencies.extend(lat);
            load.failed += failed;
        }
    }
    load.seconds = started.elapsed().as_secs_f64();
    let dev1 = rig.device.count()?;
    let cpu1 = load::oncpu_ns(rig.pid)?;
    latencies.sort_by(f64::total_cmp);
    load.scrapes = latencies.len() as u64;
    load.p50_ms = percentile(&latencies, 50.0);
    load.p99_ms = percentile(&latencies, 99.0);
    let n = load.scrapes.max(1) as f64;
    load.device_per_scrape = (dev1 - dev0).requests as f64 / n;
    load.cpu_per_1000 = cpu1.saturating_sub(cpu0) as f64 / 1e9 / n * 1000.0;
    Ok(load)
}

/// `n` scrapers released at once, one scrape each: the device requests they caused.
fn burst(rig: &mut Rig, n: usize) -> anyhow::Result<u64> {
    rig.device.set_latency(50)?;
    // Let any cached state expire the way it would between scrapes, then burst.
    thread::sleep(Duration::from_millis(200));
    let before = rig.device.count()?;
    let barrier = Barrier::new(n);
    let addr = rig.addr.clone();
    let failed: u64 = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (barrier, addr) = (&barrier, addr.clone());
                s.spawn(move || {
                    let Ok(mut conn) = Scraper::new(&format!("http://{addr}")) else { return 1 };
                    barrier.wait();
                    u64::from(!conn.scrape("/metrics", true, 10.0).is_ok_and(|a| a.status == 200))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(1)).sum()
    });
    anyhow::ensure!(failed == 0, "{failed} of {n} burst scrapes failed");
    let after = rig.device.count()?;
    Ok((after - before).requests)
}

/// Pins this process (all its threads, and so every child it starts later) to the first CPU
/// it may run on, with util-linux's `taskset`.
fn pin_to_one_cpu() -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &pid])
        .output()
        .context("run taskset (util-linux) to pin the benchmark; --no-pin runs without")?;
    anyhow::ensure!(
        out.status.success(),
        "taskset -a -p -c 0 {pid} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    eprintln!("bench: pinned to CPU 0 with the simulators and exporters it starts");
    Ok(())
}

/// Size of the amd64 image archive written by `cargo xtask dist --images`, if there is one.
fn image_size(binary: &str) -> Option<u64> {
    let dir = crate::stack::target_dir().join("dist/images");
    let mut found: Vec<_> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{binary}_")) && n.ends_with("_amd64.tar"))
        })
        .collect();
    found.sort();
    fs::metadata(found.last()?).ok().map(|m| m.len())
}

fn misses(case: &Case, o: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    let g = case.goal;
    let idle = o.idle_rss_kib as f64 / 1024.0;
    if idle > g.idle_rss_mib {
        out.push(format!("{}: idle RSS {idle:.1} MiB > {} MiB", case.label, g.idle_rss_mib));
    }
    if let Some(seq) = o.loads.iter().find(|l| l.latency_ms == 0 && l.concurrency == 1)
        && seq.cpu_per_1000 > g.cpu
    {
        out.push(format!(
            "{}: {:.3} CPU s per 1000 scrapes > {}",
            case.label, seq.cpu_per_1000, g.cpu
        ));
    }
    for l in o.loads.iter().filter(|l| l.concurrency == 1) {
        if let Some(own) = l.own_p99_ms
            && own > OWN_P99_GOAL_MS
        {
            out.push(format!(
                "{}: own share p99 {own:.2} ms > {OWN_P99_GOAL_MS} ms at {} ms",
                case.label, l.latency_ms
            ));
        }
    }
    let round = o.loads.iter().filter_map(|l| l.device_max).max().unwrap_or(0);
    if o.burst_requests > round.max(1) {
        out.push(format!(
            "{}: 64 simultaneous scrapes caused {} device requests (one round is {round})",
            case.label, o.burst_requests
        ));
    }
    let failed: u64 = o.loads.iter().map(|l| l.failed).sum();
    if failed > 0 {
        out.push(format!("{}: {failed} scrapes failed", case.label));
    }
    let bin = o.binary_bytes as f64 / 1048576.0;
    if bin > g.binary_mib {
        out.push(format!("{}: binary {bin:.2} MiB > {} MiB", case.label, g.binary_mib));
    }
    out
}

fn ok(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// The Markdown tables (printed, and written into docs/performance.md).
fn render(outcomes: &[(Case, Outcome)], scrapes: u64, took: Duration, pinned: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured {} on {} ({}), {} s in all.\n",
        today(),
        machine(pinned),
        kernel(),
        took.as_secs()
    );
    let _ = writeln!(s, "### Goals\n");
    let _ = writeln!(
        s,
        "| exporter | idle RSS | goal | CPU s / 1000 scrapes | earlier exporter | goal | own share p99 (0 / 50 ms) | CPU per scrape p99 (0 / 50 ms) | goal | binary | goal | all met |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (case, o) in outcomes {
        let g = case.goal;
        let seq0 = o.loads.iter().find(|l| l.latency_ms == 0 && l.concurrency == 1);
        let seq50 = o.loads.iter().find(|l| l.latency_ms == 50 && l.concurrency == 1);
        let own = |l: Option<&Load>| {
            l.and_then(|l| l.own_p99_ms).map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
        };
        let cpu = |l: Option<&Load>| {
            l.and_then(|l| l.cpu_p99_ms).map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} MiB | {:.3} | {} | {} | {} / {} ms | {} / {} ms | {OWN_P99_GOAL_MS} ms | {:.2} MiB | {} MiB | {} |",
            case.label,
            mib(o.idle_rss_kib),
            g.idle_rss_mib,
            seq0.map_or(0.0, |l| l.cpu_per_1000),
            g.earlier_cpu,
            g.cpu,
            own(seq0),
            own(seq50),
            cpu(seq0),
            cpu(seq50),
            o.binary_bytes as f64 / 1048576.0,
            g.binary_mib,
            ok(misses(case, o).is_empty()),
        );
    }
    let _ = writeln!(s, "\n### Memory and device requests\n");
    let _ = writeln!(
        s,
        "| exporter | idle RSS | RSS after {scrapes} scrapes | peak RSS (all loads) | threads | device requests per sequential scrape (most in one) | 64 simultaneous scrapes at 50 ms: device requests | image (amd64 archive) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (case, o) in outcomes {
        let seq0 = o.loads.iter().find(|l| l.latency_ms == 0 && l.concurrency == 1);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3} ({}) | {} | {} |",
            case.label,
            mib(o.idle_rss_kib),
            mib(o.rss_after_kib),
            mib(o.hwm_kib),
            o.threads,
            seq0.map_or(0.0, |l| l.device_per_scrape),
            seq0.and_then(|l| l.device_max).unwrap_or(0),
            o.burst_requests,
            o.image_bytes.map_or_else(
                || "not built".to_owned(),
                |b| format!("{:.2} MiB", b as f64 / 1048576.0)
            ),
        );
    }
    let _ = writeln!(s, "\n### Latency under load\n");
    let _ = writeln!(
        s,
        "Latency is what the scraper saw. The own share is that minus the time the simulated \
         device was busy answering the scrape's requests; it still holds the loopback round \
         trips and the wake-ups of both processes around every device request. CPU per scrape \
         is the exporter's on-CPU time from `/proc/<pid>/task/*/schedstat`. Both only for \
         sequential loads.\n"
    );
    let _ = writeln!(
        s,
        "| exporter | device latency | scrapers | scrapes | p50 | p99 | own p50 | own p99 | CPU per scrape p50 / p99 | device requests / scrape | CPU s / 1000 scrapes | failed |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (case, o) in outcomes {
        for l in &o.loads {
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
            let _ = writeln!(
                s,
                "| {} | {} ms | {} | {} | {:.2} ms | {:.2} ms | {} | {} | {} | {:.3} | {:.3} | {} |",
                case.label,
                l.latency_ms,
                l.concurrency,
                l.scrapes,
                l.p50_ms,
                l.p99_ms,
                opt(l.own_p50_ms),
                opt(l.own_p99_ms),
                match (l.cpu_p50_ms, l.cpu_p99_ms) {
                    (Some(a), Some(b)) => format!("{a:.2} / {b:.2} ms"),
                    _ => "-".to_owned(),
                },
                l.device_per_scrape,
                l.cpu_per_1000,
                l.failed
            );
        }
    }
    s
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "today".to_owned())
}

fn machine(pinned: bool) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let pin = if pinned { ", everything pinned to CPU 0" } else { "" };
    format!("{cpus} cores of {model}{pin}")
}

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| "Linux".to_owned())
}

/// Replaces the generated part of docs/performance.md with `report`.
fn write_docs(report: &str, bench: &Bench) -> anyhow::Result<()> {
    let mut command = "cargo xtask bench".to_owned();
    if bench.scrapes != 10_000 {
        let _ = write!(command, " --scrapes {}", bench.scrapes);
    }
    if bench.no_pin {
        command.push_str(" --no-pin");
    }
    if bench.profile != "release" {
        let _ = write!(command, " --profile {}", bench.profile);
    }
    if let Some(only) = &bench.only {
        let _ = write!(command, " --only {only}");
    }
    load::write_generated("docs/performance.md", "bench", &command, report)
}
