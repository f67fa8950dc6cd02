//! `--config-file` against device-sim's fake ModemManager on a private `dbus-daemon`: `/sd`
//! lists each modem with its `modem_labels`, a reload applies a good file and keeps the
//! running settings on a bad one, a reload retries a refused `Signal.Setup` at once, an
//! explicit flag wins over the file, and the binary refuses a file with an unknown key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use device_sim::modem::{
    FakeModem, FakeModemManager, PrivateBus,
    fake_mm::{UNAUTHORIZED, iface},
    tools::{FAKE_MM, require},
};
use exporter_core::{RunningServer, ServeOptions};
use mm_exporter::{Flags, INFO, ModemManager, setup::Backoff};
use serde_json::{Value, json};

const A: &str = "aaaa000000000000000000000000000000000001";
const B: &str = "bbbb000000000000000000000000000000000002";
const GONE: &str = "cccc000000000000000000000000000000000003";

fn flags(bus: &PrivateBus) -> Flags {
    Flags { bus_address: Some(bus.address().to_owned()), ..Flags::default() }
}

/// The config file in the bus's temporary directory.
fn config_path(bus: &PrivateBus) -> PathBuf {
    bus.dir().join("config.yml")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// An exporter for `text` as its config file, with `--bus-address` given explicitly.
fn exporter(bus: &PrivateBus, text: &str, explicit: &[&str]) -> ModemManager {
    let path = config_path(bus);
    write(&path, text);
    let mut explicit: Vec<String> = explicit.iter().map(|f| (*f).to_owned()).collect();
    explicit.push("--bus-address".to_owned());
    ModemManager::with_config(flags(bus), Some(path), explicit).unwrap()
}

async fn get(server: &RunningServer, path: &str) -> (u16, String) {
    common::http_get(server.local_addr(), path).await.unwrap()
}

async fn sd(server: &RunningServer) -> Value {
    let (status, body) = get(server, "/sd").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn group(host: &str, target: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("__metrics_path__".into(), "/probe".into());
    l.insert("__param_target".into(), target.into());
    l.insert("instance".into(), target.into());
    for (k, v) in labels {
        l.insert((*k).into(), (*v).into());
    }
    json!({"targets": [host], "labels": l})
}

fn rate(fake: &FakeModemManager, path: &str) -> Option<u32> {
    fake.property(path, iface::SIGNAL, "Rate").and_then(|v| u32::try_from(v).ok())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_lists_each_modem_with_its_labels() {
    if !require("config_file::sd_lists_each_modem_with_its_labels", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(A)).await.unwrap();
    fake.add_modem(FakeModem::sim_missing(B).at_index(4)).await.unwrap();
    let text = format!(
        "signal_rate: 0\nmodem_labels:\n  {A}:\n    site: attic\n    role: primary\n  {GONE}:\n    site: barn\n"
    );
    let server = exporter_core::spawn(exporter(&bus, &text, &[]), ServeOptions::for_test(INFO))
        .await
        .unwrap();
    let host = server.local_addr().to_string();

    // Every modem present, plus the configured one that is unplugged, each with its labels.
    assert_eq!(
        sd(&server).await,
        json!([
            group(&host, A, &[("role", "primary"), ("site", "attic")]),
            group(&host, B, &[]),
            group(&host, GONE, &[("site", "barn")]),
        ])
    );
    // Each target scrapes its modem; the unplugged one answers up 0.
    let (status, body) = get(&server, &format!("/probe?target={A}")).await;
    assert_eq!(status, 200);
    assert!(body.contains("modemmanager_up 1") && body.contains(A) && !body.contains(B), "{body}");
    let (status, body) = get(&server, &format!("/probe?target={GONE}")).await;
    assert_eq!(status, 200);
    assert!(body.contains("modemmanager_up 0"), "{body}");
    // The landing page names the configured modems.
    let (_, page) = get(&server, "/").await;
    assert!(page.contains(&format!("probe?target={A}")), "{page}");

    // Without the daemon /sd fails (Prometheus keeps the targets it had) instead of
    // answering a shorter list.
    fake.stop().await;
    let (status, body) = get(&server, "/sd").await;
    assert_eq!(status, 503, "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_good_file_and_keeps_the_running_settings_on_a_bad_one() {
    if !require(
        "config_file::reload_applies_a_good_file_and_keeps_the_running_settings_on_a_bad_one",
        FAKE_MM,
    ) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let path = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let first = format!("signal_rate: 10\nmodem_labels:\n  {A}:\n    site: attic\n");
    let server = exporter_core::spawn(exporter(&bus, &first, &[]), ServeOptions::for_test(INFO))
        .await
        .unwrap();
    let host = server.local_addr().to_string();
    assert_eq!(sd(&server).await, json!([group(&host, A, &[("site", "attic")])]));
    let (_, body) = get(&server, "/metrics").await;
    assert!(!body.contains("modem_identity_info"), "{body}");
    eventually("Signal.Setup at 10 s", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;

    // A good file: new labels, identifiers exposed and a new poll rate, all without a restart.
    let second = format!(
        "signal_rate: 20\nexpose_identifiers: true\nmodem_labels:\n  {A}:\n    site: cellar\n"
    );
    write(&config_path(&bus), &second);
    assert_eq!(server.reload().await, Ok(()));
    assert_eq!(sd(&server).await, json!([group(&host, A, &[("site", "cellar")])]));
    let (_, body) = get(&server, "/metrics").await;
    assert!(body.contains("modemmanager_modem_identity_info{"), "{body}");
    eventually("Signal.Setup at the reloaded 20 s", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(20)
    })
    .await;

    // A bad file (unknown key): the error names file, line and key; nothing changes.
    write(&config_path(&bus), &format!("{second}expose_identifier: false\n"));
    let err = server.reload().await.unwrap_err();
    assert!(err.contains("config.yml:6:"), "{err}");
    assert!(err.contains("unknown field `expose_identifier`"), "{err}");
    assert_eq!(sd(&server).await, json!([group(&host, A, &[("site", "cellar")])]));
    let (_, body) = get(&server, "/metrics").await;
    assert!(body.contains("modemmanager_modem_identity_info{"), "{body}");
    assert!(body.contains("modemmanager_exporter_config_last_reload_successful 0"), "{body}");
    // An invalid label is a bad file too.
    write(&config_path(&bus), &format!("modem_labels:\n  {A}:\n    instance: x\n"));
    let err = server.reload().await.unwrap_err();
    assert!(err.contains("reserved"), "{err}");
    assert_eq!(sd(&server).await, json!([group(&host, A, &[("site", "cellar")])]));
    assert_eq!(rate(&fake, &path), Some(20));

    // Fixed again: applied.
    write(&config_path(&bus), &format!("modem_labels:\n  {A}:\n    site: loft\n"));
    assert_eq!(server.reload().await, Ok(()));
    assert_eq!(sd(&server).await, json!([group(&host, A, &[("site", "loft")])]));
    let (_, body) = get(&server, "/metrics").await;
    assert!(!body.contains("modem_identity_info"), "back to the default: {body}");
    assert!(body.contains("modemmanager_exporter_config_last_reload_successful 1"), "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_retries_a_refused_signal_setup_at_once() {
    if !require("config_file::a_reload_retries_a_refused_signal_setup_at_once", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.set_setup_error(Some(UNAUTHORIZED));
    let path = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    let hour = Duration::from_secs(3600);
    let exporter = exporter(&bus, "signal_rate: 10\n", &[])
        .with_setup_backoff(Backoff { first: hour, max: hour });
    let server = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    let refused = format!("modemmanager_signal_setup_success{{device_id=\"{A}\"}} 0");
    eventually("the refusal", Duration::from_secs(20), || async {
        get(&server, "/metrics").await.1.contains(&refused)
    })
    .await;
    fake.set_setup_error(None);
    assert_eq!(rate(&fake, &path), Some(0));

    // polkit was fixed; the operator reloads: Signal.Setup runs now, not in an hour.
    assert_eq!(server.reload().await, Ok(()));
    eventually("Signal.Setup after the reload", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;
    let ok = format!("modemmanager_signal_setup_success{{device_id=\"{A}\"}} 1");
    assert!(get(&server, "/metrics").await.1.contains(&ok));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_flag_wins_over_the_file() {
    if !require("config_file::an_explicit_flag_wins_over_the_file", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    let path = fake.add_modem(FakeModem::lte(A)).await.unwrap();
    // --signal-rate 10 given explicitly beats the file's 30; the file's switch beats the
    // switch's default.
    let exporter = exporter(&bus, "signal_rate: 30\nexpose_location: true\n", &["--signal-rate"]);
    assert!(
        exporter
            .described_settings()
            .iter()
            .any(|(k, v)| k == "--expose-location" && v.starts_with("true (config file ")),
        "{:?}",
        exporter.described_settings()
    );
    exporter.start_watcher();
    let server = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    eventually("Signal.Setup at the flag's rate", Duration::from_secs(20), || async {
        rate(&fake, &path) == Some(10)
    })
    .await;
    let (_, body) = get(&server, "/metrics").await;
    assert!(body.contains("modemmanager_location_latitude_degrees{"), "{body}");
    server.shutdown().await;
}

#[test]
fn the_binary_refuses_a_bad_file_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    write(&path, "signal_rate: 10\nmodem_lables:\n  abc: {site: x}\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mm-exporter"))
        .args(["--listen-address", "127.0.0.1:0", "--config-file"])
        .arg(&path)
        .env_remove("MM_SIGNAL_RATE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mm-exporter started serving with a bad config file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}:2:", path.display())), "{stderr}");
    assert!(stderr.contains("unknown field `modem_lables`"), "{stderr}");
}
