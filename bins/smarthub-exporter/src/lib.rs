//! smarthub-exporter: a Prometheus exporter for the BT Smart Hub 2 (`HomeHub6DX`).
//!
//! Per scrape it reads, without a login:
//! - `GET /nonAuth/wan_conn.xml` (collector `wan`): the live WAN slot chosen by
//!   `wan_active_idx`, its session, link, bytes and rates, and the DSL line;
//! - `GET /cgi/cgi_basicMyDevice.js` (collector `devices`): the LAN device list and per-device
//!   byte counters;
//! - `GET /cgi/cgi_owl.js` (collector `mesh`): the hub, its discs and the stations they serve;
//! - `GET /cgi/cgi_basicStatus.js` (collector `status`): firmware, serial number and boot
//!   time, only once per `--static-ttl` or after the hub restarted ([`statics`]).
//!
//! The device list and mesh scripts are decoded without running them when they are plain
//! data, as the hub sends them, and otherwise evaluated in a sandboxed QuickJS ([`js`]);
//! `--lan-devices=none` turns both pages, and all JavaScript, off. `cgi_basicStatus.js` is
//! only read for its literals, never run. Module map: [`client`] fetches, [`api`] parses,
//! [`metrics`] renders, [`statics`] caches the slow facts, [`targets`] reads `--config-file`
//! (named hubs) and resolves `/probe?target=`.

pub mod api;
pub mod client;
pub mod js;
pub mod metrics;
pub mod record;
pub mod statics;
pub mod targets;

use std::{
    fmt,
    path::PathBuf,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use argh::{ArgsInfo, FromArgs};
use exporter_core::{
    Exporter, ExporterInfo, ProbeAllow, Scrape, SdTarget, TargetError, TargetInfo, Timed,
    capture::{self, Identifier},
    config::Live,
    timed,
};

use crate::{
    api::{DEVICE_FIELDS, NODE_FIELDS, RATE_FIELDS, STATION_FIELDS},
    client::{HubClient, HubUrl},
    js::{ByteSize, Extract, JsLimits},
    metrics::{DEFAULT_LAN_DEVICES_MAX, LanSelection},
    statics::{Facts, Plan, StaticCache},
    targets::{LanDefaults, Target, Targets},
};

/// What the core needs to know about this binary.
pub const INFO: ExporterInfo = ExporterInfo {
    binary: "smarthub-exporter",
    env_prefix: "SMARTHUB",
    version: env!("CARGO_PKG_VERSION"),
    default_port: 9101,
};

/// The hub's address when neither `--target`, `SMARTHUB_TARGET` nor `SMARTHUB_HOST` is set.
pub const DEFAULT_TARGET: &str = "http://192.168.1.254";

/// WAN status page.
pub const WAN_PATH: &str = "/nonAuth/wan_conn.xml";
/// Device list script.
pub const DEVICES_PATH: &str = "/cgi/cgi_basicMyDevice.js";
/// Mesh (discs and stations) script.
pub const MESH_PATH: &str = "/cgi/cgi_owl.js";
/// Status script: firmware, serial number, uptime.
pub const STATUS_PATH: &str = "/cgi/cgi_basicStatus.js";
/// The default of `--static-ttl`.
pub const DEFAULT_STATIC_TTL: Duration = Duration::from_secs(600);

/// What is read from `cgi_basicMyDevice.js`.
pub const DEVICE_EXTRACTS: &[Extract] = &[
    Extract { global: "known_device_list", fields: DEVICE_FIELDS },
    Extract { global: "rate", fields: RATE_FIELDS },
];
/// What is read from `cgi_owl.js`.
pub const MESH_EXTRACTS: &[Extract] = &[
    Extract { global: "owl_tplg", fields: NODE_FIELDS },
    Extract { global: "owl_station", fields: STATION_FIELDS },
];

/// Exports WAN, DSL line, LAN device and mesh metrics of a BT Smart Hub 2.
#[derive(FromArgs, ArgsInfo, Debug)]
pub struct Flags {
    /// base URL of the hub, e.g. http://192.168.1.254 (the default); when neither this nor
    /// SMARTHUB_TARGET is set, SMARTHUB_HOST of the earlier Go exporter is read (a bare host
    /// or IP there means http://HOST)
    #[argh(option)]
    pub target: Option<HubUrl>,

    /// which LAN devices and mesh clients get series of their own: active (the default,
    /// those connected now), all (every device the hub remembers) or none (the device list
    /// and mesh pages are not fetched, so no JavaScript runs at all)
    #[argh(option)]
    pub lan_devices: Option<LanDevices>,

    /// the same as --lan-devices=none
    #[argh(switch)]
    pub no_lan_devices: bool,

    /// most LAN devices with series of their own, and most mesh clients (default 256);
    /// beyond it the most recently active are kept and the rest counted in
    /// smarthub_lan_devices_dropped
    #[argh(option, default = "DEFAULT_LAN_DEVICES_MAX")]
    pub lan_devices_max: usize,

    /// how long the firmware version, serial number and boot time read from
    /// cgi_basicStatus.js are cached, e.g. 10m (the default), 1h or 30s (0s: every scrape);
    /// they are read again at once when the hub restarted
    #[argh(option, default = "Ttl(DEFAULT_STATIC_TTL)")]
    pub static_ttl: Ttl,

    /// add the hub's serial number to smarthub_info (an identifier; off by default)
    #[argh(switch)]
    pub expose_identifiers: bool,

    /// restrict /probe of addresses that are not named targets (nor --target) to these
    /// networks (CIDR), addresses, host names or *.domain (repeatable; default: any address)
    #[argh(option)]
    pub probe_allow: Vec<String>,

    /// memory limit of the sandboxed JavaScript engine per evaluation, e.g. 16MiB (the
    /// default), 512KiB, 32MB or a plain number of bytes; at least 1MiB
    #[argh(option, default = "JsLimits::default().memory")]
    pub js_memory_limit: ByteSize,

    /// time limit of one JavaScript evaluation, e.g. 1s (the default) or 500ms; an evaluation
    /// never runs past the scrape deadline either
    #[argh(option, default = "Timeout(JsLimits::default().timeout)")]
    pub js_timeout: Timeout,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            target: None,
            lan_devices: None,
            no_lan_devices: false,
            lan_devices_max: DEFAULT_LAN_DEVICES_MAX,
            static_ttl: Ttl(DEFAULT_STATIC_TTL),
            expose_identifiers: false,
            probe_allow: Vec::new(),
            js_memory_limit: JsLimits::default().memory,
            js_timeout: Timeout(JsLimits::default().timeout),
        }
    }
}

