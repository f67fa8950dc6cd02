//! The BT Smart Hub 2 simulator (spec `smarthub.md`).
//!
//! It serves the four pages the exporter reads, in the hub's formats: `GET
//! /nonAuth/wan_conn.xml` (XML whose attributes hold JavaScript arrays of `%XX`-encoded,
//! `;`-separated slot strings), `GET /cgi/cgi_basicMyDevice.js` (the device list script, with
//! the ~480 `addCfg` lines of a real hub), `GET /cgi/cgi_owl.js` (hub, disc and stations) and
//! `GET /cgi/cgi_basicStatus.js` (firmware, serial number, uptime and the WAN lists, spec
//! §5 and §15.7, with its double-quoted scalars and `parseInt` expression statements).
//!
//! What it models:
//! - WAN profiles: `fttp` (Ethernet WAN, slot 0), `vdsl` (slot 1, with DSL line statistics)
//!   and `down` (hub just rebooted, nothing connected, `wan_active_idx` 1);
//! - byte counters that grow on every request, and an uptime clock that follows real time;
//!   `reboot` restarts the clock (and the counters), `firmware=TEXT` changes `fw_ver`;
//! - device lists with tricky names (`'`, `"`, `\`, `%`, non-ASCII, an empty hostname),
//!   empty (`[null]`) or long (`many:N`, a busy network's hundreds of remembered devices, a
//!   few of them active), and devices that leave (`leave=MAC`);
//! - a firmware without `cgi_basicStatus.js` (`status=missing`, 404) or answering it with an
//!   HTML page (`status=html`);
//! - firmware since 2022: `/cgi/*.js` answer 403 without a Referer (`referer=cgi`, the
//!   default; `all` also guards the XML; `off` checks nothing; `refuse` answers 403 on
//!   `/cgi/*.js` whatever the Referer, `refuse-page` an HTML error page);
//! - a login page instead of data (`login=page`) or a redirect to it (`login=redirect`);
//! - hostile scripts on both `/cgi/*.js` pages (`lan=loop|memory|recursion|syntax|html|
//!   exception|missing`, `ok` to end it).
//!
//! The framework counts requests per path and adds latency and faults.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use argh::FromArgs;

use crate::http::{Ctx, Fault, HttpDevice, Request, Response, run_cli};

#[cfg(test)]
mod tests;

/// The WAN status page.
pub const WAN_PATH: &str = "/nonAuth/wan_conn.xml";
/// The device list script.
pub const DEVICES_PATH: &str = "/cgi/cgi_basicMyDevice.js";
/// The mesh script.
pub const OWL_PATH: &str = "/cgi/cgi_owl.js";
/// The status script (firmware, serial number, uptime).
pub const STATUS_PATH: &str = "/cgi/cgi_basicStatus.js";
/// `fw_ver` until `firmware=` changes it (spec §15.7).
pub const FIRMWARE: &str = "v0.37.00.00000-BT (Tue Mar  5 10:11:12 2024)";
/// `serial_no` (spec §15.7, scrubbed).
pub const SERIAL: &str = "+068341+NQ00000000";
/// `fw_update_time`, the hub's local time.
pub const FIRMWARE_UPDATE_TIME: &str = "2024/03/19 03:12:44";
/// The hub's uptime when it serves its first page after `reboot`.
pub const UPTIME_AFTER_REBOOT: u64 = 120;
/// The Wi-Fi network name of the hub and its disc (`owl_tplg` `essid_2g`/`essid_5g`).
pub const SSID: &str = "BT-ABC123";
/// The login page `login=redirect` sends clients to.
pub const LOGIN_PATH: &str = "/login.htm";

/// Which WAN the hub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Ethernet WAN to an ONT: slot 0, the DSL port reported DOWN.
    Fttp,
    /// VDSL2 profile 17a: slot 1, DSL line statistics.
    Vdsl,
    /// Nothing connected (`wan_active_idx` 1, all zero).
    Down,
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Profile, String> {
        match s {
            "fttp" => Ok(Profile::Fttp),
            "vdsl" => Ok(Profile::Vdsl),
            "down" => Ok(Profile::Down),
            _ => Err(format!("profile: expected fttp, vdsl or down, got {s:?}")),
        }
    }
}

/// What the two `/cgi/*.js` pages answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanMode {
    /// The real scripts.
    Ok,
    /// `while(true){}` after the globals.
    Loop,
    /// An array that grows without end.
    Memory,
    /// Unbounded recursion.
    Recursion,
    /// The real script cut in half (a syntax error).
    Syntax,
    /// A 200 HTML page instead of JavaScript.
    Html,
    /// A script that throws.
    Exception,
    /// Valid JavaScript that defines none of the lists.
    Missing,
}

impl std::str::FromStr for LanMode {
    type Err = String;

    fn from_str(s: &str) -> Result<LanMode, String> {
        Ok(match s {
            "ok" => LanMode::Ok,
            "loop" => LanMode::Loop,
            "memory" => LanMode::Memory,
            "recursion" => LanMode::Recursion,
            "syntax" => LanMode::Syntax,
            "html" => LanMode::Html,
            "exception" => LanMode::Exception,
            "missing" => LanMode::Missing,
            _ => {
                return Err(format!(
                    "lan: expected ok, loop, memory, recursion, syntax, html, exception or missing, got {s:?}"
                ));
            }
        })
    }
}

