//! Issue 14, end to end against two simulated hubs: named targets from `--config-file`
//! (`/probe?target=NAME`, and by an entry's address), ad-hoc addresses refused by
//! `--probe-allow` (403, counted, the hub never asked), `/metrics` with a file, reload with a
//! good and a bad file, and `/sd`.
#![allow(clippy::unwrap_used)]

use exporter_core::testing::sample_value as value;
use std::{path::PathBuf, sync::Arc};

use argh::FromArgs;
use device_sim::{
    http::SimServer,
    smarthub::{DEVICES_PATH, Profile, SmartHub, WAN_PATH},
};
use exporter_core::{RunningServer, ServeOptions};
use smarthub_exporter::{Flags, INFO, Smarthub};

struct Site {
    dir: PathBuf,
    /// `home` (VDSL) and `shop` (FTTP), then a third hub no entry names.
    hubs: Vec<SimServer>,
}

impl Site {
    async fn new(tag: &str) -> Site {
        let dir =
            std::env::temp_dir().join(format!("smarthub-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut hubs = Vec::new();
        for profile in [Profile::Vdsl, Profile::Fttp, Profile::Vdsl] {
            let hub = Arc::new(SmartHub::new(profile));
            hubs.push(SimServer::start(hub, "127.0.0.1:0".parse().unwrap()).await.unwrap());
        }
        Site { dir, hubs }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    /// `home` always; `shop` too when `both`.
    fn write(&self, both: bool) {
        let mut text = format!(
            "# two hubs\ntargets:\n  home:\n    address: {}\n    lan_devices: all\n    labels:\n      site: home\n      line: vdsl\n",
            self.hubs[0].url()
        );
        if both {
            text.push_str(&format!(
                "  shop:\n    address: {}\n    lan_devices: none\n    labels: {{site: shop}}\n",
                self.hubs[1].url()
            ));
        }
        std::fs::write(self.path(), text).unwrap();
    }

    async fn exporter(&self, args: &[&str]) -> RunningServer {
        let flags = Flags::from_args(&["smarthub-exporter"], args).unwrap();
        let http = exporter_core::client::http_client(&INFO).unwrap();
        let exporter = Smarthub::with_config(flags, Some(self.path()), None, http).unwrap();
        exporter_core::spawn(exporter, ServeOptions::for_test(INFO)).await.unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn get(server: &RunningServer, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", server.local_addr());
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn enc(text: &str) -> String {
    text.replace(':', "%3A").replace('/', "%2F")
}

fn count(text: &str, metric: &str) -> usize {
    text.lines().filter(|l| l.starts_with(&format!("{metric}{{"))).count()
}

#[tokio::test]
async fn named_hubs_by_name_and_address_and_probe_allow_refusals() {
    let site = Site::new("named").await;
    site.write(true);
    let server =
        site.exporter(&["--probe-allow", "192.0.2.0/24", "--probe-allow", "*.invalid"]).await;

    // By name, with the entry's settings: home lists every remembered device (all) ...
    let (code, home) = get(&server, "/probe?target=home").await;
    assert_eq!(code, 200, "{home}");
    assert_eq!(value(&home, "smarthub_up"), Some(1.0), "{home}");
    assert!(home.contains("smarthub_wan_info{slot=\"1\",type=\"vdsl\""), "{home}");
    assert_eq!(count(&home, "smarthub_lan_device_info"), 6, "lan_devices: all\n{home}");
    // ... and shop fetches no device list (none).
    let (code, shop) = get(&server, "/probe?target=shop").await;
    assert_eq!(code, 200, "{shop}");
    assert!(shop.contains("smarthub_wan_info{slot=\"0\",type=\"ethernet\""), "{shop}");
    assert!(!shop.contains("smarthub_lan_"), "{shop}");
    assert_eq!(site.hubs[1].counters().get(DEVICES_PATH), 0);

    // By an entry's address: that entry, although 127.0.0.1 is not in --probe-allow.
    let (code, by_address) =
        get(&server, &format!("/probe?target={}", enc(&site.hubs[0].url()))).await;
    assert_eq!(code, 200, "{by_address}");
    assert_eq!(count(&by_address, "smarthub_lan_device_info"), 6, "{by_address}");

    // Any other address is ad hoc: refused with 403, counted, and the hub is never asked.
    let third = site.hubs[2].url();
    let (code, body) = get(&server, &format!("/probe?target={}", enc(&third))).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("127.0.0.1 is not in --probe-allow"), "{body}");
    let (code, _) = get(&server, &format!("/probe?target={}", enc("http://localhost:9"))).await;
    assert_eq!(code, 403, "a host name outside the list");
    assert_eq!(site.hubs[2].counters().get(WAN_PATH), 0);
    let (code, _) = get(&server, "/probe?target=nosuchname%2Fx").await;
    assert_eq!(code, 400);
    let (_, own) = get(&server, "/metrics").await;
    assert_eq!(
        value(&own, "smarthub_exporter_probe_rejected_total{reason=\"not_allowed\"}"),
        Some(2.0),
        "{own}"
    );
    // Two named hubs and no --target: /metrics has no hub of its own.
    assert!(!own.contains("smarthub_wan_connected"), "{own}");

    // /sd: one group per named hub with its labels, scraped through /probe.
    let sd: serde_json::Value = reqwest::get(format!("http://{}/sd", server.local_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let host = server.local_addr().to_string();
    assert_eq!(
        sd,
        serde_json::json!([
            {"targets": [host], "labels": {"__metrics_path__": "/probe", "__param_target": "home",
                "instance": "home", "site": "home", "line": "vdsl"}},
            {"targets": [host], "labels": {"__metrics_path__": "/probe", "__param_target": "shop",
                "instance": "shop", "site": "shop"}},
        ])
    );

    // The landing page lists both with their settings.
    let (_, page) = get(&server, "/").await;
    assert!(page.contains("probe?target=home") && page.contains("probe?target=shop"), "{page}");
    assert!(page.contains("lan_devices"), "{page}");
    server.shutdown().await;
}

#[tokio::test]
async fn ad_hoc_addresses_inside_probe_allow_use_the_flags() {
    let site = Site::new("adhoc").await;
    site.write(false);
    let server = site.exporter(&["--probe-allow", "127.0.0.0/8"]).await;
    let (code, text) = get(&server, &format!("/probe?target={}", enc(&site.hubs[2].url()))).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(value(&text, "smarthub_up"), Some(1.0), "{text}");
    assert_eq!(count(&text, "smarthub_lan_device_info"), 4, "the default: active devices\n{text}");
    // One named hub and no --target: it is the hub of /metrics.
    let (_, own) = get(&server, "/metrics").await;
    assert_eq!(value(&own, "smarthub_wan_connected"), Some(1.0), "{own}");
    assert_eq!(count(&own, "smarthub_lan_device_info"), 6, "home's lan_devices: all\n{own}");
    server.shutdown().await;
}

#[tokio::test]
async fn flags_set_the_default_target_and_the_file_adds_targets() {
    let site = Site::new("both").await;
    site.write(true);
    let third = site.hubs[2].url();
    let server = site.exporter(&["--target", &third, "--lan-devices", "none"]).await;
    let (_, own) = get(&server, "/metrics").await;
    assert_eq!(value(&own, "smarthub_wan_connected"), Some(1.0), "{own}");
    assert!(!own.contains("smarthub_lan_"), "--lan-devices none applies to --target: {own}");
    assert!(site.hubs[2].counters().get(WAN_PATH) >= 1);
    assert_eq!(site.hubs[0].counters().get(WAN_PATH), 0, "home is not the default");
    let (code, home) = get(&server, "/probe?target=home").await;
    assert_eq!(code, 200);
    assert_eq!(count(&home, "smarthub_lan_device_info"), 6, "the entry's own setting: {home}");
    server.shutdown().await;
}

#[tokio::test]
async fn reload_takes_a_good_file_and_keeps_the_running_config_on_a_bad_one() {
    let site = Site::new("reload").await;
    site.write(false);
    // Only names under *.invalid for ad-hoc probes (no network list: nothing is resolved).
    let server = site.exporter(&["--probe-allow", "*.invalid"]).await;
    let sd_len = || async {
        let v: serde_json::Value = reqwest::get(format!("http://{}/sd", server.local_addr()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(sd_len().await, 1);
    let (code, _) = get(&server, "/probe?target=shop").await;
    assert_eq!(code, 403, "not configured yet: an ad-hoc host name outside --probe-allow");

    site.write(true);
    server.reload().await.unwrap();
    assert_eq!(sd_len().await, 2);
    let (code, shop) = get(&server, "/probe?target=shop").await;
    assert_eq!((code, value(&shop, "smarthub_up")), (200, Some(1.0)), "{shop}");

    // An unknown key: the reload fails naming file, line, column and key; both stay.
    let good = std::fs::read_to_string(site.path()).unwrap();
    std::fs::write(site.path(), format!("{good}  cellar:\n    adress: http://192.0.2.9\n"))
        .unwrap();
    let err = server.reload().await.unwrap_err();
    assert!(err.contains("config.yml:"), "{err}");
    assert!(err.contains("targets.cellar") && err.contains("unknown field `adress`"), "{err}");
    assert_eq!(sd_len().await, 2);
    let (code, _) = get(&server, "/probe?target=shop").await;
    assert_eq!(code, 200, "the running configuration is kept");
    let (_, own) = get(&server, "/metrics").await;
    assert_eq!(value(&own, "smarthub_exporter_config_last_reload_successful"), Some(0.0), "{own}");

    // A file that is not YAML at all, and one with a bad address, fail the same way.
    std::fs::write(site.path(), "targets: [\n").unwrap();
    assert!(server.reload().await.is_err());
    std::fs::write(site.path(), "targets:\n  home:\n    address: ftp://x\n").unwrap();
    let err = server.reload().await.unwrap_err();
    assert!(err.contains("targets.home.address"), "{err}");
    assert_eq!(sd_len().await, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_file_at_start_is_an_error_naming_the_key() {
    let site = Site::new("start").await;
    std::fs::write(
        site.path(),
        "targets:\n  home:\n    address: http://192.0.2.1\n    lan_devics: all\n",
    )
    .unwrap();
    let flags = Flags::from_args(&["smarthub-exporter"], &[]).unwrap();
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let err = Smarthub::with_config(flags, Some(site.path()), None, http).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("config.yml:4:5") && err.contains("lan_devics"), "{err}");
}
