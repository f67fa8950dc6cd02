//! linkhub-exporter: a Prometheus exporter for Alcatel/TCL LinkHub 4G routers (HH40, HH41,
//! HH441, HH70/71/72) and the MiFis that speak the same JSON-RPC API (MW40, LinkZone).
//!
//! [`Linkhub`] implements [`exporter_core::Exporter`]: each probe locks the target (one probe
//! per router at a time), reads `GetSystemInfo` first when it is not cached (it tells
//! whether a LinkHub answers, and settles the login where it needs one), then the other
//! collectors' methods at most `--device-concurrency` at once, each bounded by the scrape
//! deadline: `system_status`, `network`, `connection`, `usage`, `sim`, `sms`, `clients`,
//! `battery`. Static facts are cached per router ([`statics`]). Fetching lives in
//! [`client`], serde types in [`api`], rendering in [`metrics`].

pub mod api;
pub mod client;
pub mod config;
pub mod crypto;
pub mod legacy;
pub mod metrics;
pub mod statics;
mod target;

use std::{collections::HashMap, fmt, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

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
    statics::{Cached, DEFAULT_STATIC_TTL},
};

/// The default of `--device-concurrency`.
pub const DEFAULT_DEVICE_CONCURRENCY: usize = 2;

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

    /// device calls of one scrape in flight at once after the login, 1-8 (default 2; 1 makes
    /// strictly one call at a time, for fragile firmware); one scrape per router at a time
    /// either way
    #[argh(option, default = "DEFAULT_DEVICE_CONCURRENCY")]
    pub device_concurrency: usize,

    /// how long the static facts are cached per router (GetSystemInfo: model, firmware and
    /// hardware versions, IMEI, ICCID; a ready SIM; no battery; the SMS store while the
    /// status bar's SmsState stays the same), e.g. 10m (the default), 1h or 30s (0s: every
    /// scrape); read again at once when the router restarted
    #[argh(option, default = "StaticTtl(DEFAULT_STATIC_TTL)")]
    pub static_ttl: StaticTtl,
}

