//! Facts kept across scrapes because reading them costs a D-Bus round trip each and they do
//! not change while their object lives.
//!
//! - The manager's `Version`, per ModemManager instance (the unique bus name that answered
//!   `GetManagedObjects`): a version changes only with a daemon restart, which gives the
//!   daemon a new unique name, so the cached value is exactly as fresh as a read.
//! - Each SIM object's properties (ICCID, IMSI, EID, operator), per instance and SIM object
//!   path, for `--static-ttl`: ModemManager creates a new SIM object when a SIM is swapped
//!   or the modem is probed again, so a new path (or a new daemon) is read at once; the TTL
//!   bounds what a property changed in place (e.g. the operator name loaded late) can lag.
//!
//! Everything modem-level (IMEI, model, firmware, state) comes with `GetManagedObjects` on
//! every scrape anyway and is never cached: caching it would save no round trip.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crate::decode::Props;

/// The default of `--static-ttl`.
pub const DEFAULT_STATIC_TTL: Duration = Duration::from_secs(600);

/// The cache; one per exporter.
#[derive(Debug)]
pub struct Statics {
    ttl: Mutex<Duration>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (daemon's unique name, its `Version`, when read).
    version: Option<(String, Option<String>, Instant)>,
    /// (daemon's unique name, SIM path) → (properties, when read).
    sims: HashMap<(String, String), (Props, Instant)>,
}

impl Statics {
    /// A cache whose SIM entries live for `ttl` (zero: no SIM caching).
    pub fn new(ttl: Duration) -> Statics {
        Statics { ttl: Mutex::new(ttl), inner: Mutex::default() }
    }

    /// The SIM lifetime in force.
    pub fn ttl(&self) -> Duration {
        *self.ttl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the SIM lifetime (a reload); entries older than the new one are read again.
    pub fn set_ttl(&self, ttl: Duration) {
        *self.ttl.lock().unwrap_or_else(PoisonError::into_inner) = ttl;
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached `Version` of the daemon `owner` and its age.
    pub fn version(&self, owner: &str) -> Option<(Option<String>, Duration)> {
        let inner = self.inner();
        let (o, v, at) = inner.version.as_ref()?;
        (o == owner).then(|| (v.clone(), at.elapsed()))
    }

    /// Remembers the `Version` read from the daemon `owner`.
    pub fn store_version(&self, owner: &str, version: Option<String>) {
        self.inner().version = Some((owner.to_owned(), version, Instant::now()));
    }

    /// The cached properties of the SIM at `path` of the daemon `owner`, when younger than
    /// the TTL, and their age.
    pub fn sim(&self, owner: &str, path: &str) -> Option<(Props, Duration)> {
        let ttl = self.ttl();
        let inner = self.inner();
        let (props, at) = inner.sims.get(&(owner.to_owned(), path.to_owned()))?;
        let age = at.elapsed();
        (age < ttl).then(|| (props.clone(), age))
    }

    /// Remembers the properties of the SIM at `path` (nothing when the TTL is zero).
    pub fn store_sim(&self, owner: &str, path: &str, props: &Props) {
        if self.ttl().is_zero() {
            return;
        }
        self.inner()
            .sims
            .insert((owner.to_owned(), path.to_owned()), (props.clone(), Instant::now()));
    }

    /// Drops every SIM entry of another daemon, or of a SIM object no modem points to now.
    pub fn retain_sims(&self, owner: &str, paths: &HashSet<String>) {
        self.inner().sims.retain(|(o, p), _| o == owner && paths.contains(p));
    }

    /// Forgets everything (a daemon that is gone).
    pub fn clear(&self) {
        *self.inner() = Inner::default();
    }
}

/// The `--static-ttl` duration (exporter-core's, shared by every exporter).
pub use exporter_core::config::Ttl;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_and_print() {
        assert_eq!("10m".parse::<Ttl>().unwrap().0, Duration::from_secs(600));
        assert_eq!("0s".parse::<Ttl>().unwrap().0, Duration::ZERO);
        assert_eq!(Ttl(Duration::from_secs(3600)).to_string(), "1h");
        assert!("10".parse::<Ttl>().is_err());
        assert!("25h".parse::<Ttl>().is_err());
    }

    #[test]
    fn entries_are_per_daemon_and_path_and_expire() {
        let s = Statics::new(Duration::from_secs(600));
        let props = Props::new();
        s.store_sim(":1.5", "/SIM/0", &props);
        assert!(s.sim(":1.5", "/SIM/0").is_some());
        assert!(s.sim(":1.6", "/SIM/0").is_none(), "a restarted daemon is read again");
        assert!(s.sim(":1.5", "/SIM/1").is_none(), "a new SIM object is read again");
        s.set_ttl(Duration::ZERO);
        assert!(s.sim(":1.5", "/SIM/0").is_none(), "an entry older than the TTL is read again");
        s.set_ttl(Duration::from_secs(600));
        s.retain_sims(":1.5", &HashSet::new());
        assert!(s.sim(":1.5", "/SIM/0").is_none(), "a SIM no modem points to is forgotten");
        s.store_version(":1.5", Some("1.20.4".into()));
        assert_eq!(s.version(":1.5").map(|v| v.0), Some(Some("1.20.4".into())));
        assert!(s.version(":1.6").is_none());
    }
}
