//! The Scale section of `cargo xtask bench`: how each exporter's cost grows with the size of
//! what it reads (TTN gateways over three clusters, modems, Smart Hub LAN devices, LinkHub
//! named targets), a table and a chart per exporter, and, by calculation from the figures,
//! the size at which it would stop fitting on a Raspberry Pi 3.
//!
//! Every load is bounded in count and in time and goes to loopback simulators only.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::plot;
use crate::{
    load::{self, Device, DeviceCtl, Kind, ProcStats, Scraper, percentile},
    stack::{self, Group},
};

/// How much slower one core of a Raspberry Pi 3 (Cortex-A53 at 1.2 GHz, in-order) runs this
/// code than one core of the benchmark machine: an assumption (see docs/performance.md).
const PI_SLOWDOWN: f64 = 8.0;
/// CPU an exporter may use on the Pi: a tenth of one core, i.e. 1.5 s per 15 s interval.
const PI_CPU_BUDGET_S: f64 = 1.5;
/// Memory an exporter may hold on the Pi (a quarter of its 1 GiB, the rest for Prometheus
/// and the system).
const PI_MEM_BUDGET_MIB: f64 = 256.0;
/// The scrape or probe interval the CPU budget is counted over.
const INTERVAL_S: f64 = 15.0;
/// Scrape timeout sent with the scale scrapes (large accounts take a while).
const SCRAPE_TIMEOUT_S: f64 = 60.0;

/// One exporter's scale measurements.
#[derive(Debug, Default)]
struct Row {
    /// `ttn`, `mm`, …: names the chart file.
    short: &'static str,
    heading: String,
    /// What the fleet size counts (`gateways`).
    unit: &'static str,
    table: String,
    /// Per size: CPU seconds per 15 s interval for the whole fleet (one scrape, or every
    /// target probed once), and resident memory in MiB.
    cpu: Vec<(f64, f64)>,
    rss: Vec<(f64, f64)>,
    /// Further chart panels (requests, sizes).
    panels: Vec<plot::Panel>,
    notes: Vec<String>,
}

/// One exporter's measurement.
type Measure = fn(&Path) -> anyhow::Result<Row>;

