//! `Signal.Setup(rate)` for every modem, including those that appear later.
//!
//! ModemManager leaves the extended signal dictionaries empty until someone sets a poll
//! rate. The exporter does that once per modem object, only when the modem's `Signal.Rate`
//! differs from `--signal-rate`, and remembers the outcome per object path for the
//! `signal_setup_success` metric. The watcher task reacts to D-Bus signals only
//! (`InterfacesAdded`, `InterfacesRemoved`, `NameOwnerChanged`): it never polls.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use zbus::{Connection, fdo, proxy::CacheProperties};

use crate::{
    Bus,
    dbus::{self, MANAGER_PATH, SERVICE, iface},
    decode, fetch,
};

/// How long one `Signal.Setup` call may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter's `Signal.Setup` bookkeeping, shared by scrapes and the watcher.
#[derive(Debug)]
pub struct SignalSetup {
    rate: u32,
    /// Object path → whether the modem polls at `rate`.
    outcomes: Mutex<HashMap<String, bool>>,
    in_flight: Mutex<HashSet<String>>,
    unauthorized_logged: AtomicBool,
}

impl SignalSetup {
    /// Bookkeeping for `--signal-rate` = `rate` seconds (0 = leave modems alone).
    pub fn new(rate: u32) -> SignalSetup {
        SignalSetup {
            rate,
            outcomes: Mutex::default(),
            in_flight: Mutex::default(),
            unauthorized_logged: AtomicBool::new(false),
        }
    }

    /// Whether the exporter manages poll rates at all.
    pub fn enabled(&self) -> bool {
        self.rate != 0
    }

    /// The recorded outcome for the modem at `path`.
    pub fn outcome(&self, path: &str) -> Option<bool> {
        self.outcomes.lock().ok()?.get(path).copied()
    }

    /// Forgets modems that are gone, so a path never leaks memory or a stale outcome.
    pub fn retain(&self, present: &HashSet<String>) {
        if let Ok(mut map) = self.outcomes.lock() {
            map.retain(|path, _| present.contains(path));
        }
    }

    /// Forgets every outcome (the daemon restarted: every modem is new).
    pub fn clear(&self) {
        if let Ok(mut map) = self.outcomes.lock() {
            map.clear();
        }
    }

    /// Claims `path` for one setup attempt: false when it has an outcome already or an
    /// attempt is running, so each modem object gets exactly one attempt.
    fn try_claim(&self, path: &str) -> bool {
        if !self.enabled() || self.outcome(path).is_some() {
            return false;
        }
        self.in_flight.lock().is_ok_and(|mut set| set.insert(path.to_owned()))
    }

    /// Calls `Signal.Setup(rate)` on the claimed modem at `path` unless its current
    /// `Signal.Rate` already equals `rate`, records the outcome and releases the claim.
    async fn ensure(&self, conn: &Connection, path: &str, device_id: &str, current: Option<u32>) {
        let outcome = if current == Some(self.rate) {
            Some(true)
        } else {
            self.call_setup(conn, path, device_id).await
        };
        if let Some(ok) = outcome {
            self.record(path, ok);
        }
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(path);
        }
    }

    /// `Some(outcome)`, or `None` when the modem vanished meanwhile.
    async fn call_setup(&self, conn: &Connection, path: &str, device_id: &str) -> Option<bool> {
        let call = async {
            let proxy = dbus::SignalProxy::builder(conn)
                .path(path.to_owned())
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            proxy.setup(self.rate).await
        };
        match tokio::time::timeout(SETUP_TIMEOUT, call).await {
            Ok(Ok(())) => {
                log::info!(device_id, rate = self.rate; "Signal.Setup: extended signal polling set up");
                Some(true)
            }
            Ok(Err(err)) if dbus::is_gone(&err) => None,
            Ok(Err(err)) if dbus::is_unauthorized(&err) => {
                if !self.unauthorized_logged.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        device_id, err:% = err;
                        "Signal.Setup refused by polkit: extended signal values stay empty unless the exporter may use org.freedesktop.ModemManager1.Device.Control (logged once)"
                    );
                } else {
                    log::debug!(device_id, err:% = err; "Signal.Setup refused by polkit");
                }
                Some(false)
            }
            Ok(Err(err)) => {
                log::warn!(device_id, err:% = err; "Signal.Setup failed");
                Some(false)
            }
            Err(_) => {
                log::warn!(device_id, timeout_s = SETUP_TIMEOUT.as_secs(); "Signal.Setup timed out");
                Some(false)
            }
        }
    }

    fn record(&self, path: &str, ok: bool) {
        if let Ok(mut map) = self.outcomes.lock() {
            map.insert(path.to_owned(), ok);
        }
    }
}

