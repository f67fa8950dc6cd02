//! `<binary> check`: the command line (`check`/`capture` before the usual flags), and the
//! report and exit code for a target that is up, down, refused, not resolvable (`.invalid`)
//! and hanging, in both the human and the `--json` form.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::PathBuf, sync::Arc, time::Duration};

use common::{DemoExporter, DemoTarget, INFO, env};
use device_sim::{
    demo::Demo,
    http::{Fault, SimServer},
};
use exporter_core::{
    Command, Exporter, Scrape, ServeOptions, TargetError, TargetInfo, capture::CaptureFormat,
};

/// The demo exporter with named targets and the facts a real exporter reports.
struct Checked {
    inner: DemoExporter,
    named: Vec<(String, String)>,
}

impl Exporter for Checked {
    const NAMESPACE: &'static str = "demo";
    const DESCRIPTION: &'static str = "Test exporter for check";
    type Target = DemoTarget;

    fn default_target(&self) -> Option<DemoTarget> {
        self.inner.default.clone()
    }

    async fn resolve_target(&self, raw: &str) -> Result<DemoTarget, TargetError> {
        if let Some((_, url)) = self.named.iter().find(|(n, _)| n == raw) {
            return Ok(DemoTarget(url.clone()));
        }
        raw.parse().map_err(TargetError::Invalid)
    }

    fn targets(&self) -> Vec<TargetInfo> {
        self.named
            .iter()
            .map(|(name, _)| TargetInfo { name: name.clone(), ..TargetInfo::default() })
            .collect()
    }

    async fn probe(&self, target: &DemoTarget, out: &mut Scrape) -> anyhow::Result<()> {
        out.fact("model", "demo-1");
        out.fact("firmware", "0.1.2");
        out.login("no login needed");
        out.quirk("answers in JSON only");
        self.inner.probe(target, out).await
    }
}

fn exporter(default: Option<&str>, named: &[(&str, &str)]) -> Checked {
    let mut inner = DemoExporter::new();
    inner.default = default.map(|d| DemoTarget(d.to_owned()));
    Checked {
        inner,
        named: named.iter().map(|(n, u)| ((*n).to_owned(), (*u).to_owned())).collect(),
    }
}

