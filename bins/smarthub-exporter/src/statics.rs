//! The hub's slow facts (`cgi_basicStatus.js`: firmware, serial number, boot time), cached
//! per hub for `--static-ttl`.
//!
//! The only cache of the exporter, and it holds no readings that change between scrapes:
//! the page is read by the scrape that finds the facts missing or older than the TTL, or
//! when `wan_conn.xml`'s `sysuptime` (read on every scrape) no longer matches the cached
//! boot, i.e. the hub restarted (a firmware update restarts it too). A failed read keeps
//! the facts read before and is retried after [`RETRY_AFTER`] (or the TTL, if shorter),
//! so a firmware without the page does not cost a request on every scrape.
//! Nothing is read in the background.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::api::BasicStatus;

/// How long after a failed read the page is asked for again (at most the TTL).
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How far `sysuptime` may stray from the cached boot before it counts as a restart: the
/// hub's uptime is whole seconds, and each reading is late by up to its request's duration.
pub const RESTART_TOLERANCE: Duration = Duration::from_secs(10);
/// Most hubs remembered (each `/probe?target=` address is one); the least recently read
/// one goes first.
pub const MAX_HUBS: usize = 256;

/// The facts read from one hub.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub status: BasicStatus,
    /// When the page was read (monotonic clock).
    pub read_at: Instant,
    /// Unix time of the boot: the wall clock at the reading minus `sysuptime`, whole seconds.
    pub boot_time: Option<f64>,
}

/// What a scrape does about the facts.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Read the page now.
    Read,
    /// Use the cached facts; they were read `age` ago.
    Cached { age: Duration },
    /// The last read failed with this error and is not retried yet.
    Wait { error: String, retry_in: Duration },
}

/// The facts of every hub scraped, keyed by its base URL.
#[derive(Debug)]
pub struct StaticCache {
    ttl: Duration,
    hubs: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    facts: Option<Facts>,
    attempt: Instant,
    error: Option<String>,
}

impl StaticCache {
    pub fn new(ttl: Duration) -> StaticCache {
        StaticCache { ttl, hubs: Mutex::new(HashMap::new()) }
    }

    /// The TTL the cache was built with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether a scrape of `hub` at `now` reads the page.
    pub fn plan(&self, hub: &str, now: Instant) -> Plan {
        let hubs = self.lock();
        let Some(entry) = hubs.get(hub) else { return Plan::Read };
        if let Some(error) = &entry.error {
            let wait = RETRY_AFTER.min(self.ttl);
            let since = now.saturating_duration_since(entry.attempt);
            if since < wait {
                return Plan::Wait { error: error.clone(), retry_in: wait - since };
            }
            return Plan::Read;
        }
        match &entry.facts {
            Some(f) if now.saturating_duration_since(f.read_at) < self.ttl => {
                Plan::Cached { age: now.saturating_duration_since(f.read_at) }
            }
            _ => Plan::Read,
        }
    }

    /// The cached facts of `hub`, if any.
    pub fn facts(&self, hub: &str) -> Option<Facts> {
        self.lock().get(hub).and_then(|e| e.facts.clone())
    }

    /// Stores a successful read.
    pub fn store(&self, hub: &str, facts: Facts) {
        let attempt = facts.read_at;
        self.insert(hub, Entry { facts: Some(facts), attempt, error: None });
    }

    /// Notes a failed read at `now`; facts read before stay.
    pub fn failed(&self, hub: &str, error: String, now: Instant) {
        let facts = self.facts(hub);
        self.insert(hub, Entry { facts, attempt: now, error: Some(error) });
    }

    /// Forgets the facts of `hub` (it restarted: they may be wrong now).
    pub fn forget(&self, hub: &str) {
        self.lock().remove(hub);
    }

