//! Single flight: concurrent scrapes of one target share one in-flight probe and its
//! rendered result, so a device sees at most one query at a time.
//!
//! The probe runs in its own task: a client that disconnects does not cancel a probe other
//! requests wait for, and a panic inside the probe ends only that task (reported as a bug).
//! Each request waits bounded by its own deadline. `--max-concurrent-scrapes` bounds the
//! number of distinct probes in flight; joining one that is already running is free.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::scrape::Rendered;

/// How long past its deadline a request waits for the probe's rendered answer (the probe
/// itself is dropped shortly after the deadline, then rendering takes microseconds).
pub(crate) const WAIT_GRACE: Duration = Duration::from_millis(100);

/// The outcome of [`Coalescer::run`] for one request.
#[derive(Debug)]
pub(crate) enum Joined {
    /// The probe's rendered result; `leader` is false when this request joined a probe
    /// another request had started.
    Done { rendered: Arc<Rendered>, leader: bool },
    /// The request's own deadline passed while it waited for another request's probe.
    TimedOut,
    /// Too many distinct probes in flight (answer 503).
    Busy,
    /// The probe task panicked or vanished: a bug (answer 500).
    Bug,
}

/// The in-flight probes by target key.
#[derive(Debug)]
pub(crate) struct Coalescer {
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Shared>>>>,
    limit: usize,
}

#[derive(Debug, Clone)]
enum Shared {
    Done(Arc<Rendered>),
    Bug,
}

impl Coalescer {
    pub(crate) fn new(limit: usize) -> Coalescer {
        Coalescer { inflight: Mutex::new(HashMap::new()), limit: limit.max(1) }
    }

    /// The number of distinct probes in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().len()
    }

    /// Joins the probe of `key` in flight, or starts `probe()` as a new one (when under the
    /// limit), then waits for its result until `deadline` (+ [`WAIT_GRACE`]).
    pub(crate) async fn run<F, Fut>(
        self: &Arc<Self>,
        key: String,
        deadline: Instant,
        probe: F,
    ) -> Joined
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Rendered> + Send + 'static,
    {
        let (mut rx, leader) = {
            let mut inflight = self.lock();
            if let Some(rx) = inflight.get(&key) {
                (rx.clone(), false)
            } else if inflight.len() >= self.limit {
                return Joined::Busy;
            } else {
                let (tx, rx) = watch::channel(None);
                inflight.insert(key.clone(), rx.clone());
                let fut = probe();
                let guard = Remove { coalescer: Arc::clone(self), key };
                tokio::spawn(async move {
                    let shared = match tokio::spawn(fut).await {
                        Ok(rendered) => Shared::Done(Arc::new(rendered)),
                        Err(err) => {
                            let what = panic_message(err);
                            log::error!(
                                target: "scrape", target = guard.key.as_str(), panic = what.as_str();
                                "bug: the probe panicked"
                            );
                            Shared::Bug
                        }
                    };
                    drop(guard);
                    let _ = tx.send(Some(shared));
                });
                (rx, true)
            }
        };
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout_at((deadline + WAIT_GRACE).into(), wait).await {
            Ok(Ok(shared)) => match shared.clone() {
                Some(Shared::Done(rendered)) => Joined::Done { rendered, leader },
                Some(Shared::Bug) | None => Joined::Bug,
            },
            Ok(Err(_)) => Joined::Bug,
            Err(_) => Joined::TimedOut,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Receiver<Option<Shared>>>> {
        self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes a probe from the in-flight map when its task ends, however it ends.
struct Remove {
    coalescer: Arc<Coalescer>,
    key: String,
}

impl Drop for Remove {
    fn drop(&mut self) {
        self.coalescer.lock().remove(&self.key);
    }
}

fn panic_message(err: tokio::task::JoinError) -> String {
    if !err.is_panic() {
        return format!("{err}");
    }
    let payload = err.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::scrape::Body;

    fn rendered(text: &str) -> Rendered {
        Rendered {
            body: Body::Text(text.to_owned()),
            trace: String::new(),
            report: Default::default(),
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_probe() {
        let c = Arc::new(Coalescer::new(4));
        let calls = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, calls) = (Arc::clone(&c), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                c.run("t".to_owned(), deadline, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    rendered("x")
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            match t.await.unwrap() {
                Joined::Done { rendered, leader } => {
                    assert_eq!(rendered.text(), "x");
                    leaders += usize::from(leader);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn limit_counts_distinct_targets_and_panics_are_bugs() {
        let c = Arc::new(Coalescer::new(1));
        let deadline = Instant::now() + Duration::from_secs(5);
        let c2 = Arc::clone(&c);
        let slow = tokio::spawn(async move {
            c2.run("a".to_owned(), deadline, || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                rendered("a")
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            c.run("b".to_owned(), deadline, || async { rendered("b") }).await,
            Joined::Busy
        ));
        assert!(matches!(slow.await.unwrap(), Joined::Done { .. }));
        let panicking = c
            .run("p".to_owned(), deadline, move || async move {
                if deadline > Instant::now() {
                    panic!("boom");
                }
                rendered("never")
            })
            .await;
        assert!(matches!(panicking, Joined::Bug), "{panicking:?}");
        assert_eq!(c.in_flight(), 0, "a panicked probe is removed");
    }

    #[tokio::test]
    async fn a_follower_waits_only_until_its_own_deadline() {
        let c = Arc::new(Coalescer::new(4));
        let c2 = Arc::clone(&c);
        let leader = tokio::spawn(async move {
            c2.run("t".to_owned(), Instant::now() + Duration::from_secs(5), || async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                rendered("late")
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let follower = c
            .run("t".to_owned(), Instant::now() + Duration::from_millis(100), || async {
                rendered("x")
            })
            .await;
        assert!(matches!(follower, Joined::TimedOut), "{follower:?}");
        assert!(start.elapsed() < Duration::from_millis(500));
        assert!(matches!(leader.await.unwrap(), Joined::Done { leader: true, .. }));
    }
}
