//! The Things Stack simulator: an Identity Server and several Gateway Server clusters, each
//! on its own loopback port, sharing one simulated account ([`World`]).
//!
//! What it models (spec `ttn.md` §1 and §2): the three gateway list routes with field masks
//! (only ids and times without one), pagination (`limit` ≤ 1000, `page`, `X-Total-Count`,
//! `{}` past the end), `GET /gateways/{id}` (public-safe subset without the info right),
//! `auth_info`, single and batch connection statistics (and an older-server mode without the
//! batch route), cluster ownership from `gateway_server_address`, the connection state
//! machine (never → connected with growing counters → disconnected for the 48 h window →
//! 404; a reconnect restarts the counters), API keys of every kind checked from the
//! `Authorization` header, every error body of §1.8, and 429 with the rate-limit headers.
//!
//! Each server counts its requests by gRPC method name (`ListGateways`, `GetGateway`,
//! `AuthInfo`, `GetGatewayConnectionStats`, `BatchGetGatewayConnectionStats`) besides the
//! framework's per-path counts, so tests can read calls per endpoint and per cluster.

pub mod world;

use std::{
    io::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use argh::FromArgs;
use serde_json::{Map, Value, json};

use self::world::{Auth, Gateway, Key, authenticate};
pub use self::world::{
    EXPIRED_KEY, GATEWAY_KEY, GATEWAY_STATUS_ONLY_KEY, NO_LIST_KEY, NO_STATUS_KEY, ORG_ID, ORG_KEY,
    USER_ID, USER_KEY, World,
};
use crate::http::{Ctx, HttpDevice, Request, Response, SimServer};

/// Field-mask paths the Identity Server knows (others are a 400 `field_mask_paths`).
const KNOWN_PATHS: &[&str] = &[
    "ids",
    "created_at",
    "updated_at",
    "name",
    "description",
    "attributes",
    "version_ids",
    "gateway_server_address",
    "frequency_plan_id",
    "frequency_plan_ids",
    "antennas",
    "status_public",
    "location_public",
    "auto_update",
    "update_channel",
    "contact_info",
    "administrative_contact",
    "technical_contact",
    "enforce_duty_cycle",
    "schedule_downlink_late",
    "downlink_path_constraint",
    "schedule_anytime_delay",
    "update_location_from_status",
    "lbs_lns_secret",
    "claim_authentication_code",
    "target_cups_uri",
    "target_cups_key",
    "require_authenticated_connection",
    "lrfhss",
    "disable_packet_broker_forwarding",
];

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub gateways: usize,
    /// Cluster names; gateway addresses are `<name>.cloud.thethings.network`.
    pub clusters: Vec<String>,
    /// Whether the Gateway Servers have the batch endpoint (3.21 and later).
    pub batch: bool,
    /// The largest page the Identity Server returns, whatever `limit` asks for.
    pub page_cap: u32,
    pub disconnect_window: Duration,
    /// A rate-limit profile on every server: this many requests per minute (also the burst),
    /// announced in `X-Rate-Limit-*` headers on every answer and enforced with 429.
    pub rate_limit_per_min: Option<u32>,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            gateways: 12,
            clusters: vec!["eu1".into(), "nam1".into(), "au1".into()],
            batch: true,
            page_cap: 1000,
            disconnect_window: Duration::from_secs(48 * 3600),
            rate_limit_per_min: None,
        }
    }
}

/// Which part of The Things Stack a server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Identity,
    /// The Gateway Server of the cluster at this index of [`World::clusters`].
    Cluster(usize),
}

/// A 429 answer for every API request (`X-Rate-Limit-*`, or `X-Ratelimit-*` when `alt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub retry_secs: u64,
    pub alt_spelling: bool,
}

/// A token bucket as TTS's GCRA limiter exposes it: `per_min` requests a minute, bursts of
/// `per_min`.
#[derive(Debug, Clone, Copy)]
struct Budget {
    per_min: u32,
    tokens: f64,
    at: std::time::Instant,
}

impl Budget {
    fn new(per_min: u32) -> Budget {
        let per_min = per_min.max(1);
        Budget { per_min, tokens: f64::from(per_min), at: std::time::Instant::now() }
    }