/// The `--static-ttl` duration (exporter-core's, shared by every exporter).
pub use exporter_core::config::Ttl as StaticTtl;

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
    static_ttl: Duration,
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
        anyhow::ensure!(
            (1..=8).contains(&flags.device_concurrency),
            "--device-concurrency must be between 1 and 8, got {}",
            flags.device_concurrency
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
            concurrency: flags.device_concurrency,
        };
        Ok(Linkhub {
            client: Client::new(http, adhoc_http, options),
            flags: flag_target,
            config_file: setup.config_file,
            settings: Live::new(settings),
            allow,
            logout_after_scrape: flags.logout_after_scrape,
            connected_devices_max: flags.connected_devices_max,
            static_ttl: flags.static_ttl.0,
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
        if !conn.can_login() {
            out.login("no password configured: only token-free methods read");
        }
        for line in std::mem::take(&mut conn.logins) {
            out.login(line);
        }
        for line in std::mem::take(&mut conn.quirks) {
            out.quirk(line);
        }
        if let Err(err) = &result
            && err.chain().any(|e| {
                e.downcast_ref::<client::DeviceError>() == Some(&client::DeviceError::Encrypted)
            })
        {
            out.quirk("encrypted firmware (Salted__ answers): unsupported");
        }
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
    /// The collectors: `GetSystemInfo` first unless cached, then the rest concurrently
    /// ([`Conn::fetch_all`]), then what the answers showed is due (static facts after a
    /// restart, the SMS store when the status bar's `SmsState` changed); rendered in a fixed
    /// order.
    async fn collect(
        &self,
        conn: &mut Conn<'_>,
        out: &mut Scrape,
        expose: bool,
    ) -> anyhow::Result<()> {
        let d = out.deadline();
        let ttl = self.static_ttl;

        // GetSystemInfo first when it is due: it tells whether a LinkHub answers at all, and
        // settles the login on firmware that protects it, before anything runs concurrently.
        let mut info_read = None;
        if conn.statics().info(ttl).is_none() {
            let t = timed("system_info", d, conn.get::<SystemInfo>("GetSystemInfo")).await;
            if let Err(err) = &t.result
                && client::is_device_error(err)
            {
                return Err(t.result.err().unwrap_or_else(|| anyhow::anyhow!("GetSystemInfo")));
            }
            info_read = Some(t);
        }

        let mut calls = vec![
            ("system_status", "GetSystemStatus"),
            ("network", "GetNetworkInfo"),
            ("connection", "GetConnectionState"),
            ("usage", "GetUsageRecord"),
        ];
        if conn.statics().sim(ttl).is_none() {
            calls.push(("sim", "GetSimStatus"));
        }
        calls.push(("clients", "GetConnectedDeviceList"));
        let mut read: HashMap<&'static str, Timed<Fetched<serde_json::Value>>> =
            calls.iter().map(|(name, _)| *name).zip(conn.fetch_all(&calls, d).await).collect();
        if let Some(err) = read.values_mut().find_map(|t| match &mut t.result {
            Err(err) if client::is_device_error(err) => {
                Some(std::mem::replace(err, anyhow::anyhow!("")))
            }
            _ => None,
        }) {
            return Err(err);
        }

        let status =
            read.remove("system_status").map(|t| decoded::<SystemStatus>(t, "GetSystemStatus"));
        let status_value = status.as_ref().and_then(|t| match &t.result {
            Ok(Fetched::Data(s)) => Some(s.clone()),
            _ => None,
        });
        let uptime = status_value.as_ref().and_then(|s| s.device_uptime.count());
        let restarted = conn.statics_mut().restarted(uptime) || conn.session_lost();
        if restarted {
            out.note(
                "static facts: the router restarted (uptime went down or the session was \
                 refused); reading them again",
            );
            let uptime = conn.statics().uptime;
            conn.statics_mut().forget();
            conn.statics_mut().uptime = uptime;
        }
        let no_service = status_value.as_ref().and_then(|s| s.network_type.code()) == Some(0);
        if no_service && conn.statics().sim.is_some() {
            out.note("sim: no service, reading the SIM state again");
            conn.statics_mut().sim = None;
        }
        let sms_state = status_value.as_ref().and_then(|s| s.sms_state.code());

        // What the answers showed is due.
        let mut late = Vec::new();
        if info_read.is_none() && conn.statics().info(ttl).is_none() {
            late.push(("system_info", "GetSystemInfo"));
        }
        if !read.contains_key("sim") && conn.statics().sim(ttl).is_none() {
            late.push(("sim", "GetSimStatus"));
        }
        if conn.statics().sms(ttl, sms_state).is_none() {
            late.push(("sms", "GetSMSStorageState"));
        }
        // A MiFi's status bar has the battery; GetBatteryState only where it does not, until
        // the router is known to have none.
        let status_battery = status_value.as_ref().and_then(Battery::from_status);
        if status_battery.as_ref().is_none_or(|b| b.percent.is_none())
            && !conn.statics().no_battery(ttl)
        {
            late.push(("battery", "GetBatteryState"));
        }
        if !late.is_empty() {
            let results = conn.fetch_all(&late, d).await;
            for ((name, _), t) in late.iter().zip(results) {
                read.insert(name, t);
            }
        }
        let info_read =
            info_read.or_else(|| read.remove("system_info").map(|t| decoded(t, "GetSystemInfo")));

        // system_info
        match info_read {
            Some(t) => {
                if let Some(it) = settle(out, t, "GetSystemInfo") {
                    conn.set_model(it.device_name.get());
                    conn.statics_mut().info = Some(Cached::now(it));
                }
            }
            None => {
                if let Some(c) = conn.statics().info.as_ref() {
                    out.note(format!(
                        "system_info: cached GetSystemInfo, read {:.0}s ago (--static-ttl {})",
                        c.age_seconds(),
                        StaticTtl(ttl)
                    ));
                }
            }
        }
        if let Some(c) = conn.statics().info.clone() {
            facts(out, &c.value);
            metrics::system_info(out, &c.value, expose);
            metrics::static_age(out, c.age_seconds());
        }

        if let Some(t) = status
            && let Some(it) = settle(out, t, "GetSystemStatus")
        {
            metrics::system_status(out, &it);
        }
        if let Some(it) = read.remove("network").and_then(|t| {
            settle(out, decoded::<NetworkInfo>(t, "GetNetworkInfo"), "GetNetworkInfo")
        }) {
            metrics::network(out, &it);
        }
        if let Some(it) = read.remove("connection").and_then(|t| {
            settle(out, decoded::<ConnectionState>(t, "GetConnectionState"), "GetConnectionState")
        }) {
            metrics::connection(out, &it, expose);
        }
        if let Some(it) = read.remove("usage").and_then(|t| {
            settle(out, decoded::<UsageRecord>(t, "GetUsageRecord"), "GetUsageRecord")
        }) {
            metrics::usage(out, &it);
        }

        // sim
        match read.remove("sim") {
            Some(t) => {
                if let Some(it) =
                    settle(out, decoded::<SimStatus>(t, "GetSimStatus"), "GetSimStatus")
                {
                    conn.statics_mut().sim =
                        (it.sim_state.code() == Some(7)).then(|| Cached::now(it.clone()));
                    metrics::sim(out, &it);
                }
            }
            None => {
                if let Some(c) = conn.statics().sim.clone() {
                    out.note(format!(
                        "sim: cached GetSimStatus of the ready SIM, read {:.0}s ago",
                        c.age_seconds()
                    ));
                    metrics::sim(out, &c.value);
                }
            }
        }

        // sms
        match read.remove("sms") {
            Some(t) => {
                let t = decoded::<SmsStorageState>(t, "GetSMSStorageState");
                if let Some(it) = settle(out, t, "GetSMSStorageState") {
                    conn.statics_mut().sms = sms_state.map(|st| Cached::now((it.clone(), st)));
                    metrics::sms(out, &it);
                }
            }
            None => {
                if let Some(c) = conn.statics().sms.clone() {
                    out.note(format!(
                        "sms: cached GetSMSStorageState, read {:.0}s ago with the same \
                         GetSystemStatus.SmsState {}",
                        c.age_seconds(),
                        c.value.1
                    ));
                    metrics::sms(out, &c.value.0);
                }
            }
        }

        if let Some(it) = read.remove("clients").and_then(|t| {
            settle(
                out,
                decoded::<ConnectedDeviceList>(t, "GetConnectedDeviceList"),
                "GetConnectedDeviceList",
            )
        }) {
            let sel = metrics::ClientSelection {
                expose_identifiers: expose,
                max: self.connected_devices_max,
            };
            metrics::connected_devices(out, &it, sel);
        }

        let battery_read =
            read.remove("battery").map(|t| decoded::<BatteryState>(t, "GetBatteryState"));
        battery(out, conn, battery_read, status_value.as_ref());
        Ok(())
    }
}

/// The facts `check` shows: model and versions (never an identifier).
fn facts(out: &mut Scrape, it: &SystemInfo) {
    for (key, value) in [
        ("model", it.device_name.get()),
        ("firmware", it.sw_version.get()),
        ("hardware", it.hw_version.get()),
    ] {
        if let Some(v) = value {
            out.fact(key, v.trim());
        }
    }
}

/// Decodes a result of [`Conn::fetch_all`] into `T`.
fn decoded<T: serde::de::DeserializeOwned>(
    t: Timed<Fetched<serde_json::Value>>,
    method: &str,
) -> Timed<Fetched<T>> {
    let result = t.result.and_then(|f| match f {
        Fetched::Data(v) => client::decode_result(method, v).map(Fetched::Data),
        Fetched::NeedsLogin => Ok(Fetched::NeedsLogin),
    });
    Timed { name: t.name, elapsed: t.elapsed, result }
}

/// `GetBatteryState`: a method error means "no battery" (LinkHubs), not a failed scrape,
/// and is kept as a static fact; the MiFi's `GetSystemStatus` battery fields fill in what
/// it lacks.
fn battery(
    out: &mut Scrape,
    conn: &mut Conn<'_>,
    read: Option<Timed<Fetched<BatteryState>>>,
    status: Option<&SystemStatus>,
) {
    let from_status = status.and_then(Battery::from_status);
    let Some(t) = read else {
        match from_status {
            Some(b) if b.percent.is_some() => {
                out.note("battery: from GetSystemStatus (chg_state, bat_cap, bat_level)");
                let t = Timed { name: "battery", elapsed: Duration::ZERO, result: Ok(b) };
                if let Some(b) = out.record(t) {
                    metrics::battery(out, &b);
                }
            }
            Some(b) => {
                out.note("battery: GetBatteryState is not supported (cached)");
                metrics::battery(out, &b);
            }
            None => out.note("battery: GetBatteryState is not supported (cached)"),
        }
        return;
    };
    let battery = match t.result {
        Err(err) if client::method_error(&err).is_some() => {
            out.note(format!("battery: GetBatteryState not available ({err:#})"));
            conn.statics_mut().no_battery = Some(std::time::Instant::now());
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
    fn static_ttl_and_device_concurrency_are_checked() {
        use argh::FromArgs;
        for (s, secs) in [("10m", 600), ("0s", 0), ("1h", 3600), ("30s", 30)] {
            assert_eq!(s.parse::<StaticTtl>().unwrap().0, Duration::from_secs(secs), "{s}");
        }
        for s in ["", "10", "25h", "1d", "-1m"] {
            assert!(s.parse::<StaticTtl>().is_err(), "{s}");
        }
        assert_eq!(StaticTtl(Duration::from_secs(600)).to_string(), "10m");
        for n in ["0", "9"] {
            let flags =
                Flags::from_args(&["linkhub-exporter"], &["--device-concurrency", n]).unwrap();
            let err = Linkhub::new(flags).unwrap_err();
            assert!(err.to_string().contains("--device-concurrency"), "{err}");
        }
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        use argh::FromArgs;
        let flags = Flags::from_args(&["linkhub-exporter"], &[]).unwrap();
        assert_eq!(flags.target.to_string(), "http://192.168.1.1");
        assert_eq!(flags.username, "admin");
        assert_eq!(flags.login_backoff.0, Duration::from_secs(600));
        assert_eq!(flags.device_concurrency, 2);
        assert_eq!(flags.static_ttl.0, Duration::from_secs(600));
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
