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
pub mod config;
pub mod crypto;
pub mod legacy;
pub mod metrics;
mod target;

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use exporter_core::{
    Exporter, ExporterInfo, ProbeAllow, Scrape, SdTarget, ServeOptions, TargetError, TargetInfo,
    Timed, config::Live, timed,
};

pub use target::{Address, Target};

use crate::{
    api::{
        Battery, BatteryState, ConnectedDeviceList, ConnectionState, NetworkInfo, SimStatus,
        SmsStorageState, SystemInfo, SystemStatus, UsageRecord,
    },
    client::{Access, Client, Conn, Fetched},
    config::{FlagTarget, Settings},
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
    /// (default http://192.168.1.1); --password-file belongs to this address only
    #[argh(option, default = "Target::default_box()")]
    pub target: Target,

    /// the web UI user to log in as (default admin)
    #[argh(option, default = "String::from(\"admin\")")]
    pub username: String,

    /// file holding the web UI password of --target (or the systemd credential
    /// linkhub-password); never sent to any other address; without it only methods that
    /// need no login are read
    #[argh(option)]
    pub password_file: Option<PathBuf>,

    /// the _TclRequestVerificationKey header of --target (default: the public constant of
    /// the web UI); other addresses get the public constant
    #[argh(option)]
    pub verification_key: Option<String>,

    /// add IMEI, IMSI, ICCID, MAC and IP addresses as labels, and a series per connected
    /// client (off: they identify the subscriber and the household)
    #[argh(switch)]
    pub expose_identifiers: bool,

    /// most connected clients with series of their own under --expose-identifiers; beyond
    /// it the longest connected are kept and the rest counted (default 256)
    #[argh(option, default = "metrics::DEFAULT_CONNECTED_DEVICES_MAX")]
    pub connected_devices_max: usize,

    /// pause after a rejected login before the next attempt, per router, as seconds or with
    /// a unit: 600, 600s, 10m, 1h (default 10m); the router locks after 5 wrong passwords
    #[argh(option, default = "LoginBackoff::default()")]
    pub login_backoff: LoginBackoff,

    /// log out at the end of every scrape, so the router's single admin session is free for
    /// the web UI between scrapes (costs one login per scrape)
    #[argh(switch)]
    pub logout_after_scrape: bool,

    /// restrict /probe of addresses that are not configured targets to these networks
    /// (CIDR), addresses, host names or *.domain (repeatable; default: any address, without
    /// secrets)
    #[argh(option)]
    pub probe_allow: Vec<String>,
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

/// Where the exporter finds its files: the common flags that matter to it.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// `--config-file`.
    pub config_file: Option<PathBuf>,
    /// `--state-directory` (else `$STATE_DIRECTORY`).
    pub state_directory: Option<PathBuf>,
    /// Whether `--target` (or `LINKHUB_TARGET`) was given rather than left at its default.
    pub target_given: bool,
}

impl Setup {
    /// From the core's validated options.
    pub fn from_options(opts: &ServeOptions) -> Setup {
        Setup {
            config_file: opts.config_file.clone(),
            state_directory: opts.state_directory.clone(),
            target_given: opts.is_set("--target"),
        }
    }
}

/// The exporter: the HTTP clients, the running configuration and the login state of every
/// router.
#[derive(Debug)]
pub struct Linkhub {
    client: Client,
    flags: FlagTarget,
    config_file: Option<PathBuf>,
    settings: Live<Settings>,
    allow: Arc<ProbeAllow>,
    logout_after_scrape: bool,
    connected_devices_max: usize,
}

impl Linkhub {
    /// Builds the exporter from its flags alone (no config file, no state directory).
    pub fn new(flags: Flags) -> anyhow::Result<Linkhub> {
        Linkhub::build(flags, Setup { target_given: true, ..Setup::default() })
    }

    /// Builds the exporter from its flags and the core's options (`--config-file`,
    /// `--state-directory`, whether `--target` was given).
    pub fn with_options(flags: Flags, opts: &ServeOptions) -> anyhow::Result<Linkhub> {
        Linkhub::build(flags, Setup::from_options(opts))
    }

