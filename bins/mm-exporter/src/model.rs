//! Plain typed data of one scrape, decoded from ModemManager's D-Bus properties.
//!
//! Every field the daemon may leave out (old versions, other technologies, a modem in the
//! failed state) is an `Option` or an empty list: `None` becomes an absent series, never 0.
//! [`crate::metrics`] renders these types without any D-Bus, so render tests build them by
//! hand.

/// Everything one scrape read from ModemManager.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The manager's `Version` property (e.g. "1.20.4").
    pub daemon_version: Option<String>,
    /// The modems selected by the target, ordered by object path index.
    pub modems: Vec<Modem>,
}

/// One modem (`/org/freedesktop/ModemManager1/Modem/N`) and the objects it points to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modem {
    /// The D-Bus object path; for debug notes only, never a label (the index changes on replug).
    pub path: String,
    /// `DeviceIdentifier`: the modem's label.
    pub device_id: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// Firmware revision.
    pub revision: Option<String>,
    pub hardware_revision: Option<String>,
    pub carrier_configuration: Option<String>,
    pub plugin: Option<String>,
    pub drivers: Option<Vec<String>>,
    pub primary_port: Option<String>,
    /// `(port name, MMModemPortType)`.
    pub ports: Option<Vec<(String, u32)>>,
    /// IMEI or ESN/MEID: personal data.
    pub equipment_identifier: Option<String>,
    /// MSISDNs: personal data.
    pub own_numbers: Option<Vec<String>>,
    /// `MMModemState`, signed (-1 = failed).
    pub state: Option<i64>,
    pub state_failed_reason: Option<i64>,
    pub power_state: Option<i64>,
    /// `MMModemAccessTechnology` bitmask.
    pub access_technologies: Option<u32>,
    /// Percent 0-100 as the daemon reports it.
    pub signal_quality_percent: Option<u32>,
    pub signal_quality_recent: Option<bool>,
    pub unlock_required: Option<i64>,
    /// `(MMModemLock, retries left)`.
    pub unlock_retries: Option<Vec<(i64, u32)>>,
    pub max_bearers: Option<u32>,
    pub max_active_bearers: Option<u32>,
    pub max_active_multiplexed_bearers: Option<u32>,
    /// The primary SIM's object path (`None` for `/`).
    pub sim_path: Option<String>,
    /// One entry per slot, `None` for an empty slot (1.16).
    pub sim_slots: Option<Vec<Option<String>>>,
    pub primary_sim_slot: Option<u32>,
    /// The bearers to read: the paths in `Bearers`, at most [`MAX_BEARERS_PER_MODEM`].
    pub bearer_paths: Vec<String>,
    /// How many bearers `Bearers` lists (`None` when the property is absent or malformed).
    pub bearers_listed: Option<usize>,
    /// The `Modem.Modem3gpp` interface, when the modem has it.
    pub modem3gpp: Option<Modem3gpp>,
    /// The `Modem.Signal` interface, when the modem has it.
    pub signal: Option<ExtendedSignal>,
    /// The `Modem.Location` interface, when the modem has it.
    pub location: Option<Location>,
    /// `len(Messaging.Messages)`, when the modem has the `Messaging` interface.
    pub stored_sms: Option<usize>,
    /// The `Modem.Time` interface's `NetworkTimezone`, when the modem has it.
    pub timezone: Option<NetworkTimezone>,
    /// Bearers read from the paths in `Bearers` (filled by a second step).
    pub bearers: Vec<Bearer>,
    /// SIMs read from `SimSlots` or `Sim` (filled by a second step).
    pub sims: Vec<Sim>,
    /// Outcome of the exporter's `Signal.Setup` call; `None` when none was needed or tried.
    pub signal_setup_success: Option<bool>,
}

/// `org.freedesktop.ModemManager1.Modem.Modem3gpp`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modem3gpp {
    /// Personal data.
    pub imei: Option<String>,
    pub registration_state: Option<i64>,
    /// "MCCMNC", empty when unregistered.
    pub operator_code: Option<String>,
    pub operator_name: Option<String>,
    /// 1.20; absent on older daemons.
    pub packet_service_state: Option<i64>,
}

/// `org.freedesktop.ModemManager1.Modem.Signal`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtendedSignal {
    /// Polling interval in seconds; 0 = not polling.
    pub rate: Option<u32>,
    /// Every value the daemon reported, in table order of [`SIGNAL_KEYS`].
    pub values: Vec<SignalValue>,
}

/// One extended-signal reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalValue {
    pub key: &'static SignalKey,
    /// In the daemon's unit: dBm, dB, or percent for error rates.
    pub value: f64,
}

