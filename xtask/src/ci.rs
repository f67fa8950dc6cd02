//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.
//!
//! The steps are formatting, clippy, the tests (which include tidy), and `promtool check metrics`
//! over every golden exposition file.
//! Later issues fill in the hook functions at the end of this file (rule tests, dashboards,
//! end-to-end run, fuzz smoke run, packaging).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::Context as _;
use argh::FromArgs;

use crate::sh;

/// run every CI check: fmt, clippy, tests, promtool over the golden files
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ci")]
pub struct Ci {
    /// run only this step: fmt, clippy, test, promtool, grafana, e2e, fuzz or dist
    #[argh(option)]
    only: Option<String>,
}

/// The steps in the order CI runs them: a short name for `--only`, and the step.
const STEPS: [(&str, Step); 8] = [
    ("fmt", fmt),
    ("clippy", clippy),
    ("test", test),
    ("promtool", golden_metrics),
    ("grafana", grafana),
    ("e2e", e2e),
    ("fuzz", fuzz_smoke),
    ("dist", dist),
];

impl Ci {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(only) = &self.only
            && !STEPS.iter().any(|(name, _)| name == only)
        {
            let names: Vec<&str> = STEPS.iter().map(|(name, _)| *name).collect();
            anyhow::bail!("unknown ci step {only:?} (steps: {})", names.join(", "));
        }
        let started = Instant::now();
        for (name, step) in STEPS {
            if self.only.as_deref().is_some_and(|only| only != name) {
                continue;
            }
            eprintln!("==> ci: {name}");
            let step_started = Instant::now();
            step().with_context(|| format!("ci step `{name}` failed"))?;
            eprintln!("==> ci: {name} ok ({:.1} s)", step_started.elapsed().as_secs_f64());
        }
        eprintln!("==> ci: passed ({:.0} s)", started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// One CI step.
type Step = fn() -> anyhow::Result<()>;

fn fmt() -> anyhow::Result<()> {
    sh::run(sh::cargo().args(["fmt", "--all", "--check"]))
        .context("the code is not formatted: run `cargo fmt --all`")
}

fn clippy() -> anyhow::Result<()> {
    sh::run(sh::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Plain `cargo test`, so its `test result:` lines are in the log.
fn test() -> anyhow::Result<()> {
    sh::run(sh::cargo().args(["test", "--workspace", "--locked"]))
}

/// `promtool check metrics` over every `bins/*/tests/golden/*.prom` and
/// `crates/*/tests/golden/*.prom`.
fn golden_metrics() -> anyhow::Result<()> {
    let files = golden_files(&sh::root())?;
    if !sh::have("promtool") {
        let msg = "promtool not found (apt-get install prometheus)";
        if sh::in_ci() {
            anyhow::bail!("{msg}; CI=true requires it");
        }
        eprintln!("warning: {msg}: skipping the check of {} golden files", files.len());
        return Ok(());
    }
    let mut failed = Vec::new();
    for file in &files {
        let shown = file.strip_prefix(sh::root()).unwrap_or(file).display().to_string();
        let input = fs::File::open(file).with_context(|| format!("open {shown}"))?;
        let output = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::from(input))
            .output()
            .context("run promtool check metrics")?;
        if output.status.success() {
            eprintln!("promtool check metrics {shown}: ok");
        } else {
            eprintln!(
                "promtool check metrics {shown}: {}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            failed.push(shown);
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("promtool check metrics found problems in: {}", failed.join(", "));
    }
    eprintln!("promtool check metrics: {} golden files clean", files.len());
    Ok(())
}

/// Every `*.prom` under `{bins,crates}/*/tests/golden/`, sorted.
fn golden_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for group in ["bins", "crates"] {
        let Ok(members) = fs::read_dir(root.join(group)) else { continue };
        for member in members {
            let golden =
                member.with_context(|| format!("list {group}/"))?.path().join("tests/golden");
            let Ok(entries) = fs::read_dir(&golden) else { continue };
            for entry in entries {
                let path = entry.with_context(|| format!("list {}", golden.display()))?.path();
                if path.extension().is_some_and(|ext| ext == "prom") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Dashboards against Grafana's schema and the project's conventions, and
/// `promtool check rules` / `promtool test rules` over `grafana/rules/`.
fn grafana() -> anyhow::Result<()> {
    crate::grafana::check(&sh::root())
}

/// `cargo xtask e2e`: the stack against a real Prometheus, the fleet and the landing pages.
fn e2e() -> anyhow::Result<()> {
    crate::e2e::ci_step()
}

/// A short run of every fuzz target.
fn fuzz_smoke() -> anyhow::Result<()> {
    crate::fuzz::smoke()
}

/// The amd64 part of `cargo xtask dist`: release builds, Debian packages, lintian,
/// `systemd-analyze verify` and `security`, and (as root) an install test.
fn dist() -> anyhow::Result<()> {
    crate::dist::ci()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::fs;

    #[test]
    fn golden_files_are_found_only_under_tests_golden() {
        let root = std::env::temp_dir().join(format!("xtask-golden-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["bins/a-exporter/tests/golden", "crates/core/tests/golden", "bins/b/tests"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "bins/a-exporter/tests/golden/z.prom",
            "bins/a-exporter/tests/golden/a.prom",
            "bins/a-exporter/tests/golden/notes.txt",
            "crates/core/tests/golden/up.prom",
            "bins/b/tests/stray.prom",
        ] {
            fs::write(root.join(file), "").unwrap();
        }
        let found: Vec<String> = super::golden_files(&root)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found,
            [
                "bins/a-exporter/tests/golden/a.prom",
                "bins/a-exporter/tests/golden/z.prom",
                "crates/core/tests/golden/up.prom"
            ]
        );
    }
}
