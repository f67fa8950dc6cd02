//! The exporter's own metrics on `/metrics`: build info, request counters and the reload
//! state, in a registry owned by one server (no global registry), and the `process_*`
//! metrics (`process.rs`).

use prometheus::{Encoder as _, Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// `rustc --version` of the compiler that built exporter-core.
pub(crate) const RUSTC_VERSION: &str = env!("EXPORTER_CORE_RUSTC_VERSION");
/// The short git revision of the build (or `unknown`).
pub(crate) const REVISION: &str = env!("EXPORTER_CORE_REVISION");

/// The own registry of one server.
#[derive(Debug)]
pub(crate) struct SelfMetrics {
    registry: Registry,
    requests: IntCounterVec,
    coalesced: IntCounter,
    rejected: IntCounterVec,
    reload_ok: IntGauge,
    reload_time: Gauge,
}

/// The `reason` values of `<ns>_exporter_probe_rejected_total`.
pub(crate) const REJECT_REASONS: [&str; 2] = ["invalid_target", "not_allowed"];

impl SelfMetrics {
    pub(crate) fn new(namespace: &str, version: &str) -> anyhow::Result<SelfMetrics> {
        let registry = Registry::new();
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                format!("{namespace}_exporter_build_info"),
                "A metric with a constant '1' value labeled by the exporter's version, git \
                 revision and the rustc version it was built with.",
            ),
            &["version", "revision", "rustc_version"],
        )?;
        build_info.with_label_values(&[version, REVISION, rustc_short()]).set(1);
        registry.register(Box::new(build_info))?;

        let requests = IntCounterVec::new(
            Opts::new(
                format!("{namespace}_exporter_http_requests_total"),
                "HTTP requests answered by the exporter, by handler and status code.",
            ),
            &["handler", "code"],
        )?;
        registry.register(Box::new(requests.clone()))?;

        let coalesced = IntCounter::new(
            format!("{namespace}_exporter_scrapes_coalesced_total"),
            "Scrape requests answered from a scrape of the same target already in flight \
             (single flight) instead of a new device query.",
        )?;
        registry.register(Box::new(coalesced.clone()))?;

        let rejected = IntCounterVec::new(
            Opts::new(
                format!("{namespace}_exporter_probe_rejected_total"),
                "/probe requests refused before any device was asked, by reason: \
                 invalid_target (400) or not_allowed (403, outside --probe-allow).",
            ),
            &["reason"],
        )?;
        for reason in REJECT_REASONS {
            rejected.with_label_values(&[reason]);
        }
        registry.register(Box::new(rejected.clone()))?;

        let reload_ok = IntGauge::new(
            format!("{namespace}_exporter_config_last_reload_successful"),
            "Whether the last configuration reload (SIGHUP or POST /-/reload) succeeded: 1, or \
             0 while the exporter keeps running on the configuration before it.",
        )?;
        reload_ok.set(1);
        registry.register(Box::new(reload_ok.clone()))?;
        let reload_time = Gauge::new(
            format!("{namespace}_exporter_config_last_reload_success_timestamp_seconds"),
            "Unix time of the last successful configuration load (the start, or a reload).",
        )?;
        reload_time.set(unix_now());
        registry.register(Box::new(reload_time.clone()))?;

        Ok(SelfMetrics { registry, requests, coalesced, rejected, reload_ok, reload_time })
    }

    /// Counts one `/probe` refused for `reason` (one of [`REJECT_REASONS`]).
    pub(crate) fn count_rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// Records the outcome of a configuration reload.
    pub(crate) fn reloaded(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            self.reload_time.set(unix_now());
        }
    }

    /// Counts one answered request.
    pub(crate) fn count_request(&self, handler: &str, code: u16) {
        self.requests.with_label_values(&[handler, &code.to_string()]).inc();
    }

    /// Counts one request that joined a scrape in flight.
    pub(crate) fn count_coalesced(&self) {
        self.coalesced.inc();
    }

    /// The own metrics as text format 0.0.4.
    pub(crate) fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(err) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!("cannot encode the exporter's own metrics: {err}");
        }
        let mut text = String::from_utf8(buf).unwrap_or_default();
        crate::process::Process::read_self().encode(&mut text);
        text
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `1.95.0` from `rustc 1.95.0 (hash date)`.
pub(crate) fn rustc_short() -> &'static str {
    RUSTC_VERSION.split_whitespace().nth(1).unwrap_or(RUSTC_VERSION)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn own_metrics_are_complete_and_lint_clean() {
        let m = SelfMetrics::new("demo", "1.2.3").unwrap();
        m.count_request("/probe", 200);
        m.count_request("/probe", 200);
        m.count_coalesced();
        m.count_rejected("not_allowed");
        m.reloaded(false);
        let text = m.encode();
        assert!(
            text.contains("demo_exporter_probe_rejected_total{reason=\"not_allowed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("demo_exporter_probe_rejected_total{reason=\"invalid_target\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("demo_exporter_config_last_reload_successful 0\n"), "{text}");
        assert!(
            text.contains("demo_exporter_config_last_reload_success_timestamp_seconds 1"),
            "{text}"
        );
        assert!(
            text.contains("demo_exporter_http_requests_total{code=\"200\",handler=\"/probe\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("demo_exporter_build_info{revision=\""), "{text}");
        assert!(text.contains("version=\"1.2.3\"} 1\n"), "{text}");
        assert!(text.contains("demo_exporter_scrapes_coalesced_total 1\n"), "{text}");
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name} missing:\n{text}");
        }
        assert!(!rustc_short().is_empty());
        if let Some(findings) = crate::testing::promtool_check_metrics(&text) {
            assert_eq!(findings, "", "{text}");
        }
    }

    #[test]
    fn registries_are_per_server() {
        let a = SelfMetrics::new("demo", "1").unwrap();
        let b = SelfMetrics::new("demo", "1").unwrap();
        a.count_request("/", 200);
        assert!(!b.encode().contains("handler=\"/\""));
    }
}
