//! The `--config-file` (YAML): every setting that is also a flag, plus `modem_labels`
//! (device id → target labels for `/sd`).
//!
//! A flag given on the command line or by its `MM_*` environment variable wins over the file;
//! the file wins over a flag's default. Unknown keys are errors naming the file, line, column
//! and key. A reload re-reads the file: labels, `signal_rate`, `expose_identifiers` and
//! `expose_location` change at once; `bus_address` needs a restart (a reload that changes it
//! logs a warning and keeps the connection it has).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use exporter_core::config::{self, Labels};

use crate::{Flags, Target, metrics::RenderOptions, statics::Ttl};

/// The file's format; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// As `--bus-address`.
    pub bus_address: Option<String>,
    /// As `--signal-rate`.
    pub signal_rate: Option<u32>,
    /// As `--expose-identifiers`.
    pub expose_identifiers: Option<bool>,
    /// As `--expose-location`.
    pub expose_location: Option<bool>,
    /// As `--static-ttl` (`10m`, `1h`, `30s`, `0s`).
    pub static_ttl: Option<String>,
    /// Target labels per modem device id (`DeviceIdentifier`, or `<id>-2` for a second
    /// identical modem), served with that modem's target on `/sd`.
    #[serde(default)]
    pub modem_labels: BTreeMap<String, Labels>,
}

/// The flags of [`Flags`] the file can also set, by long name.
pub const FILE_FLAGS: &[&str] = &[
    "--bus-address",
    "--signal-rate",
    "--expose-identifiers",
    "--expose-location",
    "--static-ttl",
];

/// Where the running settings come from: the parsed flags, which of them were given
/// explicitly, and the config file (if any).
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub flags: Flags,
    /// Long names (`--signal-rate`) of the flags given on the command line or by environment.
    pub explicit: Vec<String>,
    pub file: Option<PathBuf>,
}

/// The effective settings: flags and file merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub bus_address: Option<String>,
    pub signal_rate: u32,
    /// How long SIM properties are cached.
    pub static_ttl: std::time::Duration,
    pub render: RenderOptions,
    pub modem_labels: BTreeMap<String, Labels>,
    /// `(flag, value with its source)` for the landing page.
    pub described: Vec<(String, String)>,
}

impl Source {
    /// Flags only, every one of them counted as given (no file): what tests and
    /// [`crate::ModemManager::new`] use.
    pub fn flags_only(flags: Flags) -> Source {
        Source { flags, explicit: FILE_FLAGS.iter().map(|f| (*f).to_owned()).collect(), file: None }
    }

    /// The settings from the flags alone (no file is read).
    pub fn merge_flags_only(&self) -> Settings {
        self.merge(File::default())
    }

    /// Reads the file (when there is one) and merges it with the flags.
    pub fn load(&self) -> anyhow::Result<Settings> {
        let file = match &self.file {
            Some(path) => read(path)?,
            None => File::default(),
        };
        Ok(self.merge(file))
    }

    fn explicit(&self, flag: &str) -> bool {
        self.explicit.iter().any(|f| f == flag)
    }

    /// The flag's value when it was given explicitly or the file lacks the key, else the
    /// file's value; plus the landing page's description of where it came from.
    fn pick<T: Clone + std::fmt::Debug>(
        &self,
        flag: &str,
        from_flag: T,
        from_file: Option<T>,
        described: &mut Vec<(String, String)>,
        show: impl Fn(&T) -> String,
    ) -> T {
        match from_file {
            Some(v) if !self.explicit(flag) => {
                let file = self.file.as_deref().map(Path::display).map(|p| p.to_string());
                described.push((
                    flag.to_owned(),
                    format!("{} (config file {})", show(&v), file.unwrap_or_default()),
                ));
                v
            }
            _ => from_flag,
        }
    }

    fn merge(&self, file: File) -> Settings {
        let mut described = Vec::new();
        let f = &self.flags;
        let bus_address = self.pick(
            "--bus-address",
            f.bus_address.clone(),
            file.bus_address.map(Some),
            &mut described,
            |v| v.clone().unwrap_or_default(),
        );
        let signal_rate = self.pick(
            "--signal-rate",
            f.signal_rate,
            file.signal_rate,
            &mut described,
            u32::to_string,
        );
        let expose_identifiers = self.pick(
            "--expose-identifiers",
            f.expose_identifiers,
            file.expose_identifiers,
            &mut described,
            bool::to_string,
        );
        let expose_location = self.pick(
            "--expose-location",
            f.expose_location,
            file.expose_location,
            &mut described,
            bool::to_string,
        );
        let static_ttl = self.pick(
            "--static-ttl",
            f.static_ttl,
            file.static_ttl.and_then(|t| t.parse::<Ttl>().ok()),
            &mut described,
            Ttl::to_string,
        );
        Settings {
            bus_address,
            signal_rate,
            static_ttl: static_ttl.0,
            render: RenderOptions { expose_identifiers, expose_location },
            modem_labels: file.modem_labels,
            described,
        }
    }
}

