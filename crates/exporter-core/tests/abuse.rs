//! HTTP server abuse over real sockets, against the trivial demo exporter: slow headers,
//! a thousand idle connections, oversized heads and query strings, odd paths. Each case gets a
//! proper answer (or a closed connection), never a crash, memory stays bounded, and a normal
//! scrape keeps working throughout.
//!
//! Requests here are written byte for byte on a `TcpStream`, so nothing normalises them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{Harness, client, encode, sample};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Sends `request` as is and reads the whole answer (`Connection: close` semantics, 10 s
/// at most): the status (0 when the server closed without answering) and the body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read everything; that is fine.
    let _ = sock.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "no answer within 10 s to {:?}",
        String::from_utf8_lossy(&request[..request.len().min(80)])
    );
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A normal scrape of the demo device through the server: 200, `demo_up 1`, promptly.
async fn assert_normal_scrape(h: &Harness, within: Duration) {
    let start = Instant::now();
    let resp = client().get(h.probe_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let took = start.elapsed();
    assert_eq!(sample(&text, "demo_up"), Some(1.0), "{text}");
    assert!(took < within, "a normal scrape took {took:?}");
}

/// Resident memory of this test process, from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn addr(h: &Harness) -> SocketAddr {
    h.server.as_ref().unwrap().local_addr()
}

#[tokio::test]
async fn slow_headers_are_cut_off_by_the_header_read_timeout() {
    let h = Harness::start().await;
    let mut sock = TcpStream::connect(addr(&h)).await.unwrap();
    let head = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = Instant::now();
    let mut cut_off = None;
    // One byte per second, for at most 20 s: the server must hang up after its 10 s.
    for byte in head.iter().cycle().take(20) {
        if sock.write_all(&[*byte]).await.is_err() {
            cut_off = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(1), sock.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                cut_off = Some(start.elapsed());
                break;
            }
            Ok(Ok(n)) => {
                let answer = String::from_utf8_lossy(&buf[..n]);
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
                cut_off = Some(start.elapsed());
                break;
            }
            Err(_) => {}
        }
        // Normal scrapes are not held up by the slow client.
        if start.elapsed() < Duration::from_secs(3) {
            assert_normal_scrape(&h, Duration::from_secs(1)).await;
        }
    }
    let cut_off = cut_off.expect("the slow client was never cut off");
    eprintln!("a client sending one header byte per second was cut off after {cut_off:?}");
    assert!(
        (Duration::from_secs(8)..Duration::from_secs(13)).contains(&cut_off),
        "cut off after {cut_off:?}, expected about the 10 s header read timeout"
    );
    assert_normal_scrape(&h, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_thousand_idle_connections() {
    let h = Harness::start().await;
    assert_normal_scrape(&h, Duration::from_secs(2)).await;
    let before = rss_kib();
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(TcpStream::connect(addr(&h)).await.unwrap());
    }
    // Half of them also send a partial request head and then go quiet.
    for sock in idle.iter_mut().step_by(2) {
        sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_normal_scrape(&h, Duration::from_secs(1)).await;
    let (status, _) = raw(addr(&h), &get("/-/healthy")).await;
    assert_eq!(status, 200);
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("1000 idle connections: RSS {before} KiB -> {after} KiB (+{grown} KiB)");
    // Both ends of every connection live in this process; 48 KiB per connection is generous.
    assert!(grown < 48 * 1000, "RSS grew by {grown} KiB for 1000 idle connections");
    drop(idle);
    assert_normal_scrape(&h, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn oversized_heads_and_query_strings_are_refused() {
    let h = Harness::start().await;
    let a = addr(&h);
    // The server's head limit is hyper's read buffer (64 KiB): a head is refused once the
    // buffer holding it passes the limit, so heads somewhat above 64 KiB can still fit in
    // one read; 256 KiB never does.
    let big = "a".repeat(256 * 1024);

    let header =
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let (status, _) = raw(a, header.as_bytes()).await;
    assert_eq!(status, 431, "a 256 KiB header");

    let mut many = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    let (status, _) = raw(a, many.as_bytes()).await;
    assert_eq!(status, 431, "200 headers");

    let (status, _) = raw(a, &get(&format!("/probe?target={big}"))).await;
    assert!(matches!(status, 414 | 431), "a 256 KiB query string: {status}");

    let (status, _) = raw(a, &get(&format!("/{big}"))).await;
    assert!(matches!(status, 414 | 431), "a 256 KiB path: {status}");

    // Just under the limit is a normal (bad) request, not a crash.
    let long_target = "b".repeat(16 * 1024);
    let (status, body) = raw(a, &get(&format!("/probe?target={long_target}"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid target"), "{body}");

    assert_normal_scrape(&h, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn odd_paths_get_a_proper_4xx() {
    let h = Harness::start().await;
    let a = addr(&h);
    let long = format!("/{}", "x/".repeat(2000));
    for (path, want) in [
        ("//metrics", 404),
        ("/metrics/", 404),
        ("/%00", 404),
        ("/../etc/passwd", 404),
        ("/metrics/../probe", 404),
        ("/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/METRICS", 404),
        ("/probe/", 404),
        (long.as_str(), 404),
        ("/probe", 400),
        ("/probe?target=", 400),
        ("/probe?target=%ff", 400),
        ("/probe?target=%C3%28", 400),
        ("/probe?target=%zz", 400),
        ("/probe?target=%", 400),
        ("/probe?target=a&target=b", 400),
        ("/probe?target=http://x&debug=maybe", 400),
        ("/probe?target=ftp://x", 400),
    ] {
        let (status, body) = raw(a, &get(path)).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(!body.is_empty(), "{path}: a 4xx says why");
    }
    // Request targets hyper itself refuses: raw bytes that are not allowed in a URI, and
    // forms other than origin-form.
    for request in [
        b"GET /metr\xffics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".as_slice(),
        b"GET /a b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".as_slice(),
        b"GET metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".as_slice(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".as_slice(),
    ] {
        let (status, _) = raw(a, request).await;
        assert!(
            status == 0 || (400..500).contains(&status),
            "{:?}: {status}",
            String::from_utf8_lossy(request)
        );
    }
    // The asterisk and absolute forms reach the router, which knows no such path.
    let (status, _) = raw(a, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!((400..500).contains(&status), "OPTIONS *: {status}");
    let absolute =
        format!("GET http://{a}/-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, _) = raw(a, absolute.as_bytes()).await;
    assert_eq!(status, 200, "absolute-form to a real path");

    // A target that percent-decodes to the demo device still works.
    let (status, body) = raw(a, &get(&format!("/probe?target={}", encode(&h.sim.url())))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sample(&body, "demo_up"), Some(1.0), "{body}");
    assert_normal_scrape(&h, Duration::from_secs(1)).await;
}
