//! linkhub-exporter: a Prometheus exporter for Alcatel/TCL LinkHub 4G routers (HH40, HH41,
//! HH441, HH70/71/72) and the MiFis that speak the same JSON-RPC API (MW40, LinkZone).
//!
//! [`Linkhub`] implements [`exporter_core::Exporter`]: each probe locks the target (one
//! request in flight), then runs one collector per method group in turn, each bounded by
//! the scrape deadline: `system_info`, `system_status`, `network`, `connection`, `usage`,
//! `sim`, `battery`. Fetching lives in [`client`], serde types in [`api`], rendering in
//! [`metrics`].

pub mod api;
pub mod client;
pub mod crypto;
pub mod metrics;
mod target;

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use exporter_core::{Exporter, ExporterInfo, Scrape, Secret, Timed, timed};

pub use target::Target;

use crate::{
    api::{
        Battery, BatteryState, ConnectionState, NetworkInfo, SimStatus, SystemInfo, SystemStatus,
        UsageRecord,
    },
    client::{Client, Config, Conn, Fetched},
};

/// What the core needs to know about this binary.
pub const INFO: ExporterInfo = ExporterInfo {
    binary: "linkhub-exporter",
    env_prefix: "LINKHUB",
    version: env!("CARGO_PKG_VERSION"),
    default_port: 9877,
};

/// Prometheus exporter for Alcatel/TCL LinkHub 4G routers.
#[derive(argh::FromArgs, argh::ArgsInfo, Debug)]
pub struct Flags {
    /// the router that /metrics scrapes, as http://host[:port], host or host:port
    /// (default http://192.168.1.1); /probe?target= scrapes any other
    #[argh(option, default = "Target::default_box()")]
    pub target: Target,

    /// the web UI user to log in as (default admin)
    #[argh(option, default = "String::from(\"admin\")")]
    pub username: String,

    /// file holding the web UI password; without it (or the systemd credential
    /// linkhub-password) only methods that need no login are read
    #[argh(option)]
    pub password_file: Option<PathBuf>,

    /// the _TclRequestVerificationKey header (default: the public constant of the web UI;
    /// not a secret)
    #[argh(option)]
    pub verification_key: Option<String>,

    /// add IMEI, IMSI, ICCID, MAC and IP addresses as labels (off: they identify the
    /// subscriber)
    #[argh(switch)]
    pub expose_identifiers: bool,

    /// pause after a rejected login before the next attempt, as seconds or with a unit:
    /// 600, 600s, 10m, 1h (default 10m); the router locks after 5 wrong passwords
    #[argh(option, default = "LoginBackoff::default()")]
    pub login_backoff: LoginBackoff,
}

/// The `--login-backoff` duration: an integer with an optional unit `s`, `m` or `h`
/// (seconds without one); at least 1 s, at most 24 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBackoff(pub Duration);

impl Default for LoginBackoff {
    fn default() -> LoginBackoff {
        LoginBackoff(Duration::from_secs(600))
    }
}

impl FromStr for LoginBackoff {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<LoginBackoff> {
        let s = s.trim();
        let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => s.split_at(i),
            None => (s, "s"),
        };
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => anyhow::bail!(
                "invalid duration {s:?}: expected seconds or a number with s, m or h (e.g. 10m)"
            ),
        };
        let n: u64 = digits.parse().map_err(|_| {
            anyhow::anyhow!(
                "invalid duration {s:?}: expected seconds or a number with s, m or h (e.g. 10m)"
            )
        })?;
        let secs = n.saturating_mul(scale);
        anyhow::ensure!(
            (1..=86_400).contains(&secs),
            "invalid duration {s:?}: must be between 1s and 24h"
        );
        Ok(LoginBackoff(Duration::from_secs(secs)))
    }
}

impl fmt::Display for LoginBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs())
    }
}

/// The exporter: the HTTP client and the login state of every target.
#[derive(Debug)]
pub struct Linkhub {
    client: Client,
    default_target: Target,
    expose_identifiers: bool,
}

impl Linkhub {
    /// Builds the exporter from its flags: reads the password (file, or the systemd
    /// credential `linkhub-password`) and the core's HTTP client.
    pub fn new(flags: Flags) -> anyhow::Result<Linkhub> {
        let http = exporter_core::client::http_client(&INFO)?;
        Linkhub::with_http(flags, http)
    }

    /// Like [`Linkhub::new`] with a given reqwest client (tests).
    pub fn with_http(flags: Flags, http: reqwest::Client) -> anyhow::Result<Linkhub> {
        let password =
            Secret::resolve(flags.password_file.as_deref(), None, Some("linkhub-password"))?;
        let verification_key = match flags.verification_key {
            Some(key) => {
                let key = key.trim().to_owned();
                anyhow::ensure!(
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()),
                    "--verification-key must be non-empty printable ASCII"
                );
                key
            }
            None => client::DEFAULT_VERIFICATION_KEY.to_owned(),
        };
        anyhow::ensure!(
            !flags.username.is_empty() && !flags.username.chars().any(char::is_control),
            "--username must be non-empty"
        );
        let config = Config {
            verification_key,
            username: flags.username,
            password,
            login_backoff: flags.login_backoff.0,
        };
        Ok(Linkhub {
            client: Client::new(http, config),
            default_target: flags.target,
            expose_identifiers: flags.expose_identifiers,
        })
    }

    /// Whether a password was found, so methods that need a login are read.
    pub fn login_configured(&self) -> bool {
        self.client.config().password.is_some()
    }
}

impl Exporter for Linkhub {
    const NAMESPACE: &'static str = "linkhub";
    const DESCRIPTION: &'static str = "Prometheus exporter for Alcatel/TCL LinkHub 4G routers";
    type Target = Target;

