//! Issue 14: `--config-file` (settings, `gateway_labels`, unknown keys), `/sd`, reload of the
//! file and of the API key file, and the rule that the API key goes only to configured
//! addresses (checked with recording servers that see every byte).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::sample_value as value;
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use device_sim::ttn::{SimOptions, TtnSim, USER_KEY};
use exporter_core::{RunningServer, ServeOptions, testing::ChildExporter};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use ttn_exporter::{Flags, INFO, Startup, Ttn};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("ttn-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn flags(args: &[&str]) -> Flags {
    argh::FromArgs::from_args(&["ttn-exporter"], args).unwrap()
}

/// The config file for the simulator: its URLs, the key file and some labels.
fn sim_config(sim: &TtnSim, key_file: &std::path::Path, extra: &str) -> String {
    let mut text = format!(
        "# ttn-exporter test configuration\napi_url: {}\napi_key_file: {}\nstats_ttl: 100ms\n\
         cluster_urls:\n",
        sim.identity_url(),
        key_file.display()
    );
    for c in &sim.clusters {
        text.push_str(&format!("  {}: {}\n", c.host, c.server.url()));
    }
    text.push_str(extra);
    text
}

async fn serve(startup: Startup) -> RunningServer {
    let ttn = Ttn::start(startup).unwrap();
    exporter_core::spawn(ttn, ServeOptions::for_test(INFO)).await.unwrap()
}

fn startup(config_file: PathBuf, args: &[&str], given: &[&str]) -> Startup {
    Startup {
        flags: flags(args),
        given: given.iter().map(|g| (*g).to_owned()).collect(),
        config_file: Some(config_file),
        state_directory: None,
    }
}

async fn get(server: &RunningServer, path: &str) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client.get(format!("http://{}{path}", server.local_addr())).send().await.unwrap();
    resp.text().await.unwrap()
}

async fn sd(server: &RunningServer) -> Vec<serde_json::Value> {
    let body = get(server, "/sd").await;
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    parsed.as_array().cloned().unwrap_or_else(|| panic!("{body}"))
}

fn sd_labels<'a>(groups: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    groups
        .iter()
        .map(|g| &g["labels"])
        .find(|l| l["__param_target"] == id)
        .unwrap_or_else(|| panic!("no {id} in {groups:?}"))
}

