//! The running configuration: the target of the flags (`--target`, `--password-file`, …) and
//! the named targets of `--config-file`, each with its own address, credentials and labels.
//!
//! The rule this module keeps: a secret belongs to the address it was configured for.
//! [`Settings::access`] hands a password only to a probe of that address (by name, or by the
//! same address); every other address gets [`Access::adhoc`], without one.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use exporter_core::{
    Secret, TargetInfo,
    config::{self, Labels},
};
use serde::Deserialize;

use crate::{
    Address, Target,
    client::{Access, DEFAULT_VERIFICATION_KEY},
};

/// `--config-file`: the named targets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Name → the router's settings.
    #[serde(default)]
    pub targets: BTreeMap<String, Entry>,
}

/// One named router in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The router's address, as `--target`.
    pub address: String,
    /// The web UI user (default: `--username`).
    pub username: Option<String>,
    /// A file holding the web UI password.
    pub password_file: Option<PathBuf>,
    /// The web UI password itself (prefer `password_file`).
    pub password: Option<String>,
    /// `_TclRequestVerificationKey` (default: the public constant).
    pub verification_key: Option<String>,
    /// Identifiers as labels (default: `--expose-identifiers`).
    pub expose_identifiers: Option<bool>,
    /// Labels for service discovery (`/sd`).
    #[serde(default)]
    pub labels: Labels,
}

/// Where a target's password came from, for the landing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    File(PathBuf),
    Inline,
    /// `--password-file`, `LINKHUB_PASSWORD_FILE` or the systemd credential.
    Flags,
}

/// One configured router: the flags' target or a named entry.
#[derive(Clone)]
pub struct TargetSettings {
    /// The entry's name; `None` for the flags' target.
    pub name: Option<String>,
    pub address: Address,
    pub username: String,
    pub password: Option<Secret>,
    pub password_source: PasswordSource,
    pub verification_key: String,
    pub expose_identifiers: bool,
    pub labels: Labels,
}

impl fmt::Debug for TargetSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetSettings")
            .field("name", &self.name)
            .field("address", &self.address.to_string())
            .field("username", &self.username)
            .field("password", &self.password)
            .field("verification_key", &"<hidden>")
            .field("expose_identifiers", &self.expose_identifiers)
            .field("labels", &self.labels)
            .finish()
    }
}

impl TargetSettings {
    /// What the client may use on this router.
    pub fn access(&self) -> Access {
        Access {
            verification_key: self.verification_key.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            configured: true,
        }
    }

    /// The landing page's view: secrets as `<secret>`.
    pub fn info(&self, name: &str) -> TargetInfo {
        let password = match &self.password_source {
            PasswordSource::None => "none (reads only what needs no login)".to_owned(),
            PasswordSource::File(p) => format!("<secret> (file {})", p.display()),
            PasswordSource::Inline => "<secret> (in the config file)".to_owned(),
            PasswordSource::Flags => "<secret> (--password-file)".to_owned(),
        };
        let key = if self.verification_key == DEFAULT_VERIFICATION_KEY {
            "default (the public constant)"
        } else {
            "custom"
        };
        TargetInfo {
            name: name.to_owned(),
            settings: vec![
                ("address".to_owned(), self.address.to_string()),
                ("username".to_owned(), self.username.clone()),
                ("password".to_owned(), password),
                ("verification_key".to_owned(), key.to_owned()),
                ("expose_identifiers".to_owned(), self.expose_identifiers.to_string()),
            ],
            labels: self.labels.clone(),
        }
    }
}

/// The flags that describe the default target, kept to rebuild [`Settings`] on reload.
/// `Debug` hides the verification key.
#[derive(Clone)]
pub struct FlagTarget {
    pub address: Address,
    /// Whether `--target` (or `LINKHUB_TARGET`) was given rather than left at its default.
    pub address_given: bool,
    pub username: String,
    pub password_file: Option<PathBuf>,
    pub verification_key: String,
    pub expose_identifiers: bool,
}

