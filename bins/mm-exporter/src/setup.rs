//! `Signal.Setup(rate)` for every modem, including those that appear later.
//!
//! ModemManager leaves the extended signal dictionaries empty until someone sets a poll
//! rate. The exporter does that per modem object, only when the modem's `Signal.Rate`
//! differs from `--signal-rate`, and remembers the outcome per object path for the
//! `signal_setup_success` metric. A failed attempt (polkit refusal, timeout, other error) is
//! tried again with exponential back-off ([`Backoff`]: 5 s, 10 s, 20 s, … up to 10 min), and at
//! once when the modem object is replaced (a new path has no history) or on
//! [`SignalSetup::reset`] (the exporter's reload). The watcher task reacts to D-Bus signals
//! (`InterfacesAdded`, `InterfacesRemoved`, `NameOwnerChanged`) and to those retry times only:
//! it never polls modem data.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use zbus::{Connection, fdo, proxy::CacheProperties};

use crate::{
    Bus,
    dbus::{self, MANAGER_PATH, SERVICE, iface},
    decode, fetch,
};

/// How long one `Signal.Setup` call may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time between two retry rounds of the watcher, whatever the back-off says.
const MIN_ROUND_GAP: Duration = Duration::from_secs(1);

/// How long to wait before trying a failed `Signal.Setup` again: `first` after the first
/// failure, doubling with each further failure, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { first: Duration::from_secs(5), max: Duration::from_secs(600) }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1-based).
    pub fn after(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// What the exporter knows about one modem object's poll rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The modem polls at the wanted rate (it already did, or `Signal.Setup` succeeded).
    Done,
    /// The last `failures` attempts failed; the next one is due at `retry_at`.
    Failed { failures: u32, retry_at: Instant },
}

/// The exporter's `Signal.Setup` bookkeeping, shared by scrapes and the watcher.
#[derive(Debug)]
pub struct SignalSetup {
    /// The wanted poll rate in seconds; 0 = leave modems alone. Changes on reload.
    rate: AtomicU32,
    backoff: Backoff,
    /// Object path → outcome.
    outcomes: Mutex<HashMap<String, Outcome>>,
    in_flight: Mutex<HashSet<String>>,
    unauthorized_logged: AtomicBool,
    /// Wakes the watcher when a retry time changed (a failure, or [`Self::reset`]).
    wake: tokio::sync::Notify,
    /// Set by [`Self::reset`] and [`Self::set_rate`]: the watcher goes over every modem.
    resync: AtomicBool,
}

impl SignalSetup {
    /// Bookkeeping for `--signal-rate` = `rate` seconds (0 = leave modems alone), with the
    /// default back-off.
    pub fn new(rate: u32) -> SignalSetup {
        SignalSetup::with_backoff(rate, Backoff::default())
    }

    /// Bookkeeping with the given back-off between failed attempts.
    pub fn with_backoff(rate: u32, backoff: Backoff) -> SignalSetup {
        SignalSetup {
            rate: AtomicU32::new(rate),
            backoff,
            outcomes: Mutex::default(),
            in_flight: Mutex::default(),
            unauthorized_logged: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            resync: AtomicBool::new(false),
        }
    }