/// The hostile modes, for tests that go through all of them.
pub const HOSTILE_MODES: &[&str] =
    &["loop", "memory", "recursion", "syntax", "html", "exception", "missing"];

/// Whether pages answer with a login page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Off,
    /// 200 with the login form in place of every data page.
    Page,
    /// 302 to [`LOGIN_PATH`].
    Redirect,
}

/// Which pages answer 403 without a Referer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referer {
    /// `/cgi/*.js` only (firmware since August 2022).
    Cgi,
    /// Every page.
    All,
    /// None.
    Off,
    /// `/cgi/*.js` answer 403 whatever the Referer says (a firmware that wants a Referer
    /// no client is known to send).
    Refuse,
    /// Like `Refuse`, with a 200 HTML error page instead of the 403.
    RefusePage,
}

/// What `cgi_basicStatus.js` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    /// The real page.
    Ok,
    /// 404, as on a firmware without the page.
    Missing,
    /// A 200 HTML page.
    Html,
}

/// A device the hub remembers, decoded (the simulator encodes it as the hub does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    /// Upper case.
    pub mac: String,
    pub hostname: String,
    pub ip: String,
    pub name: String,
    pub active: bool,
    pub os: String,
    pub kind: String,
    pub port: String,
    pub ipv6: String,
    pub ipv6_ll: String,
    /// `time_last_active`, the hub's local time `YYYY/MM/DD HH:MM:SS`.
    pub last_active: String,
    /// Byte counters `(tx, rx)` when the hub has a `rate` entry (growing per request).
    pub rate: Option<(u64, u64)>,
    /// How the mesh sees it, when it does.
    pub station: Option<SimStation>,
}

/// A device as `owl_station` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStation {
    /// Served by the disc (true) or the hub (false).
    pub on_disc: bool,
    /// `Ether`, `2.4G`, `5G`.
    pub connect_type: String,
    pub link_rate_mbps: u32,
    pub signal_dbm: i32,
    pub online: bool,
}

/// The simulated hub.
#[derive(Debug)]
pub struct SmartHub {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    profile: Profile,
    devices: Vec<SimDevice>,
    lan: LanMode,
    login: Login,
    referer: Referer,
    status: StatusMode,
    firmware: String,
    started: Instant,
    /// The uptime at `started` after a `reboot` (the profile's own before).
    uptime_base: Option<u64>,
    /// Requests answered per page, driving the growing counters.
    wan_ticks: u64,
    lan_ticks: u64,
}

impl Default for SmartHub {
    fn default() -> Self {
        SmartHub::new(Profile::Vdsl)
    }
}

impl SmartHub {
    /// A hub with `profile` and the tricky device list.
    pub fn new(profile: Profile) -> SmartHub {
        SmartHub {
            state: Mutex::new(State {
                profile,
                devices: tricky_devices(),
                lan: LanMode::Ok,
                login: Login::Off,
                referer: Referer::Cgi,
                status: StatusMode::Ok,
                firmware: FIRMWARE.to_owned(),
                started: Instant::now(),
                uptime_base: None,
                wan_ticks: 0,
                lan_ticks: 0,
            }),
        }
    }

    /// Replaces the device list.
    pub fn set_devices(&self, devices: Vec<SimDevice>) {
        self.state().devices = devices;
    }

    /// The current device list.
    pub fn devices(&self) -> Vec<SimDevice> {
        self.state().devices.clone()
    }

