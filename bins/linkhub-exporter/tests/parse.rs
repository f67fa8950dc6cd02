//! Layers 1 and 2: fixtures from the spec (§11) decode into the api types, and the render
//! functions turn them into the exposition in `tests/golden/` (promtool-clean).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use exporter_core::{
    Scrape,
    testing::{assert_golden, promtool_check_metrics},
};
use linkhub_exporter::{
    api::{
        Battery, BatteryState, ConnectedDeviceList, ConnectionState, LoginResult, LoginState,
        NetworkInfo, SimStatus, SmsStorageState, SystemInfo, SystemStatus, UsageRecord,
    },
    client::{decode, is_device_error, method_error},
    metrics,
};
use serde::de::DeserializeOwned;

fn path(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir).join(name)
}

fn fixture<T: DeserializeOwned>(method: &str, name: &str) -> T {
    let body = std::fs::read(path("fixtures", name)).unwrap();
    decode(method, &body).unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

fn fixture_err(method: &str, name: &str) -> anyhow::Error {
    let body = std::fs::read(path("fixtures", name)).unwrap();
    match decode::<serde_json::Value>(method, &body) {
        Ok(v) => panic!("{name}: decoded to {v}"),
        Err(e) => e,
    }
}

fn scrape() -> Scrape {
    Scrape::new("linkhub", "test", Instant::now() + Duration::from_secs(60))
}

#[test]
fn network_info_strings_are_parsed() {
    let it: NetworkInfo = fixture("GetNetworkInfo", "network_info.json");
    assert_eq!(it.rsrp.power_dbm(), Some(-90.0));
    assert_eq!(it.rsrq.get(), Some(-8.0));
    assert_eq!(it.sinr.get(), Some(17.0));
    assert_eq!(it.rssi.power_dbm(), Some(-62.0));
    assert_eq!(it.serving_cell(), Some(80_820_492.0));
    assert_eq!(it.enb(), Some(315_705));
    assert_eq!(it.band(), Some(3));
    assert_eq!(it.plmn(), Some("46692"));
    assert_eq!(it.network_type.code(), Some(8));
    assert_eq!(it.dl_channel.get(), None, "\"reserved\" is no value");
    assert_eq!(it.rscp.power_dbm(), None, "RSCP -1 is no value");
}

#[test]
fn network_info_invalid_markers_are_absent() {
    let it: NetworkInfo = fixture("GetNetworkInfo", "network_info_no_service.json");
    assert_eq!(it.sinr.get(), None, "FF");
    assert_eq!(it.rsrp.get(), Some(-1.0));
    assert_eq!(it.rsrp.power_dbm(), None, "-1 RSRP");
    assert_eq!(it.rssi.get(), None, "empty string");
    assert_eq!(it.rsrq.get(), None);
    assert_eq!(it.serving_cell(), None, "cell 0");
    assert_eq!(it.plmn(), None, "00000");
    assert_eq!(it.band(), None, "band 0");
    assert_eq!(it.enb(), None);
    assert_eq!(it.network_name.get(), None, "N/A");
}

#[test]
fn network_info_numbers_and_odd_codes() {
    let it: NetworkInfo = fixture("GetNetworkInfo", "network_info_numbers.json");
    assert_eq!(it.sinr.get(), Some(0.0), "a real 0 SINR stays");
    assert_eq!(it.rsrp.power_dbm(), Some(-97.0));
    assert_eq!((it.rssi.get(), it.rsrq.get()), (None, None));
    assert_eq!(it.serving_cell(), Some(80_820_495.0));
    assert_eq!(it.band(), Some(78), "band as a string");
    assert_eq!(it.network_type.code(), Some(16));
    assert_eq!(it.signal_strength.get(), Some(-1.0));
    assert_eq!(it.dl_channel.count(), Some(1275.0));
}

#[test]
fn system_status_usage_connection_sim_battery() {
    let s: SystemStatus = fixture("GetSystemStatus", "system_status.json");
    assert_eq!(
        (s.roaming.code(), s.connection_status.code(), s.total_conn_num.get()),
        (Some(1), Some(2), Some(3.0))
    );
    assert_eq!((s.curr_num_2g.get(), s.curr_num_5g.get()), (Some(3.0), Some(0.0)));
    assert_eq!(Battery::from_status(&s), None, "a LinkHub has no battery fields");
    let m: SystemStatus = fixture("GetSystemStatus", "system_status_mifi.json");
    assert_eq!(
        Battery::from_status(&m),
        Some(Battery { charge_state: Some(1), percent: Some(100.0), bars: Some(4.0) })
    );
    let u: UsageRecord = fixture("GetUsageRecord", "usage_record.json");
    assert_eq!(u.home_dl.count(), Some(14_996_934_026.0), "above 2^32, exact");
    assert_eq!(u.home_total.count(), Some(18_440_039_053.0));
    assert_eq!(u.roam_total.count(), Some(0.0));
    let c: ConnectionState = fixture("GetConnectionState", "connection_state.json");
    assert_eq!((c.dl_rate.get(), c.connection_time.get()), (Some(150_000_000.0), Some(88_741.0)));
    assert_eq!(c.ipv4_address.get(), Some("10.17.152.95"));
    let sim: SimStatus = fixture("GetSimStatus", "sim_status.json");
    assert_eq!(
        (sim.sim_state.code(), sim.pin_state.code(), sim.sim_lock_state.code()),
        (Some(7), Some(3), Some(-1))
    );
    let b: BatteryState = fixture("GetBatteryState", "battery_state.json");
    assert_eq!(
        Battery::from_state(&b, Some(&m)),
        Battery { charge_state: Some(0), percent: Some(64.0), bars: Some(4.0) }
    );
    let info: SystemInfo = fixture("GetSystemInfo", "system_info.json");
    assert_eq!(info.sw_version.get(), Some("HH41_NV_02.00_07"), "trailing newline trimmed");
    assert_eq!(info.device_name.get(), Some("HH41"));
}

#[test]
fn login_payloads() {
    let st: LoginState = fixture("GetLoginState", "login_state.json");
    assert_eq!(
        (st.state.code(), st.login_remaining_times.code(), st.pw_encrypt.code()),
        (Some(0), Some(5), Some(1))
    );
    let l: LoginResult = fixture("Login", "login.json");
    assert_eq!(l.token.get(), Some("45487484"), "numeric token as text");
    assert_eq!(l.param0.get(), None);
    let h: LoginResult = fixture("Login", "login_hotspot.json");
    assert_eq!((h.token.get(), h.param0.get()), (Some("45487484"), Some("1234567890123456")));
    for (name, code) in [
        ("login_wrong_password.json", "010101"),
        ("login_other_session.json", "010102"),
        ("login_locked.json", "010103"),
    ] {
        let err = fixture_err("Login", name);
        assert_eq!(method_error(&err).unwrap().code.0, code);
        assert!(!is_device_error(&err));
    }
}

#[test]
fn errors_and_hostile_bodies() {
    let err = fixture_err("GetWanSettings", "auth_failure.json");
    assert!(method_error(&err).unwrap().code.needs_login());
    let err = fixture_err("HeartBeat", "token_error_string.json");
    assert!(method_error(&err).unwrap().code.needs_login(), "string code");
    let err = fixture_err("GetBatteryState", "method_not_found.json");
    assert_eq!(method_error(&err).unwrap().code.0, "-32601");
    let err = fixture_err("GetNetworkInfo", "encrypted.json");
    assert!(is_device_error(&err));
    assert!(
        format!("{err:#}").starts_with("GetNetworkInfo: unsupported encrypted firmware"),
        "{err:#}"
    );
    let err = fixture_err("GetNetworkInfo", "busy_page.html");
    assert!(is_device_error(&err));
    assert!(
        format!("{err:#}").contains("not JSON") && format!("{err:#}").contains("<html>"),
        "{err:#}"
    );
    // The empty result of a booting modem decodes to nothing at all.
    let it: NetworkInfo = fixture("GetNetworkInfo", "empty_result.json");
    assert_eq!((it.sinr.get(), it.serving_cell()), (None, None));
}

fn render_normal(out: &mut Scrape, expose: bool) {
    metrics::system_info(out, &fixture("GetSystemInfo", "system_info.json"), expose);
    metrics::system_status(out, &fixture("GetSystemStatus", "system_status.json"));
    metrics::network(out, &fixture("GetNetworkInfo", "network_info.json"));
    metrics::connection(out, &fixture("GetConnectionState", "connection_state.json"), expose);
    metrics::usage(out, &fixture("GetUsageRecord", "usage_record.json"));
    metrics::sim(out, &fixture("GetSimStatus", "sim_status.json"));
    metrics::sms(out, &fixture("GetSMSStorageState", "sms_storage_state.json"));
    let sel = metrics::ClientSelection { expose_identifiers: expose, max: 256 };
    let list = fixture("GetConnectedDeviceList", "connected_device_list.json");
    metrics::connected_devices(out, &list, sel);
}

fn check(name: &str, text: &str) {
    assert_golden(path("golden", name), text);
    if let Some(findings) = promtool_check_metrics(text) {
        assert!(findings.is_empty(), "promtool on {name}: {findings}");
    }
}

#[test]
fn golden_normal() {
    let mut out = scrape();
    render_normal(&mut out, false);
    let text = out.encode();
    check("normal.prom", &text);
    for line in [
        "linkhub_rsrp_dbm -90\n",
        "linkhub_serving_cell_id 80820492\n",
        "linkhub_cell_info{cell_id=\"80820492\",enb_id=\"315705\",plmn=\"46692\",band=\"3\",network_type=\"lte\"} 1\n",
        "linkhub_roaming 0\n",
        "linkhub_wifi_clients{band=\"5ghz\"} 0\n",
        "linkhub_usage_monthly_download_bytes{network=\"roaming\"} 0\n",
        "linkhub_connection_max_download_bytes_per_second 18750000\n",
        "linkhub_sms_messages 3\n",
        "linkhub_sms_unread_messages 1\n",
        "linkhub_sms_storage_capacity_messages 100\n",
        "linkhub_sms_storage_free_messages 97\n",
        "linkhub_sms_storage_full 0\n",
        "linkhub_sms_unread_delivery_report 0\n",
        "linkhub_sms_state{state=\"new\"} 1\n",
        "linkhub_sms_state_code 3\n",
        "linkhub_connected_devices{connection=\"usb\"} 1\n",
        "linkhub_connected_devices{connection=\"wifi\"} 2\n",
        "linkhub_connected_devices{connection=\"wifi_guest\"} 0\n",
        "linkhub_connected_devices{connection=\"other\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for absent in [
        "connected_device_info",
        "3a:11:14:47:f6:a3",
        "356789012345678",
        "466920123456789",
        "10.17.152.95",
        "rscp",
        "downlink_channel",
        "monthly_limit",
    ] {
        assert!(!text.contains(absent), "{absent} must not appear:\n{text}");
    }
}

#[test]
fn golden_no_service() {
    let mut out = scrape();
    metrics::system_info(&mut out, &fixture("GetSystemInfo", "system_info.json"), false);
    metrics::system_status(&mut out, &fixture("GetSystemStatus", "system_status_no_service.json"));
    metrics::network(&mut out, &fixture("GetNetworkInfo", "network_info_no_service.json"));
    metrics::connection(
        &mut out,
        &fixture("GetConnectionState", "connection_state_no_service.json"),
        false,
    );
    metrics::usage(&mut out, &fixture("GetUsageRecord", "usage_record_reset.json"));
    metrics::sim(&mut out, &fixture("GetSimStatus", "sim_status.json"));
    let text = out.encode();
    check("no_service.prom", &text);
    for line in [
        "linkhub_signal_bars 0\n",
        "linkhub_connected_clients 0\n",
        "linkhub_connection_download_bytes_total 0\n",
        "linkhub_network_generation{state=\"none\"} 1\n",
        "linkhub_connection_state{state=\"disconnected\"} 1\n",
        "linkhub_usage_monthly_bytes{network=\"home\"} 0\n",
        "linkhub_usage_monthly_limit_bytes 10737418240\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for absent in ["sinr", "rsrp", "rssi", "rsrq", "serving_cell", "cell_info", "operator_info"] {
        assert!(!text.contains(absent), "{absent} must be absent:\n{text}");
    }
}

#[test]
fn golden_mifi_battery() {
    let mut out = scrape();
    let status: SystemStatus = fixture("GetSystemStatus", "system_status_mifi.json");
    metrics::system_info(&mut out, &fixture("GetSystemInfo", "system_info_mifi.json"), false);
    metrics::system_status(&mut out, &status);
    metrics::network(&mut out, &fixture("GetNetworkInfo", "network_info.json"));
    metrics::connection(&mut out, &fixture("GetConnectionState", "connection_state.json"), false);
    metrics::usage(&mut out, &fixture("GetUsageRecord", "usage_record.json"));
    metrics::sim(&mut out, &fixture("GetSimStatus", "sim_status.json"));
    let battery =
        Battery::from_state(&fixture("GetBatteryState", "battery_state.json"), Some(&status));
    metrics::battery(&mut out, &battery);
    let text = out.encode();
    check("mifi_battery.prom", &text);
    for line in [
        "linkhub_battery_charge_ratio 0.64\n",
        "linkhub_battery_bars 4\n",
        "linkhub_battery_charge_state{state=\"charging\"} 1\n",
        "linkhub_battery_charge_state_code 0\n",
        "linkhub_wifi_clients{band=\"all\"} 5\n",
        "linkhub_signal_bars 0\n",
        "linkhub_connection_profile_error{state=\"apn\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn roaming_is_inverted_and_unknown_codes_are_shown() {
    let mut out = scrape();
    metrics::system_status(&mut out, &fixture("GetSystemStatus", "system_status_roaming.json"));
    metrics::network(&mut out, &fixture("GetNetworkInfo", "network_info_numbers.json"));
    let text = out.encode();
    for line in [
        "linkhub_roaming 1\n",
        "linkhub_network_generation{state=\"4g+\"} 1\n",
        "linkhub_network_type_code 9\n",
        "linkhub_connection_state{state=\"unknown\"} 1\n",
        "linkhub_connection_state_code 7\n",
        "linkhub_wlan_state{state=\"off\"} 1\n",
        "linkhub_sinr_db 0\n",
        "linkhub_downlink_channel 1275\n",
        "network_type=\"5g\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("linkhub_signal_bars"), "-1 bars is no value:\n{text}");
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "{findings}");
    }
}

#[test]
fn identifiers_only_when_asked() {
    let mut out = scrape();
    render_normal(&mut out, true);
    let text = out.encode();
    check("identifiers.prom", &text);
    for id in [
        "imei=\"356789012345678\"",
        "imsi=\"466920123456789\"",
        "iccid=\"8988692012345678901F\"",
        "mac_address=\"8c:dc:d4:31:ba:b5\"",
        "ipv4_address=\"10.17.152.95\",ipv6_address=\"\"",
        "linkhub_connected_device_info{mac_address=\"00:11:32:aa:bb:cc\",ip_address=\"192.168.1.100\",name=\"nas\",connection=\"usb\"} 1",
        "linkhub_connected_device_connected_seconds{mac_address=\"3a:11:14:47:f6:a3\"} 3600",
        "linkhub_connected_devices_dropped 0",
    ] {
        assert!(text.contains(id), "missing {id} in\n{text}");
    }
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "{findings}");
    }
}

