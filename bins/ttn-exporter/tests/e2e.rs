//! End to end: the exporter served by exporter-core, scraped over HTTP, against the The
//! Things Stack simulator (an Identity Server and three Gateway Server clusters on loopback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::sample_value as value;
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
    eu1.device.set_rate_limit(Some(RateLimit { retry_secs: 3, alt_spelling: false }));
    nam1.device.set_rate_limit(Some(RateLimit { retry_secs: 3, alt_spelling: true }));
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
    // (Up to 2 s, so that a server's wait of 3 s is told apart from the 1 s minimum.)
    for _ in 0..10 {
        if limited_at.elapsed() >= Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        metrics(&server).await;
    }
    assert!(limited_at.elapsed() >= Duration::from_millis(1200), "scrapes past 1.2 s");
    // One answered call before the limit, one refused with 429, then nothing.
    assert_eq!(eu1.server.counters().get(BATCH), 2);
    assert_eq!(nam1.server.counters().get(BATCH), 2);
    eu1.device.set_rate_limit(None);
    nam1.device.set_rate_limit(None);
    tokio::time::sleep(
        Duration::from_secs(3).saturating_sub(limited_at.elapsed()) + Duration::from_millis(400),
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
        // A body that is not JSON is an answer; a cut connection or a 5xx is not.
        let up = if fault == Fault::Garbage { 1.0 } else { 0.0 };
        assert_eq!(value(&text, "ttn_up"), Some(up), "{fault}: {text}");
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

fn has_gateway_series(text: &str, metric: &str, id: &str) -> bool {
    text.lines().any(|l| l.starts_with(&format!("{metric}{{gateway_id=\"{id}\"")))
}

/// Issue 16: with the API gone (refused everywhere), `ttn_up` is 0 at once, the cached
/// statistics are served with their age for --stats-max-stale past --stats-ttl, then they
/// are absent while `ttn_gateway_info` stays; all comes back with the API.
#[tokio::test]
async fn api_gone_gives_up_zero_and_statistics_expire_after_max_stale() {
    let sim = sim(6, |_| {}).await;
    let mut config = config(&sim, &["--stats-ttl", "200ms", "--stats-max-stale", "1s"]);
    config.request_timeout = Duration::from_secs(1);
    let server = serve(config, USER_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0001\"}"), Some(1.0));
    let gone_at = Instant::now();
    sim.identity.set_fault(Some(Fault::Refuse));
    for c in &sim.clusters {
        c.server.set_fault(Some(Fault::Refuse));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "the API cannot be reached: {text}");
    assert_eq!(
        value(&text, "ttn_gateway_connected{gateway_id=\"gw-0001\"}"),
        Some(1.0),
        "served within --stats-max-stale: {text}"
    );
    assert!(value(&text, "ttn_gateway_stats_age_seconds{gateway_id=\"gw-0001\"}").unwrap() >= 0.3);
    let (_, trace) = get(&server, "/probe?target=*&debug=true", None).await;
    assert!(trace.contains("the API cannot be reached"), "{trace}");
    assert!(trace.contains("up: 0"), "{trace}");

    // Past --stats-ttl + --stats-max-stale (1.2 s) the statistics are absent.
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(gone_at.elapsed())).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_info"), 6, "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_connected"), 0, "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_uplinks_total"), 0, "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_round_trip_median_seconds"), 0, "{text}");
    assert!(value(&text, "ttn_gateway_stats_age_seconds{gateway_id=\"gw-0001\"}").unwrap() > 1.2);
    assert!(
        value(
            &text,
            "ttn_api_requests_total{cluster=\"eu1.cloud.thethings.network\",endpoint=\"BatchGetGatewayConnectionStats\",code=\"error\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );

    sim.identity.set_fault(None);
    for c in &sim.clusters {
        c.server.set_fault(None);
    }
    let start = Instant::now();
    loop {
        let text = metrics(&server).await;
        if value(&text, "ttn_up") == Some(1.0) {
            assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0001\"}"), Some(1.0));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no recovery: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await;
}

/// Issue 16: the Gateway Server forgets a gateway 48 h after its disconnect (404); the
/// exporter keeps exporting its last status and last uplink times, also across a restart
/// with --state-directory.
#[tokio::test]
async fn last_seen_times_outlive_the_48_hours_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sim = sim(10, |_| {}).await;
    let with_state = |dir: Option<&std::path::Path>| {
        let mut c = config(&sim, &["--stats-ttl", "100ms"]);
        c.state_directory = dir.map(std::path::Path::to_path_buf);
        c
    };
    let uplink = "ttn_gateway_last_uplink_timestamp_seconds{gateway_id=\"gw-0009\"}";
    let status = "ttn_gateway_last_status_timestamp_seconds{gateway_id=\"gw-0009\"}";
    let server = serve(with_state(Some(dir)), USER_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0009\"}"), Some(0.0));
    let (last_uplink, last_status) = (value(&text, uplink).unwrap(), value(&text, status).unwrap());

    sim.world.advance(Duration::from_secs(49 * 3600));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let text = metrics(&server).await;
    assert!(!has_gateway_series(&text, "ttn_gateway_uplinks_total", "gw-0009"), "404: {text}");
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0009\"}"), Some(0.0));
    assert_eq!(value(&text, uplink), Some(last_uplink), "remembered: {text}");
    assert_eq!(value(&text, status), Some(last_status), "remembered: {text}");
    server.shutdown().await;
    let file = std::fs::read_to_string(dir.join(ttn_exporter::cache::STATE_FILE)).unwrap();
    assert!(file.contains("\"gw-0009\""), "{file}");
    assert!(!file.contains("NNSXS"), "no secrets in the state file: {file}");

    // A restart reads them back; without the state directory they are gone.
    let server = serve(with_state(Some(dir)), USER_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, uplink), Some(last_uplink), "{text}");
    server.shutdown().await;
    let server = serve(with_state(None), USER_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, uplink), None, "{text}");
    server.shutdown().await;
}

