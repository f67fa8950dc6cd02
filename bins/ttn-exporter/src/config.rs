//! The exporter's flags and `--config-file` validated into a [`Config`]: URLs, ids,
//! durations and the cluster map. Nothing after this step sees a flag string.
//!
//! The config file (YAML, [`FileConfig`]) holds the same settings as the flags plus
//! `gateway_labels`; a flag given on the command line or by environment wins over the file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use exporter_core::config::Labels;
use reqwest::Url;
use serde::Deserialize;

use crate::{Flags, client::ListScope};

/// The clusters of The Things Network's cloud: with `--api-url` on one of them, the others
/// are known without `--cluster-url` (built in, never taken from API data).
pub const TTN_CLOUD_CLUSTERS: [&str; 3] =
    ["eu1.cloud.thethings.network", "nam1.cloud.thethings.network", "au1.cloud.thethings.network"];

/// `--config-file`: the flags' settings (each optional) plus labels per gateway for `/sd`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--api-url`.
    pub api_url: Option<String>,
    /// `--api-key-file`; a relative path names a systemd credential first.
    pub api_key_file: Option<PathBuf>,
    /// `--user`.
    pub user: Option<String>,
    /// `--organization`.
    pub organization: Option<String>,
    /// `--gateway`, as a list.
    pub gateways: Option<Vec<String>>,
    /// `--cluster-url`, as a map from host to URL.
    pub cluster_urls: Option<BTreeMap<String, String>>,
    /// `--stats-ttl`.
    pub stats_ttl: Option<String>,
    /// `--stats-max-stale`.
    pub stats_max_stale: Option<String>,
    /// `--gateways-refresh`.
    pub gateways_refresh: Option<String>,
    /// `--expose-location`.
    pub expose_location: Option<bool>,
    /// Labels per gateway id, given to Prometheus through `/sd`.
    #[serde(default)]
    pub gateway_labels: BTreeMap<String, Labels>,
}

impl FileConfig {
    /// Reads and checks the file (unknown keys are errors naming file, line, column and key).
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let file: FileConfig = exporter_core::config::load_yaml(path)?;
        for (id, labels) in &file.gateway_labels {
            let what = format!("{}: gateway_labels.{id}", path.display());
            entity_id(id).with_context(|| what.clone())?;
            exporter_core::config::validate_labels(&what, labels)?;
        }
        Ok(file)
    }

    /// `flags` with this file's settings where the flag was not given (`given("--stats-ttl")`
    /// says whether it was, on the command line or by environment). `--user`,
    /// `--organization` and `--gateway` count as one setting: any of them given replaces all
    /// three of the file.
    pub fn merge(&self, flags: &Flags, given: &dyn Fn(&str) -> bool) -> Flags {
        let mut out = flags.clone();
        let from_file = |flag: &str| !given(flag);
        if from_file("--api-url")
            && let Some(v) = &self.api_url
        {
            out.api_url = v.clone();
        }
        if from_file("--api-key-file") && self.api_key_file.is_some() {
            out.api_key_file = self.api_key_file.clone();
        }
        let selection_given = given("--user") || given("--organization") || given("--gateway");
        let in_file = self.user.is_some() || self.organization.is_some() || self.gateways.is_some();
        if !selection_given && in_file {
            out.user = self.user.clone();
            out.organization = self.organization.clone();
            out.gateway = self.gateways.clone().unwrap_or_default();
        }
        if from_file("--cluster-url")
            && let Some(map) = &self.cluster_urls
        {
            out.cluster_url = map.iter().map(|(host, url)| format!("{host}={url}")).collect();
        }
        for (flag, field, value) in [
            ("--stats-ttl", &mut out.stats_ttl, &self.stats_ttl),
            ("--stats-max-stale", &mut out.stats_max_stale, &self.stats_max_stale),
            ("--gateways-refresh", &mut out.gateways_refresh, &self.gateways_refresh),
        ] {
            if from_file(flag)
                && let Some(v) = value
            {
                *field = v.clone();
            }
        }
        if from_file("--expose-location")
            && let Some(v) = self.expose_location
        {
            out.expose_location = v;
        }
        out
    }
}

