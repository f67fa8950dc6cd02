//! Layer 3: the exporter against the LinkHub simulator, over real loopback sockets.
//!
//! Most tests call `Linkhub::probe` on a `Scrape` directly (the login logic needs no
//! server); the last ones go through `exporter_core::spawn` for `linkhub_up`, deadlines,
//! coalescing of concurrent scrapes and logout at shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::has_line as has;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use argh::FromArgs;
use device_sim::{
    http::{Fault, HttpDevice, SimServer},
    linkhub::{Linkhub as Sim, Model},
};
use exporter_core::{Exporter, Scrape, ServeOptions};
use linkhub_exporter::{Flags, INFO, Linkhub, Target};

/// A temporary password file, removed when the guard drops.
fn password_file(password: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().prefix("linkhub-test-").tempfile().unwrap();
    std::fs::write(file.path(), format!("{password}\n")).unwrap();
    file
}

fn exporter(target: &str, password: Option<&str>, extra: &[&str]) -> Linkhub {
    let file = password.map(password_file);
    let mut args = vec!["--target", target];
    let file_arg = file.as_ref().map(|f| f.path().to_str().unwrap().to_owned());
    if let Some(f) = &file_arg {
        args.extend(["--password-file", f.as_str()]);
    }
    args.extend(extra);
    let flags = Flags::from_args(&["linkhub-exporter"], &args).unwrap();
    Linkhub::new(flags).unwrap()
}

async fn sim(device: Sim) -> (Arc<Sim>, SimServer) {
    let device = Arc::new(device);
    let server = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (device, server)
}

/// One probe, bounded by `secs`; returns whether it was Ok and the exposition text.
async fn probe(exporter: &Linkhub, url: &str, secs: u64) -> (anyhow::Result<()>, String) {
    let target: Target = url.parse().unwrap();
    let mut out = Scrape::new("linkhub", url, Instant::now() + Duration::from_secs(secs));
    let result = exporter.probe(&target, &mut out).await;
    (result, out.encode())
}

