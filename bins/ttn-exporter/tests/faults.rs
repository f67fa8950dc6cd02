//! Fault injection: the exporter served by exporter-core, scraped over real loopback sockets,
//! against The Things Stack simulator misbehaving in every way the device-sim framework knows.
//!
//! A fault of the Identity Server (the gateway list) on a fresh exporter gives `ttn_up 0`; a
//! fault of a Gateway Server cluster fails the `gateway_stats` collector and keeps the last
//! good values (with their age), and `ttn_up` is 0 while the cluster cannot be reached (no
//! answer, or 5xx) but stays 1 when it answers nonsense. Every scrape (sent with `X-Prometheus-Scrape-Timeout-Seconds: 2`)
//! answers in under 2.2 s, the `&debug=true` trace names the reason, and the exporter serves
//! normal scrapes again once the fault is gone. One test runs the binary as a child process
//! to check the reason also reaches the log on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::sample_value as value;
use std::time::{Duration, Instant};

use device_sim::{
    http::{Fault, NotHttpServer},
    ttn::{SimOptions, TtnSim, USER_KEY},
};
use exporter_core::{RunningServer, Secret, ServeOptions, testing::ChildExporter};
use ttn_exporter::{INFO, Ttn, config::Config};

const TIMEOUT_HEADER: &str = "2";
const ANSWER_WITHIN: Duration = Duration::from_millis(2200);

struct Rig {
    sim: TtnSim,
    server: RunningServer,
    http: reqwest::Client,
}

