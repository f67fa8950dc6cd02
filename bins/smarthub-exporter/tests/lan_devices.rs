//! Issue 16, LAN devices end to end: `--lan-devices=active|all|none` (default `active`), the
//! cap `--lan-devices-max` that keeps the most recently active devices and counts the rest in
//! `smarthub_lan_devices_dropped`, and the `smarthub_lan_devices{state}` totals.
#![allow(clippy::unwrap_used)]

mod common;

use argh::FromArgs;
use common::{collector, rig as start, value};
use device_sim::{
    http::HttpDevice as _,
    smarthub::{DEVICES_PATH, OWL_PATH, Profile, WAN_PATH},
};
use smarthub_exporter::Flags;

fn flags(args: &[&str]) -> Flags {
    Flags::from_args(&["smarthub-exporter"], args).unwrap()
}

/// The series of `metric` (name followed by `{`).
fn series<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    let prefix = format!("{metric}{{");
    text.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[tokio::test]
async fn by_default_only_active_devices_have_series_and_the_totals_count_all() {
    let rig = start(Profile::Vdsl, flags(&[])).await;
    let (_, text) = rig.probe(None).await;
    assert_eq!(collector(&text, "devices"), Some(1.0), "{text}");
    assert_eq!(value(&text, "smarthub_lan_devices{state=\"known\"}"), Some(6.0), "{text}");
    assert_eq!(value(&text, "smarthub_lan_devices{state=\"active\"}"), Some(4.0), "{text}");
    assert_eq!(value(&text, "smarthub_lan_devices_dropped"), Some(0.0), "{text}");
    // AA:BB:CC:00:00:03 and :04 are remembered but not connected.
    for metric in ["smarthub_lan_device_info", "smarthub_lan_device_active"] {
        let s = series(&text, metric);
        assert_eq!(s.len(), 4, "{metric}: {s:#?}");
        assert!(!s.iter().any(|l| l.contains("AA:BB:CC:00:00:03")), "{s:#?}");
        assert!(!s.iter().any(|l| l.contains("AA:BB:CC:00:00:04")), "{s:#?}");
    }
    assert!(!text.contains("smarthub_lan_device_active{mac=\"AA:BB:CC:00:00:01\",hostname=\"nas-01\",ip=\"192.168.1.64\"} 0"));
    assert_eq!(series(&text, "smarthub_lan_device_download_bytes_total").len(), 4, "{text}");
    // The mesh follows the same rule: the offline laptop is not listed.
    assert!(!text.contains("smarthub_mesh_station_info{mac=\"AA:BB:CC:00:00:04\""), "{text}");
    assert!(text.contains("smarthub_mesh_station_info{mac=\"AA:BB:CC:00:00:02\""), "{text}");
    if let Some(findings) = exporter_core::testing::promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "promtool: {findings}");
    }
}

#[tokio::test]
async fn all_exports_every_remembered_device() {
    let rig = start(Profile::Vdsl, flags(&["--lan-devices", "all"])).await;
    let (_, text) = rig.probe(None).await;
    assert_eq!(series(&text, "smarthub_lan_device_info").len(), 6, "{text}");
    assert!(
        text.contains(
            "smarthub_lan_device_active{mac=\"AA:BB:CC:00:00:03\",hostname=\"\",ip=\"192.168.1.80\"} 0"
        ),
        "{text}"
    );
    assert_eq!(value(&text, "smarthub_lan_devices{state=\"known\"}"), Some(6.0), "{text}");
    assert_eq!(value(&text, "smarthub_lan_devices{state=\"active\"}"), Some(4.0), "{text}");
    assert!(text.contains("smarthub_mesh_station_info{mac=\"AA:BB:CC:00:00:04\""), "{text}");
}

#[tokio::test]
async fn none_and_no_lan_devices_fetch_no_script() {
    for args in [&["--lan-devices", "none"][..], &["--no-lan-devices"][..]] {
        let rig = start(Profile::Vdsl, flags(args)).await;
        let (_, text) = rig.probe(None).await;
        assert_eq!(value(&text, "smarthub_up"), Some(1.0), "{args:?}: {text}");
        assert_eq!(rig.requests(WAN_PATH), 1, "{args:?}");
        assert_eq!(rig.requests(DEVICES_PATH), 0, "{args:?}");
        assert_eq!(rig.requests(OWL_PATH), 0, "{args:?}");
        assert!(!text.contains("smarthub_lan_"), "{args:?}: {text}");
        assert!(!text.contains("smarthub_mesh_"), "{args:?}: {text}");
    }
}

