//! Pure render functions: parsed hub data → metric families of one [`Scrape`].
//!
//! Units are converted to base units here: the hub's bit/s and kbit/s become bytes per
//! second, tenths of dB become dB; HELP texts say what the hub reported.

use exporter_core::Scrape;

use crate::api::{BasicStatus, Device, DeviceList, DslLine, Mesh, Station, WanConn};

/// The WAN metrics of the live slot, and the DSL line when the hub has one in use.
pub fn wan(out: &mut Scrape, w: &WanConn) {
    out.gauge(
        "wan_connected",
        "Whether the IP session of the live WAN slot (wan_active_idx) is connected (1) or not (0).",
    )
    .sample(&[], bool_value(w.session.connected()));
    out.gauge("uptime_seconds", "Seconds since the hub booted (sysuptime).")
        .sample_opt(&[], w.sysuptime.map(|v| v as f64));
    out.gauge(
        "wan_connection_uptime_seconds",
        "Seconds the IP session of the live WAN slot has been up: system uptime minus the uptime \
         at which it connected. Absent while disconnected.",
    )
    .sample_opt(&[], since(w.sysuptime, w.session.connected(), w.session.start));
    if let Some(link) = &w.link {
        out.gauge(
            "wan_link_up",
            "Whether the physical link of the live WAN slot (curlinkstatus) is connected (1) or not (0).",
        )
        .sample(&[], bool_value(link.connected()));
        out.gauge(
            "wan_link_uptime_seconds",
            "Seconds the physical link of the live WAN slot has been up: system uptime minus the \
             uptime at which it came up. Absent while down.",
        )
        .sample_opt(&[], since(w.sysuptime, link.connected(), link.start));
    }
    if let Some(v) = &w.volume {
        out.counter(
            "wan_download_bytes_total",
            "Bytes received over the live WAN slot (wan_conn_volume_list).",
        )
        .sample_opt(&[], v.rx.map(|n| n as f64));
        out.counter(
            "wan_upload_bytes_total",
            "Bytes sent over the live WAN slot (wan_conn_volume_list).",
        )
        .sample_opt(&[], v.tx.map(|n| n as f64));
    }
    if let Some(r) = &w.rate {
        out.gauge(
            "wan_download_rate_bytes_per_second",
            "Downstream link rate of the live WAN slot; the hub reports bit/s (status_rate), \
             divided by 8 here. On FTTP this is the Ethernet link to the ONT.",
        )
        .sample_opt(&[], r.down_bps.map(bits_to_bytes));
        out.gauge(
            "wan_upload_rate_bytes_per_second",
            "Upstream link rate of the live WAN slot; the hub reports bit/s (status_rate), \
             divided by 8 here. On FTTP this is the Ethernet link to the ONT.",
        )
        .sample_opt(&[], r.up_bps.map(bits_to_bytes));
    }
    let slot = w.slot.to_string();
    let mut labels: Vec<(&str, &str)> = vec![
        ("slot", &slot),
        ("type", slot_type(w.slot)),
        ("slot_source", if w.slot_from_hub { "wan_active_idx" } else { "fallback" }),
    ];
    if let Some(ip) = &w.ipv4 {
        labels.push(("ipv4", &ip.address));
        if let Some(gw) = &ip.gateway {
            labels.push(("ipv4_gateway", gw));
        }
    }
    if let Some(ip6) = &w.ipv6 {
        labels.push(("ipv6", ip6));
    }
    out.info(
        "wan_info",
        "The live WAN slot (0 Ethernet/FTTP, 1 VDSL2/G.fast, 2 ADSL) and its addresses when it has them.",
        &labels,
    );
    if let Some(dsl) = &w.dsl {
        // An FTTP hub reports its unused DSL port as DOWN with zeros: no DSL series then.
        if w.slot != 0 || dsl.up() {
            dsl_line(out, dsl);
        }
    }
}

