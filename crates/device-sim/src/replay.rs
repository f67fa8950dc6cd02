//! `device-sim replay FILE --listen ADDR`: serves a capture file (from `<exporter> capture`)
//! as the device, so the exporter can be run against it exactly as against the real one.
//!
//! A request is answered by the recorded exchange with the same method, path and query (and,
//! for a JSON-RPC POST, the same `method` member of the body); when no exchange has the same
//! query, one with the same method and path is used. Several matching exchanges are served in
//! recorded order, then the last one again. Anything else gets a 404 naming the request.
//! Exchanges recorded without a response (the exporter saw an error) answer 502.
//!
//! [`Replay`] serves HTTP captures. A capture of D-Bus calls (mm-exporter) is served by
//! [`crate::modem::replay::DbusReplay`] instead: a fake ModemManager on a private bus, whose
//! address `device-sim replay` prints for mm-exporter's `--bus-address`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::Context as _;
use argh::FromArgs;
use exporter_core::capture::{Capture, CapturedHttp, Exchange};

use crate::http::{Ctx, HttpDevice, Request, Response};

/// Response headers that describe the original transfer, not the content.
const TRANSFER_HEADERS: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// A device answering from a capture.
#[derive(Debug)]
pub struct Replay {
    exchanges: Vec<Recorded>,
    /// How many times each match group was served, by group key.
    served: Mutex<HashMap<String, usize>>,
}

#[derive(Debug)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    rpc_method: Option<String>,
    exchange: CapturedHttp,
}

impl Replay {
    /// A replay of `capture`'s HTTP exchanges.
    pub fn new(capture: &Capture) -> anyhow::Result<Replay> {
        let exchanges: Vec<Recorded> = capture
            .http()
            .map(|h| {
                let (path, query) = path_and_query(&h.url);
                Recorded {
                    method: h.method.to_ascii_uppercase(),
                    path,
                    query,
                    rpc_method: h.request_body.as_deref().and_then(rpc_method),
                    exchange: h.clone(),
                }
            })
            .collect();
        if exchanges.is_empty() {
            let dbus = capture.exchanges.iter().any(|e| matches!(e, Exchange::Dbus(_)));
            anyhow::ensure!(
                !dbus,
                "this capture holds D-Bus calls (mm-exporter): serve it with \
                 device_sim::modem::replay::DbusReplay (`device-sim replay FILE` does)"
            );
            anyhow::bail!("the capture holds no HTTP exchange to replay");
        }
        Ok(Replay { exchanges, served: Mutex::new(HashMap::new()) })
    }

    /// Reads a capture file and builds its replay.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Replay> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the capture file {}", path.display()))?;
        let capture = Capture::from_slice(&bytes)
            .with_context(|| format!("capture file {}", path.display()))?;
        Replay::new(&capture)
    }

    fn answer(&self, req: &Request) -> Response {
        let method = req.method.to_ascii_uppercase();
        let rpc = (method == "POST")
            .then(|| std::str::from_utf8(&req.body).ok().and_then(rpc_method))
            .flatten();
        let same = |r: &&Recorded| {
            r.method == method
                && r.path == req.path
                && (r.rpc_method.is_none() || r.rpc_method == rpc)
        };
        let mut group: Vec<usize> = self
            .exchanges
            .iter()
            .enumerate()
            .filter(|(_, r)| same(r) && r.query == req.query)
            .map(|(i, _)| i)
            .collect();
        if group.is_empty() {
            group = self
                .exchanges
                .iter()
                .enumerate()
                .filter(|(_, r)| same(r))
                .map(|(i, _)| i)
                .collect();
        }
        let Some(&last) = group.last() else {
            let what = match &rpc {
                Some(m) => format!("{method} {}?{} (JSON-RPC method {m})", req.path, req.query),
                None => format!("{method} {}?{}", req.path, req.query),
            };
            return Response::text(
                404,
                &format!("replay: the capture has no exchange for {what}\n"),
            );
        };
        let key = format!("{method} {} {} {}", req.path, req.query, rpc.unwrap_or_default());
        let index = {
            let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
            let n = served.entry(key).or_insert(0);
            let index = group.get(*n).copied().unwrap_or(last);
            *n += 1;
            index
        };
        let Some(recorded) = self.exchanges.get(index) else {
            return Response::text(500, "replay: bug: no exchange at the chosen index\n");
        };
        let h = &recorded.exchange;
        let Some(status) = h.status else {
            return Response::text(
                502,
                &format!(
                    "replay: the capture recorded no response here: {}\n",
                    h.error.as_deref().unwrap_or("(no error recorded)")
                ),
            );
        };
        Response {
            status,
            headers: h
                .response_headers
                .iter()
                .filter(|(k, _)| !TRANSFER_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
                .cloned()
                .collect(),
            body: h.response_body.clone().unwrap_or_default().into_bytes(),
        }
    }
}

impl HttpDevice for Replay {
    fn handle(&self, req: &Request, _ctx: &Ctx) -> Response {
        self.answer(req)
    }
}

/// The path and the raw query of a recorded URL (a full URL or a path).
fn path_and_query(url: &str) -> (String, String) {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/"),
        None => url,
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    match rest.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (rest.to_owned(), String::new()),
    }
}

/// The `method` member of a JSON-RPC request body.
fn rpc_method(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("method")?.as_str().map(str::to_owned)
}

/// `device-sim replay`: serve a capture file as the device.
#[derive(FromArgs, Debug)]
struct Args {
    /// the capture file (YAML or JSON) written by `<exporter> capture`
    #[argh(positional)]
    file: PathBuf,
    /// address to listen on, loopback only (default 127.0.0.1:0, a free port)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
}

/// Runs the replay from the command line (`device-sim replay FILE …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    let Some(args) = crate::http::parse_args::<Args>("device-sim replay", args)? else {
        return Ok(());
    };
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read the capture file {}", args.file.display()))?;
    let capture = Capture::from_slice(&bytes)
        .with_context(|| format!("capture file {}", args.file.display()))?;
    if capture.http().next().is_none()
        && capture.exchanges.iter().any(|e| matches!(e, Exchange::Dbus(_)))
    {
        return crate::modem::replay::run_cli(&capture).await;
    }
    let replay = Replay::new(&capture)?;
    crate::http::run_cli(Arc::new(replay), args.listen, Duration::ZERO, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_path_and_query() {
        assert_eq!(
            path_and_query("http://192.0.2.1:8080/a/b?x=1&y"),
            ("/a/b".into(), "x=1&y".into())
        );
        assert_eq!(path_and_query("/jrd/webapi"), ("/jrd/webapi".into(), String::new()));
        assert_eq!(path_and_query("https://h"), ("/".into(), String::new()));
        assert_eq!(
            rpc_method(r#"{"jsonrpc":"2.0","method":"GetSystemInfo","id":"1"}"#).as_deref(),
            Some("GetSystemInfo")
        );
        assert_eq!(rpc_method("not json"), None);
    }
}
