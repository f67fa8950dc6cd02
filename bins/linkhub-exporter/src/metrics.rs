//! Pure render functions: decoded device answers -> samples in a [`Scrape`].
//!
//! Nothing here talks to the device. A value the device did not give (missing, an invalid
//! marker, a code that means "none") is an absent series; a real 0 is written as 0.
//! Enumerations are one series per state (`state` label, 0/1) plus the raw code.
//! docs/metrics/linkhub.md lists every metric; keep it in sync with this file.

use exporter_core::Scrape;

use crate::{
    api::{
        Battery, ConnectedDevice, ConnectedDeviceList, ConnectionState, NetworkInfo, SimStatus,
        SmsStorageState, SystemInfo, SystemStatus, UsageRecord,
    },
    client::{FailureReason, LoginReport, LoginStatus},
};

/// `GetSystemInfo` -> `linkhub_device_info`.
pub fn system_info(out: &mut Scrape, it: &SystemInfo, expose_identifiers: bool) {
    if it.device_name.get().is_none()
        && it.sw_version.get().is_none()
        && it.hw_version.get().is_none()
    {
        // An empty result while the modem boots: no labels to show.
        return;
    }
    let mut labels = vec![
        ("model", it.device_name.label()),
        ("hardware_version", it.hw_version.label()),
        ("software_version", it.sw_version.label()),
        ("web_ui_version", it.web_ui_version.label()),
        ("http_api_version", it.http_api_version.label()),
    ];
    if expose_identifiers {
        labels.extend([
            ("imei", it.imei.label()),
            ("imsi", it.imsi.label()),
            ("iccid", it.iccid.label()),
            ("mac_address", it.mac_address.label()),
        ]);
    }
    out.info(
        "device_info",
        "Model and firmware of the router (GetSystemInfo: DeviceName, HwVersion, SwVersion, \
         WebUiVersion, HttpApiVersion; IMEI, IMSI, ICCID, MacAddress only with --expose-identifiers). \
         Cached: read once per --static-ttl, and again when the router restarts.",
        &labels,
    );
}

/// How old the cached `GetSystemInfo` facts are.
pub fn static_age(out: &mut Scrape, seconds: f64) {
    out.gauge(
        "static_age_seconds",
        "Seconds since GetSystemInfo was last read: linkhub_device_info is a cached value this \
         old (--static-ttl).",
    )
    .sample(&[], seconds);
}

/// `GetSystemStatus`: network type, signal bars, roaming, connection, clients.
pub fn system_status(out: &mut Scrape, it: &SystemStatus) {
    network_type(out, it.network_type.code());
    out.gauge(
        "signal_bars",
        "Signal strength in bars, 0-4 (GetSystemStatus.SignalStrength; -1 = no service is absent).",
    )
    .sample_opt(&[], it.signal_strength.get().filter(|v| *v >= 0.0));
    // The firmware's Roaming is inverted: 0 = roaming, 1 = home network.
    let roaming = match it.roaming.code() {
        Some(0) => Some(1.0),
        Some(1) => Some(0.0),
        _ => None,
    };
    out.gauge(
        "roaming",
        "1 when roaming, 0 on the home network (GetSystemStatus.Roaming, which the device \
         reports inverted: 0 = roaming, 1 = home).",
    )
    .sample_opt(&[], roaming);
    out.gauge(
        "domestic_roaming_code",
        "Raw GetSystemStatus.Domestic_Roaming code (meaning differs between firmwares).",
    )
    .sample_opt(&[], it.domestic_roaming.get());
    connection_state(out, it.connection_status.code());
    profile_error(out, it.conprofile_error.code());
    if let Some(code) = it.wlan_state.code() {
        out.gauge("wlan_state_code", "Raw GetSystemStatus.WlanState (0 off, 1 on, 2 WPS).")
            .sample(&[], code as f64);
        out.state_set(
            "wlan_state",
            "Wi-Fi state, one series per state (GetSystemStatus.WlanState).",
            &[],
            &["off", "on", "wps"],
            enum_label(code, &[(0, "off"), (1, "on"), (2, "wps")]),
        );
    }
    out.gauge(
        "connected_clients",
        "Clients connected to the router, Wi-Fi and LAN (GetSystemStatus.TotalConnNum).",
    )
    .sample_opt(&[], it.total_conn_num.count());
    out.gauge(
        "wifi_clients",
        "Wi-Fi clients by band (GetSystemStatus.curr_num_2g, curr_num_5g; band=\"all\" from \
         curr_num on models without per-band counts).",
    )
    .sample_opt(&[("band", "2.4ghz")], it.curr_num_2g.count())
    .sample_opt(&[("band", "5ghz")], it.curr_num_5g.count())
    .sample_opt(&[("band", "all")], it.curr_num.count());
    out.gauge("uptime_seconds", "Time since the router booted (GetSystemStatus.DeviceUptime, s).")
        .sample_opt(&[], it.device_uptime.count());
    if let Some(code) = it.sms_state.code() {
        out.gauge(
            "sms_state_code",
            "Raw GetSystemStatus.SmsState (0 no SMS, 1 storage full, 2 normal, 3 new SMS).",
        )
        .sample(&[], code as f64);
        out.state_set(
            "sms_state",
            "SMS indicator of the status bar, one series per state (GetSystemStatus.SmsState; \
             full = the SMS store is full and new messages are not received).",
            &[],
            &SMS_STATES.map(|(_, s)| s),
            enum_label(code, &SMS_STATES),
        );
    }
    if let Some(name) = it.network_name.get() {
        out.info(
            "operator_info",
            "Name of the mobile network in use (GetSystemStatus.NetworkName).",
            &[("name", name)],
        );
    }
}