    /// Takes one request from the bucket: the `X-Rate-Limit-*` headers, and whether the
    /// request may go on.
    fn take(&mut self) -> (Vec<(&'static str, String)>, bool) {
        let now = std::time::Instant::now();
        let rate = f64::from(self.per_min) / 60.0;
        let limit = f64::from(self.per_min);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(limit);
        self.at = now;
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        let retry = if allowed { 0.0 } else { (1.0 - self.tokens) / rate };
        let headers = vec![
            ("x-rate-limit-limit", self.per_min.to_string()),
            ("x-rate-limit-available", (self.tokens.floor() as u64).to_string()),
            ("x-rate-limit-reset", (((limit - self.tokens) / rate) as u64).to_string()),
            // Truncated to whole seconds, as TTS does (so it can be 0 while limited).
            ("x-rate-limit-retry", (retry as u64).to_string()),
        ];
        (headers, allowed)
    }
}

/// One simulated server (HTTP device).
#[derive(Debug)]
pub struct TtnServer {
    world: Arc<World>,
    role: Role,
    batch: AtomicBool,
    page_cap: u32,
    rate_limit: Mutex<Option<RateLimit>>,
    /// A forced server error (500 internal, 503 unavailable) for every API request.
    error: Mutex<Option<u16>>,
    /// The rate-limit profile (spec §1.9), when enabled.
    budget: Mutex<Option<Budget>>,
    /// Batch calls naming this gateway are refused with this status (400, 403 or 404).
    batch_refusal: Mutex<Option<(String, u16)>>,
    correlation: AtomicU64,
}

/// A running cluster of a [`TtnSim`].
#[derive(Debug)]
pub struct SimCluster {
    pub name: String,
    pub host: String,
    pub server: SimServer,
    pub device: Arc<TtnServer>,
}

/// A running simulator: the Identity Server and every cluster.
#[derive(Debug)]
pub struct TtnSim {
    pub world: Arc<World>,
    pub identity: SimServer,
    pub identity_device: Arc<TtnServer>,
    pub clusters: Vec<SimCluster>,
}

impl TtnSim {
    /// Starts every server on a free loopback port.
    pub async fn start(opts: SimOptions) -> anyhow::Result<TtnSim> {
        Self::start_on(opts, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the Identity Server on `listen` and the clusters on free ports of its address.
    pub async fn start_on(opts: SimOptions, listen: SocketAddr) -> anyhow::Result<TtnSim> {
        anyhow::ensure!(!opts.clusters.is_empty(), "at least one cluster is needed");
        let world = Arc::new(World::new(opts.gateways, &opts.clusters, opts.disconnect_window));
        let identity_device = Arc::new(TtnServer::new(Arc::clone(&world), Role::Identity, &opts));
        let identity = SimServer::start(identity_device.clone(), listen).await?;
        let mut clusters = Vec::new();
        for (index, def) in world.clusters.iter().enumerate() {
            let device = Arc::new(TtnServer::new(Arc::clone(&world), Role::Cluster(index), &opts));
            let server = SimServer::start(device.clone(), SocketAddr::new(listen.ip(), 0)).await?;
            clusters.push(SimCluster {
                name: def.name.clone(),
                host: def.host.clone(),
                server,
                device,
            });
        }
        Ok(TtnSim { world, identity, identity_device, clusters })
    }

    /// The Identity Server's base URL (`--api-url`).
    pub fn identity_url(&self) -> String {
        self.identity.url()
    }

    /// `HOST=URL` for each cluster (`--cluster-url`).
    pub fn cluster_url_flags(&self) -> Vec<String> {
        self.clusters.iter().map(|c| format!("{}={}", c.host, c.server.url())).collect()
    }

    /// The cluster named `name` (`eu1`).
    pub fn cluster(&self, name: &str) -> Option<&SimCluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The sum of counter `key` over every cluster.
    pub fn cluster_count(&self, key: &str) -> u64 {
        self.clusters.iter().map(|c| c.server.counters().get(key)).sum()
    }
}

impl TtnServer {
    pub fn new(world: Arc<World>, role: Role, opts: &SimOptions) -> TtnServer {
        TtnServer {
            world,
            role,
            batch: AtomicBool::new(opts.batch),
            page_cap: opts.page_cap.clamp(1, 1000),
            rate_limit: Mutex::new(None),
            error: Mutex::new(None),
            budget: Mutex::new(opts.rate_limit_per_min.map(Budget::new)),
            batch_refusal: Mutex::new(None),
            correlation: AtomicU64::new(1),
        }
    }

    /// Answers every API request with 429 until cleared.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        *self.rate_limit.lock().unwrap_or_else(PoisonError::into_inner) = limit;
    }

    /// Answers every API request with this server error (500 or 503) until cleared.
    pub fn set_error(&self, status: Option<u16>) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// Enables the rate-limit profile (`per_min` requests a minute, `X-Rate-Limit-*` headers
    /// on every answer, 429 when used up), or turns it off.
    pub fn set_rate_profile(&self, per_min: Option<u32>) {
        *self.budget.lock().unwrap_or_else(PoisonError::into_inner) = per_min.map(Budget::new);
    }

    /// Refuses every batch call naming gateway `id` with `status`: 400 (validation), 403
    /// (`insufficient_rights`) or 404 (`some_gateways_not_found`); `None` clears it.
    pub fn set_batch_refusal(&self, refusal: Option<(String, u16)>) {
        *self.batch_refusal.lock().unwrap_or_else(PoisonError::into_inner) = refusal;
    }

    /// Turns the batch endpoint on or off (off: an older Gateway Server).
    pub fn set_batch(&self, on: bool) {
        self.batch.store(on, Ordering::SeqCst);
    }

    /// Answers one request; `count` receives the gRPC method name of the route.
    pub fn answer(&self, req: &Request, count: &dyn Fn(&str)) -> Response {
        let mut headers = Vec::new();
        let mut resp = self.route(req, count, &mut headers);
        for (name, value) in headers {
            resp = resp.with_header(name, &value);
        }
        resp
    }

    fn route(
        &self,
        req: &Request,
        count: &dyn Fn(&str),
        budget_headers: &mut Vec<(&'static str, String)>,
    ) -> Response {
        let Some(rest) = req.path.strip_prefix("/api/v3/") else { return not_found() };
        let segments: Vec<&str> = rest.split('/').collect();
        let route = match (self.role, segments.as_slice()) {
            (Role::Identity, ["gateways"]) => Route::List(Scope::All),
            (Role::Identity, ["users", id, "gateways"]) => {
                Route::List(Scope::User((*id).to_owned()))
            }
            (Role::Identity, ["organizations", id, "gateways"]) => {
                Route::List(Scope::Organization((*id).to_owned()))
            }
            (Role::Identity, ["gateways", id]) => Route::Get((*id).to_owned()),
            (Role::Identity, ["auth_info"]) => Route::AuthInfo,
            (Role::Cluster(c), ["gs", "gateways", id, "connection", "stats"]) => {
                Route::Stats(c, (*id).to_owned())
            }
            (Role::Cluster(c), ["gs", "gateways", "connection", "stats"])
                if self.batch.load(Ordering::SeqCst) =>
            {
                Route::Batch(c)
            }
            _ => return not_found(),
        };
        let (method, name) = match &route {
            Route::List(_) => ("GET", "ListGateways"),
            Route::Get(_) => ("GET", "GetGateway"),
            Route::AuthInfo => ("GET", "AuthInfo"),
            Route::Stats(..) => ("GET", "GetGatewayConnectionStats"),
            Route::Batch(_) => ("POST", "BatchGetGatewayConnectionStats"),
        };
        if req.method != method {
            return Response::json(
                405,
                &json!({"code": 12, "message": "Method Not Allowed", "details": []}),
            );
        }
        count(name);
        if let Some(limit) = *self.rate_limit.lock().unwrap_or_else(PoisonError::into_inner) {
            count("rate_limited");
            return self.rate_limited(limit, name);
        }
        let taken =
            self.budget.lock().unwrap_or_else(PoisonError::into_inner).as_mut().map(Budget::take);
        if let Some((headers, allowed)) = taken {
            *budget_headers = headers;
            if !allowed {
                count("rate_limited");
                return self.rate_limit_error(name);
            }
        }
        if let Some(status) = *self.error.lock().unwrap_or_else(PoisonError::into_inner) {
            return match status {
                503 => self.error(
                    503,
                    14,
                    "pkg/rpcserver",
                    "unavailable",
                    "service unavailable",
                    json!({}),
                ),
                other => {
                    self.error(other, 13, "pkg/rpcserver", "internal", "internal error", json!({}))
                }
            };
        }
        let auth = authenticate(req.header("authorization"));
        if let Some(refused) = self.refuse(auth) {
            return refused;
        }
        let key = match auth {
            Auth::Key(key) => Some(key),
            _ => None,
        };
        match route {
            Route::List(scope) => self.list(req, key, &scope),
            Route::Get(id) => self.get(req, key, &id),
            Route::AuthInfo => auth_info(key),
            Route::Stats(cluster, id) => self.stats(key, cluster, &id),
            Route::Batch(cluster) => self.batch(req, key, cluster),
        }
    }

    fn refuse(&self, auth: Auth) -> Option<Response> {
        let unauthorized = |name: &str, text: &str| {
            let resp = self.error(401, 16, "pkg/identityserver", name, text, json!({}));
            let header = format!("error:pkg/identityserver:{name} ({text})");
            resp.with_header("www-authenticate", &header)
        };
        match auth {
            Auth::Anonymous
            | Auth::Key(Key::User { .. } | Key::Organization | Key::Gateway { .. }) => None,
            Auth::Malformed => {
                Some(self.error(400, 3, "pkg/auth", "token", "invalid token", json!({})))
            }
            Auth::Unsupported => {
                Some(unauthorized("unsupported_authorization", "unsupported authorization method"))
            }
            Auth::NotFound => Some(unauthorized("api_key_not_found", "API key not found")),
            Auth::WrongSecret => {
                Some(unauthorized("invalid_authorization", "invalid authorization"))
            }
            Auth::Key(Key::Expired) => Some(unauthorized("api_key_expired", "api key expired")),
        }
    }

    fn list(&self, req: &Request, key: Option<Key>, scope: &Scope) -> Response {
        let Some(key) = key else { return Response::json(200, &json!({})) };
        if let Key::Gateway { .. } = key {
            // Neither a user nor an organization: an empty list, not an error.
            return Response::json(200, &json!({})).with_header("x-total-count", "0");
        }
        if let Key::User { list: false, .. } = key {
            return self.error(
                403,
                7,
                "pkg/auth/rights",
                "insufficient_user_rights",
                &format!("insufficient rights for user `{USER_ID}`"),
                json!({"missing": ["RIGHT_USER_GATEWAYS_LIST"], "uid": USER_ID}),
            );
        }
        let filter: Box<dyn Fn(&Gateway) -> bool> = match (scope, key) {
            (Scope::All, key) => Box::new(move |g| World::visible(key, g)),
            (Scope::User(id), Key::User { .. }) if id == USER_ID => Box::new(|g| g.index % 4 != 3),
            (Scope::User(id), _) => {
                return self.error(
                    403,
                    7,
                    "pkg/auth/rights",
                    "no_user_rights",
                    &format!("no rights for user `{id}`"),
                    json!({"uid": id}),
                );
            }
            (Scope::Organization(id), Key::User { .. } | Key::Organization) if id == ORG_ID => {
                Box::new(|g| g.index % 4 == 3)
            }
            (Scope::Organization(id), _) => {
                return self.error(
                    403,
                    7,
                    "pkg/auth/rights",
                    "no_organization_rights",
                    &format!("no rights for organization `{id}`"),
                    json!({"uid": id}),
                );
            }
        };
        let paths = match self.field_mask(req) {
            Ok(paths) => paths,
            Err(resp) => return resp,
        };
        let limit = match req.query_param("limit").map(|l| l.parse::<u32>()) {
            None => 100,
            Some(Ok(0)) => 100,
            Some(Ok(l)) if l <= 1000 => l,
            Some(_) => {
                return self.error(
                    400,
                    3,
                    "pkg/ttnpb",
                    "validation",
                    "invalid `limit`: value must be less than or equal to 1000",
                    json!({"field": "limit", "reason": "value must be less than or equal to 1000"}),
                );
            }
        };
        let limit = limit.min(self.page_cap) as usize;
        let page = match req.query_param("page").map(|p| p.parse::<u32>()) {
            None | Some(Ok(0)) => 1,
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                return self.error(
                    400,
                    3,
                    "pkg/ttnpb",
                    "validation",
                    "invalid `page`",
                    json!({"field": "page"}),
                );
            }
        } as usize;
        let mut matching: Vec<Gateway> =
            self.world.gateways().into_iter().filter(|g| filter(g)).collect();
        if req.query_param("order").as_deref() == Some("-gateway_id") {
            matching.reverse();
        }
        let total = matching.len();
        let entries: Vec<Value> = matching
            .iter()
            .skip((page - 1).saturating_mul(limit))
            .take(limit)
            .map(|g| self.world.registry_json(g, paths.as_deref(), false))
            .collect();
        let body = if entries.is_empty() { json!({}) } else { json!({"gateways": entries}) };
        Response::json(200, &body).with_header("x-total-count", &total.to_string())
    }

    fn get(&self, req: &Request, key: Option<Key>, id: &str) -> Response {
        let gateway = self.world.gateway(id);
        let Some((key, gateway)) = key.zip(gateway).filter(|(k, g)| World::visible(*k, g)) else {
            return self.no_gateway_rights(id);
        };
        let paths = match self.field_mask(req) {
            Ok(paths) => paths,
            Err(resp) => return resp,
        };
        let public_only = matches!(key, Key::Gateway { info: false, .. });
        Response::json(200, &self.world.registry_json(&gateway, paths.as_deref(), public_only))
    }

    fn stats(&self, key: Option<Key>, cluster: usize, id: &str) -> Response {
        let gateway = self.world.gateway(id);
        let Some((key, gateway)) = key.zip(gateway).filter(|(k, g)| World::visible(*k, g)) else {
            return self.no_gateway_rights(id);
        };
        if let Key::User { status: false, .. } = key {
            return self.error(
                403,
                7,
                "pkg/auth/rights",
                "insufficient_gateway_rights",
                &format!("insufficient rights for gateway `{id}`"),
                json!({"missing": ["RIGHT_GATEWAY_STATUS_READ"], "uid": id}),
            );
        }
        match self.world.stats_json(&gateway, cluster, !self.batch.load(Ordering::SeqCst)) {
            Some(stats) => Response::json(200, &stats),
            None => self.not_connected(id),
        }
    }

    fn batch(&self, req: &Request, key: Option<Key>, cluster: usize) -> Response {
        let Some(key @ (Key::User { .. } | Key::Organization)) = key else {
            return self.error(
                403,
                7,
                "pkg/identityserver",
                "neither_user_nor_organization",
                "caller is neither a user nor an organization",
                json!({}),
            );
        };
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return self.error(
                400,
                3,
                "pkg/jsonpb",
                "unmarshal",
                "could not unmarshal the request body",
                json!({}),
            );
        };
        let ids: Vec<String> = body["gateway_ids"]
            .as_array()
            .map(|ids| {
                ids.iter().filter_map(|i| i["gateway_id"].as_str().map(str::to_owned)).collect()
            })
            .unwrap_or_default();
        if ids.is_empty() || ids.len() > 100 {
            return self.error(
                400,
                3,
                "pkg/ttnpb",
                "validation",
                "invalid `gateway_ids`: value must contain between 1 and 100 items, inclusive",
                json!({"field": "gateway_ids"}),
            );
        }
        let mask: Option<Vec<String>> = match &body["field_mask"] {
            Value::String(s) => Some(s.split(',').map(|p| p.trim().to_owned()).collect()),
            Value::Object(o) => o
                .get("paths")
                .and_then(Value::as_array)
                .map(|p| p.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
            _ => None,
        };
        let refusal = self.batch_refusal.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some((refused, status)) = refusal
            && ids.contains(&refused)
        {
            return match status {
                400 => self.error(
                    400,
                    3,
                    "pkg/ttnpb",
                    "validation",
                    "invalid `gateway_ids`: embedded message failed validation",
                    json!({"field": "gateway_ids"}),
                ),
                403 => self.error(
                    403,
                    7,
                    "pkg/identityserver",
                    "insufficient_rights",
                    "insufficient rights",
                    json!({}),
                ),
                _ => self.error(
                    404,
                    5,
                    "pkg/identityserver",
                    "some_gateways_not_found",
                    "some gateways not found",
                    json!({}),
                ),
            };
        }
        let mut gateways = Vec::new();
        for id in &ids {
            let Some(g) = self.world.gateway(id) else {
                return self.error(
                    404,
                    5,
                    "pkg/identityserver",
                    "some_gateways_not_found",
                    "some gateways not found",
                    json!({}),
                );
            };
            if !World::visible(key, &g) || matches!(key, Key::User { status: false, .. }) {
                return self.error(
                    403,
                    7,
                    "pkg/identityserver",
                    "insufficient_rights",
                    "insufficient rights",
                    json!({}),
                );
            }
            gateways.push(g);
        }
        let mut entries = Map::new();
        for g in &gateways {
            let Some(Value::Object(mut stats)) = self.world.stats_json(g, cluster, false) else {
                continue;
            };
            if let Some(paths) = &mask {
                stats.retain(|k, _| paths.iter().any(|p| p == k));
            }
            entries.insert(g.id.clone(), Value::Object(stats));
        }
        let body = if entries.is_empty() { json!({}) } else { json!({"entries": entries}) };
        Response::json(200, &body)
    }

    fn field_mask(&self, req: &Request) -> Result<Option<Vec<String>>, Response> {
        let Some(mask) = req.query_param("field_mask") else { return Ok(None) };
        let paths: Vec<String> =
            mask.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
        let forbidden: Vec<&String> =
            paths.iter().filter(|p| !KNOWN_PATHS.contains(&p.as_str())).collect();
        if !forbidden.is_empty() {
            return Err(self.error(
                400,
                3,
                "pkg/rpcmiddleware/validator",
                "field_mask_paths",
                "forbidden path(s) in field mask",
                json!({"forbidden_paths": forbidden}),
            ));
        }
        Ok(Some(paths))
    }

    fn rate_limit_error(&self, method: &str) -> Response {
        let key = format!("grpc:method:/ttn.lorawan.v3.{method}:token:SIMKEY");
        self.error(
            429,
            8,
            "pkg/ratelimit",
            "rate_limit_exceeded",
            &format!("rate limit of `60` accesses per minute exceeded for resource `{key}`"),
            json!({"key": key, "rate": 60}),
        )
    }

    fn rate_limited(&self, limit: RateLimit, method: &str) -> Response {
        let prefix = if limit.alt_spelling { "x-ratelimit" } else { "x-rate-limit" };
        self.rate_limit_error(method)
            .with_header(&format!("{prefix}-limit"), "60")
            .with_header(&format!("{prefix}-available"), "0")
            .with_header(&format!("{prefix}-reset"), "59")
            .with_header(&format!("{prefix}-retry"), &limit.retry_secs.to_string())
    }

    fn no_gateway_rights(&self, id: &str) -> Response {
        self.error(
            403,
            7,
            "pkg/auth/rights",
            "no_gateway_rights",
            &format!("no rights for gateway `{id}`"),
            json!({"uid": id}),
        )
    }

    fn not_connected(&self, id: &str) -> Response {
        let mut detail = self.detail(
            5,
            "pkg/gatewayserver",
            "not_connected",
            "gateway `{gateway_uid}` not connected",
            json!({"gateway_uid": id}),
        );
        detail["cause"] = json!({
            "namespace": "pkg/redis",
            "name": "not_found",
            "message_format": "entity not found",
            "correlation_id": self.correlation_id(),
            "code": 5
        });
        let body = json!({
            "code": 5,
            "message": format!("error:pkg/gatewayserver:not_connected (gateway `{id}` not connected)"),
            "details": [detail],
        });
        Response::json(404, &body)
    }

    /// An error body as in spec §1.8; `text` is the formatted message.
    fn error(
        &self,
        status: u16,
        code: u16,
        namespace: &str,
        name: &str,
        text: &str,
        attributes: Value,
    ) -> Response {
        let detail = self.detail(code, namespace, name, text, attributes);
        let body = json!({
            "code": code,
            "message": format!("error:{namespace}:{name} ({text})"),
            "details": [detail],
        });
        Response::json(status, &body)
    }

    fn detail(
        &self,
        code: u16,
        namespace: &str,
        name: &str,
        format: &str,
        attributes: Value,
    ) -> Value {
        let mut detail = json!({
            "@type": "type.googleapis.com/ttn.lorawan.v3.ErrorDetails",
            "namespace": namespace,
            "name": name,
            "message_format": format,
            "correlation_id": self.correlation_id(),
            "code": code,
        });
        if attributes.as_object().is_some_and(|a| !a.is_empty()) {
            detail["attributes"] = attributes;
        }
        detail
    }

    fn correlation_id(&self) -> String {
        let n = self.correlation.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:016x}", 0x5eed_0000_0000_0000u64 | self.role_tag(), n)
    }

