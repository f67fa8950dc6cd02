//! Secrets (passwords, API keys): read from a file, the environment or a systemd
//! credential, and never printed.

use std::{fmt, path::Path};

use anyhow::Context;

/// A secret value. `Debug` and `Display` print `<secret>`, so it cannot leak through a log
/// line, an error message or the landing page by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that is already in memory.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it to the device.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from the first source that is set, in this order:
    /// the file named by a `--*-file` flag (or its environment variable), the environment
    /// variable `env_var` holding the value itself, and the systemd credential `credential`
    /// in `$CREDENTIALS_DIRECTORY` (`LoadCredential=`). `Ok(None)` when none is set.
    ///
    /// A file that is set but unreadable or empty is an error naming the file, never a
    /// silent fallback to the next source. An empty credential is "not configured" instead:
    /// a packaged unit names its credential file before the user has written the secret.
    pub fn resolve(
        file: Option<&Path>,
        env_var: Option<&str>,
        credential: Option<&str>,
    ) -> anyhow::Result<Option<Secret>> {
        Self::resolve_with(file, env_var, credential, |name| std::env::var_os(name))
    }

    /// [`Secret::resolve`] with the environment given as a lookup function (for tests).
    pub fn resolve_with(
        file: Option<&Path>,
        env_var: Option<&str>,
        credential: Option<&str>,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> anyhow::Result<Option<Secret>> {
        if let Some(path) = file {
            return Self::from_file(path).map(Some);
        }
        if let Some(var) = env_var
            && let Some(value) = env(var)
        {
            let value = value
                .into_string()
                .map_err(|_| anyhow::anyhow!("environment variable {var} is not valid UTF-8"))?;
            let value = value.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!value.is_empty(), "environment variable {var} is empty");
            return Ok(Some(Secret(value.to_owned())));
        }
        if let Some(name) = credential
            && let Some(dir) = env("CREDENTIALS_DIRECTORY")
        {
            let path = Path::new(&dir).join(name);
            if path.exists() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read credential {}", path.display()))?;
                let value = text.trim_end_matches(['\r', '\n']);
                return Ok((!value.is_empty()).then(|| Secret(value.to_owned())));
            }
        }
        Ok(None)
    }

    /// Reads a secret from a file; one trailing newline is removed.
    pub fn from_file(path: &Path) -> anyhow::Result<Secret> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read secret file {}", path.display()))?;
        let value = text.trim_end_matches(['\r', '\n']);
        anyhow::ensure!(!value.is_empty(), "secret file {} is empty", path.display());
        Ok(Secret(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_itself() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_source_trims_newline_and_rejects_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let f = dir.join("pw");
        std::fs::write(&f, "abc\n").unwrap();
        assert_eq!(Secret::resolve(Some(&f), None, None).unwrap().unwrap().expose(), "abc");
        std::fs::write(&f, "\n").unwrap();
        let err = Secret::resolve(Some(&f), None, None).unwrap_err();
        assert!(format!("{err:#}").contains("is empty"), "{err:#}");
        let missing = dir.join("missing");
        let err = Secret::resolve(Some(&missing), None, None).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read secret file"), "{err:#}");
    }

    #[test]
    fn sources_in_order_and_empty_credential_is_unset() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let cred_dir = dir.as_os_str().to_owned();
        let env = |name: &str| match name {
            "CREDENTIALS_DIRECTORY" => Some(cred_dir.clone()),
            "X_KEY" => Some("from-env\n".into()),
            _ => None,
        };
        std::fs::write(dir.join("x-key"), "from-credential\n").unwrap();
        let got = Secret::resolve_with(None, Some("X_KEY"), Some("x-key"), env).unwrap();
        assert_eq!(got.unwrap().expose(), "from-env");
        let got = Secret::resolve_with(None, Some("OTHER"), Some("x-key"), env).unwrap();
        assert_eq!(got.unwrap().expose(), "from-credential");
        std::fs::write(dir.join("x-key"), "").unwrap();
        assert!(Secret::resolve_with(None, None, Some("x-key"), env).unwrap().is_none());
        assert!(Secret::resolve_with(None, None, Some("missing"), env).unwrap().is_none());
        let empty_env = |name: &str| (name == "X_KEY").then(|| "".into());
        assert!(Secret::resolve_with(None, Some("X_KEY"), None, empty_env).is_err());
    }
}
