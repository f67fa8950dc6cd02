//! Issue 16, the hub's static facts end to end: firmware, serial number (only with
//! `--expose-identifiers`) and boot time from `cgi_basicStatus.js`, read once per
//! `--static-ttl` or again when `wan_conn.xml` shows the hub restarted, shown on every scrape.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use common::{collector, rig, value};
use device_sim::{
    http::HttpDevice as _,
    smarthub::{DEVICES_PATH, OWL_PATH, Profile, STATUS_PATH, WAN_PATH},
};
use smarthub_exporter::Flags;

fn flags(args: &[&str]) -> Flags {
    Flags::from_args(&["smarthub-exporter"], args).unwrap()
}

const INFO: &str = "smarthub_info{firmware=\"v0.37.00.00000-BT (Tue Mar  5 10:11:12 2024)\",firmware_update_time=\"2024/03/19 03:12:44\"}";

fn all_requests(rig: &common::Rig) -> u64 {
    [WAN_PATH, DEVICES_PATH, OWL_PATH, STATUS_PATH].iter().map(|p| rig.requests(p)).sum()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test]
async fn facts_are_read_once_and_shown_on_every_scrape() {
    let rig = rig(Profile::Vdsl, flags(&[])).await;
    let (_, first) = rig.probe(None).await;
    assert_eq!(collector(&first, "status"), Some(1.0), "{first}");
    assert_eq!(value(&first, INFO), Some(1.0), "{first}");
    assert!(!first.contains("serial=\""), "the serial number is an identifier: {first}");
    let boot = value(&first, "smarthub_boot_time_seconds").unwrap();
    let expected = now() - 1_209_733.0;
    assert!((boot - expected).abs() < 10.0, "boot {boot}, expected about {expected}");
    assert!(first.contains("# HELP smarthub_info") && first.contains("cached"), "{first}");
    assert_eq!(rig.requests(STATUS_PATH), 1);
    for _ in 0..3 {
        let before = all_requests(&rig);
        let (_, warm) = rig.probe(None).await;
        assert!(all_requests(&rig) - before <= 3, "a warm scrape makes at most 3 hub requests");
        assert_eq!(value(&warm, INFO), Some(1.0), "cached facts on every scrape: {warm}");
        assert_eq!(value(&warm, "smarthub_boot_time_seconds"), Some(boot), "{warm}");
        assert_eq!(collector(&warm, "status"), None, "not read this time: {warm}");
        assert_eq!(value(&warm, "smarthub_up"), Some(1.0), "{warm}");
    }
    assert_eq!(rig.requests(STATUS_PATH), 1);
    if let Some(findings) = exporter_core::testing::promtool_check_metrics(&first) {
        assert!(findings.is_empty(), "promtool: {findings}");
    }
}

#[tokio::test]
async fn the_serial_number_needs_expose_identifiers() {
    let rig = rig(Profile::Fttp, flags(&["--expose-identifiers"])).await;
    let (_, text) = rig.probe(None).await;
    assert!(text.contains("serial=\"+068341+NQ00000000\""), "{text}");
}

#[tokio::test]
async fn a_restarted_hub_is_read_again_at_once() {
    let rig = rig(Profile::Vdsl, flags(&[])).await;
    let (_, first) = rig.probe(None).await;
    let boot = value(&first, "smarthub_boot_time_seconds").unwrap();
    rig.hub.control("firmware", "v0.38.01.00001-BT").unwrap();
    rig.hub.control("reboot", "").unwrap();
    let (_, after) = rig.probe(None).await;
    assert_eq!(rig.requests(STATUS_PATH), 2, "the restart is seen in wan_conn.xml's sysuptime");
    assert_eq!(collector(&after, "status"), Some(1.0), "{after}");
    assert!(after.contains("firmware=\"v0.38.01.00001-BT\""), "{after}");
    let new_boot = value(&after, "smarthub_boot_time_seconds").unwrap();
    assert!(new_boot > boot + 1_000_000.0, "{boot} then {new_boot}");
    assert!((new_boot - (now() - 120.0)).abs() < 10.0, "{new_boot}");
    let (_, again) = rig.probe(None).await;
    assert_eq!(rig.requests(STATUS_PATH), 2, "and then cached again: {again}");
}

#[tokio::test]
async fn the_facts_are_read_again_after_the_ttl() {
    let rig = rig(Profile::Vdsl, flags(&["--static-ttl", "1s"])).await;
    rig.probe(None).await;
    rig.probe(None).await;
    assert_eq!(rig.requests(STATUS_PATH), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, text) = rig.probe(None).await;
    assert_eq!(rig.requests(STATUS_PATH), 2);
    assert_eq!(collector(&text, "status"), Some(1.0), "{text}");
}

#[tokio::test]
async fn a_hub_without_the_page_fails_the_collector_but_nothing_else() {
    let rig = rig(Profile::Vdsl, flags(&[])).await;
    rig.hub.control("status", "missing").unwrap();
    let (_, text) = rig.probe(None).await;
    assert_eq!(value(&text, "smarthub_up"), Some(1.0), "{text}");
    assert_eq!(collector(&text, "status"), Some(0.0), "{text}");
    assert_eq!(collector(&text, "wan"), Some(1.0), "{text}");
    assert!(!text.contains("smarthub_info{"), "no made-up facts: {text}");
    assert!(!text.contains("smarthub_boot_time_seconds"), "{text}");
    // Not asked again on every scrape; the failure stays visible meanwhile.
    let (_, text) = rig.probe(None).await;
    assert_eq!(rig.requests(STATUS_PATH), 1);
    assert_eq!(collector(&text, "status"), Some(0.0), "{text}");
    let trace = rig.trace().await;
    assert!(trace.contains("cgi_basicStatus.js") && trace.contains("404"), "{trace}");
}

#[tokio::test]
async fn an_html_page_is_no_facts() {
    let rig = rig(Profile::Vdsl, flags(&[])).await;
    rig.hub.control("status", "html").unwrap();
    let (_, text) = rig.probe(None).await;
    assert_eq!(collector(&text, "status"), Some(0.0), "{text}");
    assert!(!text.contains("smarthub_info{"), "{text}");
}

#[tokio::test]
async fn the_debug_trace_names_the_cached_values_and_their_age() {
    let rig = rig(Profile::Vdsl, flags(&[])).await;
    let first = rig.trace().await;
    assert!(first.contains("collector status succeeded"), "{first}");
    assert!(!first.contains("from the cache"), "read this time: {first}");
    let warm = rig.trace().await;
    assert_eq!(rig.requests(STATUS_PATH), 1, "{warm}");
    let line = warm
        .lines()
        .find(|l| l.contains("status: not read this scrape; from the cache of cgi_basicStatus.js"))
        .unwrap_or_else(|| panic!("no cache line: {warm}"));
    assert!(line.contains("s ago (--static-ttl 10m)"), "{line}");
    assert!(line.contains("firmware \"v0.37.00.00000-BT (Tue Mar  5 10:11:12 2024)\""), "{line}");
    assert!(line.contains("firmware_update_time \"2024/03/19 03:12:44\""), "{line}");
    assert!(line.contains("boot time "), "{line}");
    assert!(line.contains("serial (not shown)") && !warm.contains("NQ00000000"), "{line}");
    assert!(warm.contains("fact firmware: v0.37.00.00000-BT"), "{warm}");
}