impl Flags {
    /// `--lan-devices`, with `--no-lan-devices` as `none`; an error when they contradict.
    pub fn lan_mode(&self) -> anyhow::Result<LanDevices> {
        match (self.lan_devices, self.no_lan_devices) {
            (None, false) => Ok(LanDevices::Active),
            (None, true) | (Some(LanDevices::None), _) => Ok(LanDevices::None),
            (Some(mode), false) => Ok(mode),
            (Some(mode), true) => bail!(
                "--no-lan-devices contradicts --lan-devices={mode} (--no-lan-devices means \
                 --lan-devices=none; give one of them)"
            ),
        }
    }
}

/// `--lan-devices`: which LAN devices and mesh clients get series of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanDevices {
    /// Those the hub reports as connected now.
    Active,
    /// Every device the hub remembers.
    All,
    /// None: the device list and mesh pages are not fetched.
    None,
}

impl LanDevices {
    /// The render selection, `None` when the pages are not read at all.
    pub fn selection(self, max: usize) -> Option<LanSelection> {
        match self {
            LanDevices::Active => Some(LanSelection { include_inactive: false, max }),
            LanDevices::All => Some(LanSelection { include_inactive: true, max }),
            LanDevices::None => None,
        }
    }
}

impl FromStr for LanDevices {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<LanDevices> {
        match s.trim() {
            "active" => Ok(LanDevices::Active),
            "all" => Ok(LanDevices::All),
            "none" => Ok(LanDevices::None),
            other => bail!("invalid LAN device selection {other:?} (use active, all or none)"),
        }
    }
}

impl fmt::Display for LanDevices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LanDevices::Active => "active",
            LanDevices::All => "all",
            LanDevices::None => "none",
        })
    }
}

