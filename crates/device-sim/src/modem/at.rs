//! A fake AT-command modem on Unix stream sockets, for the real ModemManager's test mode.
//!
//! `Test.SetProfile(id, "generic", ports)` makes ModemManager open each port name as a Unix
//! socket (`abstract:NAME` for a Linux abstract socket whose name includes the `abstract:`
//! prefix, anything else a filesystem path) and drive it as an AT port. This module listens
//! on those sockets and answers the commands ModemManager 1.20's generic plugin sends (see
//! the spec's appendix) with the values of a [`Scenario`].
//!
//! Mapping ModemManager applies (from its source): `+CSQ: 20` → 64 %; `+CESQ: …,rsrq,rsrp` →
//! LTE rsrq = -20 + rsrq/2 dB, rsrp = -141 + rsrp dBm (99/255 = absent).

use std::{
    collections::BTreeMap,
    str::FromStr,
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
};

/// What the fake modem reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// SIM ready, registered on LTE with operator 00101 "FakeNet", connectable bearer.
    RegisteredLte,
    /// `AT+CPIN?` answers `+CME ERROR: 10`: ModemManager shows failed / sim-missing.
    SimMissing,
    /// `AT+CPIN?` answers `+CPIN: SIM PIN`: ModemManager shows locked / sim-pin.
    SimPin,
}

impl FromStr for Scenario {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Scenario> {
        match s {
            "registered-lte" => Ok(Scenario::RegisteredLte),
            "sim-missing" => Ok(Scenario::SimMissing),
            "sim-pin" => Ok(Scenario::SimPin),
            other => anyhow::bail!(
                "unknown AT modem scenario {other:?} (registered-lte, sim-missing, sim-pin)"
            ),
        }
    }
}

/// The values the LTE scenario reports, for tests to compare with what ModemManager exports.
pub mod lte {
    /// `AT+CESQ` rsrq field: LTE rsrq = -20 + 20/2 = -10 dB.
    pub const CESQ_RSRQ: u32 = 20;
    /// `AT+CESQ` rsrp field: LTE rsrp = -141 + 50 = -91 dBm.
    pub const CESQ_RSRP: u32 = 50;
    /// What ModemManager derives: dB.
    pub const RSRQ_DB: f64 = -10.0;
    /// What ModemManager derives: dBm.
    pub const RSRP_DBM: f64 = -91.0;
    pub const OPERATOR_CODE: &str = "00101";
    pub const OPERATOR_NAME: &str = "FakeNet";
    /// Cell id in `+CEREG` (hex).
    pub const CELL_ID: u64 = 0x83F7CD;
    /// Tracking area code in `+CEREG` (hex).
    pub const TAC: u64 = 0x31C5;
}

/// A running fake AT modem; dropping it (or [`FakeAtModem::stop`]) closes its sockets.
#[derive(Debug)]
pub struct FakeAtModem {
    state: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    scenario: Scenario,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every command received, in order.
    log: Vec<String>,
    /// Command (exact, upper-case) → response lines overriding the scenario.
    overrides: BTreeMap<String, String>,
    /// `AT+COPS=3,<format>`: 0 = long name, 2 = numeric.
    cops_format: u32,
}

