//! The Alcatel/TCL LinkHub simulator: `POST /jrd/webapi`, one JSON-RPC 2.0 call per request,
//! modelled on the protocol notes (`shared/specs/linkhub.md`).
//!
//! What it models:
//! - the verification-key and `Referer` headers (a wrong key or no Referer is answered with
//!   `-32699`), and the `_TclRequestVerificationToken` header after a login;
//! - methods that need a token, per model (`-32699`, as a number or, with `string_codes`, a
//!   string), login with the nibble-XOR obfuscation when `PwEncrypt` is 1, the AES token
//!   header of hotspot models (HH72), token expiry, the single admin session (`010102`),
//!   the lockout after 5 wrong passwords (`010103`, until the `reboot` knob), and the
//!   encrypted API of newer firmware (every result an encrypted string);
//! - the SMS store (`GetSMSStorageState`, and `SmsState` in `GetSystemStatus`: 1 = full,
//!   3 = new messages) and the client list (`GetConnectedDeviceList`, which needs a token on
//!   every LinkHub model; `GetSMSStorageState` needs one on the HH71 only, as the EE
//!   firmware's note says, and is among the public methods elsewhere);
//! - the firmware's value formats: radio values as strings, invalid markers (`"FF"`, `"-1"`,
//!   `""`, `"reserved"`, `"N/A"`), the inverted `Roaming` code, usage counters in bytes;
//! - values that move over time when `drift` is on: signal wanders, the cell changes every
//!   `cell_hop_secs`, usage and session bytes grow.
//!
//! Counters: every JSON-RPC method under its name (`GetNetworkInfo`), and `login_attempt`
//! for every `Login` call.
//!
//! Knobs ([`HttpDevice::control`], `POST /_sim/set?key=K&value=V`): `model`
//! (hh41, hh71, hh72, mifi, no_service), `username`, `password`, `pw_encrypt` (true/false),
//! `key` (the expected verification key), `protect` / `unprotect` (comma-separated methods
//! that need / do not need a token), `token_ttl_secs` (0 = never), `expire_token` (drops
//! the session now), `other_admin` (true: a human is logged in), `reboot` (clears lockout
//! and sessions), `encrypted`, `string_codes`, `require_referer`, `drift`, `cell` (0-2),
//! `cell_hop_secs` (0 = off), `service` (false: no service), `sms_stored`, `sms_unread`,
//! `sms_max` (the SMS store: messages stored, unread, capacity; `sms_stored` = `sms_max` is a
//! full store), `connected_devices` (N generated clients instead of the spec's three),
//! `guest_devices` (N clients on the guest Wi-Fi), and `<Method>.<Field>` (a JSON
//! value, or a string when it is not JSON) to override one result field, `clear` to drop
//! the overrides.

mod crypto;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    str::FromStr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use argh::FromArgs;
use serde_json::{Map, Value, json};

use crate::http::{Ctx, Fault, HttpDevice, Request, Response};

/// The public verification key of the G1 web UIs.
pub const VERIFICATION_KEY: &str = "KSDHSDFOGQ5WERYTUIQWERTYUISDFG1HJZXCVCXBN2GDSMNDHKVKFsVBNf";

/// Wrong passwords before the login locks until a reboot.
pub const MAX_LOGIN_FAILURES: u32 = 5;

/// The serving cells the simulator moves between (one eNB, three sectors):
/// (CellId, CGI, SINR, RSRP, RSSI, RSRQ, SignalStrength).
const CELLS: [(u64, &str, i64, i64, i64, i64, i64); 3] = [
    (80_820_492, "466924d1390c", 17, -90, -62, -8, 3),
    (80_820_494, "466924d1390e", 4, -104, -79, -13, 2),
    (80_820_495, "466924d1390f", 9, -97, -70, -11, 3),
];

