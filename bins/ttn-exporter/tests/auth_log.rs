//! A refused key is logged once per change with the API's error name, not on every scrape
//! (its own test binary, because it installs a process-wide logger).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use device_sim::ttn::{SimOptions, TtnSim};
use exporter_core::{Secret, ServeOptions};
use ttn_exporter::{INFO, Ttn, config::Config};

static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut kv = String::new();
        struct Collect<'a>(&'a mut String);
        impl<'kvs> log::kv::VisitSource<'kvs> for Collect<'_> {
            fn visit_pair(
                &mut self,
                k: log::kv::Key<'kvs>,
                v: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0.push_str(&format!(" {k}={v}"));
                Ok(())
            }
        }
        let _ = record.key_values().visit(&mut Collect(&mut kv));
        let line = format!("{}{kv}", record.args());
        LINES.lock().unwrap().push((record.target().to_owned(), line));
    }
    fn flush(&self) {}
}

#[tokio::test]
async fn refused_key_is_logged_once_with_its_error_name() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let sim = TtnSim::start(SimOptions { gateways: 4, ..SimOptions::default() }).await.unwrap();
    let mut args = vec!["--api-url".to_owned(), sim.identity_url()];
    for c in sim.cluster_url_flags() {
        args.push("--cluster-url".into());
        args.push(c);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flags: ttn_exporter::Flags = argh::FromArgs::from_args(&["ttn-exporter"], &args).unwrap();
    let key = "NNSXS.UNKNOWNKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETSECRET";
    let http = exporter_core::client::http_client(&INFO).unwrap();
    let ttn = Ttn::from_config(Config::from_flags(&flags).unwrap(), Secret::new(key), http);
    let server = exporter_core::spawn(ttn, ServeOptions::for_test(INFO)).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..3 {
        let body = client
            .get(format!("http://{}/metrics", server.local_addr()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("ttn_up 0\n"), "{body}");
    }
    server.shutdown().await;
    let lines = LINES.lock().unwrap().clone();
    let ours: Vec<&(String, String)> = lines.iter().filter(|(target, _)| target == "ttn").collect();
    assert_eq!(ours.len(), 1, "{lines:#?}");
    assert!(ours[0].1.contains("pkg/identityserver:api_key_not_found"), "{ours:?}");
    assert!(
        !lines.iter().any(|(_, l)| l.contains("SECRETSECRET") || l.contains("UNKNOWNKEY")),
        "{lines:#?}"
    );
}
