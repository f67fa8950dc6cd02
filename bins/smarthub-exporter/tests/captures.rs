//! The capture corpus in `tests/captures/`: every `<name>.yml` is served by device-sim's
//! `Replay` and scraped by a fresh exporter with default flags, and the exposition (less
//! durations and the boot timestamp) must equal `<name>.prom` (`UPDATE_GOLDEN=1` rewrites
//! it). Adding a user's capture is one file and one golden file.
//!
//! `UPDATE_CAPTURES=1` rewrites the corpus from the simulator in each scenario it models and
//! from the spec's example payloads, with the exporter's own `capture` command, and checks
//! that each replays to the exposition it was taken with.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use device_sim::{
    http::{HttpDevice as _, SimServer},
    replay::Replay,
    smarthub::{DEVICES_PATH, OWL_PATH, Profile, STATUS_PATH, SmartHub, WAN_PATH},
};
use exporter_core::{
    Command, ServeOptions,
    capture::{Capture, CaptureFormat, CapturedHttp, Exchange, comparable},
};
use smarthub_exporter::{Flags, INFO, Smarthub};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

fn exporter(url: &str) -> Smarthub {
    let flags = Flags { target: Some(url.parse().unwrap()), ..Flags::default() };
    let http = exporter_core::client::http_client(&INFO).unwrap();
    Smarthub::with_client(flags, None, http).unwrap()
}

/// [`comparable`] less `smarthub_boot_time_seconds` (the wall clock minus the captured uptime).
fn stable(text: &str) -> String {
    comparable(text)
        .lines()
        .filter(|l| !l.starts_with("smarthub_boot_time_seconds "))
        .map(|l| format!("{l}\n"))
        .collect()
}

async fn serve(capture: &Capture) -> SimServer {
    SimServer::start(Arc::new(Replay::new(capture).unwrap()), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// One `/probe` of `url` by a fresh exporter with default flags.
async fn scrape(url: &str) -> String {
    let server = exporter_core::spawn(exporter(url), ServeOptions::for_test(INFO)).await.unwrap();
    let target = url.replace(':', "%3A").replace('/', "%2F");
    let probe = format!("http://{}/probe?target={target}", server.local_addr());
    reqwest::get(probe).await.unwrap().text().await.unwrap()
}

/// The exporter's own `capture` of the hub at `url`.
async fn take(url: &str) -> String {
    let mut opts = ServeOptions::for_test(INFO);
    opts.command =
        Command::Capture { target: None, out: PathBuf::from("-"), format: CaptureFormat::Yaml };
    let out = exporter_core::run_command(&exporter(url), &opts).await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    out.stdout
}

/// The spec's example payloads (§15.2 VDSL2, §15.4 devices, §15.6 mesh, §15.7 status) as the
/// hub would serve them.
fn spec_examples() -> Capture {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let page = |path: &str, file: &str, kind: &str| {
        Exchange::Http(CapturedHttp {
            method: "GET".into(),
            url: format!("http://192.168.1.254{path}"),
            status: Some(200),
            response_headers: vec![("content-type".into(), kind.into())],
            response_body: Some(std::fs::read_to_string(fixtures.join(file)).unwrap()),
            ..CapturedHttp::default()
        })
    };
    Capture {
        notice: Vec::new(),
        format: exporter_core::capture::FORMAT_VERSION,
        exporter: INFO.binary.into(),
        version: INFO.version.into(),
        namespace: "smarthub".into(),
        target: "http://192.168.1.254".into(),
        taken_at: "2024-06-03T21:40:17Z".into(),
        redacted: Vec::new(),
        exchanges: vec![
            page(WAN_PATH, "wan_conn_vdsl.xml", "text/xml"),
            page(STATUS_PATH, "cgi_basicStatus.js", "application/javascript"),
            page(DEVICES_PATH, "cgi_basicMyDevice.js", "application/javascript"),
            page(OWL_PATH, "cgi_owl.js", "application/javascript"),
        ],
        exposition: String::new(),
    }
}

/// A corpus file name, the hub's profile and its control knobs.
type Scenario = (&'static str, Profile, &'static [(&'static str, &'static str)]);

/// Rewrites the corpus (`UPDATE_CAPTURES=1`).
async fn update_captures() {
    std::fs::create_dir_all(dir()).unwrap();
    let scenarios: &[Scenario] = &[
        ("normal", Profile::Fttp, &[]),
        ("vdsl-slot1", Profile::Vdsl, &[("devices", "empty")]),
        ("mesh", Profile::Vdsl, &[]),
        ("wan-down", Profile::Down, &[]),
        ("referer-refused", Profile::Vdsl, &[("referer", "refuse")]),
        ("referer-error-page", Profile::Vdsl, &[("referer", "refuse-page")]),
    ];
    for (name, profile, knobs) in scenarios {
        let hub = Arc::new(SmartHub::new(*profile));
        for (k, v) in *knobs {
            hub.control(k, v).unwrap();
        }
        let sim = SimServer::start(hub, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let text = take(&sim.url()).await;
        std::fs::write(dir().join(format!("{name}.yml")), &text).unwrap();
    }
    let examples = serve(&spec_examples()).await;
    let text = take(&examples.url()).await;
    std::fs::write(dir().join("spec-examples.yml"), text).unwrap();
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "json"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_capture_replays_to_its_golden_exposition() {
    if std::env::var_os("UPDATE_CAPTURES").is_some() {
        update_captures().await;
    }
    let files = corpus();
    let names: Vec<String> =
        files.iter().map(|f| f.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for expected in [
        "normal",
        "vdsl-slot1",
        "mesh",
        "wan-down",
        "referer-refused",
        "referer-error-page",
        "spec-examples",
    ] {
        assert!(names.iter().any(|n| n == expected), "tests/captures/{expected}.yml missing");
    }
    for file in files {
        let capture = Capture::from_slice(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        let replay = serve(&capture).await;
        let replayed = stable(&scrape(&replay.url()).await);
        let golden = file.with_extension("prom");
        exporter_core::testing::assert_golden(&golden, &replayed);
        // Each capture of the corpus was taken with default flags: its replay is the scrape.
        assert_eq!(
            replayed,
            stable(&capture.exposition),
            "{}: the replay differs from the exposition captured with it",
            file.display()
        );
    }
}
