//! Smart Hub 2 `wan_conn.xml`: the XML parse (slots, session, volumes, DSL line) and its
//! render, plus the small value parsers the JavaScript pages share (`%`-decoding, JS literals,
//! link rates) and the literal-only read of `cgi_basicStatus.js` with its render. Seeds:
//! `bins/smarthub-exporter/tests/fixtures/wan_conn_*.xml`, `cgi_basicStatus.js`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smarthub_exporter::{api, client::html_kind, metrics};
use uplink_fuzz::{check_exposition, scrape};

fuzz_target!(|body: &[u8]| {
    // The client turns the body into text the same way (lossy) before parsing.
    let text = String::from_utf8_lossy(body);
    let _ = html_kind(&text);
    let _ = api::decode(&text);
    let _ = api::parse_js_literal(&text);
    let _ = api::parse_link_rate(&text);
    if let Ok(status) = api::parse_basic_status(&text) {
        let mut out = scrape("smarthub");
        let facts = metrics::HubFacts { status: &status, boot_time: Some(1.0), age_seconds: 0.0 };
        metrics::hub_facts(&mut out, &facts, true);
        check_exposition(&out);
    }
    if let Ok(wan) = api::parse_wan_xml(&text) {
        let mut out = scrape("smarthub");
        metrics::wan(&mut out, &wan);
        let _ = metrics::slot_type(wan.slot);
        check_exposition(&out);
    }
});
