//! Fault injection: the exporter served by exporter-core, scraped over real loopback sockets,
//! against the Smart Hub 2 simulator misbehaving in every way the device-sim framework knows.
//!
//! The fault hits all three pages (`wan_conn.xml` and the two scripts), so every collector
//! fails and the scrape (sent with `X-Prometheus-Scrape-Timeout-Seconds: 2`) answers in under
//! 2.2 s with `smarthub_up 0`; the `&debug=true` trace of the same scrape names the reason,
//! and once the fault is gone the next scrape is normal again. One test runs the binary as a
//! child process to check the reason also reaches the log on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::{has_line as has, query_encode as encode};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use argh::FromArgs;
use device_sim::{
    http::{Fault, NotHttpServer, SimServer},
    smarthub::{Profile, SmartHub as Sim},
};
use exporter_core::{RunningServer, ServeOptions, testing::ChildExporter};
use smarthub_exporter::{Flags, INFO, Smarthub};

/// What Prometheus would send: 2 s, of which the exporter keeps 0.5 s in reserve.
const TIMEOUT_HEADER: &str = "2";
/// The answer must arrive within the 2 s Prometheus waits (plus scheduling slack).
const ANSWER_WITHIN: Duration = Duration::from_millis(2200);

struct Rig {
    sim: SimServer,
    server: RunningServer,
    http: reqwest::Client,
}

