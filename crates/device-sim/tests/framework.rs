//! The HTTP simulator framework over real sockets: counters, latency, every fault, the
//! `/_sim/` control API, the demo device and the `device-sim` command line.
//!
//! Requests are written by hand on a `TcpStream` so that the tests see exactly what reached the
//! wire (an unanswered connection, a cut body, a reset), which an HTTP client would hide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::ErrorKind,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use device_sim::{
    demo::Demo,
    http::{Ctx, Fault, HttpDevice, OVERSIZED_LEN, Request, Response, SimServer},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const DEMO_BODY: &str = r#"{"ok":true,"temperature_celsius":21.5,"uptime_seconds":1234}"#;

/// A device that counts the `m` query parameter as its own key, like a JSON-RPC method.
struct Rpc;

impl HttpDevice for Rpc {
    fn handle(&self, req: &Request, ctx: &Ctx) -> Response {
        if let Some(method) = req.query_param("m") {
            ctx.count(&method);
        }
        Response::json(200, &serde_json::json!({ "path": req.path }))
    }
}

async fn demo() -> SimServer {
    SimServer::start(Arc::new(Demo::default()), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// What came back on one connection.
#[derive(Debug, Default)]
struct Raw {
    /// Status line and headers, empty when nothing came back.
    head: String,
    body: Vec<u8>,
    /// How reading ended: `None` for a clean end of stream, else the error kind (`TimedOut` for
    /// the local read limit).
    error: Option<ErrorKind>,
}

impl Raw {
    fn status(&self) -> Option<u16> {
        self.head.split_whitespace().nth(1).and_then(|s| s.parse().ok())
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn request(method: &str, target: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n\r\n")
}

/// Sends `request` on a new connection and reads until the end, an error, `limit` time or
/// `max_bytes`.
async fn raw(addr: SocketAddr, request: &str, limit: Duration, max_bytes: usize) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_all(&mut stream, limit, max_bytes).await
}

async fn read_all(stream: &mut TcpStream, limit: Duration, max_bytes: usize) -> Raw {
    let deadline = tokio::time::Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut error = None;
    loop {
        if bytes.len() >= max_bytes {
            error = Some(ErrorKind::FileTooLarge);
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => {
                error = Some(ErrorKind::TimedOut);
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(err)) => {
                error = Some(err.kind());
                break;
            }
        }
    }
    split(bytes, error)
}

fn split(bytes: Vec<u8>, error: Option<ErrorKind>) -> Raw {
    match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => Raw {
            head: String::from_utf8_lossy(&bytes[..end]).into_owned(),
            body: bytes[end + 4..].to_vec(),
            error,
        },
        None => Raw { head: String::from_utf8_lossy(&bytes).into_owned(), body: Vec::new(), error },
    }
}

async fn get(addr: SocketAddr, target: &str) -> Raw {
    raw(addr, &request("GET", target), Duration::from_secs(5), 1 << 20).await
}

async fn post(addr: SocketAddr, target: &str) -> Raw {
    raw(addr, &request("POST", target), Duration::from_secs(5), 1 << 20).await
}

/// Polls `cond` every 10 ms for at most 5 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn counts_paths_device_keys_and_total_but_not_control_requests() {
    let server = SimServer::start(Arc::new(Rpc), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let counters = server.counters();
    for target in ["/a?m=GetNetworkInfo", "/a?m=GetNetworkInfo", "/b?m=Login", "/b"] {
        assert_eq!(get(server.addr(), target).await.status(), Some(200));
    }
    assert_eq!(counters.get("/a"), 2);
    assert_eq!(counters.get("/b"), 2);
    assert_eq!(counters.get("GetNetworkInfo"), 2);
    assert_eq!(counters.get("Login"), 1);
    assert_eq!(counters.get("/never"), 0);
    assert_eq!(counters.total(), 4);

    let listed = get(server.addr(), "/_sim/requests").await;
    assert_eq!(listed.status(), Some(200));
    assert_eq!(listed.header("content-type").as_deref(), Some("application/json"));
    let mut json: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    // The busy time is wall-clock: present and a number, its value not fixed.
    let busy = json.as_object_mut().unwrap().remove("_busy_us");
    assert!(busy.as_ref().is_some_and(serde_json::Value::is_u64), "{busy:?}");
    assert_eq!(
        json,
        serde_json::json!({ "/a": 2, "/b": 2, "GetNetworkInfo": 2, "Login": 1, "_total": 4 })
    );
    // Control requests are not device requests.
    assert_eq!(counters.total(), 4);
    assert_eq!(counters.get("/_sim/requests"), 0);

    let snapshot = counters.snapshot();
    assert_eq!(snapshot.keys().collect::<Vec<_>>(), ["/a", "/b", "GetNetworkInfo", "Login"]);

    assert_eq!(post(server.addr(), "/_sim/reset").await.status(), Some(200));
    assert_eq!(counters.total(), 0);
    assert_eq!(counters.get("/a"), 0);
    counters.reset();
    assert!(counters.snapshot().is_empty());
}

#[tokio::test]
async fn demo_answers_status_and_its_knobs() {
    let server = demo().await;
    let ok = get(server.addr(), "/status").await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header("content-type").as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"temperature_celsius": 21.5, "uptime_seconds": 1234, "ok": true})
    );
    assert_eq!(server.counters().get("/status"), 1);

    assert_eq!(
        post(server.addr(), "/_sim/set?key=temperature&value=-3.25").await.status(),
        Some(200)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&get(server.addr(), "/status").await.body).unwrap();
    assert_eq!(json["temperature_celsius"], serde_json::json!(-3.25));

    assert_eq!(
        post(server.addr(), "/_sim/set?key=temperature&value=absent").await.status(),
        Some(200)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&get(server.addr(), "/status").await.body).unwrap();
    assert!(json.get("temperature_celsius").is_none(), "{json}");
    assert_eq!(json["uptime_seconds"], serde_json::json!(1234));

    let bad = post(server.addr(), "/_sim/set?key=temperature&value=warm").await;
    assert_eq!(bad.status(), Some(400));
    assert!(String::from_utf8_lossy(&bad.body).contains("temperature: expected a number"));
    let unknown = post(server.addr(), "/_sim/set?key=colour&value=red").await;
    assert_eq!(unknown.status(), Some(400));
    assert!(String::from_utf8_lossy(&unknown.body).contains("unknown knob colour=red"));

    let missing = get(server.addr(), "/nope").await;
    assert_eq!(missing.status(), Some(404));
    assert_eq!(server.counters().get("/nope"), 1);
    assert_eq!(server.counters().get("/status"), 3);
}