/// The exporter: one hub by default (`--target`), the named hubs of `--config-file`, and any
/// hub `--probe-allow` permits through `/probe?target=`.
#[derive(Debug)]
pub struct Smarthub {
    /// For `--target` and named hubs.
    client: HubClient,
    /// For ad-hoc addresses: refuses addresses outside `--probe-allow` when connecting.
    adhoc_client: HubClient,
    allow: ProbeAllow,
    /// `--target` (or `SMARTHUB_TARGET`, `SMARTHUB_HOST`) when given.
    flag_target: Option<HubUrl>,
    /// The LAN settings of the flags: for `--target`, ad-hoc hubs, and what entries leave out.
    lan: LanDefaults,
    config_file: Option<PathBuf>,
    named: Live<Targets>,
    expose_identifiers: bool,
    statics: StaticCache,
    js: JsLimits,
    /// One JavaScript evaluation at a time, process-wide (see [`js::new_gate`]).
    js_gate: Arc<tokio::sync::Semaphore>,
}

impl Smarthub {
    /// Builds the exporter from its flags and `--config-file`; reads `SMARTHUB_HOST` as
    /// described on `--target`.
    pub fn new(flags: Flags, config_file: Option<PathBuf>) -> anyhow::Result<Smarthub> {
        let http = exporter_core::client::http_client(&INFO).context("build the HTTP client")?;
        let host = std::env::var("SMARTHUB_HOST").ok();
        Smarthub::with_config(flags, config_file, host.as_deref(), http)
    }

    /// Builds the exporter without a config file, with a given HTTP client and `SMARTHUB_HOST`
    /// value (for tests).
    pub fn with_client(
        flags: Flags,
        smarthub_host: Option<&str>,
        http: reqwest::Client,
    ) -> anyhow::Result<Smarthub> {
        Smarthub::with_config(flags, None, smarthub_host, http)
    }

    /// Builds the exporter with a config file, a given HTTP client for configured hubs and a
    /// `SMARTHUB_HOST` value (for tests).
    pub fn with_config(
        flags: Flags,
        config_file: Option<PathBuf>,
        smarthub_host: Option<&str>,
        http: reqwest::Client,
    ) -> anyhow::Result<Smarthub> {
        let lan = LanDefaults { mode: flags.lan_mode()?, max: flags.lan_devices_max };
        let allow = ProbeAllow::parse(&flags.probe_allow).context("--probe-allow")?;
        let adhoc_http = if allow.is_empty() {
            http.clone()
        } else {
            exporter_core::client::http_client_restricted(&INFO, Arc::new(allow.clone()))
                .context("build the HTTP client for --probe-allow")?
        };
        let named = match &config_file {
            Some(path) => Targets::load(path, lan)?,
            None => Targets::default(),
        };
        Ok(Smarthub {
            client: HubClient::new(http),
            adhoc_client: HubClient::new(adhoc_http),
            allow,
            flag_target: explicit_target(flags.target, smarthub_host)?,
            lan,
            config_file,
            named: Live::new(named),
            expose_identifiers: flags.expose_identifiers,
            statics: StaticCache::new(flags.static_ttl.0),
            js: JsLimits { memory: flags.js_memory_limit, timeout: flags.js_timeout.0 },
            js_gate: js::new_gate(),
        })
    }

    /// The hub of `/metrics`: `--target` when given; else the one named hub of a config file
    /// with exactly one; else, without a config file, the default address.
    fn default_hub(&self, named: &Targets) -> Option<Target> {
        if let Some(url) = &self.flag_target {
            return Some(Target::address(url.clone(), self.lan, false));
        }
        if self.config_file.is_some() {
            let mut only = named.named.values();
            return match (only.next(), only.next()) {
                (Some(n), None) => Some(Target::named(n)),
                _ => None,
            };
        }
        let url = DEFAULT_TARGET.parse().ok()?;
        Some(Target::address(url, self.lan, false))
    }

    fn client_for(&self, target: &Target) -> &HubClient {
        if target.adhoc { &self.adhoc_client } else { &self.client }
    }

    /// `cgi_basicStatus.js`: the facts, stamped with the clocks of the reading.
    async fn status(&self, target: &Target, deadline: Instant) -> anyhow::Result<Facts> {
        let page = self
            .client_for(target)
            .get(&target.url, STATUS_PATH, deadline)
            .await
            .context("GET /cgi/cgi_basicStatus.js")?;
        let read_at = Instant::now();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let parsed = api::parse_basic_status(&page.body);
        let serial = parsed.as_ref().ok().and_then(|s| s.serial.clone());
        page.pending
            .record(&serial.map(|s| (Identifier::Serial, s)).into_iter().collect::<Vec<_>>());
        let status = parsed.context("read cgi_basicStatus.js")?;
        let boot_time = status.sysuptime.map(|up| (wall - up as f64).round());
        Ok(Facts { status, read_at, boot_time })
    }

