//! The HTTP simulator framework shared by the HTTP devices.
//!
//! STUB: the signatures below are final; the bodies are being written.

use std::{net::SocketAddr, sync::Arc, time::Duration};

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

    /// The first query parameter named `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let _ = name;
        None
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

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
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
#[derive(Debug, Default)]
pub struct Counters {}

impl Counters {
    /// Adds one to `key`.
    pub fn add(&self, key: &str) {
        let _ = key;
    }

    /// The count of `key` (0 when never seen).
    pub fn get(&self, key: &str) -> u64 {
        let _ = key;
        0
    }
}

/// A simulated HTTP device.
pub trait HttpDevice: Send + Sync + 'static {
    /// Answers one request. The framework has already counted `req.path` and applied the
    /// configured latency and faults.
    fn handle(&self, req: &Request, ctx: &Ctx) -> Response;

    /// A device-specific knob, set with `POST /_sim/set?key=K&value=V` or by tests.
    fn control(&self, key: &str, value: &str) -> Result<(), String> {
        Err(format!("unknown knob {key}={value}"))
    }
}

/// A fault the framework injects into every response until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection without answering.
    Refuse,
    /// Never answer.
    Hang,
    /// Answer with this status and an empty body.
    Status(u16),
    /// Answer 200 with bytes that are not the device's format.
    Garbage,
    /// Announce the full length, send half the body, close.
    Truncated,
}

/// A running HTTP simulator.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
}

impl SimServer {
    /// Serves `device` on `listen` (a loopback address; port 0 picks a free one).
    pub async fn start(device: Arc<dyn HttpDevice>, listen: SocketAddr) -> anyhow::Result<SimServer> {
        let _ = (device, listen);
        anyhow::bail!("not written yet")
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request counters (by path, and by the device's own keys).
    pub fn counters(&self) -> Arc<Counters> {
        Arc::new(Counters::default())
    }

    /// Sets or clears the injected fault.
    pub fn set_fault(&self, fault: Option<Fault>) {
        let _ = fault;
    }

    /// Sets the latency added before every answer.
    pub fn set_latency(&self, latency: Duration) {
        let _ = latency;
    }
}
