//! Pure render functions: [`crate::model`] types → samples in a [`Scrape`].
//!
//! No D-Bus here, so the golden tests feed hand-built snapshots. A `None` in the model is an
//! absent series; real zeros are exported. Every modem series carries `device_id`
//! (ModemManager's `DeviceIdentifier`), never the object path index.

use exporter_core::Scrape;

use crate::{
    enums::{self, name_or_code},
    model::{Bearer, MAX_BEARERS_PER_MODEM, Modem, SIGNAL_KEYS, Sim, Snapshot},
};

/// What the operator allowed the exporter to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// IMEI, IMSI, ICCID, EID and own numbers (`--expose-identifiers`).
    pub expose_identifiers: bool,
    /// GPS position (`--expose-location`).
    pub expose_location: bool,
}

/// Renders everything in `snap`.
pub fn render(out: &mut Scrape, snap: &Snapshot, opts: RenderOptions) {
    daemon(out, snap);
    for m in &snap.modems {
        modem(out, m, opts);
        modem3gpp(out, m);
        signal(out, m);
        location(out, m, opts);
        for b in &m.bearers {
            bearer(out, m, b);
        }
        for s in &m.sims {
            sim(out, m, s, opts);
        }
    }
}

/// Daemon-wide metrics.
pub fn daemon(out: &mut Scrape, snap: &Snapshot) {
    if let Some(version) = &snap.daemon_version {
        out.gauge("info", "ModemManager daemon version (Manager.Version), value 1. Read once per daemon instance (again after it restarted).")
            .sample(&[("version", version)], 1.0);
    }
    out.gauge("modems", "Modems ModemManager manages that this scrape covers (with a device id).")
        .sample(&[], count(snap.modems.len()));
}

