//! LinkHub JSON-RPC response bodies: the exporter's reply classification and decoding
//! (`client::decode`) for every method it calls, then the render functions into a Scrape.
//! Seeds: `bins/linkhub-exporter/tests/fixtures/*.json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linkhub_exporter::{
    api::{
        Battery, BatteryState, ConnectionState, LoginResult, LoginState, NetworkInfo, SimStatus,
        SystemInfo, SystemStatus, UsageRecord,
    },
    client::decode,
    metrics,
};
use uplink_fuzz::{check_exposition, scrape};

fuzz_target!(|body: &[u8]| {
    for expose in [false, true] {
        let mut out = scrape("linkhub");
        if let Ok(it) = decode::<SystemInfo>("GetSystemInfo", body) {
            metrics::system_info(&mut out, &it, expose);
        }
        let status = decode::<SystemStatus>("GetSystemStatus", body).ok();
        if let Some(it) = &status {
            metrics::system_status(&mut out, it);
            if let Some(b) = Battery::from_status(it) {
                metrics::battery(&mut out, &b);
            }
        }
        if let Ok(it) = decode::<NetworkInfo>("GetNetworkInfo", body) {
            metrics::network(&mut out, &it);
        }
        if let Ok(it) = decode::<ConnectionState>("GetConnectionState", body) {
            metrics::connection(&mut out, &it, expose);
        }
        if let Ok(it) = decode::<UsageRecord>("GetUsageRecord", body) {
            metrics::usage(&mut out, &it);
        }
        if let Ok(it) = decode::<SimStatus>("GetSimStatus", body) {
            metrics::sim(&mut out, &it);
        }
        if let Ok(state) = decode::<BatteryState>("GetBatteryState", body) {
            let b = Battery::from_state(&state, status.as_ref());
            metrics::battery(&mut out, &b);
        }
        let _ = decode::<LoginState>("GetLoginState", body);
        let _ = decode::<LoginResult>("Login", body);
        check_exposition(&out);
    }
});
