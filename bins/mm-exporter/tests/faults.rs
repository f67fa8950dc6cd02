//! Fault injection: the exporter served by exporter-core, scraped over real loopback sockets,
//! against device-sim's fake ModemManager on a private `dbus-daemon`: the daemon leaving the
//! bus mid-run, replies slower than the scrape deadline, and a bus that is not there when the
//! exporter starts (and appears later).
//!
//! Every scrape (sent with `X-Prometheus-Scrape-Timeout-Seconds: 2`) answers in under 2.2 s
//! with `modemmanager_up 0` and the reason in the `&debug=true` trace, and the exporter
//! serves normal scrapes again once the daemon is back. One test runs the binary as a child
//! process to check the reason also reaches the log on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::has_line as has;
use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use device_sim::modem::{
    FakeModem, FakeModemManager, PrivateBus,
    tools::{DBUS_DAEMON, FAKE_MM, require},
};
use exporter_core::{RunningServer, ServeOptions, testing::ChildExporter};
use mm_exporter::{Flags, INFO, ModemManager};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MODEM: &str = "fa17000000000000000000000000000000000001";
const ANSWER_WITHIN: Duration = Duration::from_millis(2200);

/// `GET path` with the scrape-timeout header over HTTP/1.0: (status, body, elapsed).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nX-Prometheus-Scrape-Timeout-Seconds: 2\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let took = start.elapsed();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned(), took)
}

async fn serve(bus_address: &str) -> RunningServer {
    let flags = Flags { bus_address: Some(bus_address.to_owned()), ..Flags::default() };
    exporter_core::spawn(ModemManager::new(flags), ServeOptions::for_test(INFO)).await.unwrap()
}

/// A scrape and its trace, concurrently: both in time, `modemmanager_up 0`, the trace naming
/// every one of `reasons`, and no modem series.
async fn assert_down(server: &RunningServer, what: &str, reasons: &[&str]) {
    let addr = server.local_addr();
    let ((status, text, took), (tstatus, trace, ttook)) =
        tokio::join!(get(addr, "/metrics"), get(addr, "/probe?target=all&debug=true"));
    assert_eq!((status, tstatus), (200, 200), "{what}: {text}\n{trace}");
    assert!(took < ANSWER_WITHIN, "{what}: the scrape took {took:?}");
    assert!(ttook < ANSWER_WITHIN, "{what}: the debug scrape took {ttook:?}");
    assert!(has(&text, "modemmanager_up 0"), "{what}:\n{text}");
    assert!(trace.contains("up: 0"), "{what}:\n{trace}");
    for reason in reasons {
        assert!(trace.contains(reason), "{what}: the trace does not name {reason:?}:\n{trace}");
    }
    assert!(!text.contains(MODEM), "{what}: no modem series without a daemon:\n{text}");
}

