//! `cargo xtask soak`: all four exporters (release builds) scraped 100 000 times in total
//! against device-sim, with device faults mixed in, checking that they never fail to answer,
//! that resident memory stops growing after warm-up and that file descriptors come back
//! (issue 9).
//!
//! Each exporter gets its own scraper thread and a quarter of the scrapes, in phases: 400
//! normal scrapes (gzip, as Prometheus asks), then a fault on the device for a few scrapes
//! (plain text, each must answer 200 within the scrape timeout and report the failure:
//! `<ns>_up 0` or a failed collector), rotating
//! through every fault the simulator has; the last scrape of each normal phase must say
//! `<ns>_up 1`. The modem's fault is a reply delay beyond the scrape timeout. Warm-up is the
//! first full rotation of faults; memory growth is measured from then to the end.
//! File descriptors are counted before the first scrape, after it, and at the end after the
//! exporters' idle device connections expired (35 s, the HTTP pool keeps them 30 s).

use std::{
    fmt::Write as _,
    fs, thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use argh::FromArgs;

use crate::{
    load::{self, Kind, ProcStats, Rig, RigOptions, mib},
    stack::{Group, log_tail},
};

/// scrape the four exporters 100 000 times in total against device-sim with faults mixed in,
/// and check memory growth and file descriptors (writes docs/reliability.md)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "soak")]
pub struct Soak {
    /// scrapes in total over the four exporters (default 100000)
    #[argh(option, default = "100000")]
    scrapes: u64,
    /// use the release binaries already in target/release (no cargo build)
    #[argh(switch)]
    no_build: bool,
    /// print the results but leave docs/reliability.md alone
    #[argh(switch)]
    no_write: bool,
}

/// Normal scrapes between two fault phases.
const NORMAL: u64 = 400;
/// The scrape timeout every scrape announces (seconds).
const TIMEOUT: f64 = 2.0;
/// Faults of the HTTP simulators: (fault, scrapes under it). Slow faults run out the
/// scrape deadline, so they get fewer scrapes.
const HTTP_FAULTS: [(&str, u64); 12] = [
    ("refuse", 20),
    ("status:503", 20),
    ("status:500", 20),
    ("garbage", 20),
    ("truncated", 20),
    ("reset-mid-body", 10),
    ("invalid-utf8", 20),
    ("wrong-content-type", 20),
    ("oversized", 10),
    ("hang", 3),
    ("drip", 3),
    ("endless", 3),
];
/// Resident memory may grow by less than this from warm-up to the end (KiB).
const GROWTH_LIMIT_KIB: u64 = 1024;
/// How long the exporters' idle device connections live (the HTTP pool's idle timeout) plus
/// a margin.
const SETTLE: Duration = Duration::from_secs(35);

/// What one exporter went through.
#[derive(Debug, Default, Clone)]
struct Run {
    kind: Option<Kind>,
    scrapes: u64,
    fault_scrapes: u64,
    /// Scrapes that got no HTTP 200 or took longer than the timeout plus 1 s.
    failures: u64,
    /// Fault scrapes that reported no failure (see [`reports_failure`]; wrong-content-type
    /// may report none).
    wrong_up: u64,
    wrong_by_fault: std::collections::BTreeMap<String, u64>,
    /// Normal phases whose last scrape did not say `<ns>_up 1`.
    not_recovered: u64,
    slowest_ms: f64,
    before: ProcStats,
    first: ProcStats,
    warm: ProcStats,
    end: ProcStats,
    settled: ProcStats,
    faults_seen: Vec<String>,
    seconds: f64,
    problems: Vec<String>,
}

impl Soak {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(self.scrapes >= 4 * 1000, "--scrapes: at least 4000");
        let bin_dir =
            if self.no_build { load::profile_dir("release") } else { load::build("release")? };
        let dir = crate::stack::target_dir().join("soak");
        let mut group = Group::new(&dir, "soak: stopped the simulators and exporters")?;
        let mut rigs = Vec::new();
        for kind in Kind::ALL {
            let opts = match kind {
                // Every scrape reads the device (no statistics cache), so faults are hit.
                Kind::Ttn => RigOptions {
                    ttn_gateways: 10,
                    exporter_args: vec!["--stats-ttl".to_owned(), "1ms".to_owned()],
                },
                _ => RigOptions::default(),
            };
            rigs.push(Rig::start(&mut group, &bin_dir, kind, &opts)?);
        }
        thread::sleep(Duration::from_secs(1));
        let per_exporter = self.scrapes / 4;
        let started = Instant::now();
        eprintln!("soak: {per_exporter} scrapes of each exporter, faults mixed in");
        let results: Vec<anyhow::Result<Run>> = thread::scope(|s| {
            let handles: Vec<_> =
                rigs.iter_mut().map(|rig| s.spawn(move || soak_one(rig, per_exporter))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a soak thread panicked")))
                })
                .collect()
        });
        let mut runs = Vec::new();
        for r in results {
            runs.push(r?);
        }
        eprintln!(
            "soak: scrapes done in {:.0} s; waiting {SETTLE:?} for idle connections to expire",
            started.elapsed().as_secs_f64()
        );
        thread::sleep(SETTLE);
        for (run, rig) in runs.iter_mut().zip(&rigs) {
            group.check_running(rig.index)?;
            run.settled = rig.stats()?;
            let log = fs::read_to_string(&group.proc(rig.index)?.log).unwrap_or_default();
            if log.contains("panicked") {
                run.problems.push(format!(
                    "its log mentions a panic:\n{}",
                    log_tail(&group.proc(rig.index)?.log, 20)
                ));
            }
            judge(run);
        }
        group.stop();
        let report = render(&runs, self.scrapes, started.elapsed());
        println!("{report}");
        if !self.no_write {
            write_docs(&report, &self)?;
        }
        let problems: Vec<String> = runs
            .iter()
            .flat_map(|r| {
                let name = r.kind.map_or("?", Kind::binary);
                r.problems.iter().map(move |p| format!("{name}: {p}"))
            })
            .collect();
        anyhow::ensure!(problems.is_empty(), "soak failed:\n  {}", problems.join("\n  "));
        eprintln!("soak: passed");
        Ok(())
    }
}

