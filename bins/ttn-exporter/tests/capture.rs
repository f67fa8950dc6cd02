//! `ttn-exporter check` and `capture` against the The Things Stack simulator (healthy, API
//! down, key refused with 401, key without a right with 403), the redaction of a capture, a
//! capture replayed against the exporter, and the corpus of captures in `tests/captures/`.
//!
//! The corpus: every `tests/captures/<name>.yml` is served by device-sim's `Replay` (one
//! replay per server the capture talked to, so that the batch calls of two clusters, which
//! share a path, are not mixed up), scraped, and compared with `tests/captures/<name>.prom`
//! (`UPDATE_GOLDEN=1` rewrites those). The captures from the simulator are made by this file
//! too: `UPDATE_CAPTURES=1 cargo test -p ttn-exporter --test capture` writes them again, each
//! from a fresh exporter (an empty cache) so the list and the statistics calls are in it.
//! Adding a user's capture is one `.yml` file and its `.prom` golden.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use device_sim::{
    http::SimServer,
    replay::Replay,
    ttn::{EXPIRED_KEY, NO_LIST_KEY, NO_STATUS_KEY, SimOptions, TtnSim, USER_ID, USER_KEY},
};
use exporter_core::{
    Command, CommandOutput, Secret, ServeOptions,
    capture::{Capture, CaptureFormat, comparable},
    testing::{assert_golden, promtool_check_metrics},
};
use reqwest::Url;
use ttn_exporter::{INFO, Ttn, config::Config};