/// A device model: which methods need a token, whether it has a battery, how it logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// LinkHub HH41/HH441 on LTE (the Python exporter's box).
    Hh41,
    /// LinkHub HH71 (EE/BT): only the status-bar methods are token-free.
    Hh71,
    /// HH72 "hotspot class": Login also returns AES key and IV for the token header.
    Hh72,
    /// MW40 MiFi with a battery; no token needed for reading.
    Mifi,
    /// An HH41 without service (no SIM network, searching).
    NoService,
}

impl FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Model, String> {
        Ok(match s {
            "hh41" => Model::Hh41,
            "hh71" => Model::Hh71,
            "hh72" => Model::Hh72,
            "mifi" => Model::Mifi,
            "no_service" => Model::NoService,
            other => {
                return Err(format!(
                    "unknown model {other:?} (known: hh41, hh71, hh72, mifi, no_service)"
                ));
            }
        })
    }
}

impl Model {
    /// Methods that answer without a token on this model.
    fn public_methods(self) -> &'static [&'static str] {
        match self {
            Model::Hh41 | Model::NoService => &[
                "Login",
                "Logout",
                "GetLoginState",
                "HeartBeat",
                "GetCurrentLanguage",
                "GetSystemInfo",
                "GetSystemStatus",
                "GetSimStatus",
                "GetNetworkInfo",
                "GetUsageRecord",
                "GetDeviceNewVersion",
                "GetBatteryState",
                "GetSMSStorageState",
            ],
            Model::Hh71 => &[
                "Login",
                "Logout",
                "GetLoginState",
                "HeartBeat",
                "GetCurrentLanguage",
                "GetSimStatus",
                "GetSystemStatus",
                "GetDeviceNewVersion",
                "GetBatteryState",
            ],
            Model::Hh72 => &[
                "Login",
                "Logout",
                "GetLoginState",
                "HeartBeat",
                "GetCurrentLanguage",
                "GetSystemInfo",
                "GetSimStatus",
                "GetSystemStatus",
                "GetDeviceNewVersion",
                "GetBatteryState",
                "GetSMSStorageState",
            ],
            Model::Mifi => &[],
        }
    }

    fn needs_token(self, method: &str) -> bool {
        self != Model::Mifi && !self.public_methods().contains(&method)
    }

    fn name(self) -> &'static str {
        match self {
            Model::Hh41 | Model::NoService => "HH41",
            Model::Hh71 => "HH71",
            Model::Hh72 => "HH72",
            Model::Mifi => "MW40",
        }
    }
}

/// The simulated LinkHub.
#[derive(Debug)]
pub struct Linkhub {
    state: Mutex<State>,
}

#[derive(Debug)]
struct Session {
    header: String,
    last_used: Instant,
}

#[derive(Debug)]
struct State {
    model: Model,
    username: String,
    password: String,
    pw_encrypt: bool,
    key: String,
    protect: BTreeSet<String>,
    unprotect: BTreeSet<String>,
    token_ttl: Option<Duration>,
    session: Option<Session>,
    next_token: u64,
    failures: u32,
    other_admin: bool,
    encrypted: bool,
    string_codes: bool,
    require_referer: bool,
    drift: bool,
    cell: usize,
    cell_hop: Option<Duration>,
    service: bool,
    sms_stored: u64,
    sms_unread: u64,
    sms_max: u64,
    clients: Option<usize>,
    guests: usize,
    started: Instant,
    overrides: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Default for Linkhub {
    fn default() -> Linkhub {
        Linkhub::new(Model::Hh41)
    }
}

impl Linkhub {
    /// A device of `model` with user `admin`, password `admin`, `PwEncrypt` 1, tokens that
    /// do not expire and no drift (answers equal the spec's fixtures).
    pub fn new(model: Model) -> Linkhub {
        Linkhub {
            state: Mutex::new(State {
                model,
                username: "admin".to_owned(),
                password: "admin".to_owned(),
                pw_encrypt: true,
                key: VERIFICATION_KEY.to_owned(),
                protect: BTreeSet::new(),
                unprotect: BTreeSet::new(),
                token_ttl: None,
                session: None,
                next_token: 45_487_484,
                failures: 0,
                other_admin: false,
                encrypted: false,
                string_codes: false,
                require_referer: true,
                drift: false,
                cell: 0,
                cell_hop: None,
                service: model != Model::NoService,
                sms_stored: 3,
                sms_unread: 1,
                sms_max: 100,
                clients: None,
                guests: 0,
                started: Instant::now(),
                overrides: BTreeMap::new(),
            }),
        }
    }