/// The DSL line statistics (`wan_linestatus_rate_list`).
pub fn dsl_line(out: &mut Scrape, d: &DslLine) {
    out.gauge("dsl_up", "Whether the DSL line is trained (UP) (1) or not (0).")
        .sample(&[], bool_value(d.up()));
    out.info(
        "dsl_info",
        "The DSL line's mode (ADSL, VDSL2, GFAST), modulation or profile, and channel type.",
        &[("mode", &d.mode), ("modulation", &d.modulation), ("channel", &d.channel)],
    );
    if !d.up() {
        // The hub reports zeros for an untrained line; they are not readings.
        return;
    }
    let dirs = |a: Option<f64>, b: Option<f64>| [("downstream", a), ("upstream", b)];
    let tenths = |v: Option<i64>| v.map(|v| v as f64 / 10.0);
    for (dir, v) in dirs(
        d.sync_down_kbps.map(|k| k as f64 * 1000.0 / 8.0),
        d.sync_up_kbps.map(|k| k as f64 * 1000.0 / 8.0),
    ) {
        out.gauge(
            "dsl_sync_rate_bytes_per_second",
            "DSL sync rate; the hub reports kbit/s, converted to bytes per second here.",
        )
        .sample_opt(&[("direction", dir)], v);
    }
    for (dir, v) in
        dirs(d.attainable_down_bps.map(bits_to_bytes), d.attainable_up_bps.map(bits_to_bytes))
    {
        out.gauge(
            "dsl_attainable_rate_bytes_per_second",
            "DSL attainable rate; the hub reports bit/s, divided by 8 here.",
        )
        .sample_opt(&[("direction", dir)], v);
    }
    for (dir, v) in dirs(tenths(d.snr_margin_down), tenths(d.snr_margin_up)) {
        out.gauge(
            "dsl_snr_margin_db",
            "DSL signal-to-noise margin in dB (the hub reports tenths of dB).",
        )
        .sample_opt(&[("direction", dir)], v);
    }
    for (dir, v) in dirs(tenths(d.line_attenuation_down), tenths(d.line_attenuation_up)) {
        out.gauge(
            "dsl_line_attenuation_db",
            "DSL line attenuation in dB (the hub reports tenths of dB).",
        )
        .sample_opt(&[("direction", dir)], v);
    }
    for (dir, v) in dirs(tenths(d.signal_attenuation_down), tenths(d.signal_attenuation_up)) {
        out.gauge(
            "dsl_signal_attenuation_db",
            "DSL signal attenuation in dB (the hub reports tenths of dB).",
        )
        .sample_opt(&[("direction", dir)], v);
    }
    for (dir, v) in dirs(tenths(d.output_power_down), tenths(d.output_power_up)) {
        out.gauge(
            "dsl_output_power_dbm",
            "DSL output power in dBm (the hub reports tenths of dBm).",
        )
        .sample_opt(&[("direction", dir)], v);
    }
}

/// Which LAN devices and mesh stations get series of their own (`--lan-devices`,
/// `--lan-devices-max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanSelection {
    /// Every remembered device (`all`), or only those connected now (`active`).
    pub include_inactive: bool,
    /// Most devices (and, separately, mesh stations) with series of their own.
    pub max: usize,
}

impl Default for LanSelection {
    fn default() -> Self {
        LanSelection { include_inactive: false, max: DEFAULT_LAN_DEVICES_MAX }
    }
}

/// The default of `--lan-devices-max`.
pub const DEFAULT_LAN_DEVICES_MAX: usize = 256;

/// The devices that get series of their own, in the hub's order, and how many candidates
/// the cap left out.
///
/// Candidates are the connected devices (`activity` 1), or every remembered device when
/// `include_inactive`. Beyond `max`, connected devices are kept first, then the most
/// recently active by `time_last_active` (a value that is not `YYYY/MM/DD HH:MM:SS` ranks
/// last), then the hub's order.
pub fn select_devices(list: &DeviceList, sel: LanSelection) -> (Vec<&Device>, usize) {
    let candidates: Vec<(usize, &Device)> = list
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| sel.include_inactive || d.active == Some(true))
        .collect();
    if candidates.len() <= sel.max {
        return (candidates.into_iter().map(|(_, d)| d).collect(), 0);
    }
    let mut ranked = candidates.clone();
    ranked.sort_by(|(ia, a), (ib, b)| {
        let (ka, kb) = (rank_key(a), rank_key(b));
        kb.cmp(&ka).then(ia.cmp(ib))
    });
    let mut kept: Vec<(usize, &Device)> = ranked.into_iter().take(sel.max).collect();
    kept.sort_by_key(|(i, _)| *i);
    let dropped = candidates.len() - kept.len();
    (kept.into_iter().map(|(_, d)| d).collect(), dropped)
}

