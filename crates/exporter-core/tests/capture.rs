//! Captures: a small exporter with a login and a device full of identifiers, captured through
//! `<binary> capture` and `/probe?capture=true`; every secret (also base64 and hex) and every
//! identifier must be gone from the file, placeholders keep their shape and stay stable, the
//! file parses back, and `device-sim replay` serves it so that a probe gives the same
//! exposition as the live scrape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fmt,
    path::PathBuf,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use device_sim::{
    http::{Ctx, HttpDevice, Request, Response, SimServer},
    replay::Replay,
};
use exporter_core::{
    Command, Exporter, ExporterInfo, Scrape, Secret, ServeOptions,
    capture::{self, Capture, CaptureFormat, CapturedHttp, Identifier},
    timed,
};

const INFO: ExporterInfo = ExporterInfo {
    binary: "ident-exporter",
    env_prefix: "IDENT",
    version: "0.0.1-test",
    default_port: 9997,
};

const PASSWORD: &str = "s3cr3t-Pa55word!";
const TOKEN: &str = "tok-7f3a9c2e11d04b6a";
const SESSION: &str = "sess-1a2b3c4d5e6f";
const MAC: &str = "A4:91:B1:3C:5E:7F";
const MAC2: &str = "a4-91-b1-3c-5e-80";
const LAN_IP: &str = "192.168.1.57";
const WAN_IP: &str = "81.2.69.160";
const IPV6: &str = "2a02:c7f:1234:5600::1";
const IMEI: &str = "356938035643809";
const IMSI: &str = "234150999999999";
const ICCID: &str = "8944110068256270054";
const EID: &str = "89049032004008882600012345678901";
const PHONE: &str = "+447700900123";
const SERIAL: &str = "+068713+NQ42012345";
const SSID: &str = "BTHub6-XQ7P";
const HOSTNAME: &str = "kitchen-pi";
const DEVICE_NAME: &str = "Living Room TV";
const GATEWAY_ID: &str = "eui-58a0cbfffe801234";
const EUI: &str = "58A0CBFFFE801234";
const LATITUDE: &str = "51.507351";
const LONGITUDE: &str = "-0.127758";

/// Every value that must not appear in a capture.
fn identifiers() -> Vec<&'static str> {
    vec![
        MAC,
        MAC2,
        LAN_IP,
        WAN_IP,
        IPV6,
        IMEI,
        IMSI,
        ICCID,
        EID,
        PHONE,
        SERIAL,
        SSID,
        HOSTNAME,
        DEVICE_NAME,
        GATEWAY_ID,
        EUI,
        LATITUDE,
        LONGITUDE,
        TOKEN,
        SESSION,
    ]
}

/// A device that wants a login and then reports every kind of identifier, in JSON, XML and
/// JavaScript (with a positional array the generic rules cannot read).
#[derive(Debug, Default)]
struct IdentDevice;

