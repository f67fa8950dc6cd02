//! Issue 15: the calls after the login go out at most `--device-concurrency` at once, a warm
//! scrape makes few device requests, and the static facts are cached for `--static-ttl`
//! and read again after a restart.
//!
//! The overlap is measured on the simulator's side: every request is "in flight" from its
//! arrival until its answer (its 50 ms latency included), and a sampler reads that count
//! every millisecond while the probe runs. No timing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use argh::FromArgs;
use device_sim::{
    http::{HttpDevice, SimServer},
    linkhub::{Linkhub as Sim, Model},
};
use exporter_core::{Exporter, Scrape};
use linkhub_exporter::{Flags, Linkhub, Target};

/// A temporary password file, removed when the guard drops.
fn password_file(password: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().prefix("linkhub-conc-").tempfile().unwrap();
    std::fs::write(file.path(), format!("{password}\n")).unwrap();
    file
}

fn exporter(target: &str, extra: &[&str]) -> Linkhub {
    let file = password_file("admin");
    let mut args = vec!["--target", target, "--password-file", file.path().to_str().unwrap()];
    args.extend(extra);
    Linkhub::new(Flags::from_args(&["linkhub-exporter"], &args).unwrap()).unwrap()
}

async fn sim(device: Sim) -> (Arc<Sim>, SimServer) {
    let device = Arc::new(device);
    let server = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (device, server)
}

async fn probe(ex: &Linkhub, url: &str) -> String {
    let target: Target = url.parse().unwrap();
    let mut out = Scrape::new("linkhub", url, Instant::now() + Duration::from_secs(10));
    ex.probe(&target, &mut out).await.unwrap();
    out.encode()
}