/// The LAN device list: totals, and per-device series for the selected devices.
pub fn devices(out: &mut Scrape, list: &DeviceList, sel: LanSelection) {
    let active = list.devices.iter().filter(|d| d.active == Some(true)).count();
    out.gauge(
        "lan_devices",
        "Devices the hub remembers (known_device_list): state=\"known\" all of them, connected \
         or not; state=\"active\" those it reports as connected now (activity 1).",
    )
    .sample(&[("state", "known")], list.devices.len() as f64)
    .sample(&[("state", "active")], active as f64);
    let (kept, dropped) = select_devices(list, sel);
    out.gauge(
        "lan_devices_dropped",
        "Devices left without series of their own because of --lan-devices-max (the most \
         recently active are kept).",
    )
    .sample(&[], dropped as f64);
    for d in &kept {
        let id =
            [("mac", d.mac.as_str()), ("hostname", d.hostname.as_str()), ("ip", d.ip.as_str())];
        out.gauge(
            "lan_device_active",
            "Whether the hub reports the device as connected now (1) or not (0).",
        )
        .sample_opt(&id, d.active.map(bool_value));
        let mut info = id.to_vec();
        info.extend([
            ("name", d.name.as_str()),
            ("type", d.kind.as_str()),
            ("os", d.os.as_str()),
            ("interface", d.interface.as_str()),
            ("ipv6", d.ipv6.as_str()),
            ("ipv6_link_local", d.ipv6_link_local.as_str()),
        ]);
        out.info(
            "lan_device_info",
            "A device the hub remembers: friendly name, type, OS fingerprint, interface (port) and IPv6 addresses.",
            &info,
        );
        let Some(r) = list.rates.iter().find(|r| r.mac == d.mac) else { continue };
        out.counter(
            "lan_device_download_bytes_total",
            "Bytes the device received through the hub (rate rx), counted since the hub restarted.",
        )
        .sample_opt(&id, r.rx.map(|v| v as f64));
        out.counter(
            "lan_device_upload_bytes_total",
            "Bytes the device sent through the hub (rate tx), counted since the hub restarted.",
        )
        .sample_opt(&id, r.tx.map(|v| v as f64));
    }
}

/// Connected first, then the most recent `time_last_active`.
fn rank_key(d: &Device) -> (bool, &str) {
    (d.active == Some(true), last_active_key(&d.last_active))
}

/// `2024/06/03 21:40:17` as a sortable key; anything else ranks below every valid time.
fn last_active_key(text: &str) -> &str {
    let b = text.as_bytes();
    let valid = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'/',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    if valid { text } else { "" }
}

/// The hub's slow facts from `cgi_basicStatus.js`, as cached by the exporter.
#[derive(Debug, Clone, Copy)]
pub struct HubFacts<'a> {
    pub status: &'a BasicStatus,
    /// Unix time of the boot: the exporter's clock at the reading minus `sysuptime`.
    pub boot_time: Option<f64>,
    /// Seconds since the page was read.
    pub age_seconds: f64,
}

/// Firmware, serial number (only with `expose_identifiers`) and boot time of the hub.
pub fn hub_facts(out: &mut Scrape, f: &HubFacts<'_>, expose_identifiers: bool) {
    let s = f.status;
    if s.firmware.is_some() || (expose_identifiers && s.serial.is_some()) {
        let mut labels = vec![
            ("firmware", s.firmware.as_deref().unwrap_or("")),
            ("firmware_update_time", s.firmware_update_time.as_deref().unwrap_or("")),
        ];
        if expose_identifiers {
            labels.push(("serial", s.serial.as_deref().unwrap_or("")));
        }
        // `smarthub_info`: the family is named "info", so `Scrape::info` (which wants a
        // name ending in `_info`) does not apply; the full name does end in `_info`.
        out.gauge(
            "info",
            "The hub's firmware (cgi_basicStatus.js fw_ver), the hub-local time it was installed \
             (fw_update_time) and, only with --expose-identifiers, its serial number (serial_no); \
             value 1. Cached: read once per --static-ttl, and again when the hub restarts.",
        )
        .sample(&labels, 1.0);
    }
    out.gauge(
        "boot_time_seconds",
        "Unix time at which the hub booted: the exporter's clock when it read cgi_basicStatus.js \
         minus the hub's sysuptime (seconds since boot) in it. Cached: read once per \
         --static-ttl, and again when wan_conn.xml's sysuptime shows the hub restarted.",
    )
    .sample_opt(&[], f.boot_time);
    out.gauge(
        "static_age_seconds",
        "Seconds since cgi_basicStatus.js was last read: smarthub_info and \
         smarthub_boot_time_seconds are cached values this old.",
    )
    .sample(&[], f.age_seconds);
}

