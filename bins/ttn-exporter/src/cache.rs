//! The gateway list and the connection statistics, cached with single flight.
//!
//! Scrapes read a [`Snapshot`]. When part of it is due (the list after
//! `--gateways-refresh`, a cluster's statistics after `--stats-ttl`), the first scrape
//! starts one refresh task and every scrape, concurrent or not, waits for that same task
//! until its own deadline: any number of scrapes cause at most one refresh. Nothing runs
//! between scrapes except a refresh a scrape started and gave up waiting for.
//!
//! Failures keep the last good values (with their age) and push the next attempt back:
//! transient errors by 1 s doubling up to the normal interval (at most a minute), 429 by the server's
//! `X-Rate-Limit-Retry` (at least 1 s, doubling while it repeats), 401/403 by a minute
//! doubling up to ten.
//!
//! A capture (`capture`, `/probe?…&capture=true`) starts a refresh of everything with a
//! client that records each call ([`Cache::current_recorded`]): the file then holds every
//! call its scrape depends on, and the cache gets the fresh values.
//!
//! Besides the cache, the snapshot remembers each gateway's last `last_status_received_at`
//! and `last_uplink_received_at` ([`LastSeen`]): the Gateway Server forgets them 48 h after a
//! disconnect (404 `not_connected`) and on every reconnection, the exporter does not. With
//! `--state-directory` they are kept in a small state file across restarts.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Url;
use tokio::{sync::watch, task::JoinSet};

use crate::{
    api,
    client::{ApiError, BATCH_LIMIT, Client, PAGE_LIMIT, Server, StatsReply, Tape},
    config::{Cluster, Config, Selection},
    wire::Timestamp,
};

/// The state file in `--state-directory`.
pub const STATE_FILE: &str = "ttn-exporter-last-seen.json";
/// The state file is written at most this often while only times change.
const PERSIST_EVERY: Duration = Duration::from_secs(60);

/// At most this many list pages per refresh (a million gateways).
const MAX_PAGES: u32 = 1000;

/// A gateway the exporter watches.
#[derive(Debug, Clone)]
pub struct Known {
    pub id: String,
    /// The registry entry; `None` when the key cannot read it.
    pub info: Option<Arc<api::Gateway>>,
    /// Shared by the gateways of one Gateway Server.
    pub cluster: Arc<Cluster>,
}

/// The last good statistics answer of one gateway.
#[derive(Debug, Clone)]
pub struct Record {
    pub reply: Arc<StatsReply>,
    pub at: Instant,
    pub tx_ack_known: bool,
}

/// The newest times the exporter has seen a gateway report, kept after the Gateway Server
/// forgets them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastSeen {
    /// The newest `last_status_received_at`.
    pub status: Option<Timestamp>,
    /// The newest `last_uplink_received_at`.
    pub uplink: Option<Timestamp>,
}

impl LastSeen {
    /// Takes the newer of each time; whether anything changed.
    pub fn merge(&mut self, status: Option<Timestamp>, uplink: Option<Timestamp>) -> bool {
        let before = *self;
        self.status = self.status.max(status);
        self.uplink = self.uplink.max(uplink);
        before != *self
    }
}

/// Why a refresh step failed, kept until the step succeeds again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The API's error name when the key was refused (401/403), for `ttn_up 0`.
    pub auth: Option<String>,
    /// The server did not answer or answered 5xx (not a 429), for `ttn_up 0`.
    pub unreachable: bool,
    /// The HTTP status of the failed call, when the server answered one.
    pub status: Option<u16>,
}

/// The schedule and outcome of one refresh step (the list, or one cluster's statistics).
#[derive(Debug, Clone, Default)]
pub struct Phase {
    pub ok_at: Option<Instant>,
    /// When the step is due again; `None` = now.
    pub due: Option<Instant>,
    pub failures: u32,
    pub error: Option<Failure>,
}

/// How a cluster answers statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BatchMode {
    /// Try the batch endpoint.
    #[default]
    Batch,
    /// The server has no batch endpoint (older than 3.21): one GET per gateway.
    Unsupported,
    /// The key cannot batch (not a user or organization key): one GET per gateway.
    KeyCannot,
}

/// One cluster's refresh state.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub phase: Phase,
    pub batch: BatchMode,
}

/// Everything scrapes render from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The watched gateways, sorted by id.
    pub gateways: Arc<Vec<Known>>,
    /// Whether `gateways` was ever obtained (a list call succeeded, or ids were given).
    pub listed: bool,
    pub list: Phase,
    pub clusters: BTreeMap<String, ClusterState>,
    pub stats: HashMap<String, Record>,
    /// What the exporter remembers of each watched gateway.
    pub last_seen: HashMap<String, LastSeen>,
}