async fn sim() -> SimServer {
    SimServer::start(Arc::new(Demo::default()), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn check_opts(target: Option<&str>, json: bool) -> ServeOptions {
    let mut opts = ServeOptions::for_test(INFO);
    opts.scrape_timeout = Duration::from_secs(2);
    opts.command = Command::Check { target: target.map(str::to_owned), json };
    opts
}

/// An address nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn check_and_capture_come_before_the_usual_flags() {
    #[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
    /// Pretend exporter without its own --target.
    struct NoTarget {
        /// a flag of its own
        #[argh(option)]
        region: Option<String>,
    }
    #[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
    /// Pretend exporter with its own --target (its default target).
    struct WithTarget {
        /// the device
        #[argh(option, default = "String::from(\"http://192.168.1.1\")")]
        target: String,
    }

    let cli = exporter_core::parse_args::<NoTarget>(
        INFO,
        &["check", "--target", "home", "--json", "--region", "eu", "--scrape-timeout", "3"],
        &env(&[]),
    )
    .unwrap();
    assert_eq!(cli.serve.command, Command::Check { target: Some("home".to_owned()), json: true });
    assert_eq!(cli.flags.region.as_deref(), Some("eu"));
    assert_eq!(cli.serve.scrape_timeout, Duration::from_secs(3));
    assert_eq!(cli.serve.log_level, log::LevelFilter::Error, "check keeps the log quiet");

    // The exporter's own --target stays its flag and also selects the target to check.
    let cli = exporter_core::parse_args::<WithTarget>(
        INFO,
        &["check", "--target=http://10.0.0.9"],
        &env(&[]),
    )
    .unwrap();
    assert_eq!(cli.flags.target, "http://10.0.0.9");
    assert_eq!(
        cli.serve.command,
        Command::Check { target: Some("http://10.0.0.9".to_owned()), json: false }
    );
    // From the environment too, as for serving.
    let cli = exporter_core::parse_args::<WithTarget>(
        INFO,
        &["check"],
        &env(&[("DEMO_TARGET", "http://e")]),
    )
    .unwrap();
    assert_eq!(
        cli.serve.command,
        Command::Check { target: Some("http://e".to_owned()), json: false }
    );

    let cli = exporter_core::parse_args::<NoTarget>(
        INFO,
        &["capture", "--out", "/tmp/x.json", "--format", "json", "--log-level", "debug"],
        &env(&[]),
    )
    .unwrap();
    assert_eq!(
        cli.serve.command,
        Command::Capture {
            target: None,
            out: PathBuf::from("/tmp/x.json"),
            format: CaptureFormat::Json
        }
    );
    assert_eq!(cli.serve.log_level, log::LevelFilter::Debug);

    // Serving is unchanged; errors name what is wrong.
    let cli = exporter_core::parse_args::<NoTarget>(INFO, &[], &env(&[])).unwrap();
    assert_eq!(cli.serve.command, Command::Serve);
    for (args, needle) in [
        (&["capture"][..], "--out"),
        (&["capture", "--out", "f", "--format", "xml"], "--format"),
        (&["check", "--target"], "--target"),
        (&["check", "--json=yes"], "--json"),
        (&["check", "--out", "f"], "--out"),
    ] {
        match exporter_core::parse_args::<NoTarget>(INFO, args, &env(&[])) {
            Err(exporter_core::CliExit::Error(msg)) => {
                assert!(msg.contains(needle), "{args:?}: {msg}")
            }
            other => panic!("{args:?}: expected an error, got {other:?}"),
        }
    }
    let Err(exporter_core::CliExit::Help(help)) =
        exporter_core::parse_args::<NoTarget>(INFO, &["--help"], &env(&[]))
    else {
        panic!("no help")
    };
    assert!(
        help.contains("check [--target T] [--json]") && help.contains("capture --out FILE"),
        "{help}"
    );
}

#[tokio::test]
async fn an_up_target_is_reported_with_facts_collectors_and_series() {
    let device = sim().await;
    let e = exporter(Some(&device.url()), &[]);
    let out = exporter_core::run_command(&e, &check_opts(None, false)).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let text = &out.stdout;
    let up_line = format!("{}: UP in ", device.url());
    for needle in [
        up_line.as_str(),
        "2 series",
        "  model: demo-1",
        "  firmware: 0.1.2",
        "  login: no login needed",
        "  quirk: answers in JSON only",
        "  collector status: ok in ",
        "1 of 1 target up",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

#[tokio::test]
async fn every_target_is_checked_and_one_down_gives_exit_1() {
    let device = sim().await;
    let refused = closed_port();
    let e = exporter(Some(&device.url()), &[("home", &device.url()), ("office", &refused)]);
    let out = exporter_core::run_command(&e, &check_opts(None, false)).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    let text = &out.stdout;
    println!("{text}");
    assert!(text.contains("checking 3 targets"), "{text}");
    assert!(text.contains("home: UP"), "{text}");
    assert!(text.contains("office: DOWN (refused): nothing accepts connections"), "{text}");
    assert!(text.contains("2 of 3 targets up"), "{text}");

    // --target picks one: a name, or an address.
    let out = exporter_core::run_command(&e, &check_opts(Some("home"), false)).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.stdout.contains("checking 1 target\n"), "{}", out.stdout);
    let out = exporter_core::run_command(&e, &check_opts(Some(&refused), false)).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    let out = exporter_core::run_command(&e, &check_opts(Some("ftp://nope"), false)).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    assert!(out.stdout.contains("invalid target"), "{}", out.stdout);
}

#[tokio::test]
async fn reachability_is_classified_in_the_json_report() {
    let device = sim().await;
    let hanging = sim().await;
    hanging.set_fault(Some(Fault::Hang));
    let refused = closed_port();
    let e = exporter(
        None,
        &[
            ("up", &device.url()),
            ("refused", &refused),
            ("dns", "http://no-such-device.invalid"),
            ("hang", &hanging.url()),
        ],
    );
    let out = exporter_core::run_command(&e, &check_opts(None, true)).await;
    assert_eq!(out.exit_code, 1, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["exporter"], "demo-exporter");
    assert_eq!(report["total"], 4);
    assert_eq!(report["up"], 1);
    assert_eq!(report["all_up"], false);
    let by_name = |name: &str| {
        report["targets"].as_array().unwrap().iter().find(|t| t["target"] == name).unwrap().clone()
    };
    let up = by_name("up");
    assert_eq!(up["up"], true);
    assert_eq!(up["reason"], serde_json::Value::Null);
    assert_eq!(up["facts"]["model"], "demo-1");
    assert_eq!(up["series"], 2);
    assert_eq!(up["collectors"][0]["name"], "status");
    assert_eq!(up["collectors"][0]["success"], true);
    assert_eq!(up["collectors"][0]["series"], 2);
    for (name, reason) in [("refused", "refused"), ("dns", "dns"), ("hang", "timeout")] {
        let t = by_name(name);
        assert_eq!(t["up"], false, "{t}");
        assert_eq!(t["reason"], reason, "{t}");
        assert!(t["error"].as_str().unwrap().len() > 5, "{t}");
        assert_eq!(t["collectors"][0]["success"], false, "{t}");
    }
    // Everything up: exit 0 in JSON too.
    let e = exporter(None, &[("up", &device.url())]);
    let out = exporter_core::run_command(&e, &check_opts(None, true)).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["all_up"], true);
}

#[tokio::test]
async fn no_target_at_all_is_an_error_not_a_pass() {
    let e = exporter(None, &[]);
    let out = exporter_core::run_command(&e, &check_opts(None, false)).await;
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(out.stderr.contains("no target to check"), "{out:?}");
}
