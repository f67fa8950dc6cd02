//! The real ModemManager daemon in its test mode on a [`PrivateBus`], driving
//! [`FakeAtModem`](super::at::FakeAtModem)s: the recipe from the spec's appendix.
//!
//! `ModemManager --test-session --test-enable --test-no-udev` runs on the session bus named
//! by `DBUS_SESSION_BUS_ADDRESS` (the private bus), skips modem-level polkit checks and
//! exports `org.freedesktop.ModemManager1.Test.SetProfile`, which creates a virtual modem
//! from Unix-socket AT ports. Dropping the handle kills the daemon.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

use super::{PrivateBus, fake_mm::value, tools};

const SERVICE: &str = "org.freedesktop.ModemManager1";
const MANAGER_PATH: &str = "/org/freedesktop/ModemManager1";

/// A running `ModemManager` in test mode.
#[derive(Debug)]
pub struct RealModemManager {
    child: Child,
    conn: Connection,
    log: PathBuf,
    /// The private bus's address, for `mmcli`.
    address: String,
}

impl RealModemManager {
    /// Whether the `ModemManager` binary is installed (in `PATH` or an sbin directory) and
    /// runs. Tests use [`super::tools::require`] with [`super::tools::REAL_MM`] instead, which
    /// also fails the run under `CI=true`.
    pub fn available() -> bool {
        tools::MODEM_MANAGER.path().is_some_and(|program| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Starts the daemon on `bus` and waits (at most `limit`) until it owns its name. Its log
    /// goes to `mm.log` in the bus's temporary directory.
    pub async fn start(bus: &PrivateBus, limit: Duration) -> anyhow::Result<RealModemManager> {
        let log = bus.dir().join("mm.log");
        let log_file = std::fs::File::create(&log).context("create mm.log")?;
        let program = tools::MODEM_MANAGER
            .path()
            .context("ModemManager is not installed (apt-get install modemmanager)")?;
        let child = Command::new(program)
            .args([
                "--test-session",
                "--test-enable",
                "--test-no-udev",
                "--test-no-suspend-resume",
                "--test-no-qrtr",
                "--debug",
                "--log-level=DEBUG",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("start ModemManager")?;
        let conn = zbus::connection::Builder::address(bus.address()).build().await?;
        let address = bus.address().to_owned();
        let mut mm = RealModemManager { child, conn, log, address };
        let dbus = zbus::fdo::DBusProxy::new(&mm.conn).await?;
        let start = Instant::now();
        loop {
            let name = zbus::names::BusName::try_from(SERVICE)?;
            if dbus.name_has_owner(name).await.unwrap_or(false) {
                return Ok(mm);
            }
            if let Ok(Some(status)) = mm.child.try_wait() {
                anyhow::bail!("ModemManager exited with {status}: {}", mm.log_tail(20));
            }
            if start.elapsed() > limit {
                anyhow::bail!(
                    "ModemManager did not take its bus name within {limit:?}: {}",
                    mm.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client connection on the same bus.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// `Test.SetProfile(id, plugin, ports)`: creates (or, for a known id, replaces) a virtual
    /// modem whose AT ports are the given sockets. Start the fake modem first.
    pub async fn set_profile(
        &self,
        id: &str,
        plugin: &str,
        ports: &[String],
    ) -> anyhow::Result<()> {
        self.conn
            .call_method(
                Some(SERVICE),
                MANAGER_PATH,
                Some("org.freedesktop.ModemManager1.Test"),
                "SetProfile",
                &(id, plugin, ports),
            )
            .await
            .context("Test.SetProfile")?;
        Ok(())
    }

    /// The modem object paths the daemon lists now, with their `DeviceIdentifier`.
    pub async fn modems(&self) -> anyhow::Result<Vec<(String, String)>> {
        let reply = self
            .conn
            .call_method(
                Some(SERVICE),
                MANAGER_PATH,
                Some("org.freedesktop.DBus.ObjectManager"),
                "GetManagedObjects",
                &(),
            )
            .await
            .context("GetManagedObjects")?;
        let objects: HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedVariant>>> =
            reply.body().deserialize()?;
        let mut out = Vec::new();
        for (path, ifaces) in objects {
            let id = ifaces
                .get("org.freedesktop.ModemManager1.Modem")
                .and_then(|p| p.get("DeviceIdentifier"))
                .and_then(|v| String::try_from(v.clone()).ok());
            if let Some(id) = id {
                out.push((path.as_str().to_owned(), id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Polls until a modem exists (at most `limit`) and returns its path and device id.
    pub async fn wait_for_modem(
        &self,
        limit: Duration,
        not: &[String],
    ) -> anyhow::Result<(String, String)> {
        let start = Instant::now();
        loop {
            if let Some(m) = self.modems().await?.into_iter().find(|(p, _)| !not.contains(p)) {
                return Ok(m);
            }
            if start.elapsed() > limit {
                anyhow::bail!("no modem appeared within {limit:?}: {}", self.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A property of a modem-level interface.
    pub async fn property(
        &self,
        path: &str,
        interface: &str,
        name: &str,
    ) -> anyhow::Result<OwnedVariant> {
        let reply = self
            .conn
            .call_method(
                Some(SERVICE),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(interface, name),
            )
            .await
            .with_context(|| format!("Get {interface}.{name}"))?;
        Ok(reply.body().deserialize::<OwnedVariant>()?)
    }

    /// `Modem.Enable(true)`, retried while the modem is still initializing (at most `limit`).
    pub async fn enable(&self, path: &str, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let result = self
                .conn
                .call_method(
                    Some(SERVICE),
                    path,
                    Some("org.freedesktop.ModemManager1.Modem"),
                    "Enable",
                    &(true,),
                )
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(err) if start.elapsed() > limit => {
                    return Err(
                        anyhow::Error::new(err).context(format!("Enable: {}", self.log_tail(30)))
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// `Simple.Connect({apn, ip-type = ipv4})`: returns the bearer path.
    pub async fn connect(&self, path: &str, apn: &str) -> anyhow::Result<String> {
        let settings: HashMap<&str, OwnedVariant> =
            HashMap::from([("apn", value(apn)), ("ip-type", value(1u32))]);
        let reply = self
            .conn
            .call_method(
                Some(SERVICE),
                path,
                Some("org.freedesktop.ModemManager1.Modem.Simple"),
                "Connect",
                &(settings,),
            )
            .await
            .with_context(|| format!("Simple.Connect: {}", self.log_tail(30)))?;
        let bearer: OwnedObjectPath = reply.body().deserialize()?;
        Ok(bearer.as_str().to_owned())
    }

    /// Runs `mmcli --test-session ARGS` against this daemon (at most 60 s) and returns its
    /// standard output; a failure carries mmcli's standard error.
    pub async fn mmcli(&self, args: &[&str]) -> anyhow::Result<String> {
        let program =
            tools::MMCLI.path().context("mmcli is not installed (apt-get install modemmanager)")?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg("--test-session")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .with_context(|| format!("mmcli {}: timed out", args.join(" ")))?
            .with_context(|| format!("mmcli {}", args.join(" ")))?;
        if !out.status.success() {
            anyhow::bail!(
                "mmcli {} exited with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `mmcli -m MODEM --create-bearer=apn=APN,ip-type=ipv4`: a new, unconnected bearer on the
    /// modem at `path` (ModemManager's generic plugin refuses while a PPP bearer is
    /// connected); returns the new bearer's path.
    pub async fn create_bearer(&self, path: &str, apn: &str) -> anyhow::Result<String> {
        let settings = format!("--create-bearer=apn={apn},ip-type=ipv4");
        let out = self.mmcli(&["-m", path, &settings]).await?;
        out.split_whitespace()
            .find(|w| w.starts_with("/org/freedesktop/ModemManager1/Bearer/"))
            .map(str::to_owned)
            .with_context(|| format!("mmcli --create-bearer printed no bearer path: {out}"))
    }

    /// `mmcli -b BEARER --connect`: connects a bearer created with [`Self::create_bearer`].
    pub async fn connect_bearer(&self, bearer: &str) -> anyhow::Result<()> {
        self.mmcli(&["-b", bearer, "--connect"]).await.map(drop)
    }

    /// The bearer paths the modem at `path` lists (`Modem.Bearers`).
    pub async fn bearers(&self, path: &str) -> anyhow::Result<Vec<String>> {
        let v = self.property(path, "org.freedesktop.ModemManager1.Modem", "Bearers").await?;
        let paths = Vec::<OwnedObjectPath>::try_from(v).context("Bearers is not ao")?;
        Ok(paths.iter().map(|p| p.as_str().to_owned()).collect())
    }

    /// The last `lines` lines of the daemon's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for RealModemManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two unique abstract socket names for one fake modem (`abstract:mmsim-<pid>-<n>-a|b`).
pub fn port_names(tag: &str) -> Vec<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    vec![format!("abstract:mmsim-{pid}-{tag}-{n}-a"), format!("abstract:mmsim-{pid}-{tag}-{n}-b")]
}
