//! The gateway list and the connection statistics, cached with single flight.
//!
//! Scrapes read a [`Snapshot`]. When part of it is due (the list after
//! `--gateways-refresh`, a cluster's statistics after `--stats-ttl`), the first scrape
//! starts one refresh task and every scrape, concurrent or not, waits for that same task
//! until its own deadline: any number of scrapes cause at most one refresh. Nothing runs
//! between scrapes except a refresh a scrape started and gave up waiting for.
//!
//! Failures keep the last good values (with their age) and push the next attempt back:
//! transient errors by 1 s doubling up to the normal interval, 429 by the server's
//! `X-Rate-Limit-Retry` (at least 1 s, doubling while it repeats), 401/403 by a minute
//! doubling up to ten.

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
    client::{ApiError, BATCH_LIMIT, Client, PAGE_LIMIT, StatsReply},
    config::{Cluster, Config, Selection},
};

/// At most this many list pages per refresh (a million gateways).
const MAX_PAGES: u32 = 1000;

/// A gateway the exporter watches.
#[derive(Debug, Clone)]
pub struct Known {
    pub id: String,
    /// The registry entry; `None` when the key cannot read it.
    pub info: Option<Arc<api::Gateway>>,
    pub cluster: Cluster,
}

/// The last good statistics answer of one gateway.
#[derive(Debug, Clone)]
pub struct Record {
    pub reply: Arc<StatsReply>,
    pub at: Instant,
    pub tx_ack_known: bool,
}

/// Why a refresh step failed, kept until the step succeeds again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The API's error name when the key was refused (401/403), for `ttn_up 0`.
    pub auth: Option<String>,
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
}

impl Phase {
    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_none_or(|due| now >= due)
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
            doubling(Duration::from_secs(1), interval)
        };
        self.due = Some(now + wait);
        self.error = Some(Failure {
            message: err.to_string(),
            auth: err.is_auth().then(|| err.name().unwrap_or("unnamed error").to_owned()),
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
            error: Some(Failure { message, auth: None }),
        };
    }

    /// A failure that no retry soon can fix (configuration): try again after `interval`.
    fn fail_for(&mut self, now: Instant, interval: Duration, message: String) {
        self.failures = self.failures.saturating_add(1);
        self.due = Some(now + interval);
        self.error = Some(Failure { message, auth: None });
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

    /// The known gateway `id`.
    pub fn gateway(&self, id: &str) -> Option<&Known> {
        self.gateways.iter().find(|g| g.id == id)
    }
}

/// The shared cache: configuration, client and the current snapshot.
#[derive(Debug)]
pub struct Cache {
    config: Config,
    client: Client,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Arc<Snapshot>,
    inflight: Option<watch::Receiver<bool>>,
    /// The refused-key error last logged, so that it is logged once per change.
    reported_auth: Option<String>,
}

/// What a scrape got from [`Cache::current`].
#[derive(Debug)]
pub struct Current {
    pub snapshot: Arc<Snapshot>,
    /// The refresh this scrape waited for was still running at its deadline.
    pub timed_out: bool,
}

impl Cache {
    pub fn new(config: Config, client: Client) -> Cache {
        Cache { config, client, state: Mutex::new(State::default()) }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The snapshot to render, refreshed first when due (waiting at most until `deadline`).
    pub async fn current(self: &Arc<Self>, deadline: Instant) -> Current {
        let wait = {
            let mut state = self.lock();
            if let Some(rx) = &state.inflight {
                Some(rx.clone())
            } else if state.snapshot.due(Instant::now()) {
                let (tx, rx) = watch::channel(false);
                state.inflight = Some(rx.clone());
                let cache = Arc::clone(self);
                tokio::spawn(async move { cache.refresh(tx).await });
                Some(rx)
            } else {
                None
            }
        };
        let mut timed_out = false;
        if let Some(mut rx) = wait {
            let done = tokio::time::timeout_at(deadline.into(), rx.wait_for(|done| *done)).await;
            timed_out = done.is_err();
        }
        Current { snapshot: Arc::clone(&self.lock().snapshot), timed_out }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written (every write
        // is a single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn refresh(self: Arc<Self>, done: watch::Sender<bool>) {
        struct Finish<'a>(&'a Cache, watch::Sender<bool>);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                self.0.lock().inflight = None;
                let _ = self.1.send(true);
            }
        }
        let _finish = Finish(&self, done);
        let mut snapshot = Snapshot::clone(&self.lock().snapshot);
        if snapshot.list.is_due(Instant::now()) {
            self.refresh_list(&mut snapshot).await;
        }
        self.refresh_stats(&mut snapshot).await;
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

