//! The exporter-toolkit web-config file (`--web-config-file`): TLS via rustls, basic auth
//! with bcrypt hashes, extra response headers. Validated at start, re-read when it changes.
//!
//! STUB: the signatures below are final; the bodies are being written.

use std::{path::Path, sync::Arc};

/// A validated web-config file.
#[derive(Debug, Default)]
pub(crate) struct WebConfig {
    /// `Some` when `tls_server_config` is set: the rustls config to accept connections with.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// `http_server_config.headers`, added to every response (including 401s).
    pub(crate) headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// `http_server_config.http2` (default true; only with TLS).
    pub(crate) http2: bool,
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No users configured, or good credentials.
    Allowed,
    /// Missing or wrong credentials: answer 401 with `WWW-Authenticate: Basic`.
    Denied,
}

impl WebConfig {
    /// Reads and validates the file; the error names the offending field.
    pub(crate) fn load(path: &Path) -> anyhow::Result<WebConfig> {
        let _ = path;
        Ok(WebConfig::default())
    }

    /// Checks basic auth (bcrypt, constant-time for unknown users, cached good logins).
    /// May block for a bcrypt verification: call it from `spawn_blocking`.
    pub(crate) fn check_auth(&self, authorization: Option<&str>) -> Auth {
        let _ = authorization;
        Auth::Allowed
    }
}

/// Holds the current config and re-reads the file when its modification time or size
/// changes, keeping the last good config (and logging the error) when the new one is bad.
#[derive(Debug)]
pub(crate) struct WebConfigWatcher {}

impl WebConfigWatcher {
    /// Loads the file at start; a bad file is an error (the exporter does not start).
    pub(crate) fn new(path: Option<&Path>) -> anyhow::Result<WebConfigWatcher> {
        let _ = path;
        Ok(WebConfigWatcher {})
    }

    /// The current config, re-read first if the file changed. Cheap when it did not.
    pub(crate) fn current(&self) -> Arc<WebConfig> {
        Arc::new(WebConfig::default())
    }
}