/// Parses and checks the config file at `path`.
pub fn read(path: &Path) -> anyhow::Result<File> {
    let file: File = config::load_yaml(path)?;
    check(path, &file)?;
    Ok(file)
}

/// Parses and checks config `text`; `name` stands for the file in errors.
pub fn parse(name: &str, text: &str) -> anyhow::Result<File> {
    let file: File = config::parse_yaml(name, text)?;
    check(Path::new(name), &file)?;
    Ok(file)
}

fn check(path: &Path, file: &File) -> anyhow::Result<()> {
    let name = path.display();
    if let Some(address) = &file.bus_address {
        anyhow::ensure!(
            !address.trim().is_empty(),
            "{name}: bus_address: empty (leave the key out for the system bus)"
        );
    }
    if let Some(ttl) = &file.static_ttl {
        ttl.parse::<Ttl>().map_err(|e| anyhow::anyhow!("{name}: static_ttl: {e:#}"))?;
    }
    for (id, labels) in &file.modem_labels {
        match id.parse::<Target>() {
            Ok(Target::Device(parsed)) if parsed == *id => {}
            _ => anyhow::bail!(
                "{name}: modem_labels: {id:?} is not a modem device id (ModemManager's DeviceIdentifier: printable ASCII without spaces, at most 256 characters)"
            ),
        }
        config::validate_labels(&format!("{name}: modem_labels.{id}"), labels)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn source(explicit: &[&str], file: &str) -> (Source, anyhow::Result<File>) {
        let flags = Flags { signal_rate: 10, ..Flags::default() };
        let src = Source {
            flags,
            explicit: explicit.iter().map(|f| (*f).to_owned()).collect(),
            file: Some(PathBuf::from("/etc/mm-exporter/config.yml")),
        };
        (src, parse("/etc/mm-exporter/config.yml", file))
    }

    #[test]
    fn the_file_wins_over_defaults_and_explicit_flags_win_over_the_file() {
        let text = "signal_rate: 30\nexpose_identifiers: true\nbus_address: unix:path=/x\n";
        let (src, file) = source(&["--signal-rate"], text);
        let s = src.merge(file.unwrap());
        assert_eq!(s.signal_rate, 10, "the explicit flag wins");
        assert!(s.render.expose_identifiers, "the file wins over the switch's default");
        assert!(!s.render.expose_location);
        assert_eq!(s.bus_address.as_deref(), Some("unix:path=/x"));
        assert!(
            s.described.iter().any(|(k, v)| k == "--expose-identifiers"
                && v == "true (config file /etc/mm-exporter/config.yml)"),
            "{:?}",
            s.described
        );
    }

    #[test]
    fn an_empty_file_changes_nothing() {
        let (src, file) = source(&[], "");
        let s = src.merge(file.unwrap());
        assert_eq!(s.signal_rate, 10);
        assert!(s.modem_labels.is_empty() && s.described.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_file_line_and_key() {
        let (_, file) = source(&[], "signal_rate: 10\nsignal_rates: 5\n");
        let err = format!("{:#}", file.unwrap_err());
        assert!(err.starts_with("/etc/mm-exporter/config.yml:2:"), "{err}");
        assert!(err.contains("unknown field `signal_rates`"), "{err}");

        let (_, file) = source(&[], "modem_labels:\n  abc:\n    site: x\n    sitee: [1]\n");
        let err = format!("{:#}", file.unwrap_err());
        assert!(err.contains(":4:") && err.contains("modem_labels.abc.sitee"), "{err}");

        let (_, file) = source(&[], "signal_rate: -1\n");
        let err = format!("{:#}", file.unwrap_err());
        assert!(err.contains(":1:") && err.contains("signal_rate"), "{err}");

        let (_, file) = source(&[], "modem_labels:\n  abc:\n    __bad: x\n");
        let err = format!("{:#}", file.unwrap_err());
        assert!(err.contains("modem_labels.abc") && err.contains("reserved"), "{err}");

        let (_, file) = source(&[], "modem_labels:\n  \"has space\":\n    site: x\n");
        let err = format!("{:#}", file.unwrap_err());
        assert!(err.contains("not a modem device id"), "{err}");
    }
}
