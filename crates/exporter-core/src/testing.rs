//! Helpers for the exporters' tests: golden exposition files, promtool, exposition lines and
//! query values, and exporter binaries run as child processes with their log read line by
//! line.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// `s` percent-encoded for a query parameter value (everything but RFC 3986's unreserved
/// characters).
pub fn query_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether the exposition `text` has exactly the line `line`.
pub fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// The value of the first sample written exactly as `name` (with its labels, if any) in the
/// exposition `text`; `None` when there is none or it does not parse.
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
}

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
        panic!("{} differs from the output (UPDATE_GOLDEN=1 rewrites it):\n{diff}", path.display());
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

/// An exporter binary started by a test on `127.0.0.1:0`: killed when dropped, its stderr
/// (the log) read line by line.
#[derive(Debug)]
pub struct ChildExporter {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: String,
}

impl ChildExporter {
    /// Starts `bin` (`env!("CARGO_BIN_EXE_<name>")`) with `args`, the extra environment
    /// variables `env` and `--listen-address 127.0.0.1:0`, and waits up to 10 s for the log
    /// line naming the address it bound. Panics (failing the test) when it does not come.
    #[allow(clippy::expect_used)]
    pub fn start(bin: &str, args: &[&str], env: &[(&str, &str)]) -> ChildExporter {
        let mut child = Command::new(bin)
            .args(args)
            .args(["--listen-address", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut exporter = ChildExporter { child, lines, addr: String::new() };
        let seen = exporter.lines_until(Duration::from_secs(10), |l| {
            l.contains("listening") && listen_address(l).is_some()
        });
        exporter.addr = seen
            .last()
            .and_then(|l| listen_address(l))
            .unwrap_or_else(|| panic!("{bin} logged no listen address:\n{}", seen.join("\n")));
        exporter
    }

    /// The bound address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Reads log lines until one satisfies `stop` or `limit` has passed; returns every line
    /// read (the matching one last, when there was one).
    pub fn lines_until(&self, limit: Duration, stop: impl Fn(&str) -> bool) -> Vec<String> {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else { break };
            let done = stop(&line);
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    }
}

impl Drop for ChildExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `127.0.0.1:PORT` out of a log line.
fn listen_address(line: &str) -> Option<String> {
    let at = line.find("127.0.0.1:")?;
    let rest = &line[at + "127.0.0.1:".len()..];
    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!port.is_empty() && port != "0").then(|| format!("127.0.0.1:{port}"))
}