/// `GetNetworkInfo`: radio values and the serving cell.
pub fn network(out: &mut Scrape, it: &NetworkInfo) {
    out.gauge("rsrp_dbm", "LTE reference signal received power (GetNetworkInfo.RSRP, dBm).")
        .sample_opt(&[], it.rsrp.power_dbm());
    out.gauge("rsrq_db", "LTE reference signal received quality (GetNetworkInfo.RSRQ, dB).")
        .sample_opt(&[], it.rsrq.get());
    out.gauge("sinr_db", "Signal to interference plus noise ratio (GetNetworkInfo.SINR, dB).")
        .sample_opt(&[], it.sinr.get());
    out.gauge(
        "rssi_dbm",
        "Received signal strength indicator (GetNetworkInfo.RSSI, dBm; the Python exporter called it dB).",
    )
    .sample_opt(&[], it.rssi.power_dbm());
    if is_3g(it.network_type.code()) {
        out.gauge("rscp_dbm", "3G received signal code power (GetNetworkInfo.RSCP, dBm; 3G only).")
            .sample_opt(&[], it.rscp.power_dbm());
        out.gauge("ecio_db", "3G Ec/Io (GetNetworkInfo.EcIo, dB; 3G only).")
            .sample_opt(&[], it.ecio.get());
    }
    out.gauge(
        "downlink_channel",
        "Downlink channel number, EARFCN on LTE (GetNetworkInfo.DL_channel; absent when the \
         firmware says \"reserved\").",
    )
    .sample_opt(&[], it.dl_channel.count());
    let Some(cell) = it.serving_cell() else { return };
    out.gauge(
        "serving_cell_id",
        "Serving cell identity (E-UTRAN cell id on LTE: eNB id * 256 + sector) from \
         GetNetworkInfo.CellId; changes() counts hand-overs.",
    )
    .sample(&[], cell);
    let cell_id = format!("{cell}");
    let enb = it.enb().map(|v| v.to_string()).unwrap_or_default();
    let band = it.band().map(|v| v.to_string()).unwrap_or_default();
    out.info(
        "cell_info",
        "The serving cell (GetNetworkInfo: CellId, eNBID, PLMN, Band, NetworkType).",
        &[
            ("cell_id", &cell_id),
            ("enb_id", &enb),
            ("plmn", it.plmn().unwrap_or("")),
            ("band", &band),
            ("network_type", network_type_name(it.network_type.code())),
        ],
    );
}

