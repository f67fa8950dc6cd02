//! The hub's payloads as plain Rust data: `wan_conn.xml` (WAN slots, DSL line), the device
//! list and byte counters of `cgi_basicMyDevice.js`, and the mesh of `cgi_owl.js`.
//!
//! The hub writes every value as a JavaScript string literal whose non-alphanumeric bytes are
//! `%XX`-encoded (spec §3). Values are decoded here, after the literals were tokenised, so an
//! encoded `'`, `"` or `\` in a device name never ends a literal. Missing or unparsable
//! fields become `None` (an absent series), never a made-up 0.

use anyhow::{Context as _, bail};
use quick_xml::events::Event;

use crate::js::Record;

/// Longest decoded value kept; longer values (e.g. a hostile hostname) are cut, so labels
/// stay bounded.
pub const MAX_VALUE_CHARS: usize = 256;

/// The status of the live WAN slot, from `GET /nonAuth/wan_conn.xml`.
#[derive(Debug, Clone, PartialEq)]
pub struct WanConn {
    /// Seconds since the hub booted (`sysuptime`).
    pub sysuptime: Option<u64>,
    /// The live slot: `wan_active_idx`, or the fallback of spec §4.1.
    pub slot: usize,
    /// Whether `slot` came from `wan_active_idx` (false: chosen by the fallback rule).
    pub slot_from_hub: bool,
    /// The IP session of the live slot (`wan_conn_status_list`).
    pub session: Session,
    /// The physical link of the live slot (`curlinkstatus`).
    pub link: Option<Session>,
    /// Bytes through the live slot (`wan_conn_volume_list`).
    pub volume: Option<Volume>,
    /// Link rates of the live slot in bit/s (`status_rate`).
    pub rate: Option<LinkRate>,
    /// IPv4 of the live slot (`ip4_info_list`), when it has an address.
    pub ipv4: Option<Ipv4Info>,
    /// Global IPv6 address with prefix length of the live slot (`ip6_gua_list`), when set.
    pub ipv6: Option<String>,
    /// The DSL line (`wan_linestatus_rate_list`), as reported (also on FTTP hubs).
    pub dsl: Option<DslLine>,
}

/// A state and the hub-uptime second at which it began (`connected;58`).
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub state: String,
    /// A point on the hub's uptime clock, not a duration.
    pub start: Option<u64>,
}

impl Session {
    /// Whether the state is `connected` (anything else is not).
    pub fn connected(&self) -> bool {
        self.state == "connected"
    }
}

/// `total;rx;tx` in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub total: Option<u64>,
    pub rx: Option<u64>,
    pub tx: Option<u64>,
}

/// `up;down;…` in bit/s.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRate {
    pub up_bps: Option<u64>,
    pub down_bps: Option<u64>,
}

/// `addr;mask;gateway;dns1;dns2`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ipv4Info {
    pub address: String,
    pub gateway: Option<String>,
}

/// The 16 fields of `wan_linestatus_rate_list[0]`, in the hub's own units.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DslLine {
    /// `UP` or `DOWN`.
    pub state: String,
    /// `ADSL`, `VDSL2`, `GFAST`.
    pub mode: String,
    /// e.g. `Profile 17a`, `G.DMT`.
    pub modulation: String,
    /// Tenths of dB.
    pub snr_margin_down: Option<i64>,
    pub snr_margin_up: Option<i64>,
    /// Line attenuation, tenths of dB.
    pub line_attenuation_down: Option<i64>,
    pub line_attenuation_up: Option<i64>,
    /// Signal attenuation, tenths of dB.
    pub signal_attenuation_down: Option<i64>,
    pub signal_attenuation_up: Option<i64>,
    /// Tenths of dBm.
    pub output_power_down: Option<i64>,
    pub output_power_up: Option<i64>,
    /// Sync rate, kbit/s.
    pub sync_down_kbps: Option<u64>,
    pub sync_up_kbps: Option<u64>,
    /// Attainable rate, bit/s.
    pub attainable_down_bps: Option<u64>,
    pub attainable_up_bps: Option<u64>,
    /// e.g. `fast`.
    pub channel: String,
}

