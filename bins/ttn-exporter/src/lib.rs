//! ttn-exporter: every gateway of a The Things Stack account (TTN, TTS Cloud or
//! self-hosted), across clusters, with batch connection statistics.
//!
//! The gateway list comes from the Identity Server and is refreshed every
//! `--gateways-refresh`; connection statistics come from the Gateway Server of each
//! gateway's cluster (batch calls where the server has them) and are cached for
//! `--stats-ttl`. Both are refreshed by the scrape that finds them due, with single flight
//! (see [`cache`]). `/metrics` shows every gateway, `/probe?target=<gateway_id>` one.

pub mod api;
pub mod cache;
pub mod client;
pub mod config;
pub mod metrics;
pub mod wire;

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc, time::Instant};

use argh::{ArgsInfo, FromArgs};
use exporter_core::{Exporter, ExporterInfo, Scrape, Secret, Timed};

use crate::{
    cache::{Cache, Phase, Snapshot},
    client::Client,
    config::Config,
    metrics::{GatewayView, StatsView},
};

/// The binary's facts for exporter-core.
pub const INFO: ExporterInfo = ExporterInfo {
    binary: "ttn-exporter",
    env_prefix: "TTN",
    version: env!("CARGO_PKG_VERSION"),
    default_port: 9714,
};

/// The default `--api-url`.
pub const DEFAULT_API_URL: &str = "https://eu1.cloud.thethings.network";

/// Prometheus exporter for LoRaWAN gateways on The Things Stack (The Things Network, TTS
/// Cloud or self-hosted): gateway list, connection state, traffic counters, round-trip
/// times and duty-cycle use of every gateway the API key can see.
#[derive(FromArgs, ArgsInfo, Debug, Clone, PartialEq)]
pub struct Flags {
    /// base URL of the The Things Stack Identity Server (default https://eu1.cloud.thethings.network)
    #[argh(option, default = "DEFAULT_API_URL.to_owned()")]
    pub api_url: String,

    /// file holding the API key (else TTN_API_KEY, else the systemd credential ttn-api-key)
    #[argh(option)]
    pub api_key_file: Option<PathBuf>,

    /// list only the gateways this user is a direct collaborator of
    #[argh(option)]
    pub user: Option<String>,

    /// list only the gateways this organization is a collaborator of
    #[argh(option)]
    pub organization: Option<String>,

    /// watch this gateway id instead of listing gateways (repeatable; for gateway-scoped keys)
    #[argh(option)]
    pub gateway: Vec<String>,

    /// base URL of the cluster whose gateway_server_address host is HOST, as HOST=URL (repeatable; for self-hosted or test setups)
    #[argh(option)]
    pub cluster_url: Vec<String>,

    /// how long connection statistics are cached, e.g. 30s or 1m (units ms, s, m, h; default 30s)
    #[argh(option, default = "\"30s\".to_owned()")]
    pub stats_ttl: String,

    /// how often the gateway list is read again, e.g. 10m (units ms, s, m, h; default 10m)
    #[argh(option, default = "\"10m\".to_owned()")]
    pub gateways_refresh: String,
}

/// What `?target=` names: one gateway id, or every gateway (`/metrics`, or `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Gateway(String),
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Target> {
        if s == "*" {
            return Ok(Target::All);
        }
        Ok(Target::Gateway(config::entity_id(s)?))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("*"),
            Target::Gateway(id) => f.write_str(id),
        }
    }
}

/// The exporter: configuration, API client and the shared cache.
#[derive(Debug, Clone)]
pub struct Ttn {
    cache: Arc<Cache>,
}

impl Ttn {
    /// Validates the flags, reads the API key and builds the HTTP client.
    pub fn new(flags: Flags) -> anyhow::Result<Ttn> {
        let key = Secret::resolve(
            flags.api_key_file.as_deref(),
            Some("TTN_API_KEY"),
            Some("ttn-api-key"),
        )?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no API key: set --api-key-file (or TTN_API_KEY_FILE), TTN_API_KEY, or the \
                     systemd credential ttn-api-key"
            )
        })?;
        let http = exporter_core::client::http_client(&INFO)?;
        Ttn::with_parts(&flags, key, http)
    }

    /// Builds the exporter from flags, a key and a client (tests use their own client).
    pub fn with_parts(flags: &Flags, key: Secret, http: reqwest::Client) -> anyhow::Result<Ttn> {
        Ok(Ttn::from_config(Config::from_flags(flags)?, key, http))
    }

    /// Builds the exporter from a validated configuration.
    pub fn from_config(config: Config, key: Secret, http: reqwest::Client) -> Ttn {
        for url in std::iter::once(&config.api_url).chain(config.cluster_urls.values()) {
            let host = url.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if url.scheme() == "http" && !loopback {
                log::warn!(
                    target: "ttn", url = url.as_str();
                    "the API key is sent unencrypted over plain HTTP; use https://"
                );
            }
        }
        let client = Client::new(http, key, config.request_timeout);
        Ttn { cache: Arc::new(Cache::new(config, client)) }
    }
}