/// Which gateways the exporter watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every gateway the list call returns.
    List(ListScope),
    /// Exactly these ids (`--gateway`), for keys that cannot list.
    Fixed(Vec<String>),
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Base URL of the Identity Server (no `/api/v3`).
    pub api_url: Url,
    pub selection: Selection,
    /// `--cluster-url` overrides by lower-case host.
    pub cluster_urls: BTreeMap<String, Url>,
    pub stats_ttl: Duration,
    /// How long past `stats_ttl` cached statistics are still served (`--stats-max-stale`).
    pub stats_max_stale: Duration,
    pub gateways_refresh: Duration,
    /// Whether antenna locations are exported (`--expose-location`).
    pub expose_location: bool,
    /// Where the last-seen times are kept across restarts (`--state-directory`).
    pub state_directory: Option<PathBuf>,
    /// Statistics requests in flight per cluster.
    pub concurrency: usize,
    /// Bound of every single API call.
    pub request_timeout: Duration,
}

/// Where a gateway's statistics come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's host, used as the `cluster` label.
    pub host: String,
    /// Its base URL, or why none can be used.
    pub url: Result<Url, String>,
}

impl Config {
    /// Validates the flags.
    pub fn from_flags(flags: &Flags) -> anyhow::Result<Config> {
        let api_url = base_url(&flags.api_url).context("--api-url")?;
        let selection = match (&flags.user, &flags.organization, flags.gateway.is_empty()) {
            (Some(_), Some(_), _) => {
                anyhow::bail!("--user and --organization cannot be combined: pick one list")
            }
            (Some(_), None, false) | (None, Some(_), false) => anyhow::bail!(
                "--gateway cannot be combined with --user or --organization: either list the \
                 gateways or name them"
            ),
            (Some(user), None, true) => {
                Selection::List(ListScope::User(entity_id(user).context("--user")?))
            }
            (None, Some(org), true) => {
                Selection::List(ListScope::Organization(entity_id(org).context("--organization")?))
            }
            (None, None, true) => Selection::List(ListScope::All),
            (None, None, false) => {
                let mut ids = Vec::new();
                for id in &flags.gateway {
                    let id = entity_id(id).context("--gateway")?;
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Selection::Fixed(ids)
            }
        };
        let mut cluster_urls = BTreeMap::new();
        for entry in &flags.cluster_url {
            let (host, url) = entry
                .split_once('=')
                .with_context(|| format!("--cluster-url {entry:?}: expected HOST=URL"))?;
            let host = host.trim().to_ascii_lowercase();
            anyhow::ensure!(
                !host.is_empty() && !host.contains(['/', ' ']),
                "--cluster-url {entry:?}: HOST must be a host name as in gateway_server_address"
            );
            let url = base_url(url).with_context(|| format!("--cluster-url {entry:?}"))?;
            cluster_urls.insert(host, url);
        }
        let stats_ttl = parse_duration(&flags.stats_ttl).context("--stats-ttl")?;
        let gateways_refresh =
            parse_duration(&flags.gateways_refresh).context("--gateways-refresh")?;
        let stats_max_stale =
            parse_duration(&flags.stats_max_stale).context("--stats-max-stale")?;
        Ok(Config {
            api_url,
            selection,
            cluster_urls,
            stats_ttl,
            stats_max_stale,
            gateways_refresh,
            expose_location: flags.expose_location,
            state_directory: None,
            concurrency: 4,
            request_timeout: Duration::from_secs(20),
        })
    }

    /// The host of `--api-url` (the default cluster).
    pub fn api_host(&self) -> String {
        self.api_url.host_str().unwrap_or_default().to_ascii_lowercase()
    }

    /// The cluster hosting a gateway, from its `gateway_server_address`.
    ///
    /// The API key is only ever sent to an address the configuration names: `--api-url`,
    /// the `--cluster-url` entries, and (with `--api-url` on The Things Network's cloud) the
    /// other TTN cloud clusters over HTTPS. The address is editable by any collaborator of
    /// the gateway, so a host it names is only a key to look up, never a place to connect to.
    pub fn cluster(&self, gateway_server_address: Option<&str>) -> Cluster {
        let api_host = self.api_host();
        let host = gateway_server_address.map(address_host).unwrap_or_default();
        if host.is_empty() || host == api_host {
            let url = self.cluster_urls.get(&api_host).unwrap_or(&self.api_url).clone();
            return Cluster { host: api_host, url: Ok(url) };
        }
        if let Some(url) = self.cluster_urls.get(&host) {
            return Cluster { host, url: Ok(url.clone()) };
        }
        let ttn_cloud = TTN_CLOUD_CLUSTERS.contains(&api_host.as_str())
            && TTN_CLOUD_CLUSTERS.contains(&host.as_str())
            && self.api_url.scheme() == "https";
        let url = if ttn_cloud {
            Url::parse(&format!("https://{host}")).map_err(|e| format!("host {host:?}: {e}"))
        } else {
            Err(format!(
                "gateway server address {host:?} is not a configured cluster (the API key is \
                 sent only to configured addresses): add --cluster-url {host}=URL to fetch its \
                 statistics"
            ))
        };
        Cluster { host, url }
    }
}

/// Parses a duration flag: one or more `<integer><unit>` groups with the units `ms`, `s`,
/// `m` and `h` (as in Prometheus), e.g. `30s`, `10m`, `1m30s`. Zero is refused.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let bad = |why: &str| {
        anyhow::anyhow!("invalid duration {text:?}: {why} (use e.g. 500ms, 30s, 10m, 1h or 1m30s)")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| bad("number out of range"))?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        total = total.checked_add(part).ok_or_else(|| bad("too long"))?;
        rest = tail;
    }
    if total.is_zero() {
        return Err(bad("must be longer than zero"));
    }
    Ok(total)
}

