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
pub mod health;
pub mod metrics;
pub mod wire;

use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr, sync::Arc, time::Instant};

use anyhow::Context as _;
use argh::{ArgsInfo, FromArgs};
use exporter_core::{
    Exporter, ExporterInfo, Scrape, SdTarget, Secret, TargetInfo, Timed,
    capture::{self, Identifier},
    config::{Labels, Live},
};

use crate::{
    cache::{BatchMode, Cache, Phase, Snapshot},
    client::{Client, ListScope, StatsReply, Tape},
    config::{Config, FileConfig, Selection},
    health::ApiHealth,
    metrics::{GatewayView, StatsView},
};

/// The binary's facts for exporter-core.
pub const INFO: ExporterInfo = ExporterInfo {
    binary: "ttn-exporter",
    env_prefix: "TTN",
    version: env!("CARGO_PKG_VERSION"),
    default_port: 9714,
};

/// At most this many gateways are listed on the landing page.
const MAX_LANDING_TARGETS: usize = 200;
/// At most this many gateways get a quirk line of their own in `check` and the debug trace.
const MAX_GATEWAY_NOTES: usize = 50;

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

    /// how long past --stats-ttl cached statistics are still served while the API cannot be reached or rate-limits the exporter; after that a gateway's statistics series are absent (default 5m)
    #[argh(option, default = "\"5m\".to_owned()")]
    pub stats_max_stale: String,

    /// export the registered antenna locations of the gateways (latitude, longitude, altitude; personal data)
    #[argh(switch)]
    pub expose_location: bool,
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

/// Everything the exporter was started with, kept for reloads.
#[derive(Debug, Clone)]
pub struct Startup {
    pub flags: Flags,
    /// The flags given on the command line or by environment: they win over the file.
    pub given: Vec<String>,
    /// `--config-file`.
    pub config_file: Option<PathBuf>,
    /// `--state-directory`.
    pub state_directory: Option<PathBuf>,
}

/// A configuration read from the flags, the config file and the key file.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub key: Secret,
    /// `gateway_labels` of the config file.
    pub labels: BTreeMap<String, Labels>,
}

impl Startup {
    /// The flags alone: no config file.
    pub fn flags(flags: Flags, state_directory: Option<PathBuf>) -> Startup {
        Startup { flags, given: Vec::new(), config_file: None, state_directory }
    }

    /// Reads the config file (if any) and the API key, and validates everything.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let (flags, labels) = match &self.config_file {
            Some(path) => {
                let file = FileConfig::load(path)?;
                let given = |flag: &str| self.given.iter().any(|g| g == flag);
                (file.merge(&self.flags, &given), file.gateway_labels)
            }
            None => (self.flags.clone(), BTreeMap::new()),
        };
        let mut config = Config::from_flags(&flags)?;
        config.state_directory = self.state_directory.clone();
        let key = match &flags.api_key_file {
            Some(path) => exporter_core::config::read_secret_file(path).context("api key")?,
            None => Secret::resolve(None, Some("TTN_API_KEY"), Some("ttn-api-key"))?.ok_or_else(
                || {
                    anyhow::anyhow!(
                        "no API key: set --api-key-file (or TTN_API_KEY_FILE, or api_key_file in \
                         the config file), TTN_API_KEY, or the systemd credential ttn-api-key"
                    )
                },
            )?,
        };
        Ok(Loaded { config, key, labels })
    }
}