/// The `Modem` interface: identity, state, power, access technology, signal quality, locks,
/// bearer limits, messaging and time.
pub fn modem(out: &mut Scrape, m: &Modem, opts: RenderOptions) {
    let id: &[(&str, &str)] = &[("device_id", &m.device_id)];
    let drivers = m.drivers.as_ref().map(|d| d.join(",")).unwrap_or_default();
    out.info(
        "modem_info",
        "Modem identity (Modem.Manufacturer, Model, Revision = firmware, HardwareRevision, CarrierConfiguration, Plugin, Drivers, PrimaryPort), value 1.",
        &[
            ("device_id", &m.device_id),
            ("manufacturer", opt(&m.manufacturer)),
            ("model", opt(&m.model)),
            ("revision", opt(&m.revision)),
            ("hardware_revision", opt(&m.hardware_revision)),
            ("carrier_configuration", opt(&m.carrier_configuration)),
            ("plugin", opt(&m.plugin)),
            ("drivers", &drivers),
            ("primary_port", opt(&m.primary_port)),
        ],
    );
    if opts.expose_identifiers {
        let numbers = m.own_numbers.as_ref().map(|n| n.join(",")).unwrap_or_default();
        let imei = m.modem3gpp.as_ref().and_then(|g| g.imei.as_deref()).unwrap_or("");
        out.info(
            "modem_identity_info",
            "Modem personal identifiers (Modem.EquipmentIdentifier, Modem3gpp.Imei, Modem.OwnNumbers), value 1; only with --expose-identifiers.",
            &[
                ("device_id", &m.device_id),
                ("equipment_identifier", opt(&m.equipment_identifier)),
                ("imei", imei),
                ("own_numbers", &numbers),
            ],
        );
    }
    for (port, kind) in m.ports.iter().flatten() {
        if *kind == enums::PORT_TYPE_NET {
            out.info(
                "modem_network_port_info",
                "Network data ports of the modem (Modem.Ports of type net), value 1.",
                &[("device_id", &m.device_id), ("device", port)],
            );
        }
    }
    if let Some(code) = m.state {
        state(out, "modem_state", "Modem state (Modem.State)", id, enums::MODEM_STATE, code);
    }
    if let Some(code) = m.state_failed_reason {
        state(
            out,
            "modem_state_failed_reason",
            "Why the modem is in the failed state (Modem.StateFailedReason)",
            id,
            enums::FAILED_REASON,
            code,
        );
    }
    if let Some(code) = m.power_state {
        state(
            out,
            "modem_power_state",
            "Modem power state (Modem.PowerState)",
            id,
            enums::POWER_STATE,
            code,
        );
    }
    if let Some(mask) = m.access_technologies {
        let mut fam = out.gauge(
            "modem_access_technology",
            "Access technologies in use (Modem.AccessTechnologies bitmask), 1 per technology in use, 0 otherwise.",
        );
        for (bit, name) in enums::ACCESS_TECHNOLOGY_BITS {
            let on = if mask & bit != 0 { 1.0 } else { 0.0 };
            fam.sample(&[("device_id", &m.device_id), ("technology", name)], on);
        }
        out.gauge(
            "modem_access_technologies_bitmask",
            "Raw MMModemAccessTechnology bitmask (Modem.AccessTechnologies); 0 = unknown.",
        )
        .sample(id, f64::from(mask));
    }
    out.gauge(
        "modem_signal_quality_ratio",
        "Signal quality 0-1 (Modem.SignalQuality, reported in percent).",
    )
    .sample_opt(id, m.signal_quality_percent.map(|p| f64::from(p) / 100.0));
    out.gauge(
        "modem_signal_quality_recent",
        "Whether the signal quality value is recent (Modem.SignalQuality flag), 1 or 0.",
    )
    .sample_opt(id, m.signal_quality_recent.map(bool01));
    if let Some(code) = m.unlock_required {
        state(
            out,
            "modem_unlock_required",
            "Lock that blocks the modem (Modem.UnlockRequired; none = unlocked)",
            id,
            enums::MODEM_LOCK,
            code,
        );
    }
    for (lock, retries) in m.unlock_retries.iter().flatten() {
        let lock = name_or_code(enums::MODEM_LOCK, *lock);
        out.gauge("modem_unlock_retries", "Unlock attempts left per lock (Modem.UnlockRetries).")
            .sample(&[("device_id", &m.device_id), ("lock", &lock)], f64::from(*retries));
    }
    out.gauge(
        "modem_bearers",
        &format!(
            "Bearers the modem lists (len of Modem.Bearers); the newest {MAX_BEARERS_PER_MODEM} at most are exported."
        ),
    )
    .sample_opt(id, m.bearers_listed.map(count));
    out.gauge(
        "modem_max_bearers",
        "Bearers the modem can hold (Modem.MaxBearers, deprecated in 1.18).",
    )
    .sample_opt(id, m.max_bearers.map(f64::from));
    out.gauge(
        "modem_max_active_bearers",
        "Bearers the modem can have connected at once (Modem.MaxActiveBearers).",
    )
    .sample_opt(id, m.max_active_bearers.map(f64::from));
    out.gauge(
        "modem_max_active_multiplexed_bearers",
        "Multiplexed bearers the modem can have connected at once; 0 = no multiplexing (Modem.MaxActiveMultiplexedBearers).",
    )
    .sample_opt(id, m.max_active_multiplexed_bearers.map(f64::from));
    out.gauge(
        "modem_primary_sim_slot",
        "Active SIM slot, 1-based; 0 when the modem has no multi-slot support (Modem.PrimarySimSlot).",
    )
    .sample_opt(id, m.primary_sim_slot.map(f64::from));
    out.gauge("messaging_stored_sms", "SMS messages the modem lists (len of Messaging.Messages).")
        .sample_opt(id, m.stored_sms.map(count));
    if let Some(tz) = &m.timezone {
        out.gauge(
            "modem_network_timezone_offset_seconds",
            "Network time zone offset from UTC including DST (Time.NetworkTimezone offset, reported in minutes).",
        )
        .sample_opt(id, tz.offset_minutes.map(minutes));
        out.gauge(
            "modem_network_dst_offset_seconds",
            "Daylight saving part of the network time zone offset (Time.NetworkTimezone dst-offset, reported in minutes).",
        )
        .sample_opt(id, tz.dst_offset_minutes.map(minutes));
    }
}

