//! Helpers shared by the integration tests: a minimal HTTP/1.1 GET over loopback, a check
//! that no series is duplicated, and a re-run of a test without `dbus-daemon` and `mmcli`.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `GET path` on `addr`; returns the status code and the body (10 s limit).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let body = if chunked { dechunk(body) } else { body.to_owned() };
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await?
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Panics naming every series (metric name and labels) that appears more than once in the
/// exposition `text`: Prometheus rejects such a scrape as a whole.
pub fn assert_no_duplicate_series(text: &str) {
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(series, _)| series))
        .filter(|series| !seen.insert(*series))
        .collect();
    assert!(dups.is_empty(), "duplicated series {dups:?} in:\n{text}");
}

/// Runs this test binary again with only the test `name`, `CI` set to `ci` and a `PATH`
/// without `dbus-daemon` and `mmcli` (an empty directory): (success, stdout + stderr).
pub fn rerun_without_tools(name: &str, ci: &str) -> (bool, String) {
    let empty = match tempfile::Builder::new().prefix("mm-no-tools-").tempdir() {
        Ok(dir) => dir,
        Err(err) => return (false, format!("could not create an empty directory: {err}")),
    };
    let exe = std::env::current_exe().unwrap_or_default();
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--test-threads", "1", "--nocapture"])
        .env("CI", ci)
        .env("PATH", empty.path())
        .env_remove("RUST_TEST_THREADS")
        .output();
    match out {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
        Err(err) => (false, format!("could not run the test binary: {err}")),
    }
}