/// Sets up every modem ModemManager has now (at start and after a daemon restart).
pub async fn setup_all(setup: &Arc<SignalSetup>, conn: &Connection) {
    let Ok(objects) = fetch::managed_objects(conn).await else { return };
    let mut notes = Vec::new();
    for modem in fetch::modems(&objects, &mut notes) {
        if let Some(signal) = &modem.signal {
            spawn_ensure(setup, conn, &modem.path, &modem.device_id, signal.rate);
        }
    }
}

/// Runs [`SignalSetup::ensure`] in its own task.
pub fn spawn_ensure(
    setup: &Arc<SignalSetup>,
    conn: &Connection,
    path: &str,
    device_id: &str,
    current: Option<u32>,
) {
    if !setup.try_claim(path) {
        return;
    }
    let (setup, conn, path, device_id) =
        (Arc::clone(setup), conn.clone(), path.to_owned(), device_id.to_owned());
    tokio::spawn(async move { setup.ensure(&conn, &path, &device_id, current).await });
}

/// Follows ModemManager on the bus for as long as the exporter runs: sets up modems that
/// appear, forgets those that vanish, and starts over when the daemon restarts or the bus
/// connection drops (reconnecting with a back-off of 1 s up to 30 s).
pub async fn watch(bus: Arc<Bus>, setup: Arc<SignalSetup>) {
    if !setup.enabled() {
        return;
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match bus.connection().await {
            Ok(conn) => {
                if let Err(err) = watch_connection(&conn, &setup).await {
                    log::debug!(err:% = format!("{err:#}"); "modem watcher stopped; restarting");
                } else {
                    backoff = Duration::from_secs(1);
                }
                bus.forget(&conn).await;
            }
            Err(err) => log::debug!(err:% = format!("{err:#}"); "modem watcher cannot connect"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn watch_connection(conn: &Connection, setup: &Arc<SignalSetup>) -> anyhow::Result<()> {
    let om = fdo::ObjectManagerProxy::builder(conn)
        .destination(SERVICE)
        .path(MANAGER_PATH)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut added = om.receive_interfaces_added().await?;
    let mut removed = om.receive_interfaces_removed().await?;
    let bus_proxy = fdo::DBusProxy::new(conn).await?;
    let mut owners = bus_proxy.receive_name_owner_changed_with_args(&[(0, SERVICE)]).await?;
    setup_all(setup, conn).await;
    loop {
        tokio::select! {
            signal = next(&mut added) => {
                let Some(signal) = signal else { return Ok(()) };
                let Ok(args) = signal.args() else { continue };
                let path = args.object_path().as_str().to_owned();
                let ifaces: HashMap<String, decode::Props> = args
                    .interfaces_and_properties()
                    .iter()
                    .map(|(name, props)| {
                        let props = props
                            .iter()
                            .filter_map(|(k, v)| Some(((*k).to_owned(), zbus::OwnedVariant::try_from(v).ok()?)))
                            .collect();
                        (name.as_str().to_owned(), props)
                    })
                    .collect();
                let Some(signal_props) = ifaces.get(iface::SIGNAL) else { continue };
                let mut notes = Vec::new();
                let rate = decode::extended_signal(signal_props, &path, &mut notes).rate;
                let device_id = ifaces
                    .get(iface::MODEM)
                    .and_then(|m| decode::modem(&path, &HashMap::from([(iface::MODEM.to_owned(), m.clone())]), &mut notes))
                    .map(|m| m.device_id)
                    .unwrap_or_default();
                spawn_ensure(setup, conn, &path, &device_id, rate);
            }
            signal = next(&mut removed) => {
                let Some(signal) = signal else { return Ok(()) };
                if let Ok(args) = signal.args() {
                    let path = args.object_path().as_str().to_owned();
                    if let Ok(mut map) = setup.outcomes.lock() {
                        map.remove(&path);
                    }
                }
            }
            signal = next(&mut owners) => {
                let Some(signal) = signal else { return Ok(()) };
                let Ok(args) = signal.args() else { continue };
                setup.clear();
                if args.new_owner().is_some() {
                    log::info!("ModemManager (re)started: setting up signal polling again");
                    setup_all(setup, conn).await;
                }
            }
            () = conn.closed() => anyhow::bail!("bus connection closed"),
        }
    }
}

/// The next item of a stream.
pub async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
