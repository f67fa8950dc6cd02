//! The pieces every exporter's `--config-file` is built from: YAML parsed into the
//! exporter's own types with errors that name the file, line, column and key; secret files
//! named in it; target labels; and [`Live`], the running configuration that a reload
//! replaces while scrapes in flight keep the one they started with.
//!
//! Each exporter owns its file format (a serde type with `#[serde(deny_unknown_fields)]`, so
//! an unknown key is an error) and its `reload`; the core calls `reload` on SIGHUP and
//! `POST /-/reload` and reports the outcome in `<ns>_exporter_config_last_reload_*`.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, RwLock},
};

use anyhow::Context as _;
use serde::de::DeserializeOwned;

use crate::Secret;

/// Target labels from a config file (`labels:`), passed to Prometheus through `/sd`.
pub type Labels = BTreeMap<String, String>;

/// The largest config file read (a file of many targets is a few KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads `path` and parses it as YAML into `T`.
///
/// Errors name the file, the line and column, and the key path, for example
/// `/etc/x/config.yml:7:5: targets.home.adress: unknown field `adress`, expected one of …`.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= MAX_CONFIG_BYTES,
        "config file {} is larger than {} bytes",
        path.display(),
        MAX_CONFIG_BYTES
    );
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse_yaml(&path.display().to_string(), &text)
}

/// [`load_yaml`] on text already in memory; `name` stands for the file in errors.
pub fn parse_yaml<T: DeserializeOwned>(name: &str, text: &str) -> anyhow::Result<T> {
    // An empty file is an empty mapping, not an error: every key is optional.
    let text = if text.trim().is_empty() { "{}" } else { text };
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let location =
            inner.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        let mut message = strip_location(&inner.to_string());
        // serde_yaml_ng puts its own (shorter) key path in front of some messages.
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.is_empty()
            && !prefix.contains(' ')
            && path.starts_with(prefix)
        {
            message = rest.to_owned();
        }
        if path.is_empty() || path == "." {
            anyhow::anyhow!("{name}{location}: {message}")
        } else {
            anyhow::anyhow!("{name}{location}: {path}: {message}")
        }
    })
}

/// Reads a secret file named in a config file or by a flag.
///
/// A relative path names a systemd credential first: `home.password` is
/// `$CREDENTIALS_DIRECTORY/home.password` when the unit loads such a credential
/// (`LoadCredential=home.password:/etc/…`), else the path as given. A missing, unreadable or
/// empty file is an error naming the file; a file that others may read is logged as a
/// warning (the secret is still used; a group-readable `root:exporter 0640` file is fine).
pub fn read_secret_file(path: &Path) -> anyhow::Result<Secret> {
    let path = credential_path(path, std::env::var_os("CREDENTIALS_DIRECTORY").as_deref());
    let secret = Secret::from_file(&path)?;
    if let Some(warning) = permission_warning(&path) {
        log::warn!(file = path.display().to_string().as_str(); "{warning}");
    }
    Ok(secret)
}

/// Where [`read_secret_file`] reads `path` from, given `$CREDENTIALS_DIRECTORY`.
pub fn credential_path(path: &Path, credentials: Option<&std::ffi::OsStr>) -> std::path::PathBuf {
    if path.is_relative()
        && let Some(dir) = credentials
    {
        let candidate = Path::new(dir).join(path);
        if candidate.is_file() {
            return candidate;
        }
    }
    path.to_path_buf()
}

/// The warning for a secret file that others (not only its owner and group) may read.
pub fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "secret file {} is readable by others (mode {:o}); make it readable by the \
             exporter only, e.g. chmod 600 (or 640 with the exporter's group)",
            path.display(),
            mode & 0o777
        )
    })
}

/// Checks the name of a named target, the `?target=` value and `instance` that selects it:
/// 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn validate_target_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    anyhow::ensure!(
        valid,
        "targets.{name}: invalid target name {name:?} (use up to 64 letters, digits, '-', '_' \
         or '.')"
    );
    Ok(())
}

/// Checks target labels: Prometheus label names (`[a-zA-Z_][a-zA-Z0-9_]*`), not reserved
/// (`__…`, or `instance`, which `/sd` sets to the target) and values without control
/// characters. `what` names the entry in the error.
pub fn validate_labels(what: &str, labels: &Labels) -> anyhow::Result<()> {
    for (name, value) in labels {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        anyhow::ensure!(
            valid,
            "{what}: invalid label name {name:?} (use letters, digits and underscores, not \
             starting with a digit)"
        );
        anyhow::ensure!(
            !name.starts_with("__") && name != "instance",
            "{what}: label name {name:?} is reserved (names starting with __, and instance, \
             are set by the exporter or Prometheus)"
        );
        anyhow::ensure!(
            !value.chars().any(char::is_control),
            "{what}: the value of label {name:?} has a control character"
        );
    }
    Ok(())
}

/// The running configuration: scrapes take a snapshot with [`Live::load`] when they start and
/// keep it to the end; a reload replaces it with [`Live::store`].
#[derive(Debug)]
pub struct Live<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    /// A live value starting at `value`.
    pub fn new(value: T) -> Live<T> {
        Live { current: RwLock::new(Arc::new(value)) }
    }

    /// The configuration now; later stores do not change the returned snapshot.
    pub fn load(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Replaces the configuration for scrapes that start from now on.
    pub fn store(&self, value: T) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(value);
    }
}

/// A cache lifetime such as `--static-ttl`: `10m`, `1h`, `30s` or `0s` (a unit is needed; at
/// most 24 h). Shared by every exporter so the flag reads the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub std::time::Duration);

