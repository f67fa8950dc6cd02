//! mm-exporter: every cellular modem that ModemManager manages, over D-Bus.
//!
//! One scrape reads ModemManager's `GetManagedObjects` (every modem and all its interfaces in
//! one call, always fresh), then `Properties.GetAll` on each bearer and SIM. Modems are
//! labelled by `device_id` (`DeviceIdentifier`), never by their object path index, which
//! grows on every replug. A watcher task follows `InterfacesAdded`/`NameOwnerChanged` only to
//! call `Signal.Setup` on modems that appear later ([`setup`]).
//!
//! Layout: [`dbus`] names and proxies, [`fetch`] the calls, [`decode`] untyped D-Bus values →
//! [`model`] types, [`metrics`] pure render functions.

pub mod dbus;
pub mod decode;
pub mod enums;
pub mod fetch;
pub mod metrics;
pub mod model;
pub mod setup;

use std::{
    collections::HashSet,
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use exporter_core::{Exporter, ExporterInfo, Scrape, Timed, timed};
use zbus::Connection;

use crate::{metrics::RenderOptions, model::Snapshot, setup::SignalSetup};

/// The binary's identity for exporter-core.
pub const INFO: ExporterInfo = ExporterInfo {
    binary: "mm-exporter",
    env_prefix: "MM",
    version: env!("CARGO_PKG_VERSION"),
    default_port: 9539,
};

#[derive(argh::FromArgs, argh::ArgsInfo, Debug, Clone, PartialEq, Eq)]
/// Prometheus exporter for cellular modems managed by ModemManager.
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
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            bus_address: None,
            signal_rate: 10,
            expose_identifiers: false,
            expose_location: false,
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
    flags: Flags,
    bus: Arc<Bus>,
    setup: Arc<SignalSetup>,
    watcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ModemManager {
    /// An exporter for `flags`; connects on first use.
    pub fn new(flags: Flags) -> ModemManager {
        let bus = Arc::new(Bus::new(flags.bus_address.clone()));
        let setup = Arc::new(SignalSetup::new(flags.signal_rate));
        ModemManager { flags, bus, setup, watcher: std::sync::Mutex::new(None) }
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

    fn render_options(&self) -> RenderOptions {
        RenderOptions {
            expose_identifiers: self.flags.expose_identifiers,
            expose_location: self.flags.expose_location,
        }
    }

    /// Reads everything for `target` within `deadline`, recording sub-collector outcomes.
    async fn fetch(&self, target: &Target, out: &mut Scrape) -> anyhow::Result<Snapshot> {
        let deadline = inner_deadline(out.deadline());
        let conn = tokio::time::timeout_at(deadline.into(), self.bus.connection())
            .await
            .map_err(|_| anyhow::anyhow!("connect to D-Bus: scrape deadline exceeded"))??;
        let (objects, version) = tokio::join!(
            timed("modems", deadline, fetch::managed_objects(&conn)),
            timed("daemon", deadline, fetch::daemon_version(&conn)),
        );
        let objects_elapsed = objects.elapsed;
        let objects = match objects.result {
            Ok(objects) => {
                out.record(Timed { name: "modems", elapsed: objects_elapsed, result: Ok(()) });
                objects
            }
            Err(err) => {
                if conn.is_closed() {
                    self.bus.forget(&conn).await;
                }
                return Err(err);
            }
        };
        let daemon_version = out.record(version).flatten();
        let mut notes = Vec::new();
        let mut modems = fetch::modems(&objects, &mut notes);
        let present: HashSet<String> = modems.iter().map(|m| m.path.clone()).collect();
        self.setup.retain(&present);
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
        let calls = modems.iter().map(|m| details(&conn, m));
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
        for (m, d) in modems.iter_mut().zip(results) {
            notes.extend(d.notes);
            m.bearers = d.bearers;
            m.sims = d.sims;
            bearer_err = bearer_err.or(d.bearer_err);
            sim_err = sim_err.or(d.sim_err);
            match d.location {
                Ok(fetch::LocationFetch::NotNeeded) => {}
                Ok(fetch::LocationFetch::Got(loc)) => m.location = Some(loc),
                Ok(fetch::LocationFetch::Unauthorized) => {
                    notes.push(format!("{}: Location.GetLocation refused by polkit", m.path));
                }
                Err(e) => location_err = location_err.or(Some(e)),
            }
            if self.setup.enabled() && m.signal.is_some() {
                m.signal_setup_success = self.setup.outcome(&m.path);
            }
        }
        out.record(Timed { name: "bearers", elapsed, result: bearer_err.map_or(Ok(()), Err) });
        out.record(Timed { name: "sims", elapsed, result: sim_err.map_or(Ok(()), Err) });
        out.record(Timed { name: "location", elapsed, result: location_err.map_or(Ok(()), Err) });
        flush_notes(out, notes);
        Ok(Snapshot { daemon_version, modems })
    }
}

/// What one modem's second round of calls returned.
struct Details {
    bearers: Vec<model::Bearer>,
    bearer_err: Option<anyhow::Error>,
    sims: Vec<model::Sim>,
    sim_err: Option<anyhow::Error>,
    location: anyhow::Result<fetch::LocationFetch>,
    notes: Vec<String>,
}

/// Bearers, SIMs and (when needed) the 3GPP location of one modem, concurrently.
async fn details(conn: &Connection, m: &model::Modem) -> Details {
    let (mut bearer_notes, mut sim_notes, mut location_notes) =
        (Vec::new(), Vec::new(), Vec::new());
    let ((bearers, bearer_err), (sims, sim_err), location) = tokio::join!(
        fetch::bearers(conn, m, &mut bearer_notes),
        fetch::sims(conn, m, &mut sim_notes),
        fetch::location(conn, m, &mut location_notes),
    );
    let mut notes = bearer_notes;
    notes.extend(sim_notes);
    notes.extend(location_notes);
    Details { bearers, bearer_err, sims, sim_err, location, notes }
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
        self.start_watcher();
        let snapshot = self.fetch(target, out).await?;
        metrics::render(out, &snapshot, self.render_options());
        Ok(())
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

fn flush_notes(out: &mut Scrape, notes: Vec<String>) {
    for n in notes {
        log::debug!(note = n.as_str(); "decode");
        out.note(n);
    }
}