    /// Whether `sysuptime`, read from `hub` at `at`, says the hub restarted (or is another
    /// hub) since the cached facts were read: it is more than [`RESTART_TOLERANCE`] away
    /// from the cached uptime plus the time gone by. `false` without cached facts.
    pub fn restarted(&self, hub: &str, sysuptime: u64, at: Instant) -> bool {
        let hubs = self.lock();
        let Some(Facts { status: BasicStatus { sysuptime: Some(then), .. }, read_at, .. }) =
            hubs.get(hub).and_then(|e| e.facts.as_ref())
        else {
            return false;
        };
        let expected = *then as f64 + at.saturating_duration_since(*read_at).as_secs_f64();
        (sysuptime as f64 - expected).abs() > RESTART_TOLERANCE.as_secs_f64()
    }

    fn insert(&self, hub: &str, entry: Entry) {
        let mut hubs = self.lock();
        if !hubs.contains_key(hub) && hubs.len() >= MAX_HUBS {
            let oldest = hubs.iter().min_by_key(|(_, e)| e.attempt).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                hubs.remove(&k);
            }
        }
        hubs.insert(hub.to_owned(), entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.hubs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn facts(uptime: u64, at: Instant) -> Facts {
        Facts {
            status: BasicStatus { sysuptime: Some(uptime), ..BasicStatus::default() },
            read_at: at,
            boot_time: Some(1_700_000_000.0),
        }
    }

    #[test]
    fn read_then_cached_until_the_ttl() {
        let cache = StaticCache::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert_eq!(cache.plan("h", t0), Plan::Read);
        cache.store("h", facts(1000, t0));
        assert_eq!(
            cache.plan("h", t0 + Duration::from_secs(5)),
            Plan::Cached { age: Duration::from_secs(5) }
        );
        assert_eq!(cache.plan("h", t0 + Duration::from_secs(600)), Plan::Read);
        assert_eq!(cache.plan("other", t0), Plan::Read);
        let zero = StaticCache::new(Duration::ZERO);
        zero.store("h", facts(1000, t0));
        assert_eq!(zero.plan("h", t0), Plan::Read, "a TTL of 0 reads on every scrape");
    }

    #[test]
    fn a_failure_waits_and_keeps_the_old_facts() {
        let cache = StaticCache::new(Duration::from_secs(600));
        let t0 = Instant::now();
        cache.store("h", facts(1000, t0));
        let t1 = t0 + Duration::from_secs(700);
        cache.failed("h", "HTTP 404".into(), t1);
        assert!(matches!(cache.plan("h", t1 + Duration::from_secs(1)), Plan::Wait { .. }));
        assert!(cache.facts("h").is_some());
        assert_eq!(cache.plan("h", t1 + RETRY_AFTER), Plan::Read);
        let short = StaticCache::new(Duration::from_secs(5));
        short.failed("h", "x".into(), t0);
        assert_eq!(short.plan("h", t0 + Duration::from_secs(5)), Plan::Read, "TTL caps the wait");
    }

    #[test]
    fn restarts_are_seen_in_the_uptime() {
        let cache = StaticCache::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(!cache.restarted("h", 5, t0), "nothing cached, nothing to compare");
        cache.store("h", facts(1000, t0));
        let later = t0 + Duration::from_secs(300);
        assert!(!cache.restarted("h", 1300, later));
        assert!(!cache.restarted("h", 1305, later), "within the tolerance");
        assert!(cache.restarted("h", 120, later), "uptime went back: restarted");
        assert!(cache.restarted("h", 90_000, later), "another hub answers at that address");
        cache.forget("h");
        assert_eq!(cache.plan("h", later), Plan::Read);
    }

    #[test]
    fn the_number_of_hubs_is_bounded() {
        let cache = StaticCache::new(Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..MAX_HUBS + 10 {
            cache.store(&format!("h{i}"), facts(1, t0 + Duration::from_millis(i as u64)));
        }
        assert_eq!(cache.lock().len(), MAX_HUBS);
        assert!(
            cache.facts("h0").is_none() && cache.facts(&format!("h{}", MAX_HUBS + 9)).is_some()
        );
    }
}
