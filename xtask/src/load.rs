//! Load generation shared by `cargo xtask bench` and `cargo xtask soak`: one exporter and its
//! simulated device started from release builds ([`Rig`]), a keep-alive scrape client that
//! sends what Prometheus sends ([`Scraper`]), the device's request and busy-time counters
//! ([`DeviceCtl`]) and the exporter's resident memory, CPU time and open file descriptors
//! read from `/proc` ([`ProcStats`]).
//!
//! Everything runs on loopback inside a [`Group`], so no process outlives the command.

use std::{
    fmt, fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream, ToSocketAddrs as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;

use crate::{
    sh,
    stack::{self, Group},
};

/// The devices the benchmarks and the soak drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Linkhub,
    Mm,
    Ttn,
    Smarthub,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Linkhub, Kind::Mm, Kind::Ttn, Kind::Smarthub];

    /// The exporter binary.
    pub fn binary(self) -> &'static str {
        match self {
            Kind::Linkhub => "linkhub-exporter",
            Kind::Mm => "mm-exporter",
            Kind::Ttn => "ttn-exporter",
            Kind::Smarthub => "smarthub-exporter",
        }
    }

    /// The metric namespace (`<ns>_up`).
    pub fn namespace(self) -> &'static str {
        match self {
            Kind::Linkhub => "linkhub",
            Kind::Mm => "modemmanager",
            Kind::Ttn => "ttn",
            Kind::Smarthub => "smarthub",
        }
    }

    /// Short name, as on the command line (`--only linkhub,mm`).
    pub fn short(self) -> &'static str {
        match self {
            Kind::Linkhub => "linkhub",
            Kind::Mm => "mm",
            Kind::Ttn => "ttn",
            Kind::Smarthub => "smarthub",
        }
    }

    /// Parses `--only` values.
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<Kind>> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Kind::ALL.into_iter().find(|k| k.short() == s).with_context(|| {
                    format!("unknown exporter {s:?} (one of linkhub, mm, ttn, smarthub)")
                })
            })
            .collect()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// `cargo build --profile PROFILE` of device-sim and the four exporters; returns the directory
/// of the binaries. With `release` the exporters are built exactly as packaged.
pub fn build(profile: &str) -> anyhow::Result<PathBuf> {
    let mut cmd = sh::cargo();
    cmd.args(["build", "--locked", "--profile", profile]);
    for p in stack::PACKAGES {
        cmd.args(["-p", p]);
    }
    let started = Instant::now();
    sh::run(&mut cmd)?;
    eprintln!("{profile} build done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(profile_dir(profile))
}

/// Where cargo puts the binaries of `profile`.
pub fn profile_dir(profile: &str) -> PathBuf {
    stack::target_dir().join(if profile == "dev" { "debug" } else { profile })
}

// ---------------------------------------------------------------------------------------------
// The device side.

/// The control API of one simulated device server: its request counter and busy time
/// (`GET …/requests`) and its latency knob (`POST …/latency?ms=`).
#[derive(Debug, Clone)]
pub struct DeviceCtl {
    /// `http://127.0.0.1:PORT/_sim` for HTTP devices, the modem's `--control` URL for D-Bus.
    pub base: String,
    /// For faults: the HTTP device's own URL (absent for the modem).
    pub http: bool,
}

/// Requests answered and busy time of a device (summed over its servers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCount {
    pub requests: u64,
    pub busy_us: u64,
}

impl std::ops::Sub for DeviceCount {
    type Output = DeviceCount;
    fn sub(self, rhs: DeviceCount) -> DeviceCount {
        DeviceCount {
            requests: self.requests.saturating_sub(rhs.requests),
            busy_us: self.busy_us.saturating_sub(rhs.busy_us),
        }
    }
}