/// Issue 16: a gateway added to the account is scraped (statistics included) after the next
/// list refresh, without a restart and without waiting for --stats-ttl; a deleted one is gone.
#[tokio::test]
async fn gateways_come_and_go_with_the_list() {
    let sim = sim(6, |_| {}).await;
    let server =
        serve(config(&sim, &["--gateways-refresh", "300ms", "--stats-ttl", "1h"]), USER_KEY).await;
    let text = metrics(&server).await;
    assert_eq!(count_series(&text, "ttn_gateway_info"), 6);
    assert!(has_gateway_series(&text, "ttn_gateway_connected", "gw-0002"), "{text}");
    let added = sim.world.add_gateway("eu1").unwrap();
    assert_eq!(added, "gw-0007");
    sim.world.remove_gateway("gw-0002").unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    assert_eq!(count_series(&text, "ttn_gateway_info"), 6, "{text}");
    assert!(has_gateway_series(&text, "ttn_gateway_info", "gw-0007"), "{text}");
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0007\"}"), Some(1.0), "{text}");
    assert!(
        !text.lines().any(|l| l.contains("gateway_id=\"gw-0002\"")),
        "a deleted gateway leaves no series: {text}"
    );
    assert_eq!(sim.identity.counters().get("ListGateways"), 2);
    let (_, text) = get(&server, "/probe?target=gw-0007", None).await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    server.shutdown().await;
}

/// Issue 16: one chunk of 100 refused by the batch call (400, 403 or 404) is asked gateway by
/// gateway, while the other chunks of the same cluster stay batched.
#[tokio::test]
async fn batch_chunk_refused_falls_back_to_single_calls_for_that_chunk_only() {
    let sim = sim(250, |o| o.clusters = vec!["eu1".into()]).await;
    let eu1 = sim.cluster("eu1").unwrap();
    for status in [400u16, 403, 404] {
        eu1.server.counters().reset();
        eu1.device.set_batch_refusal(Some(("gw-0152".into(), status)));
        let server = serve(config(&sim, &[]), USER_KEY).await;
        let text = metrics(&server).await;
        assert_eq!(value(&text, "ttn_up"), Some(1.0), "{status}: {text}");
        assert_eq!(eu1.server.counters().get(BATCH), 3, "{status}: three chunks of ≤ 100");
        assert_eq!(eu1.server.counters().get(SINGLE), 100, "{status}: only chunk 2 one by one");
        assert_eq!(count_series(&text, "ttn_gateway_connected"), 250, "{status}");
        assert!(has_gateway_series(&text, "ttn_gateway_uplinks_total", "gw-0152"), "{status}");
        assert_eq!(
            value(&text, "ttn_scrape_collector_success{collector=\"gateway_stats\"}"),
            Some(1.0),
            "{status}: {text}"
        );
        server.shutdown().await;
    }
    eu1.device.set_batch_refusal(None);

    // The real 404: a gateway deleted after the list was read. Its chunk falls back, the
    // deleted gateway's own 403 is its problem, not a refused key.
    let server = serve(config(&sim, &["--stats-ttl", "100ms"]), USER_KEY).await;
    metrics(&server).await;
    sim.world.remove_gateway("gw-0152").unwrap();
    eu1.server.counters().reset();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, trace) = get(&server, "/probe?target=*&debug=true", None).await;
    assert_eq!(eu1.server.counters().get(SINGLE), 100, "{trace}");
    assert!(trace.contains("gateway gw-0152"), "{trace}");
    assert!(trace.contains("up: 1"), "one gateway's 403 does not make the key refused: {trace}");
    assert!(!trace.contains("refused the key"), "{trace}");
    server.shutdown().await;
}

