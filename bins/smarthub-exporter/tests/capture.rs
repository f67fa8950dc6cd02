//! Issue 17 against the simulated hub: `check` (healthy, WAN down, unreachable, a hub that
//! refuses the Referer), `capture` with every identifier the simulator produces redacted,
//! and a capture replayed giving the exposition of the scrape it was taken from.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::PathBuf, sync::Arc};

use argh::FromArgs;
use device_sim::{
    http::{HttpDevice as _, SimServer},
    replay::Replay,
    smarthub::{
        DEVICES_PATH, FIRMWARE, OWL_PATH, Profile, SERIAL, SSID, STATUS_PATH, SmartHub, WAN_PATH,
        hub_encode,
    },
};
use exporter_core::{
    Command, CommandOutput, ServeOptions,
    capture::{Capture, CaptureFormat, comparable},
};
use smarthub_exporter::{Flags, INFO, Smarthub};

fn exporter(url: &str, args: &[&str]) -> Smarthub {
    let mut flags = Flags::from_args(&["smarthub-exporter"], args).unwrap();
    flags.target = Some(url.parse().unwrap());
    let http = exporter_core::client::http_client(&INFO).unwrap();
    Smarthub::with_client(flags, None, http).unwrap()
}

async fn hub(profile: Profile) -> (Arc<SmartHub>, SimServer) {
    let hub = Arc::new(SmartHub::new(profile));
    let sim = SimServer::start(hub.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (hub, sim)
}

async fn run(exporter: &Smarthub, command: Command) -> CommandOutput {
    let mut opts = ServeOptions::for_test(INFO);
    opts.command = command;
    exporter_core::run_command(exporter, &opts).await
}

async fn check(exporter: &Smarthub, json: bool) -> CommandOutput {
    run(exporter, Command::Check { target: None, json }).await
}

/// One capture to stdout, parsed.
async fn capture(exporter: &Smarthub) -> Capture {
    let out = run(
        exporter,
        Command::Capture { target: None, out: PathBuf::from("-"), format: CaptureFormat::Yaml },
    )
    .await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    Capture::from_slice(out.stdout.as_bytes()).unwrap()
}

/// The exposition of one `/probe` of `url` by a fresh exporter with `args`.
async fn scrape(url: &str, args: &[&str]) -> String {
    let server =
        exporter_core::spawn(exporter(url, args), ServeOptions::for_test(INFO)).await.unwrap();
    let target = url.replace(':', "%3A").replace('/', "%2F");
    let probe = format!("http://{}/probe?target={target}", server.local_addr());
    reqwest::get(probe).await.unwrap().text().await.unwrap()
}

/// [`comparable`], less `smarthub_boot_time_seconds`: the wall clock minus the hub's uptime,
/// so a timestamp like the durations (a replay serves the uptime of its capture).
fn stable(text: &str) -> String {
    comparable(text).lines().filter(|l| !l.starts_with("smarthub_boot_time_seconds ")).fold(
        String::new(),
        |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        },
    )
}