impl DslLine {
    /// Whether the line is trained (`UP`).
    pub fn up(&self) -> bool {
        self.state.eq_ignore_ascii_case("up")
    }
}

/// The device list of `cgi_basicMyDevice.js`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceList {
    /// Every device the hub remembers, one per MAC (first entry wins).
    pub devices: Vec<Device>,
    /// Byte counters per MAC (upper case), one per MAC.
    pub rates: Vec<Rate>,
}

/// One entry of `known_device_list`, decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Device {
    /// Upper case, `AA:BB:CC:00:00:01`.
    pub mac: String,
    /// The DHCP hostname (may be empty).
    pub hostname: String,
    pub ip: String,
    /// The user-editable friendly name.
    pub name: String,
    /// `activity == '1'`; `None` when the hub sent something else.
    pub active: Option<bool>,
    pub os: String,
    /// `device`: `PC`, `Smartphone`, `WIFIEX` (a disc) …
    pub kind: String,
    /// `port`: `eth1`, `wl1`, `NA` …
    pub interface: String,
    pub ipv6: String,
    pub ipv6_link_local: String,
    /// `time_last_active` as the hub wrote it (`2024/06/03 21:40:17`, the hub's local time;
    /// `1981/…` before the hub's clock was set). Only used to rank devices for the cap.
    pub last_active: String,
}

/// One entry of `rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Upper case (the hub sends it lower case).
    pub mac: String,
    /// Bytes the device sent (= uploaded).
    pub tx: Option<u64>,
    /// Bytes the device received (= downloaded).
    pub rx: Option<u64>,
}

/// The mesh of `cgi_owl.js`: the hub and its discs, and the stations they serve.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mesh {
    pub nodes: Vec<MeshNode>,
    pub stations: Vec<Station>,
}

/// One entry of `owl_tplg` (the hub or a disc).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshNode {
    /// `device_id`, the id stations name as their parent.
    pub id: String,
    pub mac: String,
    pub name: String,
    pub model: String,
    pub firmware: String,
    pub ip: String,
    /// `configured_master` / `configured_slave`.
    pub role: String,
    /// `Ether`, `5G`, `2.4G`.
    pub connection: String,
    /// `device_id` of the parent, empty for the hub (`NULL`).
    pub parent: String,
    pub uptime_seconds: Option<u64>,
    /// Backhaul RSSI in dBm.
    pub rssi_dbm: Option<i64>,
    /// Backhaul link rate in bit/s (from `1733Mbps`).
    pub link_rate_bps: Option<u64>,
    /// Stations attached (`sta_num`).
    pub stations: Option<u64>,
    /// The serial number (`sn`, an identifier: only registered with a capture's redactor).
    pub serial: String,
    /// The Wi-Fi network names (`essid_2g`, `essid_5g`; identifiers, as `serial`).
    pub ssids: Vec<String>,
}

impl MeshNode {
    /// Whether the backhaul is wired (its RSSI and link rate then mean nothing).
    pub fn wired(&self) -> bool {
        is_wired(&self.connection)
    }
}

/// One entry of `owl_station` (a client seen by the mesh).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Station {
    /// Upper case.
    pub mac: String,
    /// `station_name`, empty for `NULL`.
    pub name: String,
    /// `alias_name`, empty for `NULL`.
    pub alias: String,
    pub ip: String,
    /// `device_id` of the hub or disc serving it.
    pub parent: String,
    /// `Ether`, `2.4G`, `5G`.
    pub connection: String,
    pub online: Option<bool>,
    pub signal_dbm: Option<i64>,
    pub link_rate_bps: Option<u64>,
}

impl Station {
    /// Whether the station is wired (its signal and link rate then mean nothing).
    pub fn wired(&self) -> bool {
        is_wired(&self.connection)
    }
}