    /// Sets a knob, panicking on a bad one (for tests and builders).
    pub fn with(self, key: &str, value: &str) -> Linkhub {
        if let Err(err) = self.control(key, value) {
            panic!("device-sim linkhub: {err}");
        }
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HttpDevice for Linkhub {
    fn handle(&self, req: &Request, ctx: &Ctx) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/jrd/webapi") => {}
            (_, "/jrd/webapi") => {
                return Response::text(405, "method not allowed").with_header("allow", "POST");
            }
            ("GET", "/" | "/index.html") => {
                return Response::new(
                    200,
                    "text/html",
                    "<html><head><title>LinkHub</title></head><body>simulated web UI</body></html>",
                );
            }
            _ => return Response::text(404, "not found"),
        }
        let Ok(call) = serde_json::from_slice::<Value>(&req.body) else {
            return rpc_error(Value::Null, json!(-32700), "Parse error");
        };
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = call.get("method").and_then(Value::as_str) else {
            return rpc_error(id, json!(-32600), "Invalid Request");
        };
        ctx.count(method);
        let params = call.get("params").cloned().unwrap_or(Value::Null);
        let mut st = self.lock();
        if st.encrypted {
            return Response::json(
                200,
                &json!({"jsonrpc": "2.0", "result": "U2FsdGVkX1+Mk8cB2H5rU3V1cGVyc2VjcmV0IQ==", "id": id}),
            );
        }
        st.expire_session();
        let key_ok = req.header("_TclRequestVerificationKey") == Some(st.key.as_str());
        let referer_ok = !st.require_referer || req.header("referer").is_some();
        if !key_ok || !referer_ok {
            return st.auth_error(id, -32699, "Authentication Failure");
        }
        let token_ok = match (&mut st.session, req.header("_TclRequestVerificationToken")) {
            (Some(session), Some(header)) if session.header == header => {
                session.last_used = Instant::now();
                true
            }
            _ => false,
        };
        if method == "Login" {
            ctx.count("login_attempt");
            return st.login(id, &params);
        }
        if st.needs_token(method) && !token_ok {
            return st.auth_error(id, -32699, "Authentication Failure");
        }
        match method {
            "Logout" => {
                if token_ok {
                    st.session = None;
                }
                ok(id, json!({}))
            }
            "HeartBeat" if !token_ok => st.auth_error(id, -32698, "token error"),
            _ => match st.result(method) {
                Some(result) => ok(id, st.apply_overrides(method, result)),
                None => rpc_error(id, json!(-32601), "Method not found"),
            },
        }
    }

