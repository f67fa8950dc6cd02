//! exporter-core: everything the uplink exporters share.
//!
//! An exporter implements [`Exporter`]: one async probe of one target that writes fresh
//! metric families into a [`Scrape`]. [`serve`] owns the rest: flags and environment
//! ([`parse_cli`]), the HTTP server and its routes, scrape deadlines, single flight per
//! target, TLS and basic auth from a web-config file, the landing page, the exporter's own
//! metrics, logging and graceful shutdown.
//!
//! Architecture invariant: among the workspace's crates that ship to users, only this one
//! knows hyper, rustls server configuration and the exposition format.

mod alloc;
pub mod capture;
mod check;
pub mod client;
mod coalesce;
pub mod config;
mod deadline;
mod gzip;
mod landing;
pub mod logging;
mod options;
mod probe_allow;
mod process;
mod redact;
mod reply;
mod scrape;
mod self_metrics;
mod server;
pub mod state;
pub mod testing;
mod web_config;

use std::{fmt::Display, future::Future, str::FromStr};

pub use check::{CommandOutput, classify as classify_error, run_command};
pub use options::{
    Cli, CliExit, Command, CommonFlags, ExporterInfo, LogFormat, ServeOptions, env_var_name,
    parse_args, parse_cli, parse_cli_with_env, version_line,
};
pub use probe_allow::ProbeAllow;
pub use scrape::{Family, HistogramFamily, Scrape, Timed, timed};
pub use secret::Secret;
pub use server::{EXPOSITION_CONTENT_TYPE, RunningServer, run, serve, spawn};

mod secret;

/// One device exporter: how to query one target of its kind.
///
/// Each binary has exactly one exporter, so the server is generic over it (static dispatch).
pub trait Exporter: Send + Sync + 'static {
    /// Metric prefix and landing-page title, e.g. `"linkhub"`.
    const NAMESPACE: &'static str;
    /// One line for the landing page, e.g. "Prometheus exporter for Alcatel/TCL LinkHub 4G routers".
    const DESCRIPTION: &'static str;
    /// What `?target=` parses into: a host URL, a gateway id, a modem's device id.
    /// A parse error becomes a 400 whose body is the error's text.
    type Target: FromStr<Err = anyhow::Error> + Display + Clone + Send + Sync + 'static;

    /// The target `/metrics` scrapes in addition to the exporter's own metrics, if any.
    fn default_target(&self) -> Option<Self::Target> {
        None
    }

    /// Query the device now, once, and write samples into `out`.
    ///
    /// `Err` means the device could not be reached as a whole (connect or login failed) and
    /// gives `<ns>_up 0`; partial failures go through [`Scrape::record`]. The core drops the
    /// future at [`Scrape::deadline`], keeping whatever was written until then.
    fn probe(
        &self,
        target: &Self::Target,
        out: &mut Scrape,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Called once on graceful shutdown, after in-flight scrapes ended (e.g. to log out).
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Resolves a `/probe?target=` value: a configured name or address becomes that entry,
    /// another address an ad-hoc target without secrets, checked against `--probe-allow`.
    /// The default parses the value with `FromStr`.
    fn resolve_target(
        &self,
        raw: &str,
    ) -> impl Future<Output = Result<Self::Target, TargetError>> + Send {
        let parsed = raw.parse::<Self::Target>().map_err(TargetError::Invalid);
        async move { parsed }
    }

    /// Re-reads the configuration file and the secret files it names (SIGHUP and
    /// `POST /-/reload`). `Err` keeps the running configuration; scrapes in flight finish
    /// with the configuration they started with either way.
    fn reload(&self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// The named targets, for the landing page (secrets shown as `<secret>`).
    fn targets(&self) -> Vec<TargetInfo> {
        Vec::new()
    }

    /// The targets `GET /sd` offers to Prometheus' HTTP service discovery: one per device.
    fn sd_targets(&self) -> impl Future<Output = anyhow::Result<Vec<SdTarget>>> + Send {
        async { Ok(Vec::new()) }
    }
}

/// Why a `/probe?target=` value is refused; each is counted in
/// `<ns>_exporter_probe_rejected_total{reason}`.
#[derive(Debug)]
pub enum TargetError {
    /// Not a valid target: answered 400 with the error's text.
    Invalid(anyhow::Error),
    /// A valid address that `--probe-allow` does not permit: answered 403 with this text.
    NotAllowed(String),
}

/// One named target as the landing page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetInfo {
    /// The name, the `?target=` value that selects it.
    pub name: String,
    /// Its settings as `(key, value)`, secrets already shown as `<secret>`.
    pub settings: Vec<(String, String)>,
    /// Its labels (`labels:` in the config file).
    pub labels: config::Labels,
}

/// One target of `GET /sd`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdTarget {
    /// The `?target=` value: a target's name, a gateway id, a modem's device id.
    pub target: String,
    /// Labels for all of that target's series (from the config file).
    pub labels: config::Labels,
}

/// Entry points for the fuzz targets in `fuzz/` (not an API: no stability promise).
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    /// What the server makes of one request line and its headers.
    #[derive(Debug)]
    pub struct Request {
        /// The scrape budget from `X-Prometheus-Scrape-Timeout-Seconds` (offset 0.5 s, cap 10 s).
        pub budget: Duration,
        /// Whether `Accept-Encoding` allows gzip.
        pub gzip: bool,
        /// The decoded query pairs, or the 400 message.
        pub query: Result<Vec<(String, String)>, String>,
    }

    /// The server's parsing of a request target (`/probe?target=…`) and of the scrape-timeout
    /// and `Accept-Encoding` headers; `None` when hyper would reject the request target.
    pub fn request(target: &[u8], timeout: Option<&str>, accept_encoding: &str) -> Option<Request> {
        let budget = crate::deadline::scrape_budget(
            timeout,
            Duration::from_millis(500),
            Duration::from_secs(10),
        );
        let gzip = crate::server::accepts_gzip(accept_encoding);
        let uri = hyper::Uri::try_from(target).ok()?;
        let query = crate::server::parse_query(uri.query().unwrap_or(""));
        Some(Request { budget, gzip, query })
    }

    /// Reads `bytes` as a capture file (as `device-sim replay` does), and when that works
    /// writes it in both formats, which must read back: a file this build writes can always
    /// be replayed.
    pub fn capture_file(bytes: &[u8]) -> anyhow::Result<()> {
        use crate::capture::{Capture, CaptureFormat};
        let capture = Capture::from_slice(bytes)?;
        for format in [CaptureFormat::Yaml, CaptureFormat::Json] {
            let text = capture.to_text(format)?;
            if let Err(err) = Capture::from_slice(text.as_bytes()) {
                panic!("a capture written as {format:?} does not read back: {err:#}\n{text}");
            }
        }
        Ok(())
    }

    /// Loads `bytes` as a `--web-config-file` (through a scratch file, as the server does).
    pub fn web_config(bytes: &[u8]) -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("exporter-core-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("web.yml");
        std::fs::write(&path, bytes)?;
        crate::web_config::WebConfig::load(&path).map(drop)
    }
}