    /// Records a read of `cgi_basicStatus.js` as the `status` collector and caches it.
    fn record_status(&self, out: &mut Scrape, hub: &str, read: Timed<Facts>) {
        match &read.result {
            Ok(facts) => self.statics.store(hub, facts.clone()),
            Err(e) => self.statics.failed(hub, format!("{e:#}"), Instant::now()),
        }
        out.record(read);
    }

    /// The `status` collector of one scrape: read the page when due (concurrently with the
    /// other pages, in `read`), or when `wan` shows the hub restarted; otherwise the cache.
    async fn status_after_wan(
        &self,
        out: &mut Scrape,
        target: &Target,
        plan: Plan,
        read: Option<Timed<Facts>>,
        wan_uptime: Option<(u64, Instant)>,
    ) {
        let key = target.url.as_str();
        if let Some(read) = read {
            self.record_status(out, key, read);
        } else if let Some((up, at)) = wan_uptime
            && self.statics.restarted(key, up, at)
        {
            out.note(format!(
                "status: wan_conn.xml's sysuptime {up} does not match the cached boot: the hub \
                 restarted, reading cgi_basicStatus.js again"
            ));
            self.statics.forget(key);
            let read = timed("status", out.deadline(), self.status(target, out.deadline())).await;
            self.record_status(out, key, read);
        } else {
            match plan {
                Plan::Cached { age } => {
                    let what =
                        self.statics.facts(key).map(|f| cached_values(&f, self.expose_identifiers));
                    out.note(format!(
                        "status: not read this scrape; from the cache of cgi_basicStatus.js, read \
                         {:.0}s ago (--static-ttl {}): {}",
                        age.as_secs_f64(),
                        Ttl(self.statics.ttl()),
                        what.unwrap_or_else(|| "nothing".to_owned())
                    ));
                }
                Plan::Wait { error, retry_in } => {
                    out.record(Timed::<()> {
                        name: "status",
                        elapsed: Duration::ZERO,
                        result: Err(anyhow::anyhow!(
                            "{error} (the last read failed; asked again in {:.0}s)",
                            retry_in.as_secs_f64()
                        )),
                    });
                }
                Plan::Read => {}
            }
        }
        if let Some(facts) = self.statics.facts(key) {
            if let Some(fw) = &facts.status.firmware {
                out.fact("firmware", fw.clone());
            }
            if let Some(t) = &facts.status.firmware_update_time {
                out.fact("firmware installed", t.clone());
            }
            if self.expose_identifiers
                && let Some(serial) = &facts.status.serial
            {
                out.fact("serial", serial.clone());
            }
            let view = metrics::HubFacts {
                status: &facts.status,
                boot_time: facts.boot_time,
                age_seconds: facts.read_at.elapsed().as_secs_f64().floor(),
            };
            metrics::hub_facts(out, &view, self.expose_identifiers);
        }
    }