#[tokio::test]
async fn check_a_healthy_hub_says_what_it_is() {
    let (_hub, sim) = hub(Profile::Vdsl).await;
    let e = exporter(&sim.url(), &[]);
    let out = check(&e, false).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let text = out.stdout;
    for expected in [
        "UP in",
        &format!("firmware: {FIRMWARE}"),
        "firmware installed: 2024/03/19 03:12:44",
        "model: BT Smart Hub 2 (SmartHub2 in cgi_owl.js)",
        "wan: slot 1 (vdsl), connected",
        "quirk: active WAN slot 1 (vdsl), from wan_active_idx",
        "collector wan: ok",
        "collector status: ok",
        "collector devices: ok",
        "collector mesh: ok",
        "1 of 1 target up",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    assert!(!text.contains(SERIAL), "the serial is an identifier: {text}");
    assert!(!text.contains("login:"), "the hub needs no login: {text}");
    assert!(!text.contains("Referer"), "{text}");

    let json = check(&e, true).await;
    assert_eq!(json.exit_code, 0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let t = &v["targets"][0];
    assert_eq!(t["up"], true, "{v}");
    assert_eq!(t["facts"]["firmware"], FIRMWARE, "{v}");
    assert!(t["quirks"].as_array().unwrap().iter().any(|q| q.as_str().unwrap().contains("slot 1")));
}

#[tokio::test]
async fn check_fttp_uses_slot_0_and_shows_the_serial_only_when_asked() {
    let (_hub, sim) = hub(Profile::Fttp).await;
    let out = check(&exporter(&sim.url(), &["--expose-identifiers"]), false).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.stdout.contains("quirk: active WAN slot 0 (ethernet)"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("serial: {SERIAL}")), "{}", out.stdout);
}

#[tokio::test]
async fn check_a_hub_with_the_wan_down_is_up_and_says_the_wan_is_down() {
    let (_hub, sim) = hub(Profile::Down).await;
    let out = check(&exporter(&sim.url(), &[]), false).await;
    assert_eq!(out.exit_code, 0, "the hub answers: {out:?}");
    assert!(out.stdout.contains("wan: slot 1 (vdsl), not connected"), "{}", out.stdout);
    assert!(
        out.stdout.contains("quirk: the live WAN slot 1 (vdsl) is not connected"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn check_an_unreachable_hub_is_down_with_the_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let out = check(&exporter(&url, &[]), false).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    assert!(out.stdout.contains("DOWN (refused)"), "{}", out.stdout);
    assert!(out.stdout.contains("GET /nonAuth/wan_conn.xml"), "{}", out.stdout);
    assert!(out.stdout.contains("0 of 1 target up"), "{}", out.stdout);
}

#[tokio::test]
async fn check_a_hub_refusing_the_referer_says_so() {
    let (hub, sim) = hub(Profile::Vdsl).await;
    hub.control("referer", "refuse").unwrap();
    let out = check(&exporter(&sim.url(), &[]), false).await;
    // wan_conn.xml still answers: the hub is up, the script pages are not.
    assert_eq!(out.exit_code, 0, "{out:?}");
    let text = out.stdout;
    for expected in [
        "collector devices: FAILED",
        "collector mesh: FAILED",
        "collector status: FAILED",
        "HTTP 403: the hub refused the page; firmware since 2022 answers 403 when the Referer \
         header is missing or not a hub page (sent Referer: http://127.0.0.1",
        "quirk: needs the Referer header (403 without it)",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    assert!(!text.contains("password"), "no login to blame: {text}");

    // Some firmware answers an HTML error page instead of the 403.
    hub.control("referer", "refuse-page").unwrap();
    let out = check(&exporter(&sim.url(), &[]), false).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "the hub answered with an HTML page instead of data; some firmware answers an \
             error page, or 403, when the Referer header is missing or not a hub page"
        ),
        "{}",
        out.stdout
    );

    // The same refusal on every page: down, and the reason in the user's words.
    sim.set_fault(Some("status:403".parse().unwrap()));
    let out = check(&exporter(&sim.url(), &[]), false).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    assert!(out.stdout.contains("DOWN"), "{}", out.stdout);
    assert!(out.stdout.contains("the hub refused the page"), "{}", out.stdout);
    assert!(out.stdout.contains("Referer"), "{}", out.stdout);
}

/// Every identifier the simulator can put in its pages, decoded and as the hub encodes it.
fn identifiers(hub: &SmartHub) -> Vec<String> {
    let mut values: Vec<String> = vec![
        SERIAL.into(),
        "+092822+NQ00000001".into(),
        SSID.into(),
        "Smart Hub 2".into(),
        "Landing disc".into(),
        "192.168.1.254".into(),
        "192.168.1.95".into(),
        "172.16.11.23".into(),
        "172.16.12.1".into(),
        "fe80::5e6f:7a8b:9c0d:1e2f".into(),
        "fe80::2c3d:4eff:fe5f:6a7b".into(),
        "fe80::9c4d:1f2e:3a4b:5c6d".into(),
        "fe80::1a2b:3cff:fe4d:5e6f".into(),
    ];
    for node in ["10", "20"] {
        for n in 0..5 {
            values.push(format!("AA:BB:CC:{node}:00:0{n}"));
        }
    }
    for d in hub.devices() {
        values.extend([d.mac.clone(), d.mac.to_ascii_lowercase(), d.hostname, d.name, d.ip]);
        values.extend([d.ipv6, d.ipv6_ll].into_iter().filter(|v| v.len() > 2));
    }
    // Documentation addresses (2001:db8::/32, as the simulator's global IPv6 addresses) are
    // what the redactor's placeholders look like: it leaves them alone.
    values.retain(|v| !v.starts_with("2001:db8:"));
    let mut all: Vec<String> = values.iter().map(|v| hub_encode(v)).collect();
    all.extend(values);
    all.retain(|v| v.len() >= 3);
    all.sort();
    all.dedup();
    all
}

#[tokio::test]
async fn a_capture_hides_every_identifier_of_the_simulator() {
    for profile in [Profile::Vdsl, Profile::Fttp] {
        let (hub, sim) = hub(profile).await;
        let e = exporter(&sim.url(), &["--lan-devices", "all", "--expose-identifiers"]);
        let file = capture(&e).await;
        let text = file.to_text(CaptureFormat::Yaml).unwrap();
        let json = file.to_text(CaptureFormat::Json).unwrap();
        let paths: Vec<String> = file.http().map(|h| h.url.clone()).collect();
        for path in [WAN_PATH, STATUS_PATH, DEVICES_PATH, OWL_PATH] {
            assert!(paths.iter().any(|u| u.ends_with(path)), "{path} not captured: {paths:?}");
        }
        for value in identifiers(&hub) {
            assert!(!text.contains(&value), "{profile:?}: {value:?} is in the capture:\n{text}");
            assert!(!json.contains(&value), "{profile:?}: {value:?} is in the JSON capture");
        }
        assert!(text.contains("ssid-"), "the SSID was replaced: {text}");
        assert!(file.exposition.contains("smarthub_lan_device_info{"), "{}", file.exposition);
        assert!(file.redacted.iter().any(|k| k.contains("name")), "{:?}", file.redacted);
    }
}

#[tokio::test]
async fn a_replayed_capture_gives_the_exposition_it_was_taken_with() {
    for (profile, args) in [
        (Profile::Vdsl, &[][..]),
        (Profile::Fttp, &["--lan-devices", "all"][..]),
        (Profile::Down, &[][..]),
    ] {
        let (_hub, sim) = hub(profile).await;
        let file = capture(&exporter(&sim.url(), args)).await;
        assert!(file.exposition.contains("smarthub_up 1"), "{}", file.exposition);
        let replay =
            SimServer::start(Arc::new(Replay::new(&file).unwrap()), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let replayed = scrape(&replay.url(), args).await;
        assert_eq!(
            stable(&replayed),
            stable(&file.exposition),
            "{profile:?}: the replay differs from the capture"
        );
        assert!(replayed.contains("smarthub_scrape_collector_success{collector=\"mesh\"} 1"));
    }
}

#[tokio::test]
async fn a_capture_reads_past_the_static_cache() {
    // A warm exporter does not ask for cgi_basicStatus.js; a capture does, so that its replay
    // (by an exporter with an empty cache) shows the same facts.
    let (_hub, sim) = hub(Profile::Vdsl).await;
    let e = exporter(&sim.url(), &[]);
    assert_eq!(check(&e, false).await.exit_code, 0);
    assert_eq!(sim.counters().get(STATUS_PATH), 1);
    let file = capture(&e).await;
    assert_eq!(sim.counters().get(STATUS_PATH), 2, "the capture read the page again");
    assert!(file.http().any(|h| h.url.ends_with(STATUS_PATH)));
}

#[tokio::test]
async fn a_capture_of_a_refusing_hub_records_the_403() {
    let (hub, sim) = hub(Profile::Vdsl).await;
    hub.control("referer", "refuse").unwrap();
    let file = capture(&exporter(&sim.url(), &[])).await;
    let refused: Vec<_> = file.http().filter(|h| h.status == Some(403)).collect();
    assert_eq!(refused.len(), 3, "{:?}", file.exchanges);
    assert!(refused.iter().all(|h| h.request_headers.iter().any(|(k, _)| k == "referer")));
    let replay =
        SimServer::start(Arc::new(Replay::new(&file).unwrap()), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let out = check(&exporter(&replay.url(), &[]), false).await;
    assert!(out.stdout.contains("quirk: needs the Referer header"), "{}", out.stdout);
}
