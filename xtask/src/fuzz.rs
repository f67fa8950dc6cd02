//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (nightly, libFuzzer).
//!
//! Seeds each target's corpus from the test fixtures at run time (nothing is copied into git),
//! builds every target once, runs the chosen ones one after another for `--seconds` each, and
//! prints libFuzzer's final figures (runs, exec/s, coverage, corpus) per target. A crash
//! stops with an error naming the reproducer libFuzzer wrote under `fuzz/artifacts/`.
//! `ci.rs` calls [`smoke`] for the short run of every target in `cargo xtask ci`.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::Context as _;
use argh::FromArgs;

use crate::sh;

/// run the fuzz targets (cargo-fuzz on nightly): seed from the fixtures, run each target for
/// --seconds, print runs and coverage; `cargo xtask fuzz seed` only seeds the corpora
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "fuzz")]
pub struct Fuzz {
    /// seconds per target (default 600)
    #[argh(option, default = "600")]
    seconds: u64,
    /// targets to run (default: all); the single word `seed` only seeds the corpora
    #[argh(positional)]
    targets: Vec<String>,
}

/// Every fuzz target and where its seeds come from: (directory, file suffix) pairs relative
/// to the workspace root.
pub const TARGETS: &[(&str, &[(&str, &str)])] = &[
    ("linkhub_response", &[("bins/linkhub-exporter/tests/fixtures", "")]),
    ("ttn_body", &[("bins/ttn-exporter/tests/fixtures", ".json")]),
    ("smarthub_wan_xml", &[("bins/smarthub-exporter/tests/fixtures", ".xml")]),
    ("smarthub_js", &[("bins/smarthub-exporter/tests/fixtures", ".js")]),
    ("mm_decode", &[]),
    ("web_config", &[("crates/exporter-core/tests/fixtures/web-config", ".yml")]),
    ("http_request", &[]),
    (
        "capture_file",
        &[
            ("crates/exporter-core/tests/fixtures/captures", ""),
            ("bins/linkhub-exporter/tests/captures", ".yml"),
            ("bins/smarthub-exporter/tests/captures", ".yml"),
            ("bins/ttn-exporter/tests/captures", ".yml"),
            ("bins/mm-exporter/tests/captures", ".yml"),
        ],
    ),
];

/// Seeds of `http_request` (no fixture holds request lines): target, timeout, accept-encoding.
const HTTP_SEEDS: &[&str] = &[
    "/probe?target=http%3A%2F%2F192.168.1.1&debug=true\n9.5\ngzip, deflate",
    "/probe?target=192.168.1.254:8080\n0.5\n*;q=0",
    "/probe?target=gw-0001&target=%2A\n1e1\nidentity",
    "/probe?target=https://[fd00::1]:443\n \nx-gzip;q=0.5",
    "/probe?target=fa4e000000000000000000000000000000000001\nNaN\n",
    "/metrics?debug=1+2&x=%zz\n30\ngzip;q=0, *",
    "http://localhost/probe?target=all\n-1\n",
];

/// libFuzzer options of every run: a slow input (over 10 s) or 2 GiB of memory is a finding.
const LIBFUZZER_ARGS: &[&str] = &["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"];

impl Fuzz {
    pub fn run(self) -> anyhow::Result<()> {
        let root = sh::root();
        if self.targets == ["seed"] {
            return seed_all(&root);
        }
        let targets = select(&self.targets)?;
        run_targets(&root, &targets, self.seconds, false)
    }
}

/// The CI smoke run: every target for a few seconds (tools installed first under CI=true).
pub fn smoke() -> anyhow::Result<()> {
    let targets: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    // Unoptimised (`--dev`): a cold build takes about half as long, and a smoke run needs
    // coverage and sanitizers more than speed.
    run_targets(&sh::root(), &targets, SMOKE_SECONDS, true)
}

/// Seconds per target in the CI smoke run.
const SMOKE_SECONDS: u64 = 15;

