//! The web-config file over real sockets: TLS with the test CA's and a self-signed
//! certificate, client-certificate policies, basic auth, extra headers, HTTP/2 over ALPN,
//! and a changed file taking effect without a restart.
//!
//! Certificates: `tests/fixtures/web-config/certs/` (see the README there).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, Instant},
};

use exporter_core::{Exporter, ExporterInfo, RunningServer, Scrape, ServeOptions};

const INFO: ExporterInfo = ExporterInfo {
    binary: "demo-exporter",
    env_prefix: "DEMO",
    version: "0.0.1-test",
    default_port: 9999,
};

/// Any non-empty string.
#[derive(Debug, Clone)]
struct Name(String);

impl FromStr for Name {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Name> {
        anyhow::ensure!(!s.is_empty(), "empty target");
        Ok(Name(s.to_owned()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A trivial exporter: every probe writes `demo_answer 42`.
struct Answer;

impl Exporter for Answer {
    const NAMESPACE: &'static str = "demo";
    const DESCRIPTION: &'static str = "Test exporter that always answers 42";
    type Target = Name;

    async fn probe(&self, _target: &Name, out: &mut Scrape) -> anyhow::Result<()> {
        out.gauge("answer", "The answer, for tests.").sample(&[], 42.0);
        Ok(())
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web-config").join(name)
}

fn cert(name: &str) -> PathBuf {
    fixture("certs").join(name)
}

async fn start(web_config: &Path) -> RunningServer {
    let mut opts = ServeOptions::for_test(INFO);
    opts.web_config_file = Some(web_config.to_path_buf());
    exporter_core::spawn(Answer, opts).await.unwrap()
}

/// A fresh directory for a test's own config file, removed when the guard drops.
fn scratch(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("tls-auth-{test}-")).tempdir().unwrap()
}

/// Writes a config file atomically (rename), as editors and config management do.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_builder() -> reqwest::ClientBuilder {
    exporter_core::client::install_crypto_provider();
    reqwest::Client::builder().tls_backend_rustls().no_proxy().timeout(Duration::from_secs(10))
}

/// An HTTPS client that trusts only `root` (a PEM file), optionally with a client identity.
fn https_client(root: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(&std::fs::read(cert(root)).unwrap()).unwrap();
    let mut builder = client_builder().tls_certs_only([root]);
    if let Some((cert_file, key_file)) = identity {
        let mut pem = std::fs::read(cert(cert_file)).unwrap();
        pem.extend(std::fs::read(cert(key_file)).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

fn http_client() -> reqwest::Client {
    client_builder().build().unwrap()
}

fn probe_url(scheme: &str, server: &RunningServer) -> String {
    format!("{scheme}://{}/probe?target=x", server.local_addr())
}

/// A `Basic` authorization value.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// GET with an optional `Authorization`; the status, or `None` if the request failed.
async fn status(client: &reqwest::Client, url: &str, auth: Option<&str>) -> Option<u16> {
    let mut req = client.get(url);
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    req.send().await.ok().map(|r| r.status().as_u16())
}

const ALICE: &str = "  alice: $2b$04$c79Hc5eFgoBvEZEmJUjNBem8y.F7JvNxDS5w8/b09W.31O8sjr58q\n";
const BOB: &str = "  bob: $2y$04$wLud.nFOliSMT3RkwzKB6OBMDs7ByRWOs62XLbZZ2FHAlOU7rmbEG\n";

#[tokio::test]
async fn tls_handshake_with_the_test_ca_and_plain_http_fails() {
    let server = start(&fixture("tls-files.yml")).await;
    let client = https_client("ca.pem", None);
    let resp = client.get(probe_url("https", &server)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN offers h2 by default");
    let body = resp.text().await.unwrap();
    assert!(body.contains("demo_answer 42"), "{body}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = status(&http_client(), &probe_url("http", &server), None).await;
    assert!(plain.is_none_or(|s| s >= 400), "plain HTTP answered {plain:?}");
    // A client that does not trust the server's CA fails the handshake.
    let untrusting = https_client("selfsigned.pem", None);
    assert_eq!(status(&untrusting, &probe_url("https", &server), None).await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate_and_http1_only() {
    let dir = scratch("selfsigned");
    let config = dir.path().join("web.yml");
    write_config(
        &config,
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nhttp_server_config:\n  http2: false\n",
            cert("selfsigned.pem").display(),
            cert("selfsigned.key").display()
        ),
    );
    let server = start(&config).await;
    let resp =
        https_client("selfsigned.pem", None).get(probe_url("https", &server)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11, "http2: false");
    // The CA-trusting client does not know this certificate.
    assert_eq!(
        status(&https_client("ca.pem", None), &probe_url("https", &server), None).await,
        None
    );
    server.shutdown().await;
}

#[tokio::test]
async fn basic_auth_and_headers_on_200_and_401() {
    let dir = scratch("basic");
    let config = dir.path().join("web.yml");
    write_config(
        &config,
        &format!(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n    Content-Security-Policy: default-src 'none'\nbasic_auth_users:\n{ALICE}{BOB}"
        ),
    );
    let server = start(&config).await;
    let url = probe_url("http", &server);
    let client = http_client();

    let check_headers = |resp: &reqwest::Response| {
        assert_eq!(resp.headers()["x-frame-options"], "deny");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(resp.headers()["content-security-policy"], "default-src 'none'");
    };

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no credentials");
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    check_headers(&resp);

    for (user, password) in [("alice", "bob-secret"), ("alice", ""), ("mallory", "alice-secret")] {
        let resp =
            client.get(&url).header("Authorization", basic(user, password)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{user}");
        assert!(resp.headers().contains_key("www-authenticate"));
        check_headers(&resp);
    }
    let resp = client.get(&url).header("Authorization", "Bearer abc").send().await.unwrap();
    assert_eq!(resp.status(), 401, "not basic");

    for (user, password) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        let resp =
            client.get(&url).header("Authorization", basic(user, password)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{user}");
        check_headers(&resp);
        assert!(resp.text().await.unwrap().contains("demo_answer 42"));
    }
    // reqwest's own basic_auth encoder agrees with the server's decoder.
    let resp = client.get(&url).basic_auth("alice", Some("alice-secret")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn require_and_verify_client_cert() {
    let server = start(&fixture("client-auth-require-and-verify.yml")).await;
    let url = probe_url("https", &server);
    assert_eq!(
        status(&https_client("ca.pem", None), &url, None).await,
        None,
        "no client certificate"
    );
    assert_eq!(
        status(&https_client("ca.pem", Some(("rogue-client.pem", "rogue-client.key"))), &url, None)
            .await,
        None,
        "a client certificate from another issuer"
    );
    assert_eq!(
        status(&https_client("ca.pem", Some(("client.pem", "client.key"))), &url, None).await,
        Some(200),
        "a client certificate from the client CA"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn verify_client_cert_if_given_and_require_any() {
    let server = start(&fixture("client-auth-verify-if-given.yml")).await;
    let url = probe_url("https", &server);
    assert_eq!(status(&https_client("ca.pem", None), &url, None).await, Some(200));
    assert_eq!(
        status(&https_client("ca.pem", Some(("client.pem", "client.key"))), &url, None).await,
        Some(200)
    );
    assert_eq!(
        status(&https_client("ca.pem", Some(("rogue-client.pem", "rogue-client.key"))), &url, None)
            .await,
        None,
        "a given certificate is verified"
    );
    server.shutdown().await;

    let server = start(&fixture("client-auth-require-any-alias.yml")).await;
    let url = probe_url("https", &server);
    assert_eq!(status(&https_client("ca.pem", None), &url, None).await, None);
    assert_eq!(
        status(&https_client("ca.pem", Some(("rogue-client.pem", "rogue-client.key"))), &url, None)
            .await,
        Some(200),
        "any certificate will do"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_allowed_sans() {
    let server = start(&fixture("allowed-sans.yml")).await;
    let url = probe_url("https", &server);
    assert_eq!(
        status(&https_client("ca.pem", Some(("client.pem", "client.key"))), &url, None).await,
        Some(200),
        "client.pem has DNS:scraper.example"
    );
    server.shutdown().await;

    let dir = scratch("sans");
    let config = dir.path().join("web.yml");
    write_config(
        &config,
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  client_allowed_sans: [other.example, scraper@example.org]\n",
            cert("server.pem").display(),
            cert("server.key").display(),
            cert("ca.pem").display()
        ),
    );
    let server = start(&config).await;
    assert_eq!(
        status(
            &https_client("ca.pem", Some(("client.pem", "client.key"))),
            &probe_url("https", &server),
            None
        )
        .await,
        None,
        "no SAN of client.pem is allowed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_changed_file_takes_effect_without_restart() {
    let dir = scratch("reload");
    let config = dir.path().join("web.yml");
    write_config(&config, &format!("basic_auth_users:\n{ALICE}"));
    let server = start(&config).await;
    let url = probe_url("http", &server);
    let client = http_client();
    let (alice, bob) = (basic("alice", "alice-secret"), basic("bob", "bob-secret"));
    assert_eq!(status(&client, &url, Some(&alice)).await, Some(200));
    assert_eq!(status(&client, &url, Some(&bob)).await, Some(401));

    // A broken file is logged and ignored: the last good config stays.
    write_config(&config, "basic_auth_users:\n  alice: not-a-hash\n");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&client, &url, Some(&alice)).await, Some(200));

    // Adding bob: within a few seconds (the file is looked at once per second).
    write_config(&config, &format!("basic_auth_users:\n{ALICE}{BOB}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = status(&client, &url, Some(&bob)).await;
        if got == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "bob still gets {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(&client, &url, Some(&alice)).await, Some(200));

    // Turning TLS on applies to new connections.
    write_config(
        &config,
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n{ALICE}",
            cert("server.pem").display(),
            cert("server.key").display()
        ),
    );
    let https = https_client("ca.pem", None);
    let https_url = probe_url("https", &server);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = status(&https, &https_url, Some(&alice)).await;
        if got == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "https still gets {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(&https, &https_url, Some(&bob)).await, Some(401), "bob is gone again");
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_file_stops_the_start_with_the_field_named() {
    let mut opts = ServeOptions::for_test(INFO);
    opts.web_config_file = Some(fixture("unknown-tls-version.yml"));
    let err = exporter_core::spawn(Answer, opts).await.err().unwrap();
    let message = format!("{err:#}");
    assert!(
        message.contains("tls_server_config.min_version: unknown TLS version \"TLS9\""),
        "{message}"
    );
}
