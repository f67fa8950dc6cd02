//! Parse tests: every fixture of the spec (§2) and every JSON quirk (§1.7) into the typed
//! API structs and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use reqwest::header::{HeaderMap, HeaderValue};
use ttn_exporter::{
    api::{self, ConnectionStats},
    client::{ApiError, error_from, retry_after},
    wire::Timestamp,
};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stats(name: &str) -> ConnectionStats {
    api::connection_stats(serde_json::from_str(&fixture(name)).unwrap()).unwrap()
}

fn ts(s: &str) -> Option<Timestamp> {
    Some(Timestamp::parse(s).unwrap())
}

#[test]
fn gateway_list_page() {
    let text = fixture("list_page1.json");
    let page: api::GatewaysPage = serde_json::from_str(&text).unwrap();
    let gateways: Vec<api::Gateway> =
        page.gateways.into_iter().map(|g| api::gateway_entry(g).unwrap()).collect();
    assert_eq!(gateways.len(), 3);
    let attic = &gateways[0];
    assert_eq!(attic.ids.gateway_id, "attic-rak7248");
    assert_eq!(attic.ids.eui.as_deref(), Some("B827EBFFFE6C0F3A"));
    assert_eq!(attic.name.as_deref(), Some("Attic RAK7248"));
    assert!(attic.description.as_deref().unwrap().starts_with("Raspberry Pi"));
    let v = attic.version_ids.as_ref().unwrap();
    assert_eq!(
        (v.brand_id.as_deref(), v.model_id.as_deref()),
        (Some("rakwireless"), Some("rak7248"))
    );
    assert_eq!(v.hardware_version, None);
    assert_eq!(attic.gateway_server_address.as_deref(), Some("eu1.cloud.thethings.network"));
    assert_eq!(attic.frequency_plan_ids, ["EU_863_870_TTN"]);
    assert_eq!(attic.frequency_plan_id.as_deref(), Some("EU_863_870_TTN"));
    let antenna = &attic.antennas[0];
    assert_eq!(antenna.gain, Some(3.0));
    let loc = antenna.location.as_ref().unwrap();
    assert_eq!(
        (loc.latitude, loc.longitude, loc.altitude),
        (Some(52.09071), Some(5.12142), Some(21.0))
    );

    let ttig = &gateways[1];
    assert_eq!(ttig.description, None);
    assert_eq!(ttig.antennas[0].gain, None, "zero gain is omitted");
    assert_eq!(ttig.version_ids.as_ref().unwrap().firmware_version.as_deref(), Some("v1.0.5"));

    let farm = &gateways[2];
    assert_eq!(farm.name, None);
    assert_eq!(farm.gateway_server_address.as_deref(), Some("nam1.cloud.thethings.network"));
    assert_eq!(farm.antennas[0].gain, Some(2.5));
    assert_eq!(farm.antennas[0].location, None);

    // `{}` is an empty page; an entry without ids is refused on its own.
    let empty: api::GatewaysPage = serde_json::from_str("{}").unwrap();
    assert!(empty.gateways.is_empty());
    assert!(api::gateway(serde_json::json!({"name": "x"})).unwrap_err().contains("gateway_id"));
    let odd: api::GatewaysPage = serde_json::from_str(
        r#"{"gateways": [{"name": "x"}, {"ids": 5}, {"ids": {"gateway_id": "ok"}}]}"#,
    )
    .unwrap();
    let decoded: Vec<_> = odd.gateways.into_iter().map(api::gateway_entry).collect();
    assert!(decoded[0].as_ref().unwrap_err().contains("gateway_id"));
    assert!(decoded[1].as_ref().unwrap_err().contains("invalid type"), "{:?}", decoded[1]);
    assert_eq!(decoded[2].as_ref().unwrap().ids.gateway_id, "ok");
}