/// `GetConnectionState`: the mobile data session.
///
/// The connection state and profile error come from `GetSystemStatus` only (token-free
/// everywhere), so one scrape never holds two readings of them.
pub fn connection(out: &mut Scrape, it: &ConnectionState, expose_identifiers: bool) {
    out.gauge(
        "connection_uptime_seconds",
        "Duration of the current mobile data connection (GetConnectionState.ConnectionTime, s).",
    )
    .sample_opt(&[], it.connection_time.count());
    out.counter(
        "connection_download_bytes_total",
        "Bytes received in the current connection; restarts at 0 on reconnect \
         (GetConnectionState.DlBytes, bytes).",
    )
    .sample_opt(&[], it.dl_bytes.count());
    out.counter(
        "connection_upload_bytes_total",
        "Bytes sent in the current connection; restarts at 0 on reconnect \
         (GetConnectionState.UlBytes, bytes).",
    )
    .sample_opt(&[], it.ul_bytes.count());
    out.gauge(
        "connection_download_bytes_per_second",
        "Current download throughput (GetConnectionState.Speed_Dl, taken as bytes/s; the unit \
         is not documented by the vendor).",
    )
    .sample_opt(&[], it.speed_dl.count());
    out.gauge(
        "connection_upload_bytes_per_second",
        "Current upload throughput (GetConnectionState.Speed_Ul, taken as bytes/s; the unit is \
         not documented by the vendor).",
    )
    .sample_opt(&[], it.speed_ul.count());
    out.gauge(
        "connection_max_download_bytes_per_second",
        "Maximum download rate of the link (GetConnectionState.DlRate, reported in bit/s, \
         divided by 8).",
    )
    .sample_opt(&[], it.dl_rate.count().map(|v| v / 8.0));
    out.gauge(
        "connection_max_upload_bytes_per_second",
        "Maximum upload rate of the link (GetConnectionState.UlRate, reported in bit/s, \
         divided by 8).",
    )
    .sample_opt(&[], it.ul_rate.count().map(|v| v / 8.0));
    if expose_identifiers {
        let v6 = it.ipv6_address.get().filter(|a| !is_unspecified_v6(a)).unwrap_or("");
        let v4 = it.ipv4_address.get().filter(|a| *a != "0.0.0.0").unwrap_or("");
        if !v4.is_empty() || !v6.is_empty() {
            out.info(
                "connection_info",
                "Addresses of the mobile data connection (GetConnectionState.IPv4Adrress, \
                 IPv6Adrress; only with --expose-identifiers).",
                &[("ipv4_address", v4), ("ipv6_address", v6)],
            );
        }
    }
}

/// `GetUsageRecord`: this billing period's volumes (gauges: they reset on the billing day).
pub fn usage(out: &mut Scrape, it: &UsageRecord) {
    out.gauge(
        "usage_monthly_download_bytes",
        "Bytes downloaded this billing period (GetUsageRecord.HCurrUseDL home, RCurrUseDL \
         roaming; bytes; resets on the billing day).",
    )
    .sample_opt(&[("network", "home")], it.home_dl.count())
    .sample_opt(&[("network", "roaming")], it.roam_dl.count());
    out.gauge(
        "usage_monthly_upload_bytes",
        "Bytes uploaded this billing period (GetUsageRecord.HCurrUseUL home, RCurrUseUL \
         roaming; bytes; resets on the billing day).",
    )
    .sample_opt(&[("network", "home")], it.home_ul.count())
    .sample_opt(&[("network", "roaming")], it.roam_ul.count());
    out.gauge(
        "usage_monthly_bytes",
        "Bytes transferred this billing period, both directions (GetUsageRecord.HUseData home, \
         RoamUseData roaming; bytes; resets on the billing day).",
    )
    .sample_opt(&[("network", "home")], it.home_total.count())
    .sample_opt(&[("network", "roaming")], it.roam_total.count());
    out.gauge(
        "usage_monthly_connected_seconds",
        "Time connected this billing period (GetUsageRecord.TConnTimes, s).",
    )
    .sample_opt(&[], it.t_conn_times.count());
    out.gauge(
        "usage_current_connection_seconds",
        "Duration of the current connection as the usage statistics count it \
         (GetUsageRecord.CurrConnTimes, s).",
    )
    .sample_opt(&[], it.curr_conn_times.count());
    out.gauge(
        "usage_monthly_limit_bytes",
        "Monthly data plan configured on the router (GetUsageRecord.MonthlyPlan, bytes; absent \
         when 0 = no plan).",
    )
    .sample_opt(&[], it.monthly_plan.count().filter(|v| *v > 0.0));
}

