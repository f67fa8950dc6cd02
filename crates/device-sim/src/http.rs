//! The HTTP simulator framework shared by the HTTP devices.
//!
//! A device implements [`HttpDevice`]: one synchronous `handle` per request plus optional knobs.
//! [`SimServer`] serves it on loopback with hyper (one task per connection), counts every
//! request by path in [`Counters`], adds the configured latency and injects the configured
//! [`Fault`].
//! Every simulator also answers a control API under `/_sim/` that is neither counted nor
//! delayed nor faulted:
//!
//! - `GET /_sim/requests`: the counters as a flat JSON object, with the request total under
//!   `_total` and the device's busy time ([`Busy`]) in microseconds under `_busy_us`;
//! - `POST /_sim/reset`: sets every counter back to 0;
//! - `GET /_sim/fault`, `POST /_sim/fault?kind=hang|refuse|status&code=500|garbage|truncated|…|none`;
//! - `POST /_sim/latency?ms=50`;
//! - `POST /_sim/set?key=K&value=V`: [`HttpDevice::control`] (400 with its error text when it fails).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    io::Write as _,
    net::SocketAddr,
    pin::Pin,
    str::FromStr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use crate::busy::Busy;
use anyhow::Context as _;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

/// One request as a simulated device sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query, e.g. `/jrd/webapi`.
    pub path: String,
    /// The raw query string without `?` (empty when none).
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`, percent-decoded (`+` is a space, as in forms).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query).find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// One response of a simulated device.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and a content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// `application/json` from a value.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, "application/json", value.to_string())
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", text)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Per-request context: lets a device count its own endpoint keys (e.g. JSON-RPC methods)
/// beside the path the framework counts itself.
#[derive(Debug)]
pub struct Ctx {
    counters: Arc<Counters>,
}

impl Ctx {
    /// Adds one to the counter `key`.
    pub fn count(&self, key: &str) {
        self.counters.add(key);
    }
}

/// Request counters by key, shared between the server and tests.
///
/// The framework adds one to the request's path and to the total for every device request
/// (control requests under `/_sim/` are not counted); devices add their own keys via [`Ctx::count`].
#[derive(Debug, Default)]
pub struct Counters {
    by_key: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    busy: Busy,
}

impl Counters {
    /// Adds one to `key` (not to the total).
    pub fn add(&self, key: &str) {
        let mut map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(key.to_owned()).or_insert(0) += 1;
    }

    /// The count of `key` (0 when never seen).
    pub fn get(&self, key: &str) -> u64 {
        let map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).copied().unwrap_or(0)
    }

    /// The number of device requests received (every path, control requests excluded).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    /// A copy of every counter, sorted by key.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// How long at least one device request was being answered (see [`Busy`]).
    pub fn busy(&self) -> &Busy {
        &self.busy
    }

    /// Sets every counter, the total and the busy time back to 0.
    pub fn reset(&self) {
        let mut map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        map.clear();
        self.total.store(0, Ordering::SeqCst);
        self.busy.reset();
    }

    /// Counts one device request for `path`.
    fn request(&self, path: &str) {
        self.add(path);
        self.total.fetch_add(1, Ordering::SeqCst);
    }
}

/// A simulated HTTP device.
pub trait HttpDevice: Send + Sync + 'static {
    /// Answers one request. The framework has already counted `req.path` and waited the
    /// configured latency; it applies the configured fault to this answer afterwards (the
    /// device sees every request except under [`Fault::Refuse`]).
    fn handle(&self, req: &Request, ctx: &Ctx) -> Response;

    /// A device-specific knob, set with `POST /_sim/set?key=K&value=V` or by tests.
    fn control(&self, key: &str, value: &str) -> Result<(), String> {
        Err(format!("unknown knob {key}={value}"))
    }
}

/// A fault the framework injects into every response until cleared.
///
/// The device's `handle` still runs for every fault except [`Fault::Refuse`], so its own
/// counters (e.g. JSON-RPC method names) and state see the request.
/// Faults written as text (`--fault`, `POST /_sim/fault?kind=`) use the names shown by `Display`:
/// `refuse`, `hang`, `status:503` (or just `503`), `garbage`, `truncated`, `reset-mid-body`, `drip`,
/// `endless`, `oversized`, `invalid-utf8`, `wrong-content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection without answering.
    Refuse,
    /// Never answer (until the client goes away or the server stops).
    Hang,
    /// Answer with this status and an empty body.
    Status(u16),
    /// Answer 200 with bytes that are not the device's format (neither JSON, XML nor JavaScript).
    Garbage,
    /// Announce the full length, send half the body, close.
    Truncated,
    /// Announce the full length, send half the body, then reset the connection (TCP RST).
    ResetMidBody,
    /// Send the device's answer one byte per second.
    Drip,
    /// Answer 200 with a chunked body that never ends.
    Endless,
    /// Answer with the device's body padded with spaces to [`OVERSIZED_LEN`] bytes.
    Oversized,
    /// Answer with the device's body with bytes that are not UTF-8 in its middle.
    InvalidUtf8,
    /// Answer with the device's body under a content type the device never sends.
    WrongContentType,
}