#[test]
fn contradicting_lan_device_flags_are_an_error() {
    let f = flags(&["--no-lan-devices", "--lan-devices", "all"]);
    let http = exporter_core::client::http_client(&smarthub_exporter::INFO).unwrap();
    let err = smarthub_exporter::Smarthub::with_client(f, None, http).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("--no-lan-devices") && err.contains("--lan-devices"), "{err}");
    assert!(Flags::from_args(&["x"], &["--lan-devices", "some"]).is_err());
    assert!(Flags::from_args(&["x"], &["--lan-devices-max", "-1"]).is_err());
}

#[tokio::test]
async fn a_busy_network_is_capped_to_the_most_recently_active_devices() {
    // 600 remembered devices, 60 of them active (every tenth; higher number = more recent).
    let rig =
        start(Profile::Vdsl, flags(&["--lan-devices", "all", "--lan-devices-max", "100"])).await;
    rig.hub.control("devices", "many:600").unwrap();
    let (_, text) = rig.probe(None).await;
    assert_eq!(collector(&text, "devices"), Some(1.0), "{text}");
    let info = series(&text, "smarthub_lan_device_info");
    assert_eq!(info.len(), 100);
    assert_eq!(series(&text, "smarthub_lan_device_active").len(), 100);
    assert_eq!(value(&text, "smarthub_lan_devices_dropped"), Some(500.0), "{text}");
    assert_eq!(value(&text, "smarthub_lan_devices{state=\"known\"}"), Some(600.0));
    assert_eq!(value(&text, "smarthub_lan_devices{state=\"active\"}"), Some(60.0));
    let has = |host: &str| info.iter().any(|l| l.contains(&format!("hostname=\"{host}\"")));
    // Active devices first (all 60, even the oldest), then the 40 most recently active others.
    assert!(has("host-9") && has("host-599"), "active ones are kept");
    assert!(has("host-598") && has("host-555"), "the most recent inactive ones are kept");
    assert!(
        !has("host-554") && !has("host-0") && !has("host-300"),
        "older inactive ones are dropped"
    );

    // The default mode and cap: only the 60 active devices, nothing dropped.
    let rig = rig_default_many().await;
    let (_, text) = rig.probe(None).await;
    assert_eq!(series(&text, "smarthub_lan_device_info").len(), 60);
    assert_eq!(value(&text, "smarthub_lan_devices_dropped"), Some(0.0), "{text}");
    assert_eq!(series(&text, "smarthub_lan_device_download_bytes_total").len(), 60);
}

async fn rig_default_many() -> common::Rig {
    let rig = start(Profile::Vdsl, flags(&[])).await;
    rig.hub.control("devices", "many:600").unwrap();
    rig
}

#[tokio::test]
async fn the_default_cap_is_256_and_active_mode_caps_among_active_devices() {
    let rig = start(Profile::Vdsl, flags(&["--lan-devices", "all"])).await;
    rig.hub.control("devices", "many:1000").unwrap();
    let (_, text) = rig.probe(None).await;
    assert_eq!(series(&text, "smarthub_lan_device_info").len(), 256);
    assert_eq!(value(&text, "smarthub_lan_devices_dropped"), Some(744.0), "{text}");

    let rig = start(Profile::Vdsl, flags(&["--lan-devices-max", "10"])).await;
    rig.hub.control("devices", "many:600").unwrap();
    let (_, text) = rig.probe(None).await;
    let info = series(&text, "smarthub_lan_device_info");
    assert_eq!(info.len(), 10);
    assert_eq!(value(&text, "smarthub_lan_devices_dropped"), Some(50.0), "{text}");
    assert!(info.iter().any(|l| l.contains("hostname=\"host-599\"")), "{info:#?}");
    assert!(info.iter().any(|l| l.contains("hostname=\"host-509\"")), "{info:#?}");
    assert!(!info.iter().any(|l| l.contains("hostname=\"host-499\"")), "{info:#?}");
    assert_eq!(series(&text, "smarthub_lan_device_upload_bytes_total").len(), 10);
}