    /// The answer to one request (what [`HttpDevice::handle`] returns).
    pub fn respond(&self, req: &Request) -> Response {
        let mut st = self.state();
        if req.method != "GET" && req.method != "HEAD" {
            return Response::new(
                405,
                "text/html",
                "<html><body>405 Method Not Allowed</body></html>",
            );
        }
        if req.path == LOGIN_PATH {
            return Response::new(200, "text/html", LOGIN_PAGE);
        }
        let known = [WAN_PATH, DEVICES_PATH, OWL_PATH, STATUS_PATH].contains(&req.path.as_str());
        if !known {
            return Response::new(404, "text/html", "<html><body>404 Not Found</body></html>");
        }
        let guarded = match st.referer {
            Referer::Off => false,
            Referer::Cgi => req.path.starts_with("/cgi/"),
            Referer::All | Referer::Refuse | Referer::RefusePage => true,
        };
        let referer_ok = req
            .header("referer")
            .is_some_and(|r| r.starts_with("http://") || r.starts_with("https://"));
        let cgi = req.path.starts_with("/cgi/");
        if st.referer == Referer::RefusePage && cgi {
            return Response::new(
                200,
                "text/html",
                "<!DOCTYPE html><html><head><title>BT Smart Hub</title></head><body>Error</body></html>",
            );
        }
        let refused = st.referer == Referer::Refuse && cgi;
        if refused || (guarded && !referer_ok) {
            return Response::new(
                403,
                "text/html",
                "<html><body><h1>403 Forbidden</h1></body></html>",
            );
        }
        match st.login {
            Login::Off => {}
            Login::Page => return Response::new(200, "text/html", LOGIN_PAGE),
            Login::Redirect => {
                return Response::new(302, "text/html", "").with_header("location", LOGIN_PATH);
            }
        }
        match req.path.as_str() {
            WAN_PATH => {
                st.wan_ticks += 1;
                Response::new(200, "text/xml", st.wan_xml())
            }
            STATUS_PATH => match st.status {
                StatusMode::Ok => Response::new(200, JS_TYPE, st.status_js()),
                StatusMode::Missing => {
                    Response::new(404, "text/html", "<html><body>404 Not Found</body></html>")
                }
                StatusMode::Html => Response::new(
                    200,
                    "text/html",
                    "<!DOCTYPE html><html><head><title>BT Smart Hub</title></head><body>Error</body></html>",
                ),
            },
            path => {
                st.lan_ticks += 1;
                let devices = path == DEVICES_PATH;
                match st.lan {
                    LanMode::Ok if devices => Response::new(200, JS_TYPE, st.devices_js()),
                    LanMode::Ok => Response::new(200, JS_TYPE, st.owl_js()),
                    LanMode::Html => Response::new(
                        200,
                        "text/html",
                        "<!DOCTYPE html><html><head><title>BT Smart Hub</title></head><body>Error</body></html>",
                    ),
                    LanMode::Syntax => {
                        let full = if devices { st.devices_js() } else { st.owl_js() };
                        let cut = full.len() / 2;
                        Response::new(200, JS_TYPE, full.get(..cut).unwrap_or_default().to_owned())
                    }
                    mode => Response::new(200, JS_TYPE, hostile_script(mode)),
                }
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HttpDevice for SmartHub {
    fn handle(&self, req: &Request, _ctx: &Ctx) -> Response {
        self.respond(req)
    }

    fn control(&self, key: &str, value: &str) -> Result<(), String> {
        let mut st = self.state();
        match key {
            "profile" => st.profile = value.parse()?,
            "lan" => st.lan = value.parse()?,
            "devices" => {
                st.devices = match value {
                    "tricky" => tricky_devices(),
                    "empty" => Vec::new(),
                    _ => match value.strip_prefix("many:").map(str::parse::<usize>) {
                        Some(Ok(n)) if n <= 4000 => many_devices(n),
                        _ => {
                            return Err(format!(
                                "devices: expected tricky, empty or many:N (N up to 4000), got {value:?}"
                            ));
                        }
                    },
                }
            }
            "reboot" => {
                st.started = Instant::now();
                st.uptime_base = Some(UPTIME_AFTER_REBOOT);
                st.wan_ticks = 0;
                st.lan_ticks = 0;
            }
            "firmware" => {
                if value.is_empty() {
                    return Err("firmware: expected a version text".to_owned());
                }
                st.firmware = value.to_owned();
            }
            "status" => {
                st.status = match value {
                    "ok" => StatusMode::Ok,
                    "missing" => StatusMode::Missing,
                    "html" => StatusMode::Html,
                    _ => {
                        return Err(format!("status: expected ok, missing or html, got {value:?}"));
                    }
                }
            }
            "leave" => {
                let mac = value.to_ascii_uppercase();
                let before = st.devices.len();
                st.devices.retain(|d| d.mac != mac);
                if st.devices.len() == before {
                    return Err(format!("leave: no device {value:?}"));
                }
            }
            "login" => {
                st.login = match value {
                    "off" => Login::Off,
                    "page" => Login::Page,
                    "redirect" => Login::Redirect,
                    _ => {
                        return Err(format!(
                            "login: expected off, page or redirect, got {value:?}"
                        ));
                    }
                }
            }
            "referer" => {
                st.referer = match value {
                    "cgi" => Referer::Cgi,
                    "all" => Referer::All,
                    "off" => Referer::Off,
                    "refuse" => Referer::Refuse,
                    "refuse-page" => Referer::RefusePage,
                    _ => {
                        return Err(format!(
                            "referer: expected cgi, all, off, refuse or refuse-page, got {value:?}"
                        ));
                    }
                }
            }
            _ => return Err(format!("unknown knob {key}={value}")),
        }
        Ok(())
    }
}

const JS_TYPE: &str = "application/javascript";

const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>BT Smart Hub - Login</title></head>\
<body><form method=\"post\" action=\"/login.cgi\"><input type=\"hidden\" name=\"O\" value=\"helpdesk.htm\">\
<input type=\"password\" name=\"pws\"><input type=\"submit\" value=\"Log in\"></form></body></html>\n";

/// `%XX`-encodes every byte outside `[A-Za-z0-9]`, with upper-case hex, as the hub does.
pub fn hub_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hostile_script(mode: LanMode) -> String {
    let globals = "var known_device_list=[null];\nvar rate=[null];\nvar owl_tplg=[null];\nvar owl_station=[null];\n";
    match mode {
        LanMode::Loop => format!("{globals}while(true){{}}\n"),
        LanMode::Memory => {
            "var a=[];\nfor(;;){a.push({x:a.length,y:'pad'+a.length});}\n".to_owned()
        }
        LanMode::Recursion => {
            "function f(n){return f(n+1)+1;}\nvar known_device_list=f(0);\nvar owl_tplg=f(0);\n"
                .to_owned()
        }
        LanMode::Exception => format!("{globals}throw new Error('sim: the page failed');\n"),
        LanMode::Missing => {
            "var MAX_NAT_RULES = 160;\naddCfg(\"PasswordHint\",87162881,'');\n".to_owned()
        }
        LanMode::Ok | LanMode::Syntax | LanMode::Html => String::new(),
    }
}

/// The three WAN slots of a profile, as `(session, start, link, link_start, volume_base,
/// up_bps, down_bps, ip4)`.
struct Slot {
    session: &'static str,
    start: u64,
    link: &'static str,
    link_start: u64,
    rx: u64,
    tx: u64,
    up_bps: u64,
    down_bps: u64,
    ip4: Option<(&'static str, &'static str)>,
    lla: Option<&'static str>,
    gua: Option<&'static str>,
}

const IDLE: Slot = Slot {
    session: "disconnected",
    start: 0,
    link: "disconnected",
    link_start: 0,
    rx: 0,
    tx: 0,
    up_bps: 0,
    down_bps: 0,
    ip4: None,
    lla: None,
    gua: None,
};

/// What `cgi_basicStatus.js` lists per profile: `ip4_info_list`'s one slot, the three
/// slots of `wan_link_status_list`, `wan_conn_status_list` and `wan_link_rate_list`, the 16
/// DSL line fields and `link_status`, all decoded.
type StatusLists = (
    &'static str,
    [&'static str; 3],
    [&'static str; 3],
    [&'static str; 3],
    [&'static str; 16],
    &'static str,
);

impl State {
    /// The hub's uptime clock: the profile's base (or the post-reboot one) plus real time.
    fn uptime(&self, profile_base: u64) -> u64 {
        self.uptime_base.unwrap_or(profile_base) + self.started.elapsed().as_secs()
    }

    fn profile_uptime_base(&self) -> u64 {
        match self.profile {
            Profile::Fttp => 604_812,
            Profile::Vdsl => 1_209_733,
            Profile::Down => 212,
        }
    }

    /// `cgi_basicStatus.js` as spec §15.7 shows it: double-quoted `serial_no`, `fw_ver` and
    /// `lan_service_ip`, one `ip4_info_list` slot, `wan_linestatus_rate_list` with `', '`
    /// separators, the named `linestatus` object over several lines, and two `parseInt`
    /// expression statements a literal-only reader must skip.
    fn status_js(&self) -> String {
        let e = hub_encode;
        let sysuptime = self.uptime(self.profile_uptime_base());
        let (ip4, links, conns, rates, line, link_status): StatusLists = match self.profile {
            Profile::Vdsl => (
                "203.0.113.77;255.255.255.255;172.16.11.23;81.139.56.100;81.139.57.100",
                ["disconnected;0", "connected;71", "disconnected;0"],
                ["disconnected;0;pass", "connected;96;pass", "disconnected;0;pass"],
                ["0;0;0;0", "19999000;79987000;0;0", "0;0;0;0"],
                [
                    "UP",
                    "VDSL2",
                    "Profile 17a",
                    "62",
                    "71",
                    "153",
                    "91",
                    "137",
                    "90",
                    "127",
                    "68",
                    "79987",
                    "19999",
                    "84312000",
                    "24801000",
                    "fast",
                ],
                "connected;vdsl;71",
            ),
            Profile::Fttp => (
                "203.0.113.45;255.255.255.255;172.16.12.1;81.139.56.100;81.139.57.100",
                ["connected;41", "disconnected;0", "disconnected;0"],
                ["connected;58;pass", "disconnected;0;pass", "disconnected;0;pass"],
                ["1000000000;1000000000;0;0", "0;0;0;0", "0;0;0;0"],
                [
                    "DOWN", "ADSL", "G.DMT", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0",
                    "0", "fast",
                ],
                "disconnected;adsl;0",
            ),
            Profile::Down => (
                "0.0.0.0;0.0.0.0;0.0.0.0;0.0.0.0;0.0.0.0",
                ["disconnected;0", "disconnected;0", "disconnected;0"],
                ["disconnected;0;pass", "disconnected;0;pass", "disconnected;0;pass"],
                ["0;0;0;0", "0;0;0;0", "0;0;0;0"],
                [
                    "DOWN", "ADSL", "G.DMT", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0",
                    "0", "fast",
                ],
                "disconnected;adsl;0",
            ),
        };
        let slots = |list: [&str; 3]| -> String {
            let mut s = String::from("[");
            for slot in list {
                let _ = writeln!(s, "['{}'],", e(slot));
            }
            s.push_str("null]");
            s
        };
        let quoted: Vec<String> = line.iter().map(|v| format!("'{}'", e(v))).collect();
        const KEYS: [&str; 16] = [
            "state",
            "mode",
            "mod_type",
            "snr_margin_down",
            "snr_margin_up",
            "latn_down",
            "latn_up",
            "satn_down",
            "satn_up",
            "output_power_down",
            "output_power_up",
            "rate_down",
            "rate_up",
            "attainable_rate_down",
            "attainable_rate_up",
            "chantype",
        ];
        let named: Vec<String> =
            KEYS.iter().zip(&quoted).map(|(k, v)| format!("    {k}: {v}")).collect();
        let mut s = String::new();
        let _ = writeln!(s, "var serial_no = \"{}\";", e(SERIAL));
        let _ = writeln!(s, "var fw_ver = \"{}\";", e(&self.firmware));
        let _ = writeln!(s, "var fw_update_time = '{}';", e(FIRMWARE_UPDATE_TIME));
        let _ = writeln!(s, "var ip4_info_list = [['{}'],\nnull];", e(ip4));
        let _ = writeln!(s, "var wan_link_status_list = {};", slots(links));
        let _ = writeln!(s, "var wan_conn_status_list = {};", slots(conns));
        let _ = writeln!(s, "var wan_link_rate_list = {};", slots(rates));
        let _ = writeln!(s, "var wan_linestatus_rate_list = [[{}],\nnull];", quoted.join(", "));
        let _ = writeln!(s, "var link_status = '{}';", e(link_status));
        let _ = writeln!(s, "var linestatus = [{{\n{}\n}},\nnull];", named.join(",\n"));
        s.push_str("//bt wifi\n");
        s.push_str("var openwifi_suppressed = parseInt(\"0\") && parseInt(\"1\");\n");
        s.push_str("var openwifi_enable = parseInt(\"1\") || parseInt(\"1\");\n");
        let _ = writeln!(s, "var sysuptime = '{sysuptime}';");
        s.push_str("//lan ip\n");
        let _ = writeln!(s, "var lan_service_ip = \"{}\";", e("192.168.1.254"));
        s
    }

    fn wan_xml(&self) -> String {
        let t = self.wan_ticks;
        let (base_uptime, active, slots, line): (u64, usize, [Slot; 3], &str) = match self.profile {
            Profile::Fttp => (
                604_812,
                0,
                [
                    Slot {
                        session: "connected",
                        start: 58,
                        link: "connected",
                        link_start: 41,
                        rx: 48_702_116_393 + t * 1_250_000,
                        tx: 4_216_717_817 + t * 125_000,
                        up_bps: 1_000_000_000,
                        down_bps: 1_000_000_000,
                        ip4: Some(("203.0.113.45", "172.16.12.1")),
                        lla: Some("fe80::9c4d:1f2e:3a4b:5c6d/10"),
                        gua: Some("2001:db8:1234:5600::1/64;fe80::1a2b:3cff:fe4d:5e6f"),
                    },
                    IDLE,
                    IDLE,
                ],
                "['DOWN','ADSL','G%2EDMT','0','0','0','0','0','0','0','0','0','0','0','0','fast']",
            ),
            Profile::Vdsl => (
                1_209_733,
                1,
                [
                    IDLE,
                    Slot {
                        session: "connected",
                        start: 96,
                        link: "connected",
                        link_start: 71,
                        rx: 118_409_876_543 + t * 2_500_000,
                        tx: 12_302_469_135 + t * 250_000,
                        up_bps: 19_999_000,
                        down_bps: 79_987_000,
                        ip4: Some(("203.0.113.77", "172.16.11.23")),
                        lla: Some("fe80::5e6f:7a8b:9c0d:1e2f/10"),
                        gua: Some("2001:db8:abcd:1200::1/64;fe80::2c3d:4eff:fe5f:6a7b"),
                    },
                    IDLE,
                ],
                "['UP','VDSL2','Profile%2017a','62','71','153','91','137','90','127','68','79987','19999','84312000','24801000','fast']",
            ),
            Profile::Down => (
                212,
                1,
                [IDLE, IDLE, IDLE],
                "['DOWN','ADSL','G%2EDMT','0','0','0','0','0','0','0','0','0','0','0','0','fast']",
            ),
        };
        let sysuptime = self.uptime(base_uptime);
        let list = |f: &dyn Fn(&Slot) -> String| -> String {
            let mut s = String::from("[");
            for slot in &slots {
                let _ = writeln!(s, "['{}'],", hub_encode(&f(slot)));
            }
            s.push_str("null]");
            s
        };
        let status = list(&|s| format!("{};{};pass", s.session, s.start));
        let volume = list(&|s| format!("{};{};{}", s.rx + s.tx, s.rx, s.tx));
        let link = list(&|s| format!("{};{}", s.link, s.link_start));
        let rate = list(&|s| format!("{};{};0;0", s.up_bps, s.down_bps));
        let ip4 = list(&|s| match s.ip4 {
            Some((addr, gw)) => format!("{addr};255.255.255.255;{gw};81.139.56.100;81.139.57.100"),
            None => "0.0.0.0;0.0.0.0;0.0.0.0;0.0.0.0;0.0.0.0".to_owned(),
        });
        let lla = list(&|s| s.lla.unwrap_or("::/0").to_owned());
        let gua = list(&|s| s.gua.unwrap_or("::/0;::").to_owned());
        let link_status = match self.profile {
            Profile::Vdsl => hub_encode("connected;vdsl;71"),
            Profile::Fttp | Profile::Down => hub_encode("disconnected;adsl;0"),
        };
        let channels = "[['6','0','6'],\n['6','0','6'],\n['6','0','6'],\n['6','0','6'],\n['6','0','6'],\n\
                        ['36','0','36'],\n['36','0','36'],\n['36','0','36'],\n['36','0','36'],\n['36','0','36'],\nnull]";
        format!(
            "<status>\n\t<!-- REAL -->\n\
             \t\t<wan_conn_status_list type=\"array\" value=\"{status}\" />\n\
             \t\t<wan_conn_volume_list type=\"array\" value=\"{volume}\" />\n\
             \t\t<wan_linestatus_rate_list type=\"array\" value=\"[{line},\nnull]\" />\n\
             \t\t<wlan_channel_list type=\"array\" value=\"{channels}\" />\n\
             \t\t<curlinkstatus type=\"array\" value=\"{link}\" />\n\
             \t\t<sysuptime value=\"{sysuptime}\" />\n\
             \t\t<status_rate type=\"array\" value=\"{rate}\" />\n\
             \t\t<wan_active_idx value=\"{active}\" />\n\
             \t\t<link_status value=\"{link_status}\" />\n\
             \t\t<ip4_info_list type=\"array\" value=\"{ip4}\" />\n\
             \t\t<ip6_lla_list type=\"array\" value=\"{lla}\" />\n\
             \t\t<ip6_gua_list type=\"array\" value=\"{gua}\" />\n\
             \t\t<ip6_rdns_list type=\"array\" value=\"[[null],[null],[null]]\" />\n\
             \t<!-- END_REAL -->\n\
             \t<!--for home page, login lock-->\n\t\t<locktime value=\"1\" />\n\
             \t<!--END for home page, login lock-->\n</status>\n"
        )
    }

    fn devices_js(&self) -> String {
        let t = self.lan_ticks;
        let e = hub_encode;
        let mut s = String::from("var known_device_list=[");
        for d in &self.devices {
            let flag = |b: bool| if b { "1" } else { "0" };
            let _ = writeln!(
                s,
                "{{mac:'{}',hostname:'{}',ip:'{}',ipv6:'{}',name:'{}',activity:'{}',os:'{}',device:'{}',\
                 time_first_seen:'2023%2F02%2F11%2009%3A14%3A02',time_last_active:'{}',\
                 dhcp_option:'NA',port:'{}',ipv6_ll:'{}',activity_ip:'{}',activity_ipv6_ll:'0',activity_ipv6:'0',\
                 device_oui:'NA',device_serial:'NA',device_class:'NA',reconnected:'0'}},",
                e(&d.mac),
                e(&d.hostname),
                e(&d.ip),
                e(&d.ipv6),
                e(&d.name),
                flag(d.active),
                e(&d.os),
                e(&d.kind),
                e(&d.last_active),
                e(&d.port),
                e(&d.ipv6_ll),
                flag(d.active),
            );
        }
        s.push_str("null];\nvar rate = [");
        for d in &self.devices {
            if let Some((tx, rx)) = d.rate {
                let _ = writeln!(
                    s,
                    "{{timestamp:'0',app:'4294967295',mac:'{}',tx:'{}',rx:'{}'}},",
                    e(&d.mac.to_ascii_lowercase()),
                    tx + t * 1_000,
                    rx + t * 10_000,
                );
            }
        }
        s.push_str("null];\n");
        s.push_str("addCfg(\"dhcpreserve1\",68681729,'');\n\nvar usb_device_list=[null];\n\nvar dhcp_log=[null];\n");
        s.push_str("//Band Steerable\nvar wireless_device_option_list=[null];\n\n//NAT Info\nvar MAX_NAT_RULES = 160;\n");
        for (name, base) in
            [("i_Mac", 35_323_904), ("lan_ipaddr", 35_520_512), ("desc", 35_192_832)]
        {
            for i in 1..=160 {
                let _ = writeln!(s, "addCfg(\"{name}{i}\",{},'');", base + i);
            }
        }
        s.push_str("\n//access controllers\nvar acl_list=[null];\nvar acl_device_list=[null];\n\n");
        s.push_str("//address table\nvar DHCP_STATUS_LIST_IP = 0;\nvar DHCP_STATUS_LIST_MAC = 1;\nvar dhcpv6_log=[null];\n\n");
        s.push_str("addCfg(\"PasswordHint\",87162881,'');\n\n//for disable all wireless\n");
        s.push_str("addCfg(\"allWirelessEnable2G\",151519233,'1');\n\naddCfg(\"allWirelessEnable5G\",151519234,'1');\n\n");
        s.push_str("// internet\nvar wan_suuport_eth = '1'\n");
        s
    }

    fn owl_js(&self) -> String {
        let e = hub_encode;
        let uptime = self.uptime(1_209_733);
        let hub_id = "AA:BB:CC:10:00:01";
        let disc_id = "AA:BB:CC:20:00:01";
        let on = |disc: bool| {
            self.devices
                .iter()
                .filter(|d| d.station.as_ref().is_some_and(|s| s.on_disc == disc))
                .count()
        };
        let mut s = String::from("var owl_tplg=[");
        let _ = writeln!(
            s,
            "{{ordering:'1',hw_ver:'R01',sw_ver:'{fw}',fw_ver:'{fw}',sn:'%2B068341%2BNQ00000000',device_mac:'{}',\
             device_name:'{}',device_id:'{}',device_ip:'{}',device_netmask:'255%2E255%2E255%2E0',eth_mac:'{}',\
             bssid_2g:'{}',essid_2g:'{ssid}',bssid_5g:'{}',essid_5g:'{ssid}',parent_id:'NULL',\
             child_id:'{}',child_num:'1',sta_num:'{}',connect_type:'Ether',connect_rssi:'0',model_name:'SmartHub2',\
             product_id:'55661',node_lvid:'1',uptime:'{uptime}',connected_role:'configured%5Fmaster',connected_rootap:'1',\
             linkrate:'0Mbps',node_num:'2',cpuU:'0',memT:'0',hub_status:'connected',fud:'0',type:'0',lsd:'0',\
             ether_speed:'',ether_name:''}},",
            e("AA:BB:CC:10:00:00"),
            e("Smart Hub 2"),
            e(hub_id),
            e("192.168.1.254"),
            e("AA:BB:CC:10:00:02"),
            e("AA:BB:CC:10:00:03"),
            e("AA:BB:CC:10:00:04"),
            e(disc_id),
            on(false),
            fw = e("v0.37.00.00000 "),
            ssid = e(SSID),
        );
        let _ = writeln!(
            s,
            "{{ordering:'2',hw_ver:'01',sw_ver:'{fw}',fw_ver:'{fw}',sn:'%2B092822%2BNQ00000001',device_mac:'{}',\
             device_name:'{}',device_id:'{}',device_ip:'{}',device_netmask:'255%2E255%2E255%2E0',eth_mac:'{}',\
             bssid_2g:'{}',essid_2g:'{ssid}',bssid_5g:'{}',essid_5g:'{ssid}',parent_id:'{}',\
             child_id:'NULL',child_num:'0',sta_num:'{}',connect_type:'5G',connect_rssi:'{}',model_name:'{}',\
             product_id:'{}',node_lvid:'17',uptime:'{}',connected_role:'configured%5Fslave',connected_rootap:'0',\
             linkrate:'1733Mbps',node_num:'0',cpuU:'1',memT:'122136',hub_status:'connected',fud:'1676107241',\
             type:'1',lsd:'1717447205',ether_speed:'',ether_name:''}},",
            e("AA:BB:CC:20:00:00"),
            e("Landing disc"),
            e(disc_id),
            e("192.168.1.95"),
            e("AA:BB:CC:20:00:02"),
            e("AA:BB:CC:20:00:03"),
            e("AA:BB:CC:20:00:04"),
            e(hub_id),
            on(true),
            e("-61"),
            e("WE410443-6DX"),
            e("WE410443-6DX"),
            uptime - 83,
            fw = e("0.16.00.07230"),
            ssid = e(SSID),
        );
        s.push_str("null];\nvar owl_station=[\n");
        for d in &self.devices {
            let Some(st) = &d.station else { continue };
            let name = |v: &str| if v.is_empty() { "NULL".to_owned() } else { e(v) };
            let _ = writeln!(
                s,
                "{{station_mac:'{}',station_name:'{}',alias_name:'{}',station_ip:'{}',parent_id:'{}',connect_type:'{}',\
                 link_rate:'{}Mbps',link_rate_max:'0Mbps',mode:'8',signal_strength:'{}',signal_strength_max:'0',\
                 signal_strength_min:'%2D88',pid:'NULL',online:'{}',last_connect:'1717447131',ipv6_ip:'{}',note:'0',\
                 as:'0',ldur:'0',lddr:'0',rt:'0',bs:'2147483647',br:'0',txc:'0',rxc:'0',es:'0',rtc:'0',frc:'0',\
                 rc:'0',mrc:'0',it:'0'}},",
                e(&d.mac),
                name(&d.hostname),
                name(&d.name),
                e(&d.ip),
                e(if st.on_disc { disc_id } else { hub_id }),
                e(&st.connect_type),
                st.link_rate_mbps,
                e(&st.signal_dbm.to_string()),
                if st.online { "1" } else { "0" },
                e(&d.ipv6_ll),
            );
        }
        s.push_str("null];\n\naddCfg(\"set_device_name\",356225397,'');\n");
        s
    }
}

/// The five devices of spec §15.4 plus one behind the disc: an apostrophe, `"` and `\`,
/// a bare `%`, UTF-8, an empty hostname, devices without a `rate` entry, a counter above
/// 2³², a disc.
pub fn tricky_devices() -> Vec<SimDevice> {
    let dev =
        |n: u8, hostname: &str, ip: &str, name: &str, active: bool, kind: &str, port: &str| {
            SimDevice {
                mac: format!("AA:BB:CC:00:00:{n:02X}"),
                hostname: hostname.to_owned(),
                ip: ip.to_owned(),
                name: name.to_owned(),
                active,
                os: "Linux".to_owned(),
                kind: kind.to_owned(),
                port: port.to_owned(),
                ipv6: String::new(),
                ipv6_ll: "::".to_owned(),
                last_active: "2024/06/03 21:40:17".to_owned(),
                rate: None,
                station: None,
            }
        };
    let wifi = |on_disc: bool, band: &str, rate: u32, signal: i32, online: bool| {
        Some(SimStation {
            on_disc,
            connect_type: band.to_owned(),
            link_rate_mbps: rate,
            signal_dbm: signal,
            online,
        })
    };
    vec![
        SimDevice {
            ipv6: "2001:db8:1234:5600::40".to_owned(),
            ipv6_ll: "fe80::a8bb:ccff:fe00:1".to_owned(),
            rate: Some((5_368_709_120, 912_345_678_901)),
            station: wifi(false, "Ether", 0, 0, true),
            ..dev(1, "nas-01", "192.168.1.64", "Family NAS", true, "Server", "eth1")
        },
        SimDevice {
            os: "iOS".to_owned(),
            last_active: "2024/06/03 21:39:58".to_owned(),
            rate: Some((48_211_093, 733_420_117)),
            station: wifi(false, "5G", 866, -54, true),
            ..dev(2, "Tom's iPhone", "192.168.1.71", "Tom's iPhone", true, "Smartphone", "wl1")
        },
        SimDevice {
            last_active: "1981/10/01 00:00:33".to_owned(),
            ..dev(3, "", "192.168.1.80", "unknown_AA:BB:CC:00:00:03", false, "Unknown", "NA")
        },
        SimDevice {
            os: "Windows".to_owned(),
            last_active: "2024/05/30 08:15:00".to_owned(),
            station: wifi(true, "5G", 433, -63, false),
            ..dev(4, "Zoë-laptop", "192.168.1.90", "Kids \"Den\" TV\\1", false, "PC", "NA")
        },
        SimDevice {
            last_active: "2024/06/03 21:40:05".to_owned(),
            rate: Some((1_022_934, 2_210_487)),
            ..dev(5, "BT-WiFi-Disc-1a2b", "192.168.1.95", "Landing disc", true, "WIFIEX", "NA")
        },
        SimDevice {
            rate: Some((4_250, 6_875)),
            station: wifi(true, "2.4G", 72, -67, true),
            ..dev(6, "android%thingy", "192.168.1.101", "100% plug", true, "Unknown", "NA")
        },
    ]
}

/// `n` remembered devices as on a busy network: every tenth is active (with a `rate` entry),
/// the rest long gone; device `i` was last active `i` minutes after 2024/01/01 00:00, so the
/// higher the number the more recent. MACs `02:00:00:00:HH:LL`, hostnames `host-<i>`.
pub fn many_devices(n: usize) -> Vec<SimDevice> {
    (0..n)
        .map(|i| {
            let active = i % 10 == 9;
            let minutes = i as u64;
            let (day, hour, minute) = (1 + minutes / 1440, (minutes / 60) % 24, minutes % 60);
            SimDevice {
                mac: format!("02:00:00:00:{:02X}:{:02X}", i / 256, i % 256),
                hostname: format!("host-{i}"),
                ip: format!("10.0.{}.{}", i / 250, 1 + i % 250),
                name: format!("device {i}"),
                active,
                os: "Unknown".to_owned(),
                kind: "Unknown".to_owned(),
                port: "NA".to_owned(),
                ipv6: String::new(),
                ipv6_ll: "::".to_owned(),
                last_active: format!("2024/01/{day:02} {hour:02}:{minute:02}:00"),
                rate: active.then_some((1_000 * i as u64, 10_000 * i as u64)),
                station: None,
            }
        })
        .collect()
}

/// `device-sim smarthub`: a simulated BT Smart Hub 2.
#[derive(FromArgs, Debug)]
struct Args {
    /// address to listen on, loopback only (default 127.0.0.1:0, a free port)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// WAN profile: fttp (slot 0), vdsl (slot 1, the default) or down
    #[argh(option, default = "Profile::Vdsl")]
    profile: Profile,
    /// device list: tricky (the default), empty or many:N (N remembered devices, every tenth active)
    #[argh(option, default = "String::from(\"tricky\")")]
    devices: String,
    /// what /cgi/*.js answer: ok (the default), loop, memory, recursion, syntax, html, exception or missing
    #[argh(option, default = "LanMode::Ok")]
    lan: LanMode,
    /// answer every data page with a login page: off (the default), page or redirect
    #[argh(option, default = "String::from(\"off\")")]
    login: String,
    /// pages that answer 403 without a Referer: cgi (the default), all, off, refuse (403 on
    /// /cgi/*.js whatever the Referer) or refuse-page (an HTML error page instead)
    #[argh(option, default = "String::from(\"cgi\")")]
    referer: String,
    /// milliseconds to wait before every answer (default 0)
    #[argh(option, default = "0")]
    latency_ms: u64,
    /// a fault injected into every answer: hang, refuse, status:500, garbage, truncated … (default none)
    #[argh(option)]
    fault: Option<String>,
}

/// Runs the simulator from the command line (`device-sim smarthub …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    let Some(args) = crate::http::parse_args::<Args>("device-sim smarthub", args)? else {
        return Ok(());
    };
    let hub = SmartHub::new(args.profile);
    for (key, value) in
        [("devices", args.devices.as_str()), ("login", &args.login), ("referer", &args.referer)]
    {
        hub.control(key, value).map_err(|e| anyhow::anyhow!("--{key}: {e}"))?;
    }
    hub.state().lan = args.lan;
    let fault = args
        .fault
        .as_deref()
        .map(str::parse::<Fault>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--fault: {e}"))?;
    run_cli(Arc::new(hub), args.listen, Duration::from_millis(args.latency_ms), fault).await
}