/// The body length of [`Fault::Oversized`]: 64 MiB.
pub const OVERSIZED_LEN: u64 = 64 * 1024 * 1024;

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Refuse => f.write_str("refuse"),
            Fault::Hang => f.write_str("hang"),
            Fault::Status(code) => write!(f, "status:{code}"),
            Fault::Garbage => f.write_str("garbage"),
            Fault::Truncated => f.write_str("truncated"),
            Fault::ResetMidBody => f.write_str("reset-mid-body"),
            Fault::Drip => f.write_str("drip"),
            Fault::Endless => f.write_str("endless"),
            Fault::Oversized => f.write_str("oversized"),
            Fault::InvalidUtf8 => f.write_str("invalid-utf8"),
            Fault::WrongContentType => f.write_str("wrong-content-type"),
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        // Case, dashes and underscores do not matter: `reset-mid-body`, `reset_mid_body` and
        // `ResetMidBody` are the same fault.
        let normalized: String = s
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        let fault = match normalized.as_str() {
            "refuse" => Fault::Refuse,
            "hang" => Fault::Hang,
            "garbage" => Fault::Garbage,
            "truncated" => Fault::Truncated,
            "resetmidbody" | "reset" => Fault::ResetMidBody,
            "drip" => Fault::Drip,
            "endless" => Fault::Endless,
            "oversized" => Fault::Oversized,
            "invalidutf8" => Fault::InvalidUtf8,
            "wrongcontenttype" => Fault::WrongContentType,
            other => {
                let code = other
                    .strip_prefix("status")
                    .map_or(other, |rest| rest.trim_start_matches([':', '=']));
                Fault::Status(parse_status(code).map_err(|_| {
                    format!(
                        "unknown fault {s:?} (expected refuse, hang, status:CODE, garbage, truncated, \
                         reset-mid-body, drip, endless, oversized, invalid-utf8 or wrong-content-type)"
                    )
                })?)
            }
        };
        Ok(fault)
    }
}

/// A running HTTP simulator. Dropping it (or [`SimServer::shutdown`]) stops it.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// Serves `device` on `listen` (a loopback address; port 0 picks a free one).
    pub async fn start(
        device: Arc<dyn HttpDevice>,
        listen: SocketAddr,
    ) -> anyhow::Result<SimServer> {
        if !listen.ip().is_loopback() {
            anyhow::bail!(
                "device-sim listens on loopback addresses only (127.0.0.1 or [::1]), refusing {listen}"
            );
        }
        let listener = TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
        let addr = listener.local_addr().context("local address of the listener")?;
        let shared = Arc::new(Shared {
            device,
            counters: Arc::new(Counters::default()),
            knobs: Mutex::new(Knobs::default()),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(SimServer { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The live request counters (by path, and by the device's own keys).
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.shared.counters)
    }

    /// Sets or clears the injected fault.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.knobs().fault = fault;
    }

    /// The injected fault, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.knobs().fault
    }

    /// Sets the latency added before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.knobs().latency = latency;
    }

    /// The number of device requests whose answer has not started yet (e.g. hanging ones).
    pub fn in_flight(&self) -> usize {
        self.shared.counters.busy().in_flight()
    }

    /// Stops accepting and ends every open connection, hanging requests included.
    pub fn shutdown(self) {
        // Drop aborts the accept task, which owns (and so aborts) every connection task.
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `device` from the command line: binds `listen`, prints `listening on http://ADDR`
/// on stdout, then serves until ctrl-c or SIGTERM.
///
/// `latency` and `fault` are the starting values of the knobs (both can be changed later
/// through the `/_sim/` control API).
pub async fn run_cli(
    device: Arc<dyn HttpDevice>,
    listen: SocketAddr,
    latency: Duration,
    fault: Option<Fault>,
) -> anyhow::Result<()> {
    let server = SimServer::start(device, listen).await?;
    server.set_latency(latency);
    server.set_fault(fault);
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", server.url()).context("write to stdout")?;
        stdout.flush().context("flush stdout")?;
    }
    wait_for_stop_signal().await?;
    server.shutdown();
    Ok(())
}

/// Parses a device's command-line knobs with argh.
///
/// `Ok(None)` means `--help` was asked for and has been printed; a parse error comes back as
/// an error carrying argh's message.
pub fn parse_args<T: argh::FromArgs>(command: &str, args: &[&str]) -> anyhow::Result<Option<T>> {
    match T::from_args(&[command], args) {
        Ok(parsed) => Ok(Some(parsed)),
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                Ok(None)
            }
            Err(()) => Err(anyhow::anyhow!("{}", early.output.trim_end())),
        },
    }
}

