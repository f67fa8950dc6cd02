//! The HTTP server's own parsing of a request: the request target (path and query, with the
//! percent-decoding of `target=`), the `X-Prometheus-Scrape-Timeout-Seconds` and
//! `Accept-Encoding` headers, and every exporter's `?target=` parser.
//!
//! Input: `request-target \n timeout-header \n accept-encoding`.
//! Invariants: the scrape budget never exceeds `--scrape-timeout` (10 s here), and a target
//! that parses prints as a string that parses again to the same string (the single-flight
//! key and the landing page rely on it).
#![no_main]

use std::{fmt::Display, str::FromStr, time::Duration};

use libfuzzer_sys::fuzz_target;

fn round_trip<T: FromStr + Display>(raw: &str) {
    if let Ok(t) = raw.parse::<T>() {
        let shown = t.to_string();
        match shown.parse::<T>() {
            Ok(again) => assert_eq!(again.to_string(), shown, "target {raw:?} is not stable"),
            Err(_) => panic!("target {raw:?} prints as {shown:?}, which does not parse"),
        }
    }
}

fuzz_target!(|body: &[u8]| {
    let mut parts = body.splitn(3, |&b| b == b'\n');
    let target = parts.next().unwrap_or_default();
    let timeout = parts.next().map(String::from_utf8_lossy);
    let accept = parts.next().map(String::from_utf8_lossy).unwrap_or_default();
    let Some(req) = exporter_core::fuzzing::request(target, timeout.as_deref(), &accept) else {
        return;
    };
    assert!(req.budget <= Duration::from_secs(10), "budget {:?}", req.budget);
    let Ok(params) = req.query else { return };
    for (key, value) in &params {
        if key == "target" {
            round_trip::<linkhub_exporter::Target>(value);
            round_trip::<ttn_exporter::Target>(value);
            round_trip::<smarthub_exporter::client::HubUrl>(value);
            round_trip::<mm_exporter::Target>(value);
        }
    }
});
