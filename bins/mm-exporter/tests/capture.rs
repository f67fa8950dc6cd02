//! D-Bus round trips per scrape (issue 15), and `mm-exporter check` / `capture` / replay
//! (issue 17) against the fake ModemManager on a private bus.
//!
//! - Round trips: the fake counts every method call by member; a steady scrape of one modem
//!   (one bearer, one SIM) costs `GetManagedObjects` + one `GetAll` (the bearer), N modems
//!   cost 1 + their bearers. The SIM and the daemon version are read again after
//!   `--static-ttl` and after the daemon restarted.
//! - `check`: healthy (exit 0, model/firmware facts, state quirk), a failed modem (its reason),
//!   ModemManager missing (exit 1, "ModemManager is not running").
//! - `capture`: no identifier of the fake in the file; its replay (device-sim's `DbusReplay`,
//!   a fake ModemManager answering the recorded calls) gives the live exposition.
//! - The corpus: every `tests/captures/<name>.yml` is replayed and compared with
//!   `tests/captures/<name>.prom` (`UPDATE_GOLDEN=1` rewrites those);
//!   `UPDATE_CAPTURES=1 cargo test -p mm-exporter --test capture` takes the simulator's
//!   captures again. Adding a user's capture is one `.yml` file and its `.prom` golden.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use device_sim::modem::{
    FakeModem, FakeModemManager, PrivateBus,
    fake_mm::{Props, iface, value},
    replay::DbusReplay,
    tools::{FAKE_MM, require},
};
use exporter_core::{
    Command, CommandOutput, Exporter as _, Scrape, ServeOptions,
    capture::{Capture, CaptureFormat, comparable},
    testing::assert_golden,
};
use mm_exporter::{Flags, INFO, ModemManager, Target, statics::Ttl};

const MODEM: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const MODEM2: &str = "beef0000beef0000beef0000beef0000beef0002";
const EID: &str = "89049032000001000000012345678901";

fn flags(bus: &str, extra: impl FnOnce(&mut Flags)) -> Flags {
    // signal_rate 0: no Signal.Setup watcher, so the counts and expositions are the scrape's.
    let mut f = Flags { bus_address: Some(bus.to_owned()), signal_rate: 0, ..Flags::default() };
    extra(&mut f);
    f
}

/// The calls of the fake since the last reset, by member, and their total.
fn calls(fake: &FakeModemManager) -> (BTreeMap<String, u64>, u64) {
    let calls = fake.monitor().calls();
    let total = calls.values().sum();
    (calls, total)
}