/// `GetSimStatus`: SIM and PIN state.
pub fn sim(out: &mut Scrape, it: &SimStatus) {
    if let Some(code) = it.sim_state.code() {
        out.gauge("sim_state_code", "Raw GetSimStatus.SIMState code.").sample(&[], code as f64);
        out.state_set(
            "sim_state",
            "SIM card state, one series per state (GetSimStatus.SIMState; a ready SIM is \
             cached for --static-ttl, other states are read on every scrape).",
            &[],
            &SIM_STATES.map(|(_, s)| s),
            enum_label(code, &SIM_STATES),
        );
    }
    if let Some(code) = it.pin_state.code() {
        out.gauge("sim_pin_state_code", "Raw GetSimStatus.PinState code.").sample(&[], code as f64);
        out.state_set(
            "sim_pin_state",
            "SIM PIN state, one series per state (GetSimStatus.PinState).",
            &[],
            &PIN_STATES.map(|(_, s)| s),
            enum_label(code, &PIN_STATES),
        );
    }
    out.gauge(
        "sim_pin_remaining_attempts",
        "PIN attempts left before the SIM asks for the PUK (GetSimStatus.PinRemainingTimes).",
    )
    .sample_opt(&[], it.pin_remaining.count());
    out.gauge(
        "sim_puk_remaining_attempts",
        "PUK attempts left before the SIM is blocked (GetSimStatus.PukRemainingTimes).",
    )
    .sample_opt(&[], it.puk_remaining.count());
    out.gauge(
        "sim_lock_state_code",
        "Raw GetSimStatus.SIMLockState code (-1 = no SIM lock, 0 NCK, 1 NSCK, 2 SPCK, 3 CCK, 4 PCK).",
    )
    .sample_opt(&[], it.sim_lock_state.get());
}

/// `GetSMSStorageState`: the SMS store (counts of messages, never their content).
pub fn sms(out: &mut Scrape, it: &SmsStorageState) {
    out.gauge(
        "sms_messages",
        "SMS messages stored (GetSMSStorageState.TUseCount; the store is read again when \
         GetSystemStatus.SmsState changes, at the latest after --static-ttl).",
    )
    .sample_opt(&[], it.used_count.count());
    out.gauge("sms_unread_messages", "Unread SMS messages (GetSMSStorageState.UnreadSMSCount).")
        .sample_opt(&[], it.unread_count.count());
    out.gauge(
        "sms_storage_capacity_messages",
        "SMS messages the store holds at most (GetSMSStorageState.MaxCount).",
    )
    .sample_opt(&[], it.max_count.count().filter(|m| *m > 0.0));
    out.gauge(
        "sms_storage_free_messages",
        "SMS messages that still fit in the store (GetSMSStorageState.LeftCount).",
    )
    .sample_opt(&[], it.left_count.count());
    out.gauge(
        "sms_storage_full",
        "1 when the SMS store is full (GetSMSStorageState: LeftCount 0, or TUseCount at \
         MaxCount); a full store makes some routers stop receiving SMS.",
    )
    .sample_opt(&[], it.full().map(|f| if f { 1.0 } else { 0.0 }));
    out.gauge(
        "sms_unread_delivery_report",
        "1 when a delivery report is unread (GetSMSStorageState.UnreadReport).",
    )
    .sample_opt(&[], it.unread_report.code().filter(|c| *c == 0 || *c == 1).map(|c| c as f64));
}