    fn control(&self, key: &str, value: &str) -> Result<(), String> {
        let mut st = self.lock();
        let flag = |v: &str| -> Result<bool, String> {
            match v {
                "true" | "1" | "on" => Ok(true),
                "false" | "0" | "off" => Ok(false),
                _ => Err(format!("{key}: expected true or false, got {v:?}")),
            }
        };
        let secs = |v: &str| -> Result<Option<Duration>, String> {
            let n: u64 =
                v.parse().map_err(|_| format!("{key}: expected whole seconds, got {v:?}"))?;
            Ok((n > 0).then(|| Duration::from_secs(n)))
        };
        let methods = |v: &str| -> BTreeSet<String> {
            v.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect()
        };
        match key {
            "model" => {
                st.model = value.parse()?;
                st.service = st.model != Model::NoService;
            }
            "username" => st.username = value.to_owned(),
            "password" => st.password = value.to_owned(),
            "pw_encrypt" => st.pw_encrypt = flag(value)?,
            "key" => st.key = value.to_owned(),
            "protect" => {
                let m = methods(value);
                st.unprotect.retain(|x| !m.contains(x));
                st.protect.extend(m);
            }
            "unprotect" => {
                let m = methods(value);
                st.protect.retain(|x| !m.contains(x));
                st.unprotect.extend(m);
            }
            "token_ttl_secs" => st.token_ttl = secs(value)?,
            "expire_token" => st.session = None,
            "other_admin" => st.other_admin = flag(value)?,
            "reboot" => {
                st.failures = 0;
                st.session = None;
                st.other_admin = false;
            }
            "encrypted" => st.encrypted = flag(value)?,
            "string_codes" => st.string_codes = flag(value)?,
            "require_referer" => st.require_referer = flag(value)?,
            "drift" => st.drift = flag(value)?,
            "cell" => {
                st.cell = value
                    .parse::<usize>()
                    .ok()
                    .filter(|c| *c < CELLS.len())
                    .ok_or_else(|| format!("cell: expected 0, 1 or 2, got {value:?}"))?;
            }
            "cell_hop_secs" => st.cell_hop = secs(value)?,
            "service" => st.service = flag(value)?,
            "sms_stored" | "sms_unread" | "sms_max" | "connected_devices" | "guest_devices" => {
                let n: u64 =
                    value.parse().map_err(|_| format!("{key}: expected a count, got {value:?}"))?;
                let n_usize = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= 100_000)
                    .ok_or_else(|| format!("{key}: at most 100000"))?;
                match key {
                    "sms_stored" => st.sms_stored = n,
                    "sms_unread" => st.sms_unread = n,
                    "sms_max" => st.sms_max = n,
                    "connected_devices" => st.clients = Some(n_usize),
                    _ => st.guests = n_usize,
                }
            }
            "clear" => st.overrides.clear(),
            field => {
                let Some((method, name)) =
                    field.split_once('.').filter(|(m, f)| m.starts_with("Get") && !f.is_empty())
                else {
                    return Err(format!(
                        "unknown knob {key}={value} (see the module docs; fields as Method.Field)"
                    ));
                };
                let v = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
                st.overrides.entry(method.to_owned()).or_default().insert(name.to_owned(), v);
            }
        }
        Ok(())
    }
}

impl State {
    fn needs_token(&self, method: &str) -> bool {
        if self.protect.contains(method) {
            return true;
        }
        if self.unprotect.contains(method) {
            return false;
        }
        self.model.needs_token(method)
    }

    fn expire_session(&mut self) {
        if let (Some(ttl), Some(s)) = (self.token_ttl, &self.session)
            && s.last_used.elapsed() >= ttl
        {
            self.session = None;
        }
    }

    fn auth_error(&self, id: Value, code: i64, message: &str) -> Response {
        let code = if self.string_codes { json!(code.to_string()) } else { json!(code) };
        rpc_error(id, code, message)
    }

    fn login(&mut self, id: Value, params: &Value) -> Response {
        if self.failures >= MAX_LOGIN_FAILURES {
            return rpc_error(id, json!("010103"), "Login times used out.");
        }
        if self.other_admin || self.session.is_some() {
            return rpc_error(id, json!("010102"), "Other user is login.");
        }
        let (user, pass) = if self.pw_encrypt {
            (crypto::obfuscate(&self.username), crypto::obfuscate(&self.password))
        } else {
            (self.username.clone(), self.password.clone())
        };
        let sent_user = params.get("UserName").and_then(Value::as_str);
        let sent_pass = params.get("Password").and_then(Value::as_str);
        if sent_user != Some(user.as_str()) || sent_pass != Some(pass.as_str()) {
            self.failures += 1;
            return rpc_error(id, json!("010101"), "Username or Password is not correct.");
        }
        self.failures = 0;
        let token = self.next_token;
        self.next_token += 1;
        let obfuscated = crypto::obfuscate(&token.to_string());
        let (result, header) = if self.model == Model::Hh72 {
            let (key, iv) = ("1234567890123456", "6543210987654321");
            let header =
                crypto::aes_cbc_base64(key.as_bytes(), iv.as_bytes(), obfuscated.as_bytes())
                    .unwrap_or_default();
            (json!({"token": token.to_string(), "param0": key, "param1": iv}), header)
        } else {
            (json!({"token": token}), obfuscated)
        };
        self.session = Some(Session { header, last_used: Instant::now() });
        ok(id, result)
    }

