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
    cache::LastSeen,
    client::StatsReply,
    health::{ApiHealth, Code, Endpoint, RateLimitHeaders},
    metrics::{self, GatewayView, StatsView},
    wire::Timestamp,
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
    let text = fixture("list_page1.json").to_string();
    let page: api::GatewaysPage = serde_json::from_str(&text).unwrap();
    let infos: Vec<api::Gateway> =
        page.gateways.into_iter().map(|g| api::gateway_entry(g).unwrap()).collect();
    let udp = stats("stats_udp.json");
    let disconnected = stats("stats_disconnected.json");
    let lbs = stats("stats_lbs.json");
    let minimal = stats("stats_minimal.json");
    let quirks = stats("stats_quirks.json");
    let not_connected = StatsReply::NotConnected;
    let t = |s: &str| Some(Timestamp::parse(s).unwrap());
    let remembered =
        LastSeen { status: t("2024-10-25T11:00:05.5Z"), uplink: t("2024-10-25T11:02:41.25Z") };
    let older = LastSeen { status: None, uplink: t("2024-10-01T00:00:00Z") };
    let view = |reply, secs: f64, tx_ack_known| {
        Some(StatsView { reply, age: Duration::from_secs_f64(secs), tx_ack_known, expired: false })
    };
    let eu1 = "eu1.cloud.thethings.network";
    let nam1 = "nam1.cloud.thethings.network";
    let gateways = [
        GatewayView {
            id: "attic-rak7248",
            info: Some(&infos[0]),
            cluster: eu1,
            stats: view(&udp, 12.5, true),
            last_seen: None,
            expose_location: true,
        },
        GatewayView {
            id: "eui-58a0cbfffe801234",
            info: Some(&infos[1]),
            cluster: eu1,
            stats: view(&disconnected, 0.0, true),
            last_seen: None,
            expose_location: true,
        },
        GatewayView {
            id: "farm-kerlink-us",
            info: Some(&infos[2]),
            cluster: nam1,
            stats: view(&not_connected, 3.0, true),
            // Gone for more than 48 h: the Gateway Server forgot, the exporter did not.
            last_seen: Some(&remembered),
            expose_location: true,
        },
        GatewayView {
            id: "lbs-station",
            info: None,
            cluster: eu1,
            stats: view(&lbs, 1.0, true),
            // An older uplink remembered: the newer one of the statistics wins.
            last_seen: Some(&older),
            expose_location: true,
        },
        GatewayView {
            id: "just-connected",
            info: None,
            cluster: eu1,
            stats: view(&minimal, 1.0, true),
            // Reconnected: the statistics have no uplink yet, the memory has.
            last_seen: Some(&remembered),
            expose_location: true,
        },
        GatewayView {
            id: "old-server",
            info: None,
            cluster: nam1,
            stats: view(&quirks, 1.0, false),
            last_seen: None,
            expose_location: true,
        },
        GatewayView {
            id: "no-stats-yet",
            info: Some(&infos[0]),
            cluster: eu1,
            stats: None,
            last_seen: None,
            expose_location: true,
        },
        GatewayView {
            id: "stale-stats",
            info: None,
            cluster: eu1,
            // Older than --stats-ttl + --stats-max-stale: only the age, the protocol and the
            // remembered times stay.
            stats: Some(StatsView {
                reply: &udp,
                age: Duration::from_secs(400),
                tx_ack_known: true,
                expired: true,
            }),
            last_seen: Some(&remembered),
            expose_location: true,
        },
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
                expired: false,
            }),
            last_seen: None,
            expose_location: false,
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
                expired: false,
            }),
            last_seen: None,
            expose_location: false,
        },
    );
    let text = out.encode();
    assert!(text.contains("ttn_gateway_connected{gateway_id=\"g2\"} 0\n"), "{text}");
    assert!(!text.contains("_total"), "404 not_connected has no counters: {text}");
    assert_golden(golden("not_connected.prom"), &text);
    check(&text);
}