impl Phase {
    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_none_or(|due| now >= due)
    }

    /// Whether the step is waiting out a 429 (`X-Rate-Limit-Retry`): not even a capture
    /// calls the API before that.
    pub fn rate_limited(&self, now: Instant) -> bool {
        !self.is_due(now) && self.error.as_ref().is_some_and(|f| f.status == Some(429))
    }

    fn succeed(&mut self, now: Instant, interval: Duration) {
        *self = Phase { ok_at: Some(now), due: Some(now + interval), failures: 0, error: None };
    }

    fn fail(&mut self, now: Instant, interval: Duration, err: &ApiError) {
        self.failures = self.failures.saturating_add(1);
        let doubling = |base: Duration, cap: Duration| {
            base.saturating_mul(1 << self.failures.saturating_sub(1).min(16)).min(cap)
        };
        let wait = if err.status() == Some(429) {
            let retry = match err {
                ApiError::Status { retry_after: Some(r), .. } => *r,
                _ => Duration::ZERO,
            };
            retry.max(doubling(Duration::from_secs(1), Duration::from_secs(900)))
        } else if err.is_auth() {
            doubling(Duration::from_secs(60), Duration::from_secs(600))
        } else {
            // At most a minute: `ttn_up` stays 0 until the next attempt succeeds.
            doubling(Duration::from_secs(1), interval.min(Duration::from_secs(60)))
        };
        self.due = Some(now + wait);
        self.error = Some(Failure {
            message: err.to_string(),
            auth: err.is_auth().then(|| err.name().unwrap_or("unnamed error").to_owned()),
            unreachable: err.is_unreachable(),
            status: err.status(),
        });
    }

    /// A success with problems (some entries unusable or unreadable): the good part is
    /// used, and the step is tried again soon (1 s doubling up to `interval`).
    fn partial(&mut self, now: Instant, interval: Duration, message: String) {
        let failures = self.failures.saturating_add(1);
        let wait = Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(16));
        *self = Phase {
            ok_at: Some(now),
            due: Some(now + wait.min(interval)),
            failures,
            error: Some(Failure { message, auth: None, unreachable: false, status: None }),
        };
    }

    /// A failure that no retry soon can fix (configuration): try again after `interval`.
    fn fail_for(&mut self, now: Instant, interval: Duration, message: String) {
        self.failures = self.failures.saturating_add(1);
        self.due = Some(now + interval);
        self.error = Some(Failure { message, auth: None, unreachable: false, status: None });
    }
}

impl Snapshot {
    /// Whether a refresh is due for the list or for any cluster with gateways.
    pub fn due(&self, now: Instant) -> bool {
        if self.list.is_due(now) {
            return true;
        }
        self.gateways
            .iter()
            .filter(|g| g.cluster.url.is_ok())
            .any(|g| self.clusters.get(&g.cluster.host).is_none_or(|c| c.phase.is_due(now)))
    }

    /// The first refused-key error of any step, as `(name, message)`.
    pub fn auth_error(&self) -> Option<(&str, &str)> {
        std::iter::once(&self.list)
            .chain(self.clusters.values().map(|c| &c.phase))
            .filter_map(|p| p.error.as_ref())
            .find_map(|f| f.auth.as_deref().map(|name| (name, f.message.as_str())))
    }

    /// The first unreachable-server error among the list and the clusters `hosts`.
    pub fn unreachable<'a>(&'a self, hosts: &[&str]) -> Option<(&'a str, &'a str)> {
        let list = self.list.error.as_ref().map(|f| ("the Identity Server", f));
        let clusters = hosts.iter().filter_map(|host| {
            let (name, state) = self.clusters.get_key_value(*host)?;
            Some((name.as_str(), state.phase.error.as_ref()?))
        });
        list.into_iter()
            .chain(clusters)
            .find(|(_, f)| f.unreachable)
            .map(|(name, f)| (name, f.message.as_str()))
    }

    /// The known gateway `id`.
    pub fn gateway(&self, id: &str) -> Option<&Known> {
        self.gateways.iter().find(|g| g.id == id)
    }
}

/// The shared cache: configuration, client and the current snapshot.
#[derive(Debug)]
pub struct Cache {
    config: Config,
    /// The host of `--api-url`, the `cluster` label of Identity Server calls.
    api_host: String,
    client: Client,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Arc<Snapshot>,
    inflight: Option<watch::Receiver<bool>>,
    /// The refused-key error last logged, so that it is logged once per change.
    reported_auth: Option<String>,
    /// What the state file holds, and when it was written.
    persisted: Option<(HashMap<String, LastSeen>, Instant)>,
}

/// What a scrape got from [`Cache::current`].
#[derive(Debug)]
pub struct Current {
    pub snapshot: Arc<Snapshot>,
    /// The refresh this scrape waited for was still running at its deadline.
    pub timed_out: bool,
}