#[tokio::test]
async fn control_api_sets_and_clears_faults_and_latency() {
    let server = demo().await;
    let addr = server.addr();

    assert_eq!(post(addr, "/_sim/fault?kind=status&code=502").await.status(), Some(200));
    assert_eq!(server.fault(), Some(Fault::Status(502)));
    assert_eq!(get(addr, "/status").await.status(), Some(502));
    assert_eq!(String::from_utf8_lossy(&get(addr, "/_sim/fault").await.body).trim(), "status:502");

    assert_eq!(post(addr, "/_sim/fault?kind=wrong_content_type").await.status(), Some(200));
    assert_eq!(server.fault(), Some(Fault::WrongContentType));
    assert_eq!(post(addr, "/_sim/fault?kind=none").await.status(), Some(200));
    assert_eq!(server.fault(), None);
    assert_eq!(get(addr, "/status").await.status(), Some(200));

    for bad in [
        "/_sim/fault?kind=explode",
        "/_sim/fault?kind=status",
        "/_sim/fault?kind=status&code=abc",
        "/_sim/fault",
        "/_sim/latency?ms=soon",
        "/_sim/latency",
        "/_sim/set?key=temperature",
    ] {
        let answer = post(addr, bad).await;
        assert_eq!(answer.status(), Some(400), "{bad}: {answer:?}");
        assert!(!answer.body.is_empty(), "{bad}: a 400 says why");
    }
    assert_eq!(get(addr, "/_sim/latency?ms=5").await.status(), Some(405));
    assert_eq!(get(addr, "/_sim/nothing").await.status(), Some(404));
    assert_eq!(server.counters().total(), 2, "control requests are not counted");
}

#[tokio::test]
async fn latency_delays_device_answers_but_not_control_requests() {
    let server = demo().await;
    let addr = server.addr();
    assert_eq!(post(addr, "/_sim/latency?ms=300").await.status(), Some(200));
    let start = Instant::now();
    assert_eq!(get(addr, "/status").await.status(), Some(200));
    assert!(start.elapsed() >= Duration::from_millis(300), "answered after {:?}", start.elapsed());
    // The wait counts as busy time, and idle time does not.
    let busy = server.counters().busy().total();
    assert!(busy >= Duration::from_millis(300) && busy < start.elapsed(), "{busy:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.counters().busy().total(), busy);
    let listed = get(addr, "/_sim/requests").await;
    let json: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(json["_busy_us"].as_u64(), Some(u64::try_from(busy.as_micros()).unwrap()));

    server.set_latency(Duration::from_secs(3));
    let start = Instant::now();
    assert_eq!(get(addr, "/_sim/requests").await.status(), Some(200));
    assert!(start.elapsed() < Duration::from_secs(2), "control request took {:?}", start.elapsed());
}

#[tokio::test]
async fn refuse_closes_new_and_kept_alive_connections_without_an_answer() {
    let server = demo().await;
    let addr = server.addr();

    // A kept-alive connection that worked once.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /status HTTP/1.1\r\nhost: sim\r\n\r\n").await.unwrap();
    let mut first = vec![0u8; 4096];
    let n = stream.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&first[..n]));

    server.set_fault(Some(Fault::Refuse));
    stream.write_all(b"GET /status HTTP/1.1\r\nhost: sim\r\n\r\n").await.unwrap();
    let second = read_all(&mut stream, Duration::from_secs(5), 1 << 20).await;
    assert!(second.head.is_empty() && second.body.is_empty(), "{second:?}");
    assert_ne!(second.error, Some(ErrorKind::TimedOut), "the connection must be closed");

    let fresh = get(addr, "/status").await;
    assert!(fresh.head.is_empty() && fresh.body.is_empty(), "{fresh:?}");
    assert_ne!(fresh.error, Some(ErrorKind::TimedOut));

    // The control API still works, so the fault can be cleared.
    assert_eq!(post(addr, "/_sim/fault?kind=none").await.status(), Some(200));
    assert_eq!(get(addr, "/status").await.status(), Some(200));
    assert_eq!(server.counters().get("/status"), 4);
}

