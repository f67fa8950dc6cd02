//! The environment of the earlier Python exporter (imrehg/linkhub_prometheus_exporter 0.4.0),
//! read with a deprecation warning that names the new flag.
//!
//! [`rewrite_env`] runs before the flags are parsed (`exporter_core::parse_cli_with_env`): it
//! turns `LINKHUB_BOX_ADDRESS`, `LINKHUB_REQUEST_KEY`, `LINKHUB_EXPORTER_ADDRESS` /
//! `LINKHUB_EXPORTER_PORT` into the variables of `--target`, `--verification-key` and
//! `--listen-address`, accepts the Python log level names of `LINKHUB_LOG_LEVEL` in any case,
//! and drops `LINKHUB_POLLING_INTERVAL_SECONDS`. A new variable that is set wins over an old
//! one. The warnings are logged once, at start.

use std::collections::HashMap;

/// The old exporter's listen address default (`localhost`) and port (9877).
const OLD_ADDRESS: &str = "localhost";
const OLD_PORT: &str = "9877";

/// Rewrites the `LINKHUB_*` environment in place; returns one warning per old variable used.
pub fn rewrite_env(env: &mut HashMap<String, String>) -> Vec<String> {
    let mut warnings = Vec::new();
    for (old, new, flag) in [
        ("LINKHUB_BOX_ADDRESS", "LINKHUB_TARGET", "--target"),
        ("LINKHUB_REQUEST_KEY", "LINKHUB_VERIFICATION_KEY", "--verification-key"),
    ] {
        let Some(value) = env.remove(old) else { continue };
        if env.contains_key(new) {
            warnings
                .push(format!("{old} is deprecated and ignored because {new} is set; remove it"));
        } else {
            env.insert(new.to_owned(), value);
            warnings.push(format!("{old} is deprecated: use {flag} (environment {new}) instead"));
        }
    }

    let address = env.remove("LINKHUB_EXPORTER_ADDRESS");
    let port = env.remove("LINKHUB_EXPORTER_PORT");
    if address.is_some() || port.is_some() {
        let used: Vec<&str> = [
            address.as_ref().map(|_| "LINKHUB_EXPORTER_ADDRESS"),
            port.as_ref().map(|_| "LINKHUB_EXPORTER_PORT"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let used = used.join(" and ");
        if env.contains_key("LINKHUB_LISTEN_ADDRESS") {
            warnings.push(format!(
                "{used}: deprecated and ignored because LINKHUB_LISTEN_ADDRESS is set; remove them"
            ));
        } else {
            let host = address.as_deref().map(str::trim).unwrap_or(OLD_ADDRESS);
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            let port = port.as_deref().map(str::trim).unwrap_or(OLD_PORT);
            let listen = format!("{host}:{port}");
            warnings.push(format!(
                "{used}: deprecated: use --listen-address {listen} (environment \
                 LINKHUB_LISTEN_ADDRESS) instead"
            ));
            env.insert("LINKHUB_LISTEN_ADDRESS".to_owned(), listen);
        }
    }

    if let Some(level) = env.get("LINKHUB_LOG_LEVEL").cloned() {
        let canonical = match level.trim().to_ascii_lowercase().as_str() {
            "debug" | "notset" | "10" | "0" => Some("debug"),
            "info" | "20" => Some("info"),
            "warn" | "warning" | "30" => Some("warn"),
            "error" | "critical" | "fatal" | "40" | "50" => Some("error"),
            _ => None,
        };
        if let Some(canonical) = canonical
            && canonical != level
        {
            warnings.push(format!(
                "LINKHUB_LOG_LEVEL={level} is the earlier exporter's spelling: read as \
                 --log-level {canonical}; write it as {canonical}"
            ));
            env.insert("LINKHUB_LOG_LEVEL".to_owned(), canonical.to_owned());
        }
    }

    if env.remove("LINKHUB_POLLING_INTERVAL_SECONDS").is_some() {
        warnings.push(
            "LINKHUB_POLLING_INTERVAL_SECONDS is ignored: the router is read when Prometheus \
             scrapes (set scrape_interval instead)"
                .to_owned(),
        );
    }
    warnings
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Flags, INFO};

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn old_variables_become_the_new_flags_with_a_warning() {
        let mut e = env(&[
            ("LINKHUB_BOX_ADDRESS", "192.168.8.1"),
            ("LINKHUB_REQUEST_KEY", "abcDEF123"),
            ("LINKHUB_EXPORTER_PORT", "9100"),
            ("LINKHUB_EXPORTER_ADDRESS", "0.0.0.0"),
            ("LINKHUB_LOG_LEVEL", "WARNING"),
            ("LINKHUB_POLLING_INTERVAL_SECONDS", "5"),
        ]);
        let warnings = rewrite_env(&mut e);
        assert_eq!(warnings.len(), 5, "{warnings:#?}");
        for (old, flag) in [
            ("LINKHUB_BOX_ADDRESS", "--target"),
            ("LINKHUB_REQUEST_KEY", "--verification-key"),
            ("LINKHUB_EXPORTER_PORT", "--listen-address 0.0.0.0:9100"),
            ("LINKHUB_LOG_LEVEL", "--log-level warn"),
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(old) && w.contains(flag)),
                "{old}: {warnings:#?}"
            );
        }
        assert!(warnings.iter().all(|w| !w.contains("abcDEF123")), "no key in the warnings");
        let cli = exporter_core::parse_args::<Flags>(INFO, &[], &e).unwrap();
        assert_eq!(cli.flags.target.to_string(), "http://192.168.8.1");
        assert_eq!(cli.flags.verification_key.as_deref(), Some("abcDEF123"));
        assert_eq!(cli.serve.listen_addresses, vec!["0.0.0.0:9100".to_owned()]);
        assert_eq!(cli.serve.log_level, log::LevelFilter::Warn);
        assert!(cli.serve.is_set("--target"));
    }

    #[test]
    fn new_variables_win_and_defaults_follow_the_old_exporter() {
        let mut e = env(&[
            ("LINKHUB_BOX_ADDRESS", "192.168.8.1"),
            ("LINKHUB_TARGET", "10.0.0.1"),
            ("LINKHUB_EXPORTER_PORT", "9100"),
            ("LINKHUB_LOG_LEVEL", "info"),
        ]);
        let warnings = rewrite_env(&mut e);
        assert_eq!(e.get("LINKHUB_TARGET").map(String::as_str), Some("10.0.0.1"));
        assert!(warnings.iter().any(|w| w.contains("ignored because LINKHUB_TARGET is set")));
        // The old exporter listened on localhost unless told otherwise.
        assert_eq!(e.get("LINKHUB_LISTEN_ADDRESS").map(String::as_str), Some("localhost:9100"));
        assert_eq!(warnings.len(), 2, "info is already our spelling: {warnings:#?}");
        for (old, new) in [("Debug", "debug"), ("CRITICAL", "error"), ("notset", "debug")] {
            let mut e = env(&[("LINKHUB_LOG_LEVEL", old)]);
            assert_eq!(rewrite_env(&mut e).len(), 1);
            assert_eq!(e["LINKHUB_LOG_LEVEL"], new);
        }
        let mut e = env(&[("LINKHUB_EXPORTER_ADDRESS", "::1")]);
        rewrite_env(&mut e);
        assert_eq!(e["LINKHUB_LISTEN_ADDRESS"], "[::1]:9877");
        let mut e = env(&[("LINKHUB_LOG_LEVEL", "loud")]);
        assert!(rewrite_env(&mut e).is_empty(), "left to the core's error");
        assert!(exporter_core::parse_args::<Flags>(INFO, &[], &e).is_err());
    }
}