    /// `wan_conn.xml`, and when it arrived (for the restart check).
    async fn wan(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> anyhow::Result<(api::WanConn, Instant)> {
        let page = self
            .client_for(target)
            .get(&target.url, WAN_PATH, deadline)
            .await
            .context("GET /nonAuth/wan_conn.xml")?;
        let at = Instant::now();
        let parsed = api::parse_wan_xml(&page.body);
        page.pending.record(&[]);
        Ok((parsed.context("parse wan_conn.xml")?, at))
    }

    async fn devices(&self, target: &Target, deadline: Instant) -> anyhow::Result<api::DeviceList> {
        let page = self
            .client_for(target)
            .get(&target.url, DEVICES_PATH, deadline)
            .await
            .context("GET /cgi/cgi_basicMyDevice.js")?;
        let (body, pending) = (page.body, page.pending);
        let list = self.script(body, DEVICES_SCRIPT, deadline).await;
        let mut names = Vec::new();
        for d in list.iter().flat_map(|l| &l.devices) {
            names.push((Identifier::Name, d.hostname.clone()));
            names.push((Identifier::Name, d.name.clone()));
        }
        pending.record(&names);
        list
    }

    async fn mesh(&self, target: &Target, deadline: Instant) -> anyhow::Result<api::Mesh> {
        let page = self
            .client_for(target)
            .get(&target.url, MESH_PATH, deadline)
            .await
            .context("GET /cgi/cgi_owl.js")?;
        let (body, pending) = (page.body, page.pending);
        let mesh = self.script(body, MESH_SCRIPT, deadline).await;
        let mut found = Vec::new();
        if let Ok(m) = &mesh {
            for n in &m.nodes {
                found.push((Identifier::Name, n.name.clone()));
                found.push((Identifier::Serial, n.serial.clone()));
                found.extend(n.ssids.iter().map(|s| (Identifier::Ssid, s.clone())));
            }
            for s in &m.stations {
                found.push((Identifier::Name, s.name.clone()));
                found.push((Identifier::Name, s.alias.clone()));
            }
        }
        pending.record(&found);
        mesh
    }

    /// Reads a hub script: decoded right here when it is plain data and at most
    /// [`INLINE_DECODE_BYTES`] long ([`js::decode`]), otherwise on the blocking pool, one
    /// at a time: decoded there when it is plain data, else evaluated in the sandbox.
    async fn script<T: Send + 'static>(
        &self,
        body: String,
        script: Script<T>,
        deadline: Instant,
    ) -> anyhow::Result<T> {
        let inline = body.len() <= INLINE_DECODE_BYTES;
        if inline && let Some(lists) = js::decode(&body, script.extracts) {
            return (script.read)(&lists);
        }
        let limits = self.js;
        let js_deadline = js_deadline(deadline);
        let permit =
            self.js_gate.clone().acquire_owned().await.context("javascript gate closed")?;
        js::run_blocking(permit, move || match inline {
            // Not plain data: the decoder said so already.
            true => script.evaluate(&body, limits, js_deadline),
            false => script.decode_or_evaluate(&body, limits, js_deadline),
        })
        .await
    }
}

/// The longest page decoded on the async thread, where it arrived, like the rest of a
/// scrape's parsing. Decoding is linear (a 229 KB page of 500 devices took 1.3 ms on the
/// benchmark machine, against 17 ms in QuickJS), so this bounds how long it holds the thread;
/// the hub's page is about 20 KB with a few dozen devices. Longer pages go to the blocking
/// pool.
const INLINE_DECODE_BYTES: usize = 128 << 10;

/// A hub script the exporter reads: the lists it takes out and what it makes of them.
struct Script<T> {
    /// The page, for messages.
    name: &'static str,
    extracts: &'static [Extract],
    /// Turns the lists (one per extract) into the collector's data.
    read: fn(&[Vec<js::Record>]) -> anyhow::Result<T>,
}

impl<T> Script<T> {
    /// Decodes `body` when it is plain data, else evaluates it in the sandbox (blocking).
    fn decode_or_evaluate(
        &self,
        body: &str,
        limits: JsLimits,
        deadline: Instant,
    ) -> anyhow::Result<T> {
        match js::decode(body, self.extracts) {
            Some(lists) => (self.read)(&lists),
            None => self.evaluate(body, limits, deadline),
        }
    }

    /// Evaluates `body` in the sandbox (blocking) and reads its lists.
    fn evaluate(&self, body: &str, limits: JsLimits, deadline: Instant) -> anyhow::Result<T> {
        let lists = js::evaluate(body, self.extracts, limits, deadline)
            .with_context(|| format!("run {}", self.name))?;
        (self.read)(&lists)
    }
}

/// `cgi_basicMyDevice.js`.
const DEVICES_SCRIPT: Script<api::DeviceList> =
    Script { name: "cgi_basicMyDevice.js", extracts: DEVICE_EXTRACTS, read: read_devices };

/// `cgi_owl.js`.
const MESH_SCRIPT: Script<api::Mesh> =
    Script { name: "cgi_owl.js", extracts: MESH_EXTRACTS, read: read_mesh };

fn read_devices(lists: &[Vec<js::Record>]) -> anyhow::Result<api::DeviceList> {
    match lists {
        [devices, rates] => api::device_list(devices, rates).context("read cgi_basicMyDevice.js"),
        _ => bail!("cgi_basicMyDevice.js: unexpected extraction result"),
    }
}

fn read_mesh(lists: &[Vec<js::Record>]) -> anyhow::Result<api::Mesh> {
    match lists {
        [nodes, stations] => api::mesh(nodes, stations).context("read cgi_owl.js"),
        _ => bail!("cgi_owl.js: unexpected extraction result"),
    }
}

