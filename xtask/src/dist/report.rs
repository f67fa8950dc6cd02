//! The results of a `dist` run: binary, package and image tables, check results and timings,
//! printed at the end and saved as Markdown in `target/dist/REPORT.md` (the tables in
//! docs/deploy.md are copied from it). Check failures are collected so that the tables are
//! printed even when something failed; [`Report::result`] then fails the run.

use std::{fmt::Write as _, fs, path::Path, time::Duration};

use anyhow::Context as _;

/// One built `.deb` and its checks.
#[derive(Debug, Clone)]
pub struct PackageRow {
    pub file: String,
    pub size: u64,
    pub installed_size_kib: u64,
    pub lintian: String,
    pub verify: String,
    pub exposure: String,
}

/// One single-architecture image.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub image: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    pub size: u64,
    pub limit_mib: u64,
    pub hadolint: String,
    pub run: String,
}

#[derive(Debug, Default)]
pub struct Report {
    binaries: Vec<(String, String, u64)>,
    packages: Vec<PackageRow>,
    images: Vec<ImageRow>,
    checks: Vec<(String, String)>,
    notes: Vec<String>,
    timings: Vec<(String, Duration)>,
    failures: Vec<String>,
}

impl Report {
    pub fn binary(&mut self, triple: &str, name: &str, size: u64) {
        self.binaries.push((triple.to_owned(), name.to_owned(), size));
    }

    pub fn package(&mut self, row: PackageRow) {
        self.packages.push(row);
    }

    pub fn image(&mut self, row: ImageRow) {
        self.images.push(row);
    }

    /// A named check and its one-line result.
    pub fn check(&mut self, name: impl Into<String>, result: impl Into<String>) {
        self.checks.push((name.into(), result.into()));
    }

    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    pub fn timing(&mut self, step: String, took: Duration) {
        self.timings.push((step, took));
    }

    /// Records a failed check; the run fails at the end.
    pub fn fail(&mut self, what: String) {
        eprintln!("dist: FAILED: {what}");
        self.failures.push(what);
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        if !self.binaries.is_empty() {
            out.push_str("| target | binary | size |\n|---|---|---:|\n");
            for (triple, name, size) in &self.binaries {
                let _ = writeln!(out, "| {triple} | {name} | {} |", human(*size));
            }
            out.push('\n');
        }
        if !self.packages.is_empty() {
            out.push_str(
                "| package | size | installed | lintian | systemd-analyze verify | exposure |\n\
                 |---|---:|---:|---|---|---|\n",
            );
            for p in &self.packages {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} KiB | {} | {} | {} |",
                    p.file,
                    human(p.size),
                    p.installed_size_kib,
                    p.lintian,
                    p.verify,
                    p.exposure
                );
            }
            out.push('\n');
        }
        if !self.images.is_empty() {
            out.push_str(
                "| image | arch | size | limit | hadolint | run |\n|---|---|---:|---:|---|---|\n",
            );
            for i in &self.images {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} MiB | {} | {} |",
                    i.image,
                    i.arch,
                    human(i.size),
                    i.limit_mib,
                    i.hadolint,
                    i.run
                );
            }
            out.push('\n');
        }
        if !self.checks.is_empty() {
            out.push_str("| check | result |\n|---|---|\n");
            for (name, result) in &self.checks {
                let _ = writeln!(out, "| {name} | {result} |");
            }
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        if !self.timings.is_empty() {
            let parts: Vec<String> = self
                .timings
                .iter()
                .map(|(step, took)| format!("{step} {:.0} s", took.as_secs_f64()))
                .collect();
            let _ = writeln!(out, "Timings: {}.", parts.join(", "));
        }
        out
    }

    /// Prints the tables and writes `REPORT.md` into `dist`.
    pub fn print_and_save(&self, dist: &Path) -> anyhow::Result<()> {
        let text = self.markdown();
        println!("\n{text}");
        let path = dist.join("REPORT.md");
        fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
        eprintln!("dist: results saved to {}", path.display());
        Ok(())
    }

    /// Err listing every failed check, if any.
    pub fn result(&self) -> anyhow::Result<()> {
        if self.failures.is_empty() {
            return Ok(());
        }
        anyhow::bail!("{} check(s) failed:\n  {}", self.failures.len(), self.failures.join("\n  "))
    }
}

/// `5.3 MiB`, `812 KiB` or `97 B`.
pub fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if bytes >= 1024 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human(97), "97 B");
        assert_eq!(human(2048), "2 KiB");
        assert_eq!(human(5 * 1024 * 1024 + 512 * 1024), "5.50 MiB");
    }

    #[test]
    fn failures_fail_the_run_after_the_tables() {
        let mut report = Report::default();
        report.binary("x86_64-unknown-linux-gnu", "demo-exporter", 3 * 1024 * 1024);
        report.check("yamllint", "clean");
        report.image(ImageRow {
            image: "localhost/demo-exporter:0.1.0-arm64".to_owned(),
            arch: "arm64".to_owned(),
            size: 4 * 1024 * 1024,
            limit_mib: 10,
            hadolint: "clean".to_owned(),
            run: "qemu: --version ok".to_owned(),
        });
        assert!(report.result().is_ok());
        report.fail("lintian demo.deb: 1 warning".to_owned());
        let err = report.result().unwrap_err().to_string();
        assert!(err.contains("1 check(s) failed") && err.contains("lintian demo.deb"), "{err}");
        let md = report.markdown();
        assert!(md.contains("| x86_64-unknown-linux-gnu | demo-exporter | 3.00 MiB |"), "{md}");
        assert!(md.contains("| yamllint | clean |"), "{md}");
        assert!(
            md.contains(
                "| localhost/demo-exporter:0.1.0-arm64 | arm64 | 4.00 MiB | 10 MiB | clean | \
                 qemu: --version ok |"
            ),
            "{md}"
        );
    }
}
