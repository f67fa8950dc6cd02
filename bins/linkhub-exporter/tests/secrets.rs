//! The password goes only to the address it was configured for, and a wrong password costs
//! one login attempt per `--login-backoff` per router, whatever else happens.
//!
//! A recording server (`device_sim::recorder`) stands in for the other hosts and keeps every
//! byte it receives, so the tests look for the password in every form the exporter could
//! send it: as typed, obfuscated (the reversible nibble-XOR of the login), MD5, and base64
//! or hex of each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::{has_line as has, query_encode as encode, sample_value as value};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use argh::FromArgs;
use device_sim::{
    http::SimServer,
    linkhub::{Linkhub as Sim, Model},
    recorder::{Recorded, Recorder, Reply},
};
use exporter_core::{RunningServer, ServeOptions};
use linkhub_exporter::{Flags, INFO, Linkhub, crypto};
use serde_json::json;

const PASSWORD: &str = "s3cret-Pw!";

/// A fresh temporary directory, removed when the guard drops (also when the test panics).
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("linkhub-secrets-{tag}-")).tempdir().unwrap()
}

fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

/// The exporter for `--target target` with `password`, extra flags and a state directory.
fn exporter(
    target: &str,
    password: &str,
    extra: &[&str],
    state_dir: Option<&Path>,
) -> (Linkhub, ServeOptions) {
    let dir = temp_dir("pw");
    let file = password_file(dir.path(), password);
    let mut args = vec!["--target", target, "--password-file", file.to_str().unwrap()];
    args.extend(extra);
    let flags = Flags::from_args(&["linkhub-exporter"], &args).unwrap();
    let mut opts = ServeOptions::for_test(INFO);
    opts.state_directory = state_dir.map(Path::to_path_buf);
    opts.set_flags = vec!["--target".to_owned()];
    let exporter = Linkhub::with_options(flags, &opts).unwrap();
    (exporter, opts)
}