/// A normal scrape: up 1 and the modem's series.
async fn assert_up(server: &RunningServer, what: &str) {
    let (status, text, took) = get(server.local_addr(), "/metrics").await;
    assert_eq!(status, 200, "{what}: {text}");
    assert!(took < ANSWER_WITHIN, "{what}: the scrape took {took:?}");
    assert!(has(&text, "modemmanager_up 1"), "{what}:\n{text}");
    assert!(text.contains(&format!("device_id=\"{MODEM}\"")), "{what}:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_disappears_mid_run_and_comes_back() {
    if !require("faults::daemon_disappears_mid_run_and_comes_back", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(MODEM)).await.unwrap();
    let server = serve(bus.address()).await;
    assert_up(&server, "before").await;

    fake.stop().await;
    assert_down(&server, "daemon gone", &["probe failed: GetManagedObjects", "ModemManager1"])
        .await;
    // Still down on the next scrape: nothing cached, nothing made up.
    assert_down(&server, "daemon still gone", &["GetManagedObjects"]).await;

    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(MODEM)).await.unwrap();
    assert_up(&server, "daemon back").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_replies_beyond_the_deadline() {
    if !require("faults::slow_replies_beyond_the_deadline", FAKE_MM) {
        return;
    }
    let bus = PrivateBus::start().unwrap();
    let fake = FakeModemManager::start(bus.address()).await.unwrap();
    fake.add_modem(FakeModem::lte(MODEM)).await.unwrap();
    let server = serve(bus.address()).await;
    assert_up(&server, "before").await;

    fake.set_delay(Duration::from_secs(5));
    assert_down(&server, "every reply slow", &["scrape deadline exceeded"]).await;

    // Only the second round (bearer and SIM GetAll) is slow: the modem-level data is
    // there, the slow collectors fail and say why.
    fake.set_delay(Duration::ZERO);
    fake.set_method_delay("GetAll", Duration::from_secs(5));
    let addr = server.local_addr();
    let ((_, text, took), (_, trace, _)) =
        tokio::join!(get(addr, "/metrics"), get(addr, "/probe?target=all&debug=true"));
    assert!(took < ANSWER_WITHIN, "the scrape took {took:?}");
    for c in ["bearers", "sims"] {
        let failed = format!("modemmanager_scrape_collector_success{{collector=\"{c}\"}} 0");
        assert!(has(&text, &failed), "{c}:\n{text}");
    }
    assert!(trace.contains("scrape deadline exceeded"), "{trace}");

    fake.set_method_delay("GetAll", Duration::ZERO);
    assert_up(&server, "fast again").await;
    server.shutdown().await;
}

/// A `dbus-daemon` started by this test on `socket` (killed on drop, by its handle).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(socket: &Path) -> Daemon {
    let child = Command::new(DBUS_DAEMON.path().expect("dbus-daemon (apt-get install dbus)"))
        .args(["--session", "--nofork", "--nopidfile", "--nosyslog"])
        .arg(format!("--address=unix:path={}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon (apt-get install dbus)");
    let daemon = Daemon(child);
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "dbus-daemon made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_not_there_at_start() {
    if !require("faults::bus_not_there_at_start", FAKE_MM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus");
    let address = format!("unix:path={}", socket.display());
    let server = serve(&address).await;
    assert_down(&server, "no bus", &["connect to D-Bus at unix:path="]).await;
    assert_down(&server, "still no bus", &["connect to D-Bus"]).await;

    let daemon = start_daemon(&socket);
    let fake = FakeModemManager::start(&address).await.unwrap();
    fake.add_modem(FakeModem::lte(MODEM)).await.unwrap();
    assert_up(&server, "bus and daemon up").await;

    // The bus goes away under a connected exporter, and comes back.
    fake.stop().await;
    drop(daemon);
    let _ = std::fs::remove_file(&socket);
    assert_down(&server, "bus gone", &["probe failed"]).await;
    let _daemon = start_daemon(&socket);
    let fake = FakeModemManager::start(&address).await.unwrap();
    fake.add_modem(FakeModem::lte(MODEM)).await.unwrap();
    assert_up(&server, "bus back").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reason_is_logged_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("no-bus-here").display());
    let exporter =
        ChildExporter::start(env!("CARGO_BIN_EXE_mm-exporter"), &["--bus-address", &address], &[]);
    let addr: SocketAddr = exporter.addr().parse().unwrap();
    let (status, text, took) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(took < ANSWER_WITHIN, "{took:?}");
    assert!(has(&text, "modemmanager_up 0"), "{text}");
    let wanted = |l: &str| l.contains("probe failed") && l.contains("connect to D-Bus");
    let logged = exporter.lines_until(Duration::from_secs(3), wanted);
    assert!(
        logged.iter().any(|l| wanted(l)),
        "no log line names the reason:\n{}",
        logged.join("\n")
    );
    assert!(!logged.iter().any(|l| l.contains("panicked")), "{}", logged.join("\n"));
}
