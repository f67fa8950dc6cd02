//! Named targets from a config file, as an exporter builds them from exporter-core's parts:
//! `/probe?target=NAME`, `--probe-allow` refusals (403, counted), reload by
//! `POST /-/reload` and SIGHUP with good and bad files, `/sd`, and the landing page.
//!
//! Its own test binary, because one test sends SIGHUP to its own process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    fmt,
    path::PathBuf,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{client, encode, sample};
use device_sim::{demo::Demo, http::SimServer};
use exporter_core::{
    Exporter, ExporterInfo, ProbeAllow, Scrape, SdTarget, ServeOptions, TargetError, TargetInfo,
    config::{self, Labels, Live},
    timed,
};

const INFO: ExporterInfo = ExporterInfo {
    binary: "named-exporter",
    env_prefix: "NAMED",
    version: "0.0.1-test",
    default_port: 9998,
};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    targets: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    address: String,
    token_file: Option<PathBuf>,
    #[serde(default)]
    labels: Labels,
}

/// What a probe is about: a named entry (with its token) or an ad-hoc address.
#[derive(Debug, Clone)]
struct Target {
    key: String,
    address: String,
    token: Option<String>,
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Target> {
        anyhow::ensure!(s.starts_with("http://"), "the target must be an http:// URL");
        Ok(Target { key: s.to_owned(), address: s.to_owned(), token: None })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

struct Named {
    path: PathBuf,
    live: Live<BTreeMap<String, (Entry, Option<String>)>>,
    allow: Arc<ProbeAllow>,
    adhoc: reqwest::Client,
    configured: reqwest::Client,
}

impl Named {
    fn load(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, (Entry, Option<String>)>> {
        let file: File = config::load_yaml(path)?;
        let mut out = BTreeMap::new();
        for (name, entry) in file.targets {
            config::validate_labels(&format!("targets.{name}"), &entry.labels)?;
            let token = match &entry.token_file {
                Some(p) => Some(config::read_secret_file(p)?.expose().to_owned()),
                None => None,
            };
            out.insert(name, (entry, token));
        }
        Ok(out)
    }

    fn new(path: PathBuf, allow: &[&str]) -> anyhow::Result<Named> {
        let allow = Arc::new(ProbeAllow::parse(allow)?);
        Ok(Named {
            live: Live::new(Named::load(&path)?),
            path,
            adhoc: exporter_core::client::http_client_restricted(&INFO, Arc::clone(&allow))?,
            configured: exporter_core::client::http_client(&INFO)?,
            allow,
        })
    }
}

impl Exporter for Named {
    const NAMESPACE: &'static str = "named";
    const DESCRIPTION: &'static str = "Test exporter with named targets";
    type Target = Target;

    async fn resolve_target(&self, raw: &str) -> Result<Target, TargetError> {
        let targets = self.live.load();
        if let Some((entry, token)) = targets.get(raw) {
            return Ok(Target {
                key: raw.to_owned(),
                address: entry.address.clone(),
                token: token.clone(),
            });
        }
        let target: Target = raw.parse().map_err(TargetError::Invalid)?;
        let host = reqwest::Url::parse(&target.address)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        self.allow.check(&host).await.map_err(TargetError::NotAllowed)?;
        Ok(target)
    }

    async fn probe(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<()> {
        let client = if target.token.is_some() { &self.configured } else { &self.adhoc };
        let url = format!("{}/status", target.address);
        let fetch = async {
            let resp = client.get(url).send().await?;
            anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
            Ok(())
        };
        let got = timed("status", out.deadline(), fetch).await;
        if out.record(got).is_some() {
            out.gauge("has_token", "Whether the probe used a configured token.")
                .sample(&[], if target.token.is_some() { 1.0 } else { 0.0 });
        }
        Ok(())
    }

    async fn reload(&self) -> anyhow::Result<()> {
        self.live.store(Named::load(&self.path)?);
        Ok(())
    }

    fn targets(&self) -> Vec<TargetInfo> {
        self.live
            .load()
            .iter()
            .map(|(name, (entry, token))| TargetInfo {
                name: name.clone(),
                settings: vec![
                    ("address".to_owned(), entry.address.clone()),
                    (
                        "token".to_owned(),
                        if token.is_some() { "<secret>" } else { "none" }.to_owned(),
                    ),
                ],
                labels: entry.labels.clone(),
            })
            .collect()
    }

    async fn sd_targets(&self) -> anyhow::Result<Vec<SdTarget>> {
        Ok(self
            .live
            .load()
            .iter()
            .map(|(name, (entry, _))| SdTarget {
                target: name.clone(),
                labels: entry.labels.clone(),
            })
            .collect())
    }
}

struct Setup {
    dir: PathBuf,
    sims: Vec<SimServer>,
}

impl Setup {
    async fn new(tag: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("core-targets-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sims = Vec::new();
        for _ in 0..2 {
            sims.push(
                SimServer::start(Arc::new(Demo::default()), "127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap(),
            );
        }
        std::fs::write(dir.join("token"), "t0ken-value\n").unwrap();
        Setup { dir, sims }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    fn write_good(&self, names: &[&str]) {
        let mut text = String::from("targets:\n");
        for (name, sim) in names.iter().zip(&self.sims) {
            text.push_str(&format!(
                "  {name}:\n    address: {}\n    token_file: {}\n    labels: {{site: {name}-site}}\n",
                sim.url(),
                self.dir.join("token").display()
            ));
        }
        std::fs::write(self.config(), text).unwrap();
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn get(url: &str) -> (u16, String) {
    let resp = client().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn named_targets_probe_allow_sd_and_landing() {
    let setup = Setup::new("named").await;
    setup.write_good(&["attic", "barn"]);
    let exporter = Named::new(setup.config(), &["192.0.2.0/24", "*.invalid"]).unwrap();
    let server = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    let base = format!("http://{}", server.local_addr());

    // By name: the entry's address and its token.
    let (code, body) = get(&format!("{base}/probe?target=attic")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(sample(&body, "named_up"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "named_has_token"), Some(1.0), "{body}");

    // An address outside --probe-allow: 403 with the reason, counted, and no device call.
    let before = setup.sims[0].counters().get("/status");
    let (code, body) = get(&format!("{base}/probe?target={}", encode(&setup.sims[0].url()))).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("127.0.0.1 is not in --probe-allow"), "{body}");
    assert_eq!(setup.sims[0].counters().get("/status"), before, "the device was not asked");
    let (code, body) = get(&format!("{base}/probe?target={}", encode("http://localhost:1"))).await;
    assert_eq!(code, 403, "a name that resolves outside is refused too: {body}");
    let (code, _) = get(&format!("{base}/probe?target=ftp%3A%2F%2Fx")).await;
    assert_eq!(code, 400);
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(
        sample(&metrics, "named_exporter_probe_rejected_total{reason=\"not_allowed\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "named_exporter_probe_rejected_total{reason=\"invalid_target\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "named_exporter_config_last_reload_successful"), Some(1.0));

    // Service discovery: one group per target, scraped through /probe with its labels.
    let resp = client().get(format!("{base}/sd")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let sd: serde_json::Value = resp.json().await.unwrap();
    let host = server.local_addr().to_string();
    assert_eq!(
        sd,
        serde_json::json!([
            {"targets": [host], "labels": {"__metrics_path__": "/probe", "__param_target": "attic",
                "instance": "attic", "site": "attic-site"}},
            {"targets": [host], "labels": {"__metrics_path__": "/probe", "__param_target": "barn",
                "instance": "barn", "site": "barn-site"}},
        ])
    );

    // The landing page shows the named targets with the secret hidden.
    let (_, page) = get(&format!("{base}/")).await;
    assert!(page.contains("<h2>Named targets</h2>"), "{page}");
    assert!(page.contains(r#"href="probe?target=attic""#), "{page}");
    assert!(page.contains("<code>token</code>: &lt;secret&gt;"), "{page}");
    assert!(!page.contains("t0ken-value"), "{page}");
    assert!(page.contains(r#"href="sd""#), "{page}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_restricted_client_refuses_addresses_outside_the_list_when_connecting() {
    let sim =
        SimServer::start(Arc::new(Demo::default()), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = sim.url().rsplit(':').next().unwrap().to_owned();
    // "localhost" passes a check by name, but the connection is what counts: with only
    // 192.0.2.0/24 allowed, the resolver hands out none of localhost's addresses.
    let allow = Arc::new(ProbeAllow::parse(&["192.0.2.0/24"]).unwrap());
    let restricted = exporter_core::client::http_client_restricted(&INFO, allow).unwrap();
    let err = restricted.get(format!("http://localhost:{port}/status")).send().await.unwrap_err();
    let chain = format!("{:?}", anyhow::Error::new(err));
    assert!(chain.contains("refused by --probe-allow"), "{chain}");
    assert_eq!(sim.counters().get("/status"), 0);

    let allow = Arc::new(ProbeAllow::parse(&["127.0.0.0/8"]).unwrap());
    let restricted = exporter_core::client::http_client_restricted(&INFO, allow).unwrap();
    let resp = restricted.get(format!("http://localhost:{port}/status")).send().await.unwrap();
    assert!(resp.status().is_success());
}

#[tokio::test]
async fn reload_by_http_keeps_the_running_config_on_a_bad_file() {
    let setup = Setup::new("reload").await;
    setup.write_good(&["attic"]);
    let exporter = Named::new(setup.config(), &[]).unwrap();
    let server = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let sd = || async {
        let v: serde_json::Value =
            client().get(format!("{base}/sd")).send().await.unwrap().json().await.unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(sd().await, 1);
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    let started =
        sample(&metrics, "named_exporter_config_last_reload_success_timestamp_seconds").unwrap();

    // GET is not a reload.
    let (code, _) = get(&format!("{base}/-/reload")).await;
    assert_eq!(code, 405);

    // A good file: two targets now.
    tokio::time::sleep(Duration::from_millis(20)).await;
    setup.write_good(&["attic", "barn"]);
    let resp = client().post(format!("{base}/-/reload")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(sd().await, 2);
    let (code, body) = get(&format!("{base}/probe?target=barn")).await;
    assert_eq!((code, sample(&body, "named_up")), (200, Some(1.0)), "{body}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(
        sample(&metrics, "named_exporter_config_last_reload_success_timestamp_seconds").unwrap()
            > started
    );

    // A bad file (unknown key): 500 naming file, line and key; the two targets stay.
    let good = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("{good}  cellar:\n    adress: http://x\n")).unwrap();
    let resp = client().post(format!("{base}/-/reload")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let why = resp.text().await.unwrap();
    assert!(why.contains("config.yml:"), "{why}");
    assert!(why.contains("targets.cellar") && why.contains("unknown field `adress`"), "{why}");
    assert_eq!(sd().await, 2, "the running configuration is kept");
    let (code, _) = get(&format!("{base}/probe?target=barn")).await;
    assert_eq!(code, 200);
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(sample(&metrics, "named_exporter_config_last_reload_successful"), Some(0.0));

    // A missing secret file is a failed reload too.
    setup.write_good(&["attic"]);
    std::fs::remove_file(setup.dir.join("token")).unwrap();
    assert_eq!(server.reload().await.map_err(|e| e.contains("cannot read secret file")), Err(true));
    std::fs::write(setup.dir.join("token"), "t0ken-value\n").unwrap();
    assert_eq!(server.reload().await, Ok(()));
    assert_eq!(sd().await, 1);
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(sample(&metrics, "named_exporter_config_last_reload_successful"), Some(1.0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration() {
    let setup = Setup::new("sighup").await;
    setup.write_good(&["attic"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut opts = ServeOptions::for_test(INFO);
    opts.listen_addresses = vec![format!("127.0.0.1:{port}")];
    let exporter = Named::new(setup.config(), &[]).unwrap();
    let serving = tokio::spawn(exporter_core::serve(exporter, opts));
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while client().get(format!("{base}/-/healthy")).send().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "serve never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let count = || async {
        let v: serde_json::Value =
            client().get(format!("{base}/sd")).send().await.unwrap().json().await.unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(count().await, 1);
    setup.write_good(&["attic", "barn"]);
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = Instant::now();
    while count().await != 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!serving.is_finished(), "SIGHUP must not stop the exporter");
    serving.abort();
}

#[tokio::test]
async fn process_cpu_seconds_are_fractional() {
    let setup = Setup::new("cpu").await;
    setup.write_good(&[]);
    let exporter = Named::new(setup.config(), &[]).unwrap();
    let server = exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    // The kernel counts CPU time in 1/100 s: a whole-second value can happen once, but not
    // twenty times in a row while the process keeps working. The integer counter of the
    // prometheus crate's collector read a whole number every time.
    let mut values = Vec::new();
    for _ in 0..20 {
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(15) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (_, metrics) = get(&format!("{base}/metrics")).await;
        let cpu = sample(&metrics, "process_cpu_seconds_total").expect("process_cpu_seconds_total");
        assert!(metrics.contains("# TYPE process_cpu_seconds_total counter\n"), "{metrics}");
        assert!(sample(&metrics, "process_resident_memory_bytes").unwrap() > 0.0);
        assert!(sample(&metrics, "process_start_time_seconds").unwrap() > 1.6e9);
        assert!(sample(&metrics, "process_open_fds").unwrap() > 0.0);
        values.push(cpu);
        if cpu.fract() != 0.0 {
            break;
        }
    }
    assert!(values.iter().any(|v| v.fract() != 0.0), "never fractional: {values:?}");
    server.shutdown().await;
}