/// Waits for ctrl-c (SIGINT) or SIGTERM.
pub async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    tokio::select! {
        res = tokio::signal::ctrl_c() => res.context("wait for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Iterates over the percent-decoded `key=value` pairs of a query string.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|part| !part.is_empty()).map(|part| {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` (a space); invalid escapes stay as they are and bytes that are
/// not UTF-8 become U+FFFD.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(decoded) => {
                        out.push(decoded);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// State shared by the server handle and every connection.
struct Shared {
    device: Arc<dyn HttpDevice>,
    counters: Arc<Counters>,
    knobs: Mutex<Knobs>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl Shared {
    fn knobs(&self) -> std::sync::MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Knobs {
    fault: Option<Fault>,
    latency: Duration,
}

/// What a connection's service tells its socket wrapper.
#[derive(Debug, Default)]
struct ConnFlags {
    /// Fail every write from now on, so the client never sees an answer.
    refuse: AtomicBool,
    /// Reset (RST) instead of closing (FIN) when the connection ends.
    reset: AtomicBool,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connection tasks here means that aborting this task aborts all of them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                connections.spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let flags = Arc::new(ConnFlags::default());
    let io = TokioIo::new(SimIo { inner: stream, flags: Arc::clone(&flags) });
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let flags = Arc::clone(&flags);
        async move { respond(&shared, &flags, req).await }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Errors here are client disconnects and injected faults: nothing to report.
    let _ = builder.serve_connection(io, service).await;
}

type HyperResponse = hyper::Response<SimBody>;

async fn respond(
    shared: &Shared,
    flags: &ConnFlags,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<HyperResponse, std::io::Error> {
    let req = match read_request(req).await {
        Ok(req) => req,
        Err(err) => return Err(std::io::Error::other(err)),
    };
    if req.path == "/_sim" || req.path.starts_with("/_sim/") {
        return Ok(into_hyper(control(shared, &req)));
    }

    shared.counters.request(&req.path);
    let _busy = shared.counters.busy().enter();
    let Knobs { fault, latency } = *shared.knobs();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fault == Some(Fault::Refuse) {
        flags.refuse.store(true, Ordering::SeqCst);
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "refused by fault"));
    }
    let ctx = Ctx { counters: Arc::clone(&shared.counters) };
    let response = shared.device.handle(&req, &ctx);
    let Some(fault) = fault else {
        return Ok(into_hyper(response));
    };
    Ok(faulty(fault, response, flags).await)
}

/// Builds the answer for `fault` from the device's `response`.
async fn faulty(fault: Fault, response: Response, flags: &ConnFlags) -> HyperResponse {
    let len = response.body.len();
    let half = Bytes::copy_from_slice(response.body.get(..len / 2).unwrap_or_default());
    match fault {
        // `respond` closes the connection before asking the device.
        Fault::Refuse => {
            into_hyper(Response { status: 500, headers: Vec::new(), body: Vec::new() })
        }
        Fault::Hang => std::future::pending::<HyperResponse>().await,
        Fault::Status(code) => {
            into_hyper(Response { status: code, headers: Vec::new(), body: Vec::new() })
        }
        Fault::Garbage => {
            let mut mangled = response;
            mangled.body = garbage(len.max(64));
            into_hyper(mangled)
        }
        Fault::Truncated => {
            let steps = vec![Step::Data(half), Step::Wait(Duration::from_millis(20)), Step::Fail];
            streamed(&response, Some(len as u64), steps)
        }
        Fault::ResetMidBody => {
            flags.reset.store(true, Ordering::SeqCst);
            let steps = vec![Step::Data(half), Step::Wait(Duration::from_millis(100)), Step::Fail];
            streamed(&response, Some(len as u64), steps)
        }
        Fault::Drip => {
            let mut steps = Vec::with_capacity(len * 2);
            for (i, byte) in response.body.iter().enumerate() {
                if i > 0 {
                    steps.push(Step::Wait(Duration::from_secs(1)));
                }
                steps.push(Step::Data(Bytes::copy_from_slice(&[*byte])));
            }
            streamed(&response, Some(len as u64), steps)
        }
        Fault::Endless => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            streamed(&response, None, vec![Step::Repeat { chunk, remaining: u64::MAX }])
        }
        Fault::Oversized => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let head = Bytes::from(response.body.clone());
            let pad = OVERSIZED_LEN.saturating_sub(len as u64);
            streamed(
                &response,
                Some(OVERSIZED_LEN.max(len as u64)),
                vec![Step::Data(head), Step::Repeat { chunk, remaining: pad }],
            )
        }
        Fault::InvalidUtf8 => {
            let mut mangled = response;
            let tail = mangled.body.split_off(len / 2);
            mangled.body.extend_from_slice(b"\xc3\x28\xff\xfe");
            mangled.body.extend_from_slice(&tail);
            into_hyper(mangled)
        }
        Fault::WrongContentType => {
            let mut mangled = response;
            let html = mangled.header("content-type").is_some_and(|ct| ct.contains("html"));
            let wrong = if html { "application/octet-stream" } else { "text/html; charset=utf-8" };
            mangled.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
            mangled.headers.push(("content-type".to_owned(), wrong.to_owned()));
            into_hyper(mangled)
        }
    }
}

/// Deterministic bytes that no JSON, XML or JavaScript parser accepts (and that are not UTF-8).
fn garbage(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"\x00\xff\xfe#!garbage\x01");
    let mut state: u32 = 0x2545_f491;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.push(state.to_le_bytes().first().copied().unwrap_or(0));
    }
    out
}

