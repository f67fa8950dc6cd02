//! A trivial exporter for device-sim's demo device (`GET /status` JSON), and helpers to run
//! it behind exporter-core's server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

pub use exporter_core::testing::query_encode as encode;
pub use exporter_core::testing::sample_value as sample;
use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use device_sim::{demo::Demo, http::SimServer};
use exporter_core::{Exporter, ExporterInfo, RunningServer, Scrape, ServeOptions, timed};

pub const INFO: ExporterInfo = ExporterInfo {
    binary: "demo-exporter",
    env_prefix: "DEMO",
    version: "0.0.1-test",
    default_port: 9999,
};

/// `?target=`: the demo device's base URL.
#[derive(Debug, Clone)]
pub struct DemoTarget(pub String);

impl FromStr for DemoTarget {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<DemoTarget> {
        anyhow::ensure!(s.starts_with("http://"), "the target must be an http:// URL");
        Ok(DemoTarget(s.to_owned()))
    }
}

impl fmt::Display for DemoTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, serde::Deserialize)]
struct Status {
    temperature_celsius: Option<f64>,
    uptime_seconds: f64,
}

pub struct DemoExporter {
    client: reqwest::Client,
    pub default: Option<DemoTarget>,
    pub shutdowns: Arc<AtomicUsize>,
    /// Extra samples each probe writes (`demo_fan_out{n="…"}`), to make a large scrape.
    pub fan_out: u32,
}

impl DemoExporter {
    pub fn new() -> DemoExporter {
        DemoExporter {
            client: exporter_core::client::http_client(&INFO).unwrap(),
            default: None,
            shutdowns: Arc::new(AtomicUsize::new(0)),
            fan_out: 0,
        }
    }

    async fn status(&self, target: &DemoTarget) -> anyhow::Result<Status> {
        let resp =
            self.client.get(format!("{}/status", target.0)).send().await.context("GetStatus")?;
        anyhow::ensure!(resp.status().is_success(), "GetStatus: status {}", resp.status());
        let body =
            exporter_core::client::read_body_limited(resp, 64 * 1024).await.context("GetStatus")?;
        serde_json::from_slice(&body).context("GetStatus: decode")
    }
}

impl Exporter for DemoExporter {
    const NAMESPACE: &'static str = "demo";
    const DESCRIPTION: &'static str = "Test exporter for the <demo> device";
    type Target = DemoTarget;

    fn default_target(&self) -> Option<DemoTarget> {
        self.default.clone()
    }

    async fn probe(&self, target: &DemoTarget, out: &mut Scrape) -> anyhow::Result<()> {
        if target.0.contains("panic") {
            panic!("the demo probe panics on purpose");
        }
        let status = timed("status", out.deadline(), self.status(target)).await;
        if let Some(s) = out.record(status) {
            out.gauge(
                "temperature_celsius",
                "Temperature the device reported, in degrees Celsius.",
            )
            .sample_opt(&[], s.temperature_celsius);
            out.gauge("uptime_seconds", "Time since the device started, in seconds.")
                .sample(&[], s.uptime_seconds);
        }
        let mut n = String::new();
        for i in 0..self.fan_out {
            n.clear();
            std::fmt::Write::write_fmt(&mut n, format_args!("sample-{i:08}")).ok();
            out.gauge("fan_out", "One of many samples.").sample(&[("n", &n)], f64::from(i));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
    }
}

/// A demo device and the exporter in front of it.
pub struct Harness {
    pub sim: SimServer,
    pub server: Option<RunningServer>,
    pub base: String,
    pub shutdowns: Arc<AtomicUsize>,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_, _| {}).await
    }

    /// Starts the device and the exporter; `tweak` may change the options and the exporter.
    pub async fn start_with(tweak: impl FnOnce(&mut ServeOptions, &mut DemoExporter)) -> Harness {
        let sim = SimServer::start(Arc::new(Demo::default()), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut opts = ServeOptions::for_test(INFO);
        let mut exporter = DemoExporter::new();
        tweak(&mut opts, &mut exporter);
        let shutdowns = Arc::clone(&exporter.shutdowns);
        let server = exporter_core::spawn(exporter, opts).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        Harness { sim, server: Some(server), base, shutdowns }
    }

    /// `/probe?target=<the demo device>`.
    pub fn probe_url(&self) -> String {
        format!("{}/probe?target={}", self.base, encode(&self.sim.url()))
    }

    pub fn device_queries(&self) -> u64 {
        self.sim.counters().get("/status")
    }
}

/// A plain HTTP client for the tests (no gzip decoding, no proxy).
pub fn client() -> reqwest::Client {
    exporter_core::client::install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

/// Environment maps for `parse_args`.
pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}
