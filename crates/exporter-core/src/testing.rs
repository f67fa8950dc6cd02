//! Helpers for the exporters' tests: golden exposition files and promtool.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

/// Compares `actual` with the golden file at `path`; with `UPDATE_GOLDEN=1` in the
/// environment it (re)writes the file instead. Panics with a line diff on mismatch.
#[allow(clippy::expect_used)]
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) {
    let path = path.as_ref();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create golden dir");
        }
        std::fs::write(path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("cannot read golden file {} ({e}); run with UPDATE_GOLDEN=1", path.display())
    });
    if expected != actual {
        let mut diff = String::new();
        for line in expected.lines().filter(|l| !actual.lines().any(|a| a == *l)) {
            diff.push_str(&format!("- {line}\n"));
        }
        for line in actual.lines().filter(|l| !expected.lines().any(|e| e == *l)) {
            diff.push_str(&format!("+ {line}\n"));
        }
        panic!(
            "{} differs from the output (UPDATE_GOLDEN=1 rewrites it):\n{diff}",
            path.display()
        );
    }
}

/// Runs `promtool check metrics` on `text`. Returns `None` when promtool is not installed,
/// otherwise `Some(findings)`, empty when promtool found nothing.
pub fn promtool_check_metrics(text: &str) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().ok()?;
    let mut findings = String::from_utf8_lossy(&out.stdout).into_owned();
    findings.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() && findings.trim().is_empty() {
        Some(String::new())
    } else {
        Some(format!("exit {:?}: {findings}", out.status.code()))
    }
}
