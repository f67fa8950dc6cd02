//! Which hub a scrape is about: named hubs from `--config-file`, the `--target` of the flags,
//! and ad-hoc addresses from `/probe?target=`, each with its LAN device settings.
//!
//! The file is YAML with one key, `targets`, a map from a name to `address`, `lan_devices`,
//! `lan_devices_max` and `labels`; every key but `labels` is also a flag (`--target`,
//! `--lan-devices`, `--lan-devices-max`), whose value is the default for the keys an entry
//! leaves out. Unknown keys are errors that name the file, line, column and key.

use std::{collections::BTreeMap, fmt, path::Path, str::FromStr};

use anyhow::{Context as _, bail};
use exporter_core::config::{self, Labels};
use serde::{Deserialize, Deserializer};

use crate::{LanDevices, client::HubUrl, metrics::LanSelection};

/// The LAN device settings a target inherits from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanDefaults {
    pub mode: LanDevices,
    pub max: usize,
}

impl LanDefaults {
    /// The render selection, `None` for `none`.
    pub fn selection(self) -> Option<LanSelection> {
        self.mode.selection(self.max)
    }
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub targets: BTreeMap<String, Entry>,
}

/// One entry of `targets:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The hub's base URL (`--target`).
    pub address: HubUrl,
    /// `active`, `all` or `none` (`--lan-devices`).
    pub lan_devices: Option<LanDevices>,
    /// `--lan-devices-max`.
    pub lan_devices_max: Option<usize>,
    /// Target labels, for `/sd`.
    #[serde(default)]
    pub labels: Labels,
}

/// A named hub, with the flags' defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub name: String,
    pub url: HubUrl,
    pub lan: LanDefaults,
    pub labels: Labels,
}

/// The named hubs of the config file, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    pub named: BTreeMap<String, Named>,
}

impl Targets {
    /// Reads and checks `path`; entries inherit `defaults` for the keys they leave out.
    pub fn load(path: &Path, defaults: LanDefaults) -> anyhow::Result<Targets> {
        let file: File = config::load_yaml(path)?;
        Targets::from_file(file, defaults).with_context(|| format!("{}", path.display()))
    }

    /// Checks a parsed file: names usable as `?target=` values, labels, one entry per address.
    pub fn from_file(file: File, defaults: LanDefaults) -> anyhow::Result<Targets> {
        let mut named = BTreeMap::new();
        let mut by_address: BTreeMap<String, String> = BTreeMap::new();
        for (name, entry) in file.targets {
            config::validate_target_name(&name)?;
            config::validate_labels(&format!("targets.{name}.labels"), &entry.labels)?;
            if let Some(other) = by_address.insert(entry.address.to_string(), name.clone()) {
                bail!(
                    "targets.{name}: the address {} is already the address of targets.{other}; \
                     /probe?target=<address> must name one entry",
                    entry.address
                );
            }
            let lan = LanDefaults {
                mode: entry.lan_devices.unwrap_or(defaults.mode),
                max: entry.lan_devices_max.unwrap_or(defaults.max),
            };
            named.insert(
                name.clone(),
                Named { name, url: entry.address, lan, labels: entry.labels },
            );
        }
        Ok(Targets { named })
    }

    /// The entry whose address is `url`.
    pub fn by_address(&self, url: &HubUrl) -> Option<&Named> {
        self.named.values().find(|n| n.url == *url)
    }
}

/// What one scrape is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The entry's name for a named hub; its address otherwise. The single-flight key and
    /// the `target` of log lines.
    pub key: String,
    pub url: HubUrl,
    /// `None` with `lan_devices: none`.
    pub lan: Option<LanSelection>,
    /// An address from `/probe?target=` that no entry and no flag names: fetched with the
    /// client that honours `--probe-allow`.
    pub adhoc: bool,
}

impl Target {
    /// A named hub.
    pub fn named(n: &Named) -> Target {
        Target { key: n.name.clone(), url: n.url.clone(), lan: n.lan.selection(), adhoc: false }
    }

    /// A hub configured by address (`--target`), or an ad-hoc one, with `lan`.
    pub fn address(url: HubUrl, lan: LanDefaults, adhoc: bool) -> Target {
        Target { key: url.to_string(), url, lan: lan.selection(), adhoc }
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;

    /// An address with the default LAN settings (the exporter resolves `?target=` itself).
    fn from_str(s: &str) -> anyhow::Result<Target> {
        let defaults =
            LanDefaults { mode: LanDevices::Active, max: crate::metrics::DEFAULT_LAN_DEVICES_MAX };
        Ok(Target::address(s.parse()?, defaults, true))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl<'de> Deserialize<'de> for HubUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HubUrl, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(format!("{e:#}")))
    }
}

impl<'de> Deserialize<'de> for LanDevices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LanDevices, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DEFAULTS: LanDefaults = LanDefaults { mode: LanDevices::Active, max: 256 };

    fn parse(text: &str) -> anyhow::Result<Targets> {
        let file: File = config::parse_yaml("config.yml", text)?;
        Targets::from_file(file, DEFAULTS)
    }

    #[test]
    fn entries_inherit_the_flags() {
        let t = parse(
            "targets:\n  home:\n    address: 192.168.1.254\n    labels: {site: home}\n  \
             shop:\n    address: http://10.0.0.1:8080\n    lan_devices: all\n    lan_devices_max: 10\n",
        )
        .unwrap();
        let home = &t.named["home"];
        assert_eq!((home.url.as_str(), home.lan), ("http://192.168.1.254", DEFAULTS));
        assert_eq!(home.labels["site"], "home");
        assert_eq!(t.named["shop"].lan, LanDefaults { mode: LanDevices::All, max: 10 });
        let url: HubUrl = "http://10.0.0.1:8080/".parse().unwrap();
        assert_eq!(t.by_address(&url).unwrap().name, "shop");
        assert_eq!(parse("").unwrap(), Targets::default());
    }

    #[test]
    fn bad_files_name_line_and_key() {
        for (text, expect) in [
            ("targets:\n  home:\n    adress: http://x\n", "config.yml:3:5: targets.home.adress"),
            ("targets:\n  home:\n    adress: http://x\n", "unknown field `adress`"),
            ("targets:\n  home:\n    address: ftp://x\n", "config.yml:3:5: targets.home.address"),
            ("targets:\n  home:\n    address: ftp://x\n", "hub address \"ftp://x\" must use http"),
            (
                "targets:\n  home:\n    address: x\n    lan_devices: some\n",
                "targets.home.lan_devices",
            ),
            ("target:\n  home: {}\n", "unknown field `target`"),
            ("targets:\n  home:\n    address: x\n    labels: {__x: y}\n", "targets.home.labels"),
            (
                "targets:\n  a:\n    address: x\n  b:\n    address: http://x/\n",
                "already the address of targets.a",
            ),
            ("targets:\n  'a b':\n    address: x\n", "invalid target name"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(expect), "{text:?}: {err}");
        }
    }
}
