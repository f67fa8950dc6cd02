//! The HTTP contract over real sockets: routes, status codes, content type, gzip, HEAD,
//! the landing page, promtool, and the options a binary starts from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read as _;

use common::{DemoExporter, Harness, INFO, client, encode, env, sample};
use exporter_core::{CliExit, EXPOSITION_CONTENT_TYPE, ServeOptions};

#[tokio::test]
async fn exposition_has_the_exact_content_type() {
    let h = Harness::start().await;
    for url in [format!("{}/metrics", h.base), h.probe_url()] {
        let resp = client().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8",
            "{url}"
        );
        assert_eq!(resp.headers()["content-type"], EXPOSITION_CONTENT_TYPE);
        assert_eq!(resp.headers()["vary"], "Accept-Encoding");
        assert!(resp.headers().get("content-encoding").is_none());
    }
}

#[tokio::test]
async fn gzip_when_accepted_and_plain_otherwise() {
    let h = Harness::start().await;
    let resp = client().get(h.probe_url()).header("Accept-Encoding", "gzip").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["content-type"], EXPOSITION_CONTENT_TYPE);
    let bytes = resp.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    assert_eq!(sample(&text, "demo_up"), Some(1.0), "{text}");

    for refused in ["gzip;q=0", "identity", "br"] {
        let resp =
            client().get(h.probe_url()).header("Accept-Encoding", refused).send().await.unwrap();
        assert!(resp.headers().get("content-encoding").is_none(), "{refused}");
        let text = resp.text().await.unwrap();
        assert_eq!(sample(&text, "demo_up"), Some(1.0), "{refused}: {text}");
    }
    let resp = client()
        .get(format!("{}/metrics", h.base))
        .header("Accept-Encoding", "deflate, gzip;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
}

