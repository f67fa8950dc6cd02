//! The exporter's own accounting of its API calls: requests by cluster, endpoint and status
//! code, their durations as histogram buckets, and the rate-limit budget the servers
//! announce in `X-Rate-Limit-*` headers.
//!
//! These are not device data: they count what this process did, live as long as the
//! exporter, and are rendered into every scrape (see `metrics::api_health`). The label sets
//! are bounded: the clusters are the configured ones, the endpoints a fixed list, and the
//! codes HTTP status codes (100 to 599) or `error`.

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use reqwest::header::HeaderMap;

/// Upper bounds of the request duration histogram, in seconds.
pub const BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0];

/// At most this many clusters are accounted for; calls to further ones share `other`.
const MAX_CLUSTERS: usize = 64;

/// The API calls the exporter makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `GET /api/v3/gateways` (and the user and organization variants).
    ListGateways,
    /// `GET /api/v3/gateways/{id}`.
    GetGateway,
    /// `GET /api/v3/auth_info`.
    AuthInfo,
    /// `POST /api/v3/gs/gateways/connection/stats`.
    BatchStats,
    /// `GET /api/v3/gs/gateways/{id}/connection/stats`.
    GatewayStats,
}

impl Endpoint {
    /// The `endpoint` label: the gRPC method name, as The Things Stack calls it.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ListGateways => "ListGateways",
            Endpoint::GetGateway => "GetGateway",
            Endpoint::AuthInfo => "AuthInfo",
            Endpoint::BatchStats => "BatchGetGatewayConnectionStats",
            Endpoint::GatewayStats => "GetGatewayConnectionStats",
        }
    }
}

/// The outcome of one call, for the `code` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// An HTTP status.
    Status(u16),
    /// No HTTP answer (refused, timed out, TLS, reset).
    NoAnswer,
}

impl Code {
    /// The `code` label: the status, or `error` without an answer.
    pub fn label(self) -> String {
        match self {
            Code::Status(status) => status.to_string(),
            Code::NoAnswer => "error".to_owned(),
        }
    }
}

/// The `X-Rate-Limit-*` headers of one answer (either spelling, spec §1.9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `X-Rate-Limit-Limit`: the burst size.
    pub limit: Option<u64>,
    /// `X-Rate-Limit-Available`: requests left right now.
    pub available: Option<u64>,
    /// `X-Rate-Limit-Reset`: seconds until the bucket is full again.
    pub reset: Option<u64>,
}

impl RateLimitHeaders {
    /// Reads the headers; `None` when the answer has none of them (rate limiting off).
    pub fn from_headers(headers: &HeaderMap) -> Option<RateLimitHeaders> {
        let read = |name: &str| -> Option<u64> {
            let alt = name.replacen("rate-limit", "ratelimit", 1);
            headers
                .iter()
                .find(|(k, _)| k.as_str().eq_ignore_ascii_case(name) || k.as_str() == alt)
                .and_then(|(_, v)| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let found = RateLimitHeaders {
            limit: read("x-rate-limit-limit"),
            available: read("x-rate-limit-available"),
            reset: read("x-rate-limit-reset"),
        };
        (found != RateLimitHeaders::default()).then_some(found)
    }
}

/// One duration histogram: cumulative counts per bucket of [`BUCKETS`], sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound of [`BUCKETS`] (cumulative).
    pub buckets: [u64; BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (bound, n) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// Everything accounted so far, as plain data for rendering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthSnapshot {
    /// Calls by (cluster, endpoint, code).
    pub requests: BTreeMap<(String, Endpoint, Code), u64>,
    /// Durations by (cluster, endpoint).
    pub durations: BTreeMap<(String, Endpoint), Histogram>,
    /// The last rate-limit headers seen from each cluster.
    pub rate_limits: BTreeMap<String, RateLimitHeaders>,
}

/// The accounting shared by every API call of the exporter.
#[derive(Debug, Default)]
pub struct ApiHealth {
    state: Mutex<HealthSnapshot>,
}

impl ApiHealth {
    /// Accounts for one finished call to `cluster`.
    pub fn record(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        code: Code,
        took: Duration,
        rate_limit: Option<RateLimitHeaders>,
    ) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let known = state.durations.keys().any(|(c, _)| c == cluster);
        let cluster = if known || state.durations.len() < MAX_CLUSTERS * 5 {
            cluster.to_owned()
        } else {
            "other".to_owned()
        };
        *state.requests.entry((cluster.clone(), endpoint, code)).or_insert(0) += 1;
        state.durations.entry((cluster.clone(), endpoint)).or_default().observe(took.as_secs_f64());
        if let Some(headers) = rate_limit {
            state.rate_limits.insert(cluster, headers);
        }
    }

    /// A copy of everything accounted so far.
    pub fn snapshot(&self) -> HealthSnapshot {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn accounts_calls_and_buckets() {
        let health = ApiHealth::default();
        let c = "eu1.cloud.thethings.network";
        health.record(c, Endpoint::BatchStats, Code::Status(200), Duration::from_millis(30), None);
        health.record(c, Endpoint::BatchStats, Code::Status(200), Duration::from_secs(3), None);
        health.record(c, Endpoint::BatchStats, Code::NoAnswer, Duration::from_secs(30), None);
        let snap = health.snapshot();
        assert_eq!(snap.requests[&(c.to_owned(), Endpoint::BatchStats, Code::Status(200))], 2);
        assert_eq!(snap.requests[&(c.to_owned(), Endpoint::BatchStats, Code::NoAnswer)], 1);
        let h = &snap.durations[&(c.to_owned(), Endpoint::BatchStats)];
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets, [0, 1, 1, 1, 1, 1, 1, 2, 2, 2]);
        assert!((h.sum - 33.03).abs() < 1e-9);
        assert!(snap.rate_limits.is_empty());
    }

    #[test]
    fn rate_limit_headers_in_either_spelling() {
        let mut headers = HeaderMap::new();
        assert_eq!(RateLimitHeaders::from_headers(&headers), None);
        headers.insert("x-rate-limit-available", HeaderValue::from_static("57"));
        headers.insert("X-Rate-Limit-Limit", HeaderValue::from_static("60"));
        let got = RateLimitHeaders::from_headers(&headers).unwrap();
        assert_eq!((got.available, got.limit, got.reset), (Some(57), Some(60), None));
        let mut alt = HeaderMap::new();
        alt.insert("x-ratelimit-available", HeaderValue::from_static("0"));
        alt.insert("x-ratelimit-reset", HeaderValue::from_static("nonsense"));
        let got = RateLimitHeaders::from_headers(&alt).unwrap();
        assert_eq!((got.available, got.reset), (Some(0), None));
    }
}