#[test]
fn sms_store_full_and_odd_values() {
    let full: SmsStorageState = fixture("GetSMSStorageState", "sms_storage_full.json");
    assert_eq!(full.full(), Some(true));
    let mut out = scrape();
    metrics::sms(&mut out, &full);
    let text = out.encode();
    for line in [
        "linkhub_sms_storage_full 1\n",
        "linkhub_sms_messages 30\n",
        "linkhub_sms_storage_capacity_messages 30\n",
        "linkhub_sms_unread_messages 0\n",
        "linkhub_sms_unread_delivery_report 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Without LeftCount the counts decide; with nothing usable the series is absent.
    let it: SmsStorageState = serde_json::from_str(r#"{"MaxCount":50,"TUseCount":50}"#).unwrap();
    assert_eq!(it.full(), Some(true));
    let it: SmsStorageState =
        serde_json::from_str(r#"{"MaxCount":0,"TUseCount":"N/A","LeftCount":""}"#).unwrap();
    assert_eq!(it.full(), None);
    let mut out = scrape();
    metrics::sms(&mut out, &it);
    let text = out.encode();
    assert!(!text.contains("linkhub_sms"), "no reading, no series:\n{text}");
    let it: SmsStorageState = fixture("GetSMSStorageState", "empty_result.json");
    assert_eq!(it.full(), None);
}

#[test]
fn connected_devices_are_counted_and_capped() {
    let list: ConnectedDeviceList =
        fixture("GetConnectedDeviceList", "connected_device_list_odd.json");
    let mut out = scrape();
    metrics::connected_devices(
        &mut out,
        &list,
        metrics::ClientSelection { expose_identifiers: true, max: 256 },
    );
    let text = out.encode();
    for line in [
        "linkhub_connected_devices{connection=\"usb\"} 0\n",
        "linkhub_connected_devices{connection=\"wifi\"} 2\n",
        "linkhub_connected_devices{connection=\"wifi_guest\"} 1\n",
        "linkhub_connected_devices{connection=\"other\"} 1\n",
        "linkhub_connected_device_connected_seconds{mac_address=\"aa:bb:cc:00:00:01\"} 50\n",
        "linkhub_connected_device_info{mac_address=\"de:ad:be:ef:00:09\",ip_address=\"192.168.100.2\",name=\"visitor\",connection=\"wifi_guest\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("AA:BB:CC"), "one series per MAC address:\n{text}");
    assert!(!text.contains("mac_address=\"\""), "no series without a MAC:\n{text}");
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "{findings}");
    }

    // The cap keeps the longest connected, counts the rest.
    let (kept, dropped) = metrics::select_clients(&list, 1);
    assert_eq!((kept.len(), dropped), (1, 1));
    assert_eq!(kept[0].0.name.get(), Some("tv"), "50 s beats the guest's 30 s");
    let mut out = scrape();
    metrics::connected_devices(
        &mut out,
        &list,
        metrics::ClientSelection { expose_identifiers: true, max: 1 },
    );
    let text = out.encode();
    assert!(text.contains("linkhub_connected_devices_dropped 1\n"), "{text}");
    assert_eq!(text.matches("linkhub_connected_device_info{").count(), 1, "{text}");

    // No list at all is no count (not 0).
    let list: ConnectedDeviceList = fixture("GetConnectedDeviceList", "empty_result.json");
    let mut out = scrape();
    metrics::connected_devices(
        &mut out,
        &list,
        metrics::ClientSelection { expose_identifiers: false, max: 256 },
    );
    assert!(!out.encode().contains("linkhub_connected_devices{"), "{}", out.encode());
}
