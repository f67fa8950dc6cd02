//! End to end: the exporter served by exporter-core, scraping device-sim's Smart Hub over
//! loopback. Slot choice, WAN down, devices that leave, login pages, 403s, `--no-lan-devices`,
//! a hung hub and single flight.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{collector, rig, value};
use device_sim::{
    http::{Fault, HttpDevice as _},
    smarthub::{DEVICES_PATH, OWL_PATH, Profile, STATUS_PATH, WAN_PATH},
};
use exporter_core::{Exporter as _, Scrape};
use smarthub_exporter::{Flags, INFO, LanDevices, Smarthub};

#[tokio::test]
async fn vdsl_reports_the_slot_1_link_connected_with_its_rates() {
    // Every remembered device, so the inactive one with the trickiest name is listed too.
    let flags = Flags { lan_devices: Some(LanDevices::All), ..Flags::default() };
    let rig = rig(Profile::Vdsl, flags).await;
    let (_, text) = rig.probe(None).await;
    assert_eq!(value(&text, "smarthub_up"), Some(1.0), "{text}");
    for c in ["wan", "devices", "mesh"] {
        assert_eq!(collector(&text, c), Some(1.0), "{c}: {text}");
    }
    assert_eq!(value(&text, "smarthub_wan_connected"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "smarthub_wan_download_rate_bytes_per_second"),
        Some(79_987_000.0 / 8.0)
    );
    assert_eq!(value(&text, "smarthub_wan_upload_rate_bytes_per_second"), Some(19_999_000.0 / 8.0));
    assert!(
        text.contains("smarthub_wan_info{slot=\"1\",type=\"vdsl\",slot_source=\"wan_active_idx\""),
        "{text}"
    );
    assert_eq!(value(&text, "smarthub_dsl_snr_margin_db{direction=\"downstream\"}"), Some(6.2));
    let uptime = value(&text, "smarthub_uptime_seconds").unwrap();
    assert_eq!(value(&text, "smarthub_wan_connection_uptime_seconds"), Some(uptime - 96.0));
    assert_eq!(value(&text, "smarthub_lan_devices{state=\"known\"}"), Some(6.0));
    assert!(
        text.contains(r#"smarthub_lan_device_info{mac="AA:BB:CC:00:00:04",hostname="Zoë-laptop",ip="192.168.1.90",name="Kids \"Den\" TV\\1""#),
        "{text}"
    );
    assert!(text.contains(r#"hostname="android%thingy""#), "{text}");
    assert!(text.contains(r#"name="100% plug""#), "{text}");
    assert!(!text.contains("\nup "), "never a bare up");
    if let Some(findings) = exporter_core::testing::promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "promtool: {findings}");
    }
}

#[tokio::test]
async fn counters_grow_between_scrapes() {
    let rig = rig(Profile::Fttp, Flags::default()).await;
    let series = "smarthub_lan_device_upload_bytes_total{mac=\"AA:BB:CC:00:00:01\",hostname=\"nas-01\",ip=\"192.168.1.64\"}";
    let (_, a) = rig.probe(None).await;
    let (_, b) = rig.probe(None).await;
    assert!(value(&b, series).unwrap() > value(&a, series).unwrap());
    assert!(
        value(&b, "smarthub_wan_download_bytes_total").unwrap()
            > value(&a, "smarthub_wan_download_bytes_total").unwrap()
    );
    assert!(b.contains("smarthub_wan_info{slot=\"0\",type=\"ethernet\""), "{b}");
    assert!(!b.contains("smarthub_dsl_"), "{b}");
}

#[tokio::test]
async fn wan_down_reports_0_and_no_made_up_uptime() {
    let rig = rig(Profile::Down, Flags::default()).await;
    let (_, text) = rig.probe(None).await;
    assert_eq!(collector(&text, "wan"), Some(1.0), "{text}");
    assert_eq!(value(&text, "smarthub_wan_connected"), Some(0.0), "{text}");
    assert!(value(&text, "smarthub_uptime_seconds").is_some());
    assert!(!text.contains("smarthub_wan_connection_uptime_seconds"), "{text}");
    assert!(!text.contains("smarthub_wan_link_uptime_seconds"), "{text}");
    assert_eq!(value(&text, "smarthub_dsl_up"), Some(0.0), "{text}");
}

#[tokio::test]
async fn a_device_that_leaves_vanishes_and_the_empty_list_works() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    let (_, before) = rig.probe(None).await;
    assert!(before.contains("AA:BB:CC:00:00:02"), "{before}");
    rig.hub.control("leave", "AA:BB:CC:00:00:02").unwrap();
    let (_, after) = rig.probe(None).await;
    assert!(!after.contains("AA:BB:CC:00:00:02"), "{after}");
    assert!(!after.contains("Tom's iPhone"), "{after}");
    assert_eq!(value(&after, "smarthub_lan_devices{state=\"known\"}"), Some(5.0));
    rig.hub.control("devices", "empty").unwrap();
    let (_, empty) = rig.probe(None).await;
    assert_eq!(collector(&empty, "devices"), Some(1.0), "{empty}");
    assert_eq!(value(&empty, "smarthub_lan_devices{state=\"known\"}"), Some(0.0), "{empty}");
    assert!(!empty.contains("smarthub_lan_device_info"), "{empty}");
    assert!(!empty.contains("smarthub_mesh_station_info"), "{empty}");
}

#[tokio::test]
async fn login_pages_fail_with_a_message_that_says_so() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    for mode in ["page", "redirect"] {
        rig.hub.control("login", mode).unwrap();
        let (_, text) = rig.probe(None).await;
        assert_eq!(value(&text, "smarthub_up"), Some(0.0), "{mode}: {text}");
        assert!(!text.contains("smarthub_wan_connected"), "{text}");
        let trace = rig.trace().await;
        assert!(trace.contains("a login page instead of data"), "{mode}: {trace}");
    }
}

#[tokio::test]
async fn a_403_names_the_referer() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    rig.sim.set_fault(Some(Fault::Status(403)));
    let trace = rig.trace().await;
    assert!(trace.contains("403") && trace.contains("Referer"), "{trace}");
    assert!(trace.contains("basic_-_my_devices.htm"), "{trace}");
}