    /// Builds the exporter: reads the password (file, or the systemd credential
    /// `linkhub-password`), the config file and its password files, and makes the core's
    /// HTTP clients (one restricted by `--probe-allow` for ad-hoc addresses).
    pub fn build(flags: Flags, setup: Setup) -> anyhow::Result<Linkhub> {
        let verification_key = match &flags.verification_key {
            Some(key) => {
                config::check_key(key).map_err(|e| anyhow::anyhow!("--verification-key: {e}"))?
            }
            None => client::DEFAULT_VERIFICATION_KEY.to_owned(),
        };
        anyhow::ensure!(
            !flags.username.is_empty() && !flags.username.chars().any(char::is_control),
            "--username must be non-empty"
        );
        anyhow::ensure!(
            flags.connected_devices_max > 0,
            "--connected-devices-max must be at least 1"
        );
        let flag_target = FlagTarget {
            address: flags.target.address().clone(),
            address_given: setup.target_given,
            username: flags.username,
            password_file: flags.password_file,
            verification_key,
            expose_identifiers: flags.expose_identifiers,
        };
        let settings = Settings::load(&flag_target, setup.config_file.as_deref())?;
        let allow = Arc::new(ProbeAllow::parse(&flags.probe_allow)?);
        let http = exporter_core::client::http_client(&INFO)?;
        let adhoc_http = if allow.is_empty() {
            http.clone()
        } else {
            exporter_core::client::http_client_restricted(&INFO, Arc::clone(&allow))?
        };
        let options = client::Options {
            login_backoff: flags.login_backoff.0,
            state_directory: setup.state_directory,
        };
        Ok(Linkhub {
            client: Client::new(http, adhoc_http, options),
            flags: flag_target,
            config_file: setup.config_file,
            settings: Live::new(settings),
            allow,
            logout_after_scrape: flags.logout_after_scrape,
            connected_devices_max: flags.connected_devices_max,
        })
    }

    /// Whether a password was found for `--target`, so methods that need a login are read.
    pub fn login_configured(&self) -> bool {
        self.settings.load().flags.password.is_some()
    }

    /// Lines for the landing page's configuration table (no secret values).
    pub fn describe(&self) -> Vec<(String, String)> {
        let settings = self.settings.load();
        let mut lines = Vec::new();
        let password = if settings.flags.password.is_some() {
            format!("<secret> (login enabled for {} only)", settings.flags.address)
        } else {
            "none (reads only what needs no login)".to_owned()
        };
        lines.push(("password".to_owned(), password));
        if !self.allow.is_empty() {
            lines.push(("probe-allow".to_owned(), self.allow.describe()));
        }
        lines
    }
}

impl Exporter for Linkhub {
    const NAMESPACE: &'static str = "linkhub";
    const DESCRIPTION: &'static str = "Prometheus exporter for Alcatel/TCL LinkHub 4G routers";
    type Target = Target;

    fn default_target(&self) -> Option<Target> {
        self.settings.load().default.as_ref().map(|d| Target::from(d.address.clone()))
    }

    async fn resolve_target(&self, raw: &str) -> Result<Target, TargetError> {
        if let Some(target) = self.settings.load().lookup(raw) {
            return Ok(target);
        }
        let target: Target = raw.parse().map_err(TargetError::Invalid)?;
        if !self.allow.is_empty() {
            self.allow.check(target.address().host()).await.map_err(TargetError::NotAllowed)?;
        }
        Ok(target)
    }

    async fn probe(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<()> {
        // One snapshot of the configuration for the whole probe, even across a reload.
        let settings = self.settings.load();
        let (access, expose) = match settings.settings(target)? {
            Some(entry) => (entry.access(), entry.expose_identifiers),
            None => (Access::adhoc(), settings.adhoc_expose_identifiers),
        };
        let mut conn = self.client.connect(target, access).await;
        let result = self.collect(&mut conn, out, expose).await;
        if self.logout_after_scrape && conn.has_session() {
            conn.logout().await;
        }
        login_metrics(out, &conn);
        result
    }

    async fn shutdown(&self) {
        self.client.logout_all(Duration::from_secs(2)).await;
    }

    async fn reload(&self) -> anyhow::Result<()> {
        let settings = Settings::load(&self.flags, self.config_file.as_deref())?;
        self.settings.store(settings);
        Ok(())
    }

    fn targets(&self) -> Vec<TargetInfo> {
        self.settings.load().named.iter().map(|(name, entry)| entry.info(name)).collect()
    }

    async fn sd_targets(&self) -> anyhow::Result<Vec<SdTarget>> {
        Ok(self
            .settings
            .load()
            .named
            .iter()
            .map(|(name, entry)| SdTarget { target: name.clone(), labels: entry.labels.clone() })
            .collect())
    }
}

impl Linkhub {
    /// The collectors, one device call at a time.
    async fn collect(
        &self,
        conn: &mut Conn<'_>,
        out: &mut Scrape,
        expose: bool,
    ) -> anyhow::Result<()> {
        let d = out.deadline();

        // GetSystemInfo first: it tells whether a LinkHub answers at all.
        let info = timed("system_info", d, conn.get::<SystemInfo>("GetSystemInfo")).await;
        let info = match info.result {
            Err(err) if client::is_device_error(&err) => return Err(err),
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

        let sms = timed("sms", d, conn.get::<SmsStorageState>("GetSMSStorageState")).await;
        if let Some(it) = settle(out, sms, "GetSMSStorageState") {
            metrics::sms(out, &it);
        }

        let clients =
            timed("clients", d, conn.get::<ConnectedDeviceList>("GetConnectedDeviceList")).await;
        if let Some(it) = settle(out, clients, "GetConnectedDeviceList") {
            let sel = metrics::ClientSelection {
                expose_identifiers: expose,
                max: self.connected_devices_max,
            };
            metrics::connected_devices(out, &it, sel);
        }

        battery(out, conn, status.as_ref()).await;
        Ok(())
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
    } else {
        metrics::no_credentials(out);
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