/// The globals and fields read from `cgi_basicMyDevice.js`.
pub const DEVICE_FIELDS: &[&str] = &[
    "mac",
    "hostname",
    "ip",
    "name",
    "activity",
    "os",
    "device",
    "port",
    "ipv6",
    "ipv6_ll",
    "time_last_active",
];
/// The fields of `rate` entries.
pub const RATE_FIELDS: &[&str] = &["mac", "app", "tx", "rx"];
/// The fields of `owl_tplg` entries.
pub const NODE_FIELDS: &[&str] = &[
    "device_id",
    "device_mac",
    "device_name",
    "model_name",
    "fw_ver",
    "device_ip",
    "connected_role",
    "connect_type",
    "parent_id",
    "uptime",
    "connect_rssi",
    "linkrate",
    "sta_num",
    "sn",
    "essid_2g",
    "essid_5g",
];
/// The fields of `owl_station` entries.
pub const STATION_FIELDS: &[&str] = &[
    "station_mac",
    "station_name",
    "alias_name",
    "station_ip",
    "parent_id",
    "connect_type",
    "online",
    "signal_strength",
    "link_rate",
];

/// The `rate` entry that counts all applications (`app` = 0xFFFFFFFF).
const ALL_APPS: &str = "4294967295";

/// Parses `wan_conn.xml`.
pub fn parse_wan_xml(xml: &str) -> anyhow::Result<WanConn> {
    let mut values = XmlValues::default();
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut saw_root = false;
    loop {
        let event = reader
            .read_event()
            .with_context(|| format!("invalid XML at byte {}", reader.buffer_position()))?;
        match event {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let name = AsRef::<str>::as_ref(&e.name()).to_owned();
                if name == "status" {
                    saw_root = true;
                }
                for attr in e.attributes() {
                    let attr = attr.context("invalid XML attribute")?;
                    if AsRef::<str>::as_ref(&attr.key) == "value" {
                        let value = attr
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .with_context(|| format!("invalid XML attribute value of {name}"))?;
                        values.set(&name, value.into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    if !saw_root {
        bail!("not a hub status document (no <status> element)");
    }
    values.into_wan()
}

/// The hub's slow facts from `GET /cgi/cgi_basicStatus.js` (spec §5, §15.7).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicStatus {
    /// `fw_ver`, e.g. `v0.37.00.00000-BT (Tue Mar  5 10:11:12 2024)`.
    pub firmware: Option<String>,
    /// `serial_no`, e.g. `+068341+NQ00000000` (an identifier).
    pub serial: Option<String>,
    /// `fw_update_time`, the hub's local time `2024/03/19 03:12:44`.
    pub firmware_update_time: Option<String>,
    /// `sysuptime`: seconds since the hub booted.
    pub sysuptime: Option<u64>,
}

/// Reads `cgi_basicStatus.js` without running it: the `var NAME = <literal>;` statements
/// whose literal is a string, number or array are read, anything else (the page's
/// `parseInt(…) && parseInt(…)` expressions, the `linestatus` object) is skipped.
///
/// Fails on an HTML page and on a script that defines none of `fw_ver`, `serial_no` and
/// `sysuptime` (not the status page); a single missing value is an absent series.
pub fn parse_basic_status(body: &str) -> anyhow::Result<BasicStatus> {
    if let Some(kind) = crate::client::html_kind(body) {
        bail!("the hub answered with {kind} instead of the script");
    }
    let mut status = BasicStatus::default();
    for stmt in js_statements(body) {
        let Some((name, expr)) = var_statement(stmt) else { continue };
        let slot = match name {
            "fw_ver" => &mut status.firmware,
            "serial_no" => &mut status.serial,
            "fw_update_time" => &mut status.firmware_update_time,
            "sysuptime" => {
                status.sysuptime = match parse_js_literal(expr) {
                    Ok(Lit::Str(v)) => decode(&v).trim().parse().ok(),
                    _ => None,
                };
                continue;
            }
            _ => continue,
        };
        if let Ok(Lit::Str(v)) = parse_js_literal(expr) {
            let v = decode(&v).trim().to_owned();
            *slot = Some(v).filter(|v| !v.is_empty());
        }
    }
    if status.firmware.is_none() && status.serial.is_none() && status.sysuptime.is_none() {
        bail!("the script defines none of fw_ver, serial_no and sysuptime");
    }
    Ok(status)
}

/// Splits a script into its top-level statements: at `;` or a line end outside strings and
/// brackets; `//` comments are dropped. Never fails (an unterminated string or bracket ends
/// the last statement at the end of the text).
fn js_statements(body: &str) -> Vec<&str> {
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == b'\\' {
                    i += 1;
                }
            }
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'[' | b'{' | b'(' => depth += 1,
                b']' | b'}' | b')' => depth = depth.saturating_sub(1),
                b'/' if depth == 0 && bytes.get(i + 1) == Some(&b'/') => {
                    if let Some(s) = body.get(start..i) {
                        out.push(s);
                    }
                    let end =
                        body.get(i..).and_then(|r| r.find('\n')).map_or(bytes.len(), |n| i + n);
                    start = end;
                    i = end;
                    continue;
                }
                b';' | b'\n' if depth == 0 => {
                    if let Some(s) = body.get(start..i) {
                        out.push(s);
                    }
                    start = i + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    if let Some(s) = body.get(start..) {
        out.push(s);
    }
    out.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// `var name = expr` (or `name = expr`) → `(name, expr)`.
fn var_statement(stmt: &str) -> Option<(&str, &str)> {
    let rest = stmt.strip_prefix("var ").unwrap_or(stmt).trim_start();
    let (name, expr) = rest.split_once('=')?;
    let name = name.trim();
    let ident = !name.is_empty()
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$');
    ident.then_some((name, expr.trim()))
}

/// Converts the records of `known_device_list` and `rate` into a [`DeviceList`].
pub fn device_list(devices: &[Record], rates: &[Record]) -> anyhow::Result<DeviceList> {
    let mut list = DeviceList::default();
    for (i, rec) in devices.iter().enumerate() {
        let f = |k: &str| field(rec, DEVICE_FIELDS, k);
        let mac = f("mac").map(|m| m.to_ascii_uppercase()).unwrap_or_default();
        if mac.is_empty() {
            bail!("known_device_list[{i}] has no mac");
        }
        if list.devices.iter().any(|d| d.mac == mac) {
            continue;
        }
        list.devices.push(Device {
            mac,
            hostname: f("hostname").unwrap_or_default(),
            ip: f("ip").unwrap_or_default(),
            name: f("name").unwrap_or_default(),
            active: f("activity").and_then(|a| flag(&a)),
            os: f("os").unwrap_or_default(),
            kind: f("device").unwrap_or_default(),
            interface: f("port").unwrap_or_default(),
            ipv6: f("ipv6").unwrap_or_default(),
            ipv6_link_local: f("ipv6_ll").unwrap_or_default(),
            last_active: f("time_last_active").unwrap_or_default(),
        });
    }
    for (i, rec) in rates.iter().enumerate() {
        let f = |k: &str| field(rec, RATE_FIELDS, k);
        let mac = f("mac").map(|m| m.to_ascii_uppercase()).unwrap_or_default();
        if mac.is_empty() {
            bail!("rate[{i}] has no mac");
        }
        let rate = Rate {
            mac,
            tx: f("tx").and_then(|v| v.parse().ok()),
            rx: f("rx").and_then(|v| v.parse().ok()),
        };
        let all_apps = f("app").is_some_and(|a| a == ALL_APPS);
        // Several entries per MAC were never seen; keep the all-applications one, else the first.
        match list.rates.iter_mut().find(|r| r.mac == rate.mac) {
            Some(existing) if all_apps => *existing = rate,
            Some(_) => {}
            None => list.rates.push(rate),
        }
    }
    Ok(list)
}

/// Converts the records of `owl_tplg` and `owl_station` into a [`Mesh`].
pub fn mesh(nodes: &[Record], stations: &[Record]) -> anyhow::Result<Mesh> {
    let mut mesh = Mesh::default();
    for (i, rec) in nodes.iter().enumerate() {
        let f = |k: &str| field(rec, NODE_FIELDS, k).filter(|v| v != "NULL" && !v.is_empty());
        let Some(id) = f("device_id").or_else(|| f("device_mac")) else {
            bail!("owl_tplg[{i}] has no device_id");
        };
        mesh.nodes.push(MeshNode {
            id: id.to_ascii_uppercase(),
            mac: f("device_mac").unwrap_or_default().to_ascii_uppercase(),
            name: f("device_name").unwrap_or_default(),
            model: f("model_name").unwrap_or_default(),
            firmware: f("fw_ver").unwrap_or_default().trim().to_owned(),
            ip: f("device_ip").unwrap_or_default(),
            role: f("connected_role").unwrap_or_default(),
            connection: f("connect_type").unwrap_or_default(),
            parent: f("parent_id").unwrap_or_default().to_ascii_uppercase(),
            uptime_seconds: f("uptime").and_then(|v| v.parse().ok()),
            rssi_dbm: f("connect_rssi").and_then(|v| v.parse().ok()),
            link_rate_bps: f("linkrate").and_then(|v| parse_link_rate(&v)),
            stations: f("sta_num").and_then(|v| v.parse().ok()),
            serial: f("sn").unwrap_or_default(),
            ssids: ["essid_2g", "essid_5g"].iter().filter_map(|k| f(k)).collect(),
        });
    }
    for (i, rec) in stations.iter().enumerate() {
        let f = |k: &str| field(rec, STATION_FIELDS, k).filter(|v| v != "NULL" && !v.is_empty());
        let mac = f("station_mac").unwrap_or_default().to_ascii_uppercase();
        if mac.is_empty() {
            bail!("owl_station[{i}] has no station_mac");
        }
        if mesh.stations.iter().any(|s| s.mac == mac) {
            continue;
        }
        mesh.stations.push(Station {
            mac,
            name: f("station_name").unwrap_or_default(),
            alias: f("alias_name").unwrap_or_default(),
            ip: f("station_ip").unwrap_or_default(),
            parent: f("parent_id").unwrap_or_default().to_ascii_uppercase(),
            connection: f("connect_type").unwrap_or_default(),
            online: f("online").and_then(|v| flag(&v)),
            signal_dbm: f("signal_strength").and_then(|v| v.parse().ok()),
            link_rate_bps: f("link_rate").and_then(|v| parse_link_rate(&v)),
        });
    }
    Ok(mesh)
}

/// Decodes the hub's `%XX` encoding (and `%uXXXX`, which `unescape` also accepts).
///
/// Invalid escapes such as a bare `%` are kept verbatim; bytes that are not UTF-8 are
/// replaced. The result is cut to [`MAX_VALUE_CHARS`] characters.
pub fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let Some(v) = hex_at(bytes, i + 1, 2) {
                out.push(v as u8);
                i += 3;
                continue;
            }
            if bytes.get(i + 1).is_some_and(|c| *c == b'u' || *c == b'U')
                && let Some(unit) = hex_at(bytes, i + 2, 4)
            {
                let mut consumed = 6;
                let mut units = vec![unit as u16];
                // A surrogate pair arrives as two %uXXXX escapes.
                if (0xD800..0xDC00).contains(&unit)
                    && bytes.get(i + 6) == Some(&b'%')
                    && bytes.get(i + 7).is_some_and(|c| *c == b'u' || *c == b'U')
                    && let Some(low) = hex_at(bytes, i + 8, 4)
                {
                    units.push(low as u16);
                    consumed = 12;
                }
                let text: String =
                    char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')).collect();
                out.extend_from_slice(text.as_bytes());
                i += consumed;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    match String::from_utf8(out) {
        // Bytes bound characters: nothing to cut.
        Ok(text) if text.len() <= MAX_VALUE_CHARS => text,
        Ok(text) => text.chars().take(MAX_VALUE_CHARS).collect(),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).chars().take(MAX_VALUE_CHARS).collect(),
    }
}

/// A JavaScript literal as the hub writes it inside XML attributes: nested arrays of
/// strings and `null`. Numbers and other bare words are kept as their text.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Str(String),
    List(Vec<Lit>),
}

/// Parses a JavaScript array literal such as `[['connected%3B58%3Bpass'],\nnull]`.
pub fn parse_js_literal(text: &str) -> anyhow::Result<Lit> {
    let mut p = LitParser { s: text.as_bytes(), pos: 0 };
    let lit = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        bail!("unexpected text after the literal at byte {}", p.pos);
    }
    Ok(lit)
}

/// Parses `1733Mbps`, `72Mbps`, `100Kbps`, `1Gbps` (or a bare number of bit/s) into bit/s.
pub fn parse_link_rate(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "bps" => 1,
        "kbps" => 1_000,
        "mbps" => 1_000_000,
        "gbps" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn is_wired(connection: &str) -> bool {
    connection.eq_ignore_ascii_case("ether") || connection.eq_ignore_ascii_case("ethernet")
}

fn flag(v: &str) -> Option<bool> {
    match v {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// A decoded field of a record by name.
fn field(rec: &Record, fields: &[&str], key: &str) -> Option<String> {
    let idx = fields.iter().position(|f| *f == key)?;
    rec.get(idx)?.as_deref().map(decode)
}

fn hex_at(bytes: &[u8], start: usize, len: usize) -> Option<u32> {
    let digits = bytes.get(start..start + len)?;
    let mut v = 0u32;
    for d in digits {
        v = v * 16 + (*d as char).to_digit(16)?;
    }
    Some(v)
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
}

/// Deepest nesting accepted (the hub uses 2).
const MAX_DEPTH: usize = 8;

impl LitParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> anyhow::Result<Lit> {
        if depth > MAX_DEPTH {
            bail!("literal nested deeper than {MAX_DEPTH}");
        }
        self.skip_ws();
        match self.s.get(self.pos) {
            None => bail!("literal ends early"),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.s.get(self.pos) == Some(&b']') {
                        self.pos += 1;
                        return Ok(Lit::List(items));
                    }
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {}
                        Some(c) => {
                            bail!("expected , or ] at byte {}, found {:?}", self.pos, *c as char)
                        }
                        None => bail!("literal ends early inside an array"),
                    }
                }
            }
            Some(&q) if q == b'\'' || q == b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.pos) {
                        None => bail!("unterminated string"),
                        Some(&c) if c == q => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            // Never seen (the hub %-encodes), but keep the next byte literally.
                            if let Some(&c) = self.s.get(self.pos + 1) {
                                out.push(c);
                            }
                            self.pos += 2;
                        }
                        Some(&c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(Lit::Str(String::from_utf8_lossy(&out).into_owned()))
            }
            Some(_) => {
                let start = self.pos;
                while self.s.get(self.pos).is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'_')
                }) {
                    self.pos += 1;
                }
                if self.pos == start {
                    bail!("unexpected byte at {}", self.pos);
                }
                let word = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                Ok(if word == "null" { Lit::Null } else { Lit::Str(word) })
            }
        }
    }
}