#[tokio::test]
async fn hang_never_answers_and_ends_when_the_client_leaves() {
    let server = demo().await;
    server.set_fault(Some(Fault::Hang));
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(request("GET", "/status").as_bytes()).await.unwrap();
    eventually("the request to arrive", || server.in_flight() == 1).await;
    let answer = read_all(&mut stream, Duration::from_millis(500), 1 << 20).await;
    assert_eq!(answer.error, Some(ErrorKind::TimedOut), "{answer:?}");
    assert!(answer.head.is_empty());
    assert_eq!(server.counters().get("/status"), 1);

    drop(stream);
    eventually("the hanging request to end", || server.in_flight() == 0).await;
}

#[tokio::test]
async fn hang_ends_when_the_server_shuts_down() {
    let server = demo().await;
    let addr = server.addr();
    server.set_fault(Some(Fault::Hang));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request("GET", "/status").as_bytes()).await.unwrap();
    eventually("the request to arrive", || server.in_flight() == 1).await;
    let counters = server.counters();

    server.shutdown();
    let answer = read_all(&mut stream, Duration::from_secs(5), 1 << 20).await;
    assert_ne!(answer.error, Some(ErrorKind::TimedOut), "the connection must end: {answer:?}");
    assert!(answer.head.is_empty());
    assert_eq!(counters.get("/status"), 1, "counters outlive the server");

    // Nothing listens any more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = demo().await;
    let addr = server.addr();
    assert_eq!(get(addr, "/status").await.status(), Some(200));
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn status_fault_answers_that_status_with_an_empty_body() {
    let server = demo().await;
    server.set_fault(Some(Fault::Status(503)));
    let answer = get(server.addr(), "/status").await;
    assert_eq!(answer.status(), Some(503));
    assert_eq!(answer.header("content-length").as_deref(), Some("0"));
    assert!(answer.body.is_empty());
    assert_eq!(answer.error, None);
}

#[tokio::test]
async fn garbage_is_neither_json_nor_xml_nor_text() {
    let server = demo().await;
    server.set_fault(Some(Fault::Garbage));
    let answer = get(server.addr(), "/status").await;
    assert_eq!(answer.status(), Some(200));
    assert!(answer.body.len() >= DEMO_BODY.len());
    assert!(serde_json::from_slice::<serde_json::Value>(&answer.body).is_err());
    assert!(!answer.body.starts_with(b"<"), "looks like XML/HTML");
    assert!(std::str::from_utf8(&answer.body).is_err(), "not even text");
}

#[tokio::test]
async fn truncated_announces_the_full_length_and_sends_half() {
    let server = demo().await;
    server.set_fault(Some(Fault::Truncated));
    let answer = get(server.addr(), "/status").await;
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.header("content-length"), Some(DEMO_BODY.len().to_string()));
    assert_eq!(answer.body, DEMO_BODY.as_bytes()[..DEMO_BODY.len() / 2]);
    assert_ne!(answer.error, Some(ErrorKind::TimedOut), "the connection must be closed");
}

#[tokio::test]
async fn reset_mid_body_resets_the_connection() {
    let server = demo().await;
    server.set_fault(Some(Fault::ResetMidBody));
    let answer = get(server.addr(), "/status").await;
    assert_eq!(answer.error, Some(ErrorKind::ConnectionReset), "{answer:?}");
    assert!(answer.body.len() < DEMO_BODY.len(), "{answer:?}");
}

#[tokio::test]
async fn drip_sends_one_byte_per_second() {
    let server = demo().await;
    server.set_fault(Some(Fault::Drip));
    let answer =
        raw(server.addr(), &request("GET", "/status"), Duration::from_millis(1500), 1 << 20).await;
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.header("content-length"), Some(DEMO_BODY.len().to_string()));
    assert_eq!(answer.error, Some(ErrorKind::TimedOut));
    assert!((1..=2).contains(&answer.body.len()), "{answer:?}");
    assert!(DEMO_BODY.as_bytes().starts_with(&answer.body));
}

