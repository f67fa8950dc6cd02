//! HTTP calls to the Identity Server and the Gateway Servers, and the API's error body
//! turned into an [`ApiError`] the refresh logic can branch on.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use exporter_core::{
    Secret,
    capture::{self, CapturedHttp},
    config::Live,
};
use reqwest::{StatusCode, Url, header::HeaderMap};

use crate::{
    api,
    health::{ApiHealth, Code, Endpoint, RateLimitHeaders},
};

/// Responses larger than this are refused (a page of 1000 gateways is well below it).
const BODY_LIMIT: usize = 16 << 20;
/// The field mask of the gateway list and of `GET /gateways/{id}` (spec §1.3).
pub const FIELD_MASK: &str =
    "name,description,version_ids,gateway_server_address,frequency_plan_ids,antennas";
/// The largest page the Identity Server accepts.
pub const PAGE_LIMIT: u32 = 1000;
/// The most ids one batch call takes.
pub const BATCH_LIMIT: usize = 100;

/// Whose gateways the list call returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    /// `GET /api/v3/gateways`: every gateway the key can reach.
    All,
    /// `GET /api/v3/users/{id}/gateways`.
    User(String),
    /// `GET /api/v3/organizations/{id}/gateways`.
    Organization(String),
}

/// A failed API call.
#[derive(Debug)]
pub enum ApiError {
    /// No HTTP answer: connect, TLS, timeout, or a body that could not be read.
    Transport(String),
    /// The server answered with an error status.
    Status {
        status: u16,
        /// `namespace:name` from the error details, e.g. `pkg/gatewayserver:not_connected`.
        name: Option<String>,
        /// The body's `message`, or a short excerpt of a body that is not the error shape.
        message: String,
        /// From `X-Rate-Limit-Retry` (or `X-Ratelimit-Retry`), on 429.
        retry_after: Option<Duration>,
    },
    /// A 200 whose body is not what the endpoint returns.
    Decode(String),
}

/// Where a call goes: the base URL and the cluster host it stands for (the `cluster` label
/// of the API accounting: the `--api-url` host for the Identity Server, the host of
/// `gateway_server_address` for a Gateway Server).
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    pub url: &'a Url,
    pub cluster: &'a str,
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error's `namespace:name`, when the body had one.
    pub fn name(&self) -> Option<&str> {
        match self {
            ApiError::Status { name, .. } => name.as_deref(),
            _ => None,
        }
    }

    /// No answer, or a server error (5xx): the API cannot be reached. A 429 is not this.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ApiError::Transport(_) => true,
            ApiError::Status { status, .. } => (500..=599).contains(status),
            ApiError::Decode(_) => false,
        }
    }

    /// 401 or 403: the key is wrong or lacks a right.
    pub fn is_auth(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    /// 404 `pkg/gatewayserver:not_connected`: a gateway without statistics on this cluster.
    pub fn is_not_connected(&self) -> bool {
        self.status() == Some(404) && self.name() == Some("pkg/gatewayserver:not_connected")
    }

    /// The batch endpoint does not exist on this server (older than 3.21): an unmatched
    /// route (404 without one of the batch call's own error names), 405, or 501
    /// (gRPC `Unimplemented`).
    pub fn is_missing_endpoint(&self) -> bool {
        match self.status() {
            Some(405 | 501) => true,
            Some(404) => !self.name().is_some_and(|n| n.starts_with("pkg/")),
            _ => false,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport(why) => write!(f, "{why}"),
            ApiError::Decode(why) => write!(f, "unexpected response: {why}"),
            ApiError::Status { status, name: Some(name), message, .. } => {
                write!(f, "HTTP {status} {name}: {message}")
            }
            ApiError::Status { status, name: None, message, .. } => {
                write!(f, "HTTP {status}: {message}")
            }
        }
    }
}

impl std::error::Error for ApiError {}

/// The API calls of a capture, collected from whichever task makes them (the refresh runs in
/// tasks of its own, where exporter-core's task-local recorder is not in scope); the probe
/// hands them to [`capture::record_http`].
pub type Tape = Arc<Mutex<Vec<CapturedHttp>>>;

/// The answer of the single statistics call.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsReply {
    Stats(Box<api::ConnectionStats>),
    /// 404 `not_connected`: never connected here, gone for more than 48 h, or another cluster.
    NotConnected,
}