impl Cache {
    /// A cache that knows nothing yet, except the last-seen times of the state file in
    /// `--state-directory`, if there is one.
    pub fn new(config: Config, client: Client) -> Cache {
        let mut snapshot = Snapshot::default();
        if let Some(dir) = &config.state_directory
            && let Some(bytes) = exporter_core::state::read(dir, STATE_FILE)
        {
            match decode_state(&bytes) {
                Ok(last_seen) => snapshot.last_seen = last_seen,
                Err(why) => log::warn!(
                    target: "ttn", file = dir.join(STATE_FILE).display().to_string().as_str();
                    "ignoring the state file: {why}"
                ),
            }
        }
        let persisted = Some((snapshot.last_seen.clone(), Instant::now()));
        let state = State { snapshot: Arc::new(snapshot), persisted, ..State::default() };
        let api_host = config.api_host();
        Cache { config, api_host, client, state: Mutex::new(state) }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The API client (and its accounting of calls).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The snapshot as it is, without refreshing anything.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.lock().snapshot)
    }

    /// Makes every step due now, also one waiting out a failure (after a reload brought a
    /// new API key, the old key's refusal says nothing about it).
    pub fn retry_now(&self) {
        let mut state = self.lock();
        let mut snapshot = Snapshot::clone(&state.snapshot);
        snapshot.list.due = None;
        for cluster in snapshot.clusters.values_mut() {
            cluster.phase.due = None;
        }
        state.snapshot = Arc::new(snapshot);
    }

    /// Takes over the last-seen times of the cache this one replaces (on a reload that
    /// changed the configuration).
    pub fn adopt_last_seen(&self, last_seen: &HashMap<String, LastSeen>) {
        let mut state = self.lock();
        let mut snapshot = Snapshot::clone(&state.snapshot);
        for (id, seen) in last_seen {
            snapshot.last_seen.entry(id.clone()).or_default().merge(seen.status, seen.uplink);
        }
        state.snapshot = Arc::new(snapshot);
    }

    fn identity(&self) -> Server<'_> {
        Server { url: &self.config.api_url, cluster: &self.api_host }
    }

    /// The snapshot to render, refreshed first when due (waiting at most until `deadline`).
    pub async fn current(self: &Arc<Self>, deadline: Instant) -> Current {
        let wait = {
            let mut state = self.lock();
            if let Some(rx) = &state.inflight {
                Some(rx.clone())
            } else if state.snapshot.due(Instant::now()) {
                Some(self.start_refresh(&mut state, self.client.clone(), false))
            } else {
                None
            }
        };
        match wait {
            Some(rx) => self.wait(rx, deadline).await,
            None => Current { snapshot: self.snapshot(), timed_out: false },
        }
    }

    /// For a capture: a refresh of everything (the list and every cluster's statistics,
    /// fresh or not) whose API calls all go on `tape`, then the snapshot to render. A refresh
    /// already in flight is waited for first (its calls would not be on the tape); a step
    /// waiting out a 429 is not called early.
    pub async fn current_recorded(self: &Arc<Self>, deadline: Instant, tape: Tape) -> Current {
        loop {
            let (rx, ours) = {
                let mut state = self.lock();
                match &state.inflight {
                    Some(rx) => (rx.clone(), false),
                    None => {
                        let client = self.client.recording(Arc::clone(&tape));
                        (self.start_refresh(&mut state, client, true), true)
                    }
                }
            };
            let current = self.wait(rx, deadline).await;
            if ours || current.timed_out {
                return current;
            }
        }
    }

    /// Starts one refresh task (the caller holds the lock and found none in flight).
    fn start_refresh(
        self: &Arc<Self>,
        state: &mut State,
        client: Client,
        force: bool,
    ) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        state.inflight = Some(rx.clone());
        let cache = Arc::clone(self);
        tokio::spawn(async move { cache.refresh(tx, client, force).await });
        rx
    }

    async fn wait(&self, mut rx: watch::Receiver<bool>, deadline: Instant) -> Current {
        let done = tokio::time::timeout_at(deadline.into(), rx.wait_for(|done| *done)).await;
        Current { snapshot: self.snapshot(), timed_out: done.is_err() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written (every write
        // is a single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn refresh(self: Arc<Self>, done: watch::Sender<bool>, client: Client, force: bool) {
        struct Finish<'a>(&'a Cache, watch::Sender<bool>);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                self.0.lock().inflight = None;
                let _ = self.1.send(true);
            }
        }
        let _finish = Finish(&self, done);
        let mut snapshot = Snapshot::clone(&self.lock().snapshot);
        if force {
            let now = Instant::now();
            let phases = std::iter::once(&mut snapshot.list)
                .chain(snapshot.clusters.values_mut().map(|c| &mut c.phase));
            for phase in phases.filter(|p| !p.rate_limited(now)) {
                phase.due = None;
            }
        }
        if snapshot.list.is_due(Instant::now()) {
            self.refresh_list(&client, &mut snapshot).await;
        }
        self.refresh_stats(&client, &mut snapshot).await;
        self.persist(&snapshot.last_seen, false).await;
        let auth =
            snapshot.auth_error().map(|(name, message)| (name.to_owned(), message.to_owned()));
        let mut state = self.lock();
        match (&auth, &state.reported_auth) {
            (Some((name, message)), reported) if reported.as_deref() != Some(name) => {
                log::error!(
                    target: "ttn", error = name.as_str();
                    "the API refused the key ({message}); check that it exists and has the rights \
                     to list gateways and view gateway status and information"
                );
            }
            (None, Some(_)) => log::info!(target: "ttn", "the API accepts the key again"),
            _ => {}
        }
        state.reported_auth = auth.map(|(name, _)| name);
        state.snapshot = Arc::new(snapshot);
    }

    /// Writes the last-seen times to the state file in `--state-directory` when they changed:
    /// at once when a gateway was added or dropped, else at most every [`PERSIST_EVERY`]
    /// (a lost minute of "last seen" does not matter; a write every 30 s wears SD cards).
    async fn persist(&self, last_seen: &HashMap<String, LastSeen>, now: bool) {
        let Some(dir) = self.config.state_directory.clone() else { return };
        let due = match &self.lock().persisted {
            Some((written, _)) if written == last_seen => false,
            Some((written, at)) => {
                now || at.elapsed() >= PERSIST_EVERY
                    || written.len() != last_seen.len()
                    || written.keys().any(|id| !last_seen.contains_key(id))
            }
            None => true,
        };
        if !due {
            return;
        }
        let bytes = encode_state(last_seen);
        let written = tokio::task::spawn_blocking(move || {
            exporter_core::state::write_atomic(&dir, STATE_FILE, &bytes)
        })
        .await;
        match written {
            Ok(Ok(())) => self.lock().persisted = Some((last_seen.clone(), Instant::now())),
            Ok(Err(err)) => log::warn!(target: "ttn", "cannot keep the last-seen times: {err:#}"),
            Err(err) => log::warn!(target: "ttn", "cannot keep the last-seen times: {err}"),
        }
    }

    /// Writes what the state file does not hold yet (on shutdown).
    pub async fn flush(&self) {
        let last_seen = self.lock().snapshot.last_seen.clone();
        self.persist(&last_seen, true).await;
    }

    async fn refresh_list(&self, client: &Client, snap: &mut Snapshot) {
        let now = Instant::now();
        let interval = self.config.gateways_refresh;
        let found = match &self.config.selection {
            Selection::List(scope) => match self.list_all(client, scope, &snap.gateways).await {
                Ok((gateways, problems)) if gateways.is_empty() && problems.is_empty() => {
                    if let Some(why) = self.explain_empty_list(client).await {
                        snap.list.fail_for(now, interval, why);
                        return;
                    }
                    (gateways, problems)
                }
                Ok(found) => found,
                Err(err) => {
                    snap.list.fail(now, interval, &err);
                    return;
                }
            },
            Selection::Fixed(ids) => match self.infos(client, ids, snap).await {
                Ok(found) => found,
                Err(err) => {
                    snap.list.fail(now, interval, &err);
                    return;
                }
            },
        };
        let (gateways, problems) = found;
        // Gateways of one Gateway Server share its cluster (10,000 gateways, 3 clusters).
        let mut clusters: HashMap<Option<String>, Arc<Cluster>> = HashMap::new();
        let mut known: Vec<Known> = gateways
            .into_iter()
            .map(|(id, info)| {
                let address = info.as_ref().and_then(|i| i.gateway_server_address.clone());
                let cluster = clusters.entry(address).or_insert_with_key(|address| {
                    Arc::new(self.config.cluster(address.as_deref()))
                });
                Known { id, info, cluster: Arc::clone(cluster) }
            })
            .collect();
        known.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: HashSet<&str> = known.iter().map(|g| g.id.as_str()).collect();
        snap.stats.retain(|id, _| ids.contains(id.as_str()));
        snap.last_seen.retain(|id, _| ids.contains(id.as_str()));
        // A gateway new to the list gets its statistics in this same refresh, unless its
        // cluster is waiting out a failure.
        let before: HashSet<&str> = snap.gateways.iter().map(|g| g.id.as_str()).collect();
        let mut fresh_hosts: Vec<String> = known
            .iter()
            .filter(|g| !before.contains(g.id.as_str()))
            .map(|g| g.cluster.host.clone())
            .collect();
        fresh_hosts.dedup();
        for host in fresh_hosts {
            if let Some(state) = snap.clusters.get_mut(&host)
                && state.phase.error.is_none()
            {
                state.phase.due = None;
            }
        }
        let hosts: HashSet<&str> = known.iter().map(|g| g.cluster.host.as_str()).collect();
        snap.clusters.retain(|host, _| hosts.contains(host.as_str()));
        // Servers get upgraded: look for the batch endpoint again with every new list.
        for cluster in snap.clusters.values_mut() {
            cluster.batch = BatchMode::Batch;
        }
        snap.gateways = Arc::new(known);
        snap.listed = true;
        match problems.first() {
            None => snap.list.succeed(now, interval),
            Some(first) => {
                let message = match problems.len() {
                    1 => first.clone(),
                    n => format!("{first} (and {} more problems)", n - 1),
                };
                snap.list.partial(now, interval, message);
            }
        }
    }

    /// Every page of the list: the gateways and the entries that could not be decoded.
    #[allow(clippy::type_complexity)]
    async fn list_all(
        &self,
        client: &Client,
        scope: &crate::client::ListScope,
        previous: &[Known],
    ) -> Result<(Vec<(String, Option<Arc<api::Gateway>>)>, Vec<String>), ApiError> {
        let mut gateways = Vec::new();
        let mut seen = HashSet::new();
        let mut problems = Vec::new();
        let mut received: u64 = 0;
        for page in 1..=MAX_PAGES {
            let (entries, total) = client.list_page(self.identity(), scope, page).await?;
            let count = entries.len() as u64;
            received += count;
            for entry in entries {
                match entry {
                    Ok(g) if seen.insert(g.ids.gateway_id.clone()) => {
                        // An unchanged entry keeps the one already held (the registry rarely
                        // changes), so a refresh does not hold two copies of every gateway.
                        let held = previous
                            .binary_search_by(|k| k.id.as_str().cmp(&g.ids.gateway_id))
                            .ok()
                            .and_then(|i| previous.get(i))
                            .and_then(|k| k.info.as_ref())
                            .filter(|held| ***held == g);
                        let info = held.map_or_else(|| Arc::new(g), Arc::clone);
                        gateways.push((info.ids.gateway_id.clone(), Some(info)));
                    }
                    Ok(_) => {}
                    Err(why) => {
                        problems.push(format!("unusable gateway entry on page {page}: {why}"))
                    }
                }
            }
            let more = match total {
                Some(total) => received < total,
                None => count >= u64::from(PAGE_LIMIT),
            };
            if count == 0 || !more {
                break;
            }
        }
        Ok((gateways, problems))
    }

    /// Why the list is empty, when the key is one that cannot list (a gateway key).
    async fn explain_empty_list(&self, client: &Client) -> Option<String> {
        let info = client.auth_info(self.identity()).await.ok()?;
        let gateway = info.api_key?.entity_ids.gateway_ids?.gateway_id;
        Some(format!(
            "the API key belongs to gateway {gateway:?} and cannot list gateways (the list \
             answers 200 {{}}): pass --gateway {gateway}"
        ))
    }

    /// The registry entries of `--gateway` ids, where the key may read them.
    #[allow(clippy::type_complexity)]
    async fn infos(
        &self,
        client: &Client,
        ids: &[String],
        snap: &Snapshot,
    ) -> Result<(Vec<(String, Option<Arc<api::Gateway>>)>, Vec<String>), ApiError> {
        let previous: HashMap<&str, &Known> =
            snap.gateways.iter().map(|g| (g.id.as_str(), g)).collect();
        let results = bounded(ids.to_vec(), self.config.concurrency, {
            let client = client.clone();
            let base = self.config.api_url.clone();
            let host = self.api_host.clone();
            move |id: String| {
                let client = client.clone();
                let base = base.clone();
                let host = host.clone();
                async move {
                    let result = client.gateway(Server { url: &base, cluster: &host }, &id).await;
                    (id, result)
                }
            }
        })
        .await;
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let mut order: HashMap<&str, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            order.insert(id, i);
        }
        for (id, result) in results {
            let info = match result {
                Ok(gateway) => Some(Arc::new(gateway)),
                Err(err) if err.status() == Some(401) => return Err(err),
                // Keys with only "view gateway status" get 403: statistics still work.
                Err(err) if matches!(err.status(), Some(403 | 404)) => None,
                Err(err) => {
                    problems.push(format!("gateway {id}: {err}"));
                    previous.get(id.as_str()).and_then(|k| k.info.clone())
                }
            };
            out.push((id, info));
        }
        out.sort_by_key(|(id, _)| order.get(id.as_str()).copied().unwrap_or(usize::MAX));
        Ok((out, problems))
    }

    /// Takes one batch of a cluster's answers into `snap` (a new record replaces the old one,
    /// a failed call keeps it); the ids of the new records.
    fn merge(
        &self,
        snap: &mut Snapshot,
        merged: &mut Merged,
        batch: BatchMode,
        results: Vec<(String, StatsResult)>,
    ) -> Vec<String> {
        merged.old_server |= results.iter().any(|(_, r)| old_gateway_server(r));
        // Provisional until the cluster's last answer is in (then corrected, see
        // `refresh_stats`): it can only turn false.
        let tx_ack_known = batch != BatchMode::Unsupported && !merged.old_server;
        let mut ids = Vec::with_capacity(results.len());
        for (id, result) in results {
            match result {
                Ok((reply, at)) => {
                    merged.answered += 1;
                    if let StatsReply::Stats(stats) = &reply {
                        snap.last_seen
                            .entry(id.clone())
                            .or_default()
                            .merge(stats.last_status_received_at, stats.last_uplink_received_at);
                    }
                    snap.stats
                        .insert(id.clone(), Record { reply: Arc::new(reply), at, tx_ack_known });
                    ids.push(id);
                }
                Err(err) => {
                    merged.failed += 1;
                    let err = match err {
                        ApiError::Decode(why) => ApiError::Decode(format!("gateway {id}: {why}")),
                        ApiError::Status { status, name, message, retry_after } => {
                            ApiError::Status {
                                status,
                                name,
                                message: format!("gateway {id}: {message}"),
                                retry_after,
                            }
                        }
                        other => other,
                    };
                    if more_telling(merged.first_error.as_ref(), &err) {
                        merged.first_error = Some(err);
                    }
                }
            }
        }
        ids
    }

    /// Puts the new records of `ids` into the snapshot scrapes read now, in place, so that
    /// the old ones are freed at once rather than when the refresh ends. Skipped while a
    /// scrape holds that snapshot (it keeps reading what it started with; the refresh's end
    /// replaces it anyway).
    fn publish(&self, snap: &Snapshot, ids: &[String]) {
        let mut state = self.lock();
        let Some(published) = Arc::get_mut(&mut state.snapshot) else { return };
        for id in ids {
            if let Some(record) = snap.stats.get(id) {
                let mut record = record.clone();
                if let Some(old) = published.stats.get(id) {
                    // Until the cluster's last answer is in, keep what the last refresh found.
                    record.tx_ack_known &= old.tx_ack_known;
                }
                published.stats.insert(id.clone(), record);
            }
        }
    }

    async fn refresh_stats(&self, client: &Client, snap: &mut Snapshot) {
        let now = Instant::now();
        let mut due: BTreeMap<String, (Url, Vec<String>)> = BTreeMap::new();
        for g in snap.gateways.iter() {
            let Ok(url) = &g.cluster.url else { continue };
            let state = snap.clusters.get(&g.cluster.host);
            if state.is_some_and(|c| !c.phase.is_due(now)) {
                continue;
            }
            due.entry(g.cluster.host.clone())
                .or_insert_with(|| (url.clone(), Vec::new()))
                .1
                .push(g.id.clone());
        }
        // Each cluster's calls run in a task of their own and send their results batch by
        // batch (100 gateways), so that each gateway's new record replaces its old one as it
        // comes: at 10,000 gateways, holding every old and every new answer at once until the
        // last call came back cost about 9 MiB.
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        for (host, (url, ids)) in due {
            let mode = snap.clusters.get(&host).map(|c| c.batch).unwrap_or_default();
            let client = client.clone();
            let concurrency = self.config.concurrency;
            let sender = sender.clone();
            tasks.spawn(async move {
                fetch_cluster(client, &host, url, ids, mode, concurrency, &sender).await;
            });
        }
        drop(sender);
        let mut clusters: HashMap<String, Merged> = HashMap::new();
        while let Some(message) = received.recv().await {
            let (host, batch, error, merged) = match message {
                Fetched::Results { host, batch, results } => {
                    let merged = clusters.entry(host).or_default();
                    let ids = self.merge(snap, merged, batch, results);
                    self.publish(snap, &ids);
                    continue;
                }
                Fetched::Done { host, batch, error } => {
                    let merged = clusters.remove(&host).unwrap_or_default();
                    (host, batch, error, merged)
                }
            };
            // Whether the Gateway Server reports transmission acknowledgments is known only
            // once all its answers are in (see `Merged::old_server`).
            let tx_ack_known = batch != BatchMode::Unsupported && !merged.old_server;
            if !tx_ack_known {
                for known in snap.gateways.iter().filter(|k| k.cluster.host == host) {
                    if let Some(record) = snap.stats.get_mut(&known.id)
                        && record.at >= now
                    {
                        record.tx_ack_known = false;
                    }
                }
            }
            let Merged { answered, failed, first_error: gateway_error, .. } = merged;
            let stopped = error.is_some();
            let mut first_error = error;
            if let Some(err) = gateway_error
                && more_telling(first_error.as_ref(), &err)
            {
                first_error = Some(err);
            }
            let state = snap.clusters.entry(host).or_default();
            state.batch = batch;
            let done = Instant::now();
            match first_error {
                None => state.phase.succeed(done, self.config.stats_ttl),
                // Some gateways answered: the others' errors (a gateway without the status
                // right, one deleted since the list was read) are theirs, not the key's or
                // the server's.
                Some(err)
                    if answered > 0
                        && !stopped
                        && !matches!(err.status(), Some(401 | 429))
                        && !err.is_unreachable() =>
                {
                    let message = match failed {
                        1 => err.to_string(),
                        n => format!("{err} (and {} more gateways failed)", n - 1),
                    };
                    state.phase.partial(done, self.config.stats_ttl, message);
                }
                Some(err) => {
                    state.phase.fail(done, self.config.stats_ttl, &err);
                    if failed > 1
                        && let Some(f) = &mut state.phase.error
                    {
                        f.message =
                            format!("{} (and {} more gateways failed)", f.message, failed - 1);
                    }
                }
            }
        }
    }
}