/// The `value` attributes of `wan_conn.xml`, by element name.
#[derive(Default)]
struct XmlValues {
    status: Option<String>,
    volume: Option<String>,
    rate: Option<String>,
    link: Option<String>,
    line: Option<String>,
    ip4: Option<String>,
    ip6_gua: Option<String>,
    sysuptime: Option<String>,
    active_idx: Option<String>,
}

impl XmlValues {
    fn set(&mut self, name: &str, value: String) {
        let slot = match name {
            "wan_conn_status_list" => &mut self.status,
            "wan_conn_volume_list" => &mut self.volume,
            "status_rate" => &mut self.rate,
            "curlinkstatus" => &mut self.link,
            "wan_linestatus_rate_list" => &mut self.line,
            "ip4_info_list" => &mut self.ip4,
            "ip6_gua_list" => &mut self.ip6_gua,
            "sysuptime" => &mut self.sysuptime,
            "wan_active_idx" => &mut self.active_idx,
            _ => return,
        };
        *slot = Some(value);
    }

    fn into_wan(self) -> anyhow::Result<WanConn> {
        let Some(status) = self.status.as_deref() else {
            bail!("no wan_conn_status_list");
        };
        let status = slots(status).context("wan_conn_status_list")?;
        let volume =
            self.volume.as_deref().map(slots).transpose().context("wan_conn_volume_list")?;
        let rate = self.rate.as_deref().map(slots).transpose().context("status_rate")?;
        let link = self.link.as_deref().map(slots).transpose().context("curlinkstatus")?;
        let ip4 = self.ip4.as_deref().map(slots).transpose().context("ip4_info_list")?;
        let ip6 = self.ip6_gua.as_deref().map(slots).transpose().context("ip6_gua_list")?;
        let dsl =
            self.line.as_deref().map(dsl_line).transpose().context("wan_linestatus_rate_list")?;
        let sysuptime = self.sysuptime.as_deref().and_then(|v| decode(v).trim().parse().ok());

        let hub_idx = self
            .active_idx
            .as_deref()
            .and_then(|v| decode(v).trim().parse::<usize>().ok())
            .filter(|i| matches!(status.get(*i), Some(Some(_))));
        let (slot, slot_from_hub) = match hub_idx {
            Some(i) => (i, true),
            None => (fallback_slot(&status, volume.as_deref()), false),
        };
        let Some(Some(fields)) = status.get(slot) else {
            bail!("wan_conn_status_list has no slot {slot}");
        };
        let session = session(fields);
        let at = |list: &Option<Vec<Option<Vec<String>>>>| -> Option<Vec<String>> {
            list.as_ref().and_then(|l| l.get(slot).cloned().flatten())
        };
        let num = |f: &[String], i: usize| f.get(i).and_then(|v| v.trim().parse::<u64>().ok());
        Ok(WanConn {
            sysuptime,
            slot,
            slot_from_hub,
            session,
            link: at(&link).map(|f| self::session(&f)),
            volume: at(&volume).map(|f| Volume {
                total: num(&f, 0),
                rx: num(&f, 1),
                tx: num(&f, 2),
            }),
            rate: at(&rate).map(|f| LinkRate { up_bps: num(&f, 0), down_bps: num(&f, 1) }),
            ipv4: at(&ip4).and_then(|f| {
                let addr = f.first().filter(|a| !a.is_empty() && *a != "0.0.0.0")?;
                Some(Ipv4Info {
                    address: addr.clone(),
                    gateway: f.get(2).filter(|g| !g.is_empty() && *g != "0.0.0.0").cloned(),
                })
            }),
            ipv6: at(&ip6).and_then(|f| {
                f.first().filter(|a| !a.is_empty() && !a.starts_with("::/") && *a != "::").cloned()
            }),
            dsl,
        })
    }
}