    fn default_target(&self) -> Option<Target> {
        Some(self.default_target.clone())
    }

    async fn probe(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<()> {
        let mut conn = self.client.connect(target).await;
        let d = out.deadline();
        let expose = self.expose_identifiers;

        // GetSystemInfo first: it tells whether a LinkHub answers at all.
        let info = timed("system_info", d, conn.get::<SystemInfo>("GetSystemInfo")).await;
        let info = match info.result {
            Err(err) if client::is_device_error(&err) => {
                login_metrics(out, &conn);
                return Err(err);
            }
            result => Timed { result, ..info },
        };
        if let Some(it) = settle(out, info, "GetSystemInfo") {
            conn.set_model(it.device_name.get());
            metrics::system_info(out, &it, expose);
        }

        let status = timed("system_status", d, conn.get::<SystemStatus>("GetSystemStatus")).await;
        let status = settle(out, status, "GetSystemStatus");
        if let Some(it) = &status {
            metrics::system_status(out, it);
        }

        let net = timed("network", d, conn.get::<NetworkInfo>("GetNetworkInfo")).await;
        if let Some(it) = settle(out, net, "GetNetworkInfo") {
            metrics::network(out, &it);
        }

        let cs = timed("connection", d, conn.get::<ConnectionState>("GetConnectionState")).await;
        if let Some(it) = settle(out, cs, "GetConnectionState") {
            metrics::connection(out, &it, expose);
        }

        let usage = timed("usage", d, conn.get::<UsageRecord>("GetUsageRecord")).await;
        if let Some(it) = settle(out, usage, "GetUsageRecord") {
            metrics::usage(out, &it);
        }

        let sim = timed("sim", d, conn.get::<SimStatus>("GetSimStatus")).await;
        if let Some(it) = settle(out, sim, "GetSimStatus") {
            metrics::sim(out, &it);
        }

        battery(out, &mut conn, status.as_ref()).await;
        login_metrics(out, &conn);
        Ok(())
    }

    async fn shutdown(&self) {
        self.client.logout_all(Duration::from_secs(2)).await;
    }
}

/// `GetBatteryState`: a method error means "no battery" (LinkHubs), not a failed scrape;
/// the MiFi's `GetSystemStatus` battery fields fill in what it lacks.
async fn battery(out: &mut Scrape, conn: &mut Conn<'_>, status: Option<&SystemStatus>) {
    let t = timed("battery", out.deadline(), conn.get::<BatteryState>("GetBatteryState")).await;
    let from_status = status.and_then(Battery::from_status);
    let battery = match t.result {
        Err(err) if client::method_error(&err).is_some() => {
            out.note(format!("battery: GetBatteryState not available ({err:#})"));
            match from_status {
                Some(b) => Some(Ok(b)),
                None => {
                    out.note("battery: the device has no battery");
                    None
                }
            }
        }
        Err(err) => Some(Err(err)),
        Ok(Fetched::NeedsLogin) => {
            metrics::login_required(out, "GetBatteryState");
            from_status.map(Ok)
        }
        Ok(Fetched::Data(state)) => Some(Ok(Battery::from_state(&state, status))),
    };
    if let Some(result) = battery
        && let Some(b) = out.record(Timed { name: t.name, elapsed: t.elapsed, result })
    {
        metrics::battery(out, &b);
    }
}

/// Records a collector's outcome, except that a method skipped for lack of a password is
/// not a failure: it is listed in `linkhub_login_required{method}` instead.
fn settle<T>(out: &mut Scrape, t: Timed<Fetched<T>>, method: &str) -> Option<T> {
    let result = match t.result {
        Ok(Fetched::NeedsLogin) => {
            out.note(format!(
                "collector {} skipped: {method} needs a login and no password is configured",
                t.name
            ));
            metrics::login_required(out, method);
            return None;
        }
        Ok(Fetched::Data(v)) => Ok(v),
        Err(e) => Err(e),
    };
    out.record(Timed { name: t.name, elapsed: t.elapsed, result })
}

fn login_metrics(out: &mut Scrape, conn: &Conn<'_>) {
    if conn.can_login() {
        metrics::login(out, &conn.login_report());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn login_backoff_parses_seconds_and_units() {
        for (s, secs) in [("600", 600), ("600s", 600), ("10m", 600), ("1h", 3600), (" 5s ", 5)] {
            assert_eq!(s.parse::<LoginBackoff>().unwrap().0, Duration::from_secs(secs), "{s}");
        }
        for s in ["", "0", "10x", "m", "-5", "1.5m", "25h", "10 m"] {
            let err = s.parse::<LoginBackoff>().unwrap_err();
            assert!(err.to_string().contains("invalid duration"), "{s}: {err}");
        }
        assert_eq!(LoginBackoff::default().0, Duration::from_secs(600));
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        use argh::FromArgs;
        let flags = Flags::from_args(&["linkhub-exporter"], &[]).unwrap();
        assert_eq!(flags.target.to_string(), "http://192.168.1.1");
        assert_eq!(flags.username, "admin");
        assert_eq!(flags.login_backoff.0, Duration::from_secs(600));
        assert!(!flags.expose_identifiers);
        assert!(flags.password_file.is_none() && flags.verification_key.is_none());
        let flags = Flags::from_args(
            &["linkhub-exporter"],
            &["--target", "10.0.0.1:8080", "--login-backoff", "2m"],
        )
        .unwrap();
        assert_eq!(flags.target.to_string(), "http://10.0.0.1:8080");
        assert_eq!(flags.login_backoff.0, Duration::from_secs(120));
        let err = Flags::from_args(&["linkhub-exporter"], &["--target", "ftp://x"]).unwrap_err();
        assert!(err.output.contains("target"), "{}", err.output);
    }
}