/// Whether `err` is the more telling of two errors: the first one, unless `err` is a refused
/// key or a rate limit and the one kept is neither.
fn more_telling(kept: Option<&ApiError>, err: &ApiError) -> bool {
    kept.is_none_or(|e| {
        !e.is_auth() && e.status() != Some(429) && (err.is_auth() || err.status() == Some(429))
    })
}

/// One gateway's statistics call: the answer and when it came, or why there is none.
type StatsResult = Result<(StatsReply, Instant), ApiError>;

/// What a cluster's task sends while it calls: its answers batch by batch, then how it ended.
#[derive(Debug)]
enum Fetched {
    Results {
        host: String,
        /// How the answers were asked for.
        batch: BatchMode,
        results: Vec<(String, StatsResult)>,
    },
    Done {
        host: String,
        batch: BatchMode,
        /// A failure that stopped the cluster's calls (rate limit, refused key, transport).
        error: Option<ApiError>,
    },
}

/// A cluster's answers taken so far.
#[derive(Debug, Default)]
struct Merged {
    answered: usize,
    failed: usize,
    /// The most telling gateway error.
    first_error: Option<ApiError>,
    /// A gateway reported a Gateway Server older than 3.25.2 (see [`old_gateway_server`]).
    old_server: bool,
}

/// Calls one cluster for the statistics of `ids`, sending the answers to `sender` batch by
/// batch, then how the calls ended.
async fn fetch_cluster(
    client: Client,
    host: &str,
    url: Url,
    ids: Vec<String>,
    mut batch: BatchMode,
    concurrency: usize,
    sender: &tokio::sync::mpsc::UnboundedSender<Fetched>,
) {
    let send = |batch: BatchMode, results: Vec<(String, StatsResult)>| {
        if !results.is_empty() {
            // The receiver is gone only when the refresh itself was dropped.
            let _ = sender.send(Fetched::Results { host: host.to_owned(), batch, results });
        }
    };
    let done = |batch: BatchMode, error: Option<ApiError>| {
        let _ = sender.send(Fetched::Done { host: host.to_owned(), batch, error });
    };
    let mut single: Vec<String> = Vec::new();
    if batch == BatchMode::Batch {
        let mut chunks = ids.chunks(BATCH_LIMIT);
        while let Some(chunk) = chunks.next() {
            match client.batch_stats(Server { url: &url, cluster: host }, chunk).await {
                Ok(entries) => {
                    let at = Instant::now();
                    let mut results = Vec::with_capacity(chunk.len());
                    let mut answered = HashSet::new();
                    for (id, value) in entries {
                        if !chunk.contains(&id) {
                            continue;
                        }
                        answered.insert(id.clone());
                        let parsed = api::connection_stats(value)
                            .map(|s| (StatsReply::Stats(Box::new(s)), at))
                            .map_err(ApiError::Decode);
                        results.push((id, parsed));
                    }
                    // The batch call leaves out gateways without statistics on this cluster.
                    for id in chunk.iter().filter(|id| !answered.contains(*id)) {
                        results.push((id.clone(), Ok((StatsReply::NotConnected, at))));
                    }
                    send(batch, results);
                }
                Err(err) if err.is_missing_endpoint() => {
                    batch = BatchMode::Unsupported;
                    single.extend(chunk.iter().cloned());
                    single.extend(chunks.flatten().cloned());
                    break;
                }
                Err(err)
                    if err.name() == Some("pkg/identityserver:neither_user_nor_organization") =>
                {
                    batch = BatchMode::KeyCannot;
                    single.extend(chunk.iter().cloned());
                    single.extend(chunks.flatten().cloned());
                    break;
                }
                // One gateway without rights, an unknown id or a rejected request: ask for
                // this chunk's gateways one by one to find out which.
                Err(err) if matches!(err.status(), Some(400 | 403 | 404)) => {
                    single.extend(chunk.iter().cloned());
                }
                Err(err) => return done(batch, Some(err)),
            }
        }
    } else {
        single = ids;
    }
    if single.is_empty() {
        return done(batch, None);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let owned_host = host.to_owned();
    let fetched = bounded(single, concurrency, {
        let stop = Arc::clone(&stop);
        move |id: String| {
            let client = client.clone();
            let url = url.clone();
            let host = owned_host.clone();
            let stop = Arc::clone(&stop);
            async move {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let result = client.gateway_stats(Server { url: &url, cluster: &host }, &id).await;
                if let Err(err) = &result
                    && (err.status() == Some(429) || err.status() == Some(401))
                {
                    // Stop hammering: the rest of this cluster waits for the next refresh.
                    stop.store(true, Ordering::Relaxed);
                }
                Some((id, result.map(|r| (r, Instant::now()))))
            }
        }
    })
    .await;
    send(batch, fetched.into_iter().flatten().collect());
    done(batch, None);
}

/// Runs `f` over `items` with at most `limit` calls in flight; results in completion order.
async fn bounded<I, F, Fut, T>(items: Vec<I>, limit: usize, f: F) -> Vec<T>
where
    I: Send + 'static,
    F: Fn(I) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let mut workers = JoinSet::new();
    for _ in 0..limit.max(1) {
        let queue = Arc::clone(&queue);
        let f = f.clone();
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let next =
                    queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
                let Some(item) = next else { break };
                out.push(f(item).await);
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        if let Ok(out) = done {
            all.extend(out);
        }
    }
    all
}