fn select(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(TARGETS.iter().map(|(name, _)| *name).collect());
    }
    names
        .iter()
        .map(|n| {
            TARGETS.iter().map(|(name, _)| *name).find(|t| t == n).ok_or_else(|| {
                let all: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
                anyhow::anyhow!("unknown fuzz target {n:?} (targets: {})", all.join(", "))
            })
        })
        .collect()
}

/// What libFuzzer reported at the end of one run.
#[derive(Debug, Default)]
struct Outcome {
    target: &'static str,
    seconds: f64,
    runs: Option<u64>,
    exec_per_sec: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<String>,
    crashed: bool,
}

fn run_targets(
    root: &Path,
    targets: &[&'static str],
    seconds: u64,
    dev: bool,
) -> anyhow::Result<()> {
    ensure_tools()?;
    seed_all(root)?;
    let started = Instant::now();
    let mut build = Command::new("cargo");
    build.current_dir(root).args(["+nightly", "fuzz", "build", "--fuzz-dir", "fuzz", "-a"]);
    if dev {
        build.arg("--dev");
    }
    sh::run(&mut build).context("build the fuzz targets")?;
    eprintln!("fuzz targets built in {:.0} s", started.elapsed().as_secs_f64());
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(run_one(root, target, seconds, dev)?);
    }
    print_table(&outcomes);
    let crashed: Vec<&str> = outcomes.iter().filter(|o| o.crashed).map(|o| o.target).collect();
    anyhow::ensure!(
        crashed.is_empty(),
        "fuzz targets found crashes: {} (reproducers under fuzz/artifacts/<target>/, logs under \
         fuzz/logs/)",
        crashed.join(", ")
    );
    Ok(())
}