    /// The wanted poll rate in seconds (0 = leave modems alone).
    pub fn rate(&self) -> u32 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Changes the wanted rate (a reload): every modem is checked again at once.
    pub fn set_rate(&self, rate: u32) {
        if self.rate.swap(rate, Ordering::Relaxed) != rate {
            self.clear();
            self.resync.store(true, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Whether the exporter manages poll rates at all.
    pub fn enabled(&self) -> bool {
        self.rate() != 0
    }

    /// The recorded outcome for the modem at `path`: whether it polls at the wanted rate.
    pub fn outcome(&self, path: &str) -> Option<bool> {
        self.outcomes.lock().ok()?.get(path).map(|o| matches!(o, Outcome::Done))
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

    /// Forgets every failure, so each modem whose setup failed is tried again at once (by the
    /// watcher, or by the next scrape) with the back-off starting over. For the exporter's
    /// reload, after which polkit rules or the rate may have changed.
    pub fn reset(&self) {
        if let Ok(mut map) = self.outcomes.lock() {
            let now = Instant::now();
            for o in map.values_mut() {
                if let Outcome::Failed { .. } = o {
                    *o = Outcome::Failed { failures: 0, retry_at: now };
                }
            }
        }
        self.unauthorized_logged.store(false, Ordering::Relaxed);
        self.resync.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// When the next failed modem is due for another attempt (none in flight counted).
    pub fn next_retry(&self) -> Option<Instant> {
        let in_flight = self.in_flight.lock().ok()?;
        let map = self.outcomes.lock().ok()?;
        map.iter()
            .filter(|(path, _)| !in_flight.contains(*path))
            .filter_map(|(_, o)| match o {
                Outcome::Failed { retry_at, .. } => Some(*retry_at),
                Outcome::Done => None,
            })
            .min()
    }

    /// Claims `path` for one setup attempt: false when it is done, its next retry is not due
    /// yet, or an attempt is running.
    fn try_claim(&self, path: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        let due = match self.outcomes.lock().ok().and_then(|m| m.get(path).copied()) {
            None => true,
            Some(Outcome::Done) => false,
            Some(Outcome::Failed { retry_at, .. }) => retry_at <= Instant::now(),
        };
        due && self.in_flight.lock().is_ok_and(|mut set| set.insert(path.to_owned()))
    }

    /// Calls `Signal.Setup(rate)` on the claimed modem at `path` unless its current
    /// `Signal.Rate` already equals `rate`, records the outcome and releases the claim.
    async fn ensure(&self, conn: &Connection, path: &str, device_id: &str, current: Option<u32>) {
        let rate = self.rate();
        let outcome = if current == Some(rate) {
            Some(true)
        } else {
            self.call_setup(conn, path, device_id, rate).await
        };
        // A reload that changed the rate meanwhile has cleared the outcomes: do not record
        // an outcome for the old rate.
        if let Some(ok) = outcome.filter(|_| self.rate() == rate) {
            self.record(path, ok);
        }
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(path);
        }
        self.wake.notify_one();
    }

    /// `Some(outcome)`, or `None` when the modem vanished meanwhile.
    async fn call_setup(
        &self,
        conn: &Connection,
        path: &str,
        device_id: &str,
        rate: u32,
    ) -> Option<bool> {
        let call = async {
            let proxy = dbus::SignalProxy::builder(conn)
                .path(path.to_owned())
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            proxy.setup(rate).await
        };
        match tokio::time::timeout(SETUP_TIMEOUT, call).await {
            Ok(Ok(())) => {
                log::info!(device_id, rate; "Signal.Setup: extended signal polling set up");
                Some(true)
            }
            Ok(Err(err)) if dbus::is_gone(&err) => None,
            Ok(Err(err)) if dbus::is_unauthorized(&err) => {
                if !self.unauthorized_logged.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        device_id, err:% = err;
                        "Signal.Setup refused by polkit: extended signal values stay empty unless the exporter may use org.freedesktop.ModemManager1.Device.Control (logged once; retried with back-off and on reload)"
                    );
                } else {
                    log::debug!(device_id, err:% = err; "Signal.Setup refused by polkit");
                }
                Some(false)
            }
            Ok(Err(err)) => {
                log::warn!(device_id, err:% = err; "Signal.Setup failed; retried with back-off");
                Some(false)
            }
            Err(_) => {
                log::warn!(device_id, timeout_s = SETUP_TIMEOUT.as_secs(); "Signal.Setup timed out; retried with back-off");
                Some(false)
            }
        }
    }

    fn record(&self, path: &str, ok: bool) {
        if let Ok(mut map) = self.outcomes.lock() {
            let outcome = if ok {
                Outcome::Done
            } else {
                let failures = match map.get(path) {
                    Some(Outcome::Failed { failures, .. }) => failures.saturating_add(1),
                    _ => 1,
                };
                let wait = self.backoff.after(failures);
                log::debug!(path, failures, retry_in_s = wait.as_secs_f64(); "Signal.Setup will be retried");
                Outcome::Failed { failures, retry_at: Instant::now() + wait }
            };
            map.insert(path.to_owned(), outcome);
        }
    }

    fn forget(&self, path: &str) {
        if let Ok(mut map) = self.outcomes.lock() {
            map.remove(path);
        }
    }
}

/// Sets up every modem ModemManager has now that needs it (at start, after a daemon restart,
/// and when a retry is due), and forgets modems without a Signal interface any more.
pub async fn setup_all(setup: &Arc<SignalSetup>, conn: &Connection) {
    if !setup.enabled() {
        return;
    }
    let Ok(fetch::Managed { objects, .. }) = fetch::managed_objects(conn).await else { return };
    let mut notes = Vec::new();
    let modems = fetch::modems(&objects, &mut notes);
    let with_signal: HashSet<String> =
        modems.iter().filter(|m| m.signal.is_some()).map(|m| m.path.clone()).collect();
    setup.retain(&with_signal);
    for modem in modems {
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
    let mut next_round = Instant::now();
    loop {
        let retry_at = setup.next_retry().map(|at| at.max(next_round));
        tokio::select! {
            () = sleep_until(retry_at) => {
                next_round = Instant::now() + MIN_ROUND_GAP;
                setup_all(setup, conn).await;
            }
            () = setup.wake.notified() => {
                if setup.resync.swap(false, Ordering::Relaxed) {
                    next_round = Instant::now() + MIN_ROUND_GAP;
                    setup_all(setup, conn).await;
                }
            }
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
                    setup.forget(args.object_path().as_str());
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

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The next item of a stream.
pub async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
