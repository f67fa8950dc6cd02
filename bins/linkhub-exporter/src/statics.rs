//! The router's static facts, cached per router for `--static-ttl`.
//!
//! What is cached, and why it does not change while the router runs:
//! - `GetSystemInfo`: model, firmware and hardware versions, IMEI, IMSI, ICCID, MAC address;
//! - a ready SIM's `GetSimStatus` (SIM state 7): the SIM and its PIN state only change with a
//!   new SIM, which these routers take only across a restart; a SIM in any other state (PIN
//!   or PUK wanted, missing, initialising) is read on every scrape, and so is a cached one as
//!   soon as the router shows no service;
//! - that `GetBatteryState` is not supported (a LinkHub has no battery; a MiFi whose
//!   `GetSystemStatus` carries the battery fields is not asked for it at all);
//! - the SMS store (`GetSMSStorageState`) together with the status bar's `SmsState` it was
//!   read with: it is read again as soon as `GetSystemStatus.SmsState` (read on every scrape)
//!   differs, when the firmware sends no `SmsState`, and after the TTL.
//!
//! Everything is read again after `--static-ttl`, or at once when the router shows it
//! restarted: `GetSystemStatus.DeviceUptime` went down, or the session of an earlier scrape
//! was refused (a restart logs everybody out). The facts live in the router's login
//! bookkeeping ([`crate::client::Device`]), under its lock; nothing is read in the
//! background.

use std::time::{Duration, Instant};

use crate::api::{SimStatus, SmsStorageState, SystemInfo};

/// The default of `--static-ttl`.
pub const DEFAULT_STATIC_TTL: Duration = Duration::from_secs(600);

/// A value read from the router, and when.
#[derive(Debug, Clone)]
pub struct Cached<T> {
    pub value: T,
    pub read_at: Instant,
}

impl<T> Cached<T> {
    /// Caches `value`, read now.
    pub fn now(value: T) -> Cached<T> {
        Cached { value, read_at: Instant::now() }
    }

    /// Whether it was read less than `ttl` ago.
    pub fn fresh(&self, ttl: Duration) -> bool {
        self.read_at.elapsed() < ttl
    }

    /// Whole seconds since it was read.
    pub fn age_seconds(&self) -> f64 {
        self.read_at.elapsed().as_secs_f64().floor()
    }
}

/// The static facts of one router.
#[derive(Debug, Clone, Default)]
pub struct Statics {
    pub info: Option<Cached<SystemInfo>>,
    /// Only a ready SIM (`SIMState` 7).
    pub sim: Option<Cached<SimStatus>>,
    /// The store, and the `GetSystemStatus.SmsState` of the same scrape.
    pub sms: Option<Cached<(SmsStorageState, i64)>>,
    /// When `GetBatteryState` answered a method error.
    pub no_battery: Option<Instant>,
    /// The last `GetSystemStatus.DeviceUptime` seen (seconds).
    pub uptime: Option<f64>,
}

impl Statics {
    /// Forgets everything (the router restarted).
    pub fn forget(&mut self) {
        *self = Statics::default();
    }

    /// Records the uptime of this scrape; true when it went down (a restart).
    pub fn restarted(&mut self, uptime: Option<f64>) -> bool {
        let Some(now) = uptime else { return false };
        let before = self.uptime.replace(now);
        before.is_some_and(|b| now + 1.0 < b)
    }

    /// The cached facts of `GetSystemInfo`, if fresh.
    pub fn info(&self, ttl: Duration) -> Option<&Cached<SystemInfo>> {
        self.info.as_ref().filter(|c| c.fresh(ttl))
    }

    /// The cached ready SIM, if fresh.
    pub fn sim(&self, ttl: Duration) -> Option<&Cached<SimStatus>> {
        self.sim.as_ref().filter(|c| c.fresh(ttl))
    }

    /// Whether the router is known to have no `GetBatteryState`.
    pub fn no_battery(&self, ttl: Duration) -> bool {
        self.no_battery.is_some_and(|at| at.elapsed() < ttl)
    }

    /// The cached SMS store, if fresh and read with the status bar's `sms_state`.
    pub fn sms(
        &self,
        ttl: Duration,
        sms_state: Option<i64>,
    ) -> Option<&Cached<(SmsStorageState, i64)>> {
        let state = sms_state?;
        self.sms.as_ref().filter(|c| c.fresh(ttl) && c.value.1 == state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_going_down_is_a_restart() {
        let mut s = Statics::default();
        assert!(!s.restarted(Some(100.0)));
        assert!(!s.restarted(Some(160.0)));
        assert!(!s.restarted(None));
        assert!(s.restarted(Some(20.0)));
        assert!(!s.restarted(Some(35.0)));
    }

    #[test]
    fn entries_expire_with_the_ttl() {
        let mut s = Statics { no_battery: Some(Instant::now()), ..Statics::default() };
        s.info = Some(Cached::now(SystemInfo::default()));
        assert!(s.info(Duration::from_secs(60)).is_some());
        assert!(s.info(Duration::ZERO).is_none());
        assert!(s.no_battery(Duration::from_secs(60)));
        assert!(!s.no_battery(Duration::ZERO));
        s.sms = Some(Cached::now((SmsStorageState::default(), 3)));
        assert!(s.sms(Duration::from_secs(60), Some(3)).is_some());
        assert!(s.sms(Duration::from_secs(60), Some(2)).is_none());
        assert!(s.sms(Duration::from_secs(60), None).is_none());
        s.forget();
        assert!(s.info.is_none() && s.sms.is_none() && s.no_battery.is_none());
    }
}
