//! The HTTP client the device exporters share: rustls with the ring provider, a user agent,
//! and bodies read with a size limit.
//!
//! STUB: signatures are final, bodies are being written.

/// Responses larger than this are refused (device payloads are a few KiB).
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;

/// A reqwest client for device calls: rustls (ring), no proxy from the environment,
/// `User-Agent: <binary>/<version>`, a connect timeout; per-call timeouts come from the
/// scrape deadline.
pub fn http_client(info: &crate::ExporterInfo) -> anyhow::Result<reqwest::Client> {
    let _ = info;
    unimplemented!("http_client")
}

/// Reads a response body, failing once it passes `limit` bytes (a runaway or endless body).
pub async fn read_body_limited(resp: reqwest::Response, limit: usize) -> anyhow::Result<Vec<u8>> {
    let _ = (resp, limit);
    unimplemented!("read_body_limited")
}