    fn elapsed(&self) -> f64 {
        if self.drift { self.started.elapsed().as_secs_f64() } else { 0.0 }
    }

    fn current_cell(&self) -> usize {
        let hops = match self.cell_hop {
            Some(hop) => (self.started.elapsed().as_secs_f64() / hop.as_secs_f64()) as usize,
            None => 0,
        };
        (self.cell + hops) % CELLS.len()
    }

    fn result(&self, method: &str) -> Option<Value> {
        let t = self.elapsed();
        let wobble = |period: f64, amplitude: f64| (amplitude * (t / period).sin()).round() as i64;
        let mifi = self.model == Model::Mifi;
        let service = self.service;
        Some(match method {
            "GetLoginState" => json!({
                "State": if self.failures >= MAX_LOGIN_FAILURES { 2 }
                         else if self.other_admin || self.session.is_some() { 1 } else { 0 },
                "LoginRemainingTimes": MAX_LOGIN_FAILURES.saturating_sub(self.failures),
                "LockedRemainingTime": 0,
                "PwEncrypt": i32::from(self.pw_encrypt),
            }),
            "GetSystemInfo" => {
                let name = self.model.name();
                json!({
                    "SwVersion": format!("{name}_NV_02.00_07\n"), "HwVersion": format!("{name}-V-V1.0"),
                    "WebUiVersion": format!("{name}_JRDRESOURCE_NV_02_1234\n"),
                    "HttpApiVersion": "TCL-HTTP", "AppVersion": "V1.0", "DeviceName": name,
                    "IMEI": "356789012345678", "sn": "", "MacAddress": "8c:dc:d4:31:ba:b5\n",
                    "IMSI": "466920123456789", "ICCID": "8988692012345678901F",
                    "MsisdnMark": 1, "MSISDN": ""
                })
            }
            "GetSystemStatus" => {
                let cell = CELLS.get(self.current_cell()).copied().unwrap_or(CELLS[0]);
                let mut s = json!({
                    "NetworkType": if service { 8 } else { 0 },
                    "NetworkName": if service { "Chunghwa" } else { "N/A" },
                    "Roaming": 1, "Domestic_Roaming": 1,
                    "SignalStrength": if service { cell.6 } else { 0 },
                    "ConnectionStatus": if service { 2 } else { 0 },
                    "Conprofileerror": 0, "SmsState": self.sms_state(), "VoicemailCount": -16_777_216,
                    "WlanState": 1, "TotalConnNum": self.clients.unwrap_or(3) + self.guests,
                });
                if let Some(obj) = s.as_object_mut() {
                    if mifi {
                        obj.insert("chg_state".into(), json!(1));
                        obj.insert("bat_cap".into(), json!(100));
                        obj.insert("bat_level".into(), json!(4));
                        obj.insert("curr_num".into(), json!(5));
                        obj.insert("TotalConnNum".into(), json!(6));
                        obj.insert(
                            "NetworkName".into(),
                            json!(if service { "NOS" } else { "N/A" }),
                        );
                    } else {
                        obj.insert("curr_num_2g".into(), json!(3));
                        obj.insert("curr_num_5g".into(), json!(0));
                        obj.insert("UsbStatus".into(), json!(1));
                        obj.insert("CurrentConnection".into(), json!(0));
                    }
                }
                s
            }
            "GetNetworkInfo" => {
                if !service {
                    json!({"PLMN":"00000","NetworkType":0,"NetworkName":"N/A","SpnName":"N/A","LAC":"0",
                        "CellId":"0","RncId":"reserved","Roaming":1,"Domestic_Roaming":1,"SignalStrength":0,
                        "mcc":"0","mnc":"0","SINR":"FF","RSRP":"-1","RSSI":"","eNBID":"0","CGI":"000",
                        "CenterFreq":"0.000000","TxPWR":"0","LTE_state":0,"PLMN_name":"N/A","Band":0,
                        "DL_channel":"reserved","UL_channel":"reserved","RSRQ":"","EcIo":0,"RSCP":-1})
                } else {
                    let (cell, cgi, sinr, rsrp, rssi, rsrq, bars) =
                        CELLS.get(self.current_cell()).copied().unwrap_or(CELLS[0]);
                    json!({"PLMN":"46692","NetworkType":8,"NetworkName":"Chunghwa","SpnName":"",
                        "LAC":"0","CellId": cell.to_string(),"RncId":"reserved","Roaming":1,"Domestic_Roaming":1,
                        "SignalStrength": bars,"mcc":"466","mnc":"92",
                        "SINR": (sinr + wobble(20.0, 3.0)).to_string(),
                        "RSRP": (rsrp + wobble(30.0, 4.0)).to_string(),
                        "RSSI": (rssi + wobble(25.0, 4.0)).to_string(),
                        "eNBID": (cell / 256).to_string(),"CGI": cgi,
                        "CenterFreq":"0.000000","TxPWR":"0","LTE_state":239_206_400,"PLMN_name":"N/A","Band":3,
                        "DL_channel":"reserved","UL_channel":"reserved",
                        "RSRQ": (rsrq + wobble(40.0, 2.0)).to_string(),"EcIo":0.0,"RSCP":-1})
                }
            }
            "GetConnectionState" => {
                if service {
                    let grow = t as u64;
                    json!({"ConnectionStatus":2,"Conprofileerror":0,"IPv4Adrress":"10.17.152.95",
                        "IPv6Adrress":"0::0","Speed_Dl": 118_734 + wobble(7.0, 40_000.0),
                        "Speed_Ul": 20_511 + wobble(9.0, 8_000.0),"DlRate":150_000_000,"UlRate":50_000_000,
                        "ConnectionTime": 88_741 + grow,"UlBytes": 1_176_744_012 + grow * 20_000,
                        "DlBytes": 2_656_630_117 + grow * 120_000})
                } else {
                    json!({"ConnectionStatus":0,"Conprofileerror":0,"IPv4Adrress":"0.0.0.0",
                        "IPv6Adrress":"0::0","Speed_Dl":0,"Speed_Ul":0,"DlRate":0,"UlRate":0,
                        "ConnectionTime":0,"UlBytes":0,"DlBytes":0})
                }
            }
            "GetUsageRecord" => {
                let grow = t as u64;
                json!({"TConnTimes": 5_485_256 + grow,"CurrConnTimes": if service { 88_741 + grow } else { 0 },
                    "HCurrUseUL": 3_443_105_027_u64 + grow * 20_000,
                    "HCurrUseDL": 14_996_934_026_u64 + grow * 120_000,
                    "HUseData": 18_440_039_053_u64 + grow * 140_000,
                    "RCurrUseUL":0,"RCurrUseDL":0,"RoamUseData":0,"MonthlyPlan":0})
            }
            "GetSimStatus" => json!({"SIMState":7,"PinState":3,"PinRemainingTimes":3,
                "PukRemainingTimes":10,"SIMLockState":-1,"SIMLockRemainingTimes":0,
                "PLMN": if service { "46692" } else { "" },"SPN":""}),
            "GetBatteryState" if mifi => {
                json!({"chg_state":0,"BatteryLevel": 64 - (t / 600.0) as i64 % 60})
            }
            "GetCurrentLanguage" => json!({"Language":"en"}),
            "GetSMSStorageState" => {
                let stored = self.sms_stored.min(self.sms_max);
                json!({"UnreadReport":0,"LeftCount": self.sms_max - stored,"MaxCount": self.sms_max,
                    "TUseCount": stored,"UnreadSMSCount": self.sms_unread.min(stored)})
            }
            "GetWanSettings" => json!({"SubNetMask":"255.255.255.0","Gateway":"192.168.0.1",
                "IpAddress":"192.168.0.120","Mtu":1500,"ConnectType":1,"PrimaryDNS":"192.168.0.1",
                "SecondaryDNS":"","Account":"","Password":"","Status":0,"StaticIpAddress":"",
                "pppoeMtu":1492,"DurationTime":0,"WanType":"eth0"}),
            "GetWanIsConnInter" => json!({"ConnToInterStatus":1}),
            "GetDeviceNewVersion" => json!({"State":2,"Version":"","total_size":0}),
            "GetNetworkSettings" => {
                json!({"NetworkMode":0,"NetselectionMode":0,"NetworkBand":0,"DomesticRoam":0,"DomesticRoamGuard":0})
            }
            "GetNetworkRegisterState" => json!({"regist_state": if service { 2 } else { 1 }}),
            "GetConnectionSettings" => {
                json!({"ConnectMode":1,"RoamingConnect":0,"PdpType":3,"ConnOffTime":600})
            }
            "GetUsageSettings" => {
                json!({"BillingDay":1,"MonthlyPlan":0,"UsedData":18_440_039_053_u64,"Unit":1,
                "TimeLimitFlag":0,"TimeLimitTimes":0,"UsedTimes":0,"AutoDisconnFlag":0})
            }
            "GetConnectedDeviceList" => {
                let list = match self.clients {
                    Some(n) => (0..n).map(|i| client(i, false)).collect(),
                    None => fixture_clients(),
                };
                json!({"ConnectedList": list,
                    "ConnectedGuestList": (0..self.guests).map(|i| client(i, true)).collect::<Vec<_>>()})
            }
            _ => return None,
        })
    }

