//! Defensive decoding of D-Bus property maps into [`crate::model`] types.
//!
//! Nothing here trusts the daemon: a missing property or dictionary key is `None`, a value of
//! an unexpected type is `None` plus a debug note (shown with `&debug=true`), and no input
//! panics. Integer properties accept any D-Bus integer type that fits, so a daemon that widens
//! a `u` to a `t` keeps working.

use std::collections::HashMap;

use zbus::{OwnedVariant, Variant};

use crate::{
    dbus::iface,
    model::{
        BEARER_PATH_PREFIX, Bearer, BearerStats, ExtendedSignal, Gps, Location, Location3gpp,
        MAX_BEARERS_PER_MODEM, Modem, Modem3gpp, NetworkTimezone, SIGNAL_KEYS, SignalValue, Sim,
    },
};

/// One interface's properties, as `GetAll` or `GetManagedObjects` return them.
pub type Props = HashMap<String, OwnedVariant>;

/// `MMModemLocationSource` bit of the 3GPP LAC/CI source.
pub const LOCATION_3GPP_LAC_CI: u32 = 1;
/// `MMModemLocationSource` bit of the GPS raw source.
pub const LOCATION_GPS_RAW: u32 = 2;

/// Decodes one managed object into a [`Modem`]. Returns `None` (with a note) for objects
/// without the Modem interface or without a `DeviceIdentifier` to label them by.
pub fn modem(
    path: &str,
    interfaces: &HashMap<String, Props>,
    notes: &mut Vec<String>,
) -> Option<Modem> {
    let Some(props) = interfaces.get(iface::MODEM) else {
        notes.push(format!("{path}: no {} interface; skipped", iface::MODEM));
        return None;
    };
    let mut r = Reader::new(props, path, "Modem", notes);
    let device_id = r.get("DeviceIdentifier", string, "s").filter(|id| !id.is_empty());
    let Some(device_id) = device_id else {
        r.notes.push(format!("{path}: no DeviceIdentifier to label the modem by; skipped"));
        return None;
    };
    let mut m = Modem::new(path, device_id);
    m.manufacturer = r.get("Manufacturer", string, "s");
    m.model = r.get("Model", string, "s");
    m.revision = r.get("Revision", string, "s");
    m.hardware_revision = r.get("HardwareRevision", string, "s");
    m.carrier_configuration = r.get("CarrierConfiguration", string, "s");
    m.plugin = r.get("Plugin", string, "s");
    m.drivers = r.get("Drivers", strings, "as");
    m.primary_port = r.get("PrimaryPort", string, "s");
    m.ports = r.get("Ports", ports, "a(su)");
    m.equipment_identifier = r.get("EquipmentIdentifier", string, "s");
    m.own_numbers = r.get("OwnNumbers", strings, "as");
    m.state = r.get("State", int, "i");
    m.state_failed_reason = r.get("StateFailedReason", int, "u");
    m.power_state = r.get("PowerState", int, "u");
    m.access_technologies = r.get("AccessTechnologies", uint32, "u");
    if let Some((percent, recent)) = r.get("SignalQuality", signal_quality, "(ub)") {
        m.signal_quality_percent = Some(percent);
        m.signal_quality_recent = Some(recent);
    }
    m.unlock_required = r.get("UnlockRequired", int, "u");
    m.unlock_retries = r.get("UnlockRetries", unlock_retries, "a{uu}");
    m.max_bearers = r.get("MaxBearers", uint32, "u");
    m.max_active_bearers = r.get("MaxActiveBearers", uint32, "u");
    m.max_active_multiplexed_bearers = r.get("MaxActiveMultiplexedBearers", uint32, "u");
    m.sim_path = r.get("Sim", object_path, "o").and_then(non_root);
    m.sim_slots = r
        .get("SimSlots", object_paths, "ao")
        .map(|slots| slots.into_iter().map(non_root).collect());
    m.primary_sim_slot = r.get("PrimarySimSlot", uint32, "u");
    let bearers = r.get("Bearers", object_paths, "ao");
    m.bearers_listed = bearers.as_ref().map(|b| b.iter().filter(|p| p.as_str() != "/").count());
    m.bearer_paths = newest_bearers(bearers.unwrap_or_default().into_iter().filter_map(non_root));
    if let Some(listed) = m.bearers_listed.filter(|n| *n > MAX_BEARERS_PER_MODEM) {
        notes.push(format!(
            "{path}: {listed} bearers listed; only the newest {MAX_BEARERS_PER_MODEM} are exported"
        ));
    }

    if let Some(props) = interfaces.get(iface::MODEM_3GPP) {
        let mut r = Reader::new(props, path, "Modem3gpp", notes);
        m.modem3gpp = Some(Modem3gpp {
            imei: r.get("Imei", string, "s"),
            registration_state: r.get("RegistrationState", int, "u"),
            operator_code: r.get("OperatorCode", string, "s"),
            operator_name: r.get("OperatorName", string, "s"),
            packet_service_state: r.get("PacketServiceState", int, "u"),
        });
    }
    if let Some(props) = interfaces.get(iface::SIGNAL) {
        m.signal = Some(extended_signal(props, path, notes));
    }
    if let Some(props) = interfaces.get(iface::LOCATION) {
        let mut r = Reader::new(props, path, "Location", notes);
        let enabled = r.get("Enabled", uint32, "u");
        let mut loc = Location { enabled, ..Location::default() };
        if let Some(entries) = r.get("Location", entries_of, "a{uv}") {
            apply_location(&mut loc, &entries, path, notes);
        }
        m.location = Some(loc);
    }
    if let Some(props) = interfaces.get(iface::MESSAGING) {
        let mut r = Reader::new(props, path, "Messaging", notes);
        m.stored_sms = r.get("Messages", object_paths, "ao").map(|v| v.len());
    }
    if let Some(props) = interfaces.get(iface::TIME) {
        let mut r = Reader::new(props, path, "Time", notes);
        if let Some(tz) = r.get("NetworkTimezone", entries_of, "a{sv}") {
            m.timezone = Some(NetworkTimezone {
                offset_minutes: dict_get(&tz, "offset", int, path, notes),
                dst_offset_minutes: dict_get(&tz, "dst-offset", int, path, notes),
            });
        }
    }
    Some(m)
}

