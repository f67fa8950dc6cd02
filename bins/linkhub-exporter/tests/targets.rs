//! Named targets from `--config-file`: each router logs in with its own password, an address
//! of a named entry uses that entry, `--probe-allow` refuses other addresses (403, counted),
//! reload (by `POST /-/reload` and the core's trait call) with good and bad files and a
//! rotated password file, `/sd` and the landing page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exporter_core::testing::{has_line as has, query_encode as encode, sample_value as value};
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use argh::FromArgs;
use device_sim::{
    http::SimServer,
    linkhub::{Linkhub as Sim, Model},
};
use exporter_core::{Exporter, RunningServer, ServeOptions};
use linkhub_exporter::{Flags, INFO, Linkhub};

static DIRS: AtomicUsize = AtomicUsize::new(0);

struct Rig {
    dir: PathBuf,
    sims: Vec<SimServer>,
}

impl Rig {
    /// Two LinkHubs (HH71: everything but the status bar needs a login) with different
    /// passwords.
    async fn new() -> Rig {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("linkhub-targets-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut sims = Vec::new();
        for password in ["attic-pw", "barn-pw"] {
            let sim = Sim::new(Model::Hh71).with("password", password);
            sims.push(
                SimServer::start(Arc::new(sim), "127.0.0.1:0".parse().unwrap()).await.unwrap(),
            );
        }
        Rig { dir, sims }
    }

    fn secret(&self, name: &str, value: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    /// attic with a password file, barn with an inline password.
    fn write_config(&self, barn_password: &str) {
        let attic = self.secret("attic-password", "attic-pw");
        let text = format!(
            "targets:\n  attic:\n    address: {}\n    password_file: {}\n    labels:\n      site: home\n      room: attic\n  barn:\n    address: {}\n    password: {barn_password}\n    expose_identifiers: true\n    labels: {{site: farm}}\n",
            self.sims[0].url(),
            attic.display(),
            self.sims[1].url()
        );
        std::fs::write(self.config(), text).unwrap();
    }

    fn exporter(&self, extra: &[&str]) -> (Linkhub, ServeOptions) {
        let flags = Flags::from_args(&["linkhub-exporter"], extra).unwrap();
        let mut opts = ServeOptions::for_test(INFO);
        opts.config_file = Some(self.config());
        (Linkhub::with_options(flags, &opts).unwrap(), opts)
    }

    async fn serve(&self, extra: &[&str]) -> RunningServer {
        let (exporter, opts) = self.exporter(extra);
        exporter_core::spawn(exporter, opts).await.unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

#[tokio::test]
async fn two_named_routers_log_in_with_their_own_passwords() {
    let rig = Rig::new().await;
    rig.write_config("barn-pw");
    let server = rig.serve(&[]).await;
    for (name, sim) in ["attic", "barn"].iter().zip(&rig.sims) {
        let (code, text) = probe(&server, name).await;
        assert_eq!(code, 200, "{text}");
        assert!(has(&text, "linkhub_up 1"), "{name}: {text}");
        assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{name}: {text}");
        assert!(has(&text, "linkhub_connection_uptime_seconds 88741"), "{name}: {text}");
        assert_eq!(sim.counters().get("login_attempt"), 1, "{name}");
    }
    // barn has expose_identifiers: true, attic does not.
    let (_, text) = probe(&server, "barn").await;
    assert!(text.contains("imei=\"356789012345678\""), "{text}");
    let (_, text) = probe(&server, "attic").await;
    assert!(!text.contains("imei="), "{text}");

    // The address of a named entry is that entry (its password, its session).
    let (_, text) = probe(&server, &rig.sims[1].url()).await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert_eq!(rig.sims[1].counters().get("login_attempt"), 1, "the same session");

    // Without --target, /metrics has no device of its own: only the exporter's metrics.
    let (_, text) = get(&format!("http://{}/metrics", server.local_addr())).await;
    assert!(text.contains("linkhub_exporter_build_info"), "{text}");
    assert!(!text.contains("linkhub_up"), "{text}");

    // /sd: one target per name, with its labels.
    let (code, body) = get(&format!("http://{}/sd", server.local_addr())).await;
    assert_eq!(code, 200, "{body}");
    let sd: serde_json::Value = serde_json::from_str(&body).unwrap();
    let host = server.local_addr().to_string();
    assert_eq!(
        sd,
        serde_json::json!([
            {"targets": [host], "labels": {"__metrics_path__": "/probe", "__param_target": "attic",
                "instance": "attic", "site": "home", "room": "attic"}},
            {"targets": [host], "labels": {"__metrics_path__": "/probe", "__param_target": "barn",
                "instance": "barn", "site": "farm"}},
        ])
    );

    // The landing page lists them, secrets hidden.
    let (_, page) = get(&format!("http://{}/", server.local_addr())).await;
    assert!(page.contains("<h2>Named targets</h2>"), "{page}");
    assert!(page.contains(r#"href="probe?target=barn""#), "{page}");
    assert!(page.contains("&lt;secret&gt;"), "{page}");
    for secret in ["attic-pw", "barn-pw"] {
        assert!(!page.contains(secret), "{secret} on the landing page");
    }
    server.shutdown().await;
    for sim in &rig.sims {
        assert_eq!(sim.counters().get("Logout"), 1, "each session ended at shutdown");
    }
}

#[tokio::test]
async fn flags_and_file_together() {
    let rig = Rig::new().await;
    rig.write_config("barn-pw");
    // A third router for the flags, with the attic's password: it is not the attic.
    let third = SimServer::start(
        Arc::new(Sim::new(Model::Hh71).with("password", "third-pw")),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let pw = rig.secret("third-password", "third-pw");
    let flags = Flags::from_args(
        &["linkhub-exporter"],
        &["--target", &third.url(), "--password-file", pw.to_str().unwrap()],
    )
    .unwrap();
    let mut opts = ServeOptions::for_test(INFO);
    opts.config_file = Some(rig.config());
    opts.set_flags = vec!["--target".to_owned(), "--password-file".to_owned()];
    let server =
        exporter_core::spawn(Linkhub::with_options(flags, &opts).unwrap(), opts).await.unwrap();
    // /metrics scrapes the flags' router with the flags' password.
    let (_, text) = get(&format!("http://{}/metrics", server.local_addr())).await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert_eq!(third.counters().get("login_attempt"), 1);
    // The named ones with theirs.
    let (_, text) = probe(&server, "attic").await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn probe_allow_refuses_other_addresses_with_403() {
    let rig = Rig::new().await;
    rig.write_config("barn-pw");
    let other = SimServer::start(Arc::new(Sim::new(Model::Hh41)), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server = rig.serve(&["--probe-allow", "192.0.2.0/24", "--probe-allow", "*.example"]).await;
    // Named targets (and their addresses) are always allowed.
    let (code, text) = probe(&server, "attic").await;
    assert_eq!(code, 200, "{text}");
    let (code, text) = probe(&server, &rig.sims[0].url()).await;
    assert_eq!(code, 200, "{text}");
    // Anything else outside the list: 403, and the device is not asked.
    for target in [other.url(), format!("localhost:{}", other.addr().port())] {
        let (code, text) = probe(&server, &target).await;
        assert_eq!(code, 403, "{target}: {text}");
        assert!(text.contains("--probe-allow"), "{text}");
    }
    assert_eq!(other.counters().total(), 0, "the refused device saw nothing");
    let (_, metrics) = get(&format!("http://{}/metrics", server.local_addr())).await;
    assert_eq!(
        value(&metrics, "linkhub_exporter_probe_rejected_total{reason=\"not_allowed\"}"),
        Some(2.0),
        "{metrics}"
    );
    server.shutdown().await;

    // Allowed by the list: read without secrets.
    let server = rig.serve(&["--probe-allow", "127.0.0.0/8"]).await;
    let (code, text) = probe(&server, &other.url()).await;
    assert_eq!(code, 200, "{text}");
    assert!(has(&text, "linkhub_up 1"), "{text}");
    assert!(has(&text, "linkhub_login_state{state=\"no_credentials\"} 1"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn reload_rotates_passwords_and_keeps_the_running_config_on_a_bad_file() {
    let rig = Rig::new().await;
    rig.write_config("wrong-pw");
    let server = rig.serve(&["--login-backoff", "1h"]).await;
    let base = format!("http://{}", server.local_addr());
    let (_, text) = probe(&server, "barn").await;
    assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
    assert_eq!(rig.sims[1].counters().get("login_attempt"), 1);

    // A reload with the same file keeps the backoff (login state survives reloads).
    let resp = exporter_core::client::http_client(&INFO)
        .unwrap()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, text) = probe(&server, "barn").await;
    assert!(has(&text, "linkhub_login_state{state=\"wrong_password\"} 1"), "{text}");
    assert!(value(&text, "linkhub_login_backoff_seconds").unwrap() > 3000.0, "{text}");
    assert_eq!(rig.sims[1].counters().get("login_attempt"), 1);

    // Rotation: the attic's password changes on the router (which also ends the
    // exporter's session) and in its file; after the reload the new one is used.
    let (_, text) = probe(&server, "attic").await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    let http = exporter_core::client::http_client(&INFO).unwrap();
    for (key, value) in [("password", "attic-pw-2"), ("expire_token", "1")] {
        let url = format!("{}/_sim/set?key={key}&value={value}", rig.sims[0].url());
        assert!(http.post(url).send().await.unwrap().status().is_success());
    }
    rig.secret("attic-password", "attic-pw-2");
    assert_eq!(server.reload().await, Ok(()));
    let (_, text) = probe(&server, "attic").await;
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert_eq!(rig.sims[0].counters().get("login_attempt"), 2);

    // A bad file: unknown key, named with file and line; the running config stays.
    let good = std::fs::read_to_string(rig.config()).unwrap();
    std::fs::write(rig.config(), format!("{good}  cellar:\n    adress: http://x\n")).unwrap();
    let resp = exporter_core::client::http_client(&INFO)
        .unwrap()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let why = resp.text().await.unwrap();
    assert!(why.contains("config.yml:") && why.contains("targets.cellar"), "{why}");
    assert!(why.contains("unknown field `adress`"), "{why}");
    let (code, text) = probe(&server, "attic").await;
    assert_eq!(code, 200);
    assert!(has(&text, "linkhub_up 1"), "{text}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(value(&metrics, "linkhub_exporter_config_last_reload_successful"), Some(0.0));

    // A missing password file is a failed reload too; fixed, the reload succeeds.
    std::fs::write(rig.config(), &good).unwrap();
    std::fs::remove_file(rig.dir.join("attic-password")).unwrap();
    let err = server.reload().await.unwrap_err();
    assert!(err.contains("attic-password"), "{err}");
    rig.secret("attic-password", "attic-pw-2");
    assert_eq!(server.reload().await, Ok(()));
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(value(&metrics, "linkhub_exporter_config_last_reload_successful"), Some(1.0));
    server.shutdown().await;
}

#[tokio::test]
async fn a_scrape_in_flight_keeps_the_config_it_started_with() {
    let rig = Rig::new().await;
    rig.write_config("barn-pw");
    rig.sims[1].set_latency(Duration::from_millis(150));
    let (exporter, _) = rig.exporter(&[]);
    let exporter = Arc::new(exporter);
    let target = exporter.resolve_target("barn").await.unwrap();
    let ex = Arc::clone(&exporter);
    let scrape = tokio::spawn(async move {
        let mut out = exporter_core::Scrape::new(
            "linkhub",
            "barn",
            std::time::Instant::now() + Duration::from_secs(10),
        );
        let result = ex.probe(&target, &mut out).await;
        (result, out.encode())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // barn leaves the file while its scrape runs.
    let attic_only: String =
        std::fs::read_to_string(rig.config()).unwrap().split("  barn:").next().unwrap().to_owned();
    std::fs::write(rig.config(), attic_only).unwrap();
    exporter.reload().await.unwrap();
    let (result, text) = scrape.await.unwrap();
    result.unwrap();
    assert!(has(&text, "linkhub_login_state{state=\"logged_in\"} 1"), "{text}");
    assert!(has(&text, "linkhub_connection_uptime_seconds 88741"), "{text}");
    // The next scrape of that name finds it gone: "barn" is just a host name now, without
    // the entry's password.
    let target = exporter.resolve_target("barn").await.unwrap();
    assert_eq!(target.to_string(), "http://barn");
}
