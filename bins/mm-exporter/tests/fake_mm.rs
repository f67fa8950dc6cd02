//! End-to-end tests against device-sim's zbus fake ModemManager on a private `dbus-daemon`:
//! hot-plug and unplug, index gaps, missing keys, `Unauthorized`, slow daemons, restarts.
//!
//! Probes run on a [`Scrape`] directly; waits are bounded polls, never fixed sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use device_sim::modem::{
    FakeModem, FakeModemManager, PrivateBus,
    fake_mm::{UNAUTHORIZED, bearer_props, iface, value},
    tools::{FAKE_MM, require},
};
use exporter_core::{
    Exporter, Scrape, ServeOptions,
    testing::{assert_golden, promtool_check_metrics},
};
use mm_exporter::{Flags, INFO, ModemManager, Target, setup::Backoff};

const A: &str = "aaaa000000000000000000000000000000000001";
const B: &str = "bbbb000000000000000000000000000000000002";

fn flags(bus: &PrivateBus) -> Flags {
    Flags { bus_address: Some(bus.address().to_owned()), ..Flags::default() }
}

struct Probe {
    ok: bool,
    text: String,
    took: Duration,
}

async fn probe_with(exporter: &ModemManager, target: Target, timeout: Duration) -> Probe {
    let start = Instant::now();
    let mut out = Scrape::new("modemmanager", target.to_string(), start + timeout);
    // The core drops the probe at the deadline; do the same here.
    let result = tokio::time::timeout(timeout, exporter.probe(&target, &mut out)).await;
    Probe { ok: matches!(result, Ok(Ok(()))), text: out.encode(), took: start.elapsed() }
}

async fn probe(exporter: &ModemManager) -> Probe {
    probe_with(exporter, Target::All, Duration::from_secs(10)).await
}

/// Polls `check` every 50 ms until it returns true, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn rate(fake: &FakeModemManager, path: &str) -> Option<u32> {
    fake.property(path, iface::SIGNAL, "Rate").and_then(|v| u32::try_from(v).ok())
}

fn series(id: &str) -> String {
    format!("device_id=\"{id}\"")
}