#[tokio::test]
async fn every_request_carries_a_referer() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    rig.hub.control("referer", "all").unwrap();
    let (_, text) = rig.probe(None).await;
    for c in ["wan", "devices", "mesh"] {
        assert_eq!(collector(&text, c), Some(1.0), "{c}: {text}");
    }
}

#[tokio::test]
async fn no_lan_devices_makes_no_request_for_the_scripts() {
    let flags = Flags { no_lan_devices: true, ..Flags::default() };
    let rig = rig(Profile::Vdsl, flags).await;
    let (_, text) = rig.probe(None).await;
    let (_, _) = rig.probe(None).await;
    assert_eq!(value(&text, "smarthub_up"), Some(1.0), "{text}");
    assert_eq!(rig.requests(WAN_PATH), 2);
    assert_eq!(rig.requests(DEVICES_PATH), 0);
    assert_eq!(rig.requests(OWL_PATH), 0);
    assert!(!text.contains("collector=\"devices\""), "{text}");
    assert!(!text.contains("smarthub_lan_"), "{text}");
}

#[tokio::test]
async fn a_hung_hub_is_bounded_by_the_deadline() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    rig.sim.set_fault(Some(Fault::Hang));
    let (elapsed, text) = rig.probe(Some(1.0)).await;
    assert!(elapsed < Duration::from_millis(1100), "answered after {elapsed:?}");
    assert_eq!(value(&text, "smarthub_up"), Some(0.0), "{text}");
    assert_eq!(collector(&text, "wan"), Some(0.0), "{text}");
}

#[tokio::test]
async fn fifty_concurrent_scrapes_cause_one_round_of_hub_requests() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    rig.sim.set_latency(Duration::from_millis(300));
    let rig = std::sync::Arc::new(rig);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let rig = rig.clone();
        tasks.spawn(async move { rig.probe(None).await.1 });
    }
    while let Some(text) = tasks.join_next().await {
        assert_eq!(value(&text.unwrap(), "smarthub_up"), Some(1.0));
    }
    assert_eq!(rig.requests(WAN_PATH), 1);
    assert_eq!(rig.requests(DEVICES_PATH), 1);
    assert_eq!(rig.requests(OWL_PATH), 1);
    assert_eq!(rig.requests(STATUS_PATH), 1);
}

#[tokio::test]
async fn the_default_target_is_scraped_on_metrics() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    let text = rig.metrics().await;
    assert_eq!(value(&text, "smarthub_wan_connected"), Some(1.0), "{text}");
}

/// The probe called directly on a `Scrape` (no server): the families it writes.
#[tokio::test]
async fn probe_writes_fresh_families_into_the_scrape() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    let exporter = Smarthub::with_client(
        Flags::default(),
        None,
        exporter_core::client::http_client(&INFO).unwrap(),
    )
    .unwrap();
    let target = rig.sim.url().parse().unwrap();
    let mut out = Scrape::new("smarthub", rig.sim.url(), Instant::now() + Duration::from_secs(5));
    exporter.probe(&target, &mut out).await.unwrap();
    let text = out.encode();
    assert_eq!(value(&text, "smarthub_wan_connected"), Some(1.0), "{text}");
    assert_eq!(value(&text, "smarthub_mesh_nodes"), Some(2.0), "{text}");
    rig.hub.control("leave", "AA:BB:CC:00:00:06").unwrap();
    let mut out = Scrape::new("smarthub", rig.sim.url(), Instant::now() + Duration::from_secs(5));
    exporter.probe(&target, &mut out).await.unwrap();
    assert!(!out.encode().contains("AA:BB:CC:00:00:06"));
}