async fn rig() -> Rig {
    let sim = SimServer::start(Arc::new(Sim::new(Profile::Vdsl)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let flags = Flags::from_args(&["smarthub-exporter"], &["--target", &sim.url()]).unwrap();
    let exporter =
        Smarthub::with_client(flags, None, exporter_core::client::http_client(&INFO).unwrap())
            .unwrap();
    let server = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    let http = test_client_builder().timeout(Duration::from_secs(10)).build().unwrap();
    Rig { sim, server, http }
}

impl Rig {
    async fn get(&self, target: &str, debug: bool) -> (u16, String, Duration) {
        let mut url =
            format!("http://{}/probe?target={}", self.server.local_addr(), encode(target));
        if debug {
            url.push_str("&debug=true");
        }
        let start = Instant::now();
        let resp = self
            .http
            .get(url)
            .header("X-Prometheus-Scrape-Timeout-Seconds", TIMEOUT_HEADER)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (status, body, start.elapsed())
    }

    /// One scrape of `target` and its trace (concurrent, so usually the same device round):
    /// both in time, `smarthub_up 0`, every collector failed and the trace names all `reasons`.
    async fn assert_down(&self, what: &str, target: &str, reasons: &[&str]) {
        let ((status, text, took), (tstatus, trace, ttook)) =
            tokio::join!(self.get(target, false), self.get(target, true));
        assert_eq!((status, tstatus), (200, 200), "{what}: {text}\n{trace}");
        assert!(took < ANSWER_WITHIN, "{what}: the scrape took {took:?}");
        assert!(ttook < ANSWER_WITHIN, "{what}: the debug scrape took {ttook:?}");
        assert!(has(&text, "smarthub_up 0"), "{what}:\n{text}");
        assert!(trace.contains("up: 0"), "{what}:\n{trace}");
        for reason in reasons {
            assert!(trace.contains(reason), "{what}: the trace does not name {reason:?}:\n{trace}");
        }
        for c in ["wan", "devices", "mesh"] {
            let line = format!("smarthub_scrape_collector_success{{collector=\"{c}\"}} 0");
            assert!(has(&text, &line), "{what}: {c} did not fail:\n{text}");
        }
        assert!(!text.contains("smarthub_wan_connected"), "{what}: no made-up values:\n{text}");
    }

    /// The fault is gone: a normal scrape with real values.
    async fn assert_recovers(&self, what: &str) {
        self.sim.set_fault(None);
        let (status, text, _) = self.get(&self.sim.url(), false).await;
        assert_eq!(status, 200, "{what}: {text}");
        assert!(has(&text, "smarthub_up 1"), "{what}: the exporter keeps serving:\n{text}");
        assert!(has(&text, "smarthub_wan_connected 1"), "{what}:\n{text}");
    }

    async fn fault(&self, fault: Fault, reasons: &[&str]) {
        self.sim.set_fault(Some(fault));
        let what = fault.to_string();
        self.assert_down(&what, &self.sim.url(), reasons).await;
        self.assert_recovers(&what).await;
    }
}

/// An address nothing listens on (bound, then closed).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[tokio::test]
async fn connection_refused() {
    let rig = rig().await;
    rig.fault(Fault::Refuse, &["request failed", "connection closed before message completed"])
        .await;
}

#[tokio::test]
async fn nothing_listening() {
    let rig = rig().await;
    rig.assert_down("nothing listening", &closed_port(), &["request failed", "Connection refused"])
        .await;
    rig.assert_recovers("nothing listening").await;
}

#[tokio::test]
async fn reset_mid_body() {
    let rig = rig().await;
    rig.fault(Fault::ResetMidBody, &["read the body", "Connection reset by peer"]).await;
}

#[tokio::test]
async fn truncated_body() {
    let rig = rig().await;
    rig.fault(Fault::Truncated, &["read the body", "end of file before message length"]).await;
}

#[tokio::test]
async fn hang() {
    let rig = rig().await;
    rig.fault(Fault::Hang, &["request failed", "timed out"]).await;
}

#[tokio::test]
async fn drip_one_byte_per_second() {
    let rig = rig().await;
    rig.fault(Fault::Drip, &["read the body", "timed out"]).await;
}

#[tokio::test]
async fn endless_body() {
    let rig = rig().await;
    rig.fault(Fault::Endless, &["read the body", "larger than the limit of 2097152 bytes"]).await;
}

#[tokio::test]
async fn oversized_body() {
    let rig = rig().await;
    rig.fault(Fault::Oversized, &["read the body", "67108864 bytes is larger than the limit"])
        .await;
}

/// Bytes that are not UTF-8 in the middle of each page: the client decodes pages lossily
/// (`String::from_utf8_lossy`), so a page may still parse. Whatever each collector makes
/// of it, the scrape answers in time, a failure names its reason, and no series gets a value
/// that differs from the same series of a normal scrape: nothing is made up.
#[tokio::test]
async fn invalid_utf8_never_changes_a_value() {
    let rig = rig().await;
    let (_, normal, _) = rig.get(&rig.sim.url(), false).await;
    rig.sim.set_fault(Some(Fault::InvalidUtf8));
    let url = rig.sim.url();
    let ((status, text, took), (_, trace, _)) =
        tokio::join!(rig.get(&url, false), rig.get(&url, true));
    assert_eq!(status, 200, "{text}");
    assert!(took < ANSWER_WITHIN, "{took:?}");
    let stable = |series: &str| {
        !["_total", "uptime", "duration", "scrape_collector_success"]
            .iter()
            .any(|v| series.contains(v))
    };
    let mut compared = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        if !stable(series) {
            continue;
        }
        let before = normal.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        assert_eq!(before, Some(value), "{series}: not the value of a normal scrape\n{normal}");
        compared += 1;
    }
    assert!(compared > 0, "{text}");
    for c in ["wan", "devices", "mesh"] {
        let failed = format!("smarthub_scrape_collector_success{{collector=\"{c}\"}} 0");
        if has(&text, &failed) {
            assert!(trace.contains(&format!("collector {c} failed")), "{trace}");
        }
    }
    rig.assert_recovers("invalid utf-8").await;
}

#[tokio::test]
async fn garbage() {
    let rig = rig().await;
    rig.fault(
        Fault::Garbage,
        &["parse wan_conn.xml: invalid XML", "run cgi_basicMyDevice.js", "run cgi_owl.js"],
    )
    .await;
}

#[tokio::test]
async fn server_errors() {
    let rig = rig().await;
    for code in [500, 502, 503] {
        rig.fault(Fault::Status(code), &[&format!("HTTP {code}")]).await;
    }
}

/// The hub's pages under a content type it never sends: the body is what is checked (it
/// parses as XML or evaluates as the script), so the scrape is normal. A wrong body under any
/// content type fails (`garbage`; login pages in `tests/e2e.rs`).
#[tokio::test]
async fn wrong_content_type_is_judged_by_the_body() {
    let rig = rig().await;
    rig.sim.set_fault(Some(Fault::WrongContentType));
    let (status, text, took) = rig.get(&rig.sim.url(), false).await;
    assert_eq!(status, 200);
    assert!(took < ANSWER_WITHIN, "{took:?}");
    assert!(has(&text, "smarthub_up 1"), "{text}");
    assert!(has(&text, "smarthub_wan_connected 1"), "the real values, not made-up ones:\n{text}");
    rig.assert_recovers("wrong content type").await;
}

#[tokio::test]
async fn tls_handshake_failure() {
    let rig = rig().await;
    // An https:// target whose port speaks plain HTTP: the handshake fails.
    let https = rig.sim.url().replace("http://", "https://");
    rig.assert_down("https to plain http", &https, &["request failed", "InvalidContentType"]).await;
    rig.assert_recovers("https to plain http").await;
}

#[tokio::test]
async fn garbage_on_accept() {
    let rig = rig().await;
    // Something that is not HTTP (nor TLS) listens on the device's port.
    let not_http = NotHttpServer::start().await.unwrap();
    let addr = not_http.addr();
    for scheme in ["http", "https"] {
        let target = format!("{scheme}://{addr}");
        rig.assert_down(&target, &target, &["request failed"]).await;
    }
    drop(not_http);
    rig.assert_recovers("garbage on accept").await;
}

#[tokio::test]
async fn the_reason_is_logged_on_stderr() {
    let sim = SimServer::start(Arc::new(Sim::new(Profile::Vdsl)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    sim.set_fault(Some(Fault::Status(503)));
    let exporter = ChildExporter::start(
        env!("CARGO_BIN_EXE_smarthub-exporter"),
        &["--target", &sim.url()],
        &[],
    );
    let http = test_client_builder().build().unwrap();
    let started = Instant::now();
    let text = http
        .get(format!("http://{}/metrics", exporter.addr()))
        .header("X-Prometheus-Scrape-Timeout-Seconds", TIMEOUT_HEADER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(started.elapsed() < ANSWER_WITHIN);
    assert!(has(&text, "smarthub_up 0"), "{text}");
    let reason = |l: &str| l.contains("collector failed") && l.contains("HTTP 503");
    let logged = exporter.lines_until(Duration::from_secs(3), reason);
    assert!(
        logged.iter().any(|l| reason(l)),
        "stderr has no line naming the reason:\n{}",
        logged.join("\n")
    );
    assert!(!logged.iter().any(|l| l.contains("panicked")), "{}", logged.join("\n"));
}

/// A reqwest client builder for the test's own requests (rustls needs its provider first).
fn test_client_builder() -> reqwest::ClientBuilder {
    exporter_core::client::install_crypto_provider();
    reqwest::Client::builder().no_proxy()
}