impl FakeAtModem {
    /// Listens on every port in `ports` (`abstract:NAME` or a path) and answers as `scenario`.
    pub async fn start(ports: &[String], scenario: Scenario) -> anyhow::Result<FakeAtModem> {
        let state = Arc::new(Shared { scenario, inner: Mutex::default() });
        let mut tasks = Vec::new();
        for port in ports {
            let listener = listen(port)?;
            let state = Arc::clone(&state);
            tasks.push(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(Arc::clone(&state), stream));
                }
            }));
        }
        Ok(FakeAtModem { state, tasks })
    }

    /// Every command received so far.
    pub fn commands(&self) -> Vec<String> {
        self.state.lock().log.clone()
    }

    /// Answers `command` (e.g. `AT+CPIN?`) with `response` (lines without the final `OK`;
    /// end with `ERROR` or `+CME ERROR: n` for a failure, or give `OK` alone).
    pub fn set_response(&self, command: &str, response: &str) {
        self.state.lock().overrides.insert(command.to_ascii_uppercase(), response.to_owned());
    }

    /// Stops listening (open connections stay until ModemManager closes them).
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for FakeAtModem {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn listen(port: &str) -> anyhow::Result<UnixListener> {
    let std_listener = if port.starts_with("abstract:") {
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(port.as_bytes())
            .with_context(|| format!("abstract socket name {port}"))?;
        std::os::unix::net::UnixListener::bind_addr(&addr)
            .with_context(|| format!("bind {port}"))?
    } else {
        let _ = std::fs::remove_file(port);
        std::os::unix::net::UnixListener::bind(port).with_context(|| format!("bind {port}"))?
    };
    std_listener.set_nonblocking(true)?;
    Ok(UnixListener::from_std(std_listener)?)
}

async fn serve(state: Arc<Shared>, mut stream: UnixStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let mut data_mode = false;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if data_mode {
            // After CONNECT the port carries PPP frames; nothing answers them here.
            continue;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        while let Some(pos) = buf.iter().position(|b| *b == b'\r' || *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let command = String::from_utf8_lossy(&line).trim().to_owned();
            if command.is_empty() {
                continue;
            }
            let reply = answer(&state, &command);
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            if reply.contains("CONNECT") {
                data_mode = true;
                buf.clear();
                break;
            }
        }
        if buf.len() > 4096 {
            buf.clear();
        }
    }
}

/// The full response (with `\r\n` framing) to one command line.
fn answer(state: &Shared, command: &str) -> String {
    let upper = command.to_ascii_uppercase();
    let mut inner = state.lock();
    inner.log.push(command.to_owned());
    if let Some(r) = inner.overrides.get(&upper) {
        return frame(r);
    }
    let scenario = state.scenario;
    let body: String = match upper.as_str() {
        "AT" | "ATE0" | "ATE1" | "ATV1" | "ATX4" | "AT&C1" | "ATZ" | "AT+CMEE=1" | "AT+CMEE=2" => "OK".into(),
        "AT+GCAP" => "+GCAP: +CGSM,+DS".into(),
        "ATI" | "ATI0" => "FakeVendor\r\nFakeModem 4G\r\nRevision: FW-1.0\r\n\r\nOK".into(),
        "AT+CGMI" | "AT+GMI" => "FakeVendor\r\n\r\nOK".into(),
        "AT+CGMM" | "AT+GMM" => "FakeModem 4G\r\n\r\nOK".into(),
        "AT+CGMR" | "AT+GMR" => "FW-1.0\r\n\r\nOK".into(),
        "AT+CGSN" | "AT+GSN" => "356938035643809\r\n\r\nOK".into(),
        "AT+WS46=?" => "+WS46: (12,22,25,28,29)\r\n\r\nOK".into(),
        "AT+WS46?" => "+WS46: 28\r\n\r\nOK".into(),
        "AT+CGDCONT=?" => "+CGDCONT: (1-16),\"IP\",,,(0-2),(0-4)\r\n+CGDCONT: (1-16),\"IPV6\",,,(0-2),(0-4)\r\n+CGDCONT: (1-16),\"IPV4V6\",,,(0-2),(0-4)\r\n\r\nOK".into(),
        "AT+CGDCONT?" => "+CGDCONT: 1,\"IP\",\"internet\",\"0.0.0.0\",0,0\r\n\r\nOK".into(),
        "AT+CPIN?" => match scenario {
            Scenario::RegisteredLte => "+CPIN: READY\r\n\r\nOK".into(),
            Scenario::SimMissing => "+CME ERROR: 10".into(),
            Scenario::SimPin => "+CPIN: SIM PIN\r\n\r\nOK".into(),
        },
        "AT+CLCK=?" => "+CLCK: (\"SC\",\"FD\",\"PS\")\r\n\r\nOK".into(),
        c if c.starts_with("AT+CLCK=\"SC\",2") => {
            if scenario == Scenario::SimPin { "+CLCK: 1\r\n\r\nOK".into() } else { "+CLCK: 0\r\n\r\nOK".into() }
        }
        c if c.starts_with("AT+CLCK=") && c.ends_with(",2") => "+CLCK: 0\r\n\r\nOK".into(),
        "AT+CIMI" => "001010000000001\r\n\r\nOK".into(),
        "AT+CSCS=?" => "+CSCS: (\"IRA\",\"GSM\",\"UCS2\")\r\n\r\nOK".into(),
        "AT+CSCS?" => "+CSCS: \"IRA\"\r\n\r\nOK".into(),
        "AT+CNUM" => "OK".into(),
        "AT+CFUN?" => "+CFUN: 1\r\n\r\nOK".into(),
        "AT+CEMODE?" => "+CEMODE: 2\r\n\r\nOK".into(),
        "AT+CESQ=?" => "+CESQ: (0-63,99),(0-7,99),(0-96,255),(0-49,255),(0-34,255),(0-97,255)\r\n\r\nOK".into(),
        "AT+CESQ" => format!("+CESQ: 99,99,255,255,{},{}\r\n\r\nOK", lte::CESQ_RSRQ, lte::CESQ_RSRP),
        "AT+CSQ" => "+CSQ: 20,99\r\n\r\nOK".into(),
        "AT+CREG?" => format!("+CREG: 2,1,\"{:X}\",\"{:X}\",7\r\n\r\nOK", lte::TAC, lte::CELL_ID),
        "AT+CGREG?" => format!("+CGREG: 2,1,\"{:X}\",\"{:X}\",7\r\n\r\nOK", lte::TAC, lte::CELL_ID),
        "AT+CEREG?" => format!("+CEREG: 2,1,\"{:X}\",\"{:X}\",7\r\n\r\nOK", lte::TAC, lte::CELL_ID),
        c if c.starts_with("AT+COPS=3,") => {
            inner.cops_format = c.trim_start_matches("AT+COPS=3,").parse().unwrap_or(0);
            "OK".into()
        }
        "AT+COPS?" => {
            if inner.cops_format == 2 {
                format!("+COPS: 0,2,\"{}\",7\r\n\r\nOK", lte::OPERATOR_CODE)
            } else {
                format!("+COPS: 0,0,\"{}\",7\r\n\r\nOK", lte::OPERATOR_NAME)
            }
        }
        "AT+CGATT?" => "+CGATT: 1\r\n\r\nOK".into(),
        "AT+CGACT?" => "+CGACT: 1,0\r\n\r\nOK".into(),
        "AT+CCLK?" => "+CCLK: \"24/05/01,12:00:00+08\"\r\n\r\nOK".into(),
        "AT+CEER" => "+CEER: \"No cause information available\"\r\n\r\nOK".into(),
        c if c.starts_with("ATD") => "CONNECT 100000000".into(),
        // SIM file reads, PIN retries, preferred networks, messaging, USSD, voice: not
        // supported by this modem (ModemManager then leaves those features out).
        c if c.starts_with("AT+CRSM") || c.starts_with("AT+CSIM") || c.starts_with("AT+CPOL") || c.starts_with("AT+CPLS") => "ERROR".into(),
        c if c.ends_with("=?") => "ERROR".into(),
        c if c.ends_with('?') => "ERROR".into(),
        _ => "OK".into(),
    };
    frame(&body)
}

/// `\r\n<body>\r\n`: responses already end in their final result code.
fn frame(body: &str) -> String {
    format!("\r\n{body}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(s: Scenario) -> Shared {
        Shared { scenario: s, inner: Mutex::default() }
    }

    #[test]
    fn scenarios_answer_cpin() {
        assert!(answer(&shared(Scenario::RegisteredLte), "AT+CPIN?").contains("READY"));
        assert!(answer(&shared(Scenario::SimMissing), "AT+CPIN?").contains("+CME ERROR: 10"));
        assert!(answer(&shared(Scenario::SimPin), "at+cpin?").contains("SIM PIN"));
    }

    #[test]
    fn cops_follows_the_requested_format() {
        let s = shared(Scenario::RegisteredLte);
        answer(&s, "AT+COPS=3,2");
        assert!(answer(&s, "AT+COPS?").contains("\"00101\""));
        answer(&s, "AT+COPS=3,0");
        assert!(answer(&s, "AT+COPS?").contains("FakeNet"));
        assert_eq!(s.lock().log.len(), 4);
    }

    #[test]
    fn unknown_queries_fail_and_sets_succeed() {
        let s = shared(Scenario::RegisteredLte);
        assert_eq!(answer(&s, "AT+CNMI=?"), "\r\nERROR\r\n");
        assert_eq!(answer(&s, "AT+CGEREP=2"), "\r\nOK\r\n");
        assert!(answer(&s, "AT+CESQ").contains("+CESQ: 99,99,255,255,20,50"));
    }
}
