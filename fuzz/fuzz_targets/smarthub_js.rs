//! Smart Hub 2 JavaScript pages (`cgi_basicMyDevice.js`, `cgi_owl.js`): the Rust decoding of
//! plain data pages, evaluation in the rquickjs sandbox with small limits (2 MiB, 50 ms, so one
//! run stays short), extraction of the device list, rates, mesh nodes and stations, and their
//! render. Whenever the decoder takes a page, QuickJS must read exactly the same lists from it
//! (unless it hits one of those small limits).
//! Seeds: `bins/smarthub-exporter/tests/fixtures/cgi_*.js`.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smarthub_exporter::{
    DEVICE_EXTRACTS, MESH_EXTRACTS, devices_from_js,
    js::{self, ByteSize, JsLimits},
    mesh_from_js,
    metrics::{self, LanSelection},
};
use uplink_fuzz::{check_exposition, scrape};

const LIMITS: JsLimits = JsLimits { memory: ByteSize(2 << 20), timeout: Duration::from_millis(50) };

fuzz_target!(|body: &[u8]| {
    let text = String::from_utf8_lossy(body);
    let deadline = Instant::now() + Duration::from_millis(100);
    let mut out = scrape("smarthub");
    if let Ok(list) = devices_from_js(&text, LIMITS, deadline) {
        metrics::devices(&mut out, &list, LanSelection { include_inactive: true, max: 64 });
    }
    if let Ok(mesh) = mesh_from_js(&text, LIMITS, deadline) {
        metrics::mesh(&mut out, &mesh, LanSelection { include_inactive: true, max: 64 });
    }
    check_exposition(&out);
    for extracts in [DEVICE_EXTRACTS, MESH_EXTRACTS] {
        if let Some(decoded) = js::decode(&text, extracts)
            && let Ok(evaluated) = js::evaluate(&text, extracts, LIMITS, deadline)
        {
            assert_eq!(decoded, evaluated, "the decoder and QuickJS disagree");
        }
    }
});