/// A scrape above 1 MiB of text is compressed as it is written: the answer must be the same
/// text, gzipped as one member with the exporter's own metrics in front on /metrics, and
/// plain for a client that does not accept gzip.
#[tokio::test]
async fn a_large_scrape_is_the_same_text_gzipped_or_plain() {
    let h = Harness::start_with(|_, exporter| exporter.fan_out = 60_000).await;
    let fetch = |url: String, gzip: bool| async move {
        let mut req = client().get(url);
        if gzip {
            req = req.header("Accept-Encoding", "gzip");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let encoded = resp.headers().get("content-encoding").is_some();
        assert_eq!(encoded, gzip);
        // The plain text is decompressed piece by piece as it is sent, with its length
        // announced up front.
        let announced = resp.content_length();
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(announced, Some(bytes.len() as u64));
        if !gzip {
            return (String::from_utf8(bytes.to_vec()).unwrap(), bytes.len());
        }
        // One member: a reader that stops after the first member sees everything.
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
        (text, bytes.len())
    };
    let (zipped, zipped_len) = fetch(h.probe_url(), true).await;
    let (plain, plain_len) = fetch(h.probe_url(), false).await;
    assert!(plain_len > 1 << 20, "{plain_len}");
    assert!(zipped_len * 5 < plain_len, "{zipped_len} of {plain_len}");
    for text in [&zipped, &plain] {
        assert_eq!(sample(text, "demo_up"), Some(1.0));
        assert_eq!(sample(text, "demo_fan_out{n=\"sample-00059999\"}"), Some(59_999.0));
        assert_eq!(text.matches("# TYPE demo_fan_out gauge\n").count(), 1);
        assert_eq!(text.lines().filter(|l| l.starts_with("demo_fan_out{")).count(), 60_000);
    }
    let strip = |t: &str| {
        t.lines().filter(|l| !l.starts_with("demo_scrape_")).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(strip(&zipped), strip(&plain));
    // HEAD announces the length a GET sends (the scrape's own durations are written with
    // the same number of digits run to run only by chance, so compare to a tolerance).
    let head = client().head(h.probe_url()).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let head_len: u64 = head.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert!(head_len.abs_diff(plain_len as u64) < 64, "{head_len} vs {plain_len}");

    let debug = client().get(format!("{}&debug=true", h.probe_url())).send().await.unwrap();
    let debug = debug.text().await.unwrap();
    assert!(debug.contains("\nmetrics:\n"), "{}", &debug[..200.min(debug.len())]);
    assert!(debug.contains("demo_fan_out{n=\"sample-00059999\"} 59999\n"));

    // /metrics: the exporter's own metrics, then the device's, in one gzip member.
    let target = h.sim.url().parse().unwrap();
    let h2 = Harness::start_with(move |_, exporter| {
        exporter.fan_out = 60_000;
        exporter.default = Some(target);
    })
    .await;
    let (zipped, _) = fetch(format!("{}/metrics", h2.base), true).await;
    let (plain, _) = fetch(format!("{}/metrics", h2.base), false).await;
    for text in [&zipped, &plain] {
        assert!(text.starts_with("# HELP demo_exporter_"), "{}", &text[..200]);
        assert!(text.contains("\ndemo_exporter_build_info{"), "own metrics missing");
        assert_eq!(sample(text, "demo_up"), Some(1.0));
        assert_eq!(text.lines().filter(|l| l.starts_with("demo_fan_out{")).count(), 60_000);
    }
    if let Some(findings) = exporter_core::testing::promtool_check_metrics(&zipped) {
        assert_eq!(findings, "", "promtool");
    }
}

#[tokio::test]
async fn bad_probe_requests_are_400_with_a_reason() {
    let h = Harness::start().await;
    let dev = encode(&h.sim.url());
    for (query, reason) in [
        ("", "missing target"),
        ("?debug=true", "missing target"),
        ("?target=", "empty target"),
        ("?target=ftp%3A%2F%2Fx", "the target must be an http:// URL"),
        (&format!("?target={dev}&target={dev}") as &str, "given 2 times"),
        ("?target=%zz", "malformed percent-encoding"),
        (&format!("?target={dev}&debug=maybe"), "invalid debug parameter"),
    ] {
        let resp = client().get(format!("{}/probe{query}", h.base)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8", "{query}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(reason), "{query}: {body}");
    }
    assert_eq!(h.device_queries(), 0, "bad requests never reach the device");
}

#[tokio::test]
async fn unknown_paths_404_other_methods_405_health_200() {
    let h = Harness::start().await;
    let c = client();
    assert_eq!(c.get(format!("{}/nope", h.base)).send().await.unwrap().status(), 404);
    assert_eq!(c.get(format!("{}/metrics/", h.base)).send().await.unwrap().status(), 404);
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::OPTIONS,
    ] {
        for path in ["/metrics", "/probe", "/"] {
            let resp = c.request(method.clone(), format!("{}{path}", h.base)).send().await.unwrap();
            assert_eq!(resp.status(), 405, "{method} {path}");
            assert_eq!(resp.headers()["allow"], "GET, HEAD", "{method} {path}");
        }
    }
    for path in ["/-/healthy", "/-/ready"] {
        let resp = c.get(format!("{}{path}", h.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    // The requests were counted by handler and code.
    let metrics = c.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(
        sample(&metrics, "demo_exporter_http_requests_total{code=\"404\",handler=\"other\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "demo_exporter_http_requests_total{code=\"405\",handler=\"/probe\"}"),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "demo_exporter_http_requests_total{code=\"200\",handler=\"/-/ready\"}"),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let h = Harness::start().await;
    let resp = client().head(h.probe_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], EXPOSITION_CONTENT_TYPE);
    let len: usize = resp.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert!(len > 100, "content-length {len}");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = client().head(format!("{}/", h.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
}

#[tokio::test]
async fn landing_page_shows_name_links_form_config_and_flags() {
    let cli = exporter_core::parse_args::<Flags>(
        INFO,
        &["--listen-address", "127.0.0.1:0", "--device", "http://192.0.2.1"],
        &env(&[("DEMO_PASSWORD_FILE", "/run/secrets/pw")]),
    )
    .unwrap();
    let mut opts = cli.serve;
    opts.add_config("password", "<secret> (from file /run/secrets/pw)");
    let server = exporter_core::spawn(DemoExporter::new(), opts).await.unwrap();
    let resp = client().get(format!("http://{}/", server.local_addr())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    for needle in [
        "<h1>demo-exporter</h1>",
        "0.0.1-test",
        "Test exporter for the &lt;demo&gt; device",
        r#"href="metrics""#,
        r#"href="-/healthy""#,
        r#"<form action="probe" method="get">"#,
        r#"name="target""#,
        r#"name="debug""#,
        "&lt;secret&gt; (from file /run/secrets/pw)",
        "/run/secrets/pw (env DEMO_PASSWORD_FILE)",
        "http://192.0.2.1 (flag)",
        "--listen-address &lt;addr&gt;",
        "--scrape-timeout",
        "file holding the device password",
    ] {
        assert!(html.contains(needle), "{needle:?} missing from the landing page:\n{html}");
    }
    assert!(!html.contains("<secret>"), "unescaped text on the page");
    server.shutdown().await;
}

#[tokio::test]
async fn promtool_finds_nothing_on_metrics_and_probe() {
    let h = Harness::start().await;
    let target = h.sim.url().parse().unwrap();
    let h2 = Harness::start_with(move |_, e| e.default = Some(target)).await;
    let c = client();
    // Some traffic so that the request counter has samples.
    c.get(format!("{}/nope", h.base)).send().await.unwrap();
    let mut outputs = vec![
        c.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap(),
        c.get(format!("{}/metrics", h2.base)).send().await.unwrap().text().await.unwrap(),
        c.get(h.probe_url()).send().await.unwrap().text().await.unwrap(),
    ];
    h.sim.set_fault(Some(device_sim::http::Fault::Garbage));
    outputs.push(c.get(h.probe_url()).send().await.unwrap().text().await.unwrap());
    for text in &outputs {
        match exporter_core::testing::promtool_check_metrics(text) {
            Some(findings) => assert_eq!(findings, "", "promtool on:\n{text}"),
            None => panic!("promtool is not installed (apt-get install prometheus)"),
        }
    }
}

#[test]
fn healthcheck_exits_0_for_a_running_exporter_and_1_otherwise() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(exporter_core::spawn(DemoExporter::new(), ServeOptions::for_test(INFO)))
        .unwrap();
    let addr = server.local_addr();
    let check = |listen: String| {
        let mut opts = ServeOptions::for_test(INFO);
        opts.listen_addresses = vec![listen];
        opts.healthcheck = true;
        let cli = exporter_core::Cli { flags: (), serve: opts };
        exporter_core::run(cli, |(), _| -> anyhow::Result<DemoExporter> {
            panic!("no exporter is built")
        })
    };
    assert_eq!(check(format!(":{}", addr.port())), std::process::ExitCode::SUCCESS);
    rt.block_on(server.shutdown());
    assert_eq!(check(format!("127.0.0.1:{}", addr.port())), std::process::ExitCode::FAILURE);
}

#[test]
fn invalid_options_and_env_stop_with_a_message() {
    let parse =
        |args: &[&str], e: &[(&str, &str)]| exporter_core::parse_args::<Flags>(INFO, args, &env(e));
    let Err(CliExit::Error(msg)) = parse(&["--scrape-timeout", "-1"], &[]) else {
        panic!("accepted")
    };
    assert!(msg.contains("--scrape-timeout"), "{msg}");
    let Err(CliExit::Error(msg)) = parse(&[], &[("DEMO_MAX_CONCURRENT_SCRAPES", "0")]) else {
        panic!("accepted")
    };
    assert!(msg.contains("DEMO_MAX_CONCURRENT_SCRAPES"), "{msg}");
    let Err(CliExit::Error(msg)) =
        parse(&[], &[("DEMO_DEVICE", "http://a"), ("DEMO_VERBOSE", "perhaps")])
    else {
        panic!("accepted")
    };
    assert!(msg.contains("DEMO_VERBOSE"), "{msg}");
    let cli = parse(
        &["--device", "http://flag"],
        &[("DEMO_DEVICE", "http://env"), ("DEMO_VERBOSE", "1")],
    )
    .unwrap();
    assert_eq!(cli.flags.device.as_deref(), Some("http://flag"));
    assert!(cli.flags.verbose);
    assert_eq!(cli.flags.password_file, None);
}

/// The demo exporter's own flags, as a binary would declare them.
#[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
/// Test exporter for the demo device.
struct Flags {
    /// the device to scrape on /metrics
    #[argh(option)]
    device: Option<String>,
    /// file holding the device password
    #[argh(option)]
    password_file: Option<std::path::PathBuf>,
    /// log device answers
    #[argh(switch)]
    verbose: bool,
}