/// Validates a user, organization or gateway id (`^[a-z0-9](?:[-]?[a-z0-9]){2,}$`, at most
/// 36 characters).
pub fn entity_id(id: &str) -> anyhow::Result<String> {
    let ok = (3..=36).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--");
    anyhow::ensure!(
        ok,
        "invalid id {id:?}: expected 3 to 36 lower-case letters, digits and single dashes"
    );
    Ok(id.to_owned())
}

/// An `http(s)://host[:port][/prefix]` base URL; a trailing `/api/v3` is dropped.
fn base_url(text: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(text.trim()).with_context(|| format!("invalid URL {text:?}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some(),
        "invalid URL {text:?}: expected http:// or https:// and a host"
    );
    anyhow::ensure!(
        url.query().is_none() && url.fragment().is_none() && url.username().is_empty(),
        "invalid URL {text:?}: no query, fragment or user info allowed"
    );
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/v3").unwrap_or(path).to_owned();
    url.set_path(&path);
    Ok(url)
}

/// The host of `[scheme://]host[:port]`, lower case.
fn address_host(address: &str) -> String {
    let rest = address.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    let rest = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else if rest.matches(':').count() == 1 {
        rest.split(':').next().unwrap_or_default()
    } else {
        rest
    };
    host.to_ascii_lowercase()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use argh::FromArgs;

    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::from_args(&["ttn-exporter"], args).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::from_flags(&flags(&[])).unwrap();
        assert_eq!(c.api_url.as_str(), "https://eu1.cloud.thethings.network/");
        assert_eq!(c.selection, Selection::List(ListScope::All));
        assert_eq!(c.stats_ttl, Duration::from_secs(30));
        assert_eq!(c.gateways_refresh, Duration::from_secs(600));
        assert_eq!(c.stats_max_stale, Duration::from_secs(300));
        assert!(!c.expose_location);
        let c =
            Config::from_flags(&flags(&["--stats-max-stale", "1h", "--expose-location"])).unwrap();
        assert_eq!((c.stats_max_stale, c.expose_location), (Duration::from_secs(3600), true));
        assert!(Config::from_flags(&flags(&["--stats-max-stale", "0s"])).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "30", "s", "0s", "-1s", "1.5s", "10 m", "1d", "30S"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
        let err = Config::from_flags(&flags(&["--stats-ttl", "soon"])).unwrap_err();
        assert!(format!("{err:#}").starts_with("--stats-ttl: invalid duration"), "{err:#}");
    }

    #[test]
    fn selections() {
        let c = Config::from_flags(&flags(&["--user", "alice"])).unwrap();
        assert_eq!(c.selection, Selection::List(ListScope::User("alice".into())));
        let c = Config::from_flags(&flags(&["--organization", "acme-org"])).unwrap();
        assert_eq!(c.selection, Selection::List(ListScope::Organization("acme-org".into())));
        let c = Config::from_flags(&flags(&[
            "--gateway",
            "gw-1",
            "--gateway",
            "gw-2",
            "--gateway",
            "gw-1",
        ]))
        .unwrap();
        assert_eq!(c.selection, Selection::Fixed(vec!["gw-1".into(), "gw-2".into()]));
        for bad in [
            &["--user", "a1b", "--organization", "c1d"][..],
            &["--user", "a1b", "--gateway", "gw-1"],
            &["--gateway", "GW_1"],
            &["--user", "x"],
            &["--api-url", "ftp://x"],
            &["--api-url", "eu1.cloud.thethings.network"],
            &["--cluster-url", "nam1.cloud.thethings.network"],
            &["--cluster-url", "nam1=not a url"],
        ] {
            assert!(Config::from_flags(&flags(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clusters_follow_the_server_address_but_only_to_trusted_hosts() {
        let c = Config::from_flags(&flags(&[
            "--api-url",
            "https://eu1.cloud.thethings.network/api/v3/",
            "--cluster-url",
            "AU1.cloud.thethings.network=http://127.0.0.1:9/",
        ]))
        .unwrap();
        assert_eq!(c.api_url.as_str(), "https://eu1.cloud.thethings.network/");
        let eu = c.cluster(Some("eu1.cloud.thethings.network"));
        assert_eq!(eu.host, "eu1.cloud.thethings.network");
        assert_eq!(eu.url.unwrap(), c.api_url);
        assert_eq!(c.cluster(None).host, "eu1.cloud.thethings.network");
        let nam = c.cluster(Some("wss://nam1.cloud.thethings.network:8887"));
        assert_eq!(nam.host, "nam1.cloud.thethings.network");
        assert_eq!(nam.url.unwrap().as_str(), "https://nam1.cloud.thethings.network/");
        let au = c.cluster(Some("au1.cloud.thethings.network"));
        assert_eq!(au.url.unwrap().as_str(), "http://127.0.0.1:9/");
        let evil = c.cluster(Some("evil.example.com"));
        assert!(evil.url.unwrap_err().contains("--cluster-url evil.example.com=URL"));
        let evil = c.cluster(Some("evil.cloud.thethings.network"));
        assert!(evil.url.is_err(), "not one of the built-in TTN clusters");
        assert_eq!(address_host("[::1]:1700"), "::1");

        // Self-hosted: no host from the API is trusted by its name alone.
        let c = Config::from_flags(&flags(&["--api-url", "https://eu1.tts.example.com"])).unwrap();
        assert!(c.cluster(Some("nam1.tts.example.com")).url.is_err());
        assert!(c.cluster(Some("nam1.cloud.thethings.network")).url.is_err());
        assert_eq!(c.cluster(Some("eu1.tts.example.com:1700")).url.unwrap(), c.api_url);
    }

    #[test]
    fn config_file_settings_and_flags_that_win() {
        let text = "api_url: https://tts.example.com/api/v3\n\
                    api_key_file: /etc/ttn-exporter/api-key\n\
                    organization: acme-org\n\
                    cluster_urls:\n  nam1.tts.example.com: https://nam1.tts.example.com\n\
                    stats_ttl: 1m\n\
                    stats_max_stale: 10m\n\
                    gateways_refresh: 15m\n\
                    expose_location: true\n\
                    gateway_labels:\n  gw-1: {site: north}\n";
        let file: FileConfig = exporter_core::config::parse_yaml("c.yml", text).unwrap();
        let merged = file.merge(&flags(&[]), &|_| false);
        let c = Config::from_flags(&merged).unwrap();
        assert_eq!(c.api_url.as_str(), "https://tts.example.com/");
        assert_eq!(c.selection, Selection::List(ListScope::Organization("acme-org".into())));
        assert_eq!(
            c.cluster_urls["nam1.tts.example.com"].as_str(),
            "https://nam1.tts.example.com/"
        );
        assert_eq!(c.stats_ttl, Duration::from_secs(60));
        assert_eq!(c.stats_max_stale, Duration::from_secs(600));
        assert_eq!(c.gateways_refresh, Duration::from_secs(900));
        assert!(c.expose_location);
        assert_eq!(merged.api_key_file.as_deref(), Some(Path::new("/etc/ttn-exporter/api-key")));
        assert_eq!(file.gateway_labels["gw-1"]["site"], "north");

        // Flags given explicitly win; --gateway replaces the file's selection.
        let cli = flags(&["--stats-ttl", "5s", "--gateway", "gw-9"]);
        let given = |f: &str| ["--stats-ttl", "--gateway"].contains(&f);
        let c = Config::from_flags(&file.merge(&cli, &given)).unwrap();
        assert_eq!(c.stats_ttl, Duration::from_secs(5));
        assert_eq!(c.selection, Selection::Fixed(vec!["gw-9".into()]));
        assert_eq!(c.gateways_refresh, Duration::from_secs(900), "from the file");

        for (bad, want) in [
            ("api_url: x\nstats_tll: 1m\n", "c.yml:2:1: stats_tll: unknown field `stats_tll`"),
            ("gateway_labels:\n  gw-1: {site: [a]}\n", "c.yml:2:"),
            ("cluster_urls: [a]\n", "c.yml:1:"),
        ] {
            let err = exporter_core::config::parse_yaml::<FileConfig>("c.yml", bad).unwrap_err();
            assert!(format!("{err:#}").starts_with(want), "{bad:?}: {err:#}");
        }
    }
}