/// The labels of the bearer at `path` of the modem `id` on APN `internet`, IPv4.
fn bearer_series(id: &str, path: &str) -> String {
    let index = path.rsplit('/').next().unwrap();
    format!("device_id=\"{id}\",bearer=\"{index}\",apn=\"internet\",ip_type=\"ipv4\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_plug_and_unplug_while_running() {
    if !require("fake_mm::hot_plug_and_unplug_while_running", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let path_a = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let exporter = ModemManager::new(flags(&bus));

    let first = probe(&exporter).await;
    assert!(first.ok, "{}", first.text);
    assert!(first.text.contains(&series(A)), "{}", first.text);
    assert!(first.text.contains("modemmanager_modems 1"), "{}", first.text);
    eventually("Signal.Setup on modem A", Duration::from_secs(20), || async {
        rate(&fake, &path_a) == Some(10)
    })
    .await;

    // Plug in B at Modem/2 while running, then unplug A: B must be set up without a restart.
    let path_b = fake.add_modem(FakeModem::lte(B).at_index(2)).await.unwrap();
    assert!(path_b.ends_with("/Modem/2"));
    eventually("Signal.Setup on the hot-plugged modem B", Duration::from_secs(20), || async {
        rate(&fake, &path_b) == Some(10)
    })
    .await;
    fake.remove_modem(&path_a).await.unwrap();

    let after = probe(&exporter).await;
    assert!(after.ok);
    assert!(
        !after.text.contains(&series(A)),
        "unplugged modem A still has series:\n{}",
        after.text
    );
    assert!(
        after
            .text
            .contains(&format!("modemmanager_modem_state{{{},state=\"registered\"}} 1", series(B))),
        "{}",
        after.text
    );
    assert!(after.text.contains("modemmanager_modems 1"), "{}", after.text);
    eventually("signal_setup_success for B", Duration::from_secs(20), || async {
        probe(&exporter)
            .await
            .text
            .contains(&format!("modemmanager_signal_setup_success{{{}}} 1", series(B)))
    })
    .await;
    assert_eq!(fake.calls("Setup"), 2, "one Setup per modem, none repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_gaps_and_objects_without_the_modem_interface() {
    if !require("fake_mm::index_gaps_and_objects_without_the_modem_interface", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_managed_object("/org/freedesktop/ModemManager1/Modem", Default::default())
        .await
        .unwrap();
    fake.add_modem(FakeModem::lte(A).at_index(3)).await.unwrap();
    fake.add_modem(FakeModem::sim_missing(B).at_index(7)).await.unwrap();
    let exporter = ModemManager::new(Flags { signal_rate: 0, ..flags(&bus) });

    let p = probe(&exporter).await;
    assert!(p.ok, "{}", p.text);
    assert!(p.text.contains("modemmanager_modems 2"), "{}", p.text);
    assert!(
        p.text.contains(&format!("modemmanager_modem_state_code{{{}}} 8", series(A))),
        "{}",
        p.text
    );
    assert!(
        p.text.contains(&format!("modemmanager_modem_state_code{{{}}} -1", series(B))),
        "{}",
        p.text
    );
    assert!(
        p.text.contains(&format!(
            "modemmanager_modem_state_failed_reason{{{},state=\"sim-missing\"}} 1",
            series(B)
        )),
        "{}",
        p.text
    );
    assert!(!p.text.contains("Modem/"), "path indices must not be labels:\n{}", p.text);
    // --signal-rate 0 leaves modems alone.
    assert_eq!(fake.calls("Setup"), 0);
    assert!(!p.text.contains("signal_setup_success"), "{}", p.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_interfaces_properties_and_keys_are_absent() {
    if !require("fake_mm::missing_interfaces_properties_and_keys_are_absent", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let modem = FakeModem::old_daemon(A)
        .without_interface(iface::LOCATION)
        .without_interface(iface::TIME)
        .without_property(iface::MODEM, "SignalQuality")
        .with_property(iface::MODEM, "PowerState", value("on"));
    let path = fake.add_modem(modem).await.unwrap();
    fake.set_signal(&path, "Lte", &[("rsrp", -101.5), ("rsrq", 0.0)]);
    fake.set_version(None);
    let exporter = ModemManager::new(Flags { signal_rate: 0, ..flags(&bus) });

    let p = probe(&exporter).await;
    assert!(p.ok, "{}", p.text);
    let id = series(A);
    assert!(
        p.text.contains(&format!("modemmanager_modem_signal_lte_rsrp_dbm{{{id}}} -101.5")),
        "{}",
        p.text
    );
    assert!(
        p.text.contains(&format!("modemmanager_modem_signal_lte_rsrq_db{{{id}}} 0")),
        "a real 0 is kept:\n{}",
        p.text
    );
    for absent in [
        "lte_snr",
        "lte_rssi",
        "nr5g",
        "packet_service_state",
        "signal_quality",
        "modem_power_state",
        "serving_cell_id",
        "timezone",
        "lifetime_rx_bytes",
        "connection_attempts",
        "sim_active",
        "modemmanager_info",
    ] {
        assert!(!p.text.contains(absent), "{absent} should be absent:\n{}", p.text);
    }
    assert!(
        p.text.contains(&format!(
            "modemmanager_bearer_rx_bytes_total{{{id},bearer=\"0\",apn=\"internet\",ip_type=\"ipv4\"}} 1000"
        )),
        "{}",
        p.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_setup_is_tolerated() {
    if !require("fake_mm::unauthorized_setup_is_tolerated", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.set_setup_error(Some(UNAUTHORIZED));
    fake.set_location_error(Some(UNAUTHORIZED));
    fake.add_modem(FakeModem::lte(A)).await.unwrap();
    fake.add_modem(FakeModem::lte(B)).await.unwrap();
    let exporter = ModemManager::new(flags(&bus));

    eventually("signal_setup_success 0 for both modems", Duration::from_secs(20), || async {
        let p = probe(&exporter).await;
        p.ok && [A, B].iter().all(|id| {
            p.text.contains(&format!("modemmanager_signal_setup_success{{{}}} 0", series(id)))
        })
    })
    .await;
    let p = probe(&exporter).await;
    assert!(p.ok);
    // Everything readable is still exported; the refused GetLocation only hides the cell.
    assert!(
        p.text.contains(&format!("modemmanager_modem_signal_lte_rsrp_dbm{{{}}} -95", series(A))),
        "{}",
        p.text
    );
    assert!(!p.text.contains("serving_cell_id"), "{}", p.text);
    // One attempt per modem and back-off step, not one per scrape.
    let calls = fake.calls("Setup");
    assert!((2..=4).contains(&calls), "{calls} Setup calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_daemon_is_bounded_by_the_scrape_deadline() {
    if !require("fake_mm::a_slow_daemon_is_bounded_by_the_scrape_deadline", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let exporter = ModemManager::new(Flags { signal_rate: 0, ..flags(&bus) });
    assert!(probe(&exporter).await.ok);

    // Slow bearer and SIM reads: modem-level series survive, the scrape answers in time.
    fake.set_method_delay("GetAll", Duration::from_secs(5));
    let p = probe_with(&exporter, Target::All, Duration::from_millis(1500)).await;
    assert!(p.took < Duration::from_millis(1600), "took {:?}", p.took);
    assert!(p.ok, "{}", p.text);
    assert!(
        p.text.contains(&format!("modemmanager_modem_state_code{{{}}} 8", series(A))),
        "{}",
        p.text
    );
    assert!(!p.text.contains("bearer_rx_bytes_total"), "{}", p.text);

    // An entirely slow daemon: the probe gives up by the deadline.
    fake.set_delay(Duration::from_secs(5));
    let p = probe_with(&exporter, Target::All, Duration::from_millis(1000)).await;
    assert!(p.took < Duration::from_millis(1100), "took {:?}", p.took);
    assert!(!p.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_down_restart_and_bus_down() {
    if !require("fake_mm::daemon_down_restart_and_bus_down", FAKE_MM) {
        return;
    }
    // No bus at all: the exporter still constructs and probes fail fast.
    let nowhere = Flags {
        bus_address: Some("unix:path=/nonexistent/mm-exporter-test".into()),
        ..Flags::default()
    };
    let p = probe(&ModemManager::new(nowhere)).await;
    assert!(!p.ok);
    assert!(p.took < Duration::from_secs(5));

    let bus = PrivateBus::start().unwrap();
    let exporter = ModemManager::new(flags(&bus));
    // Bus up, daemon down.
    assert!(!probe(&exporter).await.ok);

    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let path = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    eventually("the daemon to be scraped", Duration::from_secs(20), || async {
        probe(&exporter).await.text.contains(&series(A))
    })
    .await;
    eventually("Signal.Setup on A", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;

    // Restart: the new daemon's modem is set up again without restarting the exporter.
    fake.stop().await;
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let path = fake.add_modem(FakeModem::lte(B).at_index(0)).await.unwrap();
    eventually("Signal.Setup after the daemon restarted", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;
    let p = probe(&exporter).await;
    assert!(p.ok);
    assert!(p.text.contains(&series(B)) && !p.text.contains(&series(A)), "{}", p.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_targets_one_device_id() {
    if !require("fake_mm::probe_targets_one_device_id", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(A)).await.unwrap();
    fake.add_modem(FakeModem::lte(B)).await.unwrap();
    let exporter = ModemManager::new(Flags { signal_rate: 0, ..flags(&bus) });

    let p = probe_with(&exporter, Target::Device(B.into()), Duration::from_secs(10)).await;
    assert!(p.ok);
    assert!(p.text.contains(&series(B)) && !p.text.contains(&series(A)), "{}", p.text);
    let gone = probe_with(&exporter, "cccc".parse().unwrap(), Duration::from_secs(10)).await;
    assert!(!gone.ok);
    assert!(!gone.text.contains("device_id"), "{}", gone.text);
    assert!("all".parse::<Target>().unwrap() == Target::All);
    assert!("bad target".parse::<Target>().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_already_set_is_left_alone_and_scrape_matches_golden() {
    if !require("fake_mm::rate_already_set_is_left_alone_and_scrape_matches_golden", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(A).with_property(iface::SIGNAL, "Rate", value(10u32)))
        .await
        .unwrap();
    fake.add_modem(FakeModem::sim_missing(B)).await.unwrap();
    let exporter = ModemManager::new(flags(&bus));

    eventually("signal_setup_success 1", Duration::from_secs(20), || async {
        probe(&exporter).await.text.contains("modemmanager_signal_setup_success")
    })
    .await;
    let p = probe(&exporter).await;
    assert!(p.ok);
    assert_eq!(fake.calls("Setup"), 0, "Rate already matched --signal-rate");
    assert_golden(format!("{}/tests/golden/fake_mm.prom", env!("CARGO_MANIFEST_DIR")), &p.text);
    if let Some(findings) = promtool_check_metrics(&p.text) {
        assert!(findings.is_empty(), "{findings}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_over_http() {
    if !require("fake_mm::served_over_http", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(A)).await.unwrap();
    fake.add_modem(FakeModem::sim_missing(B).at_index(4)).await.unwrap();
    let server = exporter_core::spawn(ModemManager::new(flags(&bus)), ServeOptions::for_test(INFO))
        .await
        .unwrap();
    let addr = server.local_addr();

    let (status, body) = common::http_get(addr, "/metrics").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("modemmanager_up 1"), "{body}");
    assert!(body.contains(&series(A)) && body.contains(&series(B)), "{body}");
    if let Some(findings) = promtool_check_metrics(&body) {
        assert!(findings.is_empty(), "{findings}");
    }

    let (status, body) = common::http_get(addr, &format!("/probe?target={B}")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("modemmanager_up 1"), "{body}");
    assert!(body.contains(&series(B)) && !body.contains(&series(A)), "{body}");

    let (status, body) = common::http_get(addr, "/probe?target=0000").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("modemmanager_up 0"), "{body}");
    let (status, _) = common::http_get(addr, "/probe?target=has%20space").await.unwrap();
    assert_eq!(status, 400);
    server.shutdown().await;
}

/// What the benchmark counts through the fake's monitor: every probe makes the same round of
/// calls (the object list and the `GetAll`s, nothing repeated), and with a reply delay the
/// fake's busy time covers the waits but not the exporter's own work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_probe_is_one_round_and_busy_time_covers_the_delays() {
    if !require("fake_mm::each_probe_is_one_round_and_busy_time_covers_the_delays", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let path = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let exporter = ModemManager::new(flags(&bus));
    assert!(probe(&exporter).await.ok);
    eventually("Signal.Setup", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;
    // The watcher's one look at the modems when it starts (besides the probe's).
    eventually("the watcher's first round", Duration::from_secs(20), || async {
        fake.calls("GetManagedObjects") >= 2
    })
    .await;

    let monitor = fake.monitor();
    let mut rounds = Vec::new();
    for _ in 0..3 {
        monitor.reset();
        assert!(probe(&exporter).await.ok);
        rounds.push(monitor.calls());
    }
    assert!(rounds.iter().all(|r| *r == rounds[0]), "{rounds:?}");
    assert_eq!(rounds[0].get("GetManagedObjects"), Some(&1), "{rounds:?}");
    assert!(!rounds[0].contains_key("Setup"), "{rounds:?}");
    // The fake drops its busy guard just after sending the reply, which the exporter may
    // already have read: give it a moment.
    eventually("no call in flight", Duration::from_secs(5), || async {
        monitor.busy().in_flight() == 0
    })
    .await;

    monitor.reset();
    monitor.set_delay(Duration::from_millis(100));
    let slow = probe(&exporter).await;
    assert!(slow.ok, "{}", slow.text);
    let busy = monitor.busy().total();
    assert!(busy >= Duration::from_millis(100), "busy {busy:?}");
    assert!(busy <= slow.took, "busy {busy:?} within the probe's {:?}", slow.took);
}

/// Two bearers with the same APN and IP type (a second IPv4 context, or a bearer and its
/// replacement during a reconnect) each keep their own series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bearers_on_one_apn_and_ip_type_get_their_own_series() {
    if !require("fake_mm::two_bearers_on_one_apn_and_ip_type_get_their_own_series", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let mut modem = FakeModem::lte(A);
    modem.bearers.push(bearer_props("internet", 1, false));
    let path = fake.add_modem(modem).await.unwrap();
    let bearers = fake.bearers(&path);
    assert_eq!(bearers.len(), 2);
    fake.set_bearer_stats(&bearers[1], &[("rx-bytes", 7), ("attempts", 1), ("failed-attempts", 1)]);
    let exporter = ModemManager::new(Flags { signal_rate: 0, ..flags(&bus) });

    let p = probe(&exporter).await;
    assert!(p.ok, "{}", p.text);
    common::assert_no_duplicate_series(&p.text);
    let (one, two) = (bearer_series(A, &bearers[0]), bearer_series(A, &bearers[1]));
    for line in [
        format!("modemmanager_bearer_connected{{{one}}} 1"),
        format!("modemmanager_bearer_connected{{{two}}} 0"),
        format!("modemmanager_bearer_rx_bytes_total{{{one}}} 123456789"),
        format!("modemmanager_bearer_rx_bytes_total{{{two}}} 7"),
        format!("modemmanager_bearer_failed_connection_attempts_total{{{two}}} 1"),
        format!("modemmanager_modem_bearers{{{}}} 2", series(A)),
    ] {
        assert!(p.text.lines().any(|l| l == line), "missing {line}:\n{}", p.text);
    }
    if let Some(findings) = promtool_check_metrics(&p.text) {
        assert!(findings.is_empty(), "{findings}");
    }
}

/// A replug gives the modem a new object path and new bearer objects: the old bearers' series
/// go, the new ones appear under the same `device_id`, and nothing is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replugged_modem_keeps_no_series_of_its_old_bearers() {
    if !require("fake_mm::a_replugged_modem_keeps_no_series_of_its_old_bearers", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let old = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let old_bearer = fake.bearers(&old).remove(0);
    let exporter = ModemManager::new(Flags { signal_rate: 0, ..flags(&bus) });
    let before = probe(&exporter).await;
    let old_series = bearer_series(A, &old_bearer);
    assert!(
        before.text.contains(&format!("modemmanager_bearer_connected{{{old_series}}} 1")),
        "{}",
        before.text
    );

    fake.remove_modem(&old).await.unwrap();
    let new = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    assert_ne!(new, old);
    let new_bearer = fake.bearers(&new).remove(0);
    assert_ne!(new_bearer, old_bearer);
    let after = probe(&exporter).await;
    assert!(after.ok, "{}", after.text);
    common::assert_no_duplicate_series(&after.text);
    assert!(!after.text.contains(&old_series), "old bearer series remain:\n{}", after.text);
    let new_series = bearer_series(A, &new_bearer);
    assert!(
        after.text.contains(&format!("modemmanager_bearer_connected{{{new_series}}} 1")),
        "{}",
        after.text
    );
    assert!(after.text.contains("modemmanager_modems 1"), "{}", after.text);
    let connected = after.text.lines().filter(|l| l.starts_with("modemmanager_bearer_connected{"));
    assert_eq!(connected.count(), 1, "{}", after.text);
}

/// A `Signal.Setup` refused by polkit is tried again with back-off, without any scrape, and
/// the modem reports success once polkit allows it; scrapes in between add no calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signal_setup_is_retried_with_backoff() {
    if !require("fake_mm::a_refused_signal_setup_is_retried_with_backoff", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.set_setup_error(Some(UNAUTHORIZED));
    let path = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let exporter = ModemManager::new(flags(&bus));
    let refused = format!("modemmanager_signal_setup_success{{{}}} 0", series(A));
    eventually("the refusal to be reported", Duration::from_secs(20), || async {
        probe(&exporter).await.text.contains(&refused)
    })
    .await;
    // Scrapes do not retry on their own: at most the first back-off step passes meanwhile.
    for _ in 0..20 {
        assert!(probe(&exporter).await.ok);
    }
    let calls = fake.calls("Setup");
    assert!((1..=2).contains(&calls), "{calls} Setup calls");

    // polkit now allows it: the next retry (driven by the watcher, not by scrapes) succeeds.
    fake.set_setup_error(None);
    eventually("a retried Signal.Setup", Duration::from_secs(40), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;
    let p = probe(&exporter).await;
    assert!(
        p.text.contains(&format!("modemmanager_signal_setup_success{{{}}} 1", series(A))),
        "{}",
        p.text
    );
    let calls = fake.calls("Setup");
    assert!((2..=6).contains(&calls), "{calls} Setup calls: back-off, not one per scrape");
}

/// Without `dbus-daemon` (a `PATH` of an empty directory) a fake-daemon test fails under
/// `CI=true`, naming the package to install, and outside CI passes saying it skipped.
#[test]
fn a_missing_dbus_daemon_fails_under_ci_and_skips_loudly_elsewhere() {
    let (ok, out) = common::rerun_without_tools("probe_targets_one_device_id", "true");
    assert!(!ok, "under CI=true a missing dbus-daemon must fail the test:\n{out}");
    assert!(out.contains("apt-get install dbus"), "{out}");
    let (ok, out) = common::rerun_without_tools("probe_targets_one_device_id", "false");
    assert!(ok, "outside CI the test skips:\n{out}");
    assert!(out.contains("SKIPPED fake_mm::probe_targets_one_device_id"), "{out}");
}

/// The exporter's reload hook (`retry_signal_setup`) tries a refused setup again at once, even
/// when the back-off would wait an hour, and the back-off state is per object: a replaced
/// modem object is set up at once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_or_a_new_modem_object_retries_a_refused_setup_at_once() {
    if !require("fake_mm::a_reset_or_a_new_modem_object_retries_a_refused_setup_at_once", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.set_setup_error(Some(UNAUTHORIZED));
    let path = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let hour = Duration::from_secs(3600);
    let exporter =
        ModemManager::new(flags(&bus)).with_setup_backoff(Backoff { first: hour, max: hour });
    exporter.start_watcher();
    let refused = format!("modemmanager_signal_setup_success{{{}}} 0", series(A));
    eventually("the refusal to be reported", Duration::from_secs(20), || async {
        probe(&exporter).await.text.contains(&refused)
    })
    .await;
    fake.set_setup_error(None);
    for _ in 0..5 {
        assert!(probe(&exporter).await.text.contains(&refused));
    }
    assert_eq!(rate(&fake, &path), Some(0), "no retry before the hour is up");
    assert_eq!(fake.calls("Setup"), 1);

    exporter.retry_signal_setup();
    eventually("Signal.Setup right after the reset", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;
    let ok = format!("modemmanager_signal_setup_success{{{}}} 1", series(A));
    assert!(probe(&exporter).await.text.contains(&ok));

    // A refused modem replaced by a new object (replug) is tried at once, not after the hour.
    fake.set_setup_error(Some(UNAUTHORIZED));
    let b = fake.add_modem(FakeModem::lte(B)).await.unwrap();
    let refused_b = format!("modemmanager_signal_setup_success{{{}}} 0", series(B));
    eventually("B refused", Duration::from_secs(20), || async {
        probe(&exporter).await.text.contains(&refused_b)
    })
    .await;
    fake.set_setup_error(None);
    fake.remove_modem(&b).await.unwrap();
    let b2 = fake.add_modem(FakeModem::lte(B)).await.unwrap();
    assert_ne!(b, b2);
    eventually("Signal.Setup on the replaced object", Duration::from_secs(20), || async {
        rate(&fake, &b2) == Some(10)
    })
    .await;
}
