//! The simulated account: gateways, their clusters and connection state machines, the API
//! keys, and the JSON the Identity Server and Gateway Servers answer with (protobuf JSON:
//! zero values omitted, 64-bit counts as strings, timestamps with 0, 3 or 9 fraction digits).

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};

/// The simulated user; collaborator of most gateways and member of [`ORG_ID`].
pub const USER_ID: &str = "sim-user";
/// The simulated organization; collaborator of every fourth gateway.
pub const ORG_ID: &str = "sim-org";

/// A user API key with every right.
pub const USER_KEY: &str = "NNSXS.SIMUSERKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETUSERKEYBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
/// An organization API key with every right.
pub const ORG_KEY: &str = "NNSXS.SIMORGKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETORGKEYBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
/// A key of the first gateway with "view gateway information" and "view gateway status".
pub const GATEWAY_KEY: &str = "NNSXS.SIMGATEWAYKEYAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETGATEWAYKEYBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
/// A key of the first gateway with "view gateway status" only.
pub const GATEWAY_STATUS_ONLY_KEY: &str = "NNSXS.SIMGWSTATUSONLYAAAAAAAAAAAAAAAAAAAAAAAA.SECRETGWSTATUSONLYBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
/// A user key without "view gateway status".
pub const NO_STATUS_KEY: &str = "NNSXS.SIMNOSTATUSKEYAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETNOSTATUSKEYBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
/// A user key without "list gateways".
pub const NO_LIST_KEY: &str = "NNSXS.SIMNOLISTKEYAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETNOLISTKEYBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
/// A user key that has expired.
pub const EXPIRED_KEY: &str = "NNSXS.SIMEXPIREDKEYAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRETEXPIREDKEYBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

/// 2024-10-28T07:00:00Z, the simulated clock's start.
const EPOCH_NANOS: i128 = 1_730_098_800 * NANOS;
const NANOS: i128 = 1_000_000_000;

/// What a key belongs to and may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    User {
        list: bool,
        status: bool,
    },
    Organization,
    /// A key of the gateway at this index.
    Gateway {
        index: usize,
        info: bool,
    },
    Expired,
}

/// The outcome of checking the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No header at all.
    Anonymous,
    Key(Key),
    /// Not of the form `NNSXS.ID.SECRET` (400 `pkg/auth:token`).
    Malformed,
    /// A scheme other than Bearer.
    Unsupported,
    /// Unknown key id.
    NotFound,
    /// Known key id, wrong secret.
    WrongSecret,
}

/// Checks an `Authorization` header value.
pub fn authenticate(header: Option<&str>) -> Auth {
    let Some(header) = header else { return Auth::Anonymous };
    let Some(token) = header.strip_prefix("Bearer ") else { return Auth::Unsupported };
    let parts: Vec<&str> = token.split('.').collect();
    let [prefix, id, _secret] = parts.as_slice() else { return Auth::Malformed };
    if *prefix != "NNSXS" || id.is_empty() {
        return Auth::Malformed;
    }
    let keys = [
        (USER_KEY, Key::User { list: true, status: true }),
        (ORG_KEY, Key::Organization),
        (GATEWAY_KEY, Key::Gateway { index: 0, info: true }),
        (GATEWAY_STATUS_ONLY_KEY, Key::Gateway { index: 0, info: false }),
        (NO_STATUS_KEY, Key::User { list: true, status: false }),
        (NO_LIST_KEY, Key::User { list: false, status: true }),
        (EXPIRED_KEY, Key::Expired),
    ];
    for (known, key) in keys {
        let known_id = known.split('.').nth(1).unwrap_or_default();
        if known_id == *id {
            return if known == token { Auth::Key(key) } else { Auth::WrongSecret };
        }
    }
    Auth::NotFound
}

/// Connection state of one gateway (times in simulated Unix nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    Never,
    Connected { since: i128 },
    Disconnected { since: i128, at: i128 },
}

/// One simulated gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub index: usize,
    pub id: String,
    pub cluster: usize,
    pub conn: Conn,
}