/// `[['a%3Bb'],['c%3Bd'],null]` → per slot, the decoded fields (`None` for a null slot).
fn slots(text: &str) -> anyhow::Result<Vec<Option<Vec<String>>>> {
    let Lit::List(items) = parse_js_literal(text)? else {
        bail!("not an array");
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Lit::Null => out.push(None),
            Lit::List(inner) => match inner.first() {
                Some(Lit::Str(s)) => {
                    out.push(Some(decode(s).split(';').map(str::to_owned).collect()))
                }
                Some(Lit::Null) | None => out.push(None),
                Some(Lit::List(_)) => bail!("a slot holds a nested array"),
            },
            Lit::Str(s) => out.push(Some(decode(&s).split(';').map(str::to_owned).collect())),
        }
    }
    // The trailing null is a sentinel, not a slot.
    if out.last().is_some_and(Option::is_none) {
        out.pop();
    }
    Ok(out)
}

fn session(fields: &[String]) -> Session {
    Session {
        state: fields.first().map(|s| s.trim().to_owned()).unwrap_or_default(),
        start: fields.get(1).and_then(|v| v.trim().parse().ok()),
    }
}

/// Spec §4.1: the first connected slot, else the first with traffic, else slot 0.
fn fallback_slot(status: &[Option<Vec<String>>], volume: Option<&[Option<Vec<String>>]>) -> usize {
    let connected = status
        .iter()
        .position(|s| s.as_ref().is_some_and(|f| f.first().is_some_and(|st| st == "connected")));
    if let Some(i) = connected {
        return i;
    }
    let busy = volume.and_then(|v| {
        v.iter().position(|s| {
            s.as_ref()
                .is_some_and(|f| f.iter().any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0)))
        })
    });
    busy.filter(|i| matches!(status.get(*i), Some(Some(_)))).unwrap_or(0)
}