/// The manager's `Version` property.
pub fn manager_version(props: &Props, notes: &mut Vec<String>) -> Option<String> {
    Reader::new(props, crate::dbus::MANAGER_PATH, "ModemManager1", notes)
        .get("Version", string, "s")
}

/// Decodes the `Modem.Signal` interface: every known key the daemon reported.
pub fn extended_signal(props: &Props, path: &str, notes: &mut Vec<String>) -> ExtendedSignal {
    let mut r = Reader::new(props, path, "Signal", notes);
    let rate = r.get("Rate", uint32, "u");
    let mut values = Vec::new();
    for property in ["Gsm", "Umts", "Lte", "Nr5g", "Cdma", "Evdo"] {
        let Some(dict) = r.get(property, entries_of, "a{sv}") else { continue };
        for (k, v) in &dict {
            let Some(k) = string(k) else { continue };
            let known = SIGNAL_KEYS.iter().find(|s| s.property == property && s.key == k);
            let Some(key) = known else {
                r.notes.push(format!("{path}: Signal.{property} key {k} is not known; ignored"));
                continue;
            };
            match float(v) {
                Some(value) if value.is_finite() => values.push(SignalValue { key, value }),
                _ => r.notes.push(format!(
                    "{path}: Signal.{property} {k} is not a finite number ({}); ignored",
                    v.value_signature()
                )),
            }
        }
    }
    values.sort_by_key(|v| SIGNAL_KEYS.iter().position(|k| std::ptr::eq(k, v.key)));
    ExtendedSignal { rate, values }
}