impl std::str::FromStr for Ttl {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Ttl> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().with_context(|| format!("invalid duration {s:?} (e.g. 10m)"))?;
        let secs = match unit {
            "s" => Some(n),
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "" => anyhow::bail!("duration {s:?} needs a unit (s, m or h)"),
            other => anyhow::bail!("invalid duration unit {other:?} in {s:?} (use s, m or h)"),
        };
        match secs {
            Some(secs) if secs <= 24 * 3600 => Ok(Ttl(std::time::Duration::from_secs(secs))),
            _ => anyhow::bail!("duration {s:?} must be at most 24h"),
        }
    }
}

impl std::fmt::Display for Ttl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs();
        if s > 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s > 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// serde_yaml_ng appends " at line L column C" to its messages; the location is already in
/// front of ours.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        targets: BTreeMap<String, Entry>,
        timeout: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        address: String,
        #[serde(default)]
        labels: Labels,
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        let text = "targets:\n  home:\n    address: http://a\n    adress: x\n";
        let err = parse_yaml::<File>("/etc/x/config.yml", text).unwrap_err().to_string();
        assert!(err.starts_with("/etc/x/config.yml:4:"), "{err}");
        assert!(err.contains("targets.home"), "{err}");
        assert!(err.contains("unknown field `adress`"), "{err}");
        assert!(!err.contains(" at line "), "{err}");

        let err = parse_yaml::<File>("c.yml", "timeout: soon\n").unwrap_err().to_string();
        assert!(err.starts_with("c.yml:1:"), "{err}");
        assert!(err.contains("timeout: invalid type"), "{err}");

        let err = parse_yaml::<File>("c.yml", "targets:\n  a: {}\n").unwrap_err().to_string();
        assert!(err.contains("targets.a") && err.contains("missing field `address`"), "{err}");

        let err = parse_yaml::<File>("c.yml", "targets:\n  a:\n    address: 3\n    labels: x\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err.matches("targets.a").count(), 1, "the key path once: {err}");

        let err = parse_yaml::<File>("c.yml", "targets: [\n").unwrap_err().to_string();
        assert!(err.starts_with("c.yml:"), "{err}");
    }

    #[test]
    fn empty_files_and_full_files_parse() {
        let empty: File = parse_yaml("c.yml", "\n# nothing yet\n").unwrap();
        assert!(empty.targets.is_empty() && empty.timeout.is_none());
        let file: File = parse_yaml(
            "c.yml",
            "timeout: 3\ntargets:\n  home:\n    address: http://a\n    labels: {site: x}\n",
        )
        .unwrap();
        assert_eq!(file.timeout, Some(3));
        assert_eq!(file.targets["home"].labels["site"], "x");
    }

    #[test]
    fn target_names_are_checked() {
        for good in ["home", "cabin-2", "a.b_c"] {
            validate_target_name(good).unwrap();
        }
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            let err = validate_target_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid target name"), "{err}");
        }
    }

    #[test]
    fn labels_are_checked() {
        let ok: Labels = [("site".to_owned(), "home".to_owned())].into();
        validate_labels("targets.home", &ok).unwrap();
        for name in ["1x", "a-b", "__x", "instance", ""] {
            let bad: Labels = [(name.to_owned(), "v".to_owned())].into();
            let err = validate_labels("targets.home", &bad).unwrap_err().to_string();
            assert!(err.contains("targets.home"), "{err}");
        }
        let bad: Labels = [("site".to_owned(), "a\nb".to_owned())].into();
        assert!(validate_labels("t", &bad).is_err());
    }

    #[test]
    fn secret_files_warn_when_others_may_read_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().expose(), "s3cret");
        assert_eq!(permission_warning(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = permission_warning(&path).unwrap();
        assert!(warning.contains("readable by others") && !warning.contains("s3cret"), "{warning}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(permission_warning(&path), None, "group-readable is a normal set-up");
        std::fs::write(&path, "").unwrap();
        assert!(read_secret_file(&path).unwrap_err().to_string().contains("is empty"));
        let err = read_secret_file(&dir.join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read secret file"), "{err:#}");
    }

    #[test]
    fn relative_secret_paths_name_systemd_credentials_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("home.password"), "x\n").unwrap();
        let creds = Some(dir.as_os_str());
        assert_eq!(credential_path(Path::new("home.password"), creds), dir.join("home.password"));
        assert_eq!(credential_path(Path::new("other"), creds), Path::new("other"));
        assert_eq!(credential_path(Path::new("/etc/x/pw"), creds), Path::new("/etc/x/pw"));
        assert_eq!(credential_path(Path::new("home.password"), None), Path::new("home.password"));
    }

    #[test]
    fn ttls_parse_and_print() {
        for (text, secs) in [("10m", 600), ("1h", 3600), ("30s", 30), ("0s", 0), (" 5m ", 300)] {
            assert_eq!(text.parse::<Ttl>().unwrap().0.as_secs(), secs, "{text}");
        }
        for bad in ["", "10", "10x", "m", "-5m", "25h", "1.5m"] {
            assert!(bad.parse::<Ttl>().is_err(), "{bad}");
        }
        assert_eq!(Ttl(std::time::Duration::from_secs(600)).to_string(), "10m");
        assert_eq!(Ttl(std::time::Duration::from_secs(90)).to_string(), "90s");
        assert_eq!(Ttl(std::time::Duration::from_secs(7200)).to_string(), "2h");
    }

    #[test]
    fn live_snapshots_outlive_a_store() {
        let live = Live::new(1);
        let before = live.load();
        live.store(2);
        assert_eq!((*before, *live.load()), (1, 2));
    }
}