/// What a signal dictionary key means.
#[derive(Debug, PartialEq, Eq)]
pub struct SignalKey {
    /// The D-Bus property, e.g. `Lte`.
    pub property: &'static str,
    /// The dictionary key, e.g. `rsrp`.
    pub key: &'static str,
    /// The metric name without namespace, e.g. `modem_signal_lte_rsrp_dbm`.
    pub metric: &'static str,
    /// Percent values are divided by 100 into a ratio.
    pub percent: bool,
    pub help: &'static str,
}

macro_rules! key {
    ($prop:literal, $key:literal, $metric:literal, $help:literal) => {
        SignalKey { property: $prop, key: $key, metric: $metric, percent: false, help: $help }
    };
    ($prop:literal, $key:literal, $metric:literal, $help:literal, percent) => {
        SignalKey { property: $prop, key: $key, metric: $metric, percent: true, help: $help }
    };
}

/// Every extended-signal key ModemManager (up to 1.26) reports, per technology.
pub static SIGNAL_KEYS: &[SignalKey] = &[
    key!("Gsm", "rssi", "modem_signal_gsm_rssi_dbm", "GSM RSSI in dBm (Signal.Gsm rssi)."),
    key!(
        "Gsm",
        "error-rate",
        "modem_signal_gsm_error_rate_ratio",
        "GSM bit error rate as a ratio (Signal.Gsm error-rate, reported in percent).",
        percent
    ),
    key!("Umts", "rssi", "modem_signal_umts_rssi_dbm", "UMTS RSSI in dBm (Signal.Umts rssi)."),
    key!("Umts", "rscp", "modem_signal_umts_rscp_dbm", "UMTS RSCP in dBm (Signal.Umts rscp)."),
    key!("Umts", "ecio", "modem_signal_umts_ecio_db", "UMTS Ec/Io in dB (Signal.Umts ecio)."),
    key!(
        "Umts",
        "error-rate",
        "modem_signal_umts_error_rate_ratio",
        "UMTS block error rate as a ratio (Signal.Umts error-rate, reported in percent).",
        percent
    ),
    key!("Lte", "rssi", "modem_signal_lte_rssi_dbm", "LTE RSSI in dBm (Signal.Lte rssi)."),
    key!("Lte", "rsrq", "modem_signal_lte_rsrq_db", "LTE RSRQ in dB (Signal.Lte rsrq)."),
    key!("Lte", "rsrp", "modem_signal_lte_rsrp_dbm", "LTE RSRP in dBm (Signal.Lte rsrp)."),
    key!(
        "Lte",
        "snr",
        "modem_signal_lte_snr_db",
        "LTE signal-to-noise ratio in dB (Signal.Lte snr)."
    ),
    key!(
        "Lte",
        "error-rate",
        "modem_signal_lte_error_rate_ratio",
        "LTE block error rate as a ratio (Signal.Lte error-rate, reported in percent).",
        percent
    ),
    key!("Nr5g", "rsrq", "modem_signal_nr5g_rsrq_db", "5G NR RSRQ in dB (Signal.Nr5g rsrq)."),
    key!("Nr5g", "rsrp", "modem_signal_nr5g_rsrp_dbm", "5G NR RSRP in dBm (Signal.Nr5g rsrp)."),
    key!(
        "Nr5g",
        "snr",
        "modem_signal_nr5g_snr_db",
        "5G NR signal-to-noise ratio in dB (Signal.Nr5g snr)."
    ),
    key!(
        "Nr5g",
        "error-rate",
        "modem_signal_nr5g_error_rate_ratio",
        "5G NR block error rate as a ratio (Signal.Nr5g error-rate, reported in percent).",
        percent
    ),
    key!("Cdma", "rssi", "modem_signal_cdma_rssi_dbm", "CDMA1x RSSI in dBm (Signal.Cdma rssi)."),
    key!("Cdma", "ecio", "modem_signal_cdma_ecio_db", "CDMA1x Ec/Io in dB (Signal.Cdma ecio)."),
    key!(
        "Cdma",
        "error-rate",
        "modem_signal_cdma_error_rate_ratio",
        "CDMA1x frame error rate as a ratio (Signal.Cdma error-rate, reported in percent).",
        percent
    ),
    key!("Evdo", "rssi", "modem_signal_evdo_rssi_dbm", "EV-DO RSSI in dBm (Signal.Evdo rssi)."),
    key!("Evdo", "ecio", "modem_signal_evdo_ecio_db", "EV-DO Ec/Io in dB (Signal.Evdo ecio)."),
    key!("Evdo", "sinr", "modem_signal_evdo_sinr_db", "EV-DO SINR in dB (Signal.Evdo sinr)."),
    key!("Evdo", "io", "modem_signal_evdo_io_dbm", "EV-DO Io in dBm (Signal.Evdo io)."),
    key!(
        "Evdo",
        "error-rate",
        "modem_signal_evdo_error_rate_ratio",
        "EV-DO packet error rate as a ratio (Signal.Evdo error-rate, reported in percent).",
        percent
    ),
];