/// Runs the scale measurements of the `only` exporters (all when `None`) and writes the
/// `bench-scale` section of docs/performance.md and the charts.
pub fn run(
    bin_dir: &Path,
    only: Option<&[Kind]>,
    command: &str,
    write: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let wanted = |k: Kind| only.is_none_or(|o| o.contains(&k));
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let measures: [(Kind, Measure); 4] =
        [(Kind::Ttn, ttn), (Kind::Mm, mm), (Kind::Smarthub, smarthub), (Kind::Linkhub, linkhub)];
    for (kind, measure) in measures {
        if !wanted(kind) {
            continue;
        }
        match measure(bin_dir) {
            Ok(row) => rows.push(row),
            Err(err) => {
                eprintln!("scale {kind}: {err:#}");
                failed.push(format!("{kind}: {err:#}"));
            }
        }
    }
    let mut report = String::new();
    let _ = writeln!(
        report,
        "Measured {} on {} ({}), {} s in all; 1-minute load average at the end {}.",
        super::today(),
        super::machine(true),
        super::kernel(),
        started.elapsed().as_secs(),
        super::loadavg()
    );
    for f in &failed {
        let _ = writeln!(report, "\nNot measured: {f}.");
    }
    for row in &rows {
        let _ = writeln!(report, "\n### {}\n", row.heading);
        report.push_str(&row.table);
        let _ = writeln!(report);
        for note in &row.notes {
            let _ = writeln!(report, "{note}");
        }
        let _ = writeln!(report, "{}", growth(row));
        let _ = writeln!(report, "{}", pi_fit(row));
        let _ = writeln!(report, "\n![{}](images/scale-{}.svg)", row.heading, row.short);
    }
    println!("{report}");
    if write {
        for row in &rows {
            chart(row)?;
        }
        load::write_generated("docs/performance.md", "bench-scale", command, &report)?;
    }
    anyhow::ensure!(failed.is_empty(), "scale measurements failed:\n  {}", failed.join("\n  "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A running exporter.
struct Exporter {
    index: usize,
    pid: u32,
    addr: String,
}

impl Exporter {
    fn conn(&self) -> anyhow::Result<Scraper> {
        Scraper::new(&format!("http://{}", self.addr))
    }

    fn stats(&self) -> anyhow::Result<ProcStats> {
        ProcStats::read(self.pid)
    }

    fn oncpu_ns(&self) -> anyhow::Result<u64> {
        load::oncpu_ns(self.pid)
    }
}

fn start_exporter(
    group: &mut Group,
    bin_dir: &Path,
    kind: Kind,
    args: &[String],
) -> anyhow::Result<Exporter> {
    let program = bin_dir.join(kind.binary());
    let names = (kind.binary(), kind.namespace(), kind.short());
    let (index, exporter) =
        stack::start_exporter_from(group, &program, names, args, (Vec::new(), 0))?;
    group.wait_http_ok(index, &format!("{}/-/healthy", exporter.url), Duration::from_secs(20))?;
    let pid = group.proc(index)?.pid();
    Ok(Exporter { index, pid, addr: exporter.address().to_owned() })
}

/// Starts `device-sim ARGS` in the group; returns its index.
fn sim(group: &mut Group, bin_dir: &Path, name: &str, args: &[&str]) -> anyhow::Result<usize> {
    let mut cmd = Command::new(bin_dir.join("device-sim"));
    cmd.args(args);
    group.spawn(name, cmd)
}

/// Whether `binary --help` lists `flag`.
fn has_flag(bin_dir: &Path, binary: &str, flag: &str) -> bool {
    Command::new(bin_dir.join(binary))
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Seconds as milliseconds, for the charts.
fn ms(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points.iter().map(|&(n, s)| (n, s * 1000.0)).collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Bytes as KB/MB text.
fn size(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} KB", bytes as f64 / 1e3)
    }
}

/// What a run of scrapes measured.
#[derive(Debug, Default, Clone)]
struct Run {
    scrapes: u64,
    /// CPU milliseconds per scrape (mean).
    cpu_ms: f64,
    /// Wall milliseconds per scrape, p50 and p99.
    p50_ms: f64,
    p99_ms: f64,
    /// Device requests per scrape: mean and the most in one.
    requests: f64,
    requests_max: u64,
    /// Body bytes of the last scrape.
    body: usize,
    failed: u64,
}

/// `n` sequential scrapes of `path`, bounded by `limit` in time too (fewer when it runs out).
fn scrapes(
    exporter: &Exporter,
    conn: &mut Scraper,
    devices: &mut [&mut Device],
    path: &str,
    gzip: bool,
    n: u64,
    limit: Duration,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let cpu0 = exporter.oncpu_ns()?;
    let mut lat = Vec::new();
    let mut run = Run::default();
    let count = |devices: &mut [&mut Device]| -> anyhow::Result<u64> {
        let mut sum = 0;
        for d in devices.iter_mut() {
            sum += d.count()?.requests;
        }
        Ok(sum)
    };
    let first = count(devices)?;
    let mut prev = first;
    for _ in 0..n {
        if started.elapsed() > limit {
            break;
        }
        let t = Instant::now();
        let answer = conn.scrape(path, gzip, SCRAPE_TIMEOUT_S);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        match answer {
            Ok(a) if a.status == 200 => run.body = a.body.len(),
            _ => run.failed += 1,
        }
        if !devices.is_empty() {
            let now = count(devices)?;
            run.requests_max = run.requests_max.max(now - prev);
            prev = now;
        }
    }
    let cpu1 = exporter.oncpu_ns()?;
    run.scrapes = lat.len() as u64;
    let k = run.scrapes.max(1) as f64;
    run.cpu_ms = cpu1.saturating_sub(cpu0) as f64 / 1e6 / k;
    run.requests = prev.saturating_sub(first) as f64 / k;
    lat.sort_by(f64::total_cmp);
    run.p50_ms = percentile(&lat, 50.0);
    run.p99_ms = percentile(&lat, 99.0);
    Ok(run)
}

fn ensure_ok(what: &str, run: &Run) -> anyhow::Result<()> {
    anyhow::ensure!(run.failed == 0, "{what}: {} of {} scrapes failed", run.failed, run.scrapes);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// TTN.

const TTN_CLUSTERS: [&str; 3] = ["eu1", "nam1", "au1"];

fn ttn(bin_dir: &Path) -> anyhow::Result<Row> {
    let mut row = Row {
        short: "ttn",
        heading: "ttn-exporter: gateways over 3 clusters".to_owned(),
        unit: "gateways",
        ..Row::default()
    };
    let _ = writeln!(
        row.table,
        "| gateways | API requests, first scrape (identity + gateway servers) | API requests per refresh | idle RSS | RSS, warm | peak RSS, refreshing | CPU per cached scrape | CPU per refresh | exposition (text / gzip) | first scrape | warm scrape p50 | refreshing scrape p50 |"
    );
    let _ = writeln!(row.table, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (mut reqs, mut cached_cpu, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for n in [10usize, 100, 1000, 10_000] {
        eprintln!("==> scale ttn {n} gateways");
        let dir = stack::target_dir().join("bench/scale-ttn");
        let mut group = Group::new(&dir, "bench: stopped the scale run")?;
        let gateways = n.to_string();
        let index = sim(
            &mut group,
            bin_dir,
            "sim-ttn",
            &["ttn", "--listen", "127.0.0.1:0", "--gateways", &gateways],
        )?;
        let key = group.wait_line(index, "user key (TTN_API_KEY): ", secs(60))?;
        let flags = group.wait_line(index, "exporter flags: ", secs(5))?;
        let identity = group.wait_line(index, "identity ", secs(5))?;
        let mut clusters = Vec::new();
        for c in TTN_CLUSTERS {
            let line = group.wait_line(index, &format!("cluster {c} "), secs(5))?;
            let url = line.split_whitespace().next().unwrap_or_default().to_owned();
            clusters.push(DeviceCtl { base: format!("{url}/_sim"), http: true });
        }
        let mut id_dev =
            Device::new(vec![DeviceCtl { base: format!("{identity}/_sim"), http: true }])?;
        let mut gs_dev = Device::new(clusters)?;
        let key_file = group.dir().join("ttn-api-key");
        fs::write(&key_file, format!("{key}\n")).context("write the TTN API key file")?;
        let mut args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
        args.extend(["--api-key-file".to_owned(), stack::path_arg(&key_file)]);

        // Default TTLs: the first scrape reads everything, the next ones the cache.
        let cached = start_exporter(&mut group, bin_dir, Kind::Ttn, &args)?;
        let idle = cached.stats()?.rss_kib;
        let mut conn = cached.conn()?;
        let (id0, gs0) = (id_dev.count()?.requests, gs_dev.count()?.requests);
        let t = Instant::now();
        let first = conn.scrape("/metrics", false, SCRAPE_TIMEOUT_S)?;
        let first_ms = t.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            first.status == 200 && String::from_utf8_lossy(&first.body).contains("\nttn_up 1\n"),
            "first scrape of {n} gateways: HTTP {} without ttn_up 1",
            first.status
        );
        let text_bytes = first.body.len();
        let (id1, gs1) = (id_dev.count()?.requests, gs_dev.count()?.requests);
        let warm_n = match n {
            0..=100 => 200,
            101..=1000 => 40,
            _ => 8,
        };
        let warm = scrapes(
            &cached,
            &mut conn,
            &mut [&mut id_dev, &mut gs_dev],
            "/metrics",
            true,
            warm_n,
            secs(25),
        )?;
        ensure_ok("warm ttn scrapes", &warm)?;
        let warm_rss = cached.stats()?.rss_kib;
        group.check_running(cached.index)?;

        // Both caches expire at once: every scrape is a refresh.
        let mut refresh_args = args.clone();
        refresh_args.extend(["--stats-ttl", "1ms", "--gateways-refresh", "1ms"].map(str::to_owned));
        let refreshing = start_exporter(&mut group, bin_dir, Kind::Ttn, &refresh_args)?;
        let mut rconn = refreshing.conn()?;
        rconn.scrape("/metrics", true, SCRAPE_TIMEOUT_S)?;
        let refresh_n = match n {
            0..=100 => 50,
            101..=1000 => 10,
            _ => 4,
        };
        let refresh = scrapes(
            &refreshing,
            &mut rconn,
            &mut [&mut id_dev, &mut gs_dev],
            "/metrics",
            true,
            refresh_n,
            secs(60),
        )?;
        ensure_ok("refreshing ttn scrapes", &refresh)?;
        let (refresh_hwm, cached_hwm) = (refreshing.stats()?.hwm_kib, cached.stats()?.hwm_kib);
        eprintln!(
            "    peak RSS: refreshing {:.1} MiB, cached (first scrape plain) {:.1} MiB",
            refresh_hwm as f64 / 1024.0,
            cached_hwm as f64 / 1024.0
        );
        let peak = refresh_hwm.max(cached_hwm);
        group.check_running(refreshing.index)?;
        group.stop();

        let goal = if n == 10_000 { " (goal ≤ 41)" } else { "" };
        let _ = writeln!(
            row.table,
            "| {n} | {} ({} + {}) | {:.1}{goal} | {:.1} MiB | {:.1} MiB | {:.1} MiB{} | {:.2} ms | {:.2} ms | {} / {} | {:.0} ms | {:.2} ms | {:.2} ms |",
            (id1 - id0) + (gs1 - gs0),
            id1 - id0,
            gs1 - gs0,
            refresh.requests,
            mib(idle),
            mib(warm_rss),
            mib(peak),
            if n == 10_000 { " (goal ≤ 40 MiB)" } else { "" },
            warm.cpu_ms,
            refresh.cpu_ms,
            size(text_bytes),
            size(warm.body),
            first_ms,
            warm.p50_ms,
            refresh.p50_ms,
        );
        let x = n as f64;
        row.cpu.push((x, refresh.cpu_ms / 1000.0));
        cached_cpu.push((x, warm.cpu_ms / 1000.0));
        row.rss.push((x, mib(peak)));
        reqs.push((x, refresh.requests));
        sizes.push((x, text_bytes as f64 / 1e6));
    }
    row.notes.push(
        "A refresh is a scrape with both caches expired (`--stats-ttl 1ms --gateways-refresh 1ms`): the gateway list and every gateway's statistics are read again; a cached scrape is one within the default `--stats-ttl 30s`."
            .to_owned(),
    );
    row.notes.push(
        "The CPU column of the Pi calculation is the refreshing scrape, the dearest one."
            .to_owned(),
    );
    row.panels.push(plot::Panel {
        title: "API requests per refresh".to_owned(),
        y_label: "requests".to_owned(),
        log_y: true,
        series: vec![plot::Series { name: "requests".to_owned(), points: reqs }],
    });
    row.panels.push(plot::Panel {
        title: "exposition text per scrape".to_owned(),
        y_label: "MB".to_owned(),
        log_y: true,
        series: vec![plot::Series { name: "text".to_owned(), points: sizes }],
    });
    row.panels.insert(
        0,
        plot::Panel {
            title: "CPU per scrape".to_owned(),
            y_label: "milliseconds (log)".to_owned(),
            log_y: true,
            series: vec![
                plot::Series { name: "refresh".to_owned(), points: ms(&row.cpu) },
                plot::Series { name: "cached".to_owned(), points: ms(&cached_cpu) },
            ],
        },
    );
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// ModemManager.

fn mm(bin_dir: &Path) -> anyhow::Result<Row> {
    let mut row = Row {
        short: "mm",
        heading: "mm-exporter: modems on one ModemManager (device-sim's fake)".to_owned(),
        unit: "modems",
        ..Row::default()
    };
    let _ = writeln!(
        row.table,
        "| modems | scrapes | D-Bus calls per scrape (most in one) | CPU per scrape | scrape p50 / p99 | RSS after | peak RSS | exposition (gzip) |"
    );
    let _ = writeln!(row.table, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut calls = Vec::new();
    for n in [1usize, 4, 16] {
        eprintln!("==> scale mm {n} modems");
        let dir = stack::target_dir().join("bench/scale-mm");
        let mut group = Group::new(&dir, "bench: stopped the scale run")?;
        let modems = n.to_string();
        let index = sim(
            &mut group,
            bin_dir,
            "sim-mm",
            &["modem", "--modems", &modems, "--control", "127.0.0.1:0"],
        )?;
        let bus = group.wait_line(index, "listening on ", secs(20))?;
        let control = group.wait_line(index, "control ", secs(5))?;
        let mut device = Device::new(vec![DeviceCtl { base: control, http: false }])?;
        let exporter =
            start_exporter(&mut group, bin_dir, Kind::Mm, &["--bus-address".to_owned(), bus])?;
        let mut conn = exporter.conn()?;
        let first = conn.scrape("/metrics", false, SCRAPE_TIMEOUT_S)?;
        anyhow::ensure!(
            first.status == 200
                && String::from_utf8_lossy(&first.body).contains("\nmodemmanager_up 1\n"),
            "mm with {n} modems: first scrape HTTP {} without modemmanager_up 1",
            first.status
        );
        let run =
            scrapes(&exporter, &mut conn, &mut [&mut device], "/metrics", true, 500, secs(30))?;
        ensure_ok("mm scrapes", &run)?;
        let stats = exporter.stats()?;
        group.check_running(exporter.index)?;
        group.stop();
        let _ = writeln!(
            row.table,
            "| {n} | {} | {:.2} ({}) | {:.3} ms | {:.2} / {:.2} ms | {:.1} MiB | {:.1} MiB | {} ({} text) |",
            run.scrapes,
            run.requests,
            run.requests_max,
            run.cpu_ms,
            run.p50_ms,
            run.p99_ms,
            mib(stats.rss_kib),
            mib(stats.hwm_kib),
            size(run.body),
            size(first.body.len()),
        );
        let x = n as f64;
        row.cpu.push((x, run.cpu_ms / 1000.0));
        row.rss.push((x, mib(stats.hwm_kib)));
        calls.push((x, run.requests));
    }
    row.panels.push(plot::Panel {
        title: "CPU per scrape".to_owned(),
        y_label: "milliseconds".to_owned(),
        log_y: false,
        series: vec![plot::Series { name: "CPU".to_owned(), points: ms(&row.cpu) }],
    });
    row.panels.push(plot::Panel {
        title: "D-Bus calls per scrape".to_owned(),
        y_label: "calls".to_owned(),
        log_y: false,
        series: vec![plot::Series { name: "calls".to_owned(), points: calls }],
    });
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// Smart Hub.

fn smarthub(bin_dir: &Path) -> anyhow::Result<Row> {
    let mut row = Row {
        short: "smarthub",
        heading: "smarthub-exporter: LAN devices the hub remembers".to_owned(),
        unit: "LAN devices",
        ..Row::default()
    };
    let mut extra: Vec<String> = Vec::new();
    if has_flag(bin_dir, Kind::Smarthub.binary(), "--lan-devices-max") {
        extra.extend(["--lan-devices", "all", "--lan-devices-max", "500"].map(str::to_owned));
        row.notes.push(
            "Every remembered device gets series of its own (`--lan-devices all --lan-devices-max 500`); the simulator's list (`--devices many:N`) has every tenth device active."
                .to_owned(),
        );
    }
    let _ = writeln!(
        row.table,
        "| LAN devices | scrapes | CPU per scrape | scrape p50 / p99 | device requests per scrape | RSS after | peak RSS | exposition (text / gzip) |"
    );
    let _ = writeln!(row.table, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut sizes = Vec::new();
    for n in [10usize, 100, 500] {
        eprintln!("==> scale smarthub {n} LAN devices");
        let dir = stack::target_dir().join("bench/scale-smarthub");
        let mut group = Group::new(&dir, "bench: stopped the scale run")?;
        let devices = format!("many:{n}");
        let index = sim(
            &mut group,
            bin_dir,
            "sim-smarthub",
            &["smarthub", "--listen", "127.0.0.1:0", "--devices", &devices],
        )?;
        let url = group.wait_line(index, "listening on ", secs(20))?;
        let mut device = Device::new(vec![DeviceCtl { base: format!("{url}/_sim"), http: true }])?;
        let mut args = vec!["--target".to_owned(), url];
        args.extend(extra.iter().cloned());
        let exporter = start_exporter(&mut group, bin_dir, Kind::Smarthub, &args)?;
        let mut conn = exporter.conn()?;
        let first = conn.scrape("/metrics", false, SCRAPE_TIMEOUT_S)?;
        anyhow::ensure!(
            first.status == 200
                && String::from_utf8_lossy(&first.body).contains("\nsmarthub_up 1\n"),
            "smarthub with {n} devices: first scrape HTTP {} without smarthub_up 1",
            first.status
        );
        let run =
            scrapes(&exporter, &mut conn, &mut [&mut device], "/metrics", true, 300, secs(30))?;
        ensure_ok("smarthub scrapes", &run)?;
        let stats = exporter.stats()?;
        group.check_running(exporter.index)?;
        group.stop();
        let _ = writeln!(
            row.table,
            "| {n} | {} | {:.2} ms | {:.2} / {:.2} ms | {:.2} | {:.1} MiB | {:.1} MiB | {} / {} |",
            run.scrapes,
            run.cpu_ms,
            run.p50_ms,
            run.p99_ms,
            run.requests,
            mib(stats.rss_kib),
            mib(stats.hwm_kib),
            size(first.body.len()),
            size(run.body),
        );
        let x = n as f64;
        row.cpu.push((x, run.cpu_ms / 1000.0));
        row.rss.push((x, mib(stats.hwm_kib)));
        sizes.push((x, first.body.len() as f64 / 1e3));
    }
    row.panels.push(plot::Panel {
        title: "CPU per scrape".to_owned(),
        y_label: "milliseconds".to_owned(),
        log_y: false,
        series: vec![plot::Series { name: "CPU".to_owned(), points: ms(&row.cpu) }],
    });
    row.panels.push(plot::Panel {
        title: "exposition text per scrape".to_owned(),
        y_label: "KB".to_owned(),
        log_y: false,
        series: vec![plot::Series { name: "text".to_owned(), points: sizes }],
    });
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// LinkHub.

/// Probes per LinkHub size (round-robin over the targets).
const LINKHUB_PROBES: u64 = 10_000;

fn linkhub(bin_dir: &Path) -> anyhow::Result<Row> {
    // Named targets need `--config-file` with `targets:`; an exporter without them reads the
    // name as a host name, which the first probe shows.
    let named = has_flag(bin_dir, Kind::Linkhub.binary(), "--config-file") && {
        let probe = linkhub_size(bin_dir, 1, true, 1);
        if let Err(err) = &probe {
            eprintln!("linkhub: named targets do not work here ({err:#}); probing ad hoc");
        }
        probe.is_ok()
    };
    let mut row = Row {
        short: "linkhub",
        heading: "linkhub-exporter: targets probed through /probe".to_owned(),
        unit: "targets",
        ..Row::default()
    };
    row.notes.push(format!(
        "Each size is {LINKHUB_PROBES} probes, round-robin over the targets, one after another as fast as they return (not every 15 s: the figures that matter are the cost per probe and the growth); each target is its own `device-sim linkhub`.\n{}",
        if named {
            "The targets are named in a `--config-file`, each with its `password_file`."
        } else {
            "This build has no named targets (`--config-file` with `targets:`), so the targets are probed ad hoc (`/probe?target=127.0.0.1:PORT`), without a password: only the methods that need no login are read."
        }
    ));
    let _ = writeln!(
        row.table,
        "| targets | probes | probe p50 / p99 | CPU per probe | device requests per probe | RSS after one round | after 1000 probes | after {LINKHUB_PROBES} probes | growth from 1000 on | peak RSS | CPU per 15 s, every target once |"
    );
    let _ = writeln!(row.table, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut per_probe = Vec::new();
    for n in [1usize, 10, 100] {
        eprintln!("==> scale linkhub {n} targets");
        let m = linkhub_size(bin_dir, n, named, LINKHUB_PROBES)?;
        let interval_s = m.cpu_ms * n as f64 / 1000.0;
        let warm = m.at_1000_kib.unwrap_or(m.after_round_kib);
        let _ = writeln!(
            row.table,
            "| {n} | {} | {:.2} / {:.2} ms | {:.3} ms | {:.2} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.2} MiB | {:.1} MiB | {:.1} ms |",
            m.probes,
            m.p50_ms,
            m.p99_ms,
            m.cpu_ms,
            m.requests,
            mib(m.after_round_kib),
            mib(warm),
            mib(m.end.rss_kib),
            mib(m.end.rss_kib) - mib(warm),
            mib(m.end.hwm_kib),
            interval_s * 1000.0,
        );
        let x = n as f64;
        row.cpu.push((x, interval_s));
        row.rss.push((x, mib(m.end.hwm_kib)));
        per_probe.push((x, m.cpu_ms));
    }
    row.panels.push(plot::Panel {
        title: "CPU per probe".to_owned(),
        y_label: "milliseconds".to_owned(),
        log_y: false,
        series: vec![plot::Series { name: "per probe".to_owned(), points: per_probe }],
    });
    Ok(row)
}

/// What `probes` probes over `n` LinkHub targets measured.
struct LinkhubSize {
    probes: u64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms: f64,
    requests: f64,
    after_round_kib: u64,
    /// After the first 1000 probes (warm: every target probed at least 10 times).
    at_1000_kib: Option<u64>,
    end: ProcStats,
}

/// `n` simulated LinkHubs, one exporter, `probes` probes round-robin (named targets from a
/// config file, or ad hoc addresses).
fn linkhub_size(bin_dir: &Path, n: usize, named: bool, probes: u64) -> anyhow::Result<LinkhubSize> {
    let dir = stack::target_dir().join("bench/scale-linkhub");
    let mut group = Group::new(&dir, "bench: stopped the scale run")?;
    let mut sims = Vec::new();
    for i in 0..n {
        sims.push(sim(
            &mut group,
            bin_dir,
            &format!("sim-linkhub-{i}"),
            &["linkhub", "--listen", "127.0.0.1:0"],
        )?);
    }
    let mut urls = Vec::new();
    for index in sims {
        urls.push(group.wait_line(index, "listening on ", secs(20))?);
    }
    let mut device = Device::new(
        urls.iter().map(|u| DeviceCtl { base: format!("{u}/_sim"), http: true }).collect(),
    )?;
    let password = group.dir().join("linkhub-password");
    fs::write(&password, "admin\n").context("write the LinkHub password file")?;
    let (args, paths): (Vec<String>, Vec<String>) = if named {
        let config = group.dir().join("linkhub-targets.yml");
        let mut yaml = "targets:\n".to_owned();
        for (i, u) in urls.iter().enumerate() {
            let _ = writeln!(
                yaml,
                "  r{i:03}:\n    address: {u}\n    password_file: {}",
                stack::path_arg(&password)
            );
        }
        fs::write(&config, yaml).context("write the LinkHub config file")?;
        (
            vec!["--config-file".to_owned(), stack::path_arg(&config)],
            (0..n).map(|i| format!("/probe?target=r{i:03}")).collect(),
        )
    } else {
        (
            Vec::new(),
            urls.iter()
                .map(|u| format!("/probe?target={}", u.trim_start_matches("http://")))
                .collect(),
        )
    };
    let exporter = start_exporter(&mut group, bin_dir, Kind::Linkhub, &args)?;
    let mut conn = exporter.conn()?;
    for path in &paths {
        let a = conn.scrape(path, false, SCRAPE_TIMEOUT_S)?;
        anyhow::ensure!(
            a.status == 200 && String::from_utf8_lossy(&a.body).contains("\nlinkhub_up 1\n"),
            "linkhub {path}: HTTP {} without linkhub_up 1",
            a.status
        );
    }
    let after_round_kib = exporter.stats()?.rss_kib;
    let started = Instant::now();
    let cpu0 = exporter.oncpu_ns()?;
    let dev0 = device.count()?.requests;
    let mut lat = Vec::new();
    let mut failed = 0u64;
    let mut at_1000_kib = None;
    for i in 0..probes {
        if started.elapsed() > secs(240) {
            break;
        }
        if i == 1000 {
            at_1000_kib = Some(exporter.stats()?.rss_kib);
        }
        let path = paths.get(i as usize % paths.len()).map_or("/probe", String::as_str);
        let t = Instant::now();
        let ok = conn.scrape(path, true, SCRAPE_TIMEOUT_S).is_ok_and(|a| a.status == 200);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        failed += u64::from(!ok);
    }
    let done = lat.len() as u64;
    let cpu_ms = exporter.oncpu_ns()?.saturating_sub(cpu0) as f64 / 1e6 / done.max(1) as f64;
    let requests = device.count()?.requests.saturating_sub(dev0) as f64 / done.max(1) as f64;
    anyhow::ensure!(failed == 0, "linkhub {n} targets: {failed} of {done} probes failed");
    let end = exporter.stats()?;
    group.check_running(exporter.index)?;
    group.stop();
    lat.sort_by(f64::total_cmp);
    Ok(LinkhubSize {
        probes: done,
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        cpu_ms,
        requests,
        after_round_kib,
        at_1000_kib,
        end,
    })
}

// ---------------------------------------------------------------------------------------------
// Growth, the Pi 3, charts.

/// Exponent `k` of `y ∝ n^k` between the two largest sizes.
fn exponent(points: &[(f64, f64)]) -> Option<f64> {
    let [.., (n1, y1), (n2, y2)] = points else { return None };
    (*y1 > 0.0 && *y2 > 0.0 && n2 > n1).then(|| (y2 / y1).ln() / (n2 / n1).ln())
}

fn describe(k: Option<f64>) -> String {
    match k {
        None => "not measured".to_owned(),
        Some(k) if k < 0.15 => format!("about constant (n^{k:.2})"),
        Some(k) if k < 0.8 => format!("sublinear (n^{k:.2}: a fixed part dominates)"),
        Some(k) if k < 1.25 => format!("linear (n^{k:.2})"),
        Some(k) => format!("faster than linear (n^{k:.2})"),
    }
}

fn growth(row: &Row) -> String {
    let range = match row.cpu.as_slice() {
        [.., a, b] => format!(" from {} to {} {}", plot::short(a.0), plot::short(b.0), row.unit),
        _ => String::new(),
    };
    format!(
        "Growth{range}: CPU {}, peak memory {}.",
        describe(exponent(&row.cpu)),
        describe(exponent(&row.rss))
    )
}

/// The size `n` at which `a + b·n` (through the two largest points) reaches `budget`.
fn limit(points: &[(f64, f64)], budget: f64) -> Option<f64> {
    let [.., (n1, y1), (n2, y2)] = points else { return None };
    let b = (y2 - y1) / (n2 - n1);
    let a = y2 - b * n2;
    (b > 0.0).then(|| ((budget - a) / b).max(0.0))
}

fn pi_fit(row: &Row) -> String {
    let cpu = limit(&row.cpu, PI_CPU_BUDGET_S / PI_SLOWDOWN);
    let mem = limit(&row.rss, PI_MEM_BUDGET_MIB);
    let show = |v: Option<f64>| {
        v.map_or_else(
            || "no limit (the cost does not grow)".to_owned(),
            |v| format!("about {} {}", plot::short(round_sig(v)), row.unit),
        )
    };
    format!(
        "On a Raspberry Pi 3 (by calculation: CPU × {PI_SLOWDOWN}, budget {PI_CPU_BUDGET_S} s of one core per {INTERVAL_S} s interval, {PI_MEM_BUDGET_MIB} MiB): CPU stops fitting at {}, memory at {}.",
        show(cpu),
        show(mem)
    )
}

/// Two significant digits.
fn round_sig(v: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let p = 10f64.powf(v.log10().floor() - 1.0);
    (v / p).round() * p
}

fn chart(row: &Row) -> anyhow::Result<()> {
    let mut panels = row.panels.clone();
    panels.push(plot::Panel {
        title: "peak resident memory".to_owned(),
        y_label: "MiB".to_owned(),
        log_y: false,
        series: vec![plot::Series { name: "RSS".to_owned(), points: row.rss.clone() }],
    });
    let wide = row.cpu.first().zip(row.cpu.last()).is_some_and(|(a, b)| b.0 / a.0 >= 50.0);
    let x = plot::XAxis {
        label: if wide { format!("{} (log)", row.unit) } else { row.unit.to_owned() },
        log: wide,
        names: Vec::new(),
    };
    plot::chart(
        &crate::sh::root().join(format!("docs/images/scale-{}.svg", row.short)),
        &row.heading,
        &x,
        &panels,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn growth_and_limits() {
        let linear = [(10.0, 1.0), (100.0, 10.0), (1000.0, 100.0)];
        assert!((exponent(&linear).unwrap() - 1.0).abs() < 1e-9);
        assert!((limit(&linear, 200.0).unwrap() - 2000.0).abs() < 1e-6);
        let flat = [(1.0, 5.0), (10.0, 5.0)];
        assert!(exponent(&flat).unwrap().abs() < 1e-9);
        assert_eq!(limit(&flat, 200.0), None);
        assert_eq!(round_sig(12_345.0), 12_000.0);
    }
}