/// The `Modem3gpp` interface: registration, operator, packet service.
pub fn modem3gpp(out: &mut Scrape, m: &Modem) {
    let Some(g) = &m.modem3gpp else { return };
    let id: &[(&str, &str)] = &[("device_id", &m.device_id)];
    if let Some(code) = g.registration_state {
        state(
            out,
            "modem_3gpp_registration_state",
            "3GPP network registration (Modem3gpp.RegistrationState)",
            id,
            enums::REGISTRATION_STATE,
            code,
        );
    }
    let (code, name) = (opt(&g.operator_code), opt(&g.operator_name));
    if !code.is_empty() || !name.is_empty() {
        out.info(
            "modem_3gpp_operator_info",
            "Network operator the modem is registered with (Modem3gpp.OperatorCode = MCCMNC, OperatorName), value 1.",
            &[("device_id", &m.device_id), ("operator_code", code), ("operator_name", name)],
        );
    }
    if let Some(code) = g.packet_service_state {
        state(
            out,
            "modem_3gpp_packet_service_state",
            "3GPP packet service attachment (Modem3gpp.PacketServiceState, 1.20+)",
            id,
            enums::PACKET_SERVICE_STATE,
            code,
        );
    }
}

/// The `Signal` interface: the exporter's `Signal.Setup` outcome, the poll rate and every
/// extended signal value the daemon reported.
pub fn signal(out: &mut Scrape, m: &Modem) {
    let id: &[(&str, &str)] = &[("device_id", &m.device_id)];
    out.gauge(
        "signal_setup_success",
        "Whether extended signal polling runs at --signal-rate (1: Signal.Rate already matched or Signal.Setup succeeded, 0: Setup failed, e.g. polkit Unauthorized).",
    )
    .sample_opt(id, m.signal_setup_success.map(bool01));
    let Some(sig) = &m.signal else { return };
    out.gauge(
        "modem_signal_rate_seconds",
        "Interval at which ModemManager polls extended signal values; 0 = not polling (Signal.Rate).",
    )
    .sample_opt(id, sig.rate.map(f64::from));
    for key in SIGNAL_KEYS {
        if let Some(v) = sig.values.iter().find(|v| std::ptr::eq(v.key, key)) {
            let value = if key.percent { v.value / 100.0 } else { v.value };
            out.gauge(key.metric, key.help).sample(id, value);
        }
    }
}

/// The `Location` interface: 3GPP cell always, GPS only with `--expose-location`.
pub fn location(out: &mut Scrape, m: &Modem, opts: RenderOptions) {
    let Some(loc) = &m.location else { return };
    let id: &[(&str, &str)] = &[("device_id", &m.device_id)];
    if let Some(cell) = &loc.cell {
        let hex = |v: Option<u64>| v.map(|v| format!("{v:X}")).unwrap_or_default();
        let (lac, tac) = (hex(cell.lac), hex(cell.tac));
        out.info(
            "location_3gpp_info",
            "Serving network location (Location 3gpp-lac-ci: MCC, MNC, LAC and TAC in hex as reported), value 1.",
            &[
                ("device_id", &m.device_id),
                ("mcc", &cell.mcc),
                ("mnc", &cell.mnc),
                ("lac", &lac),
                ("tac", &tac),
            ],
        );
        out.gauge(
            "location_3gpp_lac",
            "Location area code (Location 3gpp-lac-ci LAC, reported in hex).",
        )
        .sample_opt(id, cell.lac.map(u64_f64));
        out.gauge(
            "location_3gpp_tac",
            "Tracking area code (Location 3gpp-lac-ci TAC, reported in hex).",
        )
        .sample_opt(id, cell.tac.map(u64_f64));
        out.gauge(
            "serving_cell_id",
            "Serving cell id (Location 3gpp-lac-ci CI, reported in hex); changes count hand-overs.",
        )
        .sample_opt(id, cell.cell_id.map(u64_f64));
    }
    if opts.expose_location
        && let Some(gps) = &loc.gps
    {
        out.gauge(
            "location_latitude_degrees",
            "GPS latitude (Location gps-raw); only with --expose-location.",
        )
        .sample_opt(id, gps.latitude);
        out.gauge(
            "location_longitude_degrees",
            "GPS longitude (Location gps-raw); only with --expose-location.",
        )
        .sample_opt(id, gps.longitude);
        out.gauge(
            "location_altitude_meters",
            "GPS altitude (Location gps-raw); only with --expose-location.",
        )
        .sample_opt(id, gps.altitude);
    }
}