async fn read_request(req: hyper::Request<hyper::body::Incoming>) -> Result<Request, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    })
}

/// The `/_sim/` control API.
fn control(shared: &Shared, req: &Request) -> Response {
    let route = req.path.trim_start_matches("/_sim").trim_start_matches('/');
    let post_only = matches!(route, "fault" | "latency" | "set" | "reset");
    if post_only && req.method != "POST" && !(route == "fault" && req.method == "GET") {
        return Response::text(405, "use POST\n").with_header("allow", "POST");
    }
    match route {
        "requests" => {
            let mut map: serde_json::Map<String, serde_json::Value> = shared
                .counters
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::from(v)))
                .collect();
            map.insert("_total".to_owned(), serde_json::Value::from(shared.counters.total()));
            map.insert(
                "_busy_us".to_owned(),
                serde_json::Value::from(shared.counters.busy().total_micros()),
            );
            Response::json(200, &serde_json::Value::Object(map))
        }
        "reset" => {
            shared.counters.reset();
            Response::text(200, "ok\n")
        }
        "fault" if req.method == "GET" => {
            let current = shared.knobs().fault.map_or_else(|| "none".to_owned(), |f| f.to_string());
            Response::text(200, &format!("{current}\n"))
        }
        "fault" => match parse_fault_request(req) {
            Ok(fault) => {
                shared.knobs().fault = fault;
                Response::text(200, "ok\n")
            }
            Err(err) => Response::text(400, &format!("{err}\n")),
        },
        "latency" => match req.query_param("ms").map(|ms| ms.parse::<u64>()) {
            Some(Ok(ms)) => {
                shared.knobs().latency = Duration::from_millis(ms);
                Response::text(200, "ok\n")
            }
            _ => Response::text(400, "latency: expected ?ms=<milliseconds>\n"),
        },
        "set" => {
            let (Some(key), Some(value)) = (req.query_param("key"), req.query_param("value"))
            else {
                return Response::text(400, "set: expected ?key=K&value=V\n");
            };
            match shared.device.control(&key, &value) {
                Ok(()) => Response::text(200, "ok\n"),
                Err(err) => Response::text(400, &format!("{err}\n")),
            }
        }
        _ => {
            Response::text(404, "unknown control endpoint (requests, reset, fault, latency, set)\n")
        }
    }
}

