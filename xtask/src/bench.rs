//! `cargo xtask bench`: every exporter (release build, as packaged) against device-sim at 0 ms
//! and 50 ms device latency, with 1, 4 and 64 concurrent scrapers (issues 9 and 15).
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
//!
//! Besides the goals it measures how the cost grows with the size of the fleet
//! ([`scale`], the Scale section) and draws the charts linked from the page ([`plot`], into
//! `docs/images/`). `--cpu-profile LABEL` instead records where the CPU of a scrape goes, with
//! callgrind on the `profiling` build ([`profile`]).

mod plot;
mod profile;
mod scale;

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
/// exporter's own share, device requests, sizes, cost against fleet size) and write
/// docs/performance.md and its charts in docs/images/
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
    /// instead of the benchmark, record callgrind profiles of each exporter (the `profiling`
    /// build) and write their top functions into the section LABEL of docs/performance.md
    /// (e.g. before, after)
    #[argh(option)]
    cpu_profile: Option<String>,
    /// scrapes recorded per exporter with --cpu-profile (default 300)
    #[argh(option, default = "300")]
    profile_scrapes: u64,
    /// skip the scale measurements (fleet sizes)
    #[argh(switch)]
    no_scale: bool,
    /// only the scale measurements (leave the goals section alone)
    #[argh(switch)]
    scale_only: bool,
}

/// One benchmarked configuration.
#[derive(Debug, Clone)]
struct Case {
    label: &'static str,
    kind: Kind,
    opts: RigOptions,
    goal: Goal,
}

/// The goals for one exporter (issue 15; binary size from issue 9). `None`: no goal
/// for this configuration.
#[derive(Debug, Clone, Copy)]
struct Goal {
    /// CPU seconds per 1000 sequential scrapes at 0 ms device latency.
    cpu: Option<f64>,
    /// The exporter's own share of a scrape's latency, p99, at 0 and 50 ms device latency.
    own0_ms: f64,
    own50_ms: f64,
    idle_rss_mib: f64,
    /// Peak resident memory through every load, 64 concurrent scrapers the largest.
    peak_rss_mib: f64,
    /// Device requests of a warm sequential scrape (the most any one made at 0 ms).
    device: Option<u64>,
    binary_mib: f64,
}

fn cases() -> Vec<Case> {
    let goal = |cpu, own0_ms, rss, peak, device, bin| Goal {
        cpu: Some(cpu),
        own0_ms,
        own50_ms: 2.0,
        idle_rss_mib: rss,
        peak_rss_mib: peak,
        device: Some(device),
        binary_mib: bin,
    };
    let plain = |kind, label, goal| Case { label, kind, opts: RigOptions::default(), goal };
    let ttn = |label, args: &[&str], goal| Case {
        label,
        kind: Kind::Ttn,
        opts: RigOptions {
            ttn_gateways: 10,
            exporter_args: args.iter().map(|a| (*a).to_owned()).collect(),
        },
        goal,
    };
    let ttn_goal = goal(0.25, 1.0, 6.0, 8.0, 0, 6.0);
    vec![
        plain(Kind::Linkhub, "linkhub", goal(0.20, 1.0, 6.0, 8.0, 5, 6.0)),
        plain(Kind::Mm, "mm (1 modem)", goal(0.45, 1.0, 6.0, 8.0, 2, 6.0)),
        ttn("ttn (10 gateways)", &[], ttn_goal),
        // Every scrape refreshes the statistics: one batch call, no CPU goal (informative).
        ttn(
            "ttn (10 gateways, --stats-ttl 1ms)",
            &["--stats-ttl", "1ms"],
            Goal { cpu: None, device: Some(1), ..ttn_goal },
        ),
        plain(Kind::Smarthub, "smarthub", goal(1.0, 2.0, 8.0, 10.0, 3, 8.0)),
    ]
}