/// One bearer, labelled by its object path index (`bearer`, so two bearers on one APN and IP
/// type never collide) plus its APN and IP type.
pub fn bearer(out: &mut Scrape, m: &Modem, b: &Bearer) {
    let ip_type = b.ip_type.map(|t| name_or_code(enums::IP_FAMILY, t)).unwrap_or_default();
    let l: &[(&str, &str)] = &[
        ("device_id", &m.device_id),
        ("bearer", b.label()),
        ("apn", &b.apn),
        ("ip_type", &ip_type),
    ];
    let method = |v: Option<i64>| v.map(|c| name_or_code(enums::IP_METHOD, c)).unwrap_or_default();
    let bearer_type =
        b.bearer_type.map(|c| name_or_code(enums::BEARER_TYPE, c)).unwrap_or_default();
    let (ipv4_method, ipv6_method) = (method(b.ip4_method), method(b.ip6_method));
    let mut info = l.to_vec();
    info.extend([
        ("interface", opt(&b.interface)),
        ("bearer_type", bearer_type.as_str()),
        ("ipv4_method", ipv4_method.as_str()),
        ("ipv6_method", ipv6_method.as_str()),
    ]);
    out.info(
        "bearer_info",
        "Bearer settings (bearer = object path index, Bearer.Properties apn and ip-type, Interface, BearerType, Ip4Config/Ip6Config method), value 1.",
        &info,
    );
    out.gauge("bearer_connected", "Whether the bearer is connected (Bearer.Connected), 1 or 0.")
        .sample_opt(l, b.connected.map(bool01));
    out.gauge(
        "bearer_suspended",
        "Whether the connected bearer is suspended (Bearer.Suspended), 1 or 0.",
    )
    .sample_opt(l, b.suspended.map(bool01));
    if let Some(error) = &b.connection_error {
        let mut labels = l.to_vec();
        labels.push(("error", error));
        out.info(
            "bearer_connection_error_info",
            "D-Bus error name of the bearer's last failed connection (Bearer.ConnectionError), value 1.",
            &labels,
        );
    }
    let s = &b.stats;
    out.counter("bearer_rx_bytes_total", "Bytes received on the current connection (Bearer.Stats rx-bytes; resets on each connection).")
        .sample_opt(l, s.rx_bytes.map(u64_f64));
    out.counter(
        "bearer_tx_bytes_total",
        "Bytes sent on the current connection (Bearer.Stats tx-bytes; resets on each connection).",
    )
    .sample_opt(l, s.tx_bytes.map(u64_f64));
    out.counter(
        "bearer_lifetime_rx_bytes_total",
        "Bytes received over all connections of the bearer (Bearer.Stats total-rx-bytes).",
    )
    .sample_opt(l, s.total_rx_bytes.map(u64_f64));
    out.counter(
        "bearer_lifetime_tx_bytes_total",
        "Bytes sent over all connections of the bearer (Bearer.Stats total-tx-bytes).",
    )
    .sample_opt(l, s.total_tx_bytes.map(u64_f64));
    out.counter("bearer_lifetime_duration_seconds_total", "Time connected over all connections of the bearer (Bearer.Stats total-duration; advances on a 30 s tick).")
        .sample_opt(l, s.total_duration_seconds.map(u64_f64));
    out.counter(
        "bearer_connection_attempts_total",
        "Connection attempts of the bearer (Bearer.Stats attempts).",
    )
    .sample_opt(l, s.attempts.map(u64_f64));
    out.counter(
        "bearer_failed_connection_attempts_total",
        "Failed connection attempts of the bearer (Bearer.Stats failed-attempts).",
    )
    .sample_opt(l, s.failed_attempts.map(u64_f64));
    out.gauge(
        "bearer_connection_duration_seconds",
        "Duration of the current connection (Bearer.Stats duration; advances on a 30 s tick).",
    )
    .sample_opt(l, s.duration_seconds.map(u64_f64));
    out.gauge("bearer_connection_start_time_seconds", "Unix time the current connection started (Bearer.Stats start-date); absent while 0 = unknown.")
        .sample_opt(l, s.start_date.filter(|d| *d > 0).map(u64_f64));
    out.gauge(
        "bearer_uplink_speed_bytes_per_second",
        "Negotiated uplink speed (Bearer.Stats uplink-speed, reported in bit/s).",
    )
    .sample_opt(l, s.uplink_speed.map(|v| u64_f64(v) / 8.0));
    out.gauge(
        "bearer_downlink_speed_bytes_per_second",
        "Negotiated downlink speed (Bearer.Stats downlink-speed, reported in bit/s).",
    )
    .sample_opt(l, s.downlink_speed.map(|v| u64_f64(v) / 8.0));
}