/// Whether a statistics answer shows a Gateway Server older than 3.25.2 (the first with
/// `tx_acknowledgment_count`), from the version UDP gateways report.
fn old_gateway_server(result: &StatsResult) -> bool {
    let Ok((StatsReply::Stats(stats), _)) = result else { return false };
    let Some(version) =
        stats.last_status.as_ref().and_then(|s| s.versions.get("ttn-lw-gateway-server"))
    else {
        return false;
    };
    let mut parts =
        version.trim_start_matches('v').split(['.', '-', '+']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor), Some(patch)) => (major, minor, patch) < (3, 25, 2),
        _ => false,
    }
}

/// The state file: `{"gateways": {"<id>": {"last_status_received_at": "<RFC 3339>",
/// "last_uplink_received_at": "<RFC 3339>"}}}`.
fn encode_state(last_seen: &HashMap<String, LastSeen>) -> Vec<u8> {
    let sorted: BTreeMap<&str, &LastSeen> =
        last_seen.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut gateways = serde_json::Map::new();
    for (id, seen) in sorted {
        let mut entry = serde_json::Map::new();
        if let Some(t) = seen.status {
            entry.insert("last_status_received_at".into(), t.to_string().into());
        }
        if let Some(t) = seen.uplink {
            entry.insert("last_uplink_received_at".into(), t.to_string().into());
        }
        gateways.insert(id.to_owned(), entry.into());
    }
    serde_json::json!({ "gateways": gateways }).to_string().into_bytes()
}