    async fn refresh_list(&self, snap: &mut Snapshot) {
        let now = Instant::now();
        let interval = self.config.gateways_refresh;
        let found = match &self.config.selection {
            Selection::List(scope) => match self.list_all(scope).await {
                Ok((gateways, problems)) if gateways.is_empty() && problems.is_empty() => {
                    if let Some(why) = self.explain_empty_list().await {
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
            Selection::Fixed(ids) => match self.infos(ids, snap).await {
                Ok(found) => found,
                Err(err) => {
                    snap.list.fail(now, interval, &err);
                    return;
                }
            },
        };
        let (gateways, problems) = found;
        let mut known: Vec<Known> = gateways
            .into_iter()
            .map(|(id, info)| {
                let cluster = self
                    .config
                    .cluster(info.as_ref().and_then(|i| i.gateway_server_address.as_deref()));
                Known { id, info, cluster }
            })
            .collect();
        known.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: HashSet<&str> = known.iter().map(|g| g.id.as_str()).collect();
        snap.stats.retain(|id, _| ids.contains(id.as_str()));
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
        scope: &crate::client::ListScope,
    ) -> Result<(Vec<(String, Option<Arc<api::Gateway>>)>, Vec<String>), ApiError> {
        let mut gateways = Vec::new();
        let mut seen = HashSet::new();
        let mut problems = Vec::new();
        let mut received: u64 = 0;
        for page in 1..=MAX_PAGES {
            let (entries, total) = self.client.list_page(&self.config.api_url, scope, page).await?;
            let count = entries.len() as u64;
            received += count;
            for entry in entries {
                match entry {
                    Ok(g) if seen.insert(g.ids.gateway_id.clone()) => {
                        gateways.push((g.ids.gateway_id.clone(), Some(Arc::new(g))));
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
    async fn explain_empty_list(&self) -> Option<String> {
        let info = self.client.auth_info(&self.config.api_url).await.ok()?;
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
        ids: &[String],
        snap: &Snapshot,
    ) -> Result<(Vec<(String, Option<Arc<api::Gateway>>)>, Vec<String>), ApiError> {
        let previous: HashMap<&str, &Known> =
            snap.gateways.iter().map(|g| (g.id.as_str(), g)).collect();
        let results = bounded(ids.to_vec(), self.config.concurrency, {
            let client = self.client.clone();
            let base = self.config.api_url.clone();
            move |id: String| {
                let client = client.clone();
                let base = base.clone();
                async move {
                    let result = client.gateway(&base, &id).await;
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

    async fn refresh_stats(&self, snap: &mut Snapshot) {
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
        let mut tasks = JoinSet::new();
        for (host, (url, ids)) in due {
            let mode = snap.clusters.get(&host).map(|c| c.batch).unwrap_or_default();
            let client = self.client.clone();
            let concurrency = self.config.concurrency;
            tasks.spawn(async move {
                let fetched = fetch_cluster(client, url, ids, mode, concurrency).await;
                (host, fetched)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((host, fetched)) = joined else { continue };
            let tx_ack_known = fetched.batch != BatchMode::Unsupported
                && !fetched.results.iter().any(|(_, r)| old_gateway_server(r));
            let mut first_error: Option<ApiError> = fetched.error;
            let mut failed = 0usize;
            for (id, result) in fetched.results {
                match result {
                    Ok((reply, at)) => {
                        snap.stats.insert(id, Record { reply: Arc::new(reply), at, tx_ack_known });
                    }
                    Err(err) => {
                        failed += 1;
                        let err = match err {
                            ApiError::Decode(why) => {
                                ApiError::Decode(format!("gateway {id}: {why}"))
                            }
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
                        // Keep the most telling error: a refused key or a rate limit.
                        let worse = first_error.as_ref().is_none_or(|e| {
                            !e.is_auth()
                                && e.status() != Some(429)
                                && (err.is_auth() || err.status() == Some(429))
                        });
                        if worse {
                            first_error = Some(err);
                        }
                    }
                }
            }
            let state = snap.clusters.entry(host).or_default();
            state.batch = fetched.batch;
            let done = Instant::now();
            match first_error {
                None => state.phase.succeed(done, self.config.stats_ttl),
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

/// The outcome of one cluster's statistics calls.
#[derive(Debug)]
struct ClusterFetch {
    #[allow(clippy::type_complexity)]
    results: Vec<(String, Result<(StatsReply, Instant), ApiError>)>,
    batch: BatchMode,
    /// A failure that stopped the cluster's calls (rate limit, refused key, transport).
    error: Option<ApiError>,
}

async fn fetch_cluster(
    client: Client,
    url: Url,
    ids: Vec<String>,
    mut batch: BatchMode,
    concurrency: usize,
) -> ClusterFetch {
    let mut results = Vec::new();
    let mut single: Vec<String> = Vec::new();
    if batch == BatchMode::Batch {
        let mut chunks = ids.chunks(BATCH_LIMIT);
        while let Some(chunk) = chunks.next() {
            match client.batch_stats(&url, chunk).await {
                Ok(entries) => {
                    let at = Instant::now();
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
                Err(err) => return ClusterFetch { results, batch, error: Some(err) },
            }
        }
    } else {
        single = ids;
    }
    if single.is_empty() {
        return ClusterFetch { results, batch, error: None };
    }
    let stop = Arc::new(AtomicBool::new(false));
    let fetched = bounded(single, concurrency, {
        let stop = Arc::clone(&stop);
        move |id: String| {
            let client = client.clone();
            let url = url.clone();
            let stop = Arc::clone(&stop);
            async move {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let result = client.gateway_stats(&url, &id).await;
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
    results.extend(fetched.into_iter().flatten());
    ClusterFetch { results, batch, error: None }
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
fn old_gateway_server(result: &Result<(StatsReply, Instant), ApiError>) -> bool {
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