/// `?kind=K[&code=N]` of `POST /_sim/fault`; `none` clears the fault.
fn parse_fault_request(req: &Request) -> Result<Option<Fault>, String> {
    let Some(kind) = req.query_param("kind") else {
        return Err("fault: expected ?kind=<fault>|none".to_owned());
    };
    match kind.as_str() {
        "none" | "" => Ok(None),
        "status" => {
            let code = req.query_param("code").ok_or("fault: kind=status needs &code=<status>")?;
            Ok(Some(Fault::Status(parse_status(&code)?)))
        }
        other => other.parse().map(Some),
    }
}

fn parse_status(code: &str) -> Result<u16, String> {
    match code.parse::<u16>() {
        Ok(n @ 100..=999) => Ok(n),
        _ => Err(format!("invalid status code {code:?}")),
    }
}

fn into_hyper(response: Response) -> HyperResponse {
    let len = response.body.len() as u64;
    let steps = vec![Step::Data(Bytes::from(response.body))];
    let body = SimBody { steps: steps.into(), sleep: None, exact: Some(len) };
    build(response.status, &response.headers, None, body)
}

/// A response whose body follows `steps`; `length` is the announced Content-Length (none: chunked).
fn streamed(response: &Response, length: Option<u64>, steps: Vec<Step>) -> HyperResponse {
    let body = SimBody { steps: steps.into(), sleep: None, exact: None };
    build(response.status, &response.headers, length, body)
}

fn build(
    status: u16,
    headers: &[(String, String)],
    length: Option<u64>,
    body: SimBody,
) -> HyperResponse {
    let mut out = hyper::Response::new(body);
    *out.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let map = out.headers_mut();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    if let Some(length) = length {
        map.insert(hyper::header::CONTENT_LENGTH, hyper::header::HeaderValue::from(length));
    }
    out
}

/// One step of a response body.
#[derive(Debug)]
enum Step {
    Data(Bytes),
    /// Send `chunk` again and again until `remaining` bytes are sent (`u64::MAX`: forever).
    Repeat {
        chunk: Bytes,
        remaining: u64,
    },
    Wait(Duration),
    /// End the body with an error, which makes hyper drop the connection.
    Fail,
}

/// A response body played step by step.
struct SimBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The exact length when the body is one plain chunk.
    exact: Option<u64>,
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(Step::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Some(Step::Repeat { chunk, remaining }) => {
                    if remaining == 0 {
                        continue;
                    }
                    let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk.len());
                    let next =
                        if remaining == u64::MAX { u64::MAX } else { remaining - take as u64 };
                    self.steps.push_front(Step::Repeat { chunk: chunk.clone(), remaining: next });
                    return Poll::Ready(Some(Ok(Frame::data(chunk.slice(..take)))));
                }
                Some(Step::Wait(duration)) => {
                    self.sleep = Some(Box::pin(tokio::time::sleep(duration)))
                }
                Some(Step::Fail) => {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "body cut short by fault",
                    ))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty() && self.sleep.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.exact.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// The TCP stream of one connection, with the fault switches its service sets.
struct SimIo {
    inner: TcpStream,
    flags: Arc<ConnFlags>,
}

impl Drop for SimIo {
    fn drop(&mut self) {
        if self.flags.reset.load(Ordering::SeqCst) {
            // A zero linger makes the close below send RST instead of FIN.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.flags.refuse.load(Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "refused by fault",
            )));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.flags.refuse.load(Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "refused by fault",
            )));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A "device" that answers every connection with bytes that are not HTTP (nor a TLS
/// handshake), then closes: for tests of what an exporter does when something else listens
/// on the device's port. Stops when dropped.
#[derive(Debug)]
pub struct NotHttpServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl NotHttpServer {
    /// Listens on a free loopback port; answers at most 1024 connections.
    pub async fn start() -> anyhow::Result<NotHttpServer> {
        use tokio::io::AsyncWriteExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.context("bind 127.0.0.1:0")?;
        let addr = listener.local_addr().context("local address")?;
        let task = tokio::spawn(async move {
            for _ in 0..1024 {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let _ = sock.write_all(b"\x00\xff\x16\x03garbage, not HTTP\r\n\r\n").await;
                let _ = sock.shutdown().await;
            }
        });
        Ok(NotHttpServer { addr, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for NotHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
