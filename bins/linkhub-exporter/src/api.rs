//! Serde types mirroring the LinkHub's JSON-RPC results, and the lenient value types that
//! turn the firmware's strings and invalid markers into `Option`s.
//!
//! The firmware sends most radio values as strings (`"SINR":"17"`), sometimes as numbers,
//! and marks missing readings with `""`, `"FF"`, `"N/A"`, `"NA"`, `"reserved"` or `-999`.
//! [`Num`] and [`Text`] accept every JSON type and never fail: a value that is missing,
//! marked invalid or of the wrong type becomes `None` (an absent series), and a real `0`
//! stays `Some(0.0)`. Field-specific markers (`"-1"` for a received power) are applied by
//! the accessors on the method types, so the rules sit next to the fields they belong to.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A number that may arrive as a JSON number or a numeric string.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Num(pub Option<f64>);

/// A string that may be missing or an invalid marker; numbers are kept as their text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub Option<String>);

/// True for the firmware's "no value" markers (compared trimmed, case-insensitively).
pub fn is_invalid_marker(s: &str) -> bool {
    let s = s.trim();
    s.is_empty()
        || ["ff", "n/a", "na", "reserved", "null", "-999"].iter().any(|m| s.eq_ignore_ascii_case(m))
}

impl Num {
    /// The value, if any.
    pub fn get(self) -> Option<f64> {
        self.0
    }

    /// The value as an integer code, if it is one.
    pub fn code(self) -> Option<i64> {
        self.0.filter(|v| v.fract() == 0.0 && v.abs() < 9.0e15).map(|v| v as i64)
    }

    /// A received power in dBm: `-1` (and anything `>= 0`) is the firmware's "invalid".
    pub fn power_dbm(self) -> Option<f64> {
        self.0.filter(|v| *v < 0.0 && *v != -1.0)
    }

    /// A byte or second count: negative values are not counts.
    pub fn count(self) -> Option<f64> {
        self.0.filter(|v| *v >= 0.0)
    }
}

impl Text {
    /// The trimmed value, if any.
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The value, or `""` for a label.
    pub fn label(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Num(match v {
            Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f != -999.0),
            Value::String(s) if !is_invalid_marker(&s) => {
                s.trim().parse::<f64>().ok().filter(|f| f.is_finite() && *f != -999.0)
            }
            _ => None,
        }))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Text(match v {
            Value::String(s) if !is_invalid_marker(&s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
    }
}

/// `GetSystemInfo` (13.1): model and firmware versions; identifiers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    #[serde(rename = "DeviceName")]
    pub device_name: Text,
    #[serde(rename = "HwVersion")]
    pub hw_version: Text,
    #[serde(rename = "SwVersion")]
    pub sw_version: Text,
    #[serde(rename = "WebUiVersion")]
    pub web_ui_version: Text,
    #[serde(rename = "HttpApiVersion")]
    pub http_api_version: Text,
    #[serde(rename = "AppVersion")]
    pub app_version: Text,
    #[serde(rename = "IMEI")]
    pub imei: Text,
    #[serde(rename = "IMSI")]
    pub imsi: Text,
    #[serde(rename = "ICCID")]
    pub iccid: Text,
    #[serde(rename = "MacAddress")]
    pub mac_address: Text,
}

/// `GetSystemStatus` (13.4): the status bar (network, signal bars, connection, clients) and,
/// on MiFis, the battery.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemStatus {
    #[serde(rename = "NetworkType")]
    pub network_type: Num,
    #[serde(rename = "NetworkName")]
    pub network_name: Text,
    #[serde(rename = "Roaming")]
    pub roaming: Num,
    #[serde(rename = "Domestic_Roaming")]
    pub domestic_roaming: Num,
    #[serde(rename = "SignalStrength")]
    pub signal_strength: Num,
    #[serde(rename = "ConnectionStatus")]
    pub connection_status: Num,
    #[serde(rename = "Conprofileerror")]
    pub conprofile_error: Num,
    #[serde(rename = "WlanState")]
    pub wlan_state: Num,
    /// 0 no SMS, 1 storage full, 2 normal, 3 new (unread) SMS.
    #[serde(rename = "SmsState")]
    pub sms_state: Num,
    #[serde(rename = "curr_num")]
    pub curr_num: Num,
    #[serde(rename = "curr_num_2g")]
    pub curr_num_2g: Num,
    #[serde(rename = "curr_num_5g")]
    pub curr_num_5g: Num,
    #[serde(rename = "TotalConnNum")]
    pub total_conn_num: Num,
    #[serde(rename = "DeviceUptime")]
    pub device_uptime: Num,
    #[serde(rename = "chg_state")]
    pub chg_state: Num,
    #[serde(rename = "bat_cap")]
    pub bat_cap: Num,
    #[serde(rename = "bat_level")]
    pub bat_level: Num,
}