fn config(api: &str, cluster_urls: &[String], extra: &[&str]) -> Config {
    let mut args: Vec<String> = vec!["--api-url".into(), api.to_owned()];
    for c in cluster_urls {
        args.push("--cluster-url".into());
        args.push(c.clone());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flags: ttn_exporter::Flags = argh::FromArgs::from_args(&["ttn-exporter"], &args).unwrap();
    Config::from_flags(&flags).unwrap()
}

fn sim_config(sim: &TtnSim, extra: &[&str]) -> Config {
    config(&sim.identity_url(), &sim.cluster_url_flags(), extra)
}

/// A fresh exporter (empty cache), built as `main.rs` builds it for `check` and `capture`.
fn exporter(config: Config, key: &str) -> Ttn {
    let http = exporter_core::client::http_client(&INFO).unwrap();
    Ttn::from_config(config, Secret::new(key), http).for_command()
}

async fn run(ttn: &Ttn, command: Command) -> CommandOutput {
    let mut opts = ServeOptions::for_test(INFO);
    opts.scrape_timeout = Duration::from_secs(5);
    opts.command = command;
    exporter_core::run_command(ttn, &opts).await
}

async fn check(ttn: &Ttn, target: Option<&str>) -> CommandOutput {
    run(ttn, Command::Check { target: target.map(str::to_owned), json: false }).await
}

/// The capture file text of one scrape of `*` (written to stdout).
async fn capture_text(ttn: &Ttn) -> String {
    let out = run(
        ttn,
        Command::Capture { target: None, out: PathBuf::from("-"), format: CaptureFormat::Yaml },
    )
    .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    out.stdout
}

async fn sim(tweak: impl FnOnce(&mut SimOptions)) -> TtnSim {
    let mut opts = SimOptions::default();
    tweak(&mut opts);
    TtnSim::start(opts).await.unwrap()
}

/// An address nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

#[tokio::test]
async fn check_a_healthy_account() {
    let sim = sim(|_| {}).await;
    let ttn = exporter(sim_config(&sim, &[]), USER_KEY);
    let out = check(&ttn, None).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let api = format!("  identity server: {}", sim.identity_url());
    assert_contains(
        &out.stdout,
        &[
            "checking 1 target\n",
            "*: UP in ",
            &api,
            "  gateways: 12\n",
            "  login: API key accepted\n",
            "  quirk: gateway gw-0001 on cluster eu1.cloud.thethings.network\n",
            "  quirk: gateway gw-0002 on cluster nam1.cloud.thethings.network\n",
            "  quirk: gateway gw-0003 on cluster au1.cloud.thethings.network\n",
            "  quirk: gateway gw-0010 not connected (404 not_connected",
            "  collector gateway_list: ok in ",
            "  collector gateway_stats: ok in ",
            "1 of 1 target up",
        ],
    );
    // Each collector's series are counted as its own.
    for collector in ["gateway_list", "gateway_stats"] {
        let line = out.stdout.lines().find(|l| l.contains(&format!("collector {collector}: ok")));
        let line = line.unwrap_or_default();
        assert!(!line.ends_with(" 0 series"), "{line}\n{}", out.stdout);
    }
    // The gateway inside its 48 h window still answers 200: connected, not "not connected".
    assert!(!out.stdout.contains("gateway gw-0009 not connected"), "{}", out.stdout);
    assert!(!out.stdout.contains("NNSXS"), "{}", out.stdout);

    // One gateway.
    let out = check(&ttn, Some("gw-0002")).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_contains(&out.stdout, &["gw-0002: UP in ", "quirk: gateway gw-0002 on cluster nam1"]);
    assert!(!out.stdout.contains("gw-0001"), "{}", out.stdout);

    // JSON for scripts.
    let out = run(&ttn, Command::Check { target: None, json: true }).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let target = &report["targets"][0];
    assert_eq!(target["up"], true, "{report}");
    assert_eq!(target["facts"]["gateways"], "12", "{report}");
    assert_eq!(target["logins"][0], "API key accepted", "{report}");
}

#[tokio::test]
async fn check_with_the_api_down() {
    let ttn = exporter(config(&closed_port(), &[], &[]), USER_KEY);
    let out = check(&ttn, None).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    assert_contains(
        &out.stdout,
        &["*: DOWN (refused): ", "the API cannot be reached", "0 of 1 target up"],
    );
    assert!(!out.stdout.contains("login:"), "nothing is known about the key: {}", out.stdout);
}

#[tokio::test]
async fn check_with_a_refused_key() {
    let sim = sim(|_| {}).await;
    // 401: expired, and unknown.
    for (key, name) in [
        (EXPIRED_KEY, "api_key_expired"),
        (
            "NNSXS.UNKNOWNKEYIDAAAAAAAAAAAAAAAAAAAAAAAAAAAA.UNKNOWNSECRETBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
            "api_key_not_found",
        ),
    ] {
        let ttn = exporter(sim_config(&sim, &[]), key);
        let out = check(&ttn, None).await;
        assert_eq!(out.exit_code, 1, "{out:?}");
        assert_contains(
            &out.stdout,
            &["*: DOWN (login): ", "  login: API key refused (401): ", name, "0 of 1 target up"],
        );
        assert!(!out.stdout.contains(key), "{}", out.stdout);
    }
    // 403: a key without "view gateway status" (the list works, the statistics do not), and
    // one without "list gateways".
    for (key, needle) in [
        (NO_STATUS_KEY, "  login: API key lacks a right (403): "),
        (NO_LIST_KEY, "  login: API key lacks a right (403): "),
    ] {
        let ttn = exporter(sim_config(&sim, &[]), key);
        let out = check(&ttn, None).await;
        assert_eq!(out.exit_code, 1, "{out:?}");
        assert_contains(&out.stdout, &["*: DOWN (login): ", needle, "(forbidden)"]);
    }
}

/// Everything the simulator may send that identifies someone: gateway ids, EUIs, names,
/// descriptions, the user, antenna and GPS positions; and the API key in every form.
#[tokio::test]
async fn a_capture_holds_no_secret_and_no_identifier() {
    let sim = sim(|_| {}).await;
    let ttn = exporter(sim_config(&sim, &["--user", USER_ID, "--expose-location"]), USER_KEY);
    let text = capture_text(&ttn).await;
    let capture = Capture::from_slice(text.as_bytes()).unwrap();
    assert!(capture.http().count() >= 4, "the list and three batches: {text}");
    assert!(capture.exposition.contains("ttn_up 1"), "{}", capture.exposition);

    let (key_id, key_secret) = {
        let mut parts = USER_KEY.split('.').skip(1);
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let mut forbidden: Vec<String> = vec![
        USER_KEY.to_owned(),
        key_id.to_owned(),
        key_secret.to_owned(),
        base64(USER_KEY.as_bytes()),
        hex(USER_KEY.as_bytes()),
        hex(USER_KEY.as_bytes()).to_ascii_uppercase(),
        USER_ID.to_owned(),
        "Simulated gateway".to_owned(),
        "Raspberry Pi + concentrator".to_owned(),
        // The GPS position a UDP gateway reports in its status.
        "52.09071".to_owned(),
        "5.12142".to_owned(),
    ];
    for g in sim.world.gateways() {
        forbidden.push(g.id.clone());
        let registry = sim.world.registry_json(&g, Some(&["antennas".to_owned()]), false);
        forbidden.push(registry["ids"]["eui"].as_str().unwrap().to_owned());
        if let Some(location) = registry["antennas"][0].get("location") {
            for axis in ["latitude", "longitude"] {
                let value = location[axis].to_string();
                // Whole numbers are written differently in the exposition (52 for 52.0).
                if value.contains('.') && !value.ends_with(".0") {
                    forbidden.push(value);
                }
            }
        }
    }
    for value in &forbidden {
        assert!(!text.contains(value.as_str()), "{value:?} is in the capture:\n{text}");
    }
    // The key was sent, and is redacted where it was.
    assert!(text.contains("Bearer redacted"), "{text}");
    // The simulator's remote address 203.0.113.24 is a documentation address: the redactor
    // leaves those alone on purpose (they are placeholders already).
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The exposition without what differs from run to run: durations (also the histogram of
/// API call durations, which `comparable` keeps) and the ages of cached values; the samples
/// of each family sorted (the exporter sorts gateways by id, and a capture's placeholders
/// sort differently from the ids they replace).
fn normal(text: &str) -> String {
    let mut out = String::new();
    let mut samples: Vec<&str> = Vec::new();
    let kept = comparable(text);
    let flush = |samples: &mut Vec<&str>, out: &mut String| {
        samples.sort_unstable();
        for l in samples.drain(..) {
            out.push_str(l);
            out.push('\n');
        }
    };
    for l in kept.lines() {
        let name = l.split(['{', ' ']).next().unwrap_or("");
        let header = l.starts_with('#') && l.contains("_age_seconds ");
        if header || name.ends_with("_age_seconds") || name.contains("_duration_seconds_") {
            continue;
        }
        if l.starts_with('#') {
            flush(&mut samples, &mut out);
            out.push_str(l);
            out.push('\n');
        } else {
            samples.push(l);
        }
    }
    flush(&mut samples, &mut out);
    out
}

/// A capture served by one `Replay` per server it talked to, and the exporter's
/// configuration pointing at them.
struct Replayed {
    _servers: Vec<SimServer>,
    config: Config,
}

/// The host of a `gateway_server_address` (`[scheme://]host[:port]`).
fn address_host(address: &str) -> String {
    let rest = address.rsplit("://").next().unwrap_or(address);
    rest.split(['/', ':']).next().unwrap_or(rest).to_ascii_lowercase()
}

async fn replay(capture: &Capture, extra: &[&str]) -> Replayed {
    // The cluster of each gateway, from the list and GetGateway answers.
    let mut cluster_of: BTreeMap<String, String> = BTreeMap::new();
    for h in capture.http() {
        let Some(body) = h.response_body.as_deref() else { continue };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else { continue };
        let entries = match value.get("gateways") {
            Some(serde_json::Value::Array(list)) => list.clone(),
            _ if value.get("ids").is_some() => vec![value.clone()],
            _ => Vec::new(),
        };
        for g in entries {
            if let (Some(id), Some(address)) =
                (g["ids"]["gateway_id"].as_str(), g["gateway_server_address"].as_str())
            {
                cluster_of.insert(id.to_owned(), address_host(address));
            }
        }
    }
    // The exchanges by server (scheme, host and port), and the cluster host each stands for.
    let mut by_origin: BTreeMap<String, Vec<exporter_core::capture::Exchange>> = BTreeMap::new();
    let mut api_origin = None;
    let mut host_origin: BTreeMap<String, String> = BTreeMap::new();
    for exchange in &capture.exchanges {
        let exporter_core::capture::Exchange::Http(h) = exchange else { continue };
        let url = Url::parse(&h.url).unwrap();
        let origin = url.origin().ascii_serialization();
        by_origin.entry(origin.clone()).or_default().push(exchange.clone());
        let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
        if segments.get(2) == Some(&"gs") {
            let id = match segments.get(4) {
                Some(id) if *id != "connection" => Some((*id).to_owned()),
                _ => h
                    .request_body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                    .and_then(|b| b["gateway_ids"][0]["gateway_id"].as_str().map(str::to_owned)),
            };
            if let Some(host) = id.and_then(|id| cluster_of.get(&id)) {
                host_origin.insert(host.clone(), origin);
            }
        } else if api_origin.is_none() {
            api_origin = Some(origin);
        }
    }
    let mut servers = Vec::new();
    let mut url_of: BTreeMap<String, String> = BTreeMap::new();
    for (origin, exchanges) in by_origin {
        let part = Capture { exchanges, ..capture.clone() };
        let server =
            SimServer::start(Arc::new(Replay::new(&part).unwrap()), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        url_of.insert(origin, server.url());
        servers.push(server);
    }
    let api = url_of[&api_origin.expect("the capture has no Identity Server call")].clone();
    let clusters: Vec<String> =
        host_origin.iter().map(|(host, origin)| format!("{host}={}", url_of[origin])).collect();
    Replayed { _servers: servers, config: config(&api, &clusters, extra) }
}

/// One scrape of `*` served by exporter-core (the probe's exposition, as a capture has it).
async fn scrape(config: Config) -> String {
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let ttn = Ttn::from_config(config, Secret::new("NNSXS.REPLAY.KEY"), http);
    let server = exporter_core::spawn(ttn, ServeOptions::for_test(INFO)).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp =
        client.get(format!("http://{}/probe?target=*", server.local_addr())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    server.shutdown().await;
    text
}

#[tokio::test]
async fn a_capture_replays_to_the_same_exposition() {
    let sim = sim(|_| {}).await;
    sim.world.disconnect("gw-0004").unwrap();
    let ttn = exporter(sim_config(&sim, &[]), USER_KEY);
    let capture = Capture::from_slice(capture_text(&ttn).await.as_bytes()).unwrap();
    let replayed = replay(&capture, &[]).await;
    let text = scrape(replayed.config).await;
    assert_eq!(normal(&text), normal(&capture.exposition));
    assert!(text.contains("ttn_up 1"), "{text}");
    assert!(text.contains("gateway_id=\"gateway-1\""), "{text}");
}

/// A capture records every call of its scrape even when the cache is fresh (it reads
/// everything again), and a warm cache after it still answers without calls.
#[tokio::test]
async fn a_capture_reads_everything_again() {
    let sim = sim(|_| {}).await;
    let ttn = exporter(sim_config(&sim, &[]), USER_KEY);
    let out = check(&ttn, None).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let before = sim.identity.counters().get("ListGateways");
    let capture = Capture::from_slice(capture_text(&ttn).await.as_bytes()).unwrap();
    assert_eq!(sim.identity.counters().get("ListGateways"), before + 1);
    let paths: Vec<&str> = capture.http().map(|h| h.url.as_str()).collect();
    assert_eq!(paths.len(), 4, "the list and a batch per cluster: {paths:?}");
    assert!(capture.http().all(|h| h.status == Some(200)), "{paths:?}");
}

const CAPTURES: &str = "tests/captures";

/// The corpus captures made from the simulator: name, simulator setup, API key.
async fn write_sim_captures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CAPTURES);
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(format!("{name}.yml")), text).unwrap();
    };
    // Normal: twelve gateways on three clusters in every state of the simulator.
    let normal = sim(|_| {}).await;
    write("normal", capture_text(&exporter(sim_config(&normal, &[]), USER_KEY)).await);
    // A gateway gone for more than 48 h: 404 not_connected (left out of the batch answer).
    let gone = sim(|o| o.gateways = 4).await;
    gone.world.disconnect("gw-0002").unwrap();
    gone.world.advance(Duration::from_secs(48 * 3600 + 60));
    write("not-connected-48h", capture_text(&exporter(sim_config(&gone, &[]), USER_KEY)).await);
    // The key refused (401), and a key without "view gateway status" (403).
    let small = sim(|o| o.gateways = 4).await;
    write("key-expired-401", capture_text(&exporter(sim_config(&small, &[]), EXPIRED_KEY)).await);
    write(
        "no-status-right-403",
        capture_text(&exporter(sim_config(&small, &[]), NO_STATUS_KEY)).await,
    );
}

#[tokio::test]
async fn every_capture_of_the_corpus_replays_to_its_golden() {
    if std::env::var_os("UPDATE_CAPTURES").is_some_and(|v| v == "1") {
        write_sim_captures().await;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CAPTURES);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "json"))
        .collect();
    files.sort();
    let names: Vec<String> =
        files.iter().map(|f| f.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for expected in ["normal", "not-connected-48h", "spec-examples"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    for file in &files {
        let capture = Capture::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let replayed = replay(&capture, &[]).await;
        let text = scrape(replayed.config).await;
        if let Some(findings) = promtool_check_metrics(&text) {
            assert!(findings.is_empty(), "{}: promtool: {findings}", file.display());
        }
        // A capture from the exporter replays to its own exposition.
        if !capture.exposition.is_empty() {
            assert_eq!(normal(&text), normal(&capture.exposition), "{}", file.display());
        }
        assert_golden(file.with_extension("prom"), &normal(&text));
    }
}

/// `/probe?target=*&capture=true` on a running exporter with a warm cache still records the
/// list and every cluster's batch, and answers the YAML capture.
#[tokio::test]
async fn a_capture_over_http_from_a_warm_exporter() {
    let sim = sim(|_| {}).await;
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let ttn =
        Ttn::from_config(sim_config(&sim, &["--stats-ttl", "1h"]), Secret::new(USER_KEY), http);
    let server = exporter_core::spawn(ttn, ServeOptions::for_test(INFO)).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}", server.local_addr());
    let warm = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(warm.contains("ttn_up 1"), "{warm}");
    let resp = client.get(format!("{base}/probe?target=*&capture=true")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    let capture = Capture::from_slice(text.as_bytes()).unwrap();
    assert_eq!(capture.http().count(), 4, "{text}");
    assert!(!text.contains(USER_KEY) && !text.contains("gw-0001"), "{text}");
    assert_eq!(sim.identity.counters().get("ListGateways"), 2);
    server.shutdown().await;
}