/// The API client: one reqwest client and the key, shared by all calls, and the accounting
/// of every call.
///
/// The client has no redirect policy (exporter-core's clients follow none), so the key is
/// sent only to the URLs the calls are given, which come from the configuration alone
/// ([`crate::config::Config::cluster`]).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The key; a reload replaces it (rotation without restart), calls read it when sent.
    key: Arc<Live<Secret>>,
    timeout: Duration,
    health: Arc<ApiHealth>,
    /// Where every call is recorded, for a capture.
    tape: Option<Tape>,
}

impl Client {
    /// A client sending `key` as a bearer token, each call bounded by `timeout`.
    pub fn new(http: reqwest::Client, key: Secret, timeout: Duration) -> Client {
        Client::shared(http, Arc::new(Live::new(key)), Arc::default(), timeout)
    }

    /// A client sharing the key and the accounting with others (the clients of a reloaded
    /// configuration).
    pub fn shared(
        http: reqwest::Client,
        key: Arc<Live<Secret>>,
        health: Arc<ApiHealth>,
        timeout: Duration,
    ) -> Client {
        Client { http, key, timeout, health, tape: None }
    }

    /// This client recording every call (request, answer or error) on `tape`.
    pub fn recording(&self, tape: Tape) -> Client {
        Client { tape: Some(tape), ..self.clone() }
    }

    /// The accounting of this client's calls.
    pub fn health(&self) -> &ApiHealth {
        &self.health
    }

    /// One page of the gateway list: the decoded entries (or why each failed) and
    /// `X-Total-Count`.
    pub async fn list_page(
        &self,
        server: Server<'_>,
        scope: &ListScope,
        page: u32,
    ) -> Result<(Vec<Result<api::Gateway, String>>, Option<u64>), ApiError> {
        let base = server.url;
        let mut url = match scope {
            ListScope::All => join(base, &["api", "v3", "gateways"]),
            ListScope::User(id) => join(base, &["api", "v3", "users", id, "gateways"]),
            ListScope::Organization(id) => {
                join(base, &["api", "v3", "organizations", id, "gateways"])
            }
        }?;
        url.query_pairs_mut()
            .append_pair("field_mask", FIELD_MASK)
            .append_pair("order", "gateway_id")
            .append_pair("limit", &PAGE_LIMIT.to_string())
            .append_pair("page", &page.to_string());
        let (headers, body) =
            self.send(self.http.get(url), server.cluster, Endpoint::ListGateways).await?;
        let total = headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let page: api::GatewaysPage<'_> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::Decode(format!("invalid JSON: {e}")))?;
        Ok((page.gateways.into_iter().map(api::gateway_entry).collect(), total))
    }

    /// `GET /api/v3/gateways/{id}` with the exporter's field mask.
    pub async fn gateway(&self, server: Server<'_>, id: &str) -> Result<api::Gateway, ApiError> {
        let mut url = join(server.url, &["api", "v3", "gateways", id])?;
        url.query_pairs_mut().append_pair("field_mask", FIELD_MASK);
        let (_, body) = self.send(self.http.get(url), server.cluster, Endpoint::GetGateway).await?;
        let value: serde_json::Value = decode(&body)?;
        api::gateway(value).map_err(ApiError::Decode)
    }

    /// `GET /api/v3/auth_info`.
    pub async fn auth_info(&self, server: Server<'_>) -> Result<api::AuthInfo, ApiError> {
        let url = join(server.url, &["api", "v3", "auth_info"])?;
        let (_, body) = self.send(self.http.get(url), server.cluster, Endpoint::AuthInfo).await?;
        decode(&body)
    }