/// One cluster: a name (`eu1`) and the host gateways name in `gateway_server_address`.
#[derive(Debug, Clone)]
pub struct ClusterDef {
    pub name: String,
    pub host: String,
}

/// The shared state of the Identity Server and every Gateway Server.
#[derive(Debug)]
pub struct World {
    pub clusters: Vec<ClusterDef>,
    pub disconnect_window: Duration,
    gateways: Mutex<Vec<Gateway>>,
    started: Instant,
    offset: Mutex<Duration>,
}

impl World {
    /// `count` gateways spread round-robin over `clusters` (names such as `eu1`).
    pub fn new(count: usize, clusters: &[String], disconnect_window: Duration) -> World {
        let clusters: Vec<ClusterDef> = clusters
            .iter()
            .map(|name| ClusterDef {
                name: name.clone(),
                host: format!("{name}.cloud.thethings.network"),
            })
            .collect();
        let n = clusters.len().max(1);
        let now = EPOCH_NANOS;
        let gateways = (0..count)
            .map(|index| {
                let conn = match index % 10 {
                    // Just connected: nothing received yet, every count omitted.
                    7 => Conn::Connected { since: now - NANOS },
                    // In the 48 h window after a disconnect.
                    8 => {
                        Conn::Disconnected { since: now - 3 * 3600 * NANOS, at: now - 600 * NANOS }
                    }
                    9 => Conn::Never,
                    _ => Conn::Connected { since: now - (3600 + 37 * index as i128) * NANOS },
                };
                Gateway { index, id: gateway_id(index), cluster: index % n, conn }
            })
            .collect();
        World {
            clusters,
            disconnect_window,
            gateways: Mutex::new(gateways),
            started: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// The simulated time in Unix nanoseconds (real time since start plus [`World::advance`]).
    pub fn now(&self) -> i128 {
        let offset = *self.offset.lock().unwrap_or_else(PoisonError::into_inner);
        EPOCH_NANOS + (self.started.elapsed() + offset).as_nanos() as i128
    }

    /// Moves the simulated clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }

    /// A copy of every gateway.
    pub fn gateways(&self) -> Vec<Gateway> {
        self.lock().clone()
    }

    /// The gateway named `id`.
    pub fn gateway(&self, id: &str) -> Option<Gateway> {
        self.lock().iter().find(|g| g.id == id).cloned()
    }

    /// Ends a gateway's connection now: the counters freeze, `disconnected_at` is set.
    pub fn disconnect(&self, id: &str) -> Result<(), String> {
        let now = self.now();
        self.update(id, |conn| match conn {
            Conn::Connected { since } => Conn::Disconnected { since, at: now },
            other => other,
        })
    }

    /// (Re)connects a gateway now: every count restarts at 0.
    pub fn reconnect(&self, id: &str) -> Result<(), String> {
        let now = self.now();
        self.update(id, |_| Conn::Connected { since: now })
    }

    /// Registers a new gateway, connected now, on the cluster named `cluster` (`eu1`); returns
    /// its id. It appears on the next list call.
    pub fn add_gateway(&self, cluster: &str) -> Result<String, String> {
        let cluster = self
            .clusters
            .iter()
            .position(|c| c.name == cluster)
            .ok_or_else(|| format!("no cluster {cluster}"))?;
        let now = self.now();
        let mut gateways = self.lock();
        let index = gateways.iter().map(|g| g.index + 1).max().unwrap_or(0);
        let id = gateway_id(index);
        gateways.push(Gateway {
            index,
            id: id.clone(),
            cluster,
            conn: Conn::Connected { since: now },
        });
        Ok(id)
    }

    /// Deletes a gateway from the registry: it leaves the list, its statistics calls answer
    /// 403 `no_gateway_rights` and a batch naming it 404 `some_gateways_not_found`.
    pub fn remove_gateway(&self, id: &str) -> Result<(), String> {
        let mut gateways = self.lock();
        let before = gateways.len();
        gateways.retain(|g| g.id != id);
        if gateways.len() == before {
            return Err(format!("no gateway {id}"));
        }
        Ok(())
    }

    /// Forgets a gateway's statistics (as after the 48 h window): 404 `not_connected`.
    pub fn forget(&self, id: &str) -> Result<(), String> {
        self.update(id, |_| Conn::Never)
    }

    fn update(&self, id: &str, f: impl FnOnce(Conn) -> Conn) -> Result<(), String> {
        let mut gateways = self.lock();
        let gateway =
            gateways.iter_mut().find(|g| g.id == id).ok_or_else(|| format!("no gateway {id}"))?;
        gateway.conn = f(gateway.conn);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Gateway>> {
        self.gateways.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `key` may see gateway `g` at all, and list it.
    pub fn visible(key: Key, g: &Gateway) -> bool {
        match key {
            Key::User { .. } => true,
            Key::Organization => g.index % 4 == 3,
            Key::Gateway { index, .. } => g.index == index,
            Key::Expired => false,
        }
    }

    /// The registry entry of `g`, restricted to `paths` (`None`: only ids and times, as the
    /// server does without a field mask). `public_only` gives the public-safe subset.
    pub fn registry_json(&self, g: &Gateway, paths: Option<&[String]>, public_only: bool) -> Value {
        let i = g.index;
        let cluster = self.clusters.get(g.cluster);
        let created = EPOCH_NANOS - (400 * 86_400 - i as i128 * 3_600) * NANOS;
        let mut full = Map::new();
        full.insert("ids".into(), json!({"gateway_id": g.id, "eui": eui(i)}));
        full.insert("created_at".into(), json!(timestamp(created, 3)));
        full.insert(
            "updated_at".into(),
            json!(timestamp(created + 86_400 * NANOS + 120_853_000, 6)),
        );
        let mut fields = Map::new();
        if i % 7 != 3 {
            fields.insert("name".into(), json!(format!("Simulated gateway {}", i + 1)));
        }
        if i.is_multiple_of(2) {
            fields.insert(
                "description".into(),
                json!("Raspberry Pi + concentrator, Semtech UDP packet forwarder"),
            );
        }
        let (brand, model) = if i.is_multiple_of(2) {
            ("rakwireless", "rak7248")
        } else {
            ("the-things-industries", "the-things-indoor-gateway")
        };
        fields.insert(
            "version_ids".into(),
            json!({"brand_id": brand, "model_id": model, "firmware_version": "v1.0.5"}),
        );
        let status_public = i % 3 != 2;
        let location_public = i % 5 != 4;
        if let Some(c) = cluster {
            fields.insert("gateway_server_address".into(), json!(c.host));
        }
        let plan = match cluster.map(|c| c.name.as_str()) {
            Some(n) if n.starts_with("nam") => "US_902_928_FSB_2",
            Some(n) if n.starts_with("au") => "AU_915_928_FSB_2",
            _ => "EU_863_870_TTN",
        };
        fields.insert("frequency_plan_id".into(), json!(plan));
        fields.insert("frequency_plan_ids".into(), json!([plan]));
        let mut antenna = Map::new();
        if i.is_multiple_of(3) {
            antenna.insert("gain".into(), json!(3));
        }
        if i % 11 != 5 {
            let mut location = Map::new();
            location.insert("latitude".into(), json!(52.0 + i as f64 * 0.001));
            location.insert("longitude".into(), json!(5.0 + i as f64 * 0.002));
            if i % 4 != 1 {
                location.insert("altitude".into(), json!(20 + i as i64 % 30));
            }
            location.insert("source".into(), json!("SOURCE_REGISTRY"));
            antenna.insert("location".into(), Value::Object(location));
        }
        antenna.insert(
            "placement".into(),
            json!(if i.is_multiple_of(2) { "OUTDOOR" } else { "INDOOR" }),
        );
        fields.insert("antennas".into(), json!([antenna]));
        if status_public {
            fields.insert("status_public".into(), json!(true));
        }
        if location_public {
            fields.insert("location_public".into(), json!(true));
        }
        if public_only {
            // Gateway.PublicSafe: no version ids; address only with public status, antenna
            // locations only with a public location.
            fields.remove("version_ids");
            if !status_public {
                fields.remove("gateway_server_address");
            }
            if !location_public && let Some(Value::Array(antennas)) = fields.get_mut("antennas") {
                for a in antennas {
                    if let Value::Object(a) = a {
                        a.remove("location");
                    }
                }
            }
        }
        if let Some(paths) = paths {
            for path in paths {
                if let Some(v) = fields.get(path.as_str()) {
                    full.insert(path.clone(), v.clone());
                }
            }
        }
        Value::Object(full)
    }

    /// The connection statistics of `g` as the Gateway Server of cluster `cluster` sees
    /// them: `None` = 404 `not_connected`. An `old` server (before 3.21, no batch endpoint)
    /// predates `tx_acknowledgment_count` (3.25.2) and reports its version as 3.20.2.
    pub fn stats_json(&self, g: &Gateway, cluster: usize, old: bool) -> Option<Value> {
        if g.cluster != cluster {
            return None;
        }
        let now = self.now();
        let (since, until, disconnected) = match g.conn {
            Conn::Never => return None,
            Conn::Connected { since } => (since, now, None),
            Conn::Disconnected { since, at } => {
                if now - at > self.disconnect_window.as_nanos() as i128 {
                    return None;
                }
                (since, at, Some(at))
            }
        };
        let i = g.index;
        let digits = if i % 4 == 1 { 3 } else { 9 };
        let elapsed = ((until - since) / NANOS).max(0) as u64;
        let udp = i.is_multiple_of(2);
        let rate = 1 + (i % 5) as u64; // uplinks per minute
        let uplinks = elapsed * rate / 60;
        let downlinks = uplinks / 25;
        let tx_acks = downlinks.saturating_sub(u64::from(i.is_multiple_of(4) && downlinks > 0));
        let mut s = Map::new();
        match disconnected {
            None => {
                s.insert("connected_at".into(), json!(timestamp(since, digits)));
            }
            Some(at) => {
                s.insert("disconnected_at".into(), json!(timestamp(at, digits)));
            }
        }
        s.insert("protocol".into(), json!(if udp { "udp" } else { "semtechws/lbslns" }));
        if udp && elapsed >= 5 {
            let status_at = since + (5 + (elapsed - 5) / 30 * 30) as i128 * NANOS + 902_117_386;
            s.insert("last_status_received_at".into(), json!(timestamp(status_at, digits)));
            let boot = match i % 6 {
                0 => "0001-01-01T00:00:00Z".to_owned(),
                2 => "1970-01-01T00:00:00Z".to_owned(),
                _ => timestamp(since - 3 * 86_400 * NANOS, 0),
            };
            let mut metrics = Map::new();
            metrics.insert("ackr".into(), json!(100));
            metrics.insert("rxfw".into(), json!(rate));
            metrics.insert("rxin".into(), json!(rate + 3));
            metrics.insert("rxok".into(), json!(rate));
            metrics.insert("txin".into(), json!(u64::from(downlinks > 0)));
            metrics.insert("txok".into(), json!(u64::from(downlinks > 0)));
            metrics.insert("temp".into(), if i % 10 == 4 { json!("NaN") } else { json!(41.5) });
            s.insert(
                "last_status".into(),
                json!({
                    "time": timestamp(status_at - 902_117_386, 0),
                    "boot_time": boot,
                    "versions": {"ttn-lw-gateway-server": if old { "3.20.2" } else { "3.32.1" }},
                    "antenna_locations": [{"latitude": 52.09071, "longitude": 5.12142, "altitude": 21, "source": "SOURCE_GPS"}],
                    "ip": ["203.0.113.24"],
                    "metrics": metrics,
                }),
            );
        } else if !udp {
            s.insert(
                "last_status_received_at".into(),
                json!(timestamp(since + 320_377_000, digits)),
            );
            s.insert(
                "last_status".into(),
                json!({
                    "versions": {
                        "station": "2.0.6(corecell/std) 2022-01-21 09:14:27",
                        "firmware": "1.0.0",
                        "package": "",
                        "platform": "corecell - Firmware 1.0.0 - Protocol 2"
                    },
                    "advanced": {"features": "rmtsh", "model": "corecell"}
                }),
            );
        }
        if uplinks > 0 {
            let last = since + (uplinks * 60 / rate) as i128 * NANOS + 477_301_922;
            s.insert("last_uplink_received_at".into(), json!(timestamp(last, digits)));
            s.insert("uplink_count".into(), json!(uplinks.to_string()));
        }
        if downlinks > 0 {
            let last = since + (downlinks * 25 * 60 / rate) as i128 * NANOS + 110_934_512;
            s.insert("last_downlink_received_at".into(), json!(timestamp(last, digits)));
            s.insert("downlink_count".into(), json!(downlinks.to_string()));
            if tx_acks > 0 && !old {
                s.insert(
                    "last_tx_acknowledgment_received_at".into(),
                    json!(timestamp(last + 187_876_891, digits)),
                );
                s.insert("tx_acknowledgment_count".into(), json!(tx_acks.to_string()));
            }
            s.insert(
                "round_trip_times".into(),
                json!({
                    "min": format!("0.{:09}s", 41_266_381 + i),
                    "max": format!("0.{:09}s", 187_420_502 + i),
                    "median": format!("0.{:04}s", 588 + i % 100),
                    "count": downlinks.min(20),
                }),
            );
            s.insert("sub_bands".into(), sub_bands(udp && g.cluster == 0, downlinks));
        }
        s.insert("gateway_remote_address".into(), json!({"ip": "203.0.113.24"}));
        Some(Value::Object(s))
    }
}

fn sub_bands(eu: bool, downlinks: u64) -> Value {
    let used = downlinks as f64 * 0.000_031;
    if !eu {
        // Duty cycle not enforced: one band, min_frequency 0 (omitted), max u64::MAX.
        return json!([{"max_frequency": u64::MAX.to_string(), "downlink_utilization_limit": 1, "downlink_utilization": used}]);
    }
    let bands: [(u64, u64, f64, f64); 6] = [
        (863_000_000, 865_000_000, 0.001, 0.0),
        (865_000_000, 868_000_000, 0.01, 0.0),
        (868_000_000, 868_600_000, 0.01, used),
        (868_700_000, 869_200_000, 0.001, 0.0),
        (869_400_000, 869_650_000, 0.1, used / 7.0),
        (869_700_000, 870_000_000, 0.01, 0.0),
    ];
    Value::Array(
        bands
            .iter()
            .map(|(min, max, limit, used)| {
                let mut b = Map::new();
                b.insert("min_frequency".into(), json!(min.to_string()));
                b.insert("max_frequency".into(), json!(max.to_string()));
                b.insert("downlink_utilization_limit".into(), json!(limit));
                if *used != 0.0 {
                    b.insert("downlink_utilization".into(), json!(used));
                }
                Value::Object(b)
            })
            .collect(),
    )
}

/// `gw-0001`, `gw-0002`, …
pub fn gateway_id(index: usize) -> String {
    format!("gw-{:04}", index + 1)
}

fn eui(index: usize) -> String {
    format!("58A0CBFFFE{:06X}", 0x80_0000 + index)
}

/// RFC 3339 in UTC with `digits` (0, 3, 6 or 9) fraction digits, as the API writes them.
pub fn timestamp(nanos: i128, digits: u32) -> String {
    let secs = nanos.div_euclid(NANOS) as i64;
    let frac = nanos.rem_euclid(NANOS) as u64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out =
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
    if digits > 0 {
        let scaled = frac / 10u64.pow(9 - digits.min(9));
        out.push_str(&format!(".{scaled:0width$}", width = digits.min(9) as usize));
    }
    out.push('Z');
    out
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