/// The exporter: the running configuration, the API key and the cache.
#[derive(Debug, Clone)]
pub struct Ttn {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` for an exporter built from a ready configuration (tests): nothing to reload.
    startup: Option<Startup>,
    http: reqwest::Client,
    /// The API key every client of every configuration reads when it sends a call.
    key: Arc<Live<Secret>>,
    /// The accounting of API calls, kept across reloads.
    health: Arc<ApiHealth>,
    running: Live<Running>,
    /// `check` and `capture` without `--target`: only `*` (every gateway in one scrape), not
    /// one target per gateway besides.
    all_in_one: bool,
}

/// What a reload replaces: the cache (kept when the configuration did not change) and the
/// labels for `/sd`.
#[derive(Debug)]
struct Running {
    cache: Arc<Cache>,
    labels: BTreeMap<String, Labels>,
}

impl Ttn {
    /// Validates the flags, reads the API key and builds the HTTP client; the last-seen
    /// times are kept in `state_directory` when given (`--state-directory`).
    pub fn new(flags: Flags, state_directory: Option<PathBuf>) -> anyhow::Result<Ttn> {
        Ttn::start(Startup::flags(flags, state_directory))
    }

    /// Reads the configuration (flags, config file, key file) and builds the exporter.
    pub fn start(startup: Startup) -> anyhow::Result<Ttn> {
        let loaded = startup.load()?;
        let http = exporter_core::client::http_client(&INFO)?;
        Ok(Ttn::build(Some(startup), loaded, http))
    }

    /// Builds the exporter from flags, a key and a client (tests use their own client).
    pub fn with_parts(flags: &Flags, key: Secret, http: reqwest::Client) -> anyhow::Result<Ttn> {
        Ok(Ttn::from_config(Config::from_flags(flags)?, key, http))
    }

    /// Builds the exporter from a validated configuration.
    pub fn from_config(config: Config, key: Secret, http: reqwest::Client) -> Ttn {
        Ttn::build(None, Loaded { config, key, labels: BTreeMap::new() }, http)
    }

    fn build(startup: Option<Startup>, loaded: Loaded, http: reqwest::Client) -> Ttn {
        warn_plain_http(&loaded.config);
        let key = Arc::new(Live::new(loaded.key));
        let health = Arc::new(ApiHealth::default());
        let client = Client::shared(
            http.clone(),
            Arc::clone(&key),
            Arc::clone(&health),
            loaded.config.request_timeout,
        );
        let cache = Arc::new(Cache::new(loaded.config, client));
        let running = Live::new(Running { cache, labels: loaded.labels });
        Ttn { inner: Arc::new(Inner { startup, http, key, health, running, all_in_one: false }) }
    }

    /// The exporter for `check` and `capture`: without `--target` they look at `*` alone
    /// (every gateway, each with its cluster noted), not at `*` and every gateway again,
    /// and they work while the gateway list cannot be read (that is what they report).
    pub fn for_command(mut self) -> Ttn {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.all_in_one = true;
        }
        self
    }

    fn cache(&self) -> Arc<Cache> {
        Arc::clone(&self.inner.running.load().cache)
    }
}

fn warn_plain_http(config: &Config) {
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
}

impl Exporter for Ttn {
    const NAMESPACE: &'static str = "ttn";
    const DESCRIPTION: &'static str =
        "Prometheus exporter for LoRaWAN gateways on The Things Stack (The Things Network)";
    type Target = Target;

    fn default_target(&self) -> Option<Target> {
        Some(Target::All)
    }

    async fn shutdown(&self) {
        self.cache().flush().await;
    }

    async fn reload(&self) -> anyhow::Result<()> {
        let Some(startup) = &self.inner.startup else { return Ok(()) };
        let loaded = startup.load()?;
        let running = self.inner.running.load();
        let rotated = self.inner.key.load().expose() != loaded.key.expose();
        self.inner.key.store(loaded.key);
        let cache = if *running.cache.config() == loaded.config {
            Arc::clone(&running.cache)
        } else {
            warn_plain_http(&loaded.config);
            let client = Client::shared(
                self.inner.http.clone(),
                Arc::clone(&self.inner.key),
                Arc::clone(&self.inner.health),
                loaded.config.request_timeout,
            );
            let cache = Arc::new(Cache::new(loaded.config, client));
            cache.adopt_last_seen(&running.cache.snapshot().last_seen);
            cache
        };
        if rotated {
            cache.retry_now();
        }
        log::info!(
            target: "ttn", key_rotated = rotated, gateway_labels = loaded.labels.len();
            "configuration reloaded"
        );
        self.inner.running.store(Running { cache, labels: loaded.labels });
        Ok(())
    }

    fn targets(&self) -> Vec<TargetInfo> {
        if self.inner.all_in_one {
            return Vec::new();
        }
        let running = self.inner.running.load();
        let snap = running.cache.snapshot();
        // The landing page stays small for large accounts: /sd has them all.
        snap.gateways
            .iter()
            .take(MAX_LANDING_TARGETS)
            .map(|g| TargetInfo {
                name: g.id.clone(),
                settings: vec![("cluster".to_owned(), g.cluster.host.clone())],
                labels: running.labels.get(&g.id).cloned().unwrap_or_default(),
            })
            .collect()
    }

    async fn sd_targets(&self) -> anyhow::Result<Vec<SdTarget>> {
        if self.inner.all_in_one {
            return Ok(Vec::new());
        }
        let running = self.inner.running.load();
        let mut snap = running.cache.snapshot();
        if !snap.listed {
            // Not read yet (just started): read it now, bounded.
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            snap = running.cache.current(deadline).await.snapshot;
        }
        if !snap.listed {
            let why = snap.list.error.as_ref().map_or("no answer yet", |f| f.message.as_str());
            anyhow::bail!("the gateway list has not been read yet: {why}");
        }
        Ok(snap
            .gateways
            .iter()
            .map(|g| SdTarget {
                target: g.id.clone(),
                labels: running.labels.get(&g.id).cloned().unwrap_or_default(),
            })
            .collect())
    }

    async fn probe(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<()> {
        let started = Instant::now();
        // One configuration for the whole scrape, whatever a reload does meanwhile.
        let cache = self.cache();
        let current = if capture::active() {
            // A capture reads everything again, whatever the cache holds, and records every
            // call: the refresh runs in tasks of its own, so the client collects the
            // exchanges on a tape and they are recorded here, in the probe's task.
            capture::secret(&self.inner.key.load());
            register_identifiers(cache.config(), &cache.snapshot());
            let tape = Tape::default();
            let current = cache.current_recorded(out.deadline(), Arc::clone(&tape)).await;
            let taped = std::mem::take(
                &mut *tape.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for exchange in taped {
                capture::record_http(|| exchange);
            }
            register_identifiers(cache.config(), &current.snapshot);
            current
        } else {
            cache.current(out.deadline()).await
        };
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
        let config = cache.config();
        notes(out, snap, &selected, config, now);
        metrics::api_health(out, &self.inner.health.snapshot());
        let mut hosts: Vec<&str> = selected.iter().map(|k| k.cluster.host.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        // `ttn_up 0` while the API cannot be reached (no answer, or 5xx; a 429 is not that),
        // after the collectors are recorded: the values stay, with their age.
        let unreachable = || -> Option<String> {
            if let Some((server, message)) = snap.unreachable(&hosts) {
                return Some(format!("the API cannot be reached: {server}: {message}"));
            }
            let waited_for = std::iter::once(&snap.list)
                .chain(hosts.iter().filter_map(|h| snap.clusters.get(*h).map(|c| &c.phase)));
            let due = waited_for.into_iter().any(|p| p.is_due(now))
                || hosts.iter().any(|h| !snap.clusters.contains_key(*h));
            (late && due).then(|| "the API did not answer before the scrape deadline".to_owned())
        };
        let list_age = |out: &mut Scrape| {
            if snap.listed
                && matches!(target, Target::All)
                && let Some(at) = snap.list.ok_at
            {
                metrics::list_age(out, now.saturating_duration_since(at));
            }
        };

        if let Some((name, message)) = snap.auth_error() {
            // Logged once per change by the cache; up is 0 while the key is refused. The last
            // good values are still shown.
            list_age(out);
            for known in &selected {
                render(out, snap, known, now, config);
            }
            let why = if message.starts_with("HTTP 403") { "forbidden" } else { "unauthorized" };
            anyhow::bail!("the API refused the key ({why}): {name}: {message}");
        }
        // Each collector is recorded before the series it stands for (`check` counts them
        // so); a failing collector still shows the last good values.
        let list = in_time(&snap.list).map_err(|e| e.context("ListGateways"));
        out.record(Timed { name: "gateway_list", elapsed: waited, result: list });
        list_age(out);
        if !snap.listed {
            return match unreachable() {
                Some(why) => Err(anyhow::anyhow!(why)),
                None => Ok(()),
            };
        }
        if let Target::Gateway(id) = target
            && selected.is_empty()
        {
            anyhow::bail!("gateway {id:?} is not among the gateways the exporter watches");
        }
        let mut problems = Vec::new();
        for host in hosts.iter().copied() {
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
        for known in &selected {
            render(out, snap, known, now, config);
        }
        match unreachable() {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok(()),
        }
    }
}

/// Tells a capture's redactor the identifiers it could miss: ids given with `--gateway` (they
/// may appear only in URL paths), the user or organization of `--user`/`--organization`, and
/// every known gateway's id and EUI (registered in id order, so placeholders are stable).
fn register_identifiers(config: &Config, snap: &Snapshot) {
    match &config.selection {
        Selection::Fixed(ids) => {
            for id in ids {
                capture::identifier(Identifier::Id, id);
            }
        }
        Selection::List(ListScope::User(id) | ListScope::Organization(id)) => {
            capture::identifier(Identifier::Name, id);
        }
        Selection::List(ListScope::All) => {}
    }
    for known in snap.gateways.iter() {
        capture::identifier(Identifier::Id, &known.id);
        if let Some(eui) = known.info.as_ref().and_then(|i| i.ids.eui.as_deref()) {
            capture::identifier(Identifier::Serial, eui);
        }
    }
}

/// What `check` and the debug trace show besides the metrics: the API, the key's outcome,
/// the cluster of each gateway, gateways without statistics, batch support and rate limits.
/// Gateway ids are labels of every series anyway; they are no secret.
fn notes(
    out: &mut Scrape,
    snap: &Snapshot,
    selected: &[&cache::Known],
    config: &Config,
    now: Instant,
) {
    out.fact("identity server", config.api_url.as_str());
    if snap.listed {
        out.fact("gateways", snap.gateways.len().to_string());
    }
    match snap.auth_error() {
        Some((name, _)) => {
            let status = std::iter::once(&snap.list)
                .chain(snap.clusters.values().map(|c| &c.phase))
                .filter_map(|p| p.error.as_ref())
                .find(|f| f.auth.is_some())
                .and_then(|f| f.status);
            out.login(match status {
                Some(403) => format!("API key lacks a right (403): {name}"),
                Some(status) => format!("API key refused ({status}): {name}"),
                None => format!("API key refused: {name}"),
            });
        }
        None if snap.list.ok_at.is_some()
            || snap.clusters.values().any(|c| c.phase.ok_at.is_some()) =>
        {
            out.login("API key accepted");
        }
        None => {}
    }
    let mut not_connected = Vec::new();
    for known in selected {
        if let Some(record) = snap.stats.get(&known.id)
            && matches!(*record.reply, StatsReply::NotConnected)
        {
            not_connected.push(known.id.as_str());
        }
    }
    for known in selected.iter().take(MAX_GATEWAY_NOTES) {
        out.quirk(format!("gateway {} on cluster {}", known.id, known.cluster.host));
    }
    if selected.len() > MAX_GATEWAY_NOTES {
        out.quirk(format!("… and {} more gateways", selected.len() - MAX_GATEWAY_NOTES));
    }
    for id in not_connected.iter().take(MAX_GATEWAY_NOTES) {
        out.quirk(format!(
            "gateway {id} not connected (404 not_connected: never connected to its cluster, or              gone for more than 48 h)"
        ));
    }
    if not_connected.len() > MAX_GATEWAY_NOTES {
        out.quirk(format!(
            "… and {} more gateways not connected",
            not_connected.len() - MAX_GATEWAY_NOTES
        ));
    }
    for (host, state) in &snap.clusters {
        match state.batch {
            BatchMode::Batch => {}
            BatchMode::Unsupported => out.quirk(format!(
                "cluster {host} has no batch statistics endpoint (older than 3.21): one call per                  gateway"
            )),
            BatchMode::KeyCannot => out.quirk(format!(
                "cluster {host} refuses batch calls with this key (not a user or organization                  key): one call per gateway"
            )),
        }
    }
    let phases = std::iter::once(("the Identity Server", &snap.list))
        .chain(snap.clusters.iter().map(|(host, c)| (host.as_str(), &c.phase)));
    for (server, phase) in phases {
        if phase.rate_limited(now) {
            let wait = phase.due.map(|due| due.saturating_duration_since(now)).unwrap_or_default();
            out.quirk(format!(
                "rate limited (429) by {server}; retry after {} s",
                wait.as_secs_f64().ceil()
            ));
        }
    }
}

fn render(out: &mut Scrape, snap: &Snapshot, known: &cache::Known, now: Instant, config: &Config) {
    let record = snap.stats.get(&known.id);
    let served_for = config.stats_ttl.saturating_add(config.stats_max_stale);
    let view = GatewayView {
        id: &known.id,
        info: known.info.as_deref(),
        cluster: &known.cluster.host,
        stats: record.map(|r| {
            let age = now.saturating_duration_since(r.at);
            StatsView {
                reply: &r.reply,
                age,
                tx_ack_known: r.tx_ack_known,
                expired: age > served_for,
            }
        }),
        last_seen: snap.last_seen.get(&known.id),
        expose_location: config.expose_location,
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
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let missing = dir.join("missing");
        let err =
            Ttn::new(flags(&["--api-key-file", missing.to_str().unwrap()]), None).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read secret file"), "{err:#}");
        let file = dir.join("key");
        std::fs::write(&file, "NNSXS.ABC.DEF\n").unwrap();
        assert!(Ttn::new(flags(&["--api-key-file", file.to_str().unwrap()]), None).is_ok());
        // Bad flags are reported even with a good key, and the key never shows.
        let err = Ttn::new(
            flags(&["--api-key-file", file.to_str().unwrap(), "--gateways-refresh", "0s"]),
            None,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.starts_with("--gateways-refresh: invalid duration"), "{text}");
        assert!(!text.contains("NNSXS"), "{text}");
        if std::env::var_os("TTN_API_KEY").is_none()
            && std::env::var_os("CREDENTIALS_DIRECTORY").is_none()
        {
            let err = Ttn::new(flags(&[]), None).unwrap_err();
            assert!(format!("{err:#}").starts_with("no API key"), "{err:#}");
        }
    }
}