/// Fills the 3GPP and GPS parts of `loc` from an `a{uv}` location dictionary.
pub fn apply_location(
    loc: &mut Location,
    entries: &[(&Variant<'_>, &Variant<'_>)],
    path: &str,
    notes: &mut Vec<String>,
) {
    for (source, value) in entries {
        match uint32(source) {
            Some(LOCATION_3GPP_LAC_CI) => match string(value).as_deref().and_then(parse_3gpp) {
                Some(cell) => loc.cell = Some(cell),
                None => notes.push(format!("{path}: 3GPP location is not MCC,MNC,LAC,CI,TAC")),
            },
            Some(LOCATION_GPS_RAW) => {
                if let Some(gps) = entries_of(value) {
                    loc.gps = Some(Gps {
                        latitude: dict_get(&gps, "latitude", float, path, notes),
                        longitude: dict_get(&gps, "longitude", float, path, notes),
                        altitude: dict_get(&gps, "altitude", float, path, notes),
                    });
                }
            }
            _ => {}
        }
    }
}

/// Parses ModemManager's "MCC,MNC,LAC,CI,TAC" (LAC, CI and TAC in hex; TAC since 1.8).
pub fn parse_3gpp(text: &str) -> Option<Location3gpp> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let (mcc, mnc) = (parts.first()?, parts.get(1)?);
    if mcc.is_empty() || !mcc.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !mnc.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hex = |i: usize| parts.get(i).and_then(|s| u64::from_str_radix(s, 16).ok());
    Some(Location3gpp {
        mcc: (*mcc).to_owned(),
        mnc: (*mnc).to_owned(),
        lac: hex(2),
        cell_id: hex(3),
        tac: hex(4),
    })
}

/// Decodes a bearer's `GetAll` properties.
pub fn bearer(path: &str, props: &Props, notes: &mut Vec<String>) -> Bearer {
    let mut r = Reader::new(props, path, "Bearer", notes);
    let settings = r.get("Properties", entries_of, "a{sv}").unwrap_or_default();
    let stats = r.get("Stats", entries_of, "a{sv}");
    let ip4 = r.get("Ip4Config", entries_of, "a{sv}");
    let ip6 = r.get("Ip6Config", entries_of, "a{sv}");
    let mut b = Bearer {
        path: path.to_owned(),
        interface: r.get("Interface", string, "s"),
        connected: r.get("Connected", boolean, "b"),
        suspended: r.get("Suspended", boolean, "b"),
        bearer_type: r.get("BearerType", int, "u"),
        connection_error: r
            .get("ConnectionError", string_pair, "(ss)")
            .map(|(name, _message)| name)
            .filter(|name| !name.is_empty()),
        ..Bearer::default()
    };
    b.apn = dict_get(&settings, "apn", string, path, notes).unwrap_or_default();
    b.ip_type = dict_get(&settings, "ip-type", int, path, notes);
    b.ip4_method = ip4.and_then(|d| dict_get(&d, "method", int, path, notes));
    b.ip6_method = ip6.and_then(|d| dict_get(&d, "method", int, path, notes));
    if let Some(s) = stats {
        let mut get = |k: &str| dict_get(&s, k, unsigned, path, notes);
        b.stats = BearerStats {
            rx_bytes: get("rx-bytes"),
            tx_bytes: get("tx-bytes"),
            duration_seconds: get("duration"),
            start_date: get("start-date"),
            attempts: get("attempts"),
            failed_attempts: get("failed-attempts"),
            total_rx_bytes: get("total-rx-bytes"),
            total_tx_bytes: get("total-tx-bytes"),
            total_duration_seconds: get("total-duration"),
            uplink_speed: get("uplink-speed"),
            downlink_speed: get("downlink-speed"),
        };
    }
    b
}

/// Decodes a SIM's `GetAll` properties.
pub fn sim(path: &str, slot: u32, props: &Props, notes: &mut Vec<String>) -> Sim {
    let mut r = Reader::new(props, path, "Sim", notes);
    Sim {
        path: path.to_owned(),
        slot,
        active: r.get("Active", boolean, "b"),
        operator_identifier: r.get("OperatorIdentifier", string, "s"),
        operator_name: r.get("OperatorName", string, "s"),
        iccid: r.get("SimIdentifier", string, "s"),
        imsi: r.get("Imsi", string, "s"),
        eid: r.get("Eid", string, "s"),
    }
}