/// Reads `cgi_basicMyDevice.js`: decoded when it is plain data, else evaluated in the sandbox
/// (blocking).
pub fn devices_from_js(
    body: &str,
    limits: JsLimits,
    deadline: Instant,
) -> anyhow::Result<api::DeviceList> {
    DEVICES_SCRIPT.decode_or_evaluate(body, limits, deadline)
}

/// Reads `cgi_owl.js`: decoded when it is plain data, else evaluated in the sandbox (blocking).
pub fn mesh_from_js(body: &str, limits: JsLimits, deadline: Instant) -> anyhow::Result<api::Mesh> {
    MESH_SCRIPT.decode_or_evaluate(body, limits, deadline)
}

/// The interrupt instant for a scrape deadline: a moment earlier, to report the reason.
fn js_deadline(deadline: Instant) -> Instant {
    deadline.checked_sub(Duration::from_millis(25)).unwrap_or(deadline)
}

impl Exporter for Smarthub {
    const NAMESPACE: &'static str = "smarthub";
    const DESCRIPTION: &'static str =
        "Prometheus exporter for the BT Smart Hub 2: WAN, DSL line, LAN devices and mesh discs";
    type Target = Target;

    fn default_target(&self) -> Option<Target> {
        self.default_hub(&self.named.load())
    }

    /// A name of `--config-file`, an address one of its entries or `--target` has (that
    /// entry), or another address: ad hoc, with the flags' settings, if `--probe-allow`
    /// permits it.
    async fn resolve_target(&self, raw: &str) -> Result<Target, TargetError> {
        let named = self.named.load();
        if let Some(n) = named.named.get(raw.trim()) {
            return Ok(Target::named(n));
        }
        let url: HubUrl = raw.parse().map_err(TargetError::Invalid)?;
        if let Some(n) = named.by_address(&url) {
            return Ok(Target::named(n));
        }
        if let Some(default) = self.default_hub(&named).filter(|d| d.url == url) {
            return Ok(default);
        }
        self.allow.check(url.host()).await.map_err(TargetError::NotAllowed)?;
        Ok(Target::address(url, self.lan, true))
    }