/// `GetNetworkInfo` (4.1): radio values and the serving cell.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkInfo {
    #[serde(rename = "PLMN")]
    pub plmn: Text,
    #[serde(rename = "NetworkType")]
    pub network_type: Num,
    #[serde(rename = "NetworkName")]
    pub network_name: Text,
    #[serde(rename = "CellId")]
    pub cell_id: Num,
    #[serde(rename = "eNBID")]
    pub enb_id: Num,
    #[serde(rename = "Band")]
    pub band: Num,
    #[serde(rename = "SignalStrength")]
    pub signal_strength: Num,
    #[serde(rename = "SINR")]
    pub sinr: Num,
    #[serde(rename = "RSRP")]
    pub rsrp: Num,
    #[serde(rename = "RSRQ")]
    pub rsrq: Num,
    #[serde(rename = "RSSI")]
    pub rssi: Num,
    #[serde(rename = "RSCP")]
    pub rscp: Num,
    #[serde(rename = "EcIo")]
    pub ecio: Num,
    #[serde(rename = "DL_channel")]
    pub dl_channel: Num,
}

impl NetworkInfo {
    /// The serving cell's E-UTRAN cell id; `"0"` (no service) is not a cell.
    pub fn serving_cell(&self) -> Option<f64> {
        self.cell_id.get().filter(|v| *v > 0.0)
    }

    /// The PLMN (MCC+MNC); `"00000"` is the firmware's "none".
    pub fn plmn(&self) -> Option<&str> {
        self.plmn.get().filter(|p| p.bytes().any(|b| b != b'0'))
    }

    /// The band; `0` means "none".
    pub fn band(&self) -> Option<i64> {
        self.band.code().filter(|b| *b > 0)
    }

    /// The eNodeB id as the firmware reports it; `0` means "none".
    pub fn enb(&self) -> Option<i64> {
        self.enb_id.code().filter(|b| *b > 0)
    }
}

/// `GetConnectionState` (3.1): the mobile data session.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectionState {
    #[serde(rename = "ConnectionStatus")]
    pub connection_status: Num,
    #[serde(rename = "Conprofileerror")]
    pub conprofile_error: Num,
    #[serde(rename = "IPv4Adrress")]
    pub ipv4_address: Text,
    #[serde(rename = "IPv6Adrress")]
    pub ipv6_address: Text,
    #[serde(rename = "Speed_Dl")]
    pub speed_dl: Num,
    #[serde(rename = "Speed_Ul")]
    pub speed_ul: Num,
    #[serde(rename = "DlRate")]
    pub dl_rate: Num,
    #[serde(rename = "UlRate")]
    pub ul_rate: Num,
    #[serde(rename = "ConnectionTime")]
    pub connection_time: Num,
    #[serde(rename = "UlBytes")]
    pub ul_bytes: Num,
    #[serde(rename = "DlBytes")]
    pub dl_bytes: Num,
}

/// `GetUsageRecord` (7.1): this billing period's volumes and times.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UsageRecord {
    #[serde(rename = "TConnTimes")]
    pub t_conn_times: Num,
    #[serde(rename = "CurrConnTimes")]
    pub curr_conn_times: Num,
    #[serde(rename = "HCurrUseUL")]
    pub home_ul: Num,
    #[serde(rename = "HCurrUseDL")]
    pub home_dl: Num,
    #[serde(rename = "HUseData")]
    pub home_total: Num,
    #[serde(rename = "RCurrUseUL")]
    pub roam_ul: Num,
    #[serde(rename = "RCurrUseDL")]
    pub roam_dl: Num,
    #[serde(rename = "RoamUseData")]
    pub roam_total: Num,
    #[serde(rename = "MonthlyPlan")]
    pub monthly_plan: Num,
}

/// `GetSimStatus` (2.1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SimStatus {
    #[serde(rename = "SIMState")]
    pub sim_state: Num,
    #[serde(rename = "PinState")]
    pub pin_state: Num,
    #[serde(rename = "PinRemainingTimes")]
    pub pin_remaining: Num,
    #[serde(rename = "PukRemainingTimes")]
    pub puk_remaining: Num,
    #[serde(rename = "SIMLockState")]
    pub sim_lock_state: Num,
}

/// `GetSMSStorageState` (6.4): the SMS store of the SIM/router.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SmsStorageState {
    /// 1 when a delivery report is unread.
    #[serde(rename = "UnreadReport")]
    pub unread_report: Num,
    /// Messages that still fit.
    #[serde(rename = "LeftCount")]
    pub left_count: Num,
    /// Messages the store holds at most.
    #[serde(rename = "MaxCount")]
    pub max_count: Num,
    /// Messages stored.
    #[serde(rename = "TUseCount")]
    pub used_count: Num,
    /// Unread messages.
    #[serde(rename = "UnreadSMSCount")]
    pub unread_count: Num,
}

