//! `--probe-allow`: which addresses `/probe?target=` may reach besides the configured
//! targets. Entries are networks (`192.168.1.0/24`, `fd00::/8`), single addresses, host
//! names (`router.lan`) and domains (`*.lan`).
//!
//! The check runs twice: [`ProbeAllow::check`] before a probe starts (a refusal is a 403),
//! and again in the DNS resolver of [`crate::client::http_client_restricted`], on the
//! addresses the client is about to connect to, so a name that resolved inside an allowed
//! network when checked and elsewhere when connecting is still refused.

use std::{fmt, net::IpAddr, net::SocketAddr, str::FromStr, sync::Arc};

use ipnet::IpNet;

/// The parsed `--probe-allow` list. Empty means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeAllow {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Net(IpNet),
    Host(String),
    /// `*.lan` is stored as `.lan`.
    Domain(String),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Net(net) => write!(f, "{net}"),
            Entry::Host(host) => f.write_str(host),
            Entry::Domain(suffix) => write!(f, "*{suffix}"),
        }
    }
}

impl ProbeAllow {
    /// Parses the values of a repeatable `--probe-allow` flag.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> anyhow::Result<ProbeAllow> {
        let entries = values
            .iter()
            .map(|v| parse_entry(v.as_ref()))
            .collect::<anyhow::Result<Vec<Entry>>>()?;
        Ok(ProbeAllow { entries })
    }

    /// Whether no entries were given (ad-hoc targets are not restricted).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as given (normalised), for the landing page and messages.
    pub fn describe(&self) -> String {
        self.entries.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    /// Checks a target's host (a name, an IPv4 address, or an IPv6 address with or without
    /// brackets) before probing it. A name that no entry names is resolved and allowed when
    /// one of its addresses is in an allowed network; the client later connects only to such
    /// addresses. `Err` is the message for the 403 answer.
    pub async fn check(&self, host: &str) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        let host = normalise(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if self.allows_ip(ip) {
                Ok(())
            } else {
                Err(format!("{ip} is not in --probe-allow ({})", self.describe()))
            };
        }
        if self.allows_name(&host) {
            return Ok(());
        }
        if !self.entries.iter().any(|e| matches!(e, Entry::Net(_))) {
            return Err(format!("{host} is not in --probe-allow ({})", self.describe()));
        }
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
            Ok(addrs) => addrs.collect(),
            Err(err) => {
                return Err(format!(
                    "{host} cannot be resolved ({err}), so it cannot be checked against \
                     --probe-allow"
                ));
            }
        };
        if addrs.iter().any(|a| self.allows_ip(a.ip())) {
            Ok(())
        } else {
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            Err(format!(
                "{host} resolves to {}, outside --probe-allow ({})",
                list.join(", "),
                self.describe()
            ))
        }
    }

    /// Whether an address is in one of the allowed networks.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.entries.iter().any(|e| matches!(e, Entry::Net(net) if net.contains(&ip)))
    }

    /// Whether a host name is allowed by name (`router.lan`, or a name under `*.lan`).
    pub fn allows_name(&self, host: &str) -> bool {
        let host = normalise(host);
        self.entries.iter().any(|e| match e {
            Entry::Host(name) => *name == host,
            Entry::Domain(suffix) => host.ends_with(suffix.as_str()) && host.len() > suffix.len(),
            Entry::Net(_) => false,
        })
    }
}

/// A reqwest DNS resolver that hands the client only addresses the list allows.
#[derive(Debug)]
pub(crate) struct AllowResolver {
    pub(crate) allow: Arc<ProbeAllow>,
}

impl reqwest::dns::Resolve for AllowResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            if allow.is_empty() || allow.allows_name(&host) {
                return Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs);
            }
            let allowed: Vec<SocketAddr> =
                addrs.iter().copied().filter(|a| allow.allows_ip(a.ip())).collect();
            if allowed.is_empty() {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "refused by --probe-allow: {host} resolves to {}, outside {}",
                    list.join(", "),
                    allow.describe()
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn normalise(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn parse_entry(value: &str) -> anyhow::Result<Entry> {
    let v = value.trim();
    let bad = |why: &str| anyhow::anyhow!("invalid --probe-allow {value:?}: {why}");
    if v.is_empty() {
        return Err(bad("empty"));
    }
    if v.contains('/') {
        let net = IpNet::from_str(v).map_err(|_| bad("not a network like 192.168.1.0/24"))?;
        return Ok(Entry::Net(net.trunc()));
    }
    let unbracketed = v.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Entry::Net(IpNet::from(ip.to_canonical())));
    }
    let (domain, name) = match v.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let name = normalise(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(bad("expected a network (10.0.0.0/8), an address, a host name or *.domain"));
    }
    Ok(if domain { Entry::Domain(format!(".{name}")) } else { Entry::Host(name) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_match() {
        let allow = ProbeAllow::parse(&[
            "192.168.1.0/24",
            "10.1.2.3",
            "fd00::/8",
            "Router.LAN",
            "*.home.arpa",
        ])
        .unwrap();
        assert_eq!(
            allow.describe(),
            "192.168.1.0/24, 10.1.2.3/32, fd00::/8, router.lan, *.home.arpa"
        );
        for ip in ["192.168.1.77", "10.1.2.3", "fd00::1", "::ffff:192.168.1.9"] {
            assert!(allow.allows_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.168.2.1", "10.1.2.4", "fe80::1", "127.0.0.1"] {
            assert!(!allow.allows_ip(ip.parse().unwrap()), "{ip}");
        }
        assert!(allow.allows_name("router.lan"));
        assert!(allow.allows_name("ROUTER.lan."));
        assert!(allow.allows_name("hub.home.arpa"));
        assert!(!allow.allows_name("home.arpa"));
        assert!(!allow.allows_name("evilhome.arpa"));
        assert!(!allow.allows_name("router.lan.evil.com"));
    }

    #[test]
    fn bad_entries_are_named() {
        for v in ["", "10.0.0.0/33", "a b", "*.", "http://x", "-x.lan", "1.2.3.4/x"] {
            let err = ProbeAllow::parse(&[v]).unwrap_err().to_string();
            assert!(err.contains("--probe-allow"), "{v}: {err}");
        }
    }

    #[tokio::test]
    async fn check_uses_addresses_and_names() {
        let allow = ProbeAllow::parse(&["127.0.0.0/8", "box.invalid"]).unwrap();
        assert_eq!(allow.check("127.0.0.9").await, Ok(()));
        assert_eq!(allow.check("localhost").await, Ok(()), "resolves into 127/8");
        assert_eq!(allow.check("box.invalid").await, Ok(()), "allowed by name");
        let err = allow.check("192.0.2.1").await.unwrap_err();
        assert!(err.contains("192.0.2.1 is not in --probe-allow"), "{err}");
        let err = allow.check("[::1]").await.unwrap_err();
        assert!(err.contains("::1"), "{err}");
        let err = allow.check("other.invalid").await.unwrap_err();
        assert!(err.contains("cannot be resolved"), "{err}");
        let names_only = ProbeAllow::parse(&["*.lan"]).unwrap();
        assert!(names_only.check("localhost").await.is_err());
        assert_eq!(ProbeAllow::default().check("anything").await, Ok(()));
    }
}