async fn rig() -> Rig {
    let sim = TtnSim::start(SimOptions { gateways: 4, ..SimOptions::default() }).await.unwrap();
    let mut args: Vec<String> = vec!["--api-url".into(), sim.identity_url()];
    for c in sim.cluster_url_flags() {
        args.extend(["--cluster-url".to_owned(), c]);
    }
    args.extend(["--stats-ttl".to_owned(), "100ms".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flags: ttn_exporter::Flags = argh::FromArgs::from_args(&["ttn-exporter"], &args).unwrap();
    let mut config = Config::from_flags(&flags).unwrap();
    // A hung call ends (and is retried) soon after the fault is cleared.
    config.request_timeout = Duration::from_secs(1);
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let ttn = Ttn::from_config(config, Secret::new(USER_KEY), http);
    let server = exporter_core::spawn(ttn, ServeOptions::for_test(INFO)).await.unwrap();
    let http = test_client_builder().timeout(Duration::from_secs(10)).build().unwrap();
    Rig { sim, server, http }
}

impl Rig {
    async fn get(&self, debug: bool) -> (u16, String, Duration) {
        let mut url = format!("http://{}/probe?target=%2A", self.server.local_addr());
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
        (status, resp.text().await.unwrap(), start.elapsed())
    }

    /// A scrape and its trace, both in time; returns (exposition, trace).
    async fn scrape(&self, what: &str) -> (String, String) {
        let ((status, text, took), (tstatus, trace, ttook)) =
            tokio::join!(self.get(false), self.get(true));
        assert_eq!((status, tstatus), (200, 200), "{what}: {text}\n{trace}");
        assert!(took < ANSWER_WITHIN, "{what}: the scrape took {took:?}");
        assert!(ttook < ANSWER_WITHIN, "{what}: the debug scrape took {ttook:?}");
        (text, trace)
    }

    fn set_cluster_faults(&self, fault: Option<Fault>) {
        for c in &self.sim.clusters {
            c.server.set_fault(fault);
        }
    }

    /// Polls (bounded) until a scrape is normal again: up 1, every collector succeeded.
    async fn assert_recovers(&self, what: &str) {
        self.sim.identity.set_fault(None);
        self.set_cluster_faults(None);
        let start = Instant::now();
        let mut text = String::new();
        while start.elapsed() < Duration::from_secs(10) {
            text = self.get(false).await.1;
            if value(&text, "ttn_up") == Some(1.0)
                && collector(&text, "gateway_list") == Some(1.0)
                && collector(&text, "gateway_stats") == Some(1.0)
            {
                assert!(text.contains("ttn_gateway_uplinks_total{"), "{what}: {text}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{what}: no normal scrape within 10 s after the fault was cleared:\n{text}");
    }
}

fn collector(text: &str, name: &str) -> Option<f64> {
    value(text, &format!("ttn_scrape_collector_success{{collector=\"{name}\"}}"))
}

/// A fault of the Identity Server before the first scrape: `ttn_up 0`, the reason in the
/// trace, no gateway series at all (nothing made up).
async fn identity_fault(fault: Fault, reasons: &[&str]) {
    let rig = rig().await;
    rig.sim.identity.set_fault(Some(fault));
    let what = format!("identity {fault}");
    let (text, trace) = rig.scrape(&what).await;
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{what}:\n{text}");
    assert_eq!(collector(&text, "gateway_list"), Some(0.0), "{what}:\n{text}");
    assert!(trace.contains("up: 0"), "{what}:\n{trace}");
    assert!(
        reasons.iter().any(|r| trace.contains(r)),
        "{what}: the trace names none of {reasons:?}:\n{trace}"
    );
    assert!(!text.contains("ttn_gateway_info"), "{what}: no made-up gateways:\n{text}");
    rig.assert_recovers(&what).await;
}

#[tokio::test]
async fn identity_refuses_connections() {
    identity_fault(Fault::Refuse, &["ListGateways: request failed"]).await;
}

#[tokio::test]
async fn identity_resets_mid_body() {
    identity_fault(Fault::ResetMidBody, &["ListGateways: reading body"]).await;
}

#[tokio::test]
async fn identity_truncates_the_body() {
    identity_fault(Fault::Truncated, &["ListGateways: reading body"]).await;
}

#[tokio::test]
async fn identity_hangs() {
    identity_fault(Fault::Hang, &["ListGateways: timed out"]).await;
}

#[tokio::test]
async fn identity_drips() {
    identity_fault(Fault::Drip, &["ListGateways: reading body: timed out"]).await;
}

#[tokio::test]
async fn identity_sends_an_endless_body() {
    identity_fault(Fault::Endless, &["response body larger than"]).await;
}

#[tokio::test]
async fn identity_sends_an_oversized_body() {
    identity_fault(Fault::Oversized, &["response body larger than"]).await;
}

#[tokio::test]
async fn identity_sends_invalid_utf8() {
    identity_fault(Fault::InvalidUtf8, &["ListGateways: unexpected response: invalid JSON"]).await;
}

#[tokio::test]
async fn identity_sends_garbage() {
    identity_fault(Fault::Garbage, &["ListGateways: unexpected response: invalid JSON"]).await;
}

#[tokio::test]
async fn identity_answers_5xx() {
    identity_fault(Fault::Status(500), &["ListGateways: HTTP 500"]).await;
    identity_fault(Fault::Status(503), &["ListGateways: HTTP 503"]).await;
}

/// An exporter whose `--api-url` is `api` (no clusters): for targets that are not the sim.
async fn serve_api(api: &str) -> RunningServer {
    let flags: ttn_exporter::Flags =
        argh::FromArgs::from_args(&["ttn-exporter"], &["--api-url", api]).unwrap();
    let mut config = Config::from_flags(&flags).unwrap();
    config.request_timeout = Duration::from_secs(1);
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let ttn = Ttn::from_config(config, Secret::new(USER_KEY), http);
    exporter_core::spawn(ttn, ServeOptions::for_test(INFO)).await.unwrap()
}

/// Two scrapes in a row of an exporter whose API is unusable: both in time with `ttn_up 0`
/// and `reasons` in the trace (the second shows the exporter keeps serving).
async fn assert_api_down(api: &str, reasons: &[&str]) {
    let sim = TtnSim::start(SimOptions { gateways: 1, ..SimOptions::default() }).await.unwrap();
    let http = test_client_builder().build().unwrap();
    let rig = Rig { sim, server: serve_api(api).await, http };
    for round in 0..2 {
        let (text, trace) = rig.scrape(api).await;
        assert_eq!(value(&text, "ttn_up"), Some(0.0), "{api} #{round}:\n{text}");
        for r in reasons {
            assert!(trace.contains(r), "{api} #{round}: no {r:?} in\n{trace}");
        }
        // Failed calls are retried after 1 s.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

#[tokio::test]
async fn identity_nothing_listening() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    assert_api_down(&format!("http://{addr}"), &["cannot connect", "Connection refused"]).await;
}

/// The Identity Server's JSON under a content type it never sends: the body is what is
/// checked (it decodes as a gateway page), so the scrape is normal.
#[tokio::test]
async fn wrong_content_type_is_judged_by_the_body() {
    let rig = rig().await;
    rig.sim.identity.set_fault(Some(Fault::WrongContentType));
    for c in &rig.sim.clusters {
        c.server.set_fault(Some(Fault::WrongContentType));
    }
    let (text, _) = rig.scrape("wrong content type").await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert!(text.contains("ttn_gateway_uplinks_total{"), "{text}");
    rig.assert_recovers("wrong content type").await;
}

#[tokio::test]
async fn tls_handshake_failure() {
    let sim = TtnSim::start(SimOptions { gateways: 1, ..SimOptions::default() }).await.unwrap();
    // https:// to the plain-HTTP Identity Server: the handshake fails.
    let api = sim.identity_url().replace("http://", "https://");
    assert_api_down(&api, &["ListGateways: cannot connect", "InvalidContentType"]).await;
}

#[tokio::test]
async fn garbage_on_accept() {
    // Something that is not HTTP (nor TLS) listens on the device's port.
    let not_http = NotHttpServer::start().await.unwrap();
    let addr = not_http.addr();
    assert_api_down(&format!("http://{addr}"), &["ListGateways: request failed"]).await;
    assert_api_down(&format!("https://{addr}"), &["ListGateways: cannot connect"]).await;
    drop(not_http);
}

/// Faults of every Gateway Server cluster after a good scrape: `gateway_stats` fails, the
/// gateway list stays, the statistics keep their last good values (never made up), and
/// `ttn_up` is 0 exactly while the clusters cannot be reached.
#[tokio::test]
async fn cluster_faults_fail_the_stats_collector() {
    let rig = rig().await;
    let (text, _) = rig.scrape("before").await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    for (fault, reason, up) in [
        (Fault::Refuse, "request failed", 0.0),
        (Fault::ResetMidBody, "reading body", 0.0),
        (Fault::Hang, "timed out", 0.0),
        (Fault::Endless, "response body larger than", 0.0),
        (Fault::InvalidUtf8, "invalid JSON", 1.0),
        (Fault::Status(502), "HTTP 502", 0.0),
    ] {
        let what = format!("cluster {fault}");
        rig.set_cluster_faults(Some(fault));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (text, trace) = rig.scrape(&what).await;
        assert_eq!(value(&text, "ttn_up"), Some(up), "{what}:\n{text}");
        assert!(text.contains("ttn_gateway_uplinks_total{"), "{what}: last values kept:\n{text}");
        assert_eq!(collector(&text, "gateway_list"), Some(1.0), "{what}:\n{text}");
        assert_eq!(collector(&text, "gateway_stats"), Some(0.0), "{what}:\n{text}");
        assert!(trace.contains("collector gateway_stats failed"), "{what}:\n{trace}");
        assert!(trace.contains(reason), "{what}: no {reason:?} in\n{trace}");
        rig.assert_recovers(&what).await;
    }
}

#[tokio::test]
async fn the_reason_is_logged_on_stderr() {
    let sim = TtnSim::start(SimOptions { gateways: 2, ..SimOptions::default() }).await.unwrap();
    sim.identity.set_fault(Some(Fault::Status(503)));
    let mut args = vec!["--api-url".to_owned(), sim.identity_url()];
    for c in sim.cluster_url_flags() {
        args.extend(["--cluster-url".to_owned(), c]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = ChildExporter::start(
        env!("CARGO_BIN_EXE_ttn-exporter"),
        &args,
        &[("TTN_API_KEY", USER_KEY)],
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
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{text}");
    let wanted = |l: &str| l.contains("ListGateways") && l.contains("HTTP 503");
    let logged = exporter.lines_until(Duration::from_secs(3), wanted);
    assert!(
        logged.iter().any(|l| wanted(l)),
        "no log line names the reason:\n{}",
        logged.join("\n")
    );
    assert!(!logged.iter().any(|l| l.contains("panicked")), "{}", logged.join("\n"));
}

/// A reqwest client builder for the test's own requests (rustls needs its provider first).
fn test_client_builder() -> reqwest::ClientBuilder {
    exporter_core::client::install_crypto_provider();
    reqwest::Client::builder().no_proxy()
}