/// The latency percentiles recorded for the charts.
const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

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
    /// Most device requests one sequential scrape caused, and the median.
    device_max: Option<u64>,
    device_p50: Option<f64>,
    /// Latency and own share at [`PERCENTILES`] (sequential loads only).
    latency_pcts: Vec<f64>,
    own_pcts: Vec<f64>,
    cpu_per_1000: f64,
    /// The kernel's share of the exporter's CPU time (system / (user + system)).
    system_share: f64,
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
        if let Some(label) = &self.cpu_profile {
            return profile::run(
                self.only.as_deref(),
                label,
                self.profile_scrapes,
                self.no_build,
                !self.no_write,
            );
        }
        let bin_dir = if self.no_build {
            load::profile_dir(&self.profile)
        } else {
            load::build(&self.profile)?
        };
        if !self.no_pin {
            pin_to_one_cpu()?;
        }
        if self.scale_only {
            return scale::run(&bin_dir, only.as_deref(), &self.command_line(), !self.no_write);
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
            latency_chart(&outcomes)?;
            load::write_generated("docs/performance.md", "bench", &self.command_line(), &report)?;
        }
        let missed: Vec<String> = outcomes.iter().flat_map(|(case, o)| misses(case, o)).collect();
        if !self.no_scale {
            scale::run(&bin_dir, only.as_deref(), &self.command_line(), !self.no_write)?;
        }
        if missed.is_empty() {
            eprintln!("bench: every goal met");
        } else {
            eprintln!("bench: goals missed:\n  {}", missed.join("\n  "));
        }
        Ok(())
    }

    /// The command that reproduces this run, for the generated sections.
    fn command_line(&self) -> String {
        let mut command = "cargo xtask bench".to_owned();
        if self.scrapes != 10_000 {
            let _ = write!(command, " --scrapes {}", self.scrapes);
        }
        if self.no_pin {
            command.push_str(" --no-pin");
        }
        if self.profile != "release" {
            let _ = write!(command, " --profile {}", self.profile);
        }
        if let Some(only) = &self.only {
            let _ = write!(command, " --only {only}");
        }
        command
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
    let (user0, sys0) = load::user_system_seconds(rig.pid)?;
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
        let mut device_each = Vec::new();
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
            device_each.push(delta.requests as f64);
            latencies.push(ms);
            own.push((ms - delta.busy_us as f64 / 1000.0).max(0.0));
        }
        own.sort_by(f64::total_cmp);
        load.own_p50_ms = Some(percentile(&own, 50.0));
        load.own_p99_ms = Some(percentile(&own, 99.0));
        load.own_pcts = PERCENTILES.iter().map(|p| percentile(&own, *p)).collect();
        device_each.sort_by(f64::total_cmp);
        load.device_p50 = Some(percentile(&device_each, 50.0));
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
    let (user1, sys1) = load::user_system_seconds(rig.pid)?;
    let (user, sys) = (user1 - user0, sys1 - sys0);
    load.system_share = if user + sys > 0.0 { sys / (user + sys) } else { 0.0 };
    latencies.sort_by(f64::total_cmp);
    load.scrapes = latencies.len() as u64;
    load.p50_ms = percentile(&latencies, 50.0);
    load.p99_ms = percentile(&latencies, 99.0);
    if concurrency == 1 {
        load.latency_pcts = PERCENTILES.iter().map(|p| percentile(&latencies, *p)).collect();
    }
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

