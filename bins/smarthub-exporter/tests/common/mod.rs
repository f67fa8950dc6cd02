//! Shared helpers of the end-to-end tests: a simulated hub, an exporter served by
//! exporter-core on 127.0.0.1:0, scrapes over HTTP and reading values out of the exposition.
#![allow(dead_code, clippy::unwrap_used)]

pub use exporter_core::testing::sample_value as value;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use device_sim::{
    http::SimServer,
    smarthub::{Profile, SmartHub},
};
use exporter_core::{RunningServer, ServeOptions};
use smarthub_exporter::{Flags, INFO, Smarthub};

pub struct Rig {
    pub hub: Arc<SmartHub>,
    pub sim: SimServer,
    pub exporter: RunningServer,
    pub client: reqwest::Client,
}

/// A hub with `profile` and an exporter with `flags` whose `--target` is that hub.
pub async fn rig(profile: Profile, mut flags: Flags) -> Rig {
    let hub = Arc::new(SmartHub::new(profile));
    let sim = SimServer::start(hub.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    flags.target = Some(sim.url().parse().unwrap());
    let client = exporter_core::client::http_client(&INFO).unwrap();
    let exporter = Smarthub::with_client(flags, None, client.clone()).unwrap();
    let exporter = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    Rig { hub, sim, exporter, client }
}

impl Rig {
    /// `GET /probe?target=<the hub>` with an optional scrape-timeout header: (elapsed, body).
    pub async fn probe(&self, timeout_header: Option<f64>) -> (Duration, String) {
        self.get(&format!("/probe?target={}", encode(&self.sim.url())), timeout_header).await
    }

    /// The `&debug=true` trace of one probe.
    pub async fn trace(&self) -> String {
        self.get(&format!("/probe?target={}&debug=true", encode(&self.sim.url())), None).await.1
    }

    /// `GET /metrics` (the default target is the hub).
    pub async fn metrics(&self) -> String {
        self.get("/metrics", None).await.1
    }

    pub async fn get(
        &self,
        path_and_query: &str,
        timeout_header: Option<f64>,
    ) -> (Duration, String) {
        let url = format!("http://{}{path_and_query}", self.exporter.local_addr());
        let mut req = self.client.get(url);
        if let Some(t) = timeout_header {
            req = req.header("X-Prometheus-Scrape-Timeout-Seconds", t.to_string());
        }
        let start = Instant::now();
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.text().await.unwrap();
        (start.elapsed(), body)
    }

    pub fn requests(&self, path: &str) -> u64 {
        self.sim.counters().get(path)
    }
}

/// `smarthub_scrape_collector_success{collector="…"}`.
pub fn collector(text: &str, name: &str) -> Option<f64> {
    value(text, &format!("smarthub_scrape_collector_success{{collector=\"{name}\"}}"))
}

fn encode(text: &str) -> String {
    text.replace('%', "%25").replace(':', "%3A").replace('/', "%2F")
}

/// The resident set size of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
