//! Tests against the real ModemManager daemon (Debian's `modemmanager`, installed by CI) in
//! its test mode on a private bus, driving device-sim's fake AT modem. They check that the
//! property names, signatures and semantics the exporter assumes match the real daemon.
//!
//! Every wait is a bounded poll (up to 60 s) so a loaded 2-core machine only makes them
//! slower. Without the `ModemManager` binary each test says so and returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use device_sim::modem::{
    PrivateBus,
    at::{FakeAtModem, Scenario, lte},
    real_mm::{RealModemManager, port_names},
};
use exporter_core::{Exporter, Scrape, ServeOptions, testing::promtool_check_metrics};
use mm_exporter::{Flags, INFO, ModemManager, Target};

const LIMIT: Duration = Duration::from_secs(60);

fn skip() -> bool {
    if RealModemManager::available() {
        return false;
    }
    eprintln!("ModemManager is not installed: skipping the real-daemon test (CI installs it)");
    true
}

async fn probe(exporter: &ModemManager) -> (bool, String) {
    let mut out = Scrape::new("modemmanager", "all", Instant::now() + Duration::from_secs(10));
    let ok = exporter.probe(&Target::All, &mut out).await.is_ok();
    (ok, out.encode())
}

/// Probes until `check` accepts the output (at most [`LIMIT`]); returns the last output.
async fn probe_until(
    exporter: &ModemManager,
    what: &str,
    mm: &RealModemManager,
    check: impl Fn(bool, &str) -> bool,
) -> String {
    let start = Instant::now();
    loop {
        let (ok, text) = probe(exporter).await;
        if check(ok, &text) {
            return text;
        }
        if start.elapsed() > LIMIT {
            panic!(
                "timed out waiting for {what}; last scrape (ok={ok}):\n{text}\nModemManager log:\n{}",
                mm.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = anyhow::Result<T>>) -> T {
    match tokio::time::timeout(LIMIT * 2, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(err)) => panic!("{what}: {err:#}"),
        Err(_) => panic!("{what}: timed out"),
    }
}

struct Rig {
    bus: PrivateBus,
    _modem: FakeAtModem,
    mm: RealModemManager,
    ports: Vec<String>,
}

async fn rig(scenario: Scenario, tag: &str) -> Rig {
    let bus = PrivateBus::start().unwrap();
    let ports = port_names(tag);
    // The fake modem must listen before SetProfile.
    let modem = FakeAtModem::start(&ports, scenario).await.unwrap();
    let mm = within("start ModemManager", RealModemManager::start(&bus, LIMIT)).await;
    within("SetProfile", mm.set_profile("fake0", "generic", &ports)).await;
    Rig { bus, _modem: modem, mm, ports }
}

fn exporter(rig: &Rig, signal_rate: u32) -> ModemManager {
    ModemManager::new(Flags {
        bus_address: Some(rig.bus.address().to_owned()),
        signal_rate,
        ..Flags::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_lte_with_signal_polling() {
    if skip() {
        return;
    }
    let rig = rig(Scenario::RegisteredLte, "lte").await;
    let (path, id) = within("modem appears", rig.mm.wait_for_modem(LIMIT, &[])).await;
    within("Enable", rig.mm.enable(&path, LIMIT)).await;
    let exporter = exporter(&rig, 3);
    let sel = format!("device_id=\"{id}\"");
    let rsrp = format!("modemmanager_modem_signal_lte_rsrp_dbm{{{sel}}} {}", lte::RSRP_DBM);
    let rsrq = format!("modemmanager_modem_signal_lte_rsrq_db{{{sel}}} {}", lte::RSRQ_DB);
    let operator = format!(
        "modemmanager_modem_3gpp_operator_info{{{sel},operator_code=\"{}\",operator_name=\"{}\"}} 1",
        lte::OPERATOR_CODE,
        lte::OPERATOR_NAME
    );
    let text = probe_until(&exporter, "registered LTE with signal values", &rig.mm, |ok, t| {
        let state = t
            .contains(&format!("modemmanager_modem_state{{{sel},state=\"registered\"}} 1"))
            || t.contains(&format!("modemmanager_modem_state{{{sel},state=\"connected\"}} 1"));
        ok && state && t.contains(&rsrp) && t.contains(&rsrq) && t.contains(&operator)
    })
    .await;
    assert!(text.contains(&format!("modemmanager_signal_setup_success{{{sel}}} 1")), "{text}");
    assert!(text.contains(&format!("modemmanager_modem_signal_rate_seconds{{{sel}}} 3")), "{text}");
    assert!(
        text.contains(&format!(
            "modemmanager_modem_access_technology{{{sel},technology=\"lte\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "modemmanager_modem_3gpp_registration_state{{{sel},state=\"home\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("modemmanager_modem_signal_quality_ratio{{{sel}}} 0.64")),
        "{text}"
    );
    assert!(text.contains("modemmanager_info{version=\""), "{text}");
    // The generic AT plugin never reports LTE rssi/snr or 5G: absent, not 0.
    assert!(
        !text.contains("lte_rssi") && !text.contains("lte_snr") && !text.contains("nr5g"),
        "{text}"
    );
    assert!(!text.contains("/Modem/"), "{text}");
    assert!(
        text.contains(&format!("modemmanager_serving_cell_id{{{sel}}} {}", lte::CELL_ID)),
        "{text}"
    );
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "{findings}");
    }

    // The same over HTTP, through exporter-core's server.
    let server = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    let (status, body) =
        common::http_get(server.local_addr(), &format!("/probe?target={id}")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("modemmanager_up 1") && body.contains(&rsrp), "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_missing_is_failed_and_the_exporter_still_serves() {
    if skip() {
        return;
    }
    let rig = rig(Scenario::SimMissing, "nosim").await;
    let (_path, id) = within("modem appears", rig.mm.wait_for_modem(LIMIT, &[])).await;
    let exporter = exporter(&rig, 10);
    let sel = format!("device_id=\"{id}\"");
    let text = probe_until(&exporter, "failed / sim-missing", &rig.mm, |ok, t| {
        ok && t.contains(&format!("modemmanager_modem_state{{{sel},state=\"failed\"}} 1"))
            && t.contains(&format!(
                "modemmanager_modem_state_failed_reason{{{sel},state=\"sim-missing\"}} 1"
            ))
    })
    .await;
    assert!(text.contains(&format!("modemmanager_modem_state_code{{{sel}}} -1")), "{text}");
    // No Signal interface in the failed state: no setup attempt, no signal series.
    assert!(!text.contains("signal_setup_success") && !text.contains("modem_signal_lte"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_bearer_then_replug_under_the_same_device_id() {
    if skip() {
        return;
    }
    let rig = rig(Scenario::RegisteredLte, "replug").await;
    let (old_path, id) = within("modem appears", rig.mm.wait_for_modem(LIMIT, &[])).await;
    within("Enable", rig.mm.enable(&old_path, LIMIT)).await;
    let bearer = within("Simple.Connect", rig.mm.connect(&old_path, "internet")).await;
    assert!(bearer.contains("/Bearer/"), "{bearer}");
    let exporter = exporter(&rig, 10);
    let sel = format!("device_id=\"{id}\"");
    let connected =
        format!("modemmanager_bearer_connected{{{sel},apn=\"internet\",ip_type=\"ipv4\"}} 1");
    let text =
        probe_until(&exporter, "a connected bearer", &rig.mm, |ok, t| ok && t.contains(&connected))
            .await;
    assert!(
        text.contains(&format!("modemmanager_modem_state{{{sel},state=\"connected\"}} 1")),
        "{text}"
    );
    assert!(text.contains(&format!("modemmanager_bearer_connection_attempts_total{{{sel},apn=\"internet\",ip_type=\"ipv4\"}} 1")), "{text}");

    // Replug: SetProfile again with the same id replaces Modem/N by Modem/N+1.
    within("SetProfile again", rig.mm.set_profile("fake0", "generic", &rig.ports)).await;
    let (new_path, new_id) = within(
        "the replugged modem",
        rig.mm.wait_for_modem(LIMIT, std::slice::from_ref(&old_path)),
    )
    .await;
    assert_ne!(new_path, old_path);
    assert_eq!(new_id, id, "DeviceIdentifier is stable across a replug");
    let text = probe_until(&exporter, "only the new modem", &rig.mm, |ok, t| {
        ok && t.contains("modemmanager_modems 1")
            && t.contains(&sel)
            && !t.contains("modemmanager_bearer_")
            && !t.contains("state=\"connected\"} 1")
    })
    .await;
    assert!(text.contains(&format!("modemmanager_modem_info{{{sel},")), "{text}");
}