    /// `GetSystemStatus.SmsState`: 0 no SMS, 1 storage full, 2 normal, 3 new (unread) SMS.
    fn sms_state(&self) -> u8 {
        if self.sms_max > 0 && self.sms_stored >= self.sms_max {
            1
        } else if self.sms_unread > 0 && self.sms_stored > 0 {
            3
        } else if self.sms_stored > 0 {
            2
        } else {
            0
        }
    }

    fn apply_overrides(&self, method: &str, mut result: Value) -> Value {
        if let (Some(fields), Some(obj)) = (self.overrides.get(method), result.as_object_mut()) {
            for (k, v) in fields {
                obj.insert(k.clone(), v.clone());
            }
        }
        result
    }
}

/// Generated client `i` of `GetConnectedDeviceList` (every fourth on a cable, the others on
/// Wi-Fi; guests on the guest Wi-Fi); older clients have longer association times.
fn client(i: usize, guest: bool) -> Value {
    let (net, base) = if guest { (100, 0x80) } else { (1, 0) };
    json!({"id": i + 1, "DeviceName": format!("{}client-{i}", if guest { "guest-" } else { "" }),
        "MacAddress": format!("02:00:00:{base:02x}:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff),
        "IPAddress": format!("192.168.{}.{}", net + i / 250, 2 + i % 250),
        "AssociationTime": 60 * (i + 1), "DeviceType": 1,
        "ConnectMode": if !guest && i % 4 == 3 { 0 } else { 1 },
        "InternetRight": 1, "StorageRight": 1})
}

/// The spec's three clients (§11.19).
fn fixture_clients() -> Vec<Value> {
    vec![
        json!({"id":1,"DeviceName":"laptop","MacAddress":"3a:11:14:47:f6:a3","IPAddress":"192.168.1.117","AssociationTime":3600,"DeviceType":0,"ConnectMode":1,"InternetRight":1,"StorageRight":1}),
        json!({"id":2,"DeviceName":"phone","MacAddress":"5c:aa:fd:01:02:03","IPAddress":"192.168.1.118","AssociationTime":120,"DeviceType":1,"ConnectMode":1,"InternetRight":1,"StorageRight":1}),
        json!({"id":3,"DeviceName":"nas","MacAddress":"00:11:32:aa:bb:cc","IPAddress":"192.168.1.100","AssociationTime":88000,"DeviceType":1,"ConnectMode":0,"InternetRight":1,"StorageRight":1}),
    ]
}

fn ok(id: Value, result: Value) -> Response {
    Response::json(200, &json!({"jsonrpc": "2.0", "result": result, "id": id}))
}

fn rpc_error(id: Value, code: Value, message: &str) -> Response {
    let mut error = Map::new();
    error.insert("code".into(), code);
    error.insert("message".into(), Value::from(message));
    Response::json(200, &json!({"jsonrpc": "2.0", "error": error, "id": id}))
}

/// `device-sim linkhub`: a simulated Alcatel/TCL LinkHub (JSON-RPC at /jrd/webapi).
#[derive(FromArgs, Debug)]
struct Args {
    /// address to listen on, loopback only (default 127.0.0.1:0, a free port)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// device model: hh41 (default), hh71, hh72, mifi or no_service
    #[argh(option, default = "Model::Hh41")]
    model: Model,
    /// the admin password the device accepts (default admin; a simulator, not a secret)
    #[argh(option)]
    password: Option<String>,
    /// seconds of inactivity after which the login token expires (default: never)
    #[argh(option)]
    token_ttl_secs: Option<u64>,
    /// seconds between hand-overs to the next cell (default: no hand-overs)
    #[argh(option)]
    cell_hop_secs: Option<u64>,
    /// keep values fixed at the spec's fixtures (default: signal and usage drift)
    #[argh(switch)]
    no_drift: bool,
    /// pretend a human administrator is logged in (Login answers 010102)
    #[argh(switch)]
    other_admin: bool,
    /// answer like newer encrypted TCL 5G firmware
    #[argh(switch)]
    encrypted: bool,
    /// send -32699/-32698 error codes as strings
    #[argh(switch)]
    string_codes: bool,
    /// milliseconds to wait before every answer (default 0)
    #[argh(option, default = "0")]
    latency_ms: u64,
    /// fault to inject: refuse, hang, status:CODE, garbage, truncated, reset-mid-body, drip,
    /// endless, oversized, invalid-utf8 or wrong-content-type
    #[argh(option)]
    fault: Option<Fault>,
}

/// Runs the simulator from the command line (`device-sim linkhub …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    let Some(args) = crate::http::parse_args::<Args>("device-sim linkhub", args)? else {
        return Ok(());
    };
    let device = Linkhub::new(args.model);
    let mut knobs: Vec<(&str, String)> = vec![("drift", (!args.no_drift).to_string())];
    if let Some(p) = args.password {
        knobs.push(("password", p));
    }
    if let Some(s) = args.token_ttl_secs {
        knobs.push(("token_ttl_secs", s.to_string()));
    }
    if let Some(s) = args.cell_hop_secs {
        knobs.push(("cell_hop_secs", s.to_string()));
    }
    for (flag, key) in [
        (args.other_admin, "other_admin"),
        (args.encrypted, "encrypted"),
        (args.string_codes, "string_codes"),
    ] {
        if flag {
            knobs.push((key, "true".to_owned()));
        }
    }
    for (key, value) in knobs {
        device.control(key, &value).map_err(anyhow::Error::msg)?;
    }
    crate::http::run_cli(
        Arc::new(device),
        args.listen,
        Duration::from_millis(args.latency_ms),
        args.fault,
    )
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