impl SmsStorageState {
    /// Whether the store is full: no room left (`LeftCount` 0), or as many stored as it
    /// holds; `None` when the device gave neither.
    pub fn full(&self) -> Option<bool> {
        if let Some(left) = self.left_count.count() {
            return Some(left == 0.0);
        }
        match (self.used_count.count(), self.max_count.count().filter(|m| *m > 0.0)) {
            (Some(used), Some(max)) => Some(used >= max),
            _ => None,
        }
    }
}

/// `GetConnectedDeviceList` (12.1): the clients connected now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectedDeviceList {
    /// `None` when the device sent no list (not the same as an empty one).
    #[serde(rename = "ConnectedList", deserialize_with = "lenient_list")]
    pub connected: Option<Vec<ConnectedDevice>>,
    #[serde(rename = "ConnectedGuestList", deserialize_with = "lenient_list")]
    pub guests: Option<Vec<ConnectedDevice>>,
}

/// One entry of `ConnectedList` / `ConnectedGuestList`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectedDevice {
    #[serde(rename = "DeviceName")]
    pub name: Text,
    #[serde(rename = "MacAddress")]
    pub mac_address: Text,
    #[serde(rename = "IPAddress")]
    pub ip_address: Text,
    /// Seconds since the client associated.
    #[serde(rename = "AssociationTime")]
    pub association_time: Num,
    /// 0 logged in to the web UI, 1 just connected.
    #[serde(rename = "DeviceType")]
    pub device_type: Num,
    /// 0 USB (cable), 1 Wi-Fi.
    #[serde(rename = "ConnectMode")]
    pub connect_mode: Num,
}

/// A list of clients: entries that are not objects are skipped (and fields of the wrong type
/// are absent, as everywhere); a value that is not a list is no list at all.
fn lenient_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<ConnectedDevice>>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => Some(
            items
                .into_iter()
                .filter(Value::is_object)
                .map(|item| serde_json::from_value(item).unwrap_or_default())
                .collect(),
        ),
        _ => None,
    })
}

/// `GetBatteryState` (MiFi only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BatteryState {
    #[serde(rename = "chg_state")]
    pub chg_state: Num,
    #[serde(rename = "BatteryLevel")]
    pub battery_level: Num,
}

/// The battery readings, from `GetBatteryState` or the MiFi's `GetSystemStatus` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Battery {
    /// `chg_state` code (§5.5).
    pub charge_state: Option<i64>,
    /// Charge in percent as reported (`BatteryLevel` or `bat_cap`).
    pub percent: Option<f64>,
    /// `bat_level`, 0–4 bars.
    pub bars: Option<f64>,
}

impl Battery {
    /// The battery fields of a MiFi's `GetSystemStatus`, if it has any.
    pub fn from_status(s: &SystemStatus) -> Option<Battery> {
        let b = Battery {
            charge_state: s.chg_state.code(),
            percent: s.bat_cap.count(),
            bars: s.bat_level.count(),
        };
        (b != Battery::default()).then_some(b)
    }

    /// `GetBatteryState`, completed with the status fields it lacks.
    pub fn from_state(state: &BatteryState, status: Option<&SystemStatus>) -> Battery {
        let fallback = status.and_then(Battery::from_status).unwrap_or_default();
        Battery {
            charge_state: state.chg_state.code().or(fallback.charge_state),
            percent: state.battery_level.count().or(fallback.percent),
            bars: fallback.bars,
        }
    }
}

/// `GetLoginState` (1.3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoginState {
    #[serde(rename = "State")]
    pub state: Num,
    #[serde(rename = "LoginRemainingTimes")]
    pub login_remaining_times: Num,
    #[serde(rename = "LockedRemainingTime")]
    pub locked_remaining_time: Num,
    #[serde(rename = "PwEncrypt")]
    pub pw_encrypt: Num,
}

/// `Login` (1.1): the token, and AES material on hotspot-class models.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoginResult {
    pub token: Text,
    pub param0: Text,
    pub param1: Text,
}

/// A JSON-RPC error code: a number (`-32699`) or a string (`"010101"`, `"-32699"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode(pub String);

impl ErrorCode {
    /// From the `code` member as sent.
    pub fn from_json(v: &Value) -> ErrorCode {
        ErrorCode(match v {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// `-32699` "Authentication Failure", `-32698` "token error" and `-32697` (re-login
    /// in an IK41 client): the call needs a (fresh) login.
    pub fn needs_login(&self) -> bool {
        matches!(self.0.as_str(), "-32699" | "-32698" | "-32697")
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
