//! mm-exporter: every cellular modem that ModemManager manages, over D-Bus.
//!
//! One scrape reads ModemManager's `GetManagedObjects` (every modem and all its interfaces in
//! one call, always fresh), then `Properties.GetAll` on each bearer and SIM. Modems are
//! labelled by `device_id` (`DeviceIdentifier`), never by their object path index, which
//! grows on every replug. A watcher task follows `InterfacesAdded`/`NameOwnerChanged` only to
//! call `Signal.Setup` on modems that appear later ([`setup`]).
//!
//! Layout: [`dbus`] names and proxies, [`fetch`] the calls, [`decode`] untyped D-Bus values →
//! [`model`] types, [`metrics`] pure render functions, [`config`] the `--config-file`.

pub mod capture;
pub mod config;
pub mod dbus;
pub mod decode;
pub mod enums;
pub mod fetch;
pub mod metrics;
pub mod model;
pub mod setup;
pub mod statics;

use std::{
    collections::HashSet,
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use exporter_core::{
    Exporter, ExporterInfo, Scrape, SdTarget, TargetInfo, Timed,
    config::{Labels, Live},
    timed,
};
use zbus::Connection;

use crate::{
    config::{Settings, Source},
    model::Snapshot,
    setup::{Backoff, SignalSetup},
};

/// The binary's identity for exporter-core.
pub const INFO: ExporterInfo = ExporterInfo {
    binary: "mm-exporter",
    env_prefix: "MM",
    version: env!("CARGO_PKG_VERSION"),
    default_port: 9539,
};

#[derive(argh::FromArgs, argh::ArgsInfo, Debug, Clone, PartialEq, Eq)]
/// Prometheus exporter for cellular modems managed by ModemManager. Every flag but the
/// common ones can also be set in --config-file (key = flag name with underscores); a flag
/// given explicitly wins over the file.
pub struct Flags {
    /// d-bus address of the bus ModemManager is on, e.g. unix:path=/run/dbus/system_bus_socket
    /// (default: the system bus)
    #[argh(option)]
    pub bus_address: Option<String>,

    /// seconds between ModemManager's extended signal polls, set with Signal.Setup on every
    /// modem whose rate differs; 0 leaves modems alone (default 10)
    #[argh(option, default = "10")]
    pub signal_rate: u32,

    /// export IMEI, IMSI, ICCID, EID and own phone numbers (personal data)
    #[argh(switch)]
    pub expose_identifiers: bool,

    /// export the GPS position (personal data)
    #[argh(switch)]
    pub expose_location: bool,

    /// how long each SIM's properties (ICCID, IMSI, EID, operator) read with
    /// Properties.GetAll are cached, e.g. 10m (the default), 1h or 30s (0s: every scrape); a
    /// new SIM object or a restarted ModemManager is read at once
    #[argh(option, default = "statics::Ttl(statics::DEFAULT_STATIC_TTL)")]
    pub static_ttl: statics::Ttl,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            bus_address: None,
            signal_rate: 10,
            expose_identifiers: false,
            expose_location: false,
            static_ttl: statics::Ttl(statics::DEFAULT_STATIC_TTL),
        }
    }
}

/// What `/probe?target=` selects: every modem (`all`, the default) or one `device_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Device(String),
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Target> {
        let s = s.trim();
        if s.is_empty() || s == "all" {
            return Ok(Target::All);
        }
        if s.len() > 256 || !s.chars().all(|c| c.is_ascii_graphic()) {
            anyhow::bail!("target must be \"all\" or a modem's device id (DeviceIdentifier)");
        }
        Ok(Target::Device(s.to_owned()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Device(id) => f.write_str(id),
        }
    }
}

/// The lazily opened, shared bus connection: the exporter starts while the bus is down and
/// reconnects after it comes back.
#[derive(Debug)]
pub struct Bus {
    address: Option<String>,
    conn: tokio::sync::Mutex<Option<Connection>>,
}

impl Bus {
    /// A bus at `address` (system bus when `None`), not connected yet.
    pub fn new(address: Option<String>) -> Bus {
        Bus { address, conn: tokio::sync::Mutex::new(None) }
    }