fn ok(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// The figures of one case against its goals: (what, value, goal, met).
fn checks(case: &Case, o: &Outcome) -> Vec<(&'static str, String, String, bool)> {
    let g = case.goal;
    let mut out = Vec::new();
    let seq0 = o.loads.iter().find(|l| l.latency_ms == 0 && l.concurrency == 1);
    let seq50 = o.loads.iter().find(|l| l.latency_ms == 50 && l.concurrency == 1);
    if let (Some(goal), Some(l)) = (g.cpu, seq0) {
        let v = l.cpu_per_1000;
        out.push(("CPU s / 1000 scrapes", format!("{v:.3}"), format!("{goal}"), v <= goal));
    }
    for (what, l, goal) in
        [("own share p99, 0 ms", seq0, g.own0_ms), ("own share p99, 50 ms", seq50, g.own50_ms)]
    {
        if let Some(v) = l.and_then(|l| l.own_p99_ms) {
            out.push((what, format!("{v:.2} ms"), format!("{goal} ms"), v <= goal));
        }
    }
    let idle = o.idle_rss_kib as f64 / 1024.0;
    out.push((
        "idle RSS",
        format!("{idle:.1} MiB"),
        format!("{} MiB", g.idle_rss_mib),
        idle <= g.idle_rss_mib,
    ));
    let peak = o.hwm_kib as f64 / 1024.0;
    out.push((
        "peak RSS",
        format!("{peak:.1} MiB"),
        format!("{} MiB", g.peak_rss_mib),
        peak <= g.peak_rss_mib,
    ));
    if let (Some(goal), Some(max)) = (g.device, seq0.and_then(|l| l.device_max)) {
        out.push((
            "device requests per warm scrape",
            format!("{max}"),
            format!("{goal}"),
            max <= goal,
        ));
    }
    let round = o.loads.iter().filter_map(|l| l.device_max).max().unwrap_or(0);
    out.push((
        "device requests of 64 simultaneous scrapes",
        format!("{}", o.burst_requests),
        format!("{}", round.max(1)),
        o.burst_requests <= round.max(1),
    ));
    let failed: u64 = o.loads.iter().map(|l| l.failed).sum();
    out.push(("failed scrapes", format!("{failed}"), "0".to_owned(), failed == 0));
    let bin = o.binary_bytes as f64 / 1048576.0;
    out.push((
        "binary",
        format!("{bin:.2} MiB"),
        format!("{} MiB", g.binary_mib),
        bin <= g.binary_mib,
    ));
    out
}

fn misses(case: &Case, o: &Outcome) -> Vec<String> {
    checks(case, o)
        .into_iter()
        .filter(|c| !c.3)
        .map(|(what, v, goal, _)| format!("{}: {what} {v} > {goal}", case.label))
        .collect()
}

/// A table cell: the figure and its goal, bold with `>` when missed.
fn cell(checks: &[(&'static str, String, String, bool)], what: &str) -> String {
    match checks.iter().find(|c| c.0 == what) {
        Some((_, v, goal, true)) => format!("{v} ≤ {goal}"),
        Some((_, v, goal, false)) => format!("**{v}** > {goal}"),
        None => "-".to_owned(),
    }
}

/// The Markdown tables (printed, and written into docs/performance.md).
fn render(outcomes: &[(Case, Outcome)], scrapes: u64, took: Duration, pinned: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured {} on {} ({}), {} s in all; 1-minute load average at the end {} (other work on the machine inflates the CPU and latency figures).\n",
        today(),
        machine(pinned),
        kernel(),
        took.as_secs(),
        loadavg()
    );
    let _ = writeln!(s, "### Goals\n");
    let _ = writeln!(
        s,
        "Each cell is the figure and its goal (issue 15), in bold with `>` where it is missed.\n\
         CPU is per 1000 sequential scrapes at 0 ms device latency; the own share is the p99 of \
         the scrape latency minus the device's busy time; peak RSS is the most resident memory \
         through every load, 64 concurrent scrapers the largest; device requests are the most one \
         warm sequential scrape made at 0 ms.\n"
    );
    let _ = writeln!(
        s,
        "| exporter | CPU s / 1000 scrapes | own share p99, 0 ms | own share p99, 50 ms | idle RSS | peak RSS, 64 scrapers | device requests per warm scrape | binary | all met |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (case, o) in outcomes {
        let c = checks(case, o);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.label,
            cell(&c, "CPU s / 1000 scrapes"),
            cell(&c, "own share p99, 0 ms"),
            cell(&c, "own share p99, 50 ms"),
            cell(&c, "idle RSS"),
            cell(&c, "peak RSS"),
            cell(&c, "device requests per warm scrape"),
            cell(&c, "binary"),
            ok(c.iter().all(|c| c.3)),
        );
    }
    let _ = writeln!(
        s,
        "\n![Scrape latency and own share, percentiles per exporter](images/bench-latency.svg)"
    );
    let _ = writeln!(s, "\n### Memory and device requests\n");
    let _ = writeln!(
        s,
        "| exporter | idle RSS | RSS after {scrapes} scrapes | peak RSS (all loads) | threads | device requests per sequential scrape: mean / median (most in one) | 64 simultaneous scrapes at 50 ms: device requests | image (amd64 archive) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (case, o) in outcomes {
        let seq0 = o.loads.iter().find(|l| l.latency_ms == 0 && l.concurrency == 1);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3} / {} ({}) | {} | {} |",
            case.label,
            mib(o.idle_rss_kib),
            mib(o.rss_after_kib),
            mib(o.hwm_kib),
            o.threads,
            seq0.map_or(0.0, |l| l.device_per_scrape),
            seq0.and_then(|l| l.device_p50).unwrap_or(0.0),
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
        "Latency is what the scraper saw.\nThe own share is that minus the time the simulated \
         device was busy answering the scrape's requests; it still holds the loopback round \
         trips and the wake-ups of both processes around every device request.\nCPU per scrape \
         is the exporter's on-CPU time from `/proc/<pid>/task/*/schedstat`, both only for \
         sequential loads; the kernel's share is the system time's part of the CPU time \
         (`/proc/<pid>/stat`).\n"
    );
    let _ = writeln!(
        s,
        "| exporter | device latency | scrapers | scrapes | p50 | p99 | own p50 | own p99 | CPU per scrape p50 / p99 | device requests / scrape | CPU s / 1000 scrapes | kernel's share of CPU | failed |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (case, o) in outcomes {
        for l in &o.loads {
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
            let _ = writeln!(
                s,
                "| {} | {} ms | {} | {} | {:.2} ms | {:.2} ms | {} | {} | {} | {:.3} | {:.3} | {:.0} % | {} |",
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
                l.system_share * 100.0,
                l.failed
            );
        }
    }
    s
}