impl fmt::Debug for FlagTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagTarget")
            .field("address", &self.address.to_string())
            .field("address_given", &self.address_given)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("verification_key", &"<hidden>")
            .field("expose_identifiers", &self.expose_identifiers)
            .finish()
    }
}

/// The configuration a probe works with, replaced as a whole on reload.
#[derive(Debug)]
pub struct Settings {
    /// The target of `/metrics`: the flags' router, unless only the config file names routers.
    pub default: Option<Arc<TargetSettings>>,
    /// The flags' router, which keeps its password even when it is not the default.
    pub flags: Arc<TargetSettings>,
    /// The config file's routers by name.
    pub named: BTreeMap<String, Arc<TargetSettings>>,
    /// `--expose-identifiers` for addresses that are not configured.
    pub adhoc_expose_identifiers: bool,
}

impl Settings {
    /// Reads the password file of the flags and, if given, the config file and every
    /// password file it names.
    pub fn load(flags: &FlagTarget, config_file: Option<&Path>) -> anyhow::Result<Settings> {
        let password =
            Secret::resolve(flags.password_file.as_deref(), None, Some("linkhub-password"))?;
        let flag_settings = Arc::new(TargetSettings {
            name: None,
            address: flags.address.clone(),
            username: flags.username.clone(),
            password_source: if password.is_some() {
                PasswordSource::Flags
            } else {
                PasswordSource::None
            },
            password,
            verification_key: flags.verification_key.clone(),
            expose_identifiers: flags.expose_identifiers,
            labels: Labels::new(),
        });
        let mut named = BTreeMap::new();
        if let Some(path) = config_file {
            let file: File = config::load_yaml(path)?;
            for (name, entry) in file.targets {
                let what = format!("{}: targets.{name}", path.display());
                let settings = entry_settings(&name, entry, flags).with_context(|| what.clone())?;
                named.insert(name, Arc::new(settings));
            }
        }
        // The flags' router is the default target unless the config file names routers and
        // --target was not given.
        let default = (named.is_empty() || flags.address_given || flags.password_file.is_some())
            .then(|| Arc::clone(&flag_settings));
        Ok(Settings {
            default,
            flags: flag_settings,
            named,
            adhoc_expose_identifiers: flags.expose_identifiers,
        })
    }

    /// The configured router a `?target=` value selects: a name, or the address of the
    /// flags' router or of a named entry (the entry of that address wins, by name order).
    pub fn lookup(&self, raw: &str) -> Option<Target> {
        let raw = raw.trim();
        if let Some(entry) = self.named.get(raw) {
            return Some(Target::named(raw, entry.address.clone()));
        }
        let address: Address = raw.parse().ok()?;
        if let Some((name, _)) = self.named.iter().find(|(_, e)| e.address == address) {
            return Some(Target::named(name, address));
        }
        (self.flags.address == address).then(|| Target::from(address))
    }

    /// The settings of `target`: its entry for a named target (an error when a reload removed
    /// it), the flags' router for its address, and `None` for any other address.
    pub fn settings(&self, target: &Target) -> anyhow::Result<Option<Arc<TargetSettings>>> {
        if let Some(name) = target.name() {
            let entry = self.named.get(name).with_context(|| {
                format!("target {name:?} is no longer in the config file (reloaded)")
            })?;
            return Ok(Some(Arc::clone(entry)));
        }
        if self.flags.address == *target.address() {
            return Ok(Some(Arc::clone(&self.flags)));
        }
        Ok(None)
    }
}