/// Scrapes one exporter `total` times with its fault schedule.
fn soak_one(rig: &mut Rig, total: u64) -> anyhow::Result<Run> {
    let mut run = Run { kind: Some(rig.kind), before: rig.stats()?, ..Run::default() };
    let started = Instant::now();
    let faults: Vec<(String, u64)> = match rig.kind {
        Kind::Mm => vec![("delay:3000".to_owned(), 3)],
        _ => HTTP_FAULTS.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect(),
    };
    let ns = rig.kind.namespace();
    let up1 = format!("\n{ns}_up 1\n");
    let mut conn = rig.scraper()?;
    let mut phase = 0usize;
    let mut warm_at = None;
    while run.scrapes < total {
        // Normal scrapes.
        let normal = NORMAL.min(total - run.scrapes);
        for i in 0..normal {
            let last = i + 1 == normal;
            let t = Instant::now();
            let answer = conn.scrape("/metrics", !last, TIMEOUT);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            run.slowest_ms = run.slowest_ms.max(ms);
            run.scrapes += 1;
            let ok = answer.as_ref().is_ok_and(|a| a.status == 200);
            if !ok || ms > (TIMEOUT + 1.0) * 1000.0 {
                run.failures += 1;
            }
            if last && !answer.is_ok_and(|a| String::from_utf8_lossy(&a.body).contains(&up1)) {
                run.not_recovered += 1;
            }
            if run.scrapes == 1 {
                run.first = rig.stats()?;
            }
        }
        if warm_at.is_none() && phase >= faults.len() {
            run.warm = rig.stats()?;
            warm_at = Some(run.scrapes);
        }
        if run.scrapes >= total {
            break;
        }
        // A fault.
        let Some((fault, n)) = faults.get(phase % faults.len()) else { break };
        phase += 1;
        set_fault(rig, Some(fault))?;
        // Let cached device data expire (ttn-exporter's `--stats-ttl 1ms`), so that the first
        // scrape under the fault reaches the device instead of serving a fresh picture.
        thread::sleep(Duration::from_millis(5));
        if !run.faults_seen.contains(fault) {
            run.faults_seen.push(fault.clone());
        }
        for _ in 0..(*n).min(total - run.scrapes) {
            let t = Instant::now();
            let answer = conn.scrape("/metrics", false, TIMEOUT);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            run.slowest_ms = run.slowest_ms.max(ms);
            run.scrapes += 1;
            run.fault_scrapes += 1;
            match answer {
                Ok(a) if a.status == 200 && ms <= (TIMEOUT + 1.0) * 1000.0 => {
                    let text = String::from_utf8_lossy(&a.body);
                    // A wrong content type on a body that decodes is no failure.
                    let right = reports_failure(&text, ns)
                        || (fault == "wrong-content-type" && text.contains(&up1));
                    if !right {
                        run.wrong_up += 1;
                        *run.wrong_by_fault.entry(fault.clone()).or_default() += 1;
                    }
                }
                _ => run.failures += 1,
            }
        }
        set_fault(rig, None)?;
    }
    run.end = rig.stats()?;
    if warm_at.is_none() {
        run.warm = run.first;
    }
    conn.close();
    run.seconds = started.elapsed().as_secs_f64();
    Ok(run)
}

