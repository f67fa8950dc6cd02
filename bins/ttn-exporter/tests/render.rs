//! Render tests: fixtures through the pure render functions, compared with golden
//! exposition files (`UPDATE_GOLDEN=1` rewrites them) and checked with promtool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use exporter_core::{
    Scrape,
    testing::{assert_golden, promtool_check_metrics},
};
use ttn_exporter::{
    api,
    client::StatsReply,
    metrics::{self, GatewayView, StatsView},
};

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn stats(name: &str) -> StatsReply {
    StatsReply::Stats(Box::new(api::connection_stats(fixture(name)).unwrap()))
}

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn scrape() -> Scrape {
    Scrape::new("ttn", "*", Instant::now() + Duration::from_secs(10))
}

fn check(text: &str) {
    if let Some(findings) = promtool_check_metrics(text) {
        assert!(findings.is_empty(), "promtool: {findings}\n{text}");
    }
}

#[test]
fn every_gateway_kind() {
    let page: api::GatewaysPage = serde_json::from_value(fixture("list_page1.json")).unwrap();
    let infos: Vec<api::Gateway> =
        page.gateways.into_iter().map(|g| api::gateway(g).unwrap()).collect();
    let udp = stats("stats_udp.json");
    let disconnected = stats("stats_disconnected.json");
    let lbs = stats("stats_lbs.json");
    let minimal = stats("stats_minimal.json");
    let quirks = stats("stats_quirks.json");
    let not_connected = StatsReply::NotConnected;
    let view = |reply, secs: f64, tx_ack_known| {
        Some(StatsView { reply, age: Duration::from_secs_f64(secs), tx_ack_known })
    };
    let eu1 = "eu1.cloud.thethings.network";
    let nam1 = "nam1.cloud.thethings.network";
    let gateways = [
        GatewayView {
            id: "attic-rak7248",
            info: Some(&infos[0]),
            cluster: eu1,
            stats: view(&udp, 12.5, true),
        },
        GatewayView {
            id: "eui-58a0cbfffe801234",
            info: Some(&infos[1]),
            cluster: eu1,
            stats: view(&disconnected, 0.0, true),
        },
        GatewayView {
            id: "farm-kerlink-us",
            info: Some(&infos[2]),
            cluster: nam1,
            stats: view(&not_connected, 3.0, true),
        },
        GatewayView { id: "lbs-station", info: None, cluster: eu1, stats: view(&lbs, 1.0, true) },
        GatewayView {
            id: "just-connected",
            info: None,
            cluster: eu1,
            stats: view(&minimal, 1.0, true),
        },
        GatewayView {
            id: "old-server",
            info: None,
            cluster: nam1,
            stats: view(&quirks, 1.0, false),
        },
        GatewayView { id: "no-stats-yet", info: Some(&infos[0]), cluster: eu1, stats: None },
    ];
    let mut out = scrape();
    for gw in &gateways {
        metrics::gateway(&mut out, gw);
    }
    metrics::list_age(&mut out, Duration::from_secs(42));
    let text = out.encode();
    assert_golden(golden("gateways.prom"), &text);
    check(&text);
}

#[test]
fn semantics_in_the_output() {
    let disconnected = stats("stats_disconnected.json");
    let mut out = scrape();
    metrics::gateway(
        &mut out,
        &GatewayView {
            id: "g1",
            info: None,
            cluster: "c",
            stats: Some(StatsView {
                reply: &disconnected,
                age: Duration::ZERO,
                tx_ack_known: true,
            }),
        },
    );
    let text = out.encode();
    // The 48 h window: not connected, counters frozen but exported.
    assert!(text.contains("ttn_gateway_connected{gateway_id=\"g1\"} 0\n"), "{text}");
    assert!(text.contains("ttn_gateway_uplinks_total{gateway_id=\"g1\"} 18397\n"), "{text}");
    assert!(!text.contains("ttn_gateway_connected_timestamp_seconds"), "{text}");
    // An omitted count in a statistics body is a real 0 ...
    assert!(text.contains("ttn_gateway_tx_acknowledgments_total{gateway_id=\"g1\"} 0\n"), "{text}");
    // ... but what was never reported is absent.
    assert!(!text.contains("round_trip"), "{text}");
    assert!(!text.contains("sub_band"), "{text}");
    assert!(!text.contains("boot_timestamp"), "{text}");

    let not_connected = StatsReply::NotConnected;
    let mut out = scrape();
    metrics::gateway(
        &mut out,
        &GatewayView {
            id: "g2",
            info: None,
            cluster: "c",
            stats: Some(StatsView {
                reply: &not_connected,
                age: Duration::ZERO,
                tx_ack_known: true,
            }),
        },
    );
    let text = out.encode();
    assert!(text.contains("ttn_gateway_connected{gateway_id=\"g2\"} 0\n"), "{text}");
    assert!(!text.contains("_total"), "404 not_connected has no counters: {text}");
    assert_golden(golden("not_connected.prom"), &text);
    check(&text);
}