#[test]
fn antenna_locations_only_with_expose_location() {
    let text = fixture("list_page1.json").to_string();
    let page: api::GatewaysPage = serde_json::from_str(&text).unwrap();
    let attic = api::gateway_entry(page.gateways[0]).unwrap();
    let mut gw = GatewayView {
        id: "attic-rak7248",
        info: Some(&attic),
        cluster: "eu1.cloud.thethings.network",
        stats: None,
        last_seen: None,
        expose_location: false,
    };
    let mut out = scrape();
    metrics::gateway(&mut out, &gw);
    let text = out.encode();
    assert!(text.contains("ttn_gateway_info{"), "{text}");
    assert!(!text.contains("antenna"), "personal data without --expose-location: {text}");
    gw.expose_location = true;
    let mut out = scrape();
    metrics::gateway(&mut out, &gw);
    let text = out.encode();
    assert!(
        text.contains(
            "ttn_gateway_antenna_latitude_degrees{gateway_id=\"attic-rak7248\",antenna=\"0\"} 52.09071\n"
        ),
        "{text}"
    );
    assert!(text.contains("ttn_gateway_antenna_altitude_meters{"), "{text}");
}

#[test]
fn expired_statistics_are_absent_but_info_age_and_memory_stay() {
    let udp = stats("stats_udp.json");
    let remembered =
        LastSeen { status: None, uplink: Some(Timestamp::parse("2024-10-25T11:02:41Z").unwrap()) };
    let view = |expired| GatewayView {
        id: "g1",
        info: None,
        cluster: "c",
        stats: Some(StatsView {
            reply: &udp,
            age: Duration::from_secs(331),
            tx_ack_known: true,
            expired,
        }),
        last_seen: Some(&remembered),
        expose_location: false,
    };
    let mut out = scrape();
    metrics::gateway(&mut out, &view(false));
    let fresh = out.encode();
    assert!(fresh.contains("ttn_gateway_connected{gateway_id=\"g1\"} 1\n"), "{fresh}");
    let mut out = scrape();
    metrics::gateway(&mut out, &view(true));
    let text = out.encode();
    for gone in ["ttn_gateway_connected{", "ttn_gateway_uplinks_total{", "round_trip", "sub_band"] {
        assert!(!text.contains(gone), "{gone} after --stats-max-stale: {text}");
    }
    assert!(text.contains("ttn_gateway_info{gateway_id=\"g1\""), "{text}");
    assert!(text.contains("protocol=\"udp\""), "the info series does not change: {text}");
    assert!(text.contains("ttn_gateway_stats_age_seconds{gateway_id=\"g1\"} 331\n"), "{text}");
    // The statistics' newer uplink is not served any more; the remembered one is.
    assert!(
        text.contains("ttn_gateway_last_uplink_timestamp_seconds{gateway_id=\"g1\"} 1729854161\n"),
        "{text}"
    );
}

#[test]
fn api_health() {
    let health = ApiHealth::default();
    let eu1 = "eu1.cloud.thethings.network";
    let nam1 = "nam1.cloud.thethings.network";
    let ms = Duration::from_millis;
    let limited = RateLimitHeaders { limit: Some(60), available: Some(57), reset: Some(3) };
    health.record(eu1, Endpoint::ListGateways, Code::Status(200), ms(120), None);
    health.record(eu1, Endpoint::BatchStats, Code::Status(200), ms(40), Some(limited));
    health.record(eu1, Endpoint::BatchStats, Code::Status(200), ms(60), Some(limited));
    health.record(nam1, Endpoint::BatchStats, Code::Status(429), ms(10), None);
    health.record(nam1, Endpoint::GatewayStats, Code::NoAnswer, ms(20_000), None);
    let mut out = scrape();
    metrics::api_health(&mut out, &health.snapshot());
    let text = out.encode();
    assert_golden(golden("api_health.prom"), &text);
    check(&text);
}