    fn role_tag(&self) -> u64 {
        match self.role {
            Role::Identity => 0xffff,
            Role::Cluster(i) => i as u64,
        }
    }
}

impl HttpDevice for TtnServer {
    fn handle(&self, req: &Request, ctx: &Ctx) -> Response {
        self.answer(req, &|key| ctx.count(key))
    }

    /// Knobs: `rate_limit=<retry secs>|off`, `rate_limit_alt=<retry secs>` (the
    /// `X-Ratelimit-*` spelling), `rate_profile=<requests per minute>|off`,
    /// `error=500|503|off`, `batch=on|off`, `batch_refuse=<id>:<400|403|404>|off`, and on the
    /// shared account `disconnect=<id>`, `reconnect=<id>`, `forget=<id>`, `advance=<secs>`,
    /// `add=<cluster>`, `remove=<id>`.
    fn control(&self, key: &str, value: &str) -> Result<(), String> {
        let secs =
            || value.parse::<u64>().map_err(|_| format!("{key}: expected seconds, got {value:?}"));
        match key {
            "rate_limit" | "rate_limit_alt" if value == "off" => self.set_rate_limit(None),
            "rate_limit" => {
                self.set_rate_limit(Some(RateLimit { retry_secs: secs()?, alt_spelling: false }))
            }
            "rate_limit_alt" => {
                self.set_rate_limit(Some(RateLimit { retry_secs: secs()?, alt_spelling: true }))
            }
            "rate_profile" if value == "off" => self.set_rate_profile(None),
            "rate_profile" => match value.parse::<u32>() {
                Ok(n) if n > 0 => self.set_rate_profile(Some(n)),
                _ => {
                    return Err(format!(
                        "rate_profile: expected requests per minute, got {value:?}"
                    ));
                }
            },
            "batch_refuse" if value == "off" => self.set_batch_refusal(None),
            "batch_refuse" => match value.rsplit_once(':') {
                Some((id, status @ ("400" | "403" | "404"))) => {
                    self.set_batch_refusal(Some((id.to_owned(), status.parse().unwrap_or(404))))
                }
                _ => return Err(format!("batch_refuse: expected <id>:400|403|404, got {value:?}")),
            },
            "add" => drop(self.world.add_gateway(value)?),
            "remove" => self.world.remove_gateway(value)?,
            "error" if value == "off" => self.set_error(None),
            "error" => match value.parse::<u16>() {
                Ok(status @ (500 | 503)) => self.set_error(Some(status)),
                _ => return Err(format!("error: expected 500, 503 or off, got {value:?}")),
            },
            "batch" => match value {
                "on" | "true" => self.set_batch(true),
                "off" | "false" => self.set_batch(false),
                _ => return Err(format!("batch: expected on or off, got {value:?}")),
            },
            "disconnect" => self.world.disconnect(value)?,
            "reconnect" => self.world.reconnect(value)?,
            "forget" => self.world.forget(value)?,
            "advance" => self.world.advance(Duration::from_secs(secs()?)),
            _ => return Err(format!("unknown knob {key}={value}")),
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Route {
    List(Scope),
    Get(String),
    AuthInfo,
    Stats(usize, String),
    Batch(usize),
}

#[derive(Debug)]
enum Scope {
    All,
    User(String),
    Organization(String),
}

fn auth_info(key: Option<Key>) -> Response {
    let entity = match key {
        Some(Key::User { .. }) => json!({"user_ids": {"user_id": USER_ID}}),
        Some(Key::Organization) => json!({"organization_ids": {"organization_id": ORG_ID}}),
        Some(Key::Gateway { index, .. }) => {
            json!({"gateway_ids": {"gateway_id": world::gateway_id(index)}})
        }
        Some(Key::Expired) | None => return Response::json(200, &json!({})),
    };
    Response::json(
        200,
        &json!({"api_key": {"api_key": {"rights": ["RIGHT_GATEWAY_STATUS_READ"]}, "entity_ids": entity}}),
    )
}

/// grpc-gateway's answer for a route that does not exist (also how a server older than
/// 3.21 answers the batch call).
fn not_found() -> Response {
    Response::json(404, &json!({"code": 5, "message": "Not Found", "details": []}))
}

/// `device-sim ttn`: a simulated The Things Stack (Identity Server and Gateway Server clusters).
#[derive(FromArgs, Debug)]
struct Args {
    /// address of the Identity Server, loopback only (default 127.0.0.1:0, a free port); the clusters listen on free ports of the same address
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// number of gateways, spread over the clusters (default 12)
    #[argh(option, default = "12")]
    gateways: usize,
    /// comma-separated cluster names (default eu1,nam1,au1)
    #[argh(option, default = "\"eu1,nam1,au1\".to_owned()")]
    clusters: String,
    /// answer like a Gateway Server older than 3.21, without the batch endpoint
    #[argh(switch)]
    no_batch: bool,
    /// largest page the Identity Server returns whatever limit asks for (default 1000)
    #[argh(option, default = "1000")]
    page_cap: u32,
    /// seconds a disconnected gateway's statistics are kept (default 172800, 48 h)
    #[argh(option, default = "172800")]
    disconnect_window_secs: u64,
    /// rate-limit profile: requests per minute per server, announced in X-Rate-Limit-* headers and enforced with 429 (default off)
    #[argh(option)]
    rate_limit_per_min: Option<u32>,
    /// milliseconds to wait before every answer (default 0)
    #[argh(option, default = "0")]
    latency_ms: u64,
}

/// Runs the simulator from the command line (`device-sim ttn …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    let Some(args) = crate::http::parse_args::<Args>("device-sim ttn", args)? else {
        return Ok(());
    };
    let clusters: Vec<String> =
        args.clusters.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
    for c in &clusters {
        anyhow::ensure!(
            c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "--clusters: invalid cluster name {c:?}"
        );
    }
    let opts = SimOptions {
        gateways: args.gateways,
        clusters,
        batch: !args.no_batch,
        page_cap: args.page_cap,
        disconnect_window: Duration::from_secs(args.disconnect_window_secs),
        rate_limit_per_min: args.rate_limit_per_min,
    };
    let sim = TtnSim::start_on(opts, args.listen).await?;
    let latency = Duration::from_millis(args.latency_ms);
    sim.identity.set_latency(latency);
    for c in &sim.clusters {
        c.server.set_latency(latency);
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", sim.identity_url()).context("write to stdout")?;
        writeln!(out, "identity {}", sim.identity_url()).context("write to stdout")?;
        for c in &sim.clusters {
            writeln!(out, "cluster {} {} ({})", c.name, c.server.url(), c.host)
                .context("write to stdout")?;
        }
        let mut flags = format!("--api-url {}", sim.identity_url());
        for f in sim.cluster_url_flags() {
            flags.push_str(&format!(" --cluster-url {f}"));
        }
        writeln!(out, "exporter flags: {flags}").context("write to stdout")?;
        writeln!(out, "user key (TTN_API_KEY): {USER_KEY}").context("write to stdout")?;
        out.flush().context("flush stdout")?;
    }
    crate::http::wait_for_stop_signal().await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