#[tokio::test]
async fn without_password_reads_what_needs_no_login() {
    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    let ex = exporter(&server.url(), None, &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    for line in [
        "linkhub_rsrp_dbm -90",
        "linkhub_serving_cell_id 80820492",
        "linkhub_usage_monthly_bytes{network=\"home\"} 18440039053",
        "linkhub_login_required{method=\"GetConnectionState\"} 1",
        "linkhub_sim_state_code 7",
    ] {
        assert!(has(&text, line), "missing {line} in\n{text}");
    }
    assert!(!text.contains("linkhub_connection_uptime_seconds"), "{text}");
    assert!(has(&text, "linkhub_login_state{state=\"no_credentials\"} 1"), "{text}");
    assert!(!text.contains("linkhub_login_attempts_total"), "no login bookkeeping:\n{text}");
    assert!(!text.contains("battery"), "an HH41 has no battery:\n{text}");
    let c = server.counters();
    assert_eq!(c.get("login_attempt"), 0);
    assert_eq!(c.get("GetLoginState"), 0);
    assert_eq!(c.get("GetConnectionState"), 1);
}

#[tokio::test]
async fn login_session_is_kept_and_token_expiry_gives_one_relogin() {
    let (dev, server) = sim(Sim::new(Model::Hh71)).await;
    let ex = exporter(&server.url(), Some("admin"), &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert!(has(&text, "linkhub_connection_uptime_seconds 88741"), "{text}");
    assert!(has(&text, "linkhub_rsrp_dbm -90"), "HH71 needs the token for GetNetworkInfo:\n{text}");
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert!(has(&text, "linkhub_login_attempts_total 1"), "{text}");
    assert!(!text.contains("linkhub_login_required"), "{text}");
    let c = server.counters();
    assert_eq!(c.get("login_attempt"), 1);

    let (result, _) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert_eq!(c.get("login_attempt"), 1, "the session is kept between scrapes");

    dev.control("expire_token", "1").unwrap();
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert_eq!(c.get("login_attempt"), 2, "exactly one re-login after expiry");
    assert!(has(&text, "linkhub_usage_monthly_bytes{network=\"home\"} 18440039053"), "{text}");

    // String error codes and a token that expires by time work the same way.
    dev.control("string_codes", "true").unwrap();
    dev.control("token_ttl_secs", "1").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert_eq!(c.get("login_attempt"), 3);
    assert!(has(&text, "linkhub_connection_uptime_seconds 88741"), "{text}");
}

#[tokio::test]
async fn wrong_password_one_attempt_per_backoff_window_never_locks() {
    let (dev, server) = sim(Sim::new(Model::Hh71)).await;
    let ex = exporter(&server.url(), Some("wrong"), &["--login-backoff", "1s"]);
    let c = server.counters();
    for _ in 0..3 {
        let (result, text) = probe(&ex, &server.url(), 5).await;
        result.unwrap();
        assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
        assert!(has(&text, "linkhub_login_failures_total{reason=\"wrong_password\"} 1"), "{text}");
        assert!(has(&text, "linkhub_login_backoff_seconds 1"), "{text}");
        assert!(has(&text, "linkhub_sim_state_code 7"), "token-free data still comes:\n{text}");
    }
    assert_eq!(c.get("login_attempt"), 1, "one attempt in the first window");
    for window in 2..=6u64 {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        for _ in 0..2 {
            let (result, _) = probe(&ex, &server.url(), 5).await;
            result.unwrap();
        }
        // Attempts stop while the device has LOGIN_ATTEMPTS_KEPT (2) left: 5 - 3.
        assert_eq!(c.get("login_attempt"), window.min(3), "window {window}");
    }
    let state = call_login_state(&dev, &server).await;
    assert_eq!(state["State"], 0, "never locked: {state}");
    assert_eq!(state["LoginRemainingTimes"], 2, "{state}");
}

/// `GetLoginState` straight from the simulator.
async fn call_login_state(_dev: &Sim, server: &SimServer) -> serde_json::Value {
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let body: serde_json::Value = http
        .post(format!("{}/jrd/webapi", server.url()))
        .header("_TclRequestVerificationKey", device_sim::linkhub::VERIFICATION_KEY)
        .header("Referer", format!("{}/index.html", server.url()))
        .body(r#"{"jsonrpc":"2.0","method":"GetLoginState","params":{},"id":"1.3"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["result"].clone()
}

#[tokio::test]
async fn another_admin_is_reported_and_never_kicked() {
    let (dev, server) = sim(Sim::new(Model::Hh71).with("other_admin", "true")).await;
    let ex = exporter(&server.url(), Some("admin"), &[]);
    let c = server.counters();
    for n in 1..=2 {
        let (result, text) = probe(&ex, &server.url(), 5).await;
        result.unwrap();
        assert!(has(&text, "linkhub_login_state{state=\"other_session\"} 1"), "{text}");
        assert!(
            has(&text, &format!("linkhub_login_failures_total{{reason=\"other_session\"}} {n}")),
            "{text}"
        );
    }
    assert_eq!(c.get("login_attempt"), 0, "GetLoginState said someone is logged in");
    assert_eq!(c.get("ForceLogin"), 0);

    // A firmware whose GetLoginState does not tell: Login itself answers 010102.
    dev.control("GetLoginState.State", "0").unwrap();
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert!(has(&text, "linkhub_login_state{state=\"other_session\"} 1"), "{text}");
    assert_eq!(c.get("login_attempt"), 1);
    assert!(
        has(&text, "linkhub_login_backoff_seconds 0"),
        "010102 is retried, no backoff:\n{text}"
    );

    // The human logs out: the next scrape logs in.
    dev.control("other_admin", "false").unwrap();
    dev.control("clear", "1").unwrap();
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert_eq!(c.get("ForceLogin"), 0);
}

#[tokio::test]
async fn locked_login_is_left_alone() {
    let (_dev, server) = sim(Sim::new(Model::Hh71).with("GetLoginState.State", "2")).await;
    let ex = exporter(&server.url(), Some("admin"), &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert!(has(&text, "linkhub_login_state{state=\"locked\"} 1"), "{text}");
    assert_eq!(server.counters().get("login_attempt"), 0);
}

#[tokio::test]
async fn invalid_markers_absent_and_zeros_exported() {
    let (dev, server) = sim(Sim::new(Model::NoService)).await;
    dev.control("GetSystemStatus.TotalConnNum", "0").unwrap();
    dev.control("unprotect", "GetConnectionState").unwrap();
    let ex = exporter(&server.url(), None, &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    for line in [
        "linkhub_signal_bars 0",
        "linkhub_connected_clients 0",
        "linkhub_connection_download_bytes_total 0",
        "linkhub_connection_uptime_seconds 0",
        "linkhub_network_generation{state=\"none\"} 1",
    ] {
        assert!(has(&text, line), "missing {line} in\n{text}");
    }
    for absent in [
        "linkhub_sinr_db",
        "linkhub_rsrp_dbm",
        "linkhub_rssi_dbm",
        "linkhub_rsrq_db",
        "linkhub_serving_cell_id",
    ] {
        assert!(!text.contains(absent), "{absent} must be absent:\n{text}");
    }
    // Markers set one by one on a box with service.
    dev.control("service", "true").unwrap();
    for (field, value) in
        [("SINR", "\"N/A\""), ("RSRP", "\"-1\""), ("RSSI", "\"\""), ("RSRQ", "\"reserved\"")]
    {
        dev.control(&format!("GetNetworkInfo.{field}"), value).unwrap();
    }
    dev.control("GetNetworkInfo.DL_channel", "\"FF\"").unwrap();
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    for absent in [
        "linkhub_sinr_db",
        "linkhub_rsrp_dbm",
        "linkhub_rssi_dbm",
        "linkhub_rsrq_db",
        "linkhub_downlink_channel",
    ] {
        assert!(!text.contains(absent), "{absent} must be absent:\n{text}");
    }
    dev.control("GetNetworkInfo.SINR", "\"0\"").unwrap();
    let (_, text) = probe(&ex, &server.url(), 5).await;
    assert!(has(&text, "linkhub_sinr_db 0"), "{text}");
}

#[tokio::test]
async fn cell_change_is_visible() {
    let (dev, server) = sim(Sim::new(Model::Hh41)).await;
    let ex = exporter(&server.url(), None, &[]);
    let (_, text) = probe(&ex, &server.url(), 5).await;
    assert!(has(&text, "linkhub_serving_cell_id 80820492"), "{text}");
    dev.control("cell", "1").unwrap();
    let (_, text) = probe(&ex, &server.url(), 5).await;
    assert!(has(&text, "linkhub_serving_cell_id 80820494"), "{text}");
    assert!(text.contains("linkhub_cell_info{cell_id=\"80820494\",enb_id=\"315705\",plmn=\"46692\",band=\"3\",network_type=\"lte\"} 1"), "{text}");
    assert!(has(&text, "linkhub_sinr_db 4"), "{text}");
}

#[tokio::test]
async fn hotspot_model_uses_the_aes_token_and_mifi_has_a_battery() {
    let (_dev, server) = sim(Sim::new(Model::Hh72)).await;
    let ex = exporter(&server.url(), Some("admin"), &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert!(has(&text, "linkhub_rsrp_dbm -90"), "{text}");
    assert!(has(&text, "linkhub_connection_uptime_seconds 88741"), "{text}");
    assert_eq!(server.counters().get("login_attempt"), 1);

    let (_dev, server) = sim(Sim::new(Model::Mifi)).await;
    let ex = exporter(&server.url(), None, &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    // The status bar's battery fields (bat_cap 100, bat_level 4) make GetBatteryState
    // unnecessary.
    assert!(has(&text, "linkhub_battery_charge_ratio 1"), "{text}");
    assert!(has(&text, "linkhub_battery_bars 4"), "{text}");
    assert_eq!(server.counters().get("GetBatteryState"), 0);
}

#[tokio::test]
async fn encrypted_firmware_and_other_devices_are_named() {
    let (_dev, server) = sim(Sim::new(Model::Hh41).with("encrypted", "true")).await;
    let ex = exporter(&server.url(), None, &[]);
    let (result, _) = probe(&ex, &server.url(), 5).await;
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("GetSystemInfo") && err.contains("encrypted firmware"), "{err}");

    let demo = SimServer::start(
        Arc::new(device_sim::demo::Demo::default()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (result, _) = probe(&ex, &demo.url(), 5).await;
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("not an Alcatel/TCL LinkHub") && err.contains("404"), "{err}");

    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    server.set_fault(Some(Fault::Garbage));
    let (result, _) = probe(&ex, &server.url(), 5).await;
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("not JSON"), "{err}");
}

async fn get(url: &str) -> (u16, String) {
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let resp =
        http.get(url).header("X-Prometheus-Scrape-Timeout-Seconds", "2").send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn down_hanging_and_garbage_devices_give_up_zero_in_time() {
    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    let ex = exporter(&server.url(), None, &[]);
    let running = exporter_core::spawn(ex, ServeOptions::for_test(INFO)).await.unwrap();
    let base = format!("http://{}", running.local_addr());

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = closed.local_addr().unwrap();
    drop(closed);
    for (what, target) in [
        ("down", format!("{down}")),
        ("hang", server.addr().to_string()),
        ("garbage", server.addr().to_string()),
    ] {
        match what {
            "hang" => server.set_fault(Some(Fault::Hang)),
            "garbage" => server.set_fault(Some(Fault::Garbage)),
            _ => {}
        }
        let start = Instant::now();
        let (status, text) = get(&format!("{base}/probe?target={target}")).await;
        assert_eq!(status, 200, "{what}: {text}");
        assert!(has(&text, "linkhub_up 0"), "{what}:\n{text}");
        assert!(start.elapsed() < Duration::from_secs(4), "{what} took {:?}", start.elapsed());
    }
    server.set_fault(None);
    let (status, text) = get(&format!("{base}/probe?target={}", server.addr())).await;
    assert_eq!(status, 200);
    assert!(has(&text, "linkhub_up 1"), "the exporter keeps serving:\n{text}");
    assert!(has(&text, "linkhub_scrape_collector_success{collector=\"network\"} 1"), "{text}");
    assert!(!text.contains("collector=\"battery\""), "no battery is not a failure:\n{text}");
    assert!(!text.contains("collector=\"connection\""), "skipped, not failed:\n{text}");
    let (status, text) = get(&format!("{base}/probe?target=ftp://nonsense")).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("target"), "{text}");
    running.shutdown().await;
}

#[tokio::test]
async fn concurrent_scrapes_share_one_round_of_device_calls() {
    let (_dev, server) = sim(Sim::new(Model::Hh41)).await;
    server.set_latency(Duration::from_millis(100));
    let ex = exporter(&server.url(), None, &[]);
    let running = exporter_core::spawn(ex, ServeOptions::for_test(INFO)).await.unwrap();
    let url = format!("http://{}/probe?target={}", running.local_addr(), server.addr());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let url = url.clone();
        tasks.spawn(async move { get(&url).await });
    }
    while let Some(res) = tasks.join_next().await {
        let (status, text) = res.unwrap();
        assert_eq!(status, 200);
        assert!(has(&text, "linkhub_up 1"), "{text}");
    }
    let c = server.counters();
    for method in [
        "GetSystemInfo",
        "GetSystemStatus",
        "GetNetworkInfo",
        "GetUsageRecord",
        "GetSimStatus",
        "GetBatteryState",
    ] {
        assert_eq!(c.get(method), 1, "{method}: {:?}", c.snapshot());
    }
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_logs_out() {
    let (_dev, server) = sim(Sim::new(Model::Hh71)).await;
    let ex = exporter(&server.url(), Some("admin"), &[]);
    let running = exporter_core::spawn(ex, ServeOptions::for_test(INFO)).await.unwrap();
    let (_, text) = get(&format!("http://{}/metrics", running.local_addr())).await;
    assert!(
        has(&text, "linkhub_login_state{state=\"logged_in\"} 1"),
        "/metrics scrapes --target:\n{text}"
    );
    assert_eq!(server.counters().get("Logout"), 0);
    running.shutdown().await;
    assert_eq!(server.counters().get("Logout"), 1);
    let state = call_login_state(&_dev, &server).await;
    assert_eq!(state["State"], 0, "the session is free for a human: {state}");
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    let (_dev, server) = sim(Sim::new(Model::Hh71).with("password", "other")).await;
    let ex = exporter(&server.url(), Some("s3cret-pw"), &["--verification-key", "my-key-123"]);
    let debug = format!("{ex:?}");
    assert!(!debug.contains("s3cret-pw") && !debug.contains("my-key-123"), "{debug}");
    let target: Target = server.url().parse().unwrap();
    let mut out = Scrape::new("linkhub", server.url(), Instant::now() + Duration::from_secs(5));
    ex.probe(&target, &mut out).await.unwrap();
    let text = out.encode();
    assert!(!text.contains("s3cret-pw"), "{text}");
    // The wrong key makes every call an authentication failure, and the login is tried once.
    assert!(has(&text, "linkhub_login_attempts_total 1"), "{text}");
    assert!(has(&text, "linkhub_login_failures_total{reason=\"error\"} 1"), "{text}");
    assert_eq!(server.counters().get("Login"), 1, "the sim refuses it before its login logic");
}

#[tokio::test]
async fn sms_store_and_connected_clients_follow_the_token_rules() {
    // HH41 without a password: the SMS store is public there, the client list is not.
    let (dev, server) = sim(Sim::new(Model::Hh41)).await;
    let ex = exporter(&server.url(), None, &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    for line in [
        "linkhub_sms_messages 3",
        "linkhub_sms_unread_messages 1",
        "linkhub_sms_storage_full 0",
        "linkhub_sms_state{state=\"new\"} 1",
        "linkhub_login_required{method=\"GetConnectedDeviceList\"} 1",
    ] {
        assert!(has(&text, line), "missing {line} in\n{text}");
    }
    assert!(!text.contains("linkhub_connected_devices{"), "{text}");

    // A full store: both the storage state and the status bar say so.
    dev.control("sms_stored", "100").unwrap();
    let (_, text) = probe(&ex, &server.url(), 5).await;
    assert!(has(&text, "linkhub_sms_storage_full 1"), "{text}");
    assert!(has(&text, "linkhub_sms_storage_free_messages 0"), "{text}");
    assert!(has(&text, "linkhub_sms_state{state=\"full\"} 1"), "{text}");

    // HH71 with a password: both need the token; clients counted by connection type.
    let (dev, server) = sim(Sim::new(Model::Hh71)).await;
    let ex = exporter(&server.url(), Some("admin"), &[]);
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    for line in [
        "linkhub_sms_messages 3",
        "linkhub_connected_devices{connection=\"usb\"} 1",
        "linkhub_connected_devices{connection=\"wifi\"} 2",
        "linkhub_connected_devices{connection=\"wifi_guest\"} 0",
    ] {
        assert!(has(&text, line), "missing {line} in\n{text}");
    }
    assert!(!text.contains("connected_device_info"), "no per-client series by default:\n{text}");
    assert!(!text.contains("3a:11:14:47:f6:a3"), "{text}");

    // With --expose-identifiers: one series per client, capped. (The first exporter logs
    // out first: the router has one admin session.)
    ex.shutdown().await;
    dev.control("connected_devices", "40").unwrap();
    dev.control("guest_devices", "2").unwrap();
    let ex = exporter(
        &server.url(),
        Some("admin"),
        &["--expose-identifiers", "--connected-devices-max", "25"],
    );
    let (result, text) = probe(&ex, &server.url(), 5).await;
    result.unwrap();
    assert!(has(&text, "linkhub_connected_devices{connection=\"usb\"} 10"), "{text}");
    assert!(has(&text, "linkhub_connected_devices{connection=\"wifi\"} 30"), "{text}");
    assert!(has(&text, "linkhub_connected_devices{connection=\"wifi_guest\"} 2"), "{text}");
    assert!(has(&text, "linkhub_connected_devices_dropped 17"), "{text}");
    assert_eq!(text.matches("linkhub_connected_device_info{").count(), 25, "{text}");
    assert_eq!(text.matches("linkhub_connected_device_connected_seconds{").count(), 25);
    // The longest connected are kept: client-39 (2400 s) yes, client-0 (60 s) no.
    assert!(text.contains("name=\"client-39\""), "{text}");
    assert!(!text.contains("name=\"client-0\""), "{text}");
    if let Some(findings) = exporter_core::testing::promtool_check_metrics(&text) {
        assert!(findings.is_empty(), "{findings}");
    }
}