/// Reads typed properties of one interface, noting values of the wrong type.
struct Reader<'p, 'n> {
    props: &'p Props,
    path: &'n str,
    iface: &'n str,
    notes: &'n mut Vec<String>,
}

impl<'p, 'n> Reader<'p, 'n> {
    fn new(props: &'p Props, path: &'n str, iface: &'n str, notes: &'n mut Vec<String>) -> Self {
        Reader { props, path, iface, notes }
    }

    fn get<T>(
        &mut self,
        name: &str,
        convert: impl Fn(&'p Variant<'p>) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        let value: &'p Variant<'p> = self.props.get(name)?;
        let converted = convert(value);
        if converted.is_none() {
            self.notes.push(format!(
                "{}: {}.{name} has type {} where {expected} was expected; ignored",
                self.path,
                self.iface,
                value.value_signature()
            ));
        }
        converted
    }
}

/// Looks up `key` in a decoded `a{sv}` dictionary.
fn dict_get<'v, T>(
    dict: &[(&'v Variant<'v>, &'v Variant<'v>)],
    key: &str,
    convert: impl Fn(&'v Variant<'v>) -> Option<T>,
    path: &str,
    notes: &mut Vec<String>,
) -> Option<T> {
    let (_, value) = dict.iter().find(|(k, _)| string(k).as_deref() == Some(key))?;
    let converted = convert(value);
    if converted.is_none() {
        notes.push(format!(
            "{path}: dictionary key {key} has unexpected type {}; ignored",
            value.value_signature()
        ));
    }
    converted
}

/// Strips `v` (variant) wrappers.
fn inner<'v>(mut v: &'v Variant<'v>) -> &'v Variant<'v> {
    while let Variant::Variant(boxed) = v {
        v = boxed;
    }
    v
}

fn int(v: &Variant<'_>) -> Option<i64> {
    match inner(v) {
        Variant::U8(x) => Some(i64::from(*x)),
        Variant::I16(x) => Some(i64::from(*x)),
        Variant::U16(x) => Some(i64::from(*x)),
        Variant::I32(x) => Some(i64::from(*x)),
        Variant::U32(x) => Some(i64::from(*x)),
        Variant::I64(x) => Some(*x),
        Variant::U64(x) => i64::try_from(*x).ok(),
        _ => None,
    }
}

fn unsigned(v: &Variant<'_>) -> Option<u64> {
    match inner(v) {
        Variant::U64(x) => Some(*x),
        other => int(other).and_then(|x| u64::try_from(x).ok()),
    }
}

fn uint32(v: &Variant<'_>) -> Option<u32> {
    int(v).and_then(|x| u32::try_from(x).ok())
}

fn float(v: &Variant<'_>) -> Option<f64> {
    match inner(v) {
        Variant::F64(x) => Some(*x),
        // Integers are exact in f64 up to 2^53, far beyond any radio value.
        #[allow(clippy::cast_precision_loss)]
        other => int(other).map(|x| x as f64),
    }
}

fn boolean(v: &Variant<'_>) -> Option<bool> {
    match inner(v) {
        Variant::Bool(b) => Some(*b),
        _ => None,
    }
}

