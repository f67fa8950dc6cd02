//! The ModemManager simulators.
//!
//! - [`PrivateBus`]: a private `dbus-daemon` on a temporary Unix socket, killed on drop, so
//!   tests never touch the system or session bus.
//! - [`fake_mm`]: a fake ModemManager served with zbus on such a bus, with a hand-built
//!   `GetManagedObjects`, state that tests change at run time, and fault knobs (slow replies,
//!   `Unauthorized`, old-daemon shapes).
//! - [`at`]: a fake AT-command modem on Unix sockets that the real ModemManager drives in its
//!   test mode (`--test-session --test-enable --test-no-udev`, `Test.SetProfile`), and
//!   [`real_mm`], which runs that daemon on a private bus.
//! - [`tools`]: finding `dbus-daemon`, `ModemManager` and `mmcli`, and failing under `CI=true`
//!   (skipping loudly elsewhere) when one is missing.

pub mod at;
pub mod fake_mm;
pub mod real_mm;
pub mod replay;
pub mod tools;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use argh::FromArgs;

pub use fake_mm::{FakeModem, FakeModemManager};

/// A private `dbus-daemon` listening on a socket in a fresh temporary directory.
///
/// Dropping it kills the daemon and removes the directory.
#[derive(Debug)]
pub struct PrivateBus {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl PrivateBus {
    /// Starts `dbus-daemon --session --nofork --print-address` on a new socket and waits
    /// until it printed its address (at most 10 s).
    pub fn start() -> anyhow::Result<PrivateBus> {
        let dir = temp_dir("mmbus")?;
        let socket = dir.join("bus");
        let program = tools::DBUS_DAEMON.path().unwrap_or_else(|| PathBuf::from("dbus-daemon"));
        let mut child = Command::new(program)
            .args(["--session", "--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start dbus-daemon (apt-get install dbus)")?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            anyhow::bail!("dbus-daemon: no stdout");
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let address = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if !line.trim().is_empty() => line.trim().to_owned(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
                anyhow::bail!("dbus-daemon printed no address within 10 s");
            }
        };
        Ok(PrivateBus { child, address, dir })
    }

    /// The bus address, e.g. `unix:path=/tmp/mmbus-123-0/bus,guid=…`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The temporary directory the socket lives in (also usable for other test files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new, empty directory under the system temp dir, unique per process and call.
pub fn temp_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

#[derive(FromArgs, Debug)]
/// Simulated ModemManager. By default starts a private dbus-daemon with a fake ModemManager
/// on it and prints the bus address; with --at-socket, serves a fake AT modem instead.
struct Args {
    /// d-bus address to serve the fake ModemManager on (default: start a private bus)
    #[argh(option)]
    bus_address: Option<String>,
    /// number of fake LTE modems to create (default 1)
    #[argh(option, default = "1")]
    modems: u32,
    /// serve a fake AT modem on this unix socket (abstract:NAME or a path); repeat for a
    /// second port
    #[argh(option)]
    at_socket: Vec<String>,
    /// AT modem scenario: registered-lte, sim-missing, sim-pin (default registered-lte)
    #[argh(option, default = "String::from(\"registered-lte\")")]
    scenario: String,
    /// accepted for symmetry with the HTTP devices; ignored
    #[argh(option)]
    listen: Option<String>,
    /// also serve an HTTP control API on this loopback address (e.g. 127.0.0.1:0), for
    /// benchmarks: GET /requests (calls by member, `_total`, `_busy_us`), POST /latency?ms=N,
    /// POST /reset; its URL is printed as `control http://ADDR`
    #[argh(option)]
    control: Option<std::net::SocketAddr>,
}

/// The `--control` API over a running fake (see [`Args::control`]).
struct Control(fake_mm::Monitor);

impl crate::http::HttpDevice for Control {
    fn handle(&self, req: &crate::http::Request, _ctx: &crate::http::Ctx) -> crate::http::Response {
        use crate::http::Response;
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/requests") => {
                let calls = self.0.calls();
                let total: u64 = calls.values().sum();
                let mut map: serde_json::Map<String, serde_json::Value> =
                    calls.into_iter().map(|(k, v)| (k, serde_json::Value::from(v))).collect();
                map.insert("_total".to_owned(), total.into());
                map.insert("_busy_us".to_owned(), self.0.busy().total_micros().into());
                Response::json(200, &serde_json::Value::Object(map))
            }
            ("POST", "/latency") => match req.query_param("ms").map(|ms| ms.parse::<u64>()) {
                Some(Ok(ms)) => {
                    self.0.set_delay(Duration::from_millis(ms));
                    Response::text(200, "ok\n")
                }
                _ => Response::text(400, "latency: expected ?ms=<milliseconds>\n"),
            },
            ("POST", "/reset") => {
                self.0.reset();
                Response::text(200, "ok\n")
            }
            _ => Response::text(404, "control: GET /requests, POST /latency?ms=N, POST /reset\n"),
        }
    }
}

/// Runs the simulator from the command line (`device-sim modem …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    let args = match Args::from_args(&["device-sim modem"], args) {
        Ok(args) => args,
        Err(early) => {
            if early.status.is_ok() {
                println!("{}", early.output);
                return Ok(());
            }
            anyhow::bail!("{}", early.output.trim());
        }
    };
    let _ = &args.listen;
    if !args.at_socket.is_empty() {
        let scenario: at::Scenario = args.scenario.parse()?;
        let modem = at::FakeAtModem::start(&args.at_socket, scenario).await?;
        println!("listening on {}", args.at_socket.join(","));
        flush();
        wait_for_stop().await?;
        modem.stop();
        return Ok(());
    }
    let private = match &args.bus_address {
        Some(_) => None,
        None => Some(PrivateBus::start()?),
    };
    let address = match (&args.bus_address, &private) {
        (Some(a), _) => a.clone(),
        (None, Some(bus)) => bus.address().to_owned(),
        (None, None) => anyhow::bail!("no bus"),
    };
    let fake = FakeModemManager::start(&address).await?;
    for i in 0..args.modems {
        fake.add_modem(FakeModem::lte(&format!("{:040x}", 0xfa4e_0000_u64 + u64::from(i)))).await?;
    }
    let control = match args.control {
        Some(listen) => {
            let server =
                crate::http::SimServer::start(Arc::new(Control(fake.monitor())), listen).await?;
            Some(server)
        }
        None => None,
    };
    println!("listening on {address}");
    if let Some(server) = &control {
        println!("control {}", server.url());
    }
    flush();
    wait_for_stop().await?;
    drop(control);
    fake.stop().await;
    drop(private);
    Ok(())
}

/// Waits for SIGINT or SIGTERM, so the private bus is cleaned up either way.
async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn flush() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
