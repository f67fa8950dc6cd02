//! The Things Stack response bodies: gateway list pages, single gateways, connection
//! statistics (single and batch), `auth_info` and error bodies, with the wire parsers for
//! durations, timestamps and u64-as-string; then the render of one gateway into a Scrape.
//! Seeds: `bins/ttn-exporter/tests/fixtures/*.json`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ttn_exporter::{
    api,
    client::{StatsReply, error_from},
    metrics::{self, GatewayView, StatsView},
    wire,
};
use uplink_fuzz::{check_exposition, scrape};

fuzz_target!(|body: &[u8]| {
    // Error bodies, with the status taken from the first byte (and a retry header on 429).
    let status = 400 + u16::from(body.first().copied().unwrap_or(0) % 200);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_bytes(body.get(..8).unwrap_or(body)) {
        headers.insert("x-rate-limit-retry", v);
    }
    let _ = error_from(status, &headers, body);
    let _ = error_from(429, &headers, body);
    let _ = ttn_exporter::client::retry_after(&headers);
    let _ = ttn_exporter::health::RateLimitHeaders::from_headers(&headers);

    if let Ok(text) = std::str::from_utf8(body) {
        let _ = wire::parse_duration_secs(text);
        let _ = wire::parse_u64(text);
        if let Ok(t) = wire::Timestamp::parse(text) {
            let _ = t.as_secs_f64();
            let _ = t.plausible();
        }
    }
    let _ = serde_json::from_slice::<api::AuthInfo>(body);

    let mut gateways = Vec::new();
    if let Ok(page) = serde_json::from_slice::<api::GatewaysPage>(body) {
        gateways.extend(page.gateways.into_iter().filter_map(|v| api::gateway_entry(v).ok()));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    if let Ok(g) = api::gateway(value.clone()) {
        gateways.push(g);
    }
    let mut replies = vec![StatsReply::NotConnected];
    if let Ok(stats) = api::connection_stats(value.clone()) {
        let _ = stats.connected();
        replies.push(StatsReply::Stats(Box::new(stats)));
    }
    if let Ok(batch) = serde_json::from_value::<api::BatchStats>(value) {
        for (_, entry) in batch.entries {
            if let Ok(stats) = api::connection_stats(entry) {
                replies.push(StatsReply::Stats(Box::new(stats)));
            }
        }
    }

    let mut out = scrape("ttn");
    metrics::list_age(&mut out, Duration::from_secs(3));
    for (i, reply) in replies.iter().enumerate() {
        let info = gateways.get(i % gateways.len().max(1));
        let id = info.map_or("gw-fuzz", |g| g.ids.gateway_id.as_str());
        for (tx_ack_known, expired) in [(false, false), (true, false), (true, true)] {
            let view = GatewayView {
                id,
                info,
                cluster: "eu1.cloud.thethings.network",
                stats: Some(StatsView {
                    reply,
                    age: Duration::from_millis(1500),
                    tx_ack_known,
                    expired,
                }),
                last_seen: None,
                expose_location: expired,
            };
            metrics::gateway(&mut out, &view);
        }
    }
    for g in &gateways {
        let view = GatewayView {
            id: &g.ids.gateway_id,
            info: Some(g),
            cluster: "x",
            stats: None,
            last_seen: None,
            expose_location: true,
        };
        metrics::gateway(&mut out, &view);
    }
    check_exposition(&out);
});