/// How many connected clients get series of their own (`--expose-identifiers`,
/// `--connected-devices-max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSelection {
    /// Per-client series at all (they carry MAC and IP addresses).
    pub expose_identifiers: bool,
    /// Most clients with series of their own.
    pub max: usize,
}

/// The default of `--connected-devices-max`.
pub const DEFAULT_CONNECTED_DEVICES_MAX: usize = 256;

/// The connection labels, in the order of the metric.
pub const CONNECTIONS: [&str; 4] = ["usb", "wifi", "wifi_guest", "other"];

/// The `connection` label of a client: `ConnectMode` 0 USB (cable), 1 Wi-Fi; guests from
/// `ConnectedGuestList`.
fn connection_of(d: &ConnectedDevice, guest: bool) -> &'static str {
    if guest {
        return "wifi_guest";
    }
    match d.connect_mode.code() {
        Some(0) => "usb",
        Some(1) => "wifi",
        _ => "other",
    }
}

/// The clients that get series of their own, and how many the cap left out: one per MAC
/// address (entries without one get none), the longest connected first when there are more
/// than `max`, shown in the device's order.
pub fn select_clients(
    list: &ConnectedDeviceList,
    max: usize,
) -> (Vec<(&ConnectedDevice, &'static str)>, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let all = list
        .connected
        .iter()
        .flatten()
        .map(|d| (d, false))
        .chain(list.guests.iter().flatten().map(|d| (d, true)));
    let mut candidates: Vec<(usize, &ConnectedDevice, &'static str)> = Vec::new();
    for (d, guest) in all {
        let Some(mac) = d.mac_address.get() else { continue };
        if seen.insert(mac.to_ascii_lowercase()) {
            candidates.push((candidates.len(), d, connection_of(d, guest)));
        }
    }
    let total = candidates.len();
    if total > max {
        candidates.sort_by(|(ia, a, _), (ib, b, _)| {
            let t = |d: &ConnectedDevice| d.association_time.count().unwrap_or(-1.0);
            t(b).total_cmp(&t(a)).then(ia.cmp(ib))
        });
        candidates.truncate(max);
        candidates.sort_by_key(|(i, _, _)| *i);
    }
    let kept = candidates.len();
    (candidates.into_iter().map(|(_, d, c)| (d, c)).collect(), total - kept)
}

/// `GetConnectedDeviceList`: clients by connection type, and per client with
/// `--expose-identifiers`.
pub fn connected_devices(out: &mut Scrape, list: &ConnectedDeviceList, sel: ClientSelection) {
    let mut counts = [None::<f64>; 4];
    if let Some(connected) = &list.connected {
        for (i, kind) in CONNECTIONS.iter().enumerate() {
            if *kind != "wifi_guest" {
                let n = connected.iter().filter(|d| connection_of(d, false) == *kind).count();
                counts[i] = Some(n as f64);
            }
        }
    }
    if let Some(guests) = &list.guests {
        counts[2] = Some(guests.len() as f64);
    }
    let mut family = out.gauge(
        "connected_devices",
        "Clients connected to the router by connection type (GetConnectedDeviceList: \
         ConnectMode 0 = usb, 1 = wifi, others = other; ConnectedGuestList = wifi_guest).",
    );
    for (kind, n) in CONNECTIONS.iter().zip(counts) {
        family.sample_opt(&[("connection", kind)], n);
    }
    if !sel.expose_identifiers {
        return;
    }
    let (kept, dropped) = select_clients(list, sel.max);
    out.gauge(
        "connected_devices_dropped",
        "Clients left without series of their own because of --connected-devices-max (the \
         longest connected are kept).",
    )
    .sample(&[], dropped as f64);
    for (d, connection) in &kept {
        let mac = d.mac_address.label();
        out.info(
            "connected_device_info",
            "A connected client (GetConnectedDeviceList: MacAddress, IPAddress, DeviceName, \
             ConnectMode; only with --expose-identifiers, at most --connected-devices-max).",
            &[
                ("mac_address", mac),
                ("ip_address", d.ip_address.label()),
                ("name", d.name.label()),
                ("connection", connection),
            ],
        );
        out.gauge(
            "connected_device_connected_seconds",
            "Time since the client associated (GetConnectedDeviceList.AssociationTime, s; only \
             with --expose-identifiers).",
        )
        .sample_opt(&[("mac_address", mac)], d.association_time.count());
    }
}

/// The battery of a MiFi (`GetBatteryState` or `GetSystemStatus` battery fields).
pub fn battery(out: &mut Scrape, it: &Battery) {
    out.gauge(
        "battery_charge_ratio",
        "Battery charge, 0-1 (GetBatteryState.BatteryLevel or GetSystemStatus.bat_cap, \
         reported in percent).",
    )
    .sample_opt(&[], it.percent.filter(|p| *p <= 100.0).map(|p| p / 100.0));
    out.gauge("battery_bars", "Battery level in bars, 0-4 (GetSystemStatus.bat_level).")
        .sample_opt(&[], it.bars);
    if let Some(code) = it.charge_state {
        out.gauge("battery_charge_state_code", "Raw chg_state code of the battery.")
            .sample(&[], code as f64);
        out.state_set(
            "battery_charge_state",
            "Battery charging state, one series per state (chg_state).",
            &[],
            &CHARGE_STATES.map(|(_, s)| s),
            enum_label(code, &CHARGE_STATES),
        );
    }
}

const LOGIN_STATE_HELP: &str = "The exporter's login session on the router, one series per \
     state (exporter state, kept between scrapes; no_credentials = no password is configured \
     for this address, so only what needs no login is read).";

/// A target without a password: `linkhub_login_state{state="no_credentials"} 1`.
pub fn no_credentials(out: &mut Scrape) {
    out.state_set(
        "login_state",
        LOGIN_STATE_HELP,
        &[],
        &LoginStatus::ALL.map(LoginStatus::label),
        LoginStatus::NoCredentials.label(),
    );
}

/// The exporter's login bookkeeping for this target (only with a password configured).
pub fn login(out: &mut Scrape, it: &LoginReport) {
    out.state_set(
        "login_state",
        LOGIN_STATE_HELP,
        &[],
        &LoginStatus::ALL.map(LoginStatus::label),
        it.status.label(),
    );
    out.counter(
        "login_attempts_total",
        "Login requests the exporter sent to this router since it started.",
    )
    .sample(&[], it.attempts as f64);
    let mut failures = out.counter(
        "login_failures_total",
        "Logins that failed or were not tried since the exporter started, by reason \
         (wrong_password = 010101, other_session = 010102 or another admin logged in, \
         locked = 010103 or login locked, error = other Login errors).",
    );
    for (reason, n) in FailureReason::ALL.iter().zip(it.failures) {
        failures.sample(&[("reason", reason.label())], n as f64);
    }
    out.gauge(
        "login_backoff_seconds",
        "Time until the exporter may try to log in again after a rejected login \
         (--login-backoff); 0 when a login may be tried now.",
    )
    .sample(&[], it.backoff_remaining.ceil());
}

/// A method skipped because it needs a login and no password is configured.
pub fn login_required(out: &mut Scrape, method: &str) {
    out.gauge(
        "login_required",
        "1 for each device method that was skipped because it needs a login and no \
         --password-file is configured.",
    )
    .sample(&[("method", method)], 1.0);
}

const NETWORK_GENERATIONS: [&str; 7] = ["none", "2g", "3g", "3g+", "4g", "4g+", "5g"];

const SIM_STATES: [(i64, &str); 9] = [
    (0, "absent"),
    (1, "card_error"),
    (2, "pin_required"),
    (3, "puk_required"),
    (4, "simlock_required"),
    (5, "puk_blocked"),
    (6, "invalid"),
    (7, "ready"),
    (11, "initializing"),
];

const PIN_STATES: [(i64, &str); 6] = [
    (0, "unknown"),
    (1, "enabled_not_verified"),
    (2, "enabled_verified"),
    (3, "disabled"),
    (4, "puk_required"),
    (5, "blocked"),
];

const CHARGE_STATES: [(i64, &str); 5] =
    [(0, "charging"), (1, "full"), (2, "not_charging"), (3, "error"), (4, "power_bank")];

const SMS_STATES: [(i64, &str); 4] = [(0, "none"), (1, "full"), (2, "normal"), (3, "new")];

const CONNECTION_STATES: [(i64, &str); 4] =
    [(0, "disconnected"), (1, "connecting"), (2, "connected"), (3, "disconnecting")];

const PROFILE_ERRORS: [(i64, &str); 3] = [(0, "none"), (1, "apn"), (2, "pdp")];

fn enum_label(code: i64, table: &[(i64, &'static str)]) -> &'static str {
    table.iter().find(|(c, _)| *c == code).map(|(_, s)| *s).unwrap_or("unknown")
}

fn network_type(out: &mut Scrape, code: Option<i64>) {
    let Some(code) = code else { return };
    out.gauge(
        "network_type_code",
        "Raw radio access technology code (GetSystemStatus.NetworkType: 0 no service, 1-2, 11 \
         2G, 3-5, 10, 12, 15 3G, 6-7 3G+, 8, 13, 14 LTE, 9 LTE-A, 16 5G).",
    )
    .sample(&[], code as f64);
    out.state_set(
        "network_generation",
        "Mobile network generation in use, one series per state (from GetSystemStatus.NetworkType).",
        &[],
        &NETWORK_GENERATIONS,
        generation(code),
    );
}

fn connection_state(out: &mut Scrape, code: Option<i64>) {
    let Some(code) = code else { return };
    out.gauge(
        "connection_state_code",
        "Raw mobile data connection code (GetSystemStatus.ConnectionStatus: 0 disconnected, \
         1 connecting, 2 connected, 3 disconnecting).",
    )
    .sample(&[], code as f64);
    out.state_set(
        "connection_state",
        "Mobile data connection state, one series per state (GetSystemStatus.ConnectionStatus).",
        &[],
        &CONNECTION_STATES.map(|(_, s)| s),
        enum_label(code, &CONNECTION_STATES),
    );
}

fn profile_error(out: &mut Scrape, code: Option<i64>) {
    let Some(code) = code else { return };
    out.gauge(
        "connection_profile_error_code",
        "Raw connection profile error code (GetSystemStatus.Conprofileerror: 0 none, 1 APN, 2 PDP).",
    )
    .sample(&[], code as f64);
    out.state_set(
        "connection_profile_error",
        "Connection profile error, one series per state (GetSystemStatus.Conprofileerror).",
        &[],
        &PROFILE_ERRORS.map(|(_, s)| s),
        enum_label(code, &PROFILE_ERRORS),
    );
}

/// The generation of a LinkHub/MiFi `NetworkType` code (spec §5.1, first table).
pub fn generation(code: i64) -> &'static str {
    match code {
        0 => "none",
        1 | 2 | 11 => "2g",
        3 | 4 | 5 | 10 | 12 | 15 => "3g",
        6 | 7 => "3g+",
        8 | 13 | 14 => "4g",
        9 => "4g+",
        16 => "5g",
        _ => "unknown",
    }
}

/// The TCL name of a `NetworkType` code, for `cell_info`.
pub fn network_type_name(code: Option<i64>) -> &'static str {
    match code {
        Some(0) => "no_service",
        Some(1) => "gprs",
        Some(2) => "edge",
        Some(3) => "hspa",
        Some(4) => "hsupa",
        Some(5) => "umts",
        Some(6) => "hspa+",
        Some(7) => "dc-hspa+",
        Some(8) => "lte",
        Some(9) => "lte-a",
        Some(10) => "cdma",
        Some(11) => "gsm",
        Some(12) => "evdo",
        Some(13) => "lte-fdd",
        Some(14) => "lte-tdd",
        Some(15) => "ehrpd",
        Some(16) => "5g",
        _ => "unknown",
    }
}

fn is_3g(code: Option<i64>) -> bool {
    code.is_some_and(|c| matches!(generation(c), "3g" | "3g+"))
}

fn is_unspecified_v6(a: &str) -> bool {
    a.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.is_unspecified())
}
