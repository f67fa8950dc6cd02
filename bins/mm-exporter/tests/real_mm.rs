//! Tests against the real ModemManager daemon (Debian's `modemmanager`, installed by CI) in
//! its test mode on a private bus, driving device-sim's fake AT modem. They check that the
//! property names, signatures and semantics the exporter assumes match the real daemon.
//!
//! Every wait is a bounded poll (up to 60 s) so a loaded 2-core machine only makes them
//! slower. Without `dbus-daemon`, `ModemManager` or `mmcli` each test fails under `CI=true`
//! with the `apt-get install` line to fix it, and elsewhere prints that it skipped.

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
    tools::{REAL_MM, require},
};
use exporter_core::{Exporter, Scrape, ServeOptions, testing::promtool_check_metrics};
use mm_exporter::{Flags, INFO, ModemManager, Target};

const LIMIT: Duration = Duration::from_secs(60);

/// False (after printing why) when the test must skip; fails the test under `CI=true`.
fn tools_present(test: &str) -> bool {
    require(&format!("real_mm::{test}"), REAL_MM)
}

/// The `bearer` label of a bearer object path (its index).
fn bearer_label(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
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
    if !tools_present("registered_lte_with_signal_polling") {
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
        let quality = format!("modemmanager_modem_signal_quality_ratio{{{sel}}} 0.64");
        ok && state
            && t.contains(&rsrp)
            && t.contains(&rsrq)
            && t.contains(&operator)
            && t.contains(&quality)
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
    let _ = capture_and_replay(&rig, "real-mm-registered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_missing_is_failed_and_the_exporter_still_serves() {
    if !tools_present("sim_missing_is_failed_and_the_exporter_still_serves") {
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
    let capture = capture_and_replay(&rig, "real-mm-sim-missing").await;
    assert!(capture.contains("failed: sim-missing") || capture.contains("StateFailedReason"));
}

/// Captures one scrape of the real daemon with `mm-exporter capture`, replays it with
/// device-sim's `DbusReplay` and asserts the replayed exposition equals the live one (less
/// durations), and that no identifier of the real daemon's modem is in the file. With
/// `UPDATE_CAPTURES=1` the file goes to `tests/captures/<name>.yml` (the corpus test then
/// compares its replay with `<name>.prom`). Returns the capture text.
async fn capture_and_replay(rig: &Rig, name: &str) -> String {
    use exporter_core::{
        Command,
        capture::{Capture, CaptureFormat, comparable},
    };
    async fn capture(address: &str) -> String {
        let mm = ModemManager::new(Flags {
            bus_address: Some(address.to_owned()),
            signal_rate: 0,
            ..Flags::default()
        });
        let mut opts = ServeOptions::for_test(INFO);
        opts.scrape_timeout = Duration::from_secs(10);
        opts.command = Command::Capture {
            target: Some("all".to_owned()),
            out: std::path::PathBuf::from("-"),
            format: CaptureFormat::Yaml,
        };
        let out = exporter_core::run_command(&mm, &opts).await;
        assert_eq!(out.exit_code, 0, "{out:?}");
        out.stdout
    }
    let text = capture(rig.bus.address()).await;
    let live = Capture::from_slice(text.as_bytes()).unwrap();
    let replay = device_sim::modem::replay::DbusReplay::start(&live, None).await.unwrap();
    let replayed = Capture::from_slice(capture(replay.address()).await.as_bytes()).unwrap();
    replay.stop().await;
    assert_eq!(comparable(&replayed.exposition), comparable(&live.exposition), "{name}:\n{text}");
    for id in ["356938035643809", "001010000000001"] {
        assert!(!text.contains(id), "{name}: the capture holds {id}");
    }
    let ids = live.exposition.lines().filter(|l| l.contains("device_id=")).count();
    assert!(ids > 0, "{name}: no modem series in the capture:\n{text}");
    if std::env::var_os("UPDATE_CAPTURES").is_some_and(|v| v == "1") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
        std::fs::write(dir.join(format!("{name}.yml")), &text).unwrap();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_bearer_then_replug_under_the_same_device_id() {
    if !tools_present("connected_bearer_then_replug_under_the_same_device_id") {
        return;
    }
    let rig = rig(Scenario::RegisteredLte, "replug").await;
    let (old_path, id) = within("modem appears", rig.mm.wait_for_modem(LIMIT, &[])).await;
    within("Enable", rig.mm.enable(&old_path, LIMIT)).await;
    let bearer = within("Simple.Connect", rig.mm.connect(&old_path, "internet")).await;
    assert!(bearer.contains("/Bearer/"), "{bearer}");
    let exporter = exporter(&rig, 10);
    let sel = format!("device_id=\"{id}\"");
    let bsel =
        format!("{sel},bearer=\"{}\",apn=\"internet\",ip_type=\"ipv4\"", bearer_label(&bearer));
    let connected = format!("modemmanager_bearer_connected{{{bsel}}} 1");
    let text =
        probe_until(&exporter, "a connected bearer", &rig.mm, |ok, t| ok && t.contains(&connected))
            .await;
    assert!(
        text.contains(&format!("modemmanager_modem_state{{{sel},state=\"connected\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("modemmanager_bearer_connection_attempts_total{{{bsel}}} 1")),
        "{text}"
    );
    common::assert_no_duplicate_series(&text);

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
    common::assert_no_duplicate_series(&text);
}

/// Two bearers on the same APN and IP type (a connected one and a second context created with
/// mmcli) each get their own series; after a replug (new `Modem/N`) and a new connection, only
/// the new bearer's series remain and nothing is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearers_on_one_apn_are_distinct_and_a_replug_drops_the_old_ones() {
    if !tools_present("bearers_on_one_apn_are_distinct_and_a_replug_drops_the_old_ones") {
        return;
    }
    let rig = rig(Scenario::RegisteredLte, "bearers").await;
    let (old_path, id) = within("modem appears", rig.mm.wait_for_modem(LIMIT, &[])).await;
    within("Enable", rig.mm.enable(&old_path, LIMIT)).await;
    // Two bearers with the same settings (Simple.Connect would reuse the first one).
    let first = within("mmcli --create-bearer", rig.mm.create_bearer(&old_path, "internet")).await;
    let second = within("mmcli --create-bearer", rig.mm.create_bearer(&old_path, "internet")).await;
    assert_ne!(first, second);
    within("mmcli -b --connect", rig.mm.connect_bearer(&first)).await;
    let listed = within("Modem.Bearers", rig.mm.bearers(&old_path)).await;
    assert!(listed.contains(&first) && listed.contains(&second), "{listed:?}");

    let exporter = exporter(&rig, 10);
    let sel = format!("device_id=\"{id}\"");
    let labels = |bearer: &str| {
        format!("{sel},bearer=\"{}\",apn=\"internet\",ip_type=\"ipv4\"", bearer_label(bearer))
    };
    let (one, two) = (labels(&first), labels(&second));
    let text = probe_until(&exporter, "both bearers on APN internet", &rig.mm, |ok, t| {
        ok && t.contains(&format!("modemmanager_bearer_connected{{{one}}} 1"))
            && t.contains(&format!("modemmanager_bearer_connected{{{two}}} 0"))
    })
    .await;
    common::assert_no_duplicate_series(&text);
    for metric in ["bearer_connection_attempts_total", "bearer_lifetime_rx_bytes_total"] {
        assert!(text.contains(&format!("modemmanager_{metric}{{{one}}} ")), "{metric}\n{text}");
        assert!(text.contains(&format!("modemmanager_{metric}{{{two}}} ")), "{metric}\n{text}");
    }
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "{findings}");
    }

    // Replug, then connect the new modem object: a third bearer on the same APN.
    within("SetProfile again", rig.mm.set_profile("fake0", "generic", &rig.ports)).await;
    let (new_path, new_id) = within(
        "the replugged modem",
        rig.mm.wait_for_modem(LIMIT, std::slice::from_ref(&old_path)),
    )
    .await;
    assert_ne!(new_path, old_path);
    assert_eq!(new_id, id);
    within("Enable the new modem", rig.mm.enable(&new_path, LIMIT)).await;
    let third = within("Simple.Connect again", rig.mm.connect(&new_path, "internet")).await;
    assert!(third != first && third != second, "{third}");
    let three = labels(&third);
    let text = probe_until(&exporter, "only the new modem's bearer", &rig.mm, |ok, t| {
        ok && t.contains("modemmanager_modems 1")
            && t.contains(&format!("modemmanager_bearer_connected{{{three}}} 1"))
    })
    .await;
    common::assert_no_duplicate_series(&text);
    for old in [&one, &two] {
        assert!(!text.contains(old.as_str()), "series of an old bearer ({old}) remain:\n{text}");
    }
    let bearer_series =
        text.lines().filter(|l| l.starts_with("modemmanager_bearer_connected{")).count();
    assert_eq!(bearer_series, 1, "{text}");
    if let Some(findings) = promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "{findings}");
    }
}

/// Without `dbus-daemon` and `mmcli` (a `PATH` of an empty directory), a real-daemon test
/// fails under `CI=true`, naming what to install, and outside CI passes saying it skipped.
#[test]
fn missing_tools_fail_under_ci_and_skip_loudly_elsewhere() {
    let test = "sim_missing_is_failed_and_the_exporter_still_serves";
    let (ok, out) = common::rerun_without_tools(test, "true");
    assert!(!ok, "under CI=true a missing mmcli/dbus-daemon must fail the test:\n{out}");
    assert!(out.contains("apt-get install") && out.contains("mmcli"), "{out}");
    assert!(out.contains("dbus-daemon"), "{out}");
    let (ok, out) = common::rerun_without_tools(test, "false");
    assert!(ok, "outside CI the test skips:\n{out}");
    assert!(out.contains("SKIPPED real_mm::"), "{out}");
}