/// Validates one entry and reads its password.
fn entry_settings(name: &str, e: Entry, flags: &FlagTarget) -> anyhow::Result<TargetSettings> {
    exporter_core::config::validate_target_name(name)?;
    let address: Address = e.address.parse().context("address")?;
    let username = e.username.unwrap_or_else(|| flags.username.clone());
    anyhow::ensure!(
        !username.is_empty() && !username.chars().any(char::is_control),
        "username: must be non-empty"
    );
    let (password, password_source) = match (e.password_file, e.password) {
        (Some(_), Some(_)) => anyhow::bail!("give password_file or password, not both"),
        (Some(path), None) => {
            (Some(config::read_secret_file(&path)?), PasswordSource::File(path.clone()))
        }
        (None, Some(p)) => {
            anyhow::ensure!(!p.is_empty(), "password: empty");
            (Some(Secret::new(p)), PasswordSource::Inline)
        }
        (None, None) => (None, PasswordSource::None),
    };
    let verification_key = match e.verification_key {
        Some(key) => check_key(&key).context("verification_key")?,
        None => DEFAULT_VERIFICATION_KEY.to_owned(),
    };
    config::validate_labels("labels", &e.labels)?;
    Ok(TargetSettings {
        name: Some(name.to_owned()),
        address,
        username,
        password,
        password_source,
        verification_key,
        expose_identifiers: e.expose_identifiers.unwrap_or(flags.expose_identifiers),
        labels: e.labels,
    })
}

/// A verification key: non-empty printable ASCII (it goes into a header).
pub fn check_key(key: &str) -> anyhow::Result<String> {
    let key = key.trim();
    anyhow::ensure!(
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()),
        "the verification key must be non-empty printable ASCII"
    );
    Ok(key.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn flags() -> FlagTarget {
        FlagTarget {
            address: "192.168.1.1".parse().unwrap(),
            address_given: false,
            username: "admin".to_owned(),
            password_file: None,
            verification_key: DEFAULT_VERIFICATION_KEY.to_owned(),
            expose_identifiers: false,
        }
    }

    /// A temporary config file, removed when the guard drops.
    fn write(name: &str, text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .prefix(&format!("linkhub-config-{name}-"))
            .suffix(".yml")
            .tempfile()
            .unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn entries_are_looked_up_by_name_and_address() {
        let file = write(
            "lookup",
            "targets:\n  home:\n    address: 10.0.0.1\n    password: pw1\n    labels: {site: a}\n  \
             mifi:\n    address: http://10.0.0.2:8080\n    username: user\n    expose_identifiers: true\n",
        );
        let s = Settings::load(&flags(), Some(file.path())).unwrap();
        assert!(s.default.is_none(), "only the file names routers: no default");
        assert_eq!(s.lookup("home").unwrap().to_string(), "home");
        assert_eq!(s.lookup("http://10.0.0.1").unwrap().to_string(), "home");
        assert_eq!(s.lookup("10.0.0.2:8080").unwrap().to_string(), "mifi");
        assert!(s.lookup("10.0.0.3").is_none());
        let home = s.settings(&s.lookup("home").unwrap()).unwrap().unwrap();
        assert_eq!(home.password.as_ref().map(Secret::expose), Some("pw1"));
        let mifi = s.settings(&"10.0.0.2:8080".parse().unwrap()).unwrap();
        assert!(mifi.is_none(), "an address is not a name: resolve it with lookup first");
        let other: Target = "10.0.0.9".parse().unwrap();
        assert!(s.settings(&other).unwrap().is_none());
        let gone = Target::named("attic", "10.0.0.5".parse().unwrap());
        assert!(s.settings(&gone).unwrap_err().to_string().contains("no longer"));
        let debug = format!("{s:?}");
        assert!(!debug.contains("pw1"), "{debug}");
    }

    #[test]
    fn bad_entries_name_the_file_and_key() {
        for (text, want) in [
            ("targets:\n  a:\n    adress: x\n", "unknown field `adress`"),
            ("targets:\n  a:\n    address: ftp://x\n", "address"),
            (
                "targets:\n  a:\n    address: x\n    password: p\n    password_file: /f\n",
                "not both",
            ),
            (
                "targets:\n  a:\n    address: x\n    password_file: /nonexistent/pw\n",
                "/nonexistent/pw",
            ),
            ("targets:\n  'a b':\n    address: x\n", "invalid target name"),
            ("targets:\n  a:\n    address: x\n    labels: {__x: y}\n", "reserved"),
        ] {
            let file = write("bad", text);
            let err = format!("{:#}", Settings::load(&flags(), Some(file.path())).unwrap_err());
            assert!(err.contains(&file.path().display().to_string()), "{text}: {err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
