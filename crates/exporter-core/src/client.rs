//! The HTTP client the device exporters share: rustls with the ring provider, a user agent,
//! and bodies read with a size limit.

use std::time::Duration;

use anyhow::Context as _;

/// Responses larger than this are refused (device payloads are a few KiB).
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;

/// A reqwest client for device calls: rustls (ring), no proxy from the environment,
/// `User-Agent: <binary>/<version>`, a connect timeout; per-call timeouts come from the
/// scrape deadline.
///
/// Redirects are not followed: a 3xx reaches the caller as it is.
/// Server certificates are checked against the system's CA store (rustls-platform-verifier).
/// When the system has none (a FROM-scratch image without a CA bundle), the client is built
/// with an empty root store instead, so plain-HTTP devices still work and HTTPS calls fail
/// with a certificate error naming the cause.
pub fn http_client(info: &crate::ExporterInfo) -> anyhow::Result<reqwest::Client> {
    build(info, None)
}

/// [`http_client`] for ad-hoc `/probe` targets: its DNS resolver hands out only the addresses
/// `allow` permits (names it lists by name resolve as usual), so the `--probe-allow` check
/// holds for the address actually connected to. Addresses written as IP literals are not
/// resolved: check them with [`crate::ProbeAllow::check`] before the probe (the core does,
/// through [`crate::Exporter::resolve_target`]).
pub fn http_client_restricted(
    info: &crate::ExporterInfo,
    allow: std::sync::Arc<crate::ProbeAllow>,
) -> anyhow::Result<reqwest::Client> {
    build(info, Some(allow))
}

fn build(
    info: &crate::ExporterInfo,
    allow: Option<std::sync::Arc<crate::ProbeAllow>>,
) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    let builder = || {
        let builder = reqwest::Client::builder();
        let builder = match &allow {
            Some(allow) => {
                builder.dns_resolver(std::sync::Arc::new(crate::probe_allow::AllowResolver {
                    allow: std::sync::Arc::clone(allow),
                }))
            }
            None => builder,
        };
        builder
            .tls_backend_rustls()
            .no_proxy()
            // A device never needs a redirect to answer; following one would let a `/probe`
            // target send the exporter's requests (and credentials) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(format!("{}/{}", info.binary, info.version))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
    };
    match builder().build() {
        Ok(client) => Ok(client),
        Err(err) => {
            log::warn!(
                err = format!("{err:#}").as_str();
                "cannot load the system's CA certificates; HTTPS device calls will fail \
                 certificate verification"
            );
            builder()
                .tls_certs_only(Vec::<reqwest::Certificate>::new())
                .build()
                .context("cannot build the HTTP client")
        }
    }
}

/// Reads a response body, failing once it passes `limit` bytes (a runaway or endless body).
pub async fn read_body_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> anyhow::Result<Vec<u8>> {
    if let Some(len) = resp.content_length() {
        anyhow::ensure!(
            usize::try_from(len).is_ok_and(|len| len <= limit),
            "response body of {len} bytes is larger than the limit of {limit} bytes"
        );
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.context("cannot read the response body")? {
        anyhow::ensure!(
            body.len() + chunk.len() <= limit,
            "response body is larger than the limit of {limit} bytes"
        );
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Installs rustls' ring crypto provider as the process default (once; a provider that is
/// already installed is kept).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