#[test]
fn connected_udp_gateway_every_field() {
    let s = stats("stats_udp.json");
    assert!(s.connected());
    assert_eq!(s.connected_at, ts("2024-10-28T07:12:44.318204117Z"));
    assert_eq!(s.connected_at.unwrap().nanos, 318_204_117);
    assert_eq!(s.disconnected_at, None);
    assert_eq!(s.protocol.as_deref(), Some("udp"));
    assert_eq!(s.last_status_received_at, ts("2024-10-28T09:41:05.902117386Z"));
    let status = s.last_status.as_ref().unwrap();
    assert_eq!(status.time, ts("2024-10-28T09:41:05Z"));
    assert_eq!(status.boot_time, ts("2024-10-20T03:02:11Z"));
    assert!(status.boot_time.unwrap().plausible().is_some());
    assert_eq!(status.versions["ttn-lw-gateway-server"], "3.32.1");
    let metrics: Vec<(&str, f64)> = status.metrics.iter().map(|(k, v)| (k, v.0)).collect();
    assert_eq!(
        metrics,
        [
            ("ackr", 100.0),
            ("rxfw", 4.0),
            ("rxin", 7.0),
            ("rxok", 4.0),
            ("temp", 41.5),
            ("txin", 1.0),
            ("txok", 1.0)
        ]
    );
    assert_eq!(s.last_uplink_received_at, ts("2024-10-28T09:41:31.477301922Z"));
    assert_eq!(s.uplink_count, Some(18342));
    assert_eq!(s.last_downlink_received_at, ts("2024-10-28T09:38:02.110934512Z"));
    assert_eq!(s.downlink_count, Some(211));
    assert_eq!(s.last_tx_acknowledgment_received_at, ts("2024-10-28T09:38:02.298811403Z"));
    assert_eq!(s.tx_acknowledgment_count, Some(209));
    let rtt = s.round_trip_times.as_ref().unwrap();
    assert_eq!(rtt.min, Some(0.041266381));
    assert_eq!(rtt.max, Some(0.187420502));
    assert_eq!(rtt.median, Some(0.058803412));
    assert_eq!(rtt.count, Some(20));
    assert_eq!(s.sub_bands.len(), 6);
    let band = &s.sub_bands[2];
    assert_eq!((band.min_frequency, band.max_frequency), (Some(868_000_000), Some(868_600_000)));
    assert_eq!(band.downlink_utilization_limit, Some(0.01));
    assert_eq!(band.downlink_utilization, Some(0.0021450617));
    assert_eq!(s.sub_bands[0].downlink_utilization, None, "zero utilization is omitted");
}

#[test]
fn basics_station_gateway_without_duty_cycle() {
    let s = stats("stats_lbs.json");
    assert!(s.connected());
    assert_eq!(s.protocol.as_deref(), Some("semtechws/lbslns"));
    let status = s.last_status.as_ref().unwrap();
    assert_eq!((status.time, status.boot_time), (None, None));
    assert!(status.metrics.is_empty());
    assert_eq!(status.versions["package"], "");
    assert_eq!(s.tx_acknowledgment_count, None);
    assert_eq!(s.last_tx_acknowledgment_received_at, None);
    assert_eq!(s.sub_bands.len(), 1);
    let band = &s.sub_bands[0];
    assert_eq!(band.min_frequency, None, "0 is omitted");
    assert_eq!(band.max_frequency, Some(u64::MAX));
    assert_eq!(band.downlink_utilization_limit, Some(1.0));
    assert_eq!(band.downlink_utilization, Some(0.000071413335));
    assert_eq!(s.round_trip_times.as_ref().unwrap().count, Some(3));
}

#[test]
fn minimal_and_disconnected_gateways() {
    let s = stats("stats_minimal.json");
    assert!(s.connected());
    assert_eq!(s.connected_at.unwrap().nanos, 118_000_000);
    assert_eq!((s.uplink_count, s.downlink_count, s.tx_acknowledgment_count), (None, None, None));
    assert_eq!((s.last_status.as_ref(), s.round_trip_times.as_ref()), (None, None));
    assert!(s.sub_bands.is_empty());

    let s = stats("stats_disconnected.json");
    assert!(!s.connected(), "200 with disconnected_at is not connected");
    assert_eq!(s.connected_at, None);
    assert_eq!(s.disconnected_at, ts("2024-10-28T10:02:19.004512877Z"));
    assert_eq!(s.uplink_count, Some(18397));
    assert_eq!(s.downlink_count, Some(211));
    assert_eq!(s.last_status.as_ref().unwrap().metrics["txok"].0, 0.0);
}