/// Issue 16: the exporter's accounting of its API calls per cluster, and the rate-limit
/// budget from the `X-Rate-Limit-*` headers.
#[tokio::test]
async fn api_health_per_cluster_and_rate_limit_budget() {
    let sim = sim(12, |o| o.rate_limit_per_min = Some(6)).await;
    let server = serve(config(&sim, &["--stats-ttl", "100ms"]), USER_KEY).await;
    let text = metrics(&server).await;
    let eu1 = "cluster=\"eu1.cloud.thethings.network\"";
    let series = |endpoint: &str, code: &str| {
        format!("ttn_api_requests_total{{{eu1},endpoint=\"{endpoint}\",code=\"{code}\"}}")
    };
    // The Identity Server is the --api-url host (a loopback address here).
    let list =
        "ttn_api_requests_total{cluster=\"127.0.0.1\",endpoint=\"ListGateways\",code=\"200\"}";
    assert_eq!(value(&text, list), Some(1.0), "{text}");
    assert_eq!(value(&text, &series("BatchGetGatewayConnectionStats", "200")), Some(1.0), "{text}");
    for c in ["nam1", "au1"] {
        let s = format!(
            "ttn_api_requests_total{{cluster=\"{c}.cloud.thethings.network\",endpoint=\"BatchGetGatewayConnectionStats\",code=\"200\"}}"
        );
        assert_eq!(value(&text, &s), Some(1.0), "{text}");
    }
    // One batch call on eu1: 5 of 6 left (the bucket refills 0.1 a second).
    let remaining = value(&text, &format!("ttn_api_rate_limit_remaining{{{eu1}}}")).unwrap();
    assert_eq!(remaining, 5.0, "{text}");
    assert_eq!(value(&text, &format!("ttn_api_rate_limit_limit{{{eu1}}}")), Some(6.0));
    assert!(text.contains("ttn_api_request_duration_seconds"), "{text}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let text = metrics(&server).await;
    assert_eq!(value(&text, &series("BatchGetGatewayConnectionStats", "200")), Some(2.0), "{text}");
    assert_eq!(value(&text, &format!("ttn_api_rate_limit_remaining{{{eu1}}}")), Some(4.0));
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "promtool: {findings}");
    }
    server.shutdown().await;
}

/// Every request any server of the simulator received.
fn all_requests(sim: &TtnSim) -> u64 {
    sim.identity.counters().total()
        + sim.clusters.iter().map(|c| c.server.counters().total()).sum::<u64>()
}

/// Issue 15: warm sequential scrapes within --stats-ttl and --gateways-refresh make no API
/// request at all (of any endpoint, on any server), for `/metrics` and for one gateway, while
/// every scrape still shows every gateway with the cached values.
#[tokio::test]
async fn warm_sequential_scrapes_within_the_ttl_make_no_request() {
    let sim = sim(12, |_| {}).await;
    let server =
        serve(config(&sim, &["--stats-ttl", "1h", "--gateways-refresh", "1h"]), USER_KEY).await;
    let first = metrics(&server).await;
    assert_eq!(value(&first, "ttn_up"), Some(1.0), "{first}");
    let cold = all_requests(&sim);
    assert_eq!(cold, 4, "a cold scrape: the list and one batch per cluster");
    for _ in 0..5 {
        let text = metrics(&server).await;
        assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
        assert_eq!(count_series(&text, "ttn_gateway_connected"), 12);
        let (status, one) = get(&server, "/probe?target=gw-0003", None).await;
        assert_eq!(status, 200);
        assert!(one.contains("ttn_gateway_connected{gateway_id=\"gw-0003\"} 1"), "{one}");
    }
    assert_eq!(all_requests(&sim), cold, "warm scrapes within the TTL made API requests");
    server.shutdown().await;
}