/// Whether a scrape reports a failure: `<ns>_up 0`, or a collector that failed
/// (`<ns>_scrape_collector_success{…} 0`: ttn-exporter keeps serving its cached gateway list
/// when only the statistics calls fail, and says so per collector).
fn reports_failure(text: &str, ns: &str) -> bool {
    let collector = format!("{ns}_scrape_collector_success{{");
    text.contains(&format!("\n{ns}_up 0\n"))
        || text.lines().any(|l| l.starts_with(&collector) && l.ends_with(" 0"))
}

fn set_fault(rig: &mut Rig, fault: Option<&str>) -> anyhow::Result<()> {
    match fault.and_then(|f| f.strip_prefix("delay:")) {
        Some(ms) => rig.device.set_latency(ms.parse().context("delay fault")?),
        None if rig.kind == Kind::Mm => rig.device.set_latency(0),
        None => rig.device.set_fault(fault).map(|_| ()),
    }
}

/// Turns the figures of `run` into problems.
fn judge(run: &mut Run) {
    if run.failures > 0 {
        run.problems.push(format!(
            "{} scrapes got no HTTP 200 within the scrape timeout + 1 s (slowest {:.0} ms)",
            run.failures, run.slowest_ms
        ));
    }
    if run.wrong_up > 0 {
        run.problems.push(format!(
            "{} scrapes under a fault reported no failure: {:?}",
            run.wrong_up, run.wrong_by_fault
        ));
    }
    if run.not_recovered > 0 {
        run.problems.push(format!("{} normal phases did not end with up 1", run.not_recovered));
    }
    let growth = run.end.rss_kib.saturating_sub(run.warm.rss_kib);
    if growth >= GROWTH_LIMIT_KIB {
        run.problems.push(format!(
            "resident memory grew by {growth} KiB after warm-up ({} -> {})",
            mib(run.warm.rss_kib),
            mib(run.end.rss_kib)
        ));
    }
    if run.settled.fds > run.before.fds {
        run.problems.push(format!(
            "{} file descriptors open at the end, {} before the first scrape",
            run.settled.fds, run.before.fds
        ));
    }
}

fn render(runs: &[Run], total: u64, took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{total} scrapes in all, {} s; scrape timeout {TIMEOUT} s; a fault phase after every {NORMAL} normal scrapes.\n",
        took.as_secs()
    );
    let _ = writeln!(
        s,
        "| exporter | scrapes | under a fault | faults | failed | failure not reported | not recovered | slowest | RSS before / after warm-up / end / after 35 s idle | growth after warm-up | fds before / after 1st scrape / end | CPU s | result |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---|---:|---|");
    for r in runs {
        let growth = r.end.rss_kib as i64 - r.warm.rss_kib as i64;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} ms | {} / {} / {} / {} | {growth} KiB | {} / {} / {} | {:.1} | {} |",
            r.kind.map_or("?", Kind::binary),
            r.scrapes,
            r.fault_scrapes,
            r.faults_seen.join(", "),
            r.failures,
            r.wrong_up,
            r.not_recovered,
            r.slowest_ms,
            mib(r.before.rss_kib),
            mib(r.warm.rss_kib),
            mib(r.end.rss_kib),
            mib(r.settled.rss_kib),
            r.before.fds,
            r.first.fds,
            r.settled.fds,
            r.end.cpu_seconds - r.before.cpu_seconds,
            if r.problems.is_empty() { "pass" } else { "**FAIL**" }
        );
    }
    s
}

/// Replaces the generated part of docs/reliability.md with `report`.
fn write_docs(report: &str, soak: &Soak) -> anyhow::Result<()> {
    let command = if soak.scrapes == 100_000 {
        "cargo xtask soak".to_owned()
    } else {
        format!("cargo xtask soak --scrapes {}", soak.scrapes)
    };
    load::write_generated("docs/reliability.md", "soak", &command, report)
}
