//! The `--target` / `?target=` value: which box to talk to ([`Address`]), and under which
//! configured name, if any ([`Target`]).

use std::{fmt, str::FromStr};

use anyhow::Context as _;
use reqwest::Url;

/// What a probe is about: a router's address, and the name of the config-file entry it was
/// selected by, if any.
///
/// It prints as the name for a named target and as the address otherwise: that text is the
/// single-flight key and the `target` in logs. Parsing (`--target`, and `?target=` before
/// [`crate::Linkhub`] looks up names) reads an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    address: Address,
    name: Option<String>,
}

impl Target {
    /// The router's default LAN address.
    pub fn default_box() -> Target {
        Target::from(Address::default_box())
    }

    /// The target of config-file entry `name` at `address`.
    pub fn named(name: &str, address: Address) -> Target {
        Target { address, name: Some(name.to_owned()) }
    }

    /// The router's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The config-file entry's name, for a named target.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The JSON-RPC endpoint, `<base>/jrd/webapi`.
    pub fn endpoint(&self) -> String {
        self.address.endpoint()
    }

    /// The `Referer` the web UI would send, `<base>/index.html`.
    pub fn referer(&self) -> String {
        self.address.referer()
    }
}

impl From<Address> for Target {
    fn from(address: Address) -> Target {
        Target { address, name: None }
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Target> {
        s.parse::<Address>().map(Target::from)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => f.write_str(name),
            None => self.address.fmt(f),
        }
    }
}

/// A LinkHub's address: `http://192.168.1.1`, `192.168.1.1`, `router.lan:8080` or
/// `http://[fd00::1]`. Only a scheme (`http`, or `https` behind a proxy), a host and a port;
/// no user, path, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// `http://host[:port]`, without a trailing slash.
    base: String,
    /// The host as in the URL (IPv6 in brackets).
    host: String,
}

impl Address {
    /// The router's default LAN address.
    pub fn default_box() -> Address {
        Address { base: "http://192.168.1.1".to_owned(), host: "192.168.1.1".to_owned() }
    }

    /// The host part (a name, an IPv4 address, or an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The JSON-RPC endpoint, `<base>/jrd/webapi`.
    pub fn endpoint(&self) -> String {
        format!("{}/jrd/webapi", self.base)
    }

    /// The `Referer` the web UI would send, `<base>/index.html`.
    pub fn referer(&self) -> String {
        format!("{}/index.html", self.base)
    }
}

impl FromStr for Address {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Address> {
        let s = s.trim();
        anyhow::ensure!(
            !s.is_empty(),
            "empty target: expected a router address like http://192.168.1.1"
        );
        anyhow::ensure!(
            s.len() <= 300 && !s.chars().any(|c| c.is_control() || c.is_whitespace()),
            "invalid target: expected a router address like http://192.168.1.1"
        );
        let with_scheme = if s.contains("://") { s.to_owned() } else { format!("http://{s}") };
        let url = Url::parse(&with_scheme)
            .with_context(|| format!("invalid target {s:?}: expected http://host[:port]"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "invalid target {s:?}: scheme {:?} is not http or https",
            url.scheme()
        );
        anyhow::ensure!(
            url.username().is_empty() && url.password().is_none(),
            "invalid target: credentials do not belong in the address (use --password-file)"
        );
        anyhow::ensure!(
            url.path() == "/" && url.query().is_none() && url.fragment().is_none(),
            "invalid target {s:?}: expected only a host and port, without a path or query"
        );
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .with_context(|| format!("invalid target {s:?}: no host"))?;
        let base = match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        // International names grow when normalised to punycode: bound the result as well,
        // so that every target prints as an address that parses again.
        anyhow::ensure!(
            base.len() <= 300,
            "invalid target: expected a router address like http://192.168.1.1"
        );
        let host = host.to_owned();
        Ok(Address { base, host })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_spellings() {
        for (input, base) in [
            ("http://192.168.1.1", "http://192.168.1.1"),
            ("192.168.1.1", "http://192.168.1.1"),
            ("http://192.168.1.1/", "http://192.168.1.1"),
            ("router.lan:8080", "http://router.lan:8080"),
            ("127.0.0.1:34567", "http://127.0.0.1:34567"),
            ("http://[::1]:80", "http://[::1]"),
            ("[fd00::1]:8080", "http://[fd00::1]:8080"),
            ("https://box.example", "https://box.example"),
        ] {
            let t: Target = input.parse().unwrap();
            assert_eq!(t.to_string(), base, "{input}");
        }
        let t: Target = "192.168.1.1".parse().unwrap();
        assert_eq!(t.endpoint(), "http://192.168.1.1/jrd/webapi");
        assert_eq!(t.referer(), "http://192.168.1.1/index.html");
    }

    #[test]
    fn rejects_garbage_with_a_clear_error() {
        for input in [
            "",
            "   ",
            "ftp://192.168.1.1",
            "http://user:pw@192.168.1.1",
            "http://192.168.1.1/jrd/webapi",
            "http://192.168.1.1?x=1",
            "http://",
            "192.168.1.1:99999",
            "a b",
            "http://exa mple",
            "\u{0}",
        ] {
            let err = input.parse::<Target>().unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("target"), "{input:?}: {text}");
            assert!(!text.contains("pw@"), "{text}");
        }
        // Short enough as typed, too long as punycode (found by the http_request fuzz target).
        let idn = format!("{}x", "\u{fc}.".repeat(99));
        assert!(idn.len() <= 300 && idn.parse::<Target>().is_err());
    }
}