#[test]
fn quirks() {
    let s = stats("stats_quirks.json");
    assert!(!s.connected(), "both timestamps set (TTS < 3.17.2): not connected");
    assert_eq!(s.disconnected_at.unwrap().nanos, 500_000_000);
    assert_eq!(s.last_status_received_at.unwrap().nanos, 123_456_000);
    let status = s.last_status.as_ref().unwrap();
    assert_eq!(status.boot_time.unwrap().plausible(), None, "1970 boot time is unknown");
    assert!(status.metrics["rtt_ms"].0.is_nan());
    assert_eq!(status.metrics["temp"].0, f64::INFINITY);
    assert_eq!(status.metrics["rxin"].0, 5e-7);
    assert_eq!(status.metrics["load_1"].0, 0.0);
    assert_eq!(s.uplink_count, Some(42), "a number is accepted too");
    assert_eq!(s.downlink_count, Some(0));
    let rtt = s.round_trip_times.as_ref().unwrap();
    assert_eq!((rtt.min, rtt.max, rtt.median), (Some(0.0588), Some(1.0), Some(0.1)));
    assert_eq!(s.sub_bands[0].max_frequency, Some(u64::MAX));

    // Bad values are errors naming what was wrong, never a made-up value.
    for (body, expected) in [
        (r#"{"connected_at": "yesterday"}"#, "invalid timestamp \"yesterday\""),
        (r#"{"uplink_count": "12a"}"#, "invalid 64-bit count \"12a\""),
        (r#"{"uplink_count": "18446744073709551616"}"#, "out of range"),
        (r#"{"round_trip_times": {"min": "58ms"}}"#, "invalid duration \"58ms\""),
        (r#"{"sub_bands": [{"downlink_utilization": "lots"}]}"#, "invalid float \"lots\""),
        (r#"{"protocol": 7}"#, "invalid type"),
    ] {
        let err = api::connection_stats(serde_json::from_str(body).unwrap()).unwrap_err();
        assert!(err.contains(expected), "{body}: {err}");
    }
}

#[test]
fn batch_entries() {
    let batch: api::BatchStats = serde_json::from_str(&fixture("batch.json")).unwrap();
    let ids: Vec<&String> = batch.entries.keys().collect();
    assert_eq!(ids, ["attic-rak7248", "eui-58a0cbfffe801234"]);
    let attic = api::connection_stats(batch.entries["attic-rak7248"].clone()).unwrap();
    assert!(attic.connected());
    assert_eq!(attic.uplink_count, Some(18342));
    let ttig = api::connection_stats(batch.entries["eui-58a0cbfffe801234"].clone()).unwrap();
    assert!(!ttig.connected());
    assert_eq!(ttig.uplink_count, Some(977));
    let empty: api::BatchStats = serde_json::from_str("{}").unwrap();
    assert!(empty.entries.is_empty());
}

#[test]
fn error_bodies() {
    let none = HeaderMap::new();
    let not_connected = error_from(404, &none, fixture("not_connected.json").as_bytes());
    assert!(not_connected.is_not_connected());
    assert!(!not_connected.is_missing_endpoint() && !not_connected.is_auth());
    assert_eq!(not_connected.name(), Some("pkg/gatewayserver:not_connected"));

    let unauthorized = error_from(401, &none, fixture("unauthorized.json").as_bytes());
    assert!(unauthorized.is_auth());
    assert_eq!(unauthorized.name(), Some("pkg/identityserver:api_key_not_found"));
    assert_eq!(
        unauthorized.to_string(),
        "HTTP 401 pkg/identityserver:api_key_not_found: error:pkg/identityserver:api_key_not_found (API key not found)"
    );
    let forbidden = error_from(403, &none, fixture("forbidden.json").as_bytes());
    assert!(forbidden.is_auth());
    assert_eq!(forbidden.name(), Some("pkg/auth/rights:insufficient_gateway_rights"));

    let mut headers = HeaderMap::new();
    headers.insert("x-rate-limit-retry", HeaderValue::from_static("3"));
    let limited = error_from(429, &headers, fixture("rate_limited.json").as_bytes());
    assert_eq!(limited.name(), Some("pkg/ratelimit:rate_limit_exceeded"));
    assert!(matches!(limited, ApiError::Status { retry_after: Some(d), .. } if d.as_secs() == 3));
    let mut alt = HeaderMap::new();
    alt.insert("X-Ratelimit-Retry", HeaderValue::from_static("0"));
    assert_eq!(retry_after(&alt).map(|d| d.as_secs()), Some(0));

    // An older server without the batch route: grpc-gateway's 404, or 501/405.
    let missing = error_from(404, &none, br#"{"code":5,"message":"Not Found","details":[]}"#);
    assert!(missing.is_missing_endpoint() && !missing.is_not_connected());
    assert!(
        error_from(501, &none, br#"{"code":12,"message":"Not Implemented"}"#).is_missing_endpoint()
    );
    assert!(error_from(405, &none, b"").is_missing_endpoint());
    let unknown_ids = error_from(
        404,
        &none,
        br#"{"code":5,"details":[{"namespace":"pkg/identityserver","name":"some_gateways_not_found"}]}"#,
    );
    assert!(!unknown_ids.is_missing_endpoint());
    // A body that is not the error shape still gives a readable error.
    let garbage = error_from(502, &none, b"<html>bad gateway</html>");
    assert_eq!(garbage.to_string(), "HTTP 502: <html>bad gateway</html>");
}
