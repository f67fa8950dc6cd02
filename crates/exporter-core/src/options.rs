//! The common flags and their environment variables, validated into [`ServeOptions`].
//!
//! STUB: signatures are final, bodies are being written (see the exporter-core issue).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use argh::{ArgsInfo, FromArgs};

/// What the core needs to know about the binary it serves.
#[derive(Debug, Clone, Copy)]
pub struct ExporterInfo {
    /// The binary's name, e.g. `"linkhub-exporter"`.
    pub binary: &'static str,
    /// The environment-variable prefix without the underscore, e.g. `"LINKHUB"`.
    pub env_prefix: &'static str,
    /// The binary crate's version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// The default port of `--listen-address`.
    pub default_port: u16,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// The common flags, defined once here and merged into every exporter's `--help`.
#[derive(FromArgs, ArgsInfo, Debug)]
/// common flags.
pub struct CommonFlags {}

/// Validated server options, built by [`parse_cli`] (or [`ServeOptions::for_test`]).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub info: ExporterInfo,
    pub listen_addresses: Vec<String>,
    pub web_config_file: Option<PathBuf>,
    pub timeout_offset: Duration,
    pub scrape_timeout: Duration,
    pub max_concurrent_scrapes: usize,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    /// `(flag, value)` pairs shown on the landing page; secrets already shown as `<secret>`.
    pub effective_config: Vec<(String, String)>,
    /// `(flag, description)` for every flag, shown on the landing page.
    pub flag_docs: Vec<(String, String)>,
}

impl ServeOptions {
    /// Options for tests: listen on `127.0.0.1:0`, defaults for everything else.
    pub fn for_test(info: ExporterInfo) -> ServeOptions {
        ServeOptions {
            info,
            listen_addresses: vec!["127.0.0.1:0".to_owned()],
            web_config_file: None,
            timeout_offset: Duration::from_millis(500),
            scrape_timeout: Duration::from_secs(10),
            max_concurrent_scrapes: 32,
            log_level: log::LevelFilter::Info,
            log_format: LogFormat::Logfmt,
            effective_config: Vec::new(),
            flag_docs: Vec::new(),
        }
    }
}

/// The exporter's own flags plus the validated common options.
#[derive(Debug)]
pub struct Cli<D> {
    pub flags: D,
    pub serve: ServeOptions,
}

/// Parses argv and `<PREFIX>_<FLAG>` environment variables (the flag wins) into the common
/// options and the exporter's own flags `D`, and starts logging. On `--help`, `--version`
/// or invalid input it prints and returns the exit code to end the process with.
pub fn parse_cli<D: FromArgs + ArgsInfo>(info: ExporterInfo) -> Result<Cli<D>, ExitCode> {
    let _ = info;
    unimplemented!("parse_cli")
}