/// One SIM, labelled by its slot.
pub fn sim(out: &mut Scrape, m: &Modem, s: &Sim, opts: RenderOptions) {
    let slot = s.slot.to_string();
    let l: &[(&str, &str)] = &[("device_id", &m.device_id), ("slot", &slot)];
    out.gauge("sim_active", "Whether the SIM is the active one (Sim.Active, 1.16+), 1 or 0; slot 0 = no multi-slot support. Cached per SIM object for --static-ttl.")
        .sample_opt(l, s.active.map(bool01));
    let (code, name) = (opt(&s.operator_identifier), opt(&s.operator_name));
    if !code.is_empty() || !name.is_empty() {
        out.info(
            "sim_operator_info",
            "Operator that issued the SIM (Sim.OperatorIdentifier = MCCMNC, Sim.OperatorName), value 1. Cached per SIM object for --static-ttl.",
            &[("device_id", &m.device_id), ("slot", &slot), ("operator_identifier", code), ("operator_name", name)],
        );
    }
    if opts.expose_identifiers {
        out.info(
            "sim_identity_info",
            "SIM personal identifiers (Sim.SimIdentifier = ICCID, Imsi, Eid), value 1; only with --expose-identifiers. Cached per SIM object for --static-ttl.",
            &[
                ("device_id", &m.device_id),
                ("slot", &slot),
                ("iccid", opt(&s.iccid)),
                ("imsi", opt(&s.imsi)),
                ("eid", opt(&s.eid)),
            ],
        );
    }
}

/// A one-hot enumeration plus its raw code as `<name>_code`.
fn state(
    out: &mut Scrape,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    table: &[(i64, &'static str)],
    code: i64,
) {
    let current = name_or_code(table, code);
    let one_hot = format!("{help}: one series per state, 1 for the current one.");
    out.state_set(name, &one_hot, labels, &enums::names(table), &current);
    out.gauge(&format!("{name}_code"), &format!("{help} as the raw code."))
        .sample(labels, i64_f64(code));
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn bool01(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn minutes(m: i64) -> f64 {
    i64_f64(m) * 60.0
}

#[allow(clippy::cast_precision_loss)]
fn count(n: usize) -> f64 {
    n as f64
}

/// Counters and ids above 2^53 lose precision in f64, as in every Prometheus client.
#[allow(clippy::cast_precision_loss)]
fn u64_f64(v: u64) -> f64 {
    v as f64
}

#[allow(clippy::cast_precision_loss)]
fn i64_f64(v: i64) -> f64 {
    v as f64
}
