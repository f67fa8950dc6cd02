//! End to end: the exporter served by exporter-core, scraped over HTTP, against the The
//! Things Stack simulator (an Identity Server and three Gateway Server clusters on loopback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use device_sim::{
    http::Fault,
    ttn::{
        GATEWAY_KEY, GATEWAY_STATUS_ONLY_KEY, NO_LIST_KEY, NO_STATUS_KEY, RateLimit, SimOptions,
        TtnSim, USER_KEY,
    },
};
use exporter_core::{RunningServer, Secret, ServeOptions, testing::promtool_check_metrics};
use ttn_exporter::{INFO, Target, Ttn, config::Config};

const BATCH: &str = "BatchGetGatewayConnectionStats";
const SINGLE: &str = "GetGatewayConnectionStats";
const BATCH_PATH: &str = "/api/v3/gs/gateways/connection/stats";

async fn sim(gateways: usize, tweak: impl FnOnce(&mut SimOptions)) -> TtnSim {
    let mut opts = SimOptions { gateways, ..SimOptions::default() };
    tweak(&mut opts);
    TtnSim::start(opts).await.unwrap()
}

fn config(sim: &TtnSim, extra: &[&str]) -> Config {
    let api = sim.identity_url();
    let mut args: Vec<String> = vec!["--api-url".into(), api];
    for c in sim.cluster_url_flags() {
        args.push("--cluster-url".into());
        args.push(c);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flags: ttn_exporter::Flags = argh::FromArgs::from_args(&["ttn-exporter"], &args).unwrap();
    Config::from_flags(&flags).unwrap()
}

async fn serve(config: Config, key: &str) -> RunningServer {
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let ttn = Ttn::from_config(config, Secret::new(key), http);
    let mut opts = ServeOptions::for_test(INFO);
    opts.max_concurrent_scrapes = 256;
    exporter_core::spawn(ttn, opts).await.unwrap()
}

async fn get(server: &RunningServer, path: &str, timeout_secs: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = client.get(format!("http://{}{path}", server.local_addr()));
    if let Some(t) = timeout_secs {
        req = req.header("X-Prometheus-Scrape-Timeout-Seconds", t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn metrics(server: &RunningServer) -> String {
    let (status, body) = get(server, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap())
    })
}

fn count_series(text: &str, name: &str) -> usize {
    text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).count()
}

#[tokio::test]
async fn account_on_three_clusters_takes_three_pages_and_three_batches() {
    let sim = sim(250, |o| o.page_cap = 100).await;
    let server = serve(config(&sim, &["--stats-ttl", "1s"]), USER_KEY).await;
    let text = metrics(&server).await;
    // Cached: a second scrape costs nothing.
    metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_info"), 250);
    assert_eq!(sim.identity.counters().get("ListGateways"), 3, "250 gateways at 100 a page");
    assert_eq!(sim.cluster_count(BATCH), 3, "one batch of at most 100 per cluster");
    assert_eq!(sim.cluster_count(SINGLE), 0);
    for c in &sim.clusters {
        assert_eq!(c.server.counters().get(BATCH), 1, "{}", c.name);
    }
    // 9 of every 10 gateways have statistics (never-connected ones give 404 / absent entries).
    assert_eq!(count_series(&text, "ttn_gateway_connected"), 250);
    assert_eq!(count_series(&text, "ttn_gateway_uplinks_total"), 225);
    assert!(text.contains("ttn_gateway_connected{gateway_id=\"gw-0001\"} 1\n"), "{text}");
    assert!(text.contains("ttn_gateway_connected{gateway_id=\"gw-0009\"} 0\n"), "48 h window");
    assert!(text.contains("ttn_gateway_connected{gateway_id=\"gw-0010\"} 0\n"), "never connected");
    assert!(text.contains("cluster=\"nam1.cloud.thethings.network\""), "{text}");
    assert_eq!(
        value(&text, "ttn_scrape_collector_success{collector=\"gateway_stats\"}"),
        Some(1.0)
    );
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "promtool: {findings}");
    }

    // After the TTL only the statistics are fetched again.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let text = metrics(&server).await;
    assert_eq!((sim.identity.counters().get("ListGateways"), sim.cluster_count(BATCH)), (3, 6));
    assert!(value(&text, "ttn_gateway_stats_age_seconds{gateway_id=\"gw-0001\"}").unwrap() < 0.5);
    server.shutdown().await;
}

