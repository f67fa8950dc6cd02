//! Device busy time: how long at least one device request was being answered.
//!
//! Benchmarks subtract it from a scrape's latency to get the exporter's own share: the time
//! the exporter spent on a scrape while no device request of it was open. Overlapping
//! requests count once (the union of their intervals), so a round of parallel requests
//! counts as long as its slowest one.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

/// Tracks the requests in flight and the union of the intervals during which any was.
#[derive(Debug, Default)]
pub struct Busy {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    /// When `in_flight` last went from 0 to 1.
    since: Option<Instant>,
    /// Closed busy intervals since the last reset.
    total: Duration,
}

impl Busy {
    /// Marks one request as being answered until the guard is dropped.
    pub fn enter(&self) -> BusyGuard<'_> {
        let mut st = self.lock();
        if st.in_flight == 0 {
            st.since = Some(Instant::now());
        }
        st.in_flight += 1;
        BusyGuard(self)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Busy time since the last reset, the open interval included.
    pub fn total(&self) -> Duration {
        let st = self.lock();
        st.total + st.since.map(|s| s.elapsed()).unwrap_or_default()
    }

    /// Busy time in whole microseconds (for the control APIs' JSON).
    pub fn total_micros(&self) -> u64 {
        u64::try_from(self.total().as_micros()).unwrap_or(u64::MAX)
    }

    /// Sets the busy time back to 0 (an open interval restarts now).
    pub fn reset(&self) {
        let mut st = self.lock();
        st.total = Duration::ZERO;
        if st.since.is_some() {
            st.since = Some(Instant::now());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One request in flight; see [`Busy::enter`].
#[derive(Debug)]
pub struct BusyGuard<'a>(&'a Busy);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if st.in_flight == 0
            && let Some(since) = st.since.take()
        {
            st.total += since.elapsed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_requests_count_once() {
        let busy = Busy::default();
        let a = busy.enter();
        let b = busy.enter();
        std::thread::sleep(Duration::from_millis(30));
        drop(a);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(busy.in_flight(), 1);
        drop(b);
        let first = busy.total();
        assert!(first >= Duration::from_millis(60), "{first:?}");
        // Idle time is not busy time.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(busy.total(), first);
        assert_eq!(busy.in_flight(), 0);
        busy.reset();
        assert_eq!(busy.total(), Duration::ZERO);
    }
}