    async fn probe(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<()> {
        let d = out.deadline();
        // A capture reads every page, so that its replay needs no cache to match it.
        let plan = match capture::active() {
            true => Plan::Read,
            false => self.statics.plan(target.url.as_str(), Instant::now()),
        };
        let read_status = plan == Plan::Read;
        let lan = target.lan;
        let (wan, status, devices, mesh) = tokio::join!(
            timed("wan", d, self.wan(target, d)),
            async {
                match read_status {
                    true => Some(timed("status", d, self.status(target, d)).await),
                    false => None,
                }
            },
            async {
                match lan {
                    Some(_) => Some(timed("devices", d, self.devices(target, d)).await),
                    None => None,
                }
            },
            async {
                match lan {
                    Some(_) => Some(timed("mesh", d, self.mesh(target, d)).await),
                    None => None,
                }
            },
        );
        let forbidden = [
            refused(&wan),
            status.as_ref().is_some_and(refused),
            devices.as_ref().is_some_and(refused),
            mesh.as_ref().is_some_and(refused),
        ]
        .contains(&true);
        let mut wan_uptime = None;
        if let Some((w, at)) = out.record(wan) {
            note_slot(out, &w);
            metrics::wan(out, &w);
            wan_uptime = w.sysuptime.map(|up| (up, at));
        }
        self.status_after_wan(out, target, plan, status, wan_uptime).await;
        if let Some(sel) = lan {
            if let Some(list) = devices.and_then(|t| out.record(t)) {
                metrics::devices(out, &list, sel);
            }
            if let Some(m) = mesh.and_then(|t| out.record(t)) {
                if let Some(model) = m.nodes.iter().find(|n| n.parent.is_empty()).map(|n| &n.model)
                    && !model.is_empty()
                {
                    out.fact("model", format!("BT Smart Hub 2 ({model} in cgi_owl.js)"));
                }
                metrics::mesh(out, &m, sel);
            }
        }
        if forbidden {
            out.quirk(
                "needs the Referer header (403 without it): the hub answered 403 although the \
                 exporter sent one naming a hub page",
            );
        }
        Ok(())
    }

    /// Re-reads `--config-file`; a bad file keeps the running configuration.
    async fn reload(&self) -> anyhow::Result<()> {
        let Some(path) = &self.config_file else { return Ok(()) };
        let targets = Targets::load(path, self.lan)?;
        self.named.store(targets);
        Ok(())
    }

    fn targets(&self) -> Vec<TargetInfo> {
        self.named
            .load()
            .named
            .values()
            .map(|n| TargetInfo {
                name: n.name.clone(),
                settings: vec![
                    ("address".to_owned(), n.url.to_string()),
                    ("lan_devices".to_owned(), n.lan.mode.to_string()),
                    ("lan_devices_max".to_owned(), n.lan.max.to_string()),
                ],
                labels: n.labels.clone(),
            })
            .collect()
    }

    async fn sd_targets(&self) -> anyhow::Result<Vec<SdTarget>> {
        Ok(self
            .named
            .load()
            .named
            .values()
            .map(|n| SdTarget { target: n.name.clone(), labels: n.labels.clone() })
            .collect())
    }
}

/// The cached values a scrape shows, for the `&debug=true` trace: each with its value
/// (the serial number only with `--expose-identifiers`).
fn cached_values(f: &Facts, expose_identifiers: bool) -> String {
    let mut parts = Vec::new();
    if let Some(fw) = &f.status.firmware {
        parts.push(format!("firmware {fw:?}"));
    }
    if let Some(t) = &f.status.firmware_update_time {
        parts.push(format!("firmware_update_time {t:?}"));
    }
    if let Some(boot) = f.boot_time {
        parts.push(format!(
            "boot time {boot:.0} (sysuptime {} then)",
            f.status.sysuptime.unwrap_or(0)
        ));
    }
    if f.status.serial.is_some() {
        parts.push(if expose_identifiers {
            "serial".to_owned()
        } else {
            "serial (not shown)".to_owned()
        });
    }
    if parts.is_empty() { "no values".to_owned() } else { parts.join(", ") }
}

/// Whether a collector failed on the hub's 403.
fn refused<T>(t: &Timed<T>) -> bool {
    t.result.as_ref().err().is_some_and(client::is_forbidden)
}

fn note_slot(out: &mut Scrape, w: &api::WanConn) {
    let kind = metrics::slot_type(w.slot);
    let source = if w.slot_from_hub {
        "wan_active_idx"
    } else {
        "the fallback rule (no valid wan_active_idx)"
    };
    out.note(format!("live WAN slot {} ({kind}) from {source}", w.slot));
    out.quirk(format!("active WAN slot {} ({kind}), from {source}", w.slot));
    let state = if w.session.connected() { "connected" } else { "not connected" };
    out.fact("wan", format!("slot {} ({kind}), {state}", w.slot));
    if !w.session.connected() {
        out.quirk(format!(
            "the live WAN slot {} ({kind}) is not connected: session state {:?}",
            w.slot, w.session.state
        ));
    }
}

/// `--target` (flag or `SMARTHUB_TARGET`), else `SMARTHUB_HOST`, else the default.
pub fn resolve_target(flag: Option<HubUrl>, smarthub_host: Option<&str>) -> anyhow::Result<HubUrl> {
    match explicit_target(flag, smarthub_host)? {
        Some(url) => Ok(url),
        None => DEFAULT_TARGET.parse(),
    }
}

/// `--target` (flag or `SMARTHUB_TARGET`), else `SMARTHUB_HOST`, when one is given.
fn explicit_target(
    flag: Option<HubUrl>,
    smarthub_host: Option<&str>,
) -> anyhow::Result<Option<HubUrl>> {
    if let Some(t) = flag {
        return Ok(Some(t));
    }
    match smarthub_host.filter(|h| !h.trim().is_empty()) {
        Some(host) => Ok(Some(host.parse().context("SMARTHUB_HOST")?)),
        None => Ok(None),
    }
}

/// A duration given as `1s`, `500ms`, `1.5s`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl FromStr for Timeout {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Timeout> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 =
            num.parse().with_context(|| format!("invalid duration {s:?} (e.g. 1s or 500ms)"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "" => bail!("duration {s:?} needs a unit (ms, s or m)"),
            other => bail!("invalid duration unit {other:?} in {s:?} (use ms, s or m)"),
        };
        if !(0.01..=600.0).contains(&secs) {
            bail!("duration {s:?} must be between 10ms and 10m");
        }
        Ok(Timeout(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) { write!(f, "{}s", ms / 1000) } else { write!(f, "{ms}ms") }
    }
}

/// The `--static-ttl` duration (exporter-core's, shared by every exporter).
pub use exporter_core::config::Ttl;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn target_resolution_order() {
        let flag: HubUrl = "http://10.0.0.1".parse().unwrap();
        assert_eq!(resolve_target(Some(flag.clone()), Some("10.0.0.2")).unwrap(), flag);
        assert_eq!(resolve_target(None, Some("10.0.0.2")).unwrap().as_str(), "http://10.0.0.2");
        assert_eq!(resolve_target(None, None).unwrap().as_str(), DEFAULT_TARGET);
        assert_eq!(resolve_target(None, Some(" ")).unwrap().as_str(), DEFAULT_TARGET);
        let err = format!("{:#}", resolve_target(None, Some("ftp://x")).unwrap_err());
        assert!(err.contains("SMARTHUB_HOST"), "{err}");
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!("1s".parse::<Timeout>().unwrap().0, Duration::from_secs(1));
        assert_eq!("500ms".parse::<Timeout>().unwrap().0, Duration::from_millis(500));
        assert_eq!("1.5s".parse::<Timeout>().unwrap().0, Duration::from_millis(1500));
        assert!("1".parse::<Timeout>().is_err());
        assert!("0s".parse::<Timeout>().is_err());
        assert!("1h".parse::<Timeout>().is_err());
        assert_eq!(Timeout(Duration::from_millis(500)).to_string(), "500ms");
    }

