//! Render tests: hand-built snapshots → exposition text, compared with `tests/golden/*.prom`
//! (`UPDATE_GOLDEN=1` rewrites them) and linted with promtool. No D-Bus involved.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use exporter_core::{
    Scrape,
    testing::{assert_golden, promtool_check_metrics},
};
use mm_exporter::{
    metrics::{RenderOptions, render},
    model::{
        Bearer, BearerStats, ExtendedSignal, Gps, Location, Location3gpp, Modem, Modem3gpp,
        NetworkTimezone, SIGNAL_KEYS, SignalValue, Sim, Snapshot,
    },
};

const LTE_ID: &str = "3f1b6a2f0c9d4e5f60718293a4b5c6d7e8f90a1b";
const FAILED_ID: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807";

fn signal(values: &[(&str, &str, f64)]) -> Vec<SignalValue> {
    values
        .iter()
        .map(|(p, k, v)| SignalValue {
            key: SIGNAL_KEYS.iter().find(|s| s.property == *p && s.key == *k).unwrap(),
            value: *v,
        })
        .collect()
}

fn lte_modem() -> Modem {
    let mut m = Modem::new("/org/freedesktop/ModemManager1/Modem/3", LTE_ID);
    m.manufacturer = Some("FakeVendor".into());
    m.model = Some("FakeModem 4G".into());
    m.revision = Some("FW-1.2.3".into());
    m.hardware_revision = Some("HW-A".into());
    m.carrier_configuration = Some("default".into());
    m.plugin = Some("generic".into());
    m.drivers = Some(vec!["qmi_wwan".into(), "option".into()]);
    m.primary_port = Some("cdc-wdm0".into());
    m.ports = Some(vec![("cdc-wdm0".into(), 6), ("wwan0".into(), 2)]);
    m.equipment_identifier = Some("356938035643809".into());
    m.own_numbers = Some(vec!["+15555550100".into()]);
    m.state = Some(11);
    m.state_failed_reason = Some(0);
    m.power_state = Some(3);
    m.access_technologies = Some(16384 | 32768);
    m.signal_quality_percent = Some(71);
    m.signal_quality_recent = Some(true);
    m.unlock_required = Some(1);
    m.unlock_retries = Some(vec![(2, 3), (4, 10)]);
    m.max_bearers = Some(1);
    m.max_active_bearers = Some(1);
    m.max_active_multiplexed_bearers = Some(0);
    m.primary_sim_slot = Some(0);
    m.modem3gpp = Some(Modem3gpp {
        imei: Some("356938035643809".into()),
        registration_state: Some(1),
        operator_code: Some("00101".into()),
        operator_name: Some("FakeNet".into()),
        packet_service_state: Some(2),
    });
    m.signal = Some(ExtendedSignal {
        rate: Some(10),
        values: signal(&[
            ("Lte", "rssi", -65.0),
            ("Lte", "rsrq", -9.5),
            ("Lte", "rsrp", -95.0),
            ("Lte", "snr", 12.5),
            ("Lte", "error-rate", 1.5),
            ("Nr5g", "rsrq", -11.0),
            ("Nr5g", "rsrp", -88.25),
            ("Nr5g", "snr", 0.0),
        ]),
    });
    m.signal_setup_success = Some(true);
    m.location = Some(Location {
        enabled: Some(3),
        cell: Some(Location3gpp {
            mcc: "001".into(),
            mnc: "01".into(),
            lac: Some(0),
            cell_id: Some(0x83F7CD),
            tac: Some(0x31C5),
        }),
        gps: Some(Gps { latitude: Some(52.5), longitude: Some(13.25), altitude: Some(34.0) }),
    });
    m.stored_sms = Some(0);
    m.timezone = Some(NetworkTimezone { offset_minutes: Some(120), dst_offset_minutes: Some(60) });
    m.bearers_listed = Some(1);
    m.bearers = vec![Bearer {
        path: "/org/freedesktop/ModemManager1/Bearer/7".into(),
        apn: "internet".into(),
        ip_type: Some(1),
        interface: Some("wwan0".into()),
        connected: Some(true),
        suspended: Some(false),
        bearer_type: Some(1),
        ip4_method: Some(3),
        ip6_method: Some(0),
        connection_error: None,
        stats: BearerStats {
            rx_bytes: Some(123_456_789),
            tx_bytes: Some(9_876_543),
            duration_seconds: Some(3600),
            start_date: Some(1_700_000_000),
            attempts: Some(3),
            failed_attempts: Some(1),
            total_rx_bytes: Some(5_000_000_000),
            total_tx_bytes: Some(700_000_000),
            total_duration_seconds: Some(86_400),
            uplink_speed: Some(50_000_000),
            downlink_speed: Some(150_000_000),
        },
    }];
    m.sims = vec![Sim {
        path: "/org/freedesktop/ModemManager1/SIM/2".into(),
        slot: 0,
        active: Some(true),
        operator_identifier: Some("00101".into()),
        operator_name: Some("FakeSIM".into()),
        iccid: Some("8900100000000000001".into()),
        imsi: Some("001010000000001".into()),
        eid: Some(String::new()),
    }];
    m
}

