//! Scrape semantics over real sockets: deadline, single flight, the concurrency limit,
//! partial results, the debug trace, panics and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::{Harness, client, encode, sample};
use device_sim::http::Fault;

#[tokio::test]
async fn a_hanging_device_answers_before_the_prometheus_deadline() {
    let h = Harness::start().await;
    h.sim.set_fault(Some(Fault::Hang));
    let start = Instant::now();
    let resp = client()
        .get(h.probe_url())
        .header("X-Prometheus-Scrape-Timeout-Seconds", "1")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1100), "answered after {took:?}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(sample(&body, "demo_up"), Some(0.0), "{body}");
    assert_eq!(
        sample(&body, "demo_scrape_collector_success{collector=\"status\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(h.device_queries() >= 1, "the device was asked");
}

#[tokio::test]
async fn the_scrape_timeout_flag_bounds_scrapes_without_the_header() {
    let h = Harness::start_with(|opts, _| {
        opts.scrape_timeout = Duration::from_millis(300);
        opts.timeout_offset = Duration::from_millis(100);
    })
    .await;
    h.sim.set_fault(Some(Fault::Hang));
    let start = Instant::now();
    let body = client().get(h.probe_url()).send().await.unwrap().text().await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(800), "answered after {:?}", start.elapsed());
    assert_eq!(sample(&body, "demo_up"), Some(0.0), "{body}");
}

#[tokio::test]
async fn one_hundred_concurrent_scrapes_cause_one_device_query() {
    let h = Harness::start().await;
    h.sim.set_latency(Duration::from_millis(1500));
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url) = (client.clone(), h.probe_url());
        tasks.push(tokio::spawn(async move {
            let resp = client.get(url).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(sample(&body, "demo_up"), Some(1.0), "{body}");
        assert_eq!(sample(&body, "demo_uptime_seconds"), Some(1234.0), "{body}");
    }
    assert_eq!(h.device_queries(), 1, "single flight: one device query for 100 scrapes");

    // The coalesced requests are counted, and a later scrape queries the device again.
    let metrics =
        client.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    let coalesced = sample(&metrics, "demo_exporter_scrapes_coalesced_total").unwrap();
    assert!(coalesced >= 1.0, "{metrics}");
    h.sim.set_latency(Duration::ZERO);
    client.get(h.probe_url()).send().await.unwrap().text().await.unwrap();
    assert_eq!(h.device_queries(), 2);
}

#[tokio::test]
async fn beyond_max_concurrent_scrapes_the_answer_is_503_but_joiners_are_served() {
    let h = Harness::start_with(|opts, _| opts.max_concurrent_scrapes = 1).await;
    h.sim.set_latency(Duration::from_millis(1500));
    let client = client();
    let (c, url) = (client.clone(), h.probe_url());
    let first = tokio::spawn(async move { c.get(url).send().await.unwrap().status() });
    let start = Instant::now();
    while h.sim.in_flight() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the first scrape never reached the device"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another target (same device, different key) is one probe too many.
    let other = format!("{}/probe?target={}", h.base, encode(&format!("{}/", h.sim.url())));
    let resp = client.get(other).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    // Joining the probe in flight is free.
    let joined = client.get(h.probe_url()).send().await.unwrap();
    assert_eq!(joined.status(), 200);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(h.device_queries(), 1);
}

#[tokio::test]
async fn failed_collectors_give_up_0_and_the_debug_trace_explains() {
    let h = Harness::start().await;
    h.sim.set_fault(Some(Fault::Status(500)));
    let body = client().get(h.probe_url()).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&body, "demo_up"), Some(0.0), "{body}");
    assert_eq!(
        sample(&body, "demo_scrape_collector_success{collector=\"status\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(
        sample(&body, "demo_scrape_collector_duration_seconds{collector=\"status\"}").is_some(),
        "{body}"
    );
    assert!(sample(&body, "demo_scrape_duration_seconds").is_some(), "{body}");
    assert!(!body.contains("demo_uptime_seconds"), "no made-up values: {body}");

    let resp = client().get(format!("{}&debug=true", h.probe_url())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let trace = resp.text().await.unwrap();
    let target_line = format!("target: {}", h.sim.url());
    for needle in [
        target_line.as_str(),
        "collector status failed after",
        "GetStatus: status 500",
        "up: 0",
        "scrape duration: ",
        "demo_up 0",
    ] {
        assert!(trace.contains(needle), "{needle:?} missing from trace:\n{trace}");
    }

    h.sim.set_fault(None);
    let trace = client()
        .get(format!("{}&debug=1", h.probe_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(trace.contains("collector status succeeded in"), "{trace}");
    assert!(trace.contains("up: 1"), "{trace}");
}

#[tokio::test]
async fn an_unreachable_device_is_up_0_not_an_error() {
    let h = Harness::start().await;
    // A port nobody listens on (the device-sim refuses connections after this).
    h.sim.set_fault(Some(Fault::Refuse));
    let resp = client().get(h.probe_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert_eq!(sample(&body, "demo_up"), Some(0.0), "{body}");
}

#[tokio::test]
async fn a_panic_in_probe_is_a_500_and_the_server_keeps_serving() {
    let h = Harness::start().await;
    let url = format!("{}/probe?target={}", h.base, encode("http://panic.invalid"));
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.text().await.unwrap().contains("bug"));
    // Again (the failed probe was removed from the in-flight map), then a good scrape.
    assert_eq!(client().get(&url).send().await.unwrap().status(), 500);
    let resp = client().get(h.probe_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sample(&resp.text().await.unwrap(), "demo_up"), Some(1.0));
}

#[tokio::test]
async fn metrics_has_own_metrics_and_the_default_target() {
    let h = Harness::start().await;
    let target = h.sim.url().parse().unwrap();
    let h2 = Harness::start_with(move |_, exporter| exporter.default = Some(target)).await;
    let _keep = &h2;

    let own =
        client().get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    assert!(own.contains("demo_exporter_build_info{"), "{own}");
    assert!(own.contains("\nprocess_resident_memory_bytes "), "{own}");
    assert!(!own.contains("demo_up"), "no default target, no device scrape: {own}");

    // h2's default target is h's device.
    let both =
        client().get(format!("{}/metrics", h2.base)).send().await.unwrap().text().await.unwrap();
    assert!(both.contains("demo_exporter_build_info{"), "{both}");
    assert_eq!(sample(&both, "demo_up"), Some(1.0), "{both}");
    assert_eq!(sample(&both, "demo_temperature_celsius"), Some(21.5), "{both}");
    assert_eq!(h.device_queries(), 1);
}

#[tokio::test]
async fn shutdown_lets_the_scrape_in_flight_finish_and_refuses_new_connections() {
    let mut h = Harness::start().await;
    h.sim.set_latency(Duration::from_millis(1000));
    let addr = h.server.as_ref().unwrap().local_addr();
    let (c, url) = (client(), h.probe_url());
    let in_flight = tokio::spawn(async move {
        let resp = c.get(url).send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    });
    let start = Instant::now();
    while h.sim.in_flight() == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the scrape never reached the device");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server = h.server.take().unwrap();
    let shutdown = tokio::spawn(server.shutdown());

    // New connections are refused soon after the shutdown began.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new connections are still accepted during shutdown");

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(sample(&body, "demo_up"), Some(1.0), "{body}");
    tokio::time::timeout(Duration::from_secs(6), shutdown).await.unwrap().unwrap();
    assert_eq!(h.shutdowns.load(Ordering::SeqCst), 1, "Exporter::shutdown ran once");
}