impl Exporter for Ttn {
    const NAMESPACE: &'static str = "ttn";
    const DESCRIPTION: &'static str =
        "Prometheus exporter for LoRaWAN gateways on The Things Stack (The Things Network)";
    type Target = Target;

    fn default_target(&self) -> Option<Target> {
        Some(Target::All)
    }

    async fn probe(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<()> {
        let started = Instant::now();
        let current = self.cache.current(out.deadline()).await;
        let waited = started.elapsed();
        let now = Instant::now();
        let snap = &current.snapshot;
        if current.timed_out {
            out.note("the API did not answer before the scrape deadline; the refresh goes on");
        }
        let late = current.timed_out;
        let in_time = |phase: &Phase| -> anyhow::Result<()> {
            if late && phase.is_due(now) {
                anyhow::bail!("no answer from the API before the scrape deadline");
            }
            match &phase.error {
                Some(failure) => Err(anyhow::anyhow!("{}", failure.message)),
                None => Ok(()),
            }
        };

        let selected: Vec<&cache::Known> = match target {
            Target::All => snap.gateways.iter().collect(),
            Target::Gateway(id) => snap.gateway(id).into_iter().collect(),
        };
        // Render first, so that even a failing scrape shows the last good values.
        for known in &selected {
            render(out, snap, known, now);
        }
        if snap.listed
            && matches!(target, Target::All)
            && let Some(at) = snap.list.ok_at
        {
            metrics::list_age(out, now.saturating_duration_since(at));
        }

        if let Some((name, message)) = snap.auth_error() {
            // Logged once per change by the cache; up is 0 while the key is refused.
            anyhow::bail!("the API refused the key: {name}: {message}");
        }
        let list = in_time(&snap.list).map_err(|e| e.context("ListGateways"));
        out.record(Timed { name: "gateway_list", elapsed: waited, result: list });
        if !snap.listed {
            return Ok(());
        }
        if let Target::Gateway(id) = target
            && selected.is_empty()
        {
            anyhow::bail!("gateway {id:?} is not among the gateways the exporter watches");
        }
        let mut problems = Vec::new();
        let mut hosts: Vec<&str> = selected.iter().map(|k| k.cluster.host.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        for host in hosts {
            let result = match snap.clusters.get(host) {
                Some(state) => in_time(&state.phase),
                None if late => {
                    Err(anyhow::anyhow!("no answer from the API before the scrape deadline"))
                }
                None => Err(anyhow::anyhow!("no statistics fetched yet")),
            };
            if let Err(err) = result {
                problems.push(format!("cluster {host}: {err:#}"));
            }
        }
        for known in &selected {
            if let Err(why) = &known.cluster.url {
                problems.push(format!("gateway {}: {why}", known.id));
            }
        }
        let stats = match problems.len() {
            0 => Ok(()),
            1 => Err(anyhow::anyhow!("{}", problems.join(""))),
            n => Err(anyhow::anyhow!("{n} problems: {}", problems.join("; "))),
        };
        out.record(Timed {
            name: "gateway_stats",
            elapsed: waited,
            result: stats.map_err(|e| e.context("GetGatewayConnectionStats")),
        });
        Ok(())
    }
}

fn render(out: &mut Scrape, snap: &Snapshot, known: &cache::Known, now: Instant) {
    let record = snap.stats.get(&known.id);
    let view = GatewayView {
        id: &known.id,
        info: known.info.as_deref(),
        cluster: &known.cluster.host,
        stats: record.map(|r| StatsView {
            reply: &r.reply,
            age: now.saturating_duration_since(r.at),
            tx_ack_known: r.tx_ack_known,
        }),
    };
    metrics::gateway(out, &view);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!("*".parse::<Target>().unwrap(), Target::All);
        assert_eq!("gw-0001".parse::<Target>().unwrap(), Target::Gateway("gw-0001".into()));
        assert_eq!(Target::All.to_string(), "*");
        for bad in ["", "GW", "a", "gw_1", "-gw", "../x"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn api_key_is_required_and_read_from_its_file() {
        let flags =
            |args: &[&str]| -> Flags { FromArgs::from_args(&["ttn-exporter"], args).unwrap() };
        let dir = std::env::temp_dir().join(format!("ttn-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing");
        let err = Ttn::new(flags(&["--api-key-file", missing.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read secret file"), "{err:#}");
        let file = dir.join("key");
        std::fs::write(&file, "NNSXS.ABC.DEF\n").unwrap();
        assert!(Ttn::new(flags(&["--api-key-file", file.to_str().unwrap()])).is_ok());
        // Bad flags are reported even with a good key, and the key never shows.
        let err = Ttn::new(flags(&[
            "--api-key-file",
            file.to_str().unwrap(),
            "--gateways-refresh",
            "0s",
        ]))
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.starts_with("--gateways-refresh: invalid duration"), "{text}");
        assert!(!text.contains("NNSXS"), "{text}");
        if std::env::var_os("TTN_API_KEY").is_none()
            && std::env::var_os("CREDENTIALS_DIRECTORY").is_none()
        {
            let err = Ttn::new(flags(&[])).unwrap_err();
            assert!(format!("{err:#}").starts_with("no API key"), "{err:#}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
