//! `serve` on SIGTERM: stops accepting, lets the scrape in flight finish, then returns.
//!
//! Its own test binary, because it sends SIGTERM to its own process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use common::{DemoExporter, INFO, client, encode, sample};
use device_sim::{demo::Demo, http::SimServer};
use exporter_core::ServeOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_scrape_in_flight() {
    let sim =
        SimServer::start(Arc::new(Demo::default()), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    sim.set_latency(Duration::from_millis(1000));
    // A free port for `serve` (which does not report the port it bound).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut opts = ServeOptions::for_test(INFO);
    opts.listen_addresses = vec![format!("127.0.0.1:{port}")];
    let exporter = DemoExporter::new();
    let shutdowns = Arc::clone(&exporter.shutdowns);
    let serving = tokio::spawn(exporter_core::serve(exporter, opts));

    // `serve` installs its signal handlers before it binds, so once it answers, SIGTERM is
    // handled by it (and no longer ends the test process).
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while client().get(format!("{base}/-/healthy")).send().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "serve never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let url = format!("{base}/probe?target={}", encode(&sim.url()));
    let in_flight = tokio::spawn(async move {
        let resp = client().get(url).send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    });
    while sim.in_flight() == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the scrape never reached the device");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new connections are still accepted after SIGTERM");
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(sample(&body, "demo_up"), Some(1.0), "{body}");
    let result = tokio::time::timeout(Duration::from_secs(7), serving).await.unwrap().unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
}