#[tokio::test]
async fn one_gateway_per_probe_and_bad_targets() {
    let sim = sim(12, |_| {}).await;
    let server = serve(config(&sim, &[]), USER_KEY).await;
    let (status, text) = get(&server, "/probe?target=gw-0002", None).await;
    assert_eq!(status, 200);
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_info"), 1);
    assert!(text.contains("ttn_gateway_info{gateway_id=\"gw-0002\""), "{text}");
    assert!(!text.contains("ttn_gateway_list_age_seconds"), "{text}");
    let (status, _) = get(&server, "/probe?target=Not_An_Id", None).await;
    assert_eq!(status, 400);
    let (status, text) = get(&server, "/probe?target=gw-9999", None).await;
    assert_eq!(status, 200);
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn older_server_without_batch_falls_back_to_single_calls() {
    let sim = sim(20, |o| o.batch = false).await;
    let server = serve(config(&sim, &["--stats-ttl", "200ms"]), USER_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    for c in &sim.clusters {
        assert_eq!(c.server.counters().get(BATCH_PATH), 1, "one batch attempt on {}", c.name);
    }
    assert_eq!(sim.cluster_count(SINGLE), 20, "one GET per gateway on its own cluster");
    assert_eq!(count_series(&text, "ttn_gateway_uplinks_total"), 18);
    assert!(
        !text.contains("ttn_gateway_tx_acknowledgments_total"),
        "older than 3.25.2: unknown, not 0"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    metrics(&server).await;
    for c in &sim.clusters {
        assert_eq!(c.server.counters().get(BATCH_PATH), 1, "no new batch attempt on {}", c.name);
    }
    assert_eq!(sim.cluster_count(SINGLE), 40);
    server.shutdown().await;
}

#[tokio::test]
async fn gateway_scoped_key_with_gateway_flag() {
    let sim = sim(6, |_| {}).await;
    let server = serve(config(&sim, &["--gateway", "gw-0001"]), GATEWAY_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert_eq!(sim.identity.counters().get("ListGateways"), 0);
    assert_eq!(sim.identity.counters().get("GetGateway"), 1);
    assert!(text.contains("name=\"Simulated gateway 1\""), "{text}");
    assert!(text.contains("cluster=\"eu1.cloud.thethings.network\""), "{text}");
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0001\"}"), Some(1.0));
    assert_eq!(count_series(&text, "ttn_gateway_info"), 1);
    let eu1 = sim.cluster("eu1").unwrap();
    assert_eq!((eu1.server.counters().get(BATCH), eu1.server.counters().get(SINGLE)), (1, 1));
    server.shutdown().await;

    // Only "view gateway status": the public-safe entry, statistics still work.
    let sim = sim_with_counts(6).await;
    let server = serve(config(&sim, &["--gateway", "gw-0001"]), GATEWAY_STATUS_ONLY_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert!(!text.contains("ttn_gateway_model_info"), "{text}");
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0001\"}"), Some(1.0));
    server.shutdown().await;
}

async fn sim_with_counts(n: usize) -> TtnSim {
    sim(n, |_| {}).await
}

#[tokio::test]
async fn gateway_scoped_key_without_gateway_flag_says_so() {
    let sim = sim(6, |_| {}).await;
    let server = serve(config(&sim, &[]), GATEWAY_KEY).await;
    let (_, trace) = get(&server, "/probe?target=*&debug=true", None).await;
    assert!(trace.contains("pass --gateway gw-0001"), "{trace}");
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn refused_keys_give_up_zero_and_no_hammering() {
    let sim = sim(8, |_| {}).await;
    for key in ["NNSXS.UNKNOWNKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRET", NO_LIST_KEY, NO_STATUS_KEY]
    {
        sim.identity.counters().reset();
        for c in &sim.clusters {
            c.server.counters().reset();
        }
        let server = serve(config(&sim, &[]), key).await;
        let (_, trace) = get(&server, "/probe?target=*&debug=true", None).await;
        let expected = match key {
            NO_LIST_KEY => "pkg/auth/rights:insufficient_user_rights",
            NO_STATUS_KEY => "pkg/auth/rights:insufficient_gateway_rights",
            _ => "pkg/identityserver:api_key_not_found",
        };
        assert!(trace.contains(expected), "{key}: {trace}");
        let text = metrics(&server).await;
        assert_eq!(value(&text, "ttn_up"), Some(0.0), "{key}: {text}");
        let calls = sim.identity.counters().total()
            + sim.clusters.iter().map(|c| c.server.counters().total()).sum::<u64>();
        metrics(&server).await;
        let again = sim.identity.counters().total()
            + sim.clusters.iter().map(|c| c.server.counters().total()).sum::<u64>();
        assert_eq!(calls, again, "{key}: a refused key is not retried at once");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn forty_eight_hour_window_and_reconnects() {
    let sim = sim(10, |_| {}).await;
    let server = serve(config(&sim, &["--stats-ttl", "100ms"]), USER_KEY).await;
    let (_, text) = get(&server, "/probe?target=gw-0009", None).await;
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0009\"}"), Some(0.0), "{text}");
    assert!(
        value(&text, "ttn_gateway_uplinks_total{gateway_id=\"gw-0009\"}").unwrap() > 0.0,
        "frozen counters"
    );
    assert!(
        value(&text, "ttn_gateway_disconnected_timestamp_seconds{gateway_id=\"gw-0009\"}")
            .is_some()
    );
    let (_, text) = get(&server, "/probe?target=gw-0010", None).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "404 not_connected is not an error: {text}");
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0010\"}"), Some(0.0), "{text}");
    assert!(!text.contains("ttn_gateway_uplinks_total"), "{text}");

    sim.world.advance(Duration::from_secs(49 * 3600));
    sim.world.reconnect("gw-0001").unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0009\"}"), Some(0.0));
    assert!(
        value(&text, "ttn_gateway_uplinks_total{gateway_id=\"gw-0009\"}").is_none(),
        "gone after 48 h"
    );
    assert_eq!(
        value(&text, "ttn_gateway_uplinks_total{gateway_id=\"gw-0001\"}"),
        Some(0.0),
        "restarted"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_keeps_last_values_and_waits() {
    let sim = sim(6, |_| {}).await;
    let server = serve(config(&sim, &["--stats-ttl", "100ms"]), USER_KEY).await;
    let eu1 = sim.cluster("eu1").unwrap();
    let nam1 = sim.cluster("nam1").unwrap();
    let text = metrics(&server).await;
    let uplinks = value(&text, "ttn_gateway_uplinks_total{gateway_id=\"gw-0001\"}").unwrap();
    eu1.device.set_rate_limit(Some(RateLimit { retry_secs: 2, alt_spelling: false }));
    nam1.device.set_rate_limit(Some(RateLimit { retry_secs: 2, alt_spelling: true }));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let limited_at = Instant::now();
    let text = metrics(&server).await;
    assert_eq!(eu1.server.counters().get("rate_limited"), 1);
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "ttn_gateway_uplinks_total{gateway_id=\"gw-0001\"}"),
        Some(uplinks),
        "last good value"
    );
    assert!(value(&text, "ttn_gateway_stats_age_seconds{gateway_id=\"gw-0001\"}").unwrap() >= 0.15);
    assert_eq!(
        value(&text, "ttn_scrape_collector_success{collector=\"gateway_stats\"}"),
        Some(0.0)
    );
    // No request until X-Rate-Limit-Retry has passed, in either spelling.
    // (Past 1.2 s, so that a server's wait of 2 s is told apart from the 1 s minimum.)
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        metrics(&server).await;
    }
    // One answered call before the limit, one refused with 429, then nothing.
    assert_eq!(eu1.server.counters().get(BATCH), 2);
    assert_eq!(nam1.server.counters().get(BATCH), 2);
    eu1.device.set_rate_limit(None);
    nam1.device.set_rate_limit(None);
    tokio::time::sleep(
        Duration::from_secs(2).saturating_sub(limited_at.elapsed()) + Duration::from_millis(400),
    )
    .await;
    let text = metrics(&server).await;
    assert_eq!(eu1.server.counters().get(BATCH), 3);
    assert!(value(&text, "ttn_gateway_stats_age_seconds{gateway_id=\"gw-0001\"}").unwrap() < 0.5);
    assert_eq!(
        value(&text, "ttn_scrape_collector_success{collector=\"gateway_stats\"}"),
        Some(1.0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_scrapes_share_one_refresh() {
    let sim = sim(120, |_| {}).await;
    sim.identity.set_latency(Duration::from_millis(100));
    for c in &sim.clusters {
        c.server.set_latency(Duration::from_millis(100));
    }
    let server = Arc::new(serve(config(&sim, &[]), USER_KEY).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let server = Arc::clone(&server);
        tasks.spawn(async move {
            // Different targets, so the core's per-target single flight does not hide ours.
            let path =
                if i == 0 { "/metrics".to_owned() } else { format!("/probe?target=gw-{i:04}") };
            get(&server, &path, None).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (status, text) = done.unwrap();
        assert_eq!(status, 200);
        assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    }
    assert_eq!(sim.identity.counters().get("ListGateways"), 1);
    assert_eq!(sim.cluster_count(BATCH), 3);
}

#[tokio::test]
async fn hanging_api_is_bounded_by_the_deadline() {
    let sim = sim(6, |_| {}).await;
    sim.identity.set_fault(Some(Fault::Hang));
    let mut config = config(&sim, &[]);
    config.request_timeout = Duration::from_secs(2);
    let server = serve(config, USER_KEY).await;
    let started = Instant::now();
    let (status, text) = get(&server, "/metrics", Some("1")).await;
    assert!(started.elapsed() < Duration::from_millis(1100), "{:?}", started.elapsed());
    assert_eq!(status, 200);
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{text}");
    // The API comes back: once the hung call has timed out (2 s) and the retry delay (1 s)
    // has passed, the next scrape gets data.
    sim.identity.set_fault(None);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn starts_and_serves_while_the_api_is_down() {
    let sim = sim(6, |_| {}).await;
    sim.identity.set_fault(Some(Fault::Refuse));
    for c in &sim.clusters {
        c.server.set_fault(Some(Fault::Status(503)));
    }
    let server = serve(config(&sim, &[]), USER_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{text}");
    assert!(!text.contains("ttn_gateway_info"), "{text}");
    sim.identity.set_fault(None);
    for c in &sim.clusters {
        c.server.set_fault(None);
    }
    // Failed calls are retried after 1 s (doubling), on a later scrape.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_info"), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn probe_without_the_server() {
    // Until the scrape goes over HTTP, the probe alone: a Scrape with a deadline.
    let sim = sim(3, |_| {}).await;
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let ttn = Ttn::from_config(config(&sim, &[]), Secret::new(USER_KEY), http);
    let mut out = exporter_core::Scrape::new("ttn", "*", Instant::now() + Duration::from_secs(5));
    exporter_core::Exporter::probe(&ttn, &Target::All, &mut out).await.unwrap();
    let text = out.encode();
    assert_eq!(count_series(&text, "ttn_gateway_info"), 3, "{text}");
}

#[tokio::test]
async fn broken_bodies_are_errors_not_values() {
    let sim = sim(6, |_| {}).await;
    let eu1 = sim.cluster("eu1").unwrap();
    for fault in [Fault::Garbage, Fault::Truncated, Fault::Status(500)] {
        let server = serve(config(&sim, &["--stats-ttl", "100ms"]), USER_KEY).await;
        let text = metrics(&server).await;
        let uplinks = value(&text, "ttn_gateway_uplinks_total{gateway_id=\"gw-0001\"}").unwrap();
        let before = eu1.server.counters().get(BATCH_PATH);
        eu1.server.set_fault(Some(fault));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (_, trace) = get(&server, "/probe?target=gw-0001&debug=true", None).await;
        assert_eq!(eu1.server.counters().get(BATCH_PATH), before + 1, "{fault}");
        assert!(trace.contains("collector gateway_stats failed"), "{fault}: {trace}");
        assert!(trace.contains("cluster eu1.cloud.thethings.network"), "{fault}: {trace}");
        let text = metrics(&server).await;
        assert_eq!(value(&text, "ttn_up"), Some(1.0), "{fault}: {text}");
        // The last good value stays, never a made-up one.
        assert_eq!(
            value(&text, "ttn_gateway_uplinks_total{gateway_id=\"gw-0001\"}"),
            Some(uplinks),
            "{fault}"
        );
        eu1.server.set_fault(None);
        server.shutdown().await;
    }
}