fn decode_state(bytes: &[u8]) -> Result<HashMap<String, LastSeen>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        gateways: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default, deserialize_with = "crate::wire::de_opt::timestamp")]
        last_status_received_at: Option<Timestamp>,
        #[serde(default, deserialize_with = "crate::wire::de_opt::timestamp")]
        last_uplink_received_at: Option<Timestamp>,
    }
    let file: File = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut out = HashMap::new();
    for (id, entry) in file.gateways {
        crate::config::entity_id(&id).map_err(|e| e.to_string())?;
        let seen = LastSeen {
            status: entry.last_status_received_at,
            uplink: entry.last_uplink_received_at,
        };
        out.insert(id, seen);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trip_and_bad_files() {
        let t = |s: &str| Some(Timestamp::parse(s).unwrap());
        let mut seen = HashMap::new();
        seen.insert(
            "gw-0001".to_owned(),
            LastSeen {
                status: t("2024-10-28T09:41:05.902117386Z"),
                uplink: t("2024-10-28T09:41:31Z"),
            },
        );
        seen.insert(
            "gw-0002".to_owned(),
            LastSeen { status: None, uplink: t("2024-10-27T00:00:00Z") },
        );
        let bytes = encode_state(&seen);
        assert_eq!(decode_state(&bytes).unwrap(), seen);
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"gateways":{"GW!":{}}}"#,
            br#"{"gateways":{"gw-1":{"last_uplink_received_at":"yesterday"}}}"#,
        ] {
            assert!(decode_state(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn cache() -> Cache {
        use argh::FromArgs as _;
        let flags = crate::Flags::from_args(&["ttn-exporter"], &[]).unwrap();
        let config = Config::from_flags(&flags).unwrap();
        let client = Client::new(
            exporter_core::client::http_client(&crate::INFO).unwrap(),
            exporter_core::Secret::new("k"),
            Duration::ZERO,
        );
        Cache::new(config, client)
    }

    fn stats(uplinks: u64) -> StatsResult {
        let stats = api::ConnectionStats { uplink_count: Some(uplinks), ..Default::default() };
        Ok((StatsReply::Stats(Box::new(stats)), Instant::now()))
    }

    /// A refresh puts each batch's new records into the snapshot scrapes read as they come,
    /// so the old answers are freed then, not when the last cluster answered; not while a
    /// scrape holds that snapshot.
    #[test]
    fn new_records_replace_the_published_ones_batch_by_batch() {
        let cache = cache();
        let ids = ["gw-a", "gw-b", "gw-c"].map(str::to_owned);
        let mut merged = Merged::default();
        let mut snap = Snapshot::default();
        let first = ids.iter().map(|id| (id.clone(), stats(1))).collect();
        let new = cache.merge(&mut snap, &mut merged, BatchMode::Batch, first);
        cache.publish(&snap, &new);
        let old = cache.snapshot().stats.get("gw-a").map(|r| Arc::downgrade(&r.reply)).unwrap();

        // A new refresh works on its own copy, as `refresh` does (the first one is over).
        drop(snap);
        let mut snap = Snapshot::clone(&cache.snapshot());
        let mut merged = Merged::default();
        let batch = vec![
            ("gw-a".to_owned(), stats(2)),
            ("gw-b".to_owned(), Err(ApiError::Decode("x".into()))),
        ];
        let new = cache.merge(&mut snap, &mut merged, BatchMode::Batch, batch);
        assert_eq!(new, ["gw-a"]);
        assert_eq!((merged.answered, merged.failed), (1, 1));
        assert!(merged.first_error.as_ref().unwrap().to_string().contains("gateway gw-b"));
        let held = cache.snapshot();
        cache.publish(&snap, &new);
        assert!(old.upgrade().is_some(), "a scrape still reads the old answer");
        drop(held);
        cache.publish(&snap, &new);
        assert!(old.upgrade().is_none(), "the old answer is freed once replaced");
        let published = cache.snapshot();
        let uplinks = |id: &str| match &*published.stats.get(id).unwrap().reply {
            StatsReply::Stats(s) => s.uplink_count,
            StatsReply::NotConnected => None,
        };
        assert_eq!(uplinks("gw-a"), Some(2));
        assert_eq!(uplinks("gw-b"), Some(1), "a failed call keeps the last good answer");
        assert_eq!(uplinks("gw-c"), Some(1));
        assert!(published.stats.get("gw-a").unwrap().tx_ack_known);
        drop(published);

        // An answer of an old Gateway Server turns the provisional flag off for the rest.
        let version = api::GatewayStatus {
            versions: [("ttn-lw-gateway-server".to_owned(), "v3.24.0".to_owned())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let old_server = api::ConnectionStats { last_status: Some(version), ..Default::default() };
        let batch = vec![(
            "gw-c".to_owned(),
            Ok((StatsReply::Stats(Box::new(old_server)), Instant::now())),
        )];
        let new = cache.merge(&mut snap, &mut merged, BatchMode::Batch, batch);
        assert!(merged.old_server);
        assert!(!snap.stats.get("gw-c").unwrap().tx_ack_known);
        cache.publish(&snap, &new);
        assert!(!cache.snapshot().stats.get("gw-c").unwrap().tx_ack_known);
    }

    #[test]
    fn last_seen_keeps_the_newest() {
        let t = |s: &str| Some(Timestamp::parse(s).unwrap());
        let mut seen = LastSeen::default();
        assert!(seen.merge(t("2024-10-28T09:00:00Z"), None));
        assert!(!seen.merge(t("2024-10-28T08:00:00Z"), None), "older is ignored");
        assert!(seen.merge(None, t("2024-10-28T10:00:00Z")));
        assert_eq!(seen.status, t("2024-10-28T09:00:00Z"));
        assert!(!seen.merge(None, None), "a reconnection without traffic forgets nothing");
    }
}