#[tokio::test]
async fn sd_lists_every_gateway_with_its_labels_and_reload_changes_them() {
    let sim = TtnSim::start(SimOptions { gateways: 6, ..SimOptions::default() }).await.unwrap();
    let dir = Dir::new("sd");
    let key = dir.write("api-key", &format!("{USER_KEY}\n"));
    let labels =
        "gateway_labels:\n  gw-0001: {site: north, room: attic}\n  gw-0002: {site: south}\n";
    let file = dir.write("config.yml", &sim_config(&sim, &key, labels));
    let server = serve(startup(file.clone(), &[], &[])).await;

    let groups = sd(&server).await;
    assert_eq!(groups.len(), 6, "{groups:?}");
    let host = server.local_addr().to_string();
    assert_eq!(
        groups[0],
        serde_json::json!({"targets": [host], "labels": {"__metrics_path__": "/probe",
            "__param_target": "gw-0001", "instance": "gw-0001", "site": "north", "room": "attic"}})
    );
    assert_eq!(sd_labels(&groups, "gw-0002")["site"], "south");
    assert_eq!(sd_labels(&groups, "gw-0003").get("site"), None);
    let text = get(&server, "/probe?target=gw-0001").await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");

    // A good reload: new labels, and a setting of the file (the gateway list) takes effect.
    let labels = "user: sim-user\ngateway_labels:\n  gw-0001: {site: west}\n";
    std::fs::write(&file, sim_config(&sim, &key, labels)).unwrap();
    server.reload().await.unwrap();
    let groups = sd(&server).await;
    assert_eq!(sd_labels(&groups, "gw-0001")["site"], "west");
    assert_eq!(sd_labels(&groups, "gw-0001").get("room"), None);
    assert_eq!(sd_labels(&groups, "gw-0002").get("site"), None);
    // sim-user is a direct collaborator of every gateway but every fourth.
    assert_eq!(groups.len(), 5, "{groups:?}");
    assert_eq!(sim.identity.counters().get("/api/v3/users/sim-user/gateways"), 1);

    // A bad reload (an unknown key) keeps the running configuration and says where.
    std::fs::write(&file, sim_config(&sim, &key, "gateway_lables:\n  gw-0001: {site: x}\n"))
        .unwrap();
    let err = server.reload().await.unwrap_err();
    let lines = sim_config(&sim, &key, "").lines().count() + 1;
    assert!(
        err.contains(&format!("{}:{lines}:1: gateway_lables: unknown field", file.display())),
        "{err}"
    );
    let groups = sd(&server).await;
    assert_eq!(sd_labels(&groups, "gw-0001")["site"], "west");
    let metrics = get(&server, "/metrics").await;
    assert_eq!(value(&metrics, "ttn_exporter_config_last_reload_successful"), Some(0.0));
    assert_eq!(value(&metrics, "ttn_up"), Some(1.0), "still scraping: {metrics}");
    // Labels that Prometheus would refuse are refused too.
    std::fs::write(&file, sim_config(&sim, &key, "gateway_labels:\n  gw-0001: {__x: y}\n"))
        .unwrap();
    let err = server.reload().await.unwrap_err();
    assert!(err.contains("gateway_labels.gw-0001") && err.contains("reserved"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_is_used_after_reload() {
    let sim = TtnSim::start(SimOptions { gateways: 4, ..SimOptions::default() }).await.unwrap();
    let dir = Dir::new("rotate");
    let old = "NNSXS.REVOKEDKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETREVOKED";
    let key = dir.write("api-key", &format!("{old}\n"));
    let file = dir.write("config.yml", &sim_config(&sim, &key, ""));
    let server = serve(startup(file, &[], &[])).await;
    let text = get(&server, "/metrics").await;
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "the revoked key is refused: {text}");

    dir.write("api-key", &format!("{USER_KEY}\n"));
    // Without a reload the exporter keeps the key it read (and waits out the refusal).
    let text = get(&server, "/metrics").await;
    assert_eq!(value(&text, "ttn_up"), Some(0.0), "{text}");
    server.reload().await.unwrap();
    let text = get(&server, "/metrics").await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "the new key at once: {text}");
    assert_eq!(value(&text, "ttn_gateway_connected{gateway_id=\"gw-0001\"}"), Some(1.0));

    // An emptied key file is an error; the running key stays.
    dir.write("api-key", "\n");
    let err = server.reload().await.unwrap_err();
    assert!(err.contains("is empty"), "{err}");
    assert!(!err.contains("NNSXS"), "{err}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let text = get(&server, "/metrics").await;
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    server.shutdown().await;
}

#[test]
fn startup_errors_name_the_file_and_flags_win() {
    let dir = Dir::new("errors");
    let key = dir.write("api-key", "NNSXS.A.B\n");
    let file = dir.write(
        "config.yml",
        &format!("api_key_file: {}\nstats_ttl: 1m\nnonsense: 1\n", key.display()),
    );
    let err = Ttn::start(startup(file.clone(), &[], &[])).unwrap_err();
    assert!(
        format!("{err:#}").starts_with(&format!("{}:3:1: nonsense: unknown field", file.display())),
        "{err:#}"
    );

    dir.write("config.yml", &format!("api_key_file: {}\nstats_ttl: soon\n", key.display()));
    let err = Ttn::start(startup(file.clone(), &[], &[])).unwrap_err();
    assert!(format!("{err:#}").contains("--stats-ttl: invalid duration \"soon\""), "{err:#}");
    // ... unless the flag is given: it wins over the file.
    assert!(Ttn::start(startup(file.clone(), &["--stats-ttl", "5s"], &["--stats-ttl"])).is_ok());

    let missing = dir.path("no-such-key");
    dir.write("config.yml", &format!("api_key_file: {}\n", missing.display()));
    let err = Ttn::start(startup(file.clone(), &[], &[])).unwrap_err();
    assert!(format!("{err:#}").contains("cannot read secret file"), "{err:#}");
    dir.write("config.yml", "gateway_labels:\n  NOT_AN_ID: {site: x}\n");
    let err = Ttn::start(startup(file.clone(), &["--api-key-file", key.to_str().unwrap()], &[]))
        .unwrap_err();
    assert!(format!("{err:#}").contains("gateway_labels.NOT_AN_ID"), "{err:#}");
}

/// A TCP server that records every byte it receives and answers each request with
/// `answer(request head)`.
struct Recorder {
    addr: SocketAddr,
    bytes: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(answer);
        let (b, c) = (Arc::clone(&bytes), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (b, answer) = (Arc::clone(&b), Arc::clone(&answer));
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    let started = Instant::now();
                    // Read the head and a body of Content-Length bytes (bounded in time).
                    while started.elapsed() < Duration::from_secs(5) {
                        let Ok(Ok(n)) =
                            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                                .await
                        else {
                            break;
                        };
                        if n == 0 {
                            break;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    b.lock().unwrap().extend_from_slice(&seen);
                    let head = String::from_utf8_lossy(&seen).to_string();
                    let reply = answer(&head);
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Recorder { addr, bytes, connections }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).to_string()
    }
}

fn http(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n{headers}\r\n{body}",
        body.len()
    )
}

/// Issue 14: the API key goes to `api_url` and the configured `cluster_urls` only: never to
/// a host named by API data (`gateway_server_address`), never after a redirect.
#[tokio::test]
async fn the_key_goes_only_to_configured_addresses() {
    let evil = Recorder::start(|_| http("200 OK", "", "{}")).await;
    let evil_addr = evil.addr;
    let cluster = Recorder::start(|_| http("200 OK", "", "{}")).await;
    let gateways = serde_json::json!({"gateways": [
        {"ids": {"gateway_id": "gw-home"}, "gateway_server_address": "127.0.0.1:1700"},
        {"ids": {"gateway_id": "gw-configured"}, "gateway_server_address": "nam9.example.com"},
        {"ids": {"gateway_id": "gw-evil-name"}, "gateway_server_address": format!("localhost:{}", evil_addr.port())},
        {"ids": {"gateway_id": "gw-evil-url"}, "gateway_server_address": format!("https://[::1]:{}", evil_addr.port())},
        {"ids": {"gateway_id": "gw-evil-dns"}, "gateway_server_address": "evil.example.com"},
        {"ids": {"gateway_id": "gw-ttn"}, "gateway_server_address": "nam1.cloud.thethings.network"},
    ]})
    .to_string();
    let api = Recorder::start(move |head| {
        let redirect = format!("location: http://{evil_addr}/api/v3/steal\r\n");
        if head.starts_with("GET /api/v3/gateways?") {
            http("200 OK", "x-total-count: 6\r\n", &gateways)
        } else {
            // The statistics calls are redirected to the other server.
            http("307 Temporary Redirect", &redirect, "{}")
        }
    })
    .await;
    let dir = Dir::new("secret");
    let secret = "NNSXS.RECORDEDKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETRECORDED";
    let key = dir.write("api-key", &format!("{secret}\n"));
    let file = dir.write(
        "config.yml",
        &format!(
            "api_url: http://{}\napi_key_file: {}\ncluster_urls:\n  nam9.example.com: http://{}\n",
            api.addr,
            key.display(),
            cluster.addr
        ),
    );
    let server = serve(startup(file, &[], &[])).await;
    let trace = get(&server, "/probe?target=*&debug=true").await;
    let _ = get(&server, "/metrics").await;
    assert!(trace.contains("HTTP 307"), "the redirect is an error, not followed: {trace}");
    assert!(
        trace.contains("\"evil.example.com\" is not a configured cluster"),
        "a host from the API is never connected to: {trace}"
    );
    let seen = api.text();
    assert!(seen.contains("GET /api/v3/gateways?"), "{seen}");
    assert!(seen.contains("POST /api/v3/gs/gateways/connection/stats"), "{seen}");
    assert!(
        seen.to_ascii_lowercase()
            .contains(&format!("authorization: bearer {}", secret.to_ascii_lowercase()))
    );
    let to_cluster = cluster.text();
    assert!(to_cluster.contains("POST /api/v3/gs/gateways/connection/stats"), "{to_cluster}");
    assert!(to_cluster.contains("gw-configured") && !to_cluster.contains("gw-home"));
    assert_eq!(evil.connections.load(Ordering::SeqCst), 0, "{}", evil.text());
    assert!(evil.text().is_empty());
    server.shutdown().await;
}

/// The binary itself: `--config-file` with an environment variable that wins over the file,
/// `--state-directory` receiving the last-seen times, and a bad file refused at start.
#[tokio::test]
async fn the_binary_reads_the_file_env_wins_and_state_is_kept() {
    let sim = TtnSim::start(SimOptions { gateways: 4, ..SimOptions::default() }).await.unwrap();
    let dir = Dir::new("binary");
    let key = dir.write("api-key", &format!("{USER_KEY}\n"));
    let text = sim_config(&sim, &key, "gateways_refresh: later\n");
    let file = dir.write("config.yml", &text);
    let state = dir.path("state");
    let bin = env!("CARGO_BIN_EXE_ttn-exporter");
    let args =
        ["--config-file", file.to_str().unwrap(), "--state-directory", state.to_str().unwrap()];

    // The file's bad duration is an error at start ...
    let out = std::process::Command::new(bin)
        .args(args)
        .args(["--listen-address", "127.0.0.1:0"])
        .env_remove("TTN_GATEWAYS_REFRESH")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--gateways-refresh: invalid duration \"later\""), "{stderr}");

    // ... unless the environment gives the setting: it wins over the file.
    let exporter = ChildExporter::start(bin, &args, &[("TTN_GATEWAYS_REFRESH", "10m")]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = client
        .get(format!("http://{}/metrics", exporter.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(value(&text, "ttn_up"), Some(1.0), "{text}");
    let saved = std::fs::read_to_string(state.join(ttn_exporter::cache::STATE_FILE)).unwrap();
    assert!(saved.contains("\"gw-0001\"") && saved.contains("last_uplink_received_at"), "{saved}");
    assert!(!saved.contains("NNSXS"), "{saved}");
    drop(exporter);
}