/// `docs/images/bench-latency.svg`: latency and own-share percentiles of the sequential loads.
fn latency_chart(outcomes: &[(Case, Outcome)]) -> anyhow::Result<()> {
    let x = plot::XAxis {
        label: "percentile".to_owned(),
        log: false,
        names: PERCENTILES.iter().enumerate().map(|(i, p)| (i as f64, format!("p{p}"))).collect(),
    };
    let panel = |title: &str, latency_ms: u64, own: bool| plot::Panel {
        title: title.to_owned(),
        y_label: "milliseconds (log)".to_owned(),
        log_y: true,
        series: outcomes
            .iter()
            .filter_map(|(case, o)| {
                let l =
                    o.loads.iter().find(|l| l.latency_ms == latency_ms && l.concurrency == 1)?;
                let values = if own { &l.own_pcts } else { &l.latency_pcts };
                Some(plot::Series {
                    name: case.label.to_owned(),
                    points: values.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect(),
                })
            })
            .collect(),
    };
    plot::chart(
        &crate::sh::root().join("docs/images/bench-latency.svg"),
        "Sequential scrapes: latency percentiles per exporter",
        &x,
        &[
            panel("scrape latency, device 0 ms", 0, false),
            panel("own share, device 0 ms", 0, true),
            panel("own share, device 50 ms", 50, true),
        ],
    )
}

pub(crate) fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "today".to_owned())
}

pub(crate) fn machine(pinned: bool) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let pin = if pinned { ", everything pinned to CPU 0" } else { "" };
    format!("{cpus} cores of {model}{pin}")
}

/// The 1-minute load average of the machine (other work on it inflates the figures).
pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

pub(crate) fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| "Linux".to_owned())
}