    /// `POST /api/v3/gs/gateways/connection/stats` for at most [`BATCH_LIMIT`] ids: the
    /// raw entries by gateway id.
    pub async fn batch_stats(
        &self,
        server: Server<'_>,
        ids: &[String],
    ) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
        let url = join(server.url, &["api", "v3", "gs", "gateways", "connection", "stats"])?;
        let body = serde_json::json!({
            "gateway_ids": ids.iter().map(|id| serde_json::json!({"gateway_id": id})).collect::<Vec<_>>(),
        });
        let request =
            self.http.post(url).header("content-type", "application/json").body(body.to_string());
        let (_, body) = self.send(request, server.cluster, Endpoint::BatchStats).await?;
        let batch: api::BatchStats = decode(&body)?;
        Ok(batch.entries.into_iter().collect())
    }

    /// `GET /api/v3/gs/gateways/{id}/connection/stats`.
    pub async fn gateway_stats(
        &self,
        server: Server<'_>,
        id: &str,
    ) -> Result<StatsReply, ApiError> {
        let url = join(server.url, &["api", "v3", "gs", "gateways", id, "connection", "stats"])?;
        match self.send(self.http.get(url), server.cluster, Endpoint::GatewayStats).await {
            Ok((_, body)) => {
                let value: serde_json::Value = decode(&body)?;
                let stats = api::connection_stats(value).map_err(ApiError::Decode)?;
                Ok(StatsReply::Stats(Box::new(stats)))
            }
            Err(err) if err.is_not_connected() => Ok(StatsReply::NotConnected),
            Err(err) => Err(err),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        cluster: &str,
        endpoint: Endpoint,
    ) -> Result<(HeaderMap, Vec<u8>), ApiError> {
        let started = Instant::now();
        let key = self.key.load();
        let request = request
            .bearer_auth(key.expose())
            .header("accept", "application/json")
            .timeout(self.timeout)
            .build()
            .map_err(|e| ApiError::Transport(transport(&e)))?;
        let sent = self.tape.as_ref().map(|_| {
            let body = request.body().and_then(|b| b.as_bytes()).map(String::from_utf8_lossy);
            CapturedHttp {
                method: request.method().to_string(),
                url: request.url().to_string(),
                request_headers: capture::header_pairs(request.headers()),
                request_body: body.map(|b| b.into_owned()),
                ..CapturedHttp::default()
            }
        });
        let result = self.exchange(request).await;
        if let (Some(tape), Some(mut exchange)) = (&self.tape, sent) {
            match &result {
                Ok((status, headers, body)) => {
                    exchange.status = Some(status.as_u16());
                    exchange.response_headers = capture::header_pairs(headers);
                    exchange.response_body = Some(String::from_utf8_lossy(body).into_owned());
                }
                Err(err) => exchange.error = Some(err.to_string()),
            }
            tape.lock().unwrap_or_else(PoisonError::into_inner).push(exchange);
        }
        let (code, rate_limit) = match &result {
            Ok((status, headers, _)) => {
                (Code::Status(status.as_u16()), RateLimitHeaders::from_headers(headers))
            }
            Err(_) => (Code::NoAnswer, None),
        };
        self.health.record(cluster, endpoint, code, started.elapsed(), rate_limit);
        let (status, headers, body) = result?;
        if status == StatusCode::OK {
            return Ok((headers, body));
        }
        Err(error_from(status.as_u16(), &headers, &body))
    }

    /// One request and its whole (bounded) body.
    async fn exchange(
        &self,
        request: reqwest::Request,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), ApiError> {
        let response =
            self.http.execute(request).await.map_err(|e| ApiError::Transport(transport(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response).await?;
        Ok((status, headers, body))
    }
}

/// Seconds to wait before retrying, from either spelling of the header.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .iter()
        .find(|(k, _)| {
            let k = k.as_str();
            k.eq_ignore_ascii_case("x-rate-limit-retry")
                || k.eq_ignore_ascii_case("x-ratelimit-retry")
        })
        .and_then(|(_, v)| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Builds the error of a non-200 answer from the API's error body.
pub fn error_from(status: u16, headers: &HeaderMap, body: &[u8]) -> ApiError {
    let parsed: Option<api::ErrorBody> = serde_json::from_slice(body).ok();
    let detail = parsed.as_ref().and_then(|b| b.details.first());
    let name = detail.and_then(|d| match (&d.namespace, &d.name) {
        (Some(ns), Some(name)) => Some(format!("{ns}:{name}")),
        (None, Some(name)) => Some(name.clone()),
        _ => None,
    });
    let message = match parsed.and_then(|b| b.message) {
        Some(message) => message,
        None => excerpt(body),
    };
    let retry_after = (status == 429).then(|| retry_after(headers)).flatten();
    ApiError::Status { status, name, message, retry_after }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Decode(format!("invalid JSON: {e}")))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".to_owned();
    }
    let mut short: String = text.chars().take(120).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// `base` plus path segments (percent-encoded), keeping any path prefix of `base`.
fn join(base: &Url, segments: &[&str]) -> Result<Url, ApiError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ApiError::Transport(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn transport(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // Walk the source chain: reqwest's own message is terse ("error sending request").
    let mut text = format!("{what}: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    // A body announced as too large is refused before any of it is read.
    if let Some(len) = response.content_length().filter(|&len| len > BODY_LIMIT as u64) {
        return Err(ApiError::Transport(format!(
            "response body larger than {BODY_LIMIT} bytes ({len} bytes announced)"
        )));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > BODY_LIMIT {
                    return Err(ApiError::Transport(format!(
                        "response body larger than {BODY_LIMIT} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ApiError::Transport(format!("reading body: {}", transport(&e)))),
        }
    }
}