/// A modem whose SIM is missing, as ModemManager 1.20 shows it: failed, no Signal,
/// Modem3gpp, Location or Time interface.
fn failed_modem() -> Modem {
    let mut m = Modem::new("/org/freedesktop/ModemManager1/Modem/5", FAILED_ID);
    m.manufacturer = Some("FakeVendor".into());
    m.model = Some("FakeModem 4G".into());
    m.plugin = Some("generic".into());
    m.state = Some(-1);
    m.state_failed_reason = Some(2);
    m.power_state = Some(3);
    m.access_technologies = Some(0);
    m.signal_quality_percent = Some(0);
    m.signal_quality_recent = Some(false);
    m.unlock_required = Some(0);
    m
}

fn scrape(snap: &Snapshot, opts: RenderOptions) -> String {
    let mut out = Scrape::new("modemmanager", "all", Instant::now() + Duration::from_secs(5));
    render(&mut out, snap, opts);
    out.encode()
}

fn golden(name: &str, text: &str) {
    assert_golden(format!("{}/tests/golden/{name}.prom", env!("CARGO_MANIFEST_DIR")), text);
    if let Some(findings) = promtool_check_metrics(text) {
        assert!(findings.is_empty(), "promtool on {name}: {findings}");
    }
}

#[test]
fn two_modems_golden() {
    let snap = Snapshot {
        daemon_version: Some("1.20.4".into()),
        modems: vec![lte_modem(), failed_modem()],
    };
    let text = scrape(&snap, RenderOptions::default());
    golden("two_modems", &text);
    // Personal data stays out without the flags.
    for secret in
        ["356938035643809", "001010000000001", "8900100000000000001", "15555550100", "52.5"]
    {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    // Path indices are never labels.
    assert!(!text.contains("Modem/3") && !text.contains("Bearer/7"), "{text}");
}

#[test]
fn identifiers_and_location_golden() {
    let snap = Snapshot { daemon_version: Some("1.20.4".into()), modems: vec![lte_modem()] };
    let opts = RenderOptions { expose_identifiers: true, expose_location: true };
    let text = scrape(&snap, opts);
    golden("exposed", &text);
    assert!(text.contains(r#"imsi="001010000000001""#), "{text}");
    assert!(text.contains("modemmanager_location_latitude_degrees{device_id=\"3f1b6a2f0c9d4e5f60718293a4b5c6d7e8f90a1b\"} 52.5"), "{text}");
}

#[test]
fn old_daemon_golden() {
    // ModemManager 1.12: no PacketServiceState, no Nr5g, no multiplexing, short Stats.
    let mut m = lte_modem();
    m.hardware_revision = None;
    m.max_active_multiplexed_bearers = None;
    m.primary_sim_slot = None;
    if let Some(g) = m.modem3gpp.as_mut() {
        g.packet_service_state = None;
    }
    m.signal = Some(ExtendedSignal {
        rate: Some(10),
        values: signal(&[("Lte", "rssi", -70.0), ("Lte", "rsrq", -10.0), ("Lte", "rsrp", -100.0)]),
    });
    m.bearers[0].stats = BearerStats {
        rx_bytes: Some(1000),
        tx_bytes: Some(2000),
        duration_seconds: Some(60),
        ..BearerStats::default()
    };
    m.sims[0].active = None;
    m.location = None;
    m.timezone = None;
    m.stored_sms = None;
    let snap = Snapshot { daemon_version: None, modems: vec![m] };
    let text = scrape(&snap, RenderOptions::default());
    golden("old_daemon", &text);
    for absent in [
        "packet_service_state",
        "nr5g",
        "multiplexed",
        "lifetime_rx_bytes",
        "connection_attempts",
        "uplink_speed",
        "sim_active",
        "modemmanager_info",
        "lte_snr",
        "serving_cell_id",
    ] {
        assert!(!text.contains(absent), "{absent} should be absent:\n{text}");
    }
}

#[test]
fn units_are_converted_and_zero_is_kept() {
    let snap = Snapshot { daemon_version: None, modems: vec![lte_modem()] };
    let text = scrape(&snap, RenderOptions::default());
    let id = format!("device_id=\"{LTE_ID}\"");
    for expected in [
        format!("modemmanager_modem_signal_quality_ratio{{{id}}} 0.71"),
        format!("modemmanager_modem_signal_lte_error_rate_ratio{{{id}}} 0.015"),
        format!("modemmanager_modem_signal_nr5g_snr_db{{{id}}} 0"),
        format!("modemmanager_modem_network_timezone_offset_seconds{{{id}}} 7200"),
        format!("modemmanager_serving_cell_id{{{id}}} 8648653"),
        format!(
            "modemmanager_bearer_downlink_speed_bytes_per_second{{{id},bearer=\"7\",apn=\"internet\",ip_type=\"ipv4\"}} 18750000"
        ),
        format!("modemmanager_modem_state{{{id},state=\"connected\"}} 1"),
        format!("modemmanager_modem_state{{{id},state=\"failed\"}} 0"),
        format!("modemmanager_modem_state_code{{{id}}} 11"),
        format!("modemmanager_messaging_stored_sms{{{id}}} 0"),
    ] {
        assert!(text.contains(&expected), "missing {expected}:\n{text}");
    }
}

#[test]
fn failed_state_is_signed_and_unknown_codes_are_visible() {
    let mut m = failed_modem();
    m.power_state = Some(9);
    let text =
        scrape(&Snapshot { daemon_version: None, modems: vec![m] }, RenderOptions::default());
    let id = format!("device_id=\"{FAILED_ID}\"");
    assert!(text.contains(&format!("modemmanager_modem_state_code{{{id}}} -1")), "{text}");
    assert!(
        text.contains(&format!("modemmanager_modem_state{{{id},state=\"failed\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "modemmanager_modem_state_failed_reason{{{id},state=\"sim-missing\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("modemmanager_modem_power_state{{{id},state=\"unknown-9\"}} 1")),
        "{text}"
    );
    assert!(!text.contains("modem_signal_lte"), "{text}");
    assert!(!text.contains("signal_setup_success"), "{text}");
}

#[test]
fn an_empty_daemon_renders_only_the_count() {
    let text = scrape(&Snapshot::default(), RenderOptions::default());
    assert_eq!(
        text,
        "# HELP modemmanager_modems Modems ModemManager manages that this scrape covers (with a device id).\n\
         # TYPE modemmanager_modems gauge\nmodemmanager_modems 0\n"
    );
}

#[test]
fn every_signal_key_and_a_bearer_error_golden() {
    // A 3G/2G/CDMA-capable modem reporting every key of every technology at once.
    let mut m = Modem::new("/org/freedesktop/ModemManager1/Modem/0", LTE_ID);
    m.signal = Some(ExtendedSignal {
        rate: Some(10),
        values: SIGNAL_KEYS
            .iter()
            .enumerate()
            .map(|(i, key)| SignalValue {
                key,
                value: -100.0 + f64::from(u8::try_from(i).unwrap()),
            })
            .collect(),
    });
    m.signal_setup_success = Some(false);
    let mut b = lte_modem().bearers.remove(0);
    b.connected = Some(false);
    b.interface = Some(String::new());
    b.connection_error = Some("org.freedesktop.ModemManager1.Error.MobileEquipment.Unknown".into());
    b.stats.start_date = Some(0);
    m.bearers = vec![b];
    let text =
        scrape(&Snapshot { daemon_version: None, modems: vec![m] }, RenderOptions::default());
    golden("all_signal_keys", &text);
    assert_eq!(text.matches("modemmanager_modem_signal_").count(), 3 * SIGNAL_KEYS.len() + 3);
    assert!(!text.contains("connection_start_time"), "start-date 0 means unknown:\n{text}");
}

#[test]
fn two_bearers_on_one_apn_and_ip_type_golden() {
    // A bearer and its replacement during a reconnect: same APN, same IP type.
    let mut m = lte_modem();
    let mut replacement = m.bearers[0].clone();
    replacement.path = "/org/freedesktop/ModemManager1/Bearer/8".into();
    replacement.connected = Some(false);
    replacement.interface = Some(String::new());
    replacement.stats =
        BearerStats { attempts: Some(1), failed_attempts: Some(1), ..BearerStats::default() };
    m.bearers.push(replacement);
    m.bearers_listed = Some(2);
    let text =
        scrape(&Snapshot { daemon_version: None, modems: vec![m] }, RenderOptions::default());
    common::assert_no_duplicate_series(&text);
    golden("two_bearers", &text);
    let l =
        |n: u32| format!("device_id=\"{LTE_ID}\",bearer=\"{n}\",apn=\"internet\",ip_type=\"ipv4\"");
    for line in [
        format!("modemmanager_bearer_connected{{{}}} 1", l(7)),
        format!("modemmanager_bearer_connected{{{}}} 0", l(8)),
        format!("modemmanager_bearer_connection_attempts_total{{{}}} 3", l(7)),
        format!("modemmanager_bearer_connection_attempts_total{{{}}} 1", l(8)),
        format!("modemmanager_modem_bearers{{device_id=\"{LTE_ID}\"}} 2"),
    ] {
        assert!(text.lines().any(|t| t == line), "missing {line}:\n{text}");
    }
}
