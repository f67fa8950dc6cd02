//! Parse and render tests: the fixtures of spec §15 → typed data → golden exposition files,
//! which promtool must find clean.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use exporter_core::{
    Scrape,
    testing::{assert_golden, promtool_check_metrics},
};
use smarthub_exporter::{
    api, devices_from_js,
    js::JsLimits,
    mesh_from_js,
    metrics::{self, LanSelection},
};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

fn golden(name: &str, text: &str) {
    assert_golden(format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR")), text);
    if let Some(findings) = promtool_check_metrics(text) {
        assert!(findings.is_empty(), "promtool on {name}: {findings}");
    }
}

fn scrape() -> Scrape {
    Scrape::new("smarthub", "http://192.168.1.254", Instant::now() + Duration::from_secs(10))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn fttp_reads_slot_0() {
    let w = api::parse_wan_xml(&fixture("wan_conn_fttp.xml")).unwrap();
    assert_eq!((w.slot, w.slot_from_hub), (0, true));
    assert!(w.session.connected());
    assert_eq!(w.sysuptime, Some(604_812));
    assert_eq!(w.session.start, Some(58));
    let v = w.volume.clone().unwrap();
    assert_eq!(
        (v.total, v.rx, v.tx),
        (Some(52_918_834_210), Some(48_702_116_393), Some(4_216_717_817))
    );
    let r = w.rate.clone().unwrap();
    assert_eq!((r.up_bps, r.down_bps), (Some(1_000_000_000), Some(1_000_000_000)));
    assert_eq!(w.ipv4.as_ref().unwrap().address, "203.0.113.45");
    assert_eq!(w.ipv6.as_deref(), Some("2001:db8:1234:5600::1/64"));
    assert!(!w.dsl.as_ref().unwrap().up());
    let mut out = scrape();
    metrics::wan(&mut out, &w);
    let text = out.encode();
    assert!(text.contains("smarthub_wan_connection_uptime_seconds 604754\n"), "{text}");
    assert!(
        !text.contains("smarthub_dsl_"),
        "an unused DSL port of an FTTP hub is no DSL line:\n{text}"
    );
    golden("wan_fttp.prom", &text);
}

#[test]
fn vdsl_reads_slot_1_and_the_line() {
    let w = api::parse_wan_xml(&fixture("wan_conn_vdsl.xml")).unwrap();
    assert_eq!((w.slot, w.slot_from_hub), (1, true));
    assert!(w.session.connected());
    let v = w.volume.clone().unwrap();
    assert_eq!((v.rx, v.tx), (Some(118_409_876_543), Some(12_302_469_135)));
    let r = w.rate.clone().unwrap();
    assert_eq!((r.up_bps, r.down_bps), (Some(19_999_000), Some(79_987_000)));
    let d = w.dsl.clone().unwrap();
    assert!(d.up());
    assert_eq!((d.mode.as_str(), d.modulation.as_str()), ("VDSL2", "Profile 17a"));
    assert_eq!((d.snr_margin_down, d.snr_margin_up), (Some(62), Some(71)));
    assert_eq!((d.sync_down_kbps, d.attainable_down_bps), (Some(79_987), Some(84_312_000)));
    let mut out = scrape();
    metrics::wan(&mut out, &w);
    let text = out.encode();
    for line in [
        "smarthub_wan_connected 1\n",
        "smarthub_wan_connection_uptime_seconds 1209637\n",
        "smarthub_wan_link_uptime_seconds 1209662\n",
        "smarthub_wan_download_bytes_total 118409876543\n",
        "smarthub_wan_download_rate_bytes_per_second 9998375\n",
        "smarthub_wan_upload_rate_bytes_per_second 2499875\n",
        "smarthub_dsl_snr_margin_db{direction=\"downstream\"} 6.2\n",
        "smarthub_dsl_line_attenuation_db{direction=\"downstream\"} 15.3\n",
        "smarthub_dsl_sync_rate_bytes_per_second{direction=\"downstream\"} 9998375\n",
        "smarthub_dsl_attainable_rate_bytes_per_second{direction=\"upstream\"} 3100125\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    golden("wan_vdsl.prom", &text);
}

#[test]
fn wan_down_has_no_made_up_uptime() {
    let w = api::parse_wan_xml(&fixture("wan_conn_down.xml")).unwrap();
    assert_eq!(w.slot, 1);
    assert!(!w.session.connected());
    let mut out = scrape();
    metrics::wan(&mut out, &w);
    let text = out.encode();
    assert!(text.contains("smarthub_wan_connected 0\n"), "{text}");
    assert!(text.contains("smarthub_uptime_seconds 212\n"), "{text}");
    assert!(!text.contains("connection_uptime"), "{text}");
    assert!(!text.contains("link_uptime"), "{text}");
    assert!(text.contains("smarthub_dsl_up 0\n"), "{text}");
    assert!(
        !text.contains("smarthub_dsl_snr"),
        "zeros of an untrained line are no readings:\n{text}"
    );
    golden("wan_down.prom", &text);
}

#[test]
fn wan_without_active_index_falls_back_to_the_connected_slot() {
    let xml = fixture("wan_conn_vdsl.xml").replace("<wan_active_idx value=\"1\" />", "");
    let w = api::parse_wan_xml(&xml).unwrap();
    assert_eq!((w.slot, w.slot_from_hub), (1, false));
    let xml = fixture("wan_conn_vdsl.xml")
        .replace("<wan_active_idx value=\"1\" />", "<wan_active_idx value=\"7\" />");
    assert_eq!(api::parse_wan_xml(&xml).unwrap().slot, 1);
}

#[test]
fn broken_wan_documents_are_errors() {
    for bad in [
        "",
        "<html><body>login</body></html>",
        "<status><sysuptime value=\"1\" /></status>",
        "<status><wan_conn_status_list value=\"[['connected%3B1'],\" /></status>",
        "<status><wan_conn_status_list value=\"[[\" /><",
    ] {
        assert!(api::parse_wan_xml(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn device_list_with_tricky_names() {
    let list =
        devices_from_js(&fixture("cgi_basicMyDevice.js"), JsLimits::default(), soon()).unwrap();
    assert_eq!(list.devices.len(), 5);
    let names: Vec<(&str, &str)> =
        list.devices.iter().map(|d| (d.hostname.as_str(), d.name.as_str())).collect();
    assert_eq!(
        names,
        [
            ("nas-01", "Family NAS"),
            ("Tom's iPhone", "Tom's iPhone"),
            ("", "unknown_AA:BB:CC:00:00:03"),
            ("Zoë-laptop", "Kids \"Den\" TV\\1"),
            ("BT-WiFi-Disc-1a2b", "Landing disc"),
        ]
    );
    assert_eq!(list.devices[0].mac, "AA:BB:CC:00:00:01");
    assert_eq!(list.devices[1].active, Some(true));
    assert_eq!(list.devices[2].active, Some(false));
    assert_eq!(list.rates.len(), 3);
    assert_eq!(list.rates[0].mac, "AA:BB:CC:00:00:01", "rate MACs are upper-cased to join");
    assert_eq!((list.rates[0].tx, list.rates[0].rx), (Some(5_368_709_120), Some(912_345_678_901)));
    let mut out = scrape();
    metrics::devices(&mut out, &list, LanSelection { include_inactive: true, max: 256 });
    let text = out.encode();
    assert!(text.contains("smarthub_lan_devices{state=\"known\"} 5\n"), "{text}");
    assert!(text.contains("smarthub_lan_devices{state=\"active\"} 3\n"), "{text}");
    assert!(
        text.contains(
            "smarthub_lan_device_download_bytes_total{mac=\"AA:BB:CC:00:00:01\",hostname=\"nas-01\",ip=\"192.168.1.64\"} 912345678901\n"
        ),
        "{text}"
    );
    assert!(text.contains(r#"name="Kids \"Den\" TV\\1""#), "{text}");
    assert!(
        !text.contains("download_bytes_total{mac=\"AA:BB:CC:00:00:03\""),
        "a device without a rate entry has no made-up 0 counter:\n{text}"
    );
    golden("devices_all.prom", &text);

    // The default (--lan-devices=active): only the three connected devices have series.
    let mut out = scrape();
    metrics::devices(&mut out, &list, LanSelection::default());
    let text = out.encode();
    assert!(text.contains("smarthub_lan_devices{state=\"known\"} 5\n"), "{text}");
    assert!(text.contains("smarthub_lan_devices_dropped 0\n"), "{text}");
    assert!(!text.contains("AA:BB:CC:00:00:03") && !text.contains("AA:BB:CC:00:00:04"), "{text}");
    golden("devices.prom", &text);

    // A cap of 2: the two most recently active of the three connected devices.
    let mut out = scrape();
    metrics::devices(&mut out, &list, LanSelection { include_inactive: true, max: 2 });
    let text = out.encode();
    assert!(text.contains("smarthub_lan_devices_dropped 3\n"), "{text}");
    assert!(text.contains("hostname=\"nas-01\""), "21:40:17, the latest: {text}");
    assert!(text.contains("hostname=\"BT-WiFi-Disc-1a2b\""), "21:40:05: {text}");
    assert!(!text.contains("hostname=\"Tom's iPhone\""), "21:39:58: {text}");
}

#[test]
fn empty_device_list() {
    let list = devices_from_js(&fixture("cgi_basicMyDevice_empty.js"), JsLimits::default(), soon())
        .unwrap();
    assert!(list.devices.is_empty() && list.rates.is_empty());
    let mut out = scrape();
    metrics::devices(&mut out, &list, LanSelection::default());
    let text = out.encode();
    assert!(text.contains("smarthub_lan_devices{state=\"known\"} 0\n"), "{text}");
    golden("devices_empty.prom", &text);
}

#[test]
fn mesh_with_a_disc_and_stations() {
    let m = mesh_from_js(&fixture("cgi_owl.js"), JsLimits::default(), soon()).unwrap();
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(m.nodes[0].name, "Smart Hub 2");
    assert_eq!(m.nodes[0].parent, "");
    assert_eq!(m.nodes[1].parent, m.nodes[0].id);
    assert_eq!(m.nodes[1].rssi_dbm, Some(-61));
    assert_eq!(m.nodes[1].link_rate_bps, Some(1_733_000_000));
    assert_eq!(m.nodes[0].firmware, "v0.37.00.00000");
    assert_eq!(m.stations.len(), 4);
    assert_eq!(m.stations[2].name, "", "NULL means no name");
    assert_eq!(m.stations[1].alias, "Tom's iPhone");
    assert_eq!(m.stations[1].signal_dbm, Some(-54));
    assert_eq!(m.stations[3].online, Some(false));
    let mut out = scrape();
    metrics::mesh(&mut out, &m, LanSelection { include_inactive: true, max: 256 });
    let text = out.encode();
    assert!(
        text.contains("smarthub_mesh_station_signal_dbm{mac=\"AA:BB:CC:00:00:02\"} -54\n"),
        "{text}"
    );
    assert!(
        !text.contains("smarthub_mesh_station_signal_dbm{mac=\"AA:BB:CC:00:00:04\"}"),
        "offline: {text}"
    );
    assert!(
        !text.contains("smarthub_mesh_station_signal_dbm{mac=\"AA:BB:CC:00:00:01\"}"),
        "wired: {text}"
    );
    golden("mesh.prom", &text);
    let mut out = scrape();
    metrics::mesh(&mut out, &m, LanSelection::default());
    let text = out.encode();
    assert!(
        !text.contains("smarthub_mesh_station_info{mac=\"AA:BB:CC:00:00:04\""),
        "offline: {text}"
    );
    assert!(text.contains("smarthub_mesh_stations 4\n"), "{text}");
    let mut out = scrape();
    metrics::mesh(&mut out, &m, LanSelection { include_inactive: true, max: 1 });
    let text = out.encode();
    assert!(text.contains("smarthub_mesh_stations_dropped 3\n"), "{text}");
}

#[test]
fn scripts_that_are_not_device_lists_fail() {
    let full = fixture("cgi_basicMyDevice.js");
    let truncated = &full[..full.len() / 2];
    for (body, expect) in [
        (truncated, "not valid javascript"),
        ("<html><body>403 Forbidden</body></html>", "not valid javascript"),
        ("var something_else = [null];", "defines no known_device_list"),
        ("var known_device_list=[null];", "defines no rate"),
        ("# rest of file truncated for test", "not valid javascript"),
    ] {
        let err = format!("{:#}", devices_from_js(body, JsLimits::default(), soon()).unwrap_err());
        assert!(err.contains(expect), "{body:?}: {err}");
        assert!(err.contains("cgi_basicMyDevice.js"), "{err}");
    }
    let err = format!(
        "{:#}",
        mesh_from_js("var owl_tplg=[null];", JsLimits::default(), soon()).unwrap_err()
    );
    assert!(err.contains("owl_station"), "{err}");
}

#[test]
fn basic_status_is_read_without_running_it() {
    let s = api::parse_basic_status(&fixture("cgi_basicStatus.js")).unwrap();
    assert_eq!(s.firmware.as_deref(), Some("v0.37.00.00000-BT (Tue Mar  5 10:11:12 2024)"));
    assert_eq!(s.serial.as_deref(), Some("+068341+NQ00000000"));
    assert_eq!(s.firmware_update_time.as_deref(), Some("2024/03/19 03:12:44"));
    assert_eq!(s.sysuptime, Some(1_209_733));
    let facts = |boot| metrics::HubFacts { status: &s, boot_time: boot, age_seconds: 42.0 };
    let mut out = scrape();
    metrics::hub_facts(&mut out, &facts(Some(1_700_000_000.0)), false);
    let text = out.encode();
    assert!(!text.contains("serial=\""), "identifiers only with --expose-identifiers: {text}");
    assert!(text.contains("smarthub_boot_time_seconds 1700000000\n"), "{text}");
    golden("status.prom", &text);
    let mut out = scrape();
    metrics::hub_facts(&mut out, &facts(None), true);
    let text = out.encode();
    assert!(text.contains("serial=\"+068341+NQ00000000\""), "{text}");
    assert!(!text.contains("boot_time_seconds 0"), "no made-up boot time: {text}");
    golden("status_identifiers.prom", &text);
}

#[test]
fn basic_status_quirks_and_broken_pages() {
    // Statements without semicolons, comments, the parseInt expressions, a truncated end.
    let s = api::parse_basic_status(
        "// header\nvar fw_ver = \"v1%2E0\"\nvar x = parseInt(\"1\") || parseInt(\"0\");\nvar sysuptime = '77'\nvar linestatus = [{\n state: 'UP'",
    )
    .unwrap();
    assert_eq!((s.firmware.as_deref(), s.sysuptime, s.serial), (Some("v1.0"), Some(77), None));
    let s = api::parse_basic_status("var sysuptime = 'soon';\nvar serial_no = \"A%3BB\";").unwrap();
    assert_eq!((s.sysuptime, s.serial.as_deref()), (None, Some("A;B")), "not a number: absent");
    for bad in [
        "",
        "<!DOCTYPE html><html><body>Forbidden</body></html>",
        "var known_device_list=[null];",
        "var fw_ver = parseInt(\"1\");",
    ] {
        let err = format!("{:#}", api::parse_basic_status(bad).unwrap_err());
        assert!(!err.is_empty(), "{bad:?}");
    }
}