/// The hub and its discs (`owl_tplg`) and the stations they serve (`owl_station`).
///
/// Stations follow the device selection: only online ones unless `sel.include_inactive`, at
/// most `sel.max` (online first, then the hub's order), the rest counted in
/// `smarthub_mesh_stations_dropped`.
pub fn mesh(out: &mut Scrape, m: &Mesh, sel: LanSelection) {
    out.gauge("mesh_nodes", "Access points in the mesh: the hub and its discs (owl_tplg).")
        .sample(&[], m.nodes.len() as f64);
    for n in &m.nodes {
        let id = [("node", n.id.as_str())];
        out.info(
            "mesh_node_info",
            "An access point of the mesh (the hub or a disc): name, MAC, model, firmware, IP, role, \
             backhaul connection and parent node.",
            &[
                ("node", &n.id),
                ("name", &n.name),
                ("mac", &n.mac),
                ("model", &n.model),
                ("firmware", &n.firmware),
                ("ip", &n.ip),
                ("role", &n.role),
                ("connection", &n.connection),
                ("parent", &n.parent),
            ],
        );
        out.gauge(
            "mesh_node_uptime_seconds",
            "Seconds since the access point started (owl_tplg uptime).",
        )
        .sample_opt(&id, n.uptime_seconds.map(|v| v as f64));
        out.gauge("mesh_node_stations", "Stations the access point serves (owl_tplg sta_num).")
            .sample_opt(&id, n.stations.map(|v| v as f64));
        if !n.wired() {
            out.gauge(
                "mesh_node_backhaul_rssi_dbm",
                "Signal strength of a disc's wireless backhaul in dBm.",
            )
            .sample_opt(&id, n.rssi_dbm.map(|v| v as f64));
            out.gauge(
                "mesh_node_backhaul_rate_bytes_per_second",
                "Link rate of a disc's wireless backhaul; the hub reports Mbit/s, converted to bytes per second.",
            )
            .sample_opt(&id, n.link_rate_bps.map(bits_to_bytes));
        }
    }
    out.gauge("mesh_stations", "Clients the mesh knows (owl_station), online or not.")
        .sample(&[], m.stations.len() as f64);
    let mut candidates: Vec<(usize, &Station)> = m
        .stations
        .iter()
        .enumerate()
        .filter(|(_, s)| sel.include_inactive || s.online == Some(true))
        .collect();
    let total = candidates.len();
    if total > sel.max {
        candidates.sort_by_key(|(i, s)| (s.online != Some(true), *i));
        candidates.truncate(sel.max);
        candidates.sort_by_key(|(i, _)| *i);
    }
    out.gauge(
        "mesh_stations_dropped",
        "Mesh clients left without series of their own because of --lan-devices-max.",
    )
    .sample(&[], (total - candidates.len()) as f64);
    for (_, s) in candidates {
        let id = [("mac", s.mac.as_str())];
        out.info(
            "mesh_station_info",
            "A client seen by the mesh: its names, IP, the access point (node) serving it and the \
             connection (Ether, 2.4G, 5G).",
            &[
                ("mac", &s.mac),
                ("name", &s.name),
                ("alias", &s.alias),
                ("ip", &s.ip),
                ("node", &s.parent),
                ("connection", &s.connection),
            ],
        );
        out.gauge(
            "mesh_station_online",
            "Whether the mesh reports the client as online (1) or not (0).",
        )
        .sample_opt(&id, s.online.map(bool_value));
        if s.online == Some(true) && !s.wired() {
            out.gauge(
                "mesh_station_signal_dbm",
                "Signal strength of an online wireless client in dBm.",
            )
            .sample_opt(&id, s.signal_dbm.map(|v| v as f64));
            out.gauge(
                "mesh_station_link_rate_bytes_per_second",
                "Link rate of an online wireless client; the hub reports Mbit/s, converted to bytes per second.",
            )
            .sample_opt(&id, s.link_rate_bps.map(bits_to_bytes));
        }
    }
}

/// The slot's link type as the spec maps it (slot 2 is presumed ADSL).
pub fn slot_type(slot: usize) -> &'static str {
    match slot {
        0 => "ethernet",
        1 => "vdsl",
        2 => "adsl",
        _ => "unknown",
    }
}

fn since(now: Option<u64>, connected: bool, start: Option<u64>) -> Option<f64> {
    if !connected {
        return None;
    }
    Some(now?.checked_sub(start?)? as f64)
}

fn bits_to_bytes(bits: u64) -> f64 {
    bits as f64 / 8.0
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}