    #[test]
    fn ttls_parse() {
        assert_eq!("10m".parse::<Ttl>().unwrap().0, Duration::from_secs(600));
        assert_eq!("1h".parse::<Ttl>().unwrap().0, Duration::from_secs(3600));
        assert_eq!("0s".parse::<Ttl>().unwrap().0, Duration::ZERO);
        for bad in ["10", "1d", "25h", "-1m", "m", "99999999999999999999h"] {
            assert!(bad.parse::<Ttl>().is_err(), "{bad}");
        }
        assert_eq!(Ttl(Duration::from_secs(600)).to_string(), "10m");
        assert_eq!(Ttl(Duration::from_secs(90)).to_string(), "90s");
    }

    #[test]
    fn lan_device_flags() {
        let mode = |args: &[&str]| Flags::from_args(&["x"], args).unwrap().lan_mode();
        assert_eq!(mode(&[]).unwrap(), LanDevices::Active);
        assert_eq!(mode(&["--lan-devices", "all"]).unwrap(), LanDevices::All);
        assert_eq!(mode(&["--lan-devices", "none"]).unwrap(), LanDevices::None);
        assert_eq!(mode(&["--no-lan-devices"]).unwrap(), LanDevices::None);
        assert_eq!(mode(&["--no-lan-devices", "--lan-devices", "none"]).unwrap(), LanDevices::None);
        assert!(mode(&["--no-lan-devices", "--lan-devices", "active"]).is_err());
        assert!(Flags::from_args(&["x"], &["--lan-devices", "some"]).is_err());
        let f = Flags::from_args(&["x"], &[]).unwrap();
        assert_eq!((f.lan_devices_max, f.static_ttl.0), (256, Duration::from_secs(600)));
        assert!(!f.expose_identifiers);
    }

    #[test]
    fn flags_parse_with_defaults_and_values() {
        let f = Flags::from_args(&["smarthub-exporter"], &[]).unwrap();
        assert_eq!(f.js_memory_limit, ByteSize(16 << 20));
        assert_eq!(f.js_timeout.0, Duration::from_secs(1));
        assert!(f.target.is_none() && !f.no_lan_devices);
        let f = Flags::from_args(
            &["smarthub-exporter"],
            &[
                "--target",
                "127.0.0.1:8080",
                "--no-lan-devices",
                "--js-memory-limit",
                "8MiB",
                "--js-timeout",
                "250ms",
            ],
        )
        .unwrap();
        assert_eq!(f.target.unwrap().as_str(), "http://127.0.0.1:8080");
        assert!(f.no_lan_devices);
        assert_eq!(f.js_memory_limit, ByteSize(8 << 20));
        assert_eq!(f.js_timeout.0, Duration::from_millis(250));
        assert!(Flags::from_args(&["x"], &["--js-memory-limit", "1KiB"]).is_err());
    }
}
