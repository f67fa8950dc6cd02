//! Fault injection: the exporter served by exporter-core, scraped over real loopback sockets,
//! against the LinkHub simulator misbehaving in every way the device-sim framework knows.
//!
//! For each fault the scrape (sent with `X-Prometheus-Scrape-Timeout-Seconds: 2`) answers in
//! under 2.2 s with `linkhub_up 0`, the `&debug=true` trace of the same scrape names the
//! reason, and once the fault is gone the next scrape is normal again. One test runs the
//! binary as a child process to check the reason also reaches the log on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::{has_line as has, query_encode as encode};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use argh::FromArgs;
use device_sim::{
    http::{Fault, NotHttpServer, SimServer},
    linkhub::{Linkhub as Sim, Model},
};
use exporter_core::{RunningServer, ServeOptions, testing::ChildExporter};
use linkhub_exporter::{Flags, INFO, Linkhub};

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
    let sim = SimServer::start(Arc::new(Sim::new(Model::Hh41)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let flags = Flags::from_args(&["linkhub-exporter"], &["--target", &sim.url()]).unwrap();
    let server = exporter_core::spawn(Linkhub::new(flags).unwrap(), ServeOptions::for_test(INFO))
        .await
        .unwrap();
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
    /// both in time, `linkhub_up 0`, and the trace names one of `reasons`.
    async fn assert_down(&self, what: &str, target: &str, reasons: &[&str]) {
        let ((status, text, took), (tstatus, trace, ttook)) =
            tokio::join!(self.get(target, false), self.get(target, true));
        assert_eq!((status, tstatus), (200, 200), "{what}: {text}\n{trace}");
        assert!(took < ANSWER_WITHIN, "{what}: the scrape took {took:?}");
        assert!(ttook < ANSWER_WITHIN, "{what}: the debug scrape took {ttook:?}");
        assert!(has(&text, "linkhub_up 0"), "{what}:\n{text}");
        assert!(trace.contains("up: 0"), "{what}:\n{trace}");
        assert!(
            reasons.iter().any(|r| trace.contains(r)),
            "{what}: the trace names none of {reasons:?}:\n{trace}"
        );
        assert!(!text.contains("linkhub_rsrp_dbm"), "{what}: no made-up values:\n{text}");
    }

    /// The fault is gone: a normal scrape with real values.
    async fn assert_recovers(&self, what: &str) {
        self.sim.set_fault(None);
        let (status, text, _) = self.get(&self.sim.url(), false).await;
        assert_eq!(status, 200, "{what}: {text}");
        assert!(has(&text, "linkhub_up 1"), "{what}: the exporter keeps serving:\n{text}");
        assert!(has(&text, "linkhub_rsrp_dbm -90"), "{what}:\n{text}");
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
    rig.fault(Fault::Refuse, &["device unreachable"]).await;
}

#[tokio::test]
async fn nothing_listening() {
    let rig = rig().await;
    rig.assert_down("nothing listening", &closed_port(), &["device unreachable"]).await;
    rig.assert_recovers("nothing listening").await;
}

#[tokio::test]
async fn reset_mid_body() {
    let rig = rig().await;
    rig.fault(Fault::ResetMidBody, &["device unreachable: cannot read the response body"]).await;
}

#[tokio::test]
async fn truncated_body() {
    let rig = rig().await;
    rig.fault(Fault::Truncated, &["device unreachable: cannot read the response body"]).await;
}

#[tokio::test]
async fn hang() {
    let rig = rig().await;
    rig.fault(Fault::Hang, &["scrape deadline exceeded"]).await;
}

#[tokio::test]
async fn drip_one_byte_per_second() {
    let rig = rig().await;
    rig.fault(Fault::Drip, &["scrape deadline exceeded"]).await;
}

#[tokio::test]
async fn endless_body() {
    let rig = rig().await;
    rig.fault(Fault::Endless, &["response too large: response body is larger than the limit"])
        .await;
}

#[tokio::test]
async fn oversized_body() {
    let rig = rig().await;
    rig.fault(Fault::Oversized, &["response too large: response body of 67108864 bytes"]).await;
}

#[tokio::test]
async fn invalid_utf8() {
    let rig = rig().await;
    rig.fault(Fault::InvalidUtf8, &["response is not JSON"]).await;
}

#[tokio::test]
async fn garbage() {
    let rig = rig().await;
    rig.fault(Fault::Garbage, &["response is not JSON"]).await;
}

#[tokio::test]
async fn server_errors() {
    let rig = rig().await;
    for code in [500, 502, 503] {
        rig.fault(Fault::Status(code), &[&format!("device answered HTTP {code}")]).await;
    }
}

/// The router's JSON under a content type it never sends: the body is what is checked (it
/// parses as the method's JSON-RPC reply), so the scrape is normal. A wrong body under any
/// content type fails (`garbage`, `invalid_utf8`).
#[tokio::test]
async fn wrong_content_type_is_judged_by_the_body() {
    let rig = rig().await;
    rig.sim.set_fault(Some(Fault::WrongContentType));
    let (status, text, took) = rig.get(&rig.sim.url(), false).await;
    assert_eq!(status, 200);
    assert!(took < ANSWER_WITHIN, "{took:?}");
    assert!(has(&text, "linkhub_up 1"), "{text}");
    assert!(has(&text, "linkhub_rsrp_dbm -90"), "the real values, not made-up ones:\n{text}");
    rig.assert_recovers("wrong content type").await;
}

#[tokio::test]
async fn tls_handshake_failure() {
    let rig = rig().await;
    // An https:// target whose port speaks plain HTTP: the handshake fails.
    let https = rig.sim.url().replace("http://", "https://");
    rig.assert_down("https to plain http", &https, &["device unreachable"]).await;
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
        rig.assert_down(&target, &target, &["device unreachable"]).await;
    }
    drop(not_http);
    rig.assert_recovers("garbage on accept").await;
}

#[tokio::test]
async fn the_reason_is_logged_on_stderr() {
    let sim = SimServer::start(Arc::new(Sim::new(Model::Hh41)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    sim.set_fault(Some(Fault::Status(503)));
    let exporter = ChildExporter::start(
        env!("CARGO_BIN_EXE_linkhub-exporter"),
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
    assert!(has(&text, "linkhub_up 0"), "{text}");
    let reason = |l: &str| l.contains("probe failed") && l.contains("device answered HTTP 503");
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