async fn serve(
    target: &str,
    password: &str,
    extra: &[&str],
    state: Option<&Path>,
) -> RunningServer {
    let (exporter, opts) = exporter(target, password, extra, state);
    exporter_core::spawn(exporter, opts).await.unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let resp =
        http.get(url).header("X-Prometheus-Scrape-Timeout-Seconds", "5").send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn probe(server: &RunningServer, target: &str) -> (u16, String) {
    get(&format!("http://{}/probe?target={}", server.local_addr(), encode(target))).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every form of `secret` that must never reach another host.
fn secret_forms(secret: &str) -> Vec<String> {
    let mut plain = vec![
        secret.to_owned(),
        crypto::obfuscate(secret),
        crypto::md5_hex(secret.as_bytes()),
        crypto::obfuscate(&crypto::md5_hex(secret.as_bytes())),
    ];
    // JSON escapes some characters of the obfuscated form (a back-tick stays, a quote or a
    // backslash would not): look for the escaped form too.
    plain.extend(plain.clone().iter().map(|s| json!(s).to_string().trim_matches('"').to_owned()));
    let mut forms = plain.clone();
    for p in &plain {
        forms.push(crypto::base64(p.as_bytes()));
        forms.push(hex(p.as_bytes()));
        forms.push(hex(p.as_bytes()).to_uppercase());
    }
    forms.sort();
    forms.dedup();
    forms
}

fn assert_no_secret(rec: &Recorder, what: &str) {
    let raw = rec.received();
    for form in secret_forms(PASSWORD) {
        assert!(
            !device_sim::recorder::contains(&raw, form.as_bytes()),
            "{what}: the password reached {} as {form:?}:\n{}",
            rec.url(),
            String::from_utf8_lossy(&raw)
        );
    }
    for r in rec.requests() {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_ne!(body["method"], "Login", "{what}: a Login reached {}", rec.url());
        assert!(r.header("_TclRequestVerificationToken").is_none(), "{what}: a token was sent");
    }
}

/// A LinkHub-like answer: login state and system info without a token, everything else
/// needs one (`-32699`).
fn linkhub_like(req: &Recorded) -> Reply {
    let call: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let id = call["id"].clone();
    match call["method"].as_str().unwrap_or("") {
        "GetLoginState" => Reply::json(&json!({"jsonrpc":"2.0","id":id,
            "result":{"State":0,"LoginRemainingTimes":5,"LockedRemainingTime":0,"PwEncrypt":1}})),
        "GetSystemInfo" => Reply::json(&json!({"jsonrpc":"2.0","id":id,
            "result":{"DeviceName":"HH71","SwVersion":"HH71_01","HwVersion":"HH71-V1"}})),
        _ => Reply::json(&json!({"jsonrpc":"2.0","id":id,
            "error":{"code":-32699,"message":"Authentication Failure"}})),
    }
}

#[tokio::test]
async fn a_probe_of_another_address_sends_no_login_and_no_secret() {
    let sim = SimServer::start(
        Arc::new(Sim::new(Model::Hh71).with("password", PASSWORD)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let rec = Recorder::start(linkhub_like).await.unwrap();
    let server = serve(&sim.url(), PASSWORD, &[], None).await;

    let (code, text) = probe(&server, &rec.url()).await;
    assert_eq!(code, 200, "{text}");
    assert!(has(&text, "linkhub_login_state{state=\"no_credentials\"} 1"), "{text}");
    assert!(has(&text, "linkhub_login_required{method=\"GetNetworkInfo\"} 1"), "{text}");
    assert!(!text.contains("linkhub_login_attempts_total"), "{text}");
    assert!(
        rec.requests().iter().any(|r| r.body_text().contains("GetSystemInfo")),
        "the other host was read (what needs no login)"
    );
    assert_no_secret(&rec, "ad-hoc probe");

    // The same address spelled differently is still another address; the configured one
    // logs in with its password.
    let (code, text) = probe(&server, &rec.addr().to_string()).await;
    assert_eq!(code, 200, "{text}");
    assert_no_secret(&rec, "ad-hoc probe without a scheme");
    let (_, text) = probe(&server, &sim.url()).await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert_eq!(sim.counters().get("login_attempt"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_redirect_to_another_host_never_receives_the_secret() {
    // The host the redirects point to: 127.0.0.2 is another loopback address.
    let elsewhere = Recorder::start_on("127.0.0.2:0".parse().unwrap(), linkhub_like).await.unwrap();
    let location = format!("{}/jrd/webapi", elsewhere.url());
    // The configured router answers Login (only Login) with a redirect that keeps the body.
    let loc = location.clone();
    let router = Recorder::start(move |req| {
        if req.body_text().contains("\"method\":\"Login\"") {
            Reply::redirect(307, &loc)
        } else {
            linkhub_like(req)
        }
    })
    .await
    .unwrap();
    let server = serve(&router.url(), PASSWORD, &[], None).await;
    let (code, text) = probe(&server, &router.url()).await;
    assert_eq!(code, 200, "{text}");
    assert!(
        router.requests().iter().any(|r| r.body_text().contains("\"method\":\"Login\"")),
        "the configured router was asked to log in"
    );
    assert_eq!(elsewhere.connections(), 0, "nothing followed the redirect");

    // A router that redirects every call elsewhere.
    let loc = location.clone();
    let moved = Recorder::start(move |_| Reply::redirect(302, &loc)).await.unwrap();
    let server2 = serve(&moved.url(), PASSWORD, &[], None).await;
    let (code, text) = probe(&server2, &moved.url()).await;
    assert_eq!(code, 200, "{text}");
    assert!(has(&text, "linkhub_up 0"), "{text}");
    assert_eq!(elsewhere.connections(), 0, "nothing followed the redirect");
    assert_no_secret(&elsewhere, "redirect");
    server.shutdown().await;
    server2.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_backoff_survives_a_restart() {
    let tmp = temp_dir("state");
    let state = tmp.path();
    let sim = SimServer::start(Arc::new(Sim::new(Model::Hh71)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = sim.counters();
    let server = serve(&sim.url(), "wrong", &["--login-backoff", "1h"], Some(state)).await;
    for _ in 0..3 {
        let (_, text) = get(&format!("http://{}/metrics", server.local_addr())).await;
        assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
    }
    assert_eq!(c.get("login_attempt"), 1);
    server.shutdown().await;
    let saved =
        std::fs::read_to_string(state.join(linkhub_exporter::client::BACKOFF_FILE)).unwrap();
    assert!(saved.contains(&sim.url()) && saved.contains("wrong_password"), "{saved}");
    assert!(!saved.contains("wrong\""), "no password in the state: {saved}");

    // A new exporter process (same state directory) keeps the backoff.
    for _ in 0..2 {
        let server = serve(&sim.url(), "wrong", &["--login-backoff", "1h"], Some(state)).await;
        let (_, text) = get(&format!("http://{}/metrics", server.local_addr())).await;
        assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
        let left = value(&text, "linkhub_login_backoff_seconds").unwrap();
        assert!(left > 3000.0 && left <= 3600.0, "{text}");
        assert!(has(&text, "linkhub_sim_state_code 7"), "token-free data still comes:\n{text}");
        server.shutdown().await;
    }
    assert_eq!(c.get("login_attempt"), 1, "no second attempt after restarts");

    // Once the window has passed (a short backoff this time), the next attempt goes out,
    // and a good password clears the state.
    let server = serve(&sim.url(), "admin", &["--login-backoff", "1s"], Some(state)).await;
    let (_, text) = get(&format!("http://{}/metrics", server.local_addr())).await;
    assert!(
        has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"),
        "still the hour: {text}"
    );
    server.shutdown().await;
    let saved =
        std::fs::read_to_string(state.join(linkhub_exporter::client::BACKOFF_FILE)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&saved).unwrap();
    json[sim.url()]["backoff_until"] = json!(0.0);
    std::fs::write(state.join(linkhub_exporter::client::BACKOFF_FILE), json.to_string()).unwrap();
    let server = serve(&sim.url(), "admin", &["--login-backoff", "1s"], Some(state)).await;
    let (_, text) = get(&format!("http://{}/metrics", server.local_addr())).await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert_eq!(c.get("login_attempt"), 2);
    server.shutdown().await;
    let saved =
        std::fs::read_to_string(state.join(linkhub_exporter::client::BACKOFF_FILE)).unwrap();
    assert!(!saved.contains(&sim.url()), "cleared after a good login: {saved}");
}

#[tokio::test]
async fn a_wrong_password_gets_one_attempt_across_2000_probes_of_other_addresses() {
    let sim = SimServer::start(Arc::new(Sim::new(Model::Hh71)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server = serve(&sim.url(), "wrong", &["--login-backoff", "1h"], None).await;
    let base = format!("http://{}", server.local_addr());
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");

    // Ports nobody listens on, at 200 loopback addresses: 2,000 distinct targets that refuse.
    let ports: Vec<u16> = (0..10)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
        .collect();
    let targets: Vec<String> = (2..202u16)
        .flat_map(|ip| ports.iter().map(move |p| format!("127.0.{}.{}:{p}", ip / 256, ip % 256)))
        .collect();
    assert_eq!(targets.len(), 2000);
    let start = Instant::now();
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let mut done = 0;
    for target in targets {
        while tasks.len() >= 16 {
            let (code, text) = tasks.join_next().await.unwrap().unwrap();
            assert_eq!(code, 200, "{text}");
            done += 1;
        }
        let (http, url) = (http.clone(), format!("{base}/probe?target={}", encode(&target)));
        tasks.spawn(async move {
            let resp = http.get(url).header("X-Prometheus-Scrape-Timeout-Seconds", "5").send();
            let resp = resp.await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        });
        assert!(start.elapsed() < Duration::from_secs(240), "2,000 probes took too long");
    }
    while let Some(res) = tasks.join_next().await {
        let (code, text) = res.unwrap();
        assert_eq!(code, 200, "{text}");
        assert!(has(&text, "linkhub_up 0"), "{text}");
        assert!(has(&text, "linkhub_login_state{state=\"no_credentials\"} 1"), "{text}");
        done += 1;
    }
    assert_eq!(done, 2000);

    let (_, text) = get(&format!("{base}/metrics")).await;
    assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
    assert!(value(&text, "linkhub_login_backoff_seconds").unwrap() > 3000.0, "{text}");
    assert_eq!(sim.counters().get("login_attempt"), 1, "the backoff was kept");
    server.shutdown().await;
}

#[tokio::test]
async fn a_rejected_login_starts_the_backoff_without_login_remaining_times() {
    // A firmware whose GetLoginState says nothing about attempts left.
    let sim = SimServer::start(
        Arc::new(
            Sim::new(Model::Hh71)
                .with("GetLoginState.LoginRemainingTimes", "\"\"")
                .with("GetLoginState.PwEncrypt", "\"\""),
        ),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let server = serve(&sim.url(), "wrong", &["--login-backoff", "1s"], None).await;
    let url = format!("http://{}/metrics", server.local_addr());
    for window in 1..=3u64 {
        for _ in 0..3 {
            let (_, text) = get(&url).await;
            assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
        }
        assert_eq!(sim.counters().get("login_attempt"), window, "window {window}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn logout_after_scrape_frees_the_session_for_the_web_ui() {
    let sim = SimServer::start(Arc::new(Sim::new(Model::Hh71)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server = serve(&sim.url(), "admin", &["--logout-after-scrape"], None).await;
    let c = sim.counters();
    for n in 1..=3u64 {
        let (_, text) = get(&format!("http://{}/metrics", server.local_addr())).await;
        assert!(has(&text, "linkhub_connection_uptime_seconds 88741"), "{text}");
        assert!(has(&text, "linkhub_login_state{state=\"logged_out\"} 1"), "{text}");
        assert_eq!((c.get("login_attempt"), c.get("Logout")), (n, n), "one login per scrape");
        // A human can log in between scrapes.
        let http = exporter_core::client::http_client(&INFO).unwrap();
        let state: serde_json::Value = http
            .post(format!("{}/jrd/webapi", sim.url()))
            .header("_TclRequestVerificationKey", device_sim::linkhub::VERIFICATION_KEY)
            .header("Referer", format!("{}/index.html", sim.url()))
            .body(r#"{"jsonrpc":"2.0","method":"GetLoginState","params":{},"id":"1.3"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state["result"]["State"], 0, "{state}");
    }
    server.shutdown().await;
    assert_eq!(c.get("Logout"), 3, "nothing left to log out at shutdown");
}

#[tokio::test]
async fn the_last_attempts_stay_with_a_human_until_the_password_is_fixed() {
    let sim = SimServer::start(Arc::new(Sim::new(Model::Hh71)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = temp_dir("fix");
    let file = password_file(dir.path(), "wrong");
    let flags = Flags::from_args(
        &["linkhub-exporter"],
        &[
            "--target",
            &sim.url(),
            "--password-file",
            file.to_str().unwrap(),
            "--login-backoff",
            "1s",
        ],
    )
    .unwrap();
    let opts = ServeOptions::for_test(INFO);
    let server =
        exporter_core::spawn(Linkhub::with_options(flags, &opts).unwrap(), opts).await.unwrap();
    let url = format!("http://{}/metrics", server.local_addr());
    // Three wrong attempts, one per window; then the router has 2 left and they are kept.
    for _ in 0..5 {
        let (_, text) = get(&url).await;
        assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(sim.counters().get("login_attempt"), 3);
    // The admin fixes the password file and reloads: the new password is tried once.
    password_file(dir.path(), "admin");
    assert_eq!(server.reload().await, Ok(()));
    let (_, text) = get(&url).await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert_eq!(sim.counters().get("login_attempt"), 4);
    server.shutdown().await;
}