/// The `Modem.Location` interface.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    /// `MMModemLocationSource` mask of the enabled sources.
    pub enabled: Option<u32>,
    /// The 3GPP LAC/CI source (from the `Location` property or `GetLocation`).
    pub cell: Option<Location3gpp>,
    /// The GPS raw source: personal data.
    pub gps: Option<Gps>,
}

/// The 3GPP location source: "MCC,MNC,LAC,CI,TAC" (LAC, CI, TAC in hex).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location3gpp {
    /// Kept as text: "001" and "01" differ.
    pub mcc: String,
    pub mnc: String,
    pub lac: Option<u64>,
    pub cell_id: Option<u64>,
    pub tac: Option<u64>,
}

/// The GPS raw location source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gps {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub altitude: Option<f64>,
}

/// `Modem.Time.NetworkTimezone`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkTimezone {
    /// Minutes from UTC, DST included.
    pub offset_minutes: Option<i64>,
    pub dst_offset_minutes: Option<i64>,
}

/// Bearers exported per modem at most; a modem listing more gets the newest (highest object
/// path index) ones, so a series explosion from a daemon that never deletes bearers cannot
/// happen. Real modems hold a handful (`Modem.MaxBearers`).
pub const MAX_BEARERS_PER_MODEM: usize = 16;

/// One bearer (`/org/freedesktop/ModemManager1/Bearer/N`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bearer {
    /// The object path; its index N is the `bearer` label ([`Bearer::label`]).
    pub path: String,
    /// From `Properties["apn"]`; "" when the bearer was created without one.
    pub apn: String,
    /// `MMBearerIpFamily` from `Properties["ip-type"]`.
    pub ip_type: Option<i64>,
    /// Data interface, "" when not connected.
    pub interface: Option<String>,
    pub connected: Option<bool>,
    pub suspended: Option<bool>,
    pub bearer_type: Option<i64>,
    pub ip4_method: Option<i64>,
    pub ip6_method: Option<i64>,
    /// `(D-Bus error name, message)` of the last failure; `None` when empty.
    pub connection_error: Option<String>,
    pub stats: BearerStats,
}

/// `Bearer.Stats` (keys from 1.6 to 1.20).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BearerStats {
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub duration_seconds: Option<u64>,
    pub start_date: Option<u64>,
    pub attempts: Option<u64>,
    pub failed_attempts: Option<u64>,
    pub total_rx_bytes: Option<u64>,
    pub total_tx_bytes: Option<u64>,
    pub total_duration_seconds: Option<u64>,
    /// bit/s.
    pub uplink_speed: Option<u64>,
    /// bit/s.
    pub downlink_speed: Option<u64>,
}

/// One SIM (`/org/freedesktop/ModemManager1/SIM/N`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sim {
    pub path: String,
    /// 1-based slot from `SimSlots`; 0 when the modem has no multi-slot support.
    pub slot: u32,
    pub active: Option<bool>,
    pub operator_identifier: Option<String>,
    pub operator_name: Option<String>,
    /// ICCID: personal data.
    pub iccid: Option<String>,
    /// Personal data.
    pub imsi: Option<String>,
    /// Personal data.
    pub eid: Option<String>,
}

impl ExtendedSignal {
    /// The value of `property`/`key`, if reported.
    pub fn get(&self, property: &str, key: &str) -> Option<f64> {
        self.values.iter().find(|v| v.key.property == property && v.key.key == key).map(|v| v.value)
    }
}

impl Bearer {
    /// The `bearer` label: N of `/org/freedesktop/ModemManager1/Bearer/N`, which ModemManager
    /// never reuses while it runs, so each bearer object (two on one APN and IP type, or a
    /// bearer and its replacement during a reconnect) has its own series. Any other path is
    /// used whole.
    pub fn label(&self) -> &str {
        self.path.strip_prefix(BEARER_PATH_PREFIX).filter(|n| !n.is_empty()).unwrap_or(&self.path)
    }
}

/// The object path of bearer N, without N.
pub const BEARER_PATH_PREFIX: &str = "/org/freedesktop/ModemManager1/Bearer/";

impl Modem {
    /// A modem with nothing but its path and device id (for tests and decoding).
    pub fn new(path: impl Into<String>, device_id: impl Into<String>) -> Modem {
        Modem { path: path.into(), device_id: device_id.into(), ..Modem::default() }
    }
}
