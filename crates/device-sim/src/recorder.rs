//! A recording server for tests that check what an exporter sends where: it listens on
//! loopback, keeps every byte it receives on every connection, and answers each HTTP request
//! with a response chosen by a function of that request (a redirect, a JSON-RPC reply, an
//! error page).
//!
//! It is deliberately not built on hyper: it reads raw bytes, so a test sees exactly what
//! went over the wire (headers, bodies, whatever encoding), including requests it cannot
//! parse. Each request is answered with `connection: close`, so a client opens one
//! connection per request and nothing stays pending.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use device_sim::recorder::{Recorder, Reply};
//! let rec = Recorder::start(|_req| Reply::redirect(307, "http://127.0.0.2:9/jrd/webapi")).await?;
//! // ... point the exporter at rec.url() ...
//! assert!(!rec.received_contains(b"s3cret"));
//! # Ok(()) }
//! ```

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Largest request the recorder reads from one connection (it keeps what it read).
const MAX_REQUEST: usize = 1 << 20;

/// How long the recorder waits for the rest of a request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One request as the recorder saw it.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Every byte received on the connection (head and body).
    pub raw: Vec<u8>,
    /// The request line's method and target, e.g. `("POST", "/jrd/webapi")`; empty when the
    /// bytes were not HTTP.
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The response to one request: raw bytes written as they are.
#[derive(Debug, Clone)]
pub struct Reply(pub Vec<u8>);

impl Reply {
    /// A complete HTTP/1.1 response with `connection: close`.
    pub fn http(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        Reply(bytes)
    }

    /// A redirect (`301`, `302`, `303`, `307` or `308`) to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::http(status, &[("location", location), ("content-type", "text/plain")], b"moved")
    }

    /// `200` with a JSON body.
    pub fn json(value: &serde_json::Value) -> Reply {
        Reply::http(200, &[("content-type", "application/json")], value.to_string().as_bytes())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

type Responder = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    connections: Mutex<usize>,
    responder: Box<Responder>,
}

/// A loopback server that records everything it receives. Stops when dropped.
pub struct Recorder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts on `127.0.0.1` at a free port; `respond` chooses the answer to each request.
    pub async fn start(
        respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> anyhow::Result<Recorder> {
        Recorder::start_on("127.0.0.1:0".parse()?, respond).await
    }

    /// Starts on `addr`, which must be a loopback address (port 0 for a free one).
    pub async fn start_on(
        addr: SocketAddr,
        respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> anyhow::Result<Recorder> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "the recorder listens on loopback only, not {addr}"
        );
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            connections: Mutex::new(0),
            responder: Box::new(respond),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Recorder { addr, shared, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.shared.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every byte received so far, all connections concatenated.
    pub fn received(&self) -> Vec<u8> {
        self.requests().into_iter().flat_map(|r| r.raw).collect()
    }

    /// Whether `needle` occurs in the bytes received (on any one connection).
    pub fn received_contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.requests().iter().any(|r| contains(&r.raw, needle))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        *shared.connections.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        tokio::spawn(serve(stream, Arc::clone(&shared)));
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream, &mut raw)).await;
    let recorded = parse(raw);
    let reply = (shared.responder)(&recorded);
    let complete = !recorded.method.is_empty();
    shared.requests.lock().unwrap_or_else(PoisonError::into_inner).push(recorded);
    if complete {
        let _ = stream.write_all(&reply.0).await;
        let _ = stream.shutdown().await;
    }
}

/// Reads one request: the head, then `content-length` bytes of body (or until the peer
/// stops sending).
async fn read_request(stream: &mut TcpStream, raw: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = find(raw, b"\r\n\r\n") {
            let want = end + 4 + content_length(&raw[..end]);
            if raw.len() >= want || raw.len() >= MAX_REQUEST {
                return;
            }
        } else if raw.len() >= MAX_REQUEST {
            return;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST)
}

fn parse(raw: Vec<u8>) -> Recorded {
    let Some(end) = find(&raw, b"\r\n\r\n") else {
        return Recorded { raw, ..Recorded::default() };
    };
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned();
    let body = raw.get(end + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Recorded { raw, method, path, headers, body }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// One raw request; returns the whole response as text.
    async fn send(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn records_bytes_and_answers() {
        let rec = Recorder::start(|req| {
            if req.path == "/moved" {
                Reply::redirect(307, "http://127.0.0.2:9/x")
            } else {
                Reply::json(&serde_json::json!({"echo": req.body_text()}))
            }
        })
        .await
        .unwrap();
        let answer = send(
            rec.addr(),
            "POST /jrd/webapi HTTP/1.1\r\nhost: x\r\nX-Secret: hunter2\r\ncontent-length: 11\r\n\r\npayload-123",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with(r#"{"echo":"payload-123"}"#), "{answer}");
        let answer = send(rec.addr(), "GET /moved HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 307 Temporary Redirect\r\n"), "{answer}");
        assert!(answer.contains("location: http://127.0.0.2:9/x\r\n"), "{answer}");
        assert_eq!(rec.connections(), 2);
        let reqs = rec.requests();
        assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/jrd/webapi"));
        assert_eq!(reqs[0].header("x-secret"), Some("hunter2"));
        assert!(rec.received_contains(b"hunter2") && rec.received_contains(b"payload-123"));
        assert!(!rec.received_contains(b"hunter3"));
        assert!(
            Recorder::start_on("0.0.0.0:0".parse().unwrap(), |_| Reply(Vec::new())).await.is_err()
        );
    }
}