impl DeviceCtl {
    fn count(&self, conn: &mut Scraper) -> anyhow::Result<DeviceCount> {
        let answer = conn.get(&format!("{}/requests", self.path()))?;
        anyhow::ensure!(answer.status == 200, "{}/requests: HTTP {}", self.base, answer.status);
        let v: Value = serde_json::from_slice(&answer.body)
            .with_context(|| format!("{}/requests: not JSON", self.base))?;
        let field = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok(DeviceCount { requests: field("_total"), busy_us: field("_busy_us") })
    }

    fn path(&self) -> &str {
        self.base
            .split_once("//")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("")
    }
}

/// All servers of one device (TTN has an Identity Server and a cluster), with one keep-alive
/// control connection each.
#[derive(Debug)]
pub struct Device {
    servers: Vec<(DeviceCtl, Scraper)>,
}

impl Device {
    /// One keep-alive control connection to each of `servers`.
    pub fn new(servers: Vec<DeviceCtl>) -> anyhow::Result<Device> {
        let servers = servers
            .into_iter()
            .map(|ctl| {
                let conn = Scraper::new(&ctl.base)?;
                Ok((ctl, conn))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Device { servers })
    }

    /// Requests and busy time so far, summed over the servers.
    pub fn count(&mut self) -> anyhow::Result<DeviceCount> {
        let mut sum = DeviceCount::default();
        for (ctl, conn) in &mut self.servers {
            let c = ctl.count(conn)?;
            sum.requests += c.requests;
            sum.busy_us += c.busy_us;
        }
        Ok(sum)
    }

    /// Sets the latency every server adds before answering.
    pub fn set_latency(&mut self, ms: u64) -> anyhow::Result<()> {
        for (ctl, conn) in &mut self.servers {
            let path = format!("{}/latency?ms={ms}", ctl.path());
            let answer = conn.post(&path)?;
            anyhow::ensure!(answer.status == 200, "{path}: HTTP {}", answer.status);
        }
        Ok(())
    }

    /// Sets (`Some("reset-mid-body")`) or clears (`None`) a fault on every HTTP server;
    /// `Ok(false)` for the modem, which has no HTTP faults.
    pub fn set_fault(&mut self, fault: Option<&str>) -> anyhow::Result<bool> {
        let mut any = false;
        for (ctl, conn) in &mut self.servers {
            if !ctl.http {
                continue;
            }
            let kind = match fault.and_then(|f| f.split_once(':')) {
                Some(("status", code)) => format!("status&code={code}"),
                _ => fault.unwrap_or("none").to_owned(),
            };
            let path = format!("{}/fault?kind={kind}", ctl.path());
            let answer = conn.post(&path)?;
            anyhow::ensure!(
                answer.status == 200,
                "{path}: HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            );
            any = true;
        }
        Ok(any)
    }
}

// ---------------------------------------------------------------------------------------------
// One exporter with its device.

/// Options of a [`Rig`].
#[derive(Debug, Clone, Default)]
pub struct RigOptions {
    /// Gateways of the TTN simulator (one cluster).
    pub ttn_gateways: usize,
    /// Extra exporter flags (e.g. `--stats-ttl 1ms`).
    pub exporter_args: Vec<String>,
}

/// An exporter (release build) and its simulated device, running in a [`Group`].
#[derive(Debug)]
pub struct Rig {
    pub kind: Kind,
    /// `127.0.0.1:PORT` of the exporter.
    pub addr: String,
    pub pid: u32,
    /// Index of the exporter in the group (for [`Group::check_running`]).
    pub index: usize,
    pub device: Device,
}

impl Rig {
    /// Starts the simulator of `kind` and its exporter from `bin_dir` and waits until the
    /// exporter answers `/-/healthy`.
    pub fn start(
        group: &mut Group,
        bin_dir: &Path,
        kind: Kind,
        opts: &RigOptions,
    ) -> anyhow::Result<Rig> {
        Rig::start_under(group, bin_dir, kind, opts, &[])
    }

    /// [`Rig::start`] with the exporter run under `wrapper` (a program and its flags, e.g.
    /// `valgrind --tool=callgrind`; empty: the exporter itself).
    pub fn start_under(
        group: &mut Group,
        bin_dir: &Path,
        kind: Kind,
        opts: &RigOptions,
        wrapper: &[String],
    ) -> anyhow::Result<Rig> {
        let sim = bin_dir.join("device-sim");
        let name = kind.short();
        let http_sim = |group: &mut Group, args: &[&str]| -> anyhow::Result<String> {
            let mut cmd = Command::new(&sim);
            cmd.args(args).args(["--listen", "127.0.0.1:0"]);
            let index = group.spawn(&format!("sim-{name}"), cmd)?;
            group.wait_line(index, "listening on ", Duration::from_secs(20))
        };
        let (args, servers) = match kind {
            Kind::Linkhub => {
                let url = http_sim(group, &["linkhub"])?;
                let password = group.dir().join("linkhub-password");
                fs::write(&password, "admin\n").context("write the LinkHub password file")?;
                let args = vec![
                    "--target".to_owned(),
                    url.clone(),
                    "--password-file".to_owned(),
                    stack::path_arg(&password),
                ];
                (args, vec![DeviceCtl { base: format!("{url}/_sim"), http: true }])
            }
            Kind::Smarthub => {
                let url = http_sim(group, &["smarthub"])?;
                let args = vec!["--target".to_owned(), url.clone()];
                (args, vec![DeviceCtl { base: format!("{url}/_sim"), http: true }])
            }
            Kind::Ttn => {
                let gateways = opts.ttn_gateways.max(1).to_string();
                let mut cmd = Command::new(&sim);
                cmd.args(["ttn", "--listen", "127.0.0.1:0", "--clusters", "eu1"])
                    .args(["--gateways", &gateways]);
                let index = group.spawn("sim-ttn", cmd)?;
                let key = group.wait_line(index, "user key (TTN_API_KEY): ", secs(20))?;
                let flags = group.wait_line(index, "exporter flags: ", secs(1))?;
                let identity = group.wait_line(index, "identity ", secs(1))?;
                let cluster = group.wait_line(index, "cluster eu1 ", secs(1))?;
                let cluster = cluster.split_whitespace().next().unwrap_or_default().to_owned();
                let key_file = group.dir().join("ttn-api-key");
                fs::write(&key_file, format!("{key}\n")).context("write the TTN API key file")?;
                let mut args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
                args.extend(["--api-key-file".to_owned(), stack::path_arg(&key_file)]);
                let servers = vec![
                    DeviceCtl { base: format!("{identity}/_sim"), http: true },
                    DeviceCtl { base: format!("{cluster}/_sim"), http: true },
                ];
                (args, servers)
            }
            Kind::Mm => {
                let mut cmd = Command::new(&sim);
                cmd.args(["modem", "--control", "127.0.0.1:0"]);
                let index = group.spawn("sim-mm", cmd)?;
                let bus = group.wait_line(index, "listening on ", secs(20))?;
                let control = group.wait_line(index, "control ", secs(5))?;
                let args = vec!["--bus-address".to_owned(), bus];
                (args, vec![DeviceCtl { base: control, http: false }])
            }
        };
        let mut args = args;
        args.extend(opts.exporter_args.iter().cloned());
        let mut program = bin_dir.join(kind.binary());
        if let Some((wrapper, flags)) = wrapper.split_first() {
            let mut wrapped = flags.to_vec();
            wrapped.push(stack::path_arg(&program));
            wrapped.extend(args);
            args = wrapped;
            program = PathBuf::from(wrapper);
        }
        let names = (kind.binary(), kind.namespace(), kind.short());
        let (index, exporter) =
            stack::start_exporter_from(group, &program, names, &args, (Vec::new(), 0))?;
        let healthy = if wrapper.is_empty() { secs(20) } else { secs(120) };
        group.wait_http_ok(index, &format!("{}/-/healthy", exporter.url), healthy)?;
        let pid = group.proc(index)?.pid();
        Ok(Rig {
            kind,
            addr: exporter.address().to_owned(),
            pid,
            index,
            device: Device::new(servers)?,
        })
    }

    /// A new keep-alive scrape connection to the exporter.
    pub fn scraper(&self) -> anyhow::Result<Scraper> {
        Scraper::new(&format!("http://{}", self.addr))
    }

    /// The exporter's memory, CPU time and descriptors now.
    pub fn stats(&self) -> anyhow::Result<ProcStats> {
        ProcStats::read(self.pid)
    }

    /// One plain-text scrape that must report `<ns>_up 1`.
    pub fn check_up(&self) -> anyhow::Result<()> {
        let mut conn = self.scraper()?;
        let answer = conn.scrape("/metrics", false, 10.0)?;
        let text = String::from_utf8_lossy(&answer.body);
        let up = format!("\n{}_up 1\n", self.kind.namespace());
        anyhow::ensure!(
            answer.status == 200 && text.contains(&up),
            "{}: expected HTTP 200 with `{}_up 1`, got HTTP {}:\n{}",
            self.kind,
            self.kind.namespace(),
            answer.status,
            text.lines()
                .filter(|l| l.contains("_up") || l.contains("error"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------------
// The exporter process.

/// What `/proc` says about a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// Resident set size (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub hwm_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: u64,
}

impl ProcStats {
    pub fn read(pid: u32) -> anyhow::Result<ProcStats> {
        let dir = PathBuf::from("/proc").join(pid.to_string());
        let status = fs::read_to_string(dir.join("status"))
            .with_context(|| format!("read /proc/{pid}/status (did the process exit?)"))?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
                .unwrap_or(0)
        };
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
            .unwrap_or(0);
        let stat = fs::read_to_string(dir.join("stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
        let cpu_ticks = ticks(11) + ticks(12);
        let fds =
            fs::read_dir(dir.join("fd")).with_context(|| format!("list /proc/{pid}/fd"))?.count();
        Ok(ProcStats {
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
            cpu_seconds: cpu_ticks as f64 / clock_ticks()? as f64,
            fds,
            threads,
        })
    }
}

/// Nanoseconds the threads of `pid` have spent on a CPU (the first field of each
/// `/proc/<pid>/task/<tid>/schedstat`): precise where `/proc/<pid>/stat` counts 10 ms ticks.
/// Threads that ended are not counted (the exporters' threads live as long as they do,
/// except idle blocking-pool threads).
pub fn oncpu_ns(pid: u32) -> anyhow::Result<u64> {
    let dir = PathBuf::from("/proc").join(pid.to_string()).join("task");
    let mut total = 0;
    for entry in fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
        let Ok(entry) = entry else { continue };
        // A thread may end between the listing and the read.
        let Ok(text) = fs::read_to_string(entry.path().join("schedstat")) else { continue };
        total += text.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

/// User and system CPU seconds of `pid` so far (`/proc/<pid>/stat`, in clock ticks).
pub fn user_system_seconds(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let hz = clock_ticks()? as f64;
    Ok((ticks(11) as f64 / hz, ticks(12) as f64 / hz))
}

/// `getconf CLK_TCK` (100 on Linux), read once.
fn clock_ticks() -> anyhow::Result<u64> {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if let Some(t) = TICKS.get() {
        return Ok(*t);
    }
    let out = Command::new("getconf").arg("CLK_TCK").output().context("run getconf CLK_TCK")?;
    let ticks: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")?;
    Ok(*TICKS.get_or_init(|| ticks.max(1)))
}

// ---------------------------------------------------------------------------------------------
// The scrape client.

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The body as sent (gzip when asked for and the server compressed it).
    pub body: Vec<u8>,
}

/// A keep-alive HTTP/1.1 connection to one server, reconnecting when the server closed it.
/// Scrapes send Prometheus's own headers (`Accept`, `Accept-Encoding: gzip`,
/// `X-Prometheus-Scrape-Timeout-Seconds`).
#[derive(Debug)]
pub struct Scraper {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    /// Bytes read past the end of the previous answer (none with one request at a time).
    buf: Vec<u8>,
}

/// Largest answer read (a TTN account of 10,000 gateways is about 20 MB of text).
const MAX_ANSWER: usize = 64 << 20;
/// What Prometheus 2.x sends as `Accept` on a scrape.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

impl Scraper {
    /// A client for `http://host:port[/…]` (connects lazily).
    pub fn new(url: &str) -> anyhow::Result<Scraper> {
        let rest = url.strip_prefix("http://").with_context(|| format!("not http://: {url}"))?;
        let host = rest.split('/').next().unwrap_or(rest).to_owned();
        let addr = host
            .to_socket_addrs()
            .with_context(|| format!("resolve {host}"))?
            .next()
            .with_context(|| format!("no address for {host}"))?;
        anyhow::ensure!(addr.ip().is_loopback(), "load goes to loopback only, not {addr}");
        Ok(Scraper { addr, host, stream: None, buf: Vec::new() })
    }

    /// A scrape of `path` as Prometheus does it, with a scrape timeout of `timeout` seconds.
    pub fn scrape(&mut self, path: &str, gzip: bool, timeout: f64) -> anyhow::Result<Answer> {
        let encoding = if gzip { "gzip" } else { "identity" };
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: {PROMETHEUS_ACCEPT}\r\nAccept-Encoding: {encoding}\r\nX-Prometheus-Scrape-Timeout-Seconds: {timeout}\r\n\r\n",
            self.host
        );
        self.exchange(&head, Duration::from_secs_f64(timeout + 5.0))
    }

    /// A plain GET (control APIs).
    pub fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.exchange(&head, secs(10))
    }

    /// A POST with an empty body (control APIs).
    pub fn post(&mut self, path: &str) -> anyhow::Result<Answer> {
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n", self.host);
        self.exchange(&head, secs(10))
    }

    /// Drops the connection (the next request opens a new one).
    pub fn close(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    fn exchange(&mut self, head: &str, timeout: Duration) -> anyhow::Result<Answer> {
        // A kept-alive connection the server has closed fails on first use: retry once on a
        // new one, as HTTP clients do for idempotent requests.
        let reused = self.stream.is_some();
        match self.try_exchange(head, timeout) {
            Ok(answer) => Ok(answer),
            Err(_) if reused => {
                self.close();
                self.try_exchange(head, timeout)
            }
            Err(err) => Err(err),
        }
    }

    fn try_exchange(&mut self, head: &str, timeout: Duration) -> anyhow::Result<Answer> {
        let result = self.exchange_once(head, timeout);
        if result.is_err() {
            self.close();
        }
        result
    }

    fn exchange_once(&mut self, head: &str, timeout: Duration) -> anyhow::Result<Answer> {
        let deadline = Instant::now() + timeout;
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, secs(5))
                .with_context(|| format!("connect {}", self.addr))?;
            stream.set_nodelay(true).context("set TCP_NODELAY")?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let addr = self.addr;
        let stream = self.stream.as_mut().context("no connection")?;
        stream.set_write_timeout(Some(timeout)).context("set write timeout")?;
        stream.write_all(head.as_bytes()).with_context(|| format!("send to {addr}"))?;
        let buf = &mut self.buf;
        let mut chunk = [0u8; 32 * 1024];
        let mut read_more = |buf: &mut Vec<u8>| -> anyhow::Result<()> {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(!left.is_zero(), "{addr}: no complete answer within {timeout:?}");
            stream.set_read_timeout(Some(left)).context("set read timeout")?;
            let n = stream.read(&mut chunk).with_context(|| format!("read from {addr}"))?;
            anyhow::ensure!(n > 0, "{addr} closed the connection");
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            anyhow::ensure!(buf.len() <= MAX_ANSWER, "{addr}: answer over {MAX_ANSWER} bytes");
            Ok(())
        };
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            read_more(buf)?;
        };
        let head_text =
            String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default()).into_owned();
        let mut lines = head_text.lines();
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{addr}: bad status line {status_line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        for line in lines {
            let Some((k, v)) = line.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                _ => {}
            }
        }
        buf.drain(..head_end);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                    read_more(buf)?;
                    continue;
                };
                let size_text = String::from_utf8_lossy(buf.get(..eol).unwrap_or_default())
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let size = usize::from_str_radix(&size_text, 16)
                    .with_context(|| format!("{addr}: bad chunk size {size_text:?}"))?;
                while buf.len() < eol + 2 + size + 2 {
                    read_more(buf)?;
                }
                body.extend_from_slice(buf.get(eol + 2..eol + 2 + size).unwrap_or_default());
                buf.drain(..eol + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else if let Some(length) = length {
            while buf.len() < length {
                read_more(buf)?;
            }
            buf.drain(..length).collect()
        } else {
            // Neither: the body ends when the server closes.
            loop {
                match read_more(buf) {
                    Ok(()) => {}
                    Err(_) => break std::mem::take(buf),
                }
            }
        };
        if close || (!chunked && length.is_none()) {
            self.close();
        }
        Ok(Answer { status, body })
    }
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// Replaces what stands between `<!-- generated by cargo xtask NAME: start -->` and its `end`
/// marker in the document `doc` (relative to the workspace root) with a line naming
/// `command` and then `report`.
pub fn write_generated(doc: &str, name: &str, command: &str, report: &str) -> anyhow::Result<()> {
    let start = format!("<!-- generated by cargo xtask {name}: start -->");
    let end = format!("<!-- generated by cargo xtask {name}: end -->");
    let path = sh::root().join(doc);
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let (Some(a), Some(b)) = (text.find(&start), text.find(&end)) else {
        anyhow::bail!("{} has no `{start}` … `{end}` section", path.display());
    };
    anyhow::ensure!(a < b, "{}: the {name} markers are out of order", path.display());
    let new = format!(
        "{}{start}\n\nReproduce with `{command}`.\n{report}\n{end}{}",
        &text[..a],
        &text[b + end.len()..]
    );
    fs::write(&path, new).with_context(|| format!("write {}", path.display()))?;
    eprintln!("{name}: wrote {}", path.display());
    Ok(())
}

/// The `p`-th percentile (0–100) of sorted `values` (nearest rank); 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied().unwrap_or(0.0)
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(Kind::parse_list("mm, ttn").unwrap(), vec![Kind::Mm, Kind::Ttn]);
        assert!(Kind::parse_list("modem").is_err());
    }

    #[test]
    fn own_process_stats_are_read() {
        let stats = ProcStats::read(std::process::id()).unwrap();
        assert!(stats.rss_kib > 0 && stats.hwm_kib >= stats.rss_kib);
        assert!(stats.fds >= 3 && stats.threads >= 1);
        // Other test threads come and go (and take their time with them), so the growth is
        // checked on this thread's own counter, read the way `oncpu_ns` reads each thread's.
        assert!(oncpu_ns(std::process::id()).unwrap() > 0);
        let this_thread = || {
            let text = fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            text.split_whitespace().next().unwrap().parse::<u64>().unwrap()
        };
        let a = this_thread();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(this_thread() > a);
    }

    #[test]
    fn scraper_refuses_other_hosts() {
        assert!(Scraper::new("http://192.0.2.1:80/metrics").is_err());
        assert!(Scraper::new("https://127.0.0.1:1").is_err());
    }
}
