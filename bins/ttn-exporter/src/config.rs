//! The exporter's flags validated into a [`Config`]: URLs, ids, durations and the cluster
//! map. Nothing after this step sees a flag string.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::Context;
use reqwest::Url;

use crate::{Flags, client::ListScope};

/// Which gateways the exporter watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every gateway the list call returns.
    List(ListScope),
    /// Exactly these ids (`--gateway`), for keys that cannot list.
    Fixed(Vec<String>),
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the Identity Server (no `/api/v3`).
    pub api_url: Url,
    pub selection: Selection,
    /// `--cluster-url` overrides by lower-case host.
    pub cluster_urls: BTreeMap<String, Url>,
    pub stats_ttl: Duration,
    pub gateways_refresh: Duration,
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
        Ok(Config {
            api_url,
            selection,
            cluster_urls,
            stats_ttl,
            gateways_refresh,
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
    /// The API key is only ever sent to `--api-url`, to `--cluster-url` entries and to
    /// siblings of the API host (`nam1.cloud.thethings.network` next to
    /// `eu1.cloud.thethings.network`), over HTTPS: the address is editable by any
    /// collaborator of the gateway and must not be able to send the key elsewhere.
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
        let url = if siblings(&host, &api_host) {
            Url::parse(&format!("https://{host}")).map_err(|e| format!("host {host:?}: {e}"))
        } else {
            Err(format!(
                "gateway server address {host:?} is neither the API host nor one of its sibling \
                 clusters: add --cluster-url {host}=URL to fetch its statistics"
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

/// Whether two DNS names differ only in their first label (`eu1.x.y` and `nam1.x.y`).
fn siblings(a: &str, b: &str) -> bool {
    if a.parse::<IpAddr>().is_ok() || b.parse::<IpAddr>().is_ok() {
        return false;
    }
    match (a.split_once('.'), b.split_once('.')) {
        (Some((_, pa)), Some((_, pb))) => pa == pb && pa.contains('.'),
        _ => false,
    }
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
        assert_eq!(address_host("[::1]:1700"), "::1");
        assert!(!siblings("10.0.0.1", "10.0.0.2"));
        assert!(!siblings("a.com", "b.com"));
    }
}