fn dsl_line(text: &str) -> anyhow::Result<DslLine> {
    let Lit::List(items) = parse_js_literal(text)? else {
        bail!("not an array");
    };
    let Some(Lit::List(fields)) = items.first() else {
        bail!("no line entry");
    };
    let f: Vec<String> = fields
        .iter()
        .map(|l| match l {
            Lit::Str(s) => decode(s).trim().to_owned(),
            _ => String::new(),
        })
        .collect();
    let s = |i: usize| f.get(i).cloned().unwrap_or_default();
    let i = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    let u = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Ok(DslLine {
        state: s(0),
        mode: s(1),
        modulation: s(2),
        snr_margin_down: i(3),
        snr_margin_up: i(4),
        line_attenuation_down: i(5),
        line_attenuation_up: i(6),
        signal_attenuation_down: i(7),
        signal_attenuation_up: i(8),
        output_power_down: i(9),
        output_power_up: i(10),
        sync_down_kbps: u(11),
        sync_up_kbps: u(12),
        attainable_down_bps: u(13),
        attainable_up_bps: u(14),
        channel: s(15),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decode_handles_every_case() {
        assert_eq!(decode("Tom%27s%20iPhone"), "Tom's iPhone");
        assert_eq!(decode("Kids%20%22Den%22%20TV%5C1"), "Kids \"Den\" TV\\1");
        assert_eq!(decode("Zo%C3%AB%2Dlaptop"), "Zoë-laptop");
        assert_eq!(decode("Zo%u00EB"), "Zoë");
        assert_eq!(decode("%uD83D%uDE00"), "😀");
        assert_eq!(decode("fe80%"), "fe80%");
        assert_eq!(decode("android%thingy"), "android%thingy");
        assert_eq!(decode("100%25"), "100%");
        assert_eq!(decode("%FF"), "\u{FFFD}");
        assert_eq!(decode(&"x".repeat(1000)).len(), MAX_VALUE_CHARS);
    }

    #[test]
    fn literal_parser_reads_hub_arrays_and_rejects_garbage() {
        let lit = parse_js_literal("[['a%3Bb'],\n[null],\nnull]").unwrap();
        assert_eq!(
            lit,
            Lit::List(vec![
                Lit::List(vec![Lit::Str("a%3Bb".into())]),
                Lit::List(vec![Lit::Null]),
                Lit::Null
            ])
        );
        assert!(parse_js_literal("[['a'],").is_err());
        assert!(parse_js_literal("[['a']] x").is_err());
        assert!(parse_js_literal(&"[".repeat(10_000)).is_err());
        assert!(parse_js_literal("['unterminated]").is_err());
    }

    #[test]
    fn link_rates_parse_with_units() {
        assert_eq!(parse_link_rate("1733Mbps"), Some(1_733_000_000));
        assert_eq!(parse_link_rate("0Mbps"), Some(0));
        assert_eq!(parse_link_rate("12parsecs"), None);
        assert_eq!(parse_link_rate(""), None);
    }

    #[test]
    fn fallback_slot_prefers_connected_then_traffic() {
        let s = |st: &str| Some(vec![st.to_owned(), "1".to_owned()]);
        let status = vec![s("disconnected"), s("connected"), s("disconnected")];
        assert_eq!(fallback_slot(&status, None), 1);
        let status = vec![s("disconnected"), s("disconnected"), s("disconnected")];
        let v = |n: &str| Some(vec![n.to_owned(), "0".to_owned(), "0".to_owned()]);
        let volume = vec![v("0"), v("0"), v("5")];
        assert_eq!(fallback_slot(&status, Some(&volume)), 2);
        assert_eq!(fallback_slot(&status, None), 0);
    }
}