impl HttpDevice for IdentDevice {
    fn handle(&self, req: &Request, _ctx: &Ctx) -> Response {
        let logged_in = req.header("cookie").is_some_and(|c| c.contains(SESSION))
            && req.header("authorization") == Some(&format!("Bearer {TOKEN}"));
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/api/login") => {
                let body = String::from_utf8_lossy(&req.body);
                if !body.contains(&hex(PASSWORD.as_bytes())) {
                    return Response::json(401, &serde_json::json!({"error": "wrong password"}));
                }
                Response::json(200, &serde_json::json!({"token": TOKEN, "expires": 600}))
                    .with_header("set-cookie", &format!("SESSIONID={SESSION}; Path=/; HttpOnly"))
            }
            ("GET", "/api/status") if logged_in => Response::json(
                200,
                &serde_json::json!({
                    "model": "IDX-1000",
                    "firmware": "1.2.3",
                    "imei": IMEI,
                    "imsi": IMSI,
                    "iccid": ICCID,
                    "eid": EID,
                    "msisdn": PHONE,
                    "serialNumber": SERIAL,
                    "wan": {"ipv4": WAN_IP, "ipv6": IPV6, "mac": MAC},
                    "gateway_ids": {"gateway_id": GATEWAY_ID, "eui": EUI},
                    "location": {"latitude": LATITUDE.parse::<f64>().unwrap(),
                                 "longitude": LONGITUDE.parse::<f64>().unwrap()},
                    "rsrp": -95,
                }),
            ),
            ("GET", "/wifi.xml") if logged_in => Response::new(
                200,
                "text/xml",
                format!("<wifi><SSID>{SSID}</SSID><Channel>11</Channel></wifi>"),
            ),
            ("GET", "/devices.js") if logged_in => Response::new(
                200,
                "application/javascript",
                format!(
                    "var devices = [[\"{DEVICE_NAME}\", \"{MAC2}\", \"{LAN_IP}\", 1], \
                     ['{HOSTNAME}', '', '', 0]];\n"
                ),
            ),
            (_, path)
                if path.starts_with("/api/") || path.ends_with(".xml") || path.ends_with(".js") =>
            {
                Response::json(403, &serde_json::json!({"error": "log in first"}))
            }
            _ => Response::text(404, "not found"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Url(String);

impl FromStr for Url {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Url> {
        anyhow::ensure!(s.starts_with("http://"), "the target must be an http:// URL");
        Ok(Url(s.to_owned()))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The exporter: logs in with the password (sent hex-encoded, as some routers obfuscate it),
/// then reads the three pages, recording each exchange for captures.
struct IdentExporter {
    client: reqwest::Client,
    password: Secret,
    default: Option<Url>,
}

impl IdentExporter {
    fn new(default: Option<Url>) -> IdentExporter {
        IdentExporter {
            client: exporter_core::client::http_client(&INFO).unwrap(),
            password: Secret::new(PASSWORD),
            default,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        headers: Vec<(&str, String)>,
        body: Option<String>,
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        if let Some(b) = &body {
            req = req.header("content-type", "application/json").body(b.clone());
        }
        let resp = req.send().await;
        let resp = match resp {
            Ok(resp) => resp,
            Err(err) => {
                capture::record_http(|| CapturedHttp {
                    method: method.to_string(),
                    url: url.clone(),
                    request_body: body.clone(),
                    error: Some(format!("{err:#}")),
                    ..CapturedHttp::default()
                });
                return Err(err).context("send");
            }
        };
        let status = resp.status().as_u16();
        let response_headers = resp.headers().clone();
        let text = String::from_utf8_lossy(
            &exporter_core::client::read_body_limited(resp, 1 << 20).await?,
        )
        .into_owned();
        capture::record_http(|| CapturedHttp {
            method: method.to_string(),
            url: url.clone(),
            request_headers: headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            request_body: body.clone(),
            status: Some(status),
            response_headers: capture::header_pairs(&response_headers),
            response_body: Some(text.clone()),
            error: None,
        });
        Ok((status, response_headers, text))
    }

    async fn scrape(&self, base: &str, out: &mut Scrape) -> anyhow::Result<()> {
        capture::secret(&self.password);
        capture::secret_str(&hex(self.password.expose().as_bytes()));
        let login = serde_json::json!({"user": "admin", "password": hex(self.password.expose().as_bytes())});
        let (status, headers, body) = self
            .call(
                reqwest::Method::POST,
                format!("{base}/api/login"),
                vec![],
                Some(login.to_string()),
            )
            .await
            .context("login")?;
        anyhow::ensure!(status == 200, "login: status {status}: {body}");
        out.login("password login succeeded");
        let token = serde_json::from_str::<serde_json::Value>(&body)?["token"]
            .as_str()
            .context("login: no token")?
            .to_owned();
        let cookie = headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("login: no cookie")?
            .to_owned();
        capture::secret_str(&token);
        let auth =
            || vec![("cookie", cookie.clone()), ("authorization", format!("Bearer {token}"))];

        let (_, _, status) =
            self.call(reqwest::Method::GET, format!("{base}/api/status"), auth(), None).await?;
        let s: serde_json::Value = serde_json::from_str(&status).context("status: decode")?;
        let str_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        out.fact("model", str_of(&s["model"]));
        out.fact("firmware", str_of(&s["firmware"]));
        out.info(
            "device_info",
            "Identity of the device.",
            &[
                ("imei", &str_of(&s["imei"])),
                ("mac", &str_of(&s["wan"]["mac"])),
                ("gateway_id", &str_of(&s["gateway_ids"]["gateway_id"])),
                ("serial", &str_of(&s["serialNumber"])),
            ],
        );
        out.gauge(
            "rsrp_dbm",
            "RSRP (no_credentials = not logged in; the key: value prose of a HELP text stays).",
        )
        .sample_opt(&[], s["rsrp"].as_f64());

        let (_, _, xml) =
            self.call(reqwest::Method::GET, format!("{base}/wifi.xml"), auth(), None).await?;
        let ssid = xml.split("<SSID>").nth(1).and_then(|r| r.split('<').next()).unwrap_or_default();
        out.info("wifi_info", "Wi-Fi.", &[("ssid", ssid)]);

        let (_, _, js) =
            self.call(reqwest::Method::GET, format!("{base}/devices.js"), auth(), None).await?;
        // The positional names: the exporter tells the redactor.
        let mut names = Vec::new();
        for part in js.split(['[', ']']).filter(|p| p.contains(',')) {
            let first = part.split(',').next().unwrap_or_default().trim().trim_matches(['"', '\'']);
            if !first.is_empty() {
                capture::identifier(Identifier::Name, first);
                names.push(first.to_owned());
            }
        }
        let mut family = out.gauge("lan_device_up", "LAN devices.");
        for name in &names {
            family.sample(&[("name", name)], 1.0);
        }
        Ok(())
    }
}

impl Exporter for IdentExporter {
    const NAMESPACE: &'static str = "ident";
    const DESCRIPTION: &'static str = "Test exporter with identifiers";
    type Target = Url;

    fn default_target(&self) -> Option<Url> {
        self.default.clone()
    }

    async fn probe(&self, target: &Url, out: &mut Scrape) -> anyhow::Result<()> {
        let got = timed("device", out.deadline(), self.scrape(&target.0, out)).await;
        out.record(got);
        Ok(())
    }
}

/// A fresh directory, removed when the guard drops (also when the test panics).
fn scratch(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("core-capture-{test}-")).tempdir().unwrap()
}

async fn device() -> SimServer {
    SimServer::start(Arc::new(IdentDevice), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// `ident-exporter capture --out FILE` against the device; returns the file's text.
async fn capture_file(sim: &SimServer, dir: &std::path::Path, format: CaptureFormat) -> String {
    let out = dir.join(if format == CaptureFormat::Json { "c.json" } else { "c.yml" });
    let mut opts = ServeOptions::for_test(INFO);
    opts.command = Command::Capture { target: None, out: out.clone(), format };
    let exporter = IdentExporter::new(Some(Url(sim.url())));
    let output = exporter_core::run_command(&exporter, &opts).await;
    assert_eq!(output.exit_code, 0, "{output:?}");
    assert!(output.stderr.contains("wrote the capture of 4 exchange(s)"), "{output:?}");
    std::fs::read_to_string(&out).unwrap()
}

#[tokio::test]
async fn capture_hides_every_secret_and_identifier() {
    let sim = device().await;
    let dir = scratch("hides");
    for format in [CaptureFormat::Yaml, CaptureFormat::Json] {
        let text = capture_file(&sim, dir.path(), format).await;
        let secret_forms = [
            PASSWORD.to_owned(),
            base64(PASSWORD.as_bytes()),
            base64(PASSWORD.as_bytes()).trim_end_matches('=').to_owned(),
            hex(PASSWORD.as_bytes()),
            hex(PASSWORD.as_bytes()).to_ascii_uppercase(),
            base64(TOKEN.as_bytes()),
            hex(TOKEN.as_bytes()),
        ];
        for value in identifiers().iter().map(|s| (*s).to_owned()).chain(secret_forms) {
            assert!(!text.contains(&value), "{value} is in the {format:?} capture:\n{text}");
            let lower = value.to_ascii_lowercase();
            assert!(
                !text.to_ascii_lowercase().contains(&lower),
                "{value} (any case) is in the {format:?} capture:\n{text}"
            );
        }
        // The loopback address of the simulator stays (not an identifier).
        assert!(text.contains(&sim.url()), "{text}");
        // The notice comes first and says what was redacted and where to report.
        let head = if format == CaptureFormat::Yaml {
            text.lines().next().unwrap().to_owned()
        } else {
            text.lines().nth(2).unwrap().to_owned()
        };
        assert!(head.contains("Capture of one scrape by ident-exporter"), "{head}");
        assert!(text.contains("Redacted before writing"), "{text}");
        assert!(text.contains(exporter_core::capture::REPORT_TO), "{text}");

        let capture = Capture::from_slice(text.as_bytes()).unwrap();
        assert_eq!(capture.exporter, "ident-exporter");
        assert_eq!(capture.http().count(), 4);
        assert!(capture.exposition.contains("ident_up 1"), "{}", capture.exposition);
        assert!(
            capture.exposition.contains("(no_credentials = not logged in; the key: value prose"),
            "HELP texts are kept: {}",
            capture.exposition
        );
        for kind in ["secrets", "MAC addresses", "IPv4 addresses", "GPS positions", "Wi-Fi"] {
            assert!(
                capture.redacted.iter().any(|r| r.contains(kind)),
                "{kind}: {:?}",
                capture.redacted
            );
        }
    }
}

#[tokio::test]
async fn placeholders_keep_the_shape_and_are_stable() {
    let sim = device().await;
    let dir = scratch("shape");
    let text = capture_file(&sim, dir.path(), CaptureFormat::Yaml).await;
    let capture = Capture::from_slice(text.as_bytes()).unwrap();
    let status: serde_json::Value =
        serde_json::from_str(capture.http().nth(1).unwrap().response_body.as_deref().unwrap())
            .expect("the redacted status body is still JSON");
    let field = |p: &str| status.pointer(p).unwrap().clone();
    let mac = field("/wan/mac").as_str().unwrap().to_owned();
    assert_eq!(mac.len(), MAC.len());
    assert!(
        mac.split(':').all(|g| g.len() == 2 && g.chars().all(|c| c.is_ascii_hexdigit())),
        "{mac}"
    );
    for (pointer, original) in [("/imei", IMEI), ("/imsi", IMSI), ("/iccid", ICCID), ("/eid", EID)]
    {
        let v = field(pointer).as_str().unwrap().to_owned();
        assert_eq!(v.len(), original.len(), "{pointer}: {v}");
        assert!(v.chars().all(|c| c.is_ascii_digit()), "{pointer}: {v}");
    }
    assert!(field("/iccid").as_str().unwrap().starts_with("89"));
    let phone = field("/msisdn").as_str().unwrap().to_owned();
    assert!(phone.starts_with('+') && phone.len() == PHONE.len(), "{phone}");
    let wan: std::net::Ipv4Addr = field("/wan/ipv4").as_str().unwrap().parse().unwrap();
    assert!(wan.octets()[..3] == [192, 0, 2] || wan.octets()[..3] == [198, 51, 100], "{wan}");
    let v6: std::net::Ipv6Addr = field("/wan/ipv6").as_str().unwrap().parse().unwrap();
    assert_eq!(&v6.segments()[..2], &[0x2001, 0xdb8]);
    assert!(field("/location/latitude").is_f64(), "a coordinate stays a number");
    assert_eq!(field("/rsrp"), serde_json::json!(-95), "measurements stay");
    assert_eq!(field("/model"), serde_json::json!("IDX-1000"));
    // The same MAC maps to the same placeholder in the body and in the exposition.
    assert!(capture.exposition.contains(&format!("mac=\"{mac}\"")), "{}", capture.exposition);
    // The same IMEI as well; the positional names became names.
    let imei = field("/imei").as_str().unwrap().to_owned();
    assert!(capture.exposition.contains(&format!("imei=\"{imei}\"")), "{}", capture.exposition);
    assert!(capture.exposition.contains("name=\"device-"), "{}", capture.exposition);
    // The same value in two captures' runs maps the same way (deterministic).
    let again = capture_file(&sim, dir.path(), CaptureFormat::Yaml).await;
    let again = Capture::from_slice(again.as_bytes()).unwrap();
    assert_eq!(again.exchanges, capture.exchanges);
    // Credentials in headers are hidden, the cookie name is kept.
    let status_req = capture.http().nth(1).unwrap();
    assert!(
        status_req
            .request_headers
            .contains(&("cookie".to_owned(), "SESSIONID=redacted".to_owned()))
    );
    assert!(
        status_req
            .request_headers
            .contains(&("authorization".to_owned(), "Bearer redacted".to_owned()))
    );
}

#[tokio::test]
async fn replay_gives_the_same_exposition_as_the_live_scrape() {
    let sim = device().await;
    let dir = scratch("replay");
    for format in [CaptureFormat::Yaml, CaptureFormat::Json] {
        let text = capture_file(&sim, dir.path(), format).await;
        let capture = Capture::from_slice(text.as_bytes()).unwrap();
        let path = dir.path().join("replayed");
        std::fs::write(&path, &text).unwrap();
        let replay = SimServer::start(
            Arc::new(Replay::from_file(&path).unwrap()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        // Probe the replay through a running server, as Prometheus would.
        let server = exporter_core::spawn(IdentExporter::new(None), ServeOptions::for_test(INFO))
            .await
            .unwrap();
        let url = format!(
            "http://{}/probe?target={}",
            server.local_addr(),
            replay.url().replace(':', "%3A").replace('/', "%2F")
        );
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(body.contains("ident_up 1"), "{body}");
        assert_eq!(
            capture::comparable(&body),
            capture::comparable(&capture.exposition),
            "replayed exposition differs from the capture's"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn replay_serves_in_order_repeats_the_last_and_answers_404_otherwise() {
    let yaml = "format: 1\nexporter: x\nversion: '1'\nnamespace: x\ntarget: t\ntaken_at: now\n\
                exchanges:\n\
                - kind: http\n  method: POST\n  url: http://192.0.2.1/rpc\n  request_body: '{\"method\":\"A\"}'\n  status: 200\n  response_body: a1\n\
                - kind: http\n  method: POST\n  url: http://192.0.2.1/rpc\n  request_body: '{\"method\":\"B\"}'\n  status: 200\n  response_body: b\n\
                - kind: http\n  method: POST\n  url: http://192.0.2.1/rpc\n  request_body: '{\"method\":\"A\"}'\n  status: 500\n  response_body: a2\n";
    let capture = Capture::from_slice(yaml.as_bytes()).unwrap();
    let replay =
        SimServer::start(Arc::new(Replay::new(&capture).unwrap()), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let client = reqwest::Client::new();
    let post = |m: &str| {
        client.post(format!("{}/rpc", replay.url())).body(format!("{{\"method\":\"{m}\"}}")).send()
    };
    let mut got = Vec::new();
    for m in ["A", "B", "A", "A"] {
        let resp = post(m).await.unwrap();
        got.push(format!("{} {}", resp.status().as_u16(), resp.text().await.unwrap()));
    }
    assert_eq!(got, ["200 a1", "200 b", "500 a2", "500 a2"]);
    let resp = post("C").await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(resp.text().await.unwrap().contains("JSON-RPC method C"));
    let resp = client.get(format!("{}/other", replay.url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn probe_with_capture_true_answers_the_capture_behind_basic_auth() {
    let sim = device().await;
    let mut opts = ServeOptions::for_test(INFO);
    opts.web_config_file = Some(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web-config/basic-auth.yml"),
    );
    let server = exporter_core::spawn(IdentExporter::new(None), opts).await.unwrap();
    let url = format!(
        "http://{}/probe?target={}&capture=true",
        server.local_addr(),
        sim.url().replace(':', "%3A").replace('/', "%2F")
    );
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401, "a capture needs the credentials");
    let resp = client.get(&url).basic_auth("alice", Some("alice-secret")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("# Capture of one scrape by ident-exporter"), "{text}");
    for value in identifiers() {
        assert!(!text.contains(value), "{value} in:\n{text}");
    }
    assert!(!text.contains(PASSWORD) && !text.contains(&hex(PASSWORD.as_bytes())));
    let capture = Capture::from_slice(text.as_bytes()).unwrap();
    assert_eq!(capture.http().count(), 4);
    let bad = client
        .get(url.replace("capture=true", "capture=maybe"))
        .basic_auth("alice", Some("alice-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    server.shutdown().await;
}

#[test]
fn the_reader_refuses_bad_files_with_a_clear_error() {
    for (text, needle) in [
        (
            "format: 2\nexporter: x\nversion: '1'\nnamespace: x\ntarget: t\ntaken_at: now\n",
            "format 2",
        ),
        ("format: 1\nexporter: x\n", "missing field"),
        ("{\"format\": 1, \"bogus\": true}", "unknown field"),
        (
            "format: 1\nexporter: x\nversion: '1'\nnamespace: x\ntarget: t\ntaken_at: now\nexchanges:\n- kind: http\n  method: ''\n  url: /\n",
            "needs a method",
        ),
        ("- just a list", "invalid type"),
    ] {
        let err = format!("{:#}", Capture::from_slice(text.as_bytes()).unwrap_err());
        assert!(err.contains(needle), "{text:?}: {err}");
    }
    assert!(Capture::from_slice(b"\xff\xfe").is_err());
    let _ = Mutex::new(());
}

#[test]
fn the_fixture_captures_read_and_replay() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let capture =
            Capture::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        Replay::new(&capture).unwrap();
        exporter_core::fuzzing::capture_file(&bytes).unwrap();
        seen += 1;
    }
    assert!(seen >= 2, "fixtures missing in {}", dir.display());
}