#[tokio::test]
async fn endless_never_ends() {
    let server = demo().await;
    server.set_fault(Some(Fault::Endless));
    let answer =
        raw(server.addr(), &request("GET", "/status"), Duration::from_secs(10), 4 << 20).await;
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(
        answer.error,
        Some(ErrorKind::FileTooLarge),
        "stopped reading at 4 MiB: {:?}",
        answer.error
    );
}

#[tokio::test]
async fn oversized_announces_and_starts_a_64_mib_body() {
    let server = demo().await;
    server.set_fault(Some(Fault::Oversized));
    let answer =
        raw(server.addr(), &request("GET", "/status"), Duration::from_secs(10), 1 << 20).await;
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.header("content-length"), Some(OVERSIZED_LEN.to_string()));
    assert!(answer.body.starts_with(DEMO_BODY.as_bytes()));
    assert_eq!(answer.error, Some(ErrorKind::FileTooLarge));
}

#[tokio::test]
async fn invalid_utf8_keeps_the_shape_but_breaks_the_encoding() {
    let server = demo().await;
    server.set_fault(Some(Fault::InvalidUtf8));
    let answer = get(server.addr(), "/status").await;
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.header("content-type").as_deref(), Some("application/json"));
    assert!(std::str::from_utf8(&answer.body).is_err());
    assert!(answer.body.starts_with(&DEMO_BODY.as_bytes()[..10]));
}

#[tokio::test]
async fn wrong_content_type_keeps_the_body() {
    let server = demo().await;
    server.set_fault(Some(Fault::WrongContentType));
    let answer = get(server.addr(), "/status").await;
    assert_eq!(answer.status(), Some(200));
    let content_type = answer.header("content-type").unwrap();
    assert!(!content_type.contains("json"), "{content_type}");
    assert_eq!(answer.body, DEMO_BODY.as_bytes());
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback() {
    let err = SimServer::start(Arc::new(Demo::default()), "0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("loopback"), "{err:#}");
}

#[test]
fn query_params_are_percent_decoded() {
    let req = Request {
        method: "GET".to_owned(),
        path: "/".to_owned(),
        query: "a=1&b=x%20y+z&c=%E2%9C%93&d=%zz%4&e&a=2&f%5B%5D=v".to_owned(),
        headers: vec![("x-thing".to_owned(), "yes".to_owned())],
        body: Vec::new(),
    };
    assert_eq!(req.query_param("a").as_deref(), Some("1"));
    assert_eq!(req.query_param("b").as_deref(), Some("x y z"));
    assert_eq!(req.query_param("c").as_deref(), Some("\u{2713}"));
    assert_eq!(req.query_param("d").as_deref(), Some("%zz%4"));
    assert_eq!(req.query_param("e").as_deref(), Some(""));
    assert_eq!(req.query_param("f[]").as_deref(), Some("v"));
    assert_eq!(req.query_param("g"), None);
    assert_eq!(req.header("X-Thing"), Some("yes"));
}

#[test]
fn faults_parse_from_their_display_names() {
    let all = [
        Fault::Refuse,
        Fault::Hang,
        Fault::Status(500),
        Fault::Garbage,
        Fault::Truncated,
        Fault::ResetMidBody,
        Fault::Drip,
        Fault::Endless,
        Fault::Oversized,
        Fault::InvalidUtf8,
        Fault::WrongContentType,
    ];
    for fault in all {
        assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault));
    }
    assert_eq!("503".parse::<Fault>(), Ok(Fault::Status(503)));
    assert_eq!("status=429".parse::<Fault>(), Ok(Fault::Status(429)));
    assert_eq!("ResetMidBody".parse::<Fault>(), Ok(Fault::ResetMidBody));
    assert_eq!("invalid_utf8".parse::<Fault>(), Ok(Fault::InvalidUtf8));
    assert!("status:0".parse::<Fault>().is_err());
    assert!("explode".parse::<Fault>().unwrap_err().contains("unknown fault"));
}

/// `device-sim demo` prints its address, serves, and exits cleanly on SIGTERM.
#[tokio::test]
async fn command_line_prints_its_address_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["demo", "--listen", "127.0.0.1:0", "--fault", "status:418"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .unwrap()
    .unwrap();
    let url = line.trim().strip_prefix("listening on http://").expect(&line);
    let addr: SocketAddr = url.parse().unwrap();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    assert_eq!(get(addr, "/status").await.status(), Some(418));

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let status =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn command_line_rejects_bad_knobs() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["demo", "--fault", "explode"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown fault"));

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["demo", "--listen", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}