fn string(v: &Variant<'_>) -> Option<String> {
    match inner(v) {
        Variant::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn object_path(v: &Variant<'_>) -> Option<String> {
    match inner(v) {
        Variant::ObjectPath(p) => Some(p.as_str().to_owned()),
        Variant::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn list<'v, T>(v: &'v Variant<'v>, each: impl Fn(&'v Variant<'v>) -> Option<T>) -> Option<Vec<T>> {
    match inner(v) {
        Variant::Array(a) => a.inner().iter().map(each).collect(),
        _ => None,
    }
}

fn strings(v: &Variant<'_>) -> Option<Vec<String>> {
    list(v, string)
}

fn object_paths(v: &Variant<'_>) -> Option<Vec<String>> {
    list(v, object_path)
}

fn fields<'v>(v: &'v Variant<'v>) -> Option<&'v [Variant<'v>]> {
    match inner(v) {
        Variant::Structure(s) => Some(s.fields()),
        _ => None,
    }
}

fn entries_of<'v>(v: &'v Variant<'v>) -> Option<Vec<(&'v Variant<'v>, &'v Variant<'v>)>> {
    match inner(v) {
        Variant::Dict(d) => Some(d.iter().collect()),
        _ => None,
    }
}

fn signal_quality(v: &Variant<'_>) -> Option<(u32, bool)> {
    match fields(v)? {
        [percent, recent] => Some((uint32(percent)?, boolean(recent)?)),
        _ => None,
    }
}

fn string_pair(v: &Variant<'_>) -> Option<(String, String)> {
    match fields(v)? {
        [a, b] => Some((string(a)?, string(b)?)),
        _ => None,
    }
}

fn ports(v: &Variant<'_>) -> Option<Vec<(String, u32)>> {
    list(v, |p| match fields(p)? {
        [name, kind] => Some((string(name)?, uint32(kind)?)),
        _ => None,
    })
}

fn unlock_retries(v: &Variant<'_>) -> Option<Vec<(i64, u32)>> {
    entries_of(v)?.into_iter().map(|(k, n)| Some((int(k)?, uint32(n)?))).collect()
}

/// At most [`MAX_BEARERS_PER_MODEM`] of `paths`, the newest (highest index) ones, in the
/// daemon's order.
fn newest_bearers(paths: impl Iterator<Item = String>) -> Vec<String> {
    let mut paths: Vec<String> = paths.collect();
    if paths.len() > MAX_BEARERS_PER_MODEM {
        let index = |p: &String| {
            p.strip_prefix(BEARER_PATH_PREFIX).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
        };
        let mut indices: Vec<u64> = paths.iter().map(index).collect();
        indices.sort_unstable_by(|a, b| b.cmp(a));
        let cutoff = indices.get(MAX_BEARERS_PER_MODEM - 1).copied().unwrap_or(0);
        paths.retain(|p| index(p) >= cutoff);
        paths.truncate(MAX_BEARERS_PER_MODEM);
    }
    paths
}

fn non_root(path: String) -> Option<String> {
    (path != "/" && !path.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use zbus::{ObjectPath, Structure};

    use super::*;

    fn ov<'a>(v: impl Into<Variant<'a>>) -> OwnedVariant {
        OwnedVariant::try_from(v.into()).unwrap()
    }

    fn props(entries: Vec<(&str, OwnedVariant)>) -> Props {
        entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn modem_ifaces(modem: Props) -> HashMap<String, Props> {
        HashMap::from([(iface::MODEM.to_owned(), modem)])
    }

    #[test]
    fn modem_without_modem_interface_or_id_is_skipped() {
        let mut notes = Vec::new();
        assert!(modem("/m/1", &HashMap::new(), &mut notes).is_none());
        let ifaces = modem_ifaces(props(vec![("State", ov(8i32))]));
        assert!(modem("/m/2", &ifaces, &mut notes).is_none());
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn wrong_types_are_absent_with_a_note() {
        let mut notes = Vec::new();
        let ifaces = modem_ifaces(props(vec![
            ("DeviceIdentifier", ov("abc")),
            ("State", ov("eight")),
            ("PowerState", ov(3u32)),
            (
                "SignalQuality",
                ov(Structure::builder().add_field(70u32).add_field(true).build().unwrap()),
            ),
            ("Sim", ov(ObjectPath::try_from("/").unwrap())),
        ]));
        let m = modem("/m/3", &ifaces, &mut notes).unwrap();
        assert_eq!(m.device_id, "abc");
        assert_eq!(m.state, None);
        assert_eq!(m.power_state, Some(3));
        assert_eq!(m.signal_quality_percent, Some(70));
        assert_eq!(m.signal_quality_recent, Some(true));
        assert_eq!(m.sim_path, None);
        assert!(notes.iter().any(|n| n.contains("Modem.State has type s")), "{notes:?}");
    }

    #[test]
    fn signed_state_and_signal_values_decode() {
        let mut notes = Vec::new();
        let lte: BTreeMap<&str, Variant<'_>> = BTreeMap::from([
            ("rsrp", Variant::from(-95.5f64)),
            ("rsrq", Variant::from(-9.0f64)),
            ("bogus", Variant::from(1.0f64)),
            ("snr", Variant::from("12")),
        ]);
        let mut ifaces =
            modem_ifaces(props(vec![("DeviceIdentifier", ov("abc")), ("State", ov(-1i32))]));
        ifaces.insert(
            iface::SIGNAL.to_owned(),
            props(vec![
                ("Rate", ov(10u32)),
                ("Lte", ov(lte)),
                ("Nr5g", ov(BTreeMap::<&str, f64>::new())),
            ]),
        );
        let m = modem("/m/4", &ifaces, &mut notes).unwrap();
        assert_eq!(m.state, Some(-1));
        let sig = m.signal.unwrap();
        assert_eq!(sig.rate, Some(10));
        assert_eq!(sig.get("Lte", "rsrp"), Some(-95.5));
        assert_eq!(sig.get("Lte", "rsrq"), Some(-9.0));
        assert_eq!(sig.get("Lte", "snr"), None);
        assert_eq!(sig.values.len(), 2);
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn location_strings_parse() {
        let l = parse_3gpp("001,01,0,83F7CD,31C5").unwrap();
        assert_eq!((l.mcc.as_str(), l.mnc.as_str()), ("001", "01"));
        assert_eq!(l.lac, Some(0));
        assert_eq!(l.cell_id, Some(0x83F7CD));
        assert_eq!(l.tac, Some(0x31C5));
        let old = parse_3gpp("262,02,1A2B,FFFF").unwrap();
        assert_eq!(old.tac, None);
        assert!(parse_3gpp("").is_none());
        assert!(parse_3gpp("x,1,2,3").is_none());
    }

    #[test]
    fn bearer_stats_accept_u32_and_u64() {
        let mut notes = Vec::new();
        let stats: BTreeMap<&str, Variant<'_>> = BTreeMap::from([
            ("rx-bytes", Variant::from(123_456u64)),
            ("duration", Variant::from(30u32)),
            ("attempts", Variant::from("three")),
        ]);
        let settings: BTreeMap<&str, Variant<'_>> =
            BTreeMap::from([("apn", Variant::from("internet")), ("ip-type", Variant::from(1u32))]);
        let p = props(vec![
            ("Connected", ov(true)),
            ("Stats", ov(stats)),
            ("Properties", ov(settings)),
            (
                "ConnectionError",
                ov(Structure::builder().add_field("").add_field("").build().unwrap()),
            ),
        ]);
        let b = bearer("/b/0", &p, &mut notes);
        assert_eq!(b.apn, "internet");
        assert_eq!(b.ip_type, Some(1));
        assert_eq!(b.connected, Some(true));
        assert_eq!(b.stats.rx_bytes, Some(123_456));
        assert_eq!(b.stats.duration_seconds, Some(30));
        assert_eq!(b.stats.attempts, None);
        assert_eq!(b.stats.tx_bytes, None);
        assert_eq!(b.connection_error, None);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn bearers_beyond_the_cap_keep_the_newest() {
        let few: Vec<String> = (0..3u32).map(|i| format!("{BEARER_PATH_PREFIX}{i}")).collect();
        assert_eq!(newest_bearers(few.clone().into_iter()), few);
        let many = (0..20u32).rev().map(|i| format!("{BEARER_PATH_PREFIX}{i}"));
        let kept = newest_bearers(many);
        assert_eq!(kept.len(), MAX_BEARERS_PER_MODEM);
        assert!(kept.iter().all(|p| !p.ends_with("/Bearer/3") && !p.ends_with("/Bearer/0")));
        assert!(kept.contains(&format!("{BEARER_PATH_PREFIX}19")));
    }
}