    /// The open connection, or a new one.
    pub async fn connection(&self) -> anyhow::Result<Connection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = dbus::connect(self.address.as_deref()).await.with_context(|| {
            format!("connect to D-Bus at {}", self.address.as_deref().unwrap_or("the system bus"))
        })?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Drops `conn` if it is still the shared one (after it closed).
    pub async fn forget(&self, conn: &Connection) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| c.is_closed() || c.unique_name() == conn.unique_name())
            && conn.is_closed()
        {
            *slot = None;
        }
    }
}

/// The ModemManager exporter.
#[derive(Debug)]
pub struct ModemManager {
    source: Source,
    /// The running settings; a scrape takes one snapshot at its start.
    settings: Live<Settings>,
    bus: Arc<Bus>,
    setup: Arc<SignalSetup>,
    statics: statics::Statics,
    watcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ModemManager {
    /// An exporter for `flags` without a config file; connects on first use.
    pub fn new(flags: Flags) -> ModemManager {
        let source = Source::flags_only(flags);
        let settings = source.merge_flags_only();
        ModemManager::build(source, settings)
    }

    /// An exporter for `flags` and the config file `file` (`explicit`: the long names of the
    /// flags given on the command line or by environment, which win over the file). Fails on
    /// a bad file.
    pub fn with_config(
        flags: Flags,
        file: Option<std::path::PathBuf>,
        explicit: Vec<String>,
    ) -> anyhow::Result<ModemManager> {
        let source = Source { flags, explicit, file };
        let settings = source.load()?;
        Ok(ModemManager::build(source, settings))
    }

    fn build(source: Source, settings: Settings) -> ModemManager {
        let bus = Arc::new(Bus::new(settings.bus_address.clone()));
        let setup = Arc::new(SignalSetup::new(settings.signal_rate));
        let statics = statics::Statics::new(settings.static_ttl);
        ModemManager {
            statics,
            source,
            settings: Live::new(settings),
            bus,
            setup,
            watcher: std::sync::Mutex::new(None),
        }
    }

    /// The settings from the config file that override flag defaults, as `(flag, value
    /// (config file …))`, for the landing page.
    pub fn described_settings(&self) -> Vec<(String, String)> {
        self.settings.load().described.clone()
    }

    /// The same exporter with `backoff` between failed `Signal.Setup` attempts (default: 5 s
    /// doubling up to 10 min). Call before the watcher starts.
    pub fn with_setup_backoff(mut self, backoff: Backoff) -> ModemManager {
        let rate = self.setup.rate();
        self.setup = Arc::new(SignalSetup::with_backoff(rate, backoff));
        self
    }

    /// Tries `Signal.Setup` again at once on every modem where it failed, with the back-off
    /// starting over (part of the exporter's reload).
    pub fn retry_signal_setup(&self) {
        self.setup.reset();
    }

    /// Starts the `Signal.Setup` watcher (idempotent; needs a Tokio runtime). Scrapes start it
    /// too, so calling this is only needed to set up modems before the first scrape.
    pub fn start_watcher(&self) {
        let Ok(mut slot) = self.watcher.lock() else { return };
        if slot.is_none() && self.setup.enabled() && tokio::runtime::Handle::try_current().is_ok() {
            *slot =
                Some(tokio::spawn(setup::watch(Arc::clone(&self.bus), Arc::clone(&self.setup))));
        }
    }

    /// Re-reads the config file and applies it; on error the running settings stay.
    fn apply_reload(&self) -> anyhow::Result<()> {
        let new = self.source.load()?;
        let old = self.settings.load();
        if new.bus_address != old.bus_address {
            log::warn!(
                "bus_address changed in the config file; the new bus is used after a restart"
            );
        }
        self.setup.set_rate(new.signal_rate);
        self.statics.set_ttl(new.static_ttl);
        self.settings.store(new);
        Ok(())
    }

    /// The device ids of the modems ModemManager manages now (as `/probe?target=` selects
    /// them), within `limit`.
    async fn present_device_ids(&self, limit: Duration) -> anyhow::Result<Vec<String>> {
        let list = async {
            let conn = self.bus.connection().await?;
            let objects = fetch::managed_objects(&conn).await?.objects;
            let mut notes = Vec::new();
            anyhow::Ok(fetch::modems(&objects, &mut notes).into_iter().map(|m| m.device_id))
        };
        let ids = tokio::time::timeout(limit, list)
            .await
            .map_err(|_| anyhow::anyhow!("GetManagedObjects: no answer within {limit:?}"))??;
        Ok(ids.collect())
    }

    /// Reads everything for `target` within `deadline`, recording sub-collector outcomes.
    async fn fetch(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<Snapshot> {
        let deadline = inner_deadline(out.deadline());
        let conn = tokio::time::timeout_at(deadline.into(), self.bus.connection())
            .await
            .map_err(|_| anyhow::anyhow!("connect to D-Bus: scrape deadline exceeded"))??;
        let managed = timed("modems", deadline, fetch::managed_objects(&conn)).await;
        let managed_elapsed = managed.elapsed;
        let fetch::Managed { objects, owner } = match managed.result {
            Ok(managed) => {
                out.record(Timed { name: "modems", elapsed: managed_elapsed, result: Ok(()) });
                managed
            }
            Err(err) => {
                self.statics.clear();
                if conn.is_closed() {
                    self.bus.forget(&conn).await;
                }
                return Err(err);
            }
        };
        let cached_version = owner.as_deref().and_then(|o| self.statics.version(o));
        let daemon_version = match (cached_version, owner.as_deref()) {
            (Some((version, age)), Some(o)) => {
                out.note(format!(
                    "daemon: Version {} cached from ModemManager {o}, read {:.0}s ago (read \
                     again when the daemon restarts)",
                    version.as_deref().unwrap_or("(absent)"),
                    age.as_secs_f64()
                ));
                version
            }
            _ => {
                let read = timed("daemon", deadline, fetch::daemon_version(&conn)).await;
                if let (Ok(version), Some(o)) = (&read.result, owner.as_deref()) {
                    self.statics.store_version(o, version.clone());
                }
                out.record(read).flatten()
            }
        };
        let mut notes = Vec::new();
        let mut modems = fetch::modems(&objects, &mut notes);
        let present: HashSet<String> = modems.iter().map(|m| m.path.clone()).collect();
        self.setup.retain(&present);
        if let Some(o) = owner.as_deref() {
            let sims: HashSet<String> = modems
                .iter()
                .flat_map(|m| fetch::sim_paths(m).into_iter().map(|(_, p)| p.to_owned()))
                .collect();
            self.statics.retain_sims(o, &sims);
        }
        if let Target::Device(id) = target {
            modems.retain(|m| &m.device_id == id);
            if modems.is_empty() {
                flush_notes(out, notes);
                anyhow::bail!("no modem with device id {id}");
            }
        }

        // Modems seen before the watcher set them up (or when it could not run).
        for m in &modems {
            if let Some(sig) = &m.signal {
                setup::spawn_ensure(&self.setup, &conn, &m.path, &m.device_id, sig.rate);
            }
        }

        let start = Instant::now();
        let calls = modems.iter().map(|m| details(&conn, m, &self.statics, owner.as_deref()));
        let results = tokio::time::timeout_at(deadline.into(), fetch::join_all(calls)).await;
        let elapsed = start.elapsed();
        let Ok(results) = results else {
            for name in ["bearers", "sims", "location"] {
                out.record(Timed::<()> {
                    name,
                    elapsed,
                    result: Err(anyhow::anyhow!(
                        "scrape deadline exceeded after {:.3}s",
                        elapsed.as_secs_f64()
                    )),
                });
            }
            flush_notes(out, notes);
            return Ok(Snapshot { daemon_version, modems });
        };
        let (mut bearer_err, mut sim_err, mut location_err) = (None, None, None);
        let (mut sims_read, mut sims_cached) = (0, 0);
        for (m, d) in modems.iter_mut().zip(results) {
            notes.extend(d.notes);
            m.bearers = d.bearers;
            m.sims = d.sims.sims;
            bearer_err = bearer_err.or(d.bearer_err);
            sim_err = sim_err.or(d.sims.err);
            sims_read += d.sims.read;
            sims_cached += d.sims.cached.len();
            for (path, age) in d.sims.cached {
                notes.push(format!(
                    "sims: {path} cached, read {:.0}s ago (--static-ttl {})",
                    age.as_secs_f64(),
                    statics::Ttl(self.statics.ttl())
                ));
            }
            match d.location {
                Ok(fetch::LocationFetch::NotNeeded) => {}
                Ok(fetch::LocationFetch::Got(loc)) => m.location = Some(loc),
                Ok(fetch::LocationFetch::Unauthorized) => {
                    notes.push(format!("{}: Location.GetLocation refused by polkit", m.path));
                    out.quirk(format!(
                        "modem {}: Location.GetLocation refused by polkit (Unauthorized)",
                        m.device_id
                    ));
                }
                Err(e) => location_err = location_err.or(Some(e)),
            }
            if self.setup.enabled() && m.signal.is_some() {
                m.signal_setup_success = self.setup.outcome(&m.path);
            }
        }
        out.record(Timed { name: "bearers", elapsed, result: bearer_err.map_or(Ok(()), Err) });
        // The sims collector reports on reads only: a scrape served wholly from the cache
        // leaves it out, as smarthub does for its cached facts.
        if sims_read > 0 || sim_err.is_some() || sims_cached == 0 {
            out.record(Timed { name: "sims", elapsed, result: sim_err.map_or(Ok(()), Err) });
        }
        out.record(Timed { name: "location", elapsed, result: location_err.map_or(Ok(()), Err) });
        flush_notes(out, notes);
        Ok(Snapshot { daemon_version, modems })
    }
}

/// What one modem's second round of calls returned.
struct Details {
    bearers: Vec<model::Bearer>,
    bearer_err: Option<anyhow::Error>,
    sims: fetch::Sims,
    location: anyhow::Result<fetch::LocationFetch>,
    notes: Vec<String>,
}

/// Bearers, SIMs and (when needed) the 3GPP location of one modem, concurrently.
async fn details(
    conn: &Connection,
    m: &model::Modem,
    statics: &statics::Statics,
    owner: Option<&str>,
) -> Details {
    let (mut bearer_notes, mut sim_notes, mut location_notes) =
        (Vec::new(), Vec::new(), Vec::new());
    let ((bearers, bearer_err), sims, location) = tokio::join!(
        fetch::bearers(conn, m, &mut bearer_notes),
        fetch::sims(conn, m, statics, owner, &mut sim_notes),
        fetch::location(conn, m, &mut location_notes),
    );
    let mut notes = bearer_notes;
    notes.extend(sim_notes);
    notes.extend(location_notes);
    Details { bearers, bearer_err, sims, location, notes }
}

impl Exporter for ModemManager {
    const NAMESPACE: &'static str = "modemmanager";
    const DESCRIPTION: &'static str =
        "Prometheus exporter for cellular modems managed by ModemManager";
    type Target = Target;

    fn default_target(&self) -> Option<Target> {
        Some(Target::All)
    }

    async fn probe(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<()> {
        let settings = self.settings.load();
        self.start_watcher();
        let snapshot = self.fetch(target, out).await?;
        describe(out, &snapshot);
        metrics::render(out, &snapshot, settings.render);
        Ok(())
    }

    /// Re-reads `--config-file` (labels, `signal_rate`, `expose_*`) and tries every refused
    /// `Signal.Setup` again at once. A bad file keeps the running settings.
    async fn reload(&self) -> anyhow::Result<()> {
        let applied = self.apply_reload();
        // Even a failed reload is the operator's sign that polkit may have changed.
        self.setup.reset();
        self.start_watcher();
        applied
    }

    /// The modems with `modem_labels` in the config file.
    fn targets(&self) -> Vec<TargetInfo> {
        self.settings
            .load()
            .modem_labels
            .iter()
            .map(|(id, labels)| TargetInfo {
                name: id.clone(),
                settings: vec![("device_id".to_owned(), id.clone())],
                labels: labels.clone(),
            })
            .collect()
    }

    /// One target per modem: every modem ModemManager manages now, and every modem named in
    /// `modem_labels` (so an unplugged one stays a target that answers `modemmanager_up 0`),
    /// each with its labels. An unreachable bus or daemon is an error (Prometheus then keeps
    /// the targets it had).
    async fn sd_targets(&self) -> anyhow::Result<Vec<SdTarget>> {
        let settings = self.settings.load();
        let present = self.present_device_ids(Duration::from_secs(5)).await?;
        let mut ids: Vec<String> = present;
        ids.extend(settings.modem_labels.keys().cloned());
        ids.sort();
        ids.dedup();
        Ok(ids
            .into_iter()
            .map(|id| {
                let labels: Labels = settings.modem_labels.get(&id).cloned().unwrap_or_default();
                SdTarget { target: id, labels }
            })
            .collect())
    }

    async fn shutdown(&self) {
        if let Ok(mut slot) = self.watcher.lock()
            && let Some(handle) = slot.take()
        {
            handle.abort();
        }
    }
}

impl Drop for ModemManager {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.watcher.lock()
            && let Some(handle) = slot.take()
        {
            handle.abort();
        }
    }
}

/// The deadline for D-Bus calls: a little before the scrape's own, so the render step always
/// runs before the core drops the probe.
fn inner_deadline(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - (left / 10).min(Duration::from_millis(200))
}

/// What `check` shows about each modem (facts and quirks), and the identifiers a capture
/// must hide that its generic rules cannot recognise (the 40-hex-digit `DeviceIdentifier`).
fn describe(out: &mut Scrape, snap: &Snapshot) {
    use exporter_core::capture::{self, Identifier};
    if let Some(v) = &snap.daemon_version {
        out.fact("ModemManager version", v.as_str());
    }
    out.fact("modems", snap.modems.len().to_string());
    for m in &snap.modems {
        let id = m.device_id.as_str();
        if capture::active() {
            capture::identifier(Identifier::Serial, id);
            if let Some(base) = id.rsplit_once('-').map(|(b, _)| b) {
                capture::identifier(Identifier::Serial, base);
            }
            let numbers =
                m.equipment_identifier.iter().chain(m.own_numbers.iter().flatten()).chain(
                    m.sims.iter().flat_map(|s| [&s.iccid, &s.imsi, &s.eid].into_iter().flatten()),
                );
            for n in numbers {
                capture::identifier(Identifier::Number, n);
            }
            // GetLocation's coordinates sit inside variants, where the key rules do not look.
            let gps = m.location.as_ref().and_then(|l| l.gps.as_ref());
            for v in gps.into_iter().flat_map(|g| [g.latitude, g.longitude]).flatten() {
                for text in [format!("{v}"), format!("{v:?}")] {
                    if text.len() >= 4 {
                        capture::identifier(Identifier::Position, &text);
                    }
                }
            }
        }
        if let Some(model) = &m.model {
            let model = match &m.manufacturer {
                Some(maker) if !model.starts_with(maker.as_str()) => format!("{maker} {model}"),
                _ => model.clone(),
            };
            out.fact(&format!("modem {id} model"), model);
        }
        if let Some(rev) = &m.revision {
            out.fact(&format!("modem {id} firmware"), rev.as_str());
        }
        if let Some(state) = m.state {
            let name = enums::name_or_code(enums::MODEM_STATE, state);
            out.quirk(format!("modem {id}: state {name}"));
            if state == -1 {
                let reason = m.state_failed_reason.map_or_else(
                    || "no reason given".to_owned(),
                    |r| enums::name_or_code(enums::FAILED_REASON, r),
                );
                out.quirk(format!("modem {id} failed: {reason}"));
            }
        }
        if m.signal_setup_success == Some(false) {
            out.quirk(format!(
                "modem {id}: Signal.Setup failed (polkit refusal is the usual cause; see the log)"
            ));
        }
    }
}

fn flush_notes(out: &mut Scrape, notes: Vec<String>) {
    for n in notes {
        log::debug!(note = n.as_str(); "decode");
        out.note(n);
    }
}