/// A probe while a sampler records the most requests the simulator had in flight at once.
async fn probe_sampled(ex: &Linkhub, server: &SimServer) -> (String, usize) {
    let max = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (max, done) = (Arc::clone(&max), Arc::clone(&done));
        let server_in_flight = server_handle(server);
        std::thread::spawn(move || {
            // Bounded: at most 20 s of 1 ms samples.
            for _ in 0..20_000 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                max.fetch_max(server_in_flight(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let text = probe(ex, &server.url()).await;
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    (text, max.load(Ordering::SeqCst))
}

/// A closure reading the simulator's requests in flight (from its shared counters).
fn server_handle(server: &SimServer) -> impl Fn() -> usize + Send + 'static {
    let counters = server.counters();
    move || counters.busy().in_flight()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_overlap_at_most_device_concurrency() {
    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    server.set_latency(Duration::from_millis(50));
    let ex = exporter(&server.url(), &[]);
    let (text, cold) = probe_sampled(&ex, &server).await;
    assert!(text.contains("linkhub_rsrp_dbm"), "{text}");
    assert!(cold <= 2, "cold scrape had {cold} calls in flight (default --device-concurrency 2)");
    let (_, warm) = probe_sampled(&ex, &server).await;
    assert_eq!(warm, 2, "a warm scrape at --device-concurrency 2 overlaps two calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_concurrency_one_is_strictly_one_call_at_a_time() {
    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    server.set_latency(Duration::from_millis(50));
    let ex = exporter(&server.url(), &["--device-concurrency", "1"]);
    for _ in 0..2 {
        let (text, max) = probe_sampled(&ex, &server).await;
        assert!(text.contains("linkhub_rsrp_dbm"), "{text}");
        assert_eq!(max, 1, "--device-concurrency 1 had {max} calls in flight");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_four_is_bounded_too() {
    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    server.set_latency(Duration::from_millis(50));
    let ex = exporter(&server.url(), &["--device-concurrency", "4"]);
    probe(&ex, &server.url()).await;
    let (_, max) = probe_sampled(&ex, &server).await;
    assert!((2..=4).contains(&max), "{max} calls in flight at --device-concurrency 4");
}

#[tokio::test]
async fn a_warm_scrape_makes_at_most_five_requests() {
    for model in [Model::Hh41, Model::Hh71, Model::Mifi] {
        let (_dev, server) = sim(Sim::new(model)).await;
        let ex = exporter(&server.url(), &[]);
        probe(&ex, &server.url()).await;
        let c = server.counters();
        c.reset();
        let text = probe(&ex, &server.url()).await;
        assert!(text.contains("linkhub_sim_state_code 7"), "{text}");
        assert!(text.contains("linkhub_sms_messages 3"), "{text}");
        assert!(text.contains("linkhub_device_info{"), "{text}");
        assert!(text.contains("linkhub_connected_devices{"), "{text}");
        assert!(
            c.total() <= 5,
            "{model:?}: warm scrape made {} requests: {:?}",
            c.total(),
            c.snapshot()
        );
        assert_eq!(c.get("GetLoginState"), 0, "no login needed on a warm scrape");
        assert_eq!(c.get("GetSystemInfo"), 0);
        assert!(text.contains("linkhub_static_age_seconds"), "{text}");
    }
}

#[tokio::test]
async fn static_facts_are_read_again_after_the_ttl() {
    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    let ex = exporter(&server.url(), &["--static-ttl", "1s"]);
    let c = server.counters();
    probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSystemInfo"), 1);
    probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSystemInfo"), 1, "cached within the TTL");
    assert_eq!(c.get("GetSimStatus"), 1, "a ready SIM is cached");
    assert_eq!(c.get("GetBatteryState"), 1, "no battery is remembered");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSystemInfo"), 2, "read again after the TTL");
    assert_eq!(c.get("GetSimStatus"), 2);
    assert!(text.contains("linkhub_device_info{"), "{text}");
}

#[tokio::test]
async fn static_facts_are_read_again_after_a_restart() {
    let (dev, server) = sim(Sim::new(Model::Hh41)).await;
    let ex = exporter(&server.url(), &[]);
    let c = server.counters();
    dev.control("GetSystemStatus.DeviceUptime", "5000").unwrap();
    probe(&ex, &server.url()).await;
    probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSystemInfo"), 1);
    // The uptime went down: a restart, read in the same scrape.
    dev.control("GetSystemStatus.DeviceUptime", "30").unwrap();
    dev.control("GetSystemInfo.SwVersion", "HH41_NV_02.00_09").unwrap();
    let text = probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSystemInfo"), 2, "uptime went down");
    assert!(text.contains("software_version=\"HH41_NV_02.00_09\""), "{text}");
    probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSystemInfo"), 2, "cached again");
    // A reboot without uptime: the session is lost.
    dev.control("clear", "").unwrap();
    dev.control("reboot", "").unwrap();
    probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSystemInfo"), 3, "the session of the earlier scrape was refused");
    assert_eq!(c.get("login_attempt"), 2);
}

#[tokio::test]
async fn the_sms_store_is_read_again_when_the_status_bar_changes() {
    let (dev, server) = sim(Sim::new(Model::Hh41)).await;
    let ex = exporter(&server.url(), &[]);
    let c = server.counters();
    probe(&ex, &server.url()).await;
    probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSMSStorageState"), 1);
    dev.control("sms_unread", "0").unwrap();
    let text = probe(&ex, &server.url()).await;
    assert_eq!(c.get("GetSMSStorageState"), 2, "SmsState went from 3 to 2");
    assert!(text.contains("linkhub_sms_unread_messages 0"), "{text}");
}

#[tokio::test]
async fn get_battery_state_is_read_when_the_status_bar_has_no_battery() {
    let (dev, server) = sim(Sim::new(Model::Mifi)).await;
    dev.control("GetSystemStatus.bat_cap", "null").unwrap();
    let ex = exporter(&server.url(), &[]);
    let text = probe(&ex, &server.url()).await;
    assert!(text.contains("linkhub_battery_charge_ratio 0.64"), "{text}");
    probe(&ex, &server.url()).await;
    assert_eq!(server.counters().get("GetBatteryState"), 2, "a battery is read on every scrape");
}
