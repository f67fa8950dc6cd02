//! The shared device client: rustls really verifies certificates, the user agent is set,
//! and bodies are read with a limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::PathBuf, sync::Arc, time::Duration};

use common::{DemoExporter, INFO};
use device_sim::{
    demo::Demo,
    http::{Fault, SimServer},
};
use exporter_core::{
    ServeOptions,
    client::{http_client, read_body_limited},
};

#[tokio::test]
async fn https_to_an_untrusted_certificate_fails_in_rustls() {
    let mut opts = ServeOptions::for_test(INFO);
    opts.web_config_file = Some(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web-config/tls-files.yml"),
    );
    let server = exporter_core::spawn(DemoExporter::new(), opts).await.unwrap();
    let url = format!("https://localhost:{}/-/healthy", server.local_addr().port());
    let err = http_client(&INFO).unwrap().get(&url).send().await.unwrap_err();
    let chain = format!("{:?}", anyhow::Error::from(err));
    // rustls' own wording: the test CA is in no system store.
    assert!(chain.contains("invalid peer certificate"), "{chain}");
    server.shutdown().await;
}

#[tokio::test]
async fn user_agent_and_body_limit() {
    let sim =
        SimServer::start(Arc::new(Demo::default()), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = http_client(&INFO).unwrap();
    let url = format!("{}/status", sim.url());

    let resp = client.get(&url).send().await.unwrap();
    let body = read_body_limited(resp, 4096).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["uptime_seconds"], 1234);
    let resp = client.get(&url).send().await.unwrap();
    let err = read_body_limited(resp, 10).await.unwrap_err();
    assert!(format!("{err:#}").contains("larger than the limit"), "{err:#}");

    // A body without a length that never ends is cut off at the limit, not read forever.
    sim.set_fault(Some(Fault::Endless));
    let resp = client.get(&url).send().await.unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), read_body_limited(resp, 64 * 1024))
        .await
        .unwrap()
        .unwrap_err();
    assert!(format!("{err:#}").contains("larger than the limit"), "{err:#}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_user_agent_names_the_binary() {
    // A one-shot TCP server that returns the request head it got.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
        String::from_utf8(head).unwrap()
    });
    let resp = http_client(&INFO).unwrap().get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let head = server.await.unwrap().to_ascii_lowercase();
    assert!(head.contains("user-agent: demo-exporter/0.0.1-test\r\n"), "{head}");
}