/// One probe of every modem: the exporter's own series.
async fn scrape(mm: &ModemManager) -> String {
    let mut out = Scrape::new("modemmanager", "all", Instant::now() + Duration::from_secs(5));
    mm.probe(&Target::All, &mut out).await.unwrap();
    out.encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_modem_costs_two_round_trips_per_steady_scrape() {
    if !require("capture::one_modem_costs_two_round_trips_per_steady_scrape", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(MODEM)).await.unwrap();
    let mm = ModemManager::new(flags(bus.address(), |_| {}));
    let monitor = fake.monitor();

    let first = scrape(&mm).await;
    let (by_member, total) = calls(&fake);
    // GetManagedObjects, GetAll Manager (version), GetAll Bearer, GetAll Sim. The modem's
    // Location property lacks the 3GPP part, so GetLocation too.
    assert_eq!(by_member.get("GetManagedObjects"), Some(&1), "{by_member:?}");
    assert_eq!(by_member.get("GetAll"), Some(&3), "{by_member:?}");
    assert_eq!(total, 5, "first scrape: {by_member:?}");
    assert!(first.contains("modemmanager_sim_active{"), "{first}");

    for n in 0..3 {
        monitor.reset();
        let text = scrape(&mm).await;
        let (by_member, _) = calls(&fake);
        assert_eq!(by_member.get("GetManagedObjects"), Some(&1), "scrape {n}: {by_member:?}");
        assert_eq!(by_member.get("GetAll"), Some(&1), "scrape {n}: only the bearer: {by_member:?}");
        // Cached SIM and version still appear on every scrape, and the same.
        assert_eq!(comparable(&text), comparable(&first), "scrape {n}");
    }
    // The 3GPP location needs GetLocation (the Location property lacks it): one more call,
    // which the fake's default modem needs. A modem whose property has it costs 2.
    monitor.reset();
    let _ = scrape(&mm).await;
    let (by_member, total) = calls(&fake);
    assert_eq!(total, 2 + by_member.get("GetLocation").copied().unwrap_or(0), "{by_member:?}");

    // The same modem without a 3GPP location source: exactly 2.
    let bus2 = PrivateBus::start().unwrap();
    let fake2 = FakeModemManager::start(bus2.address()).await.unwrap();
    fake2
        .add_modem(FakeModem::lte(MODEM).with_property(iface::LOCATION, "Enabled", value(0u32)))
        .await
        .unwrap();
    let mm2 = ModemManager::new(flags(bus2.address(), |_| {}));
    let _ = scrape(&mm2).await;
    fake2.monitor().reset();
    let _ = scrape(&mm2).await;
    let (by_member, total) = calls(&fake2);
    assert_eq!(total, 2, "one modem, one bearer, one SIM: {by_member:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_modems_cost_one_plus_their_bearers() {
    if !require("capture::n_modems_cost_one_plus_their_bearers", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let mut bearers = 0u64;
    for i in 0..3u32 {
        let mut m = FakeModem::lte(&format!("{:040x}", 0xabc0 + i)).with_property(
            iface::LOCATION,
            "Enabled",
            value(0u32),
        );
        for _ in 0..i {
            m.bearers.push(device_sim::modem::fake_mm::bearer_props("ims", 2, false));
        }
        bearers += u64::from(i) + 1;
        fake.add_modem(m).await.unwrap();
    }
    let mm = ModemManager::new(flags(bus.address(), |_| {}));
    let _ = scrape(&mm).await;
    let (by_member, total) = calls(&fake);
    assert_eq!(total, 1 + 1 + bearers + 3, "first scrape: version, bearers, SIMs: {by_member:?}");
    fake.monitor().reset();
    let text = scrape(&mm).await;
    let (by_member, total) = calls(&fake);
    assert_eq!(total, 1 + bearers, "steady: {by_member:?}");
    assert!(total <= 1 + 2 * bearers);
    assert_eq!(text.matches("modemmanager_sim_active{").count(), 3, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_facts_are_read_again_after_the_ttl_and_a_daemon_restart() {
    if !require("capture::cached_facts_are_read_again_after_the_ttl_and_a_daemon_restart", FAKE_MM)
    {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let modem = FakeModem::lte(MODEM).with_property(iface::LOCATION, "Enabled", value(0u32));
    fake.add_modem(modem.clone()).await.unwrap();

    // --static-ttl 0s: the SIM every scrape (the version still once per daemon).
    let mm = ModemManager::new(flags(bus.address(), |f| f.static_ttl = Ttl(Duration::ZERO)));
    let _ = scrape(&mm).await;
    fake.monitor().reset();
    let _ = scrape(&mm).await;
    assert_eq!(calls(&fake).1, 3, "GetManagedObjects, bearer, SIM: {:?}", calls(&fake).0);

    // A daemon restart (a new unique name): version and SIM read again at once, and the new
    // daemon's values are the ones exported.
    let mm = ModemManager::new(flags(bus.address(), |_| {}));
    let _ = scrape(&mm).await;
    fake.stop().await;
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.set_version(Some("1.24.0"));
    fake.add_modem(modem).await.unwrap();
    // The new daemon numbers its objects from 0 again: the same SIM path, a new daemon.
    let sim = "/org/freedesktop/ModemManager1/SIM/0";
    fake.set_property(sim, iface::SIM, "OperatorName", value("NewSIM"));
    fake.monitor().reset();
    let text = scrape(&mm).await;
    let (by_member, total) = calls(&fake);
    assert_eq!(total, 4, "GetManagedObjects, version, bearer, SIM: {by_member:?}");
    assert!(text.contains("version=\"1.24.0\""), "{text}");
    assert!(text.contains("NewSIM"), "{text}");
}

// ---- check and capture ----

async fn run(mm: &ModemManager, command: Command) -> CommandOutput {
    let mut opts = ServeOptions::for_test(INFO);
    opts.scrape_timeout = Duration::from_secs(5);
    opts.command = command;
    exporter_core::run_command(mm, &opts).await
}

async fn check(mm: &ModemManager, target: Option<&str>) -> CommandOutput {
    run(mm, Command::Check { target: target.map(str::to_owned), json: false }).await
}

async fn capture_text(mm: &ModemManager) -> String {
    let out = run(
        mm,
        Command::Capture {
            target: Some("all".to_owned()),
            out: PathBuf::from("-"),
            format: CaptureFormat::Yaml,
        },
    )
    .await;
    assert!(out.exit_code <= 1, "{out:?}");
    out.stdout
}

/// The healthy modem with every identifier the fake can produce (an EID too).
fn healthy_modem(id: &str) -> FakeModem {
    let mut m = FakeModem::lte(id);
    if let Some(Some(sim)) = m.sims.first_mut() {
        sim.insert("Eid".to_owned(), value(EID));
    }
    m
}

/// Every identifier the fake can put on the bus for [`healthy_modem`].
const IDENTIFIERS: &[&str] = &[
    MODEM,
    "356938035643809",
    "+15555550100",
    "15555550100",
    "8900100000000000001",
    "001010000000001",
    EID,
    "10.0.0.2",
    "52.5",
    "13.25",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_healthy_failed_and_missing() {
    if !require("capture::check_healthy_failed_and_missing", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(healthy_modem(MODEM)).await.unwrap();
    let mm = ModemManager::new(flags(bus.address(), |_| {}));
    let out = check(&mm, None).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    for want in [&format!("modem {MODEM} model"), "firmware", "state registered", "1.20.4"] {
        assert!(out.stdout.contains(want), "check does not say {want:?}:\n{}", out.stdout);
    }

    fake.add_modem(FakeModem::sim_missing(MODEM2)).await.unwrap();
    let out = check(&mm, Some("all")).await;
    assert!(out.stdout.contains(&format!("modem {MODEM2} failed: sim-missing")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("modem {MODEM2}: state failed")), "{}", out.stdout);

    fake.stop().await;
    let out = check(&mm, Some("all")).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("ModemManager is not running"), "{text}");
    // Without --target the modems cannot even be listed: the same words (exit 2 from the
    // core, which treats a failed target listing as "nothing to do").
    let out = check(&mm, None).await;
    assert_ne!(out.exit_code, 0, "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("ModemManager is not running"), "{text}");
}

/// Takes a capture of the bus at `bus` and checks that its replay gives the same exposition.
async fn capture_and_replay(bus: &str, what: &str) -> (String, Capture) {
    let mm = ModemManager::new(flags(bus, |_| {}));
    let text = capture_text(&mm).await;
    let capture = Capture::from_slice(text.as_bytes()).unwrap();
    let replayed = replay(&capture).await;
    assert_eq!(comparable(&replayed), comparable(&capture.exposition), "{what}:\n{text}");
    (text, capture)
}

/// The exposition of a fresh exporter scraping a replay of `capture` (the whole exposition
/// the core serves, as `capture` recorded it: taken with `capture` against the replay).
async fn replay(capture: &Capture) -> String {
    let replay = DbusReplay::start(capture, None).await.unwrap();
    let mm = ModemManager::new(flags(replay.address(), |_| {}));
    let text = capture_text(&mm).await;
    replay.stop().await;
    Capture::from_slice(text.as_bytes()).unwrap().exposition
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_hide_identifiers_and_replay_to_the_live_exposition() {
    if !require("capture::captures_hide_identifiers_and_replay_to_the_live_exposition", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(healthy_modem(MODEM)).await.unwrap();
    fake.add_modem(FakeModem::sim_missing(MODEM2)).await.unwrap();
    let (text, capture) = capture_and_replay(bus.address(), "healthy and failed").await;
    let leaks: Vec<&&str> =
        IDENTIFIERS.iter().chain([&MODEM2]).filter(|id| text.contains(**id)).collect();
    assert!(leaks.is_empty(), "the capture holds {leaks:?}:\n{text}");
    assert!(capture.exchanges.len() >= 5, "{text}");
    assert!(text.contains("GetManagedObjects"), "{text}");

    // With identifiers exported, they are still hidden (the placeholders in the series).
    let mm = ModemManager::new(flags(bus.address(), |f| {
        f.expose_identifiers = true;
        f.expose_location = true;
    }));
    let text = capture_text(&mm).await;
    for id in IDENTIFIERS {
        assert!(!text.contains(id), "the capture with identifiers holds {id}:\n{text}");
    }
    let capture = Capture::from_slice(text.as_bytes()).unwrap();
    assert!(capture.exposition.contains("modemmanager_up 1"), "{text}");

    // ModemManager missing: the replay leaves the name unowned, the exporter says so again.
    fake.stop().await;
    let (text, _) = capture_and_replay(bus.address(), "ModemManager missing").await;
    assert!(text.contains("ServiceUnknown"), "{text}");
}

// ---- the corpus ----

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

/// The simulator scenarios of the corpus: name → the modems on the fake.
fn scenarios() -> Vec<(&'static str, Vec<FakeModem>)> {
    vec![
        ("normal", vec![healthy_modem(MODEM)]),
        ("failed-modem", vec![FakeModem::sim_missing(MODEM2)]),
        ("old-daemon", vec![FakeModem::old_daemon(MODEM)]),
        ("no-modem", vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_replays_to_its_goldens() {
    if !require("capture::corpus_replays_to_its_goldens", FAKE_MM) {
        return;
    }
    if std::env::var_os("UPDATE_CAPTURES").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(captures_dir()).unwrap();
        for (name, modems) in scenarios() {
            let bus = PrivateBus::start().unwrap();
            let fake = FakeModemManager::start(bus.address()).await.unwrap();
            for m in modems {
                fake.add_modem(m).await.unwrap();
            }
            let (text, _) = capture_and_replay(bus.address(), name).await;
            std::fs::write(captures_dir().join(format!("{name}.yml")), text).unwrap();
            fake.stop().await;
        }
        // ModemManager not running at all.
        let bus = PrivateBus::start().unwrap();
        let (text, _) = capture_and_replay(bus.address(), "mm-missing").await;
        std::fs::write(captures_dir().join("mm-missing.yml"), text).unwrap();
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the corpus: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for id in IDENTIFIERS.iter().chain([&MODEM2]) {
            assert!(!text.contains(id), "{} holds {id}", file.display());
        }
        // Compared with the golden only: the recorded exposition holds the HELP texts of the
        // exporter version that took it (replay == live is checked when a capture is taken).
        let capture = Capture::from_slice(text.as_bytes()).unwrap();
        let replayed = replay(&capture).await;
        assert_golden(file.with_extension("prom"), &comparable(&replayed));
    }
}

#[test]
fn props_type_is_the_fakes() {
    // Keeps the import of Props honest: the fake's SIM properties are a Props map.
    let p: Props = device_sim::modem::fake_mm::sim_props();
    assert!(p.contains_key("Imsi"));
}