fn run_one(root: &Path, target: &'static str, seconds: u64, dev: bool) -> anyhow::Result<Outcome> {
    let corpus = root.join("fuzz/corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
    let logs = root.join("fuzz/logs");
    fs::create_dir_all(&logs).context("create fuzz/logs")?;
    let log_path = logs.join(format!("{target}.log"));
    let mut log =
        fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", "-a"])
        .args(dev.then_some("--dev"))
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(LIBFUZZER_ARGS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("==> fuzz {target} for {seconds} s (log: fuzz/logs/{target}.log)");
    let started = Instant::now();
    let mut child = cmd.spawn().context("start cargo fuzz run")?;
    let stderr = child.stderr.take().context("cargo fuzz run: no stderr")?;
    let mut outcome = Outcome { target, ..Outcome::default() };
    for line in BufReader::new(stderr).lines() {
        let line = line.context("read cargo fuzz output")?;
        writeln!(log, "{line}").context("write the fuzz log")?;
        if line.contains("DONE") || line.contains(" cov: ") {
            parse_status(&line, &mut outcome);
        }
        if let Some(runs) = line.strip_prefix("Done ").and_then(|r| r.split(' ').next()) {
            outcome.runs = runs.parse().ok().or(outcome.runs);
        }
        let interesting = line.contains("DONE")
            || line.starts_with("Done ")
            || line.starts_with("INFO: seed corpus")
            || line.contains("panicked")
            || line.contains("==ERROR")
            || line.contains("SUMMARY")
            || line.contains("Test unit written")
            || line.starts_with("error");
        if interesting {
            eprintln!("  {line}");
        }
    }
    let status = child.wait().context("wait for cargo fuzz run")?;
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.crashed = !status.success();
    Ok(outcome)
}

/// Reads `#123 DONE cov: 1 ft: 2 corp: 3/4Kb ... exec/s: 5 rss: 6Mb` (or a pulse line).
fn parse_status(line: &str, out: &mut Outcome) {
    let mut words = line.split_whitespace().peekable();
    if let Some(first) = words.peek()
        && let Some(n) = first.strip_prefix('#')
    {
        out.runs = n.parse().ok().or(out.runs);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.windows(2) {
        let [key, value] = pair else { continue };
        match *key {
            "cov:" => out.cov = value.parse().ok().or(out.cov),
            "ft:" => out.ft = value.parse().ok().or(out.ft),
            "corp:" => out.corpus = Some((*value).to_owned()),
            "exec/s:" => out.exec_per_sec = value.parse().ok().or(out.exec_per_sec),
            _ => {}
        }
    }
}

fn print_table(outcomes: &[Outcome]) {
    let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    println!(
        "{:<18} {:>7} {:>12} {:>8} {:>6} {:>7} {:>12}  result",
        "target", "seconds", "runs", "exec/s", "cov", "ft", "corpus"
    );
    for o in outcomes {
        println!(
            "{:<18} {:>7.0} {:>12} {:>8} {:>6} {:>7} {:>12}  {}",
            o.target,
            o.seconds,
            show(o.runs),
            show(o.exec_per_sec),
            show(o.cov),
            show(o.ft),
            o.corpus.as_deref().unwrap_or("?"),
            if o.crashed { "CRASH" } else { "ok" }
        );
    }
}

/// Copies the fixtures into `fuzz/corpus/<target>/` (as `seed-<file name>`) and writes the
/// built-in request seeds; files already there are left alone.
fn seed_all(root: &Path) -> anyhow::Result<()> {
    let mut added = 0;
    for (target, sources) in TARGETS {
        let corpus = root.join("fuzz/corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
        for (dir, suffix) in *sources {
            for file in files(&root.join(dir), suffix)? {
                let Some(name) = file.file_name().and_then(|n| n.to_str()) else { continue };
                let dest = corpus.join(format!("seed-{name}"));
                if !dest.exists() {
                    fs::copy(&file, &dest).with_context(|| format!("copy {}", file.display()))?;
                    added += 1;
                }
            }
        }
        if *target == "http_request" {
            for (i, seed) in HTTP_SEEDS.iter().enumerate() {
                let dest = corpus.join(format!("seed-request-{i}"));
                if !dest.exists() {
                    fs::write(&dest, seed).with_context(|| format!("write {}", dest.display()))?;
                    added += 1;
                }
            }
        }
    }
    eprintln!("fuzz corpora seeded from the fixtures ({added} new files under fuzz/corpus/)");
    Ok(())
}

/// Regular files in `dir` whose name ends in `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry.with_context(|| format!("list {}", dir.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && name.ends_with(suffix) && !name.ends_with(".md") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Nightly and cargo-fuzz: present, or installed under CI=true, or a clear error.
fn ensure_tools() -> anyhow::Result<()> {
    let nightly = Command::new("cargo")
        .args(["+nightly", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let install_nightly = "rustup toolchain install nightly --profile minimal";
    if !nightly {
        anyhow::ensure!(sh::in_ci(), "no nightly toolchain: run `{install_nightly}`");
        sh::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !fuzz {
        anyhow::ensure!(
            sh::in_ci(),
            "cargo-fuzz is missing: run `cargo install cargo-fuzz --locked`"
        );
        sh::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn final_stats_are_read() {
        let mut o = Outcome::default();
        parse_status(
            "#1234567\tDONE   cov: 2345 ft: 9876 corp: 321/45Kb lim: 4096 exec/s: 20576 rss: 88Mb",
            &mut o,
        );
        assert_eq!(o.runs, Some(1_234_567));
        assert_eq!(o.cov, Some(2345));
        assert_eq!(o.ft, Some(9876));
        assert_eq!(o.corpus.as_deref(), Some("321/45Kb"));
        assert_eq!(o.exec_per_sec, Some(20576));
    }

    #[test]
    fn every_target_has_a_source_file_and_seeds_exist() {
        let root = sh::root();
        for (target, sources) in TARGETS {
            let src = root.join("fuzz/fuzz_targets").join(format!("{target}.rs"));
            assert!(src.is_file(), "{}", src.display());
            let manifest = fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
            assert!(manifest.contains(&format!("name = \"{target}\"")), "{target}");
            for (dir, suffix) in *sources {
                assert!(!files(&root.join(dir), suffix).unwrap().is_empty(), "{target}: {dir}");
            }
        }
        assert!(select(&["nope".to_owned()]).is_err());
        assert_eq!(select(&[]).unwrap().len(), TARGETS.len());
    }
}
