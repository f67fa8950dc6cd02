//! Process orchestration shared by `cargo xtask demo` and `cargo xtask e2e`: the simulators,
//! the four exporters and Prometheus as child processes on loopback, and a small HTTP client
//! to talk to them.
//!
//! No orphans: every child runs in one process group led by a watchdog (`sh`), which reads
//! the children's pids on its stdin. When xtask stops the stack ([`Group::stop`], also on
//! drop, so a failed step or a panic cleans up) or dies in any way (Ctrl-C, SIGTERM, even
//! SIGKILL), the watchdog's stdin closes or says `stop`; it then sends SIGINT to the whole
//! group (grandchildren such as the modem simulator's `dbus-daemon` included), waits a
//! bounded time for the children to exit and SIGKILLs what is left. xtask itself needs no
//! signal handler for this (std has none, and xtask keeps to three dependencies).
//!
//! Every wait here is bounded in time; every loop is bounded in count and time.

use std::{
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, ToSocketAddrs as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;

use crate::sh;

/// The binaries the stack runs, built with one `cargo build`.
pub const PACKAGES: [&str; 5] =
    ["device-sim", "linkhub-exporter", "mm-exporter", "ttn-exporter", "smarthub-exporter"];

/// How long a child gets after SIGINT before the watchdog sends SIGKILL (tenths of a second).
const GRACE_TENTHS: u32 = 50;

/// The watchdog: collects pids from stdin; on `stop` or EOF interrupts the group, waits up to
/// [`GRACE_TENTHS`] for the listed pids to exit (zombies count as exited) and kills the
/// group, itself included. `$1` is printed to stderr when xtask went away without `stop`.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
pids=
stopped=
while read -r line; do
  case "$line" in
    stop) stopped=1; break ;;
    *[!0-9]*|'') ;;
    *) pids="$pids $line" ;;
  esac
done
kill -INT 0 2>/dev/null
i=0
while [ "$i" -lt "$2" ]; do
  alive=
  for p in $pids; do
    if [ -r "/proc/$p/stat" ]; then
      read -r _ _ st _ < "/proc/$p/stat" 2>/dev/null || st=Z
      [ "$st" != Z ] && alive=1
    fi
  done
  [ -z "$alive" ] && break
  sleep 0.1
  i=$((i + 1))
done
if [ -z "$stopped" ] && [ -n "$1" ]; then echo "$1" >&2; fi
kill -KILL 0
"#;

/// A process group of children, with the watchdog that ends them (see the module docs).
pub struct Group {
    pgid: u32,
    watchdog: Child,
    watchdog_in: Option<ChildStdin>,
    procs: Vec<Proc>,
    /// Commands run to completion by [`Group::run`], for unique log names.
    runs: usize,
    /// [`Group::stop`] has run (it runs once).
    stopped: bool,
    dir: PathBuf,
}

/// One child of a [`Group`]: its name (also the log file name) and process.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
    /// Its exit is expected (a failed attempt that was retried): not reported by `exited`.
    retired: bool,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Group {
    /// Starts the watchdog; logs of the children go to `dir/<name>.log` (created, emptied
    /// first). `farewell` is printed by the watchdog when it ends the group because xtask died
    /// (e.g. on Ctrl-C); empty prints nothing.
    pub fn new(dir: &Path, farewell: &str) -> anyhow::Result<Group> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "uplink-watchdog", farewell, &GRACE_TENTHS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .context("start the watchdog (sh)")?;
        let watchdog_in = watchdog.stdin.take();
        let pgid = watchdog.id();
        Ok(Group {
            pgid,
            watchdog,
            watchdog_in,
            procs: Vec::new(),
            runs: 0,
            stopped: false,
            dir: dir.to_path_buf(),
        })
    }

    /// The process group id of every child (the watchdog's pid).
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// The directory holding the logs (and whatever else callers put there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts `cmd` in the group with stdin closed and stdout and stderr appended to
    /// `<dir>/<name>.log`; returns its index for [`Group::proc`].
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> anyhow::Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone().with_context(|| format!("reopen {}", log.display()))?;
        let shown = sh::display(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(i32::try_from(self.pgid).context("process group id out of range")?)
            .spawn()
            .with_context(|| format!("start {name}: `{shown}`"))?;
        if let Some(stdin) = self.watchdog_in.as_mut() {
            // The group kill covers this child even if the watchdog is gone; the pid only
            // bounds its wait, so a failed write is not an error.
            let _ = writeln!(stdin, "{}", child.id());
        }
        self.procs.push(Proc { name: name.to_owned(), log, child, retired: false });
        Ok(self.procs.len() - 1)
    }

    /// Runs `cmd` to completion in the group (stdin from `stdin` or closed, stdout captured,
    /// stderr to `<dir>/<name>.log`), killing it after `timeout`: (success, stdout, stderr).
    pub fn run(
        &mut self,
        name: &str,
        mut cmd: Command,
        stdin: Option<&Path>,
        timeout: Duration,
    ) -> anyhow::Result<(bool, String, String)> {
        self.runs += 1;
        let name = format!("{name}-{}", self.runs);
        let out_path = self.dir.join(format!("{name}.out"));
        let log = self.dir.join(format!("{name}.log"));
        let out = fs::File::create(&out_path)
            .with_context(|| format!("create {}", out_path.display()))?;
        let err = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let input = match stdin {
            Some(path) => Stdio::from(
                fs::File::open(path).with_context(|| format!("open {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let shown = sh::display(&cmd);
        let mut child = cmd
            .stdin(input)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(i32::try_from(self.pgid).context("process group id out of range")?)
            .spawn()
            .with_context(|| format!("start `{shown}`"))?;
        if let Some(stdin) = self.watchdog_in.as_mut() {
            let _ = writeln!(stdin, "{}", child.id());
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().with_context(|| format!("wait `{shown}`"))? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("`{shown}` did not finish within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let stdout = fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = fs::read_to_string(&log).unwrap_or_default();
        Ok((status.success(), stdout, stderr))
    }

    /// The child at `index` (from [`Group::spawn`]).
    pub fn proc(&self, index: usize) -> anyhow::Result<&Proc> {
        self.procs.get(index).with_context(|| format!("no process #{index}"))
    }

    /// Err naming the child and showing its log tail if it has exited.
    pub fn check_running(&mut self, index: usize) -> anyhow::Result<()> {
        let proc = self.procs.get_mut(index).with_context(|| format!("no process #{index}"))?;
        if let Some(status) =
            proc.child.try_wait().with_context(|| format!("wait {}", proc.name))?
        {
            anyhow::bail!("{} exited ({status}); its log:\n{}", proc.name, log_tail(&proc.log, 20));
        }
        Ok(())
    }

    /// Children that have exited, as `name (status)`.
    pub fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for proc in self.procs.iter_mut().filter(|p| !p.retired) {
            if let Ok(Some(status)) = proc.child.try_wait() {
                out.push(format!("{} ({status})", proc.name));
            }
        }
        out
    }

    /// Waits until the log of child `index` has a line starting with `prefix` and returns
    /// the rest of that line; fails when the child exits or `timeout` passes.
    pub fn wait_line(
        &mut self,
        index: usize,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = &self.proc(index)?.log;
            if let Ok(text) = fs::read_to_string(log)
                && let Some(rest) = text.lines().find_map(|l| l.strip_prefix(prefix))
            {
                return Ok(rest.trim().to_owned());
            }
            self.check_running(index)?;
            if Instant::now() >= deadline {
                let proc = self.proc(index)?;
                anyhow::bail!(
                    "{} printed no {prefix:?} line within {timeout:?}; its log:\n{}",
                    proc.name,
                    log_tail(&proc.log, 20)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `url` answers 200 (e.g. `/-/healthy`), failing when child `index` exits or
    /// `timeout` passes.
    pub fn wait_http_ok(
        &mut self,
        index: usize,
        url: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match get(url, Duration::from_secs(2)) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("HTTP {status}: {}", first_line(&body)),
                Err(err) => format!("{err:#}"),
            };
            self.check_running(index)?;
            if Instant::now() >= deadline {
                let proc = self.proc(index)?;
                anyhow::bail!(
                    "{} did not answer {url} within {timeout:?} (last: {last}); its log:\n{}",
                    proc.name,
                    log_tail(&proc.log, 20)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops every child (see the module docs) and reaps them; bounded to a few seconds.
    /// Returns how many children were still running and were stopped.
    pub fn stop(&mut self) -> usize {
        if std::mem::replace(&mut self.stopped, true) {
            return 0;
        }
        let mut running = 0;
        for proc in &mut self.procs {
            if matches!(proc.child.try_wait(), Ok(None)) {
                running += 1;
            }
        }
        if let Some(mut stdin) = self.watchdog_in.take() {
            let _ = writeln!(stdin, "stop");
        }
        // The watchdog interrupts the group, waits up to GRACE_TENTHS, then kills the group;
        // reap the children meanwhile (a zombie counts as exited for the watchdog).
        let deadline = Instant::now() + Duration::from_millis(u64::from(GRACE_TENTHS) * 100 + 3000);
        for proc in &mut self.procs {
            wait_bounded(&mut proc.child, deadline);
        }
        wait_bounded(&mut self.watchdog, deadline);
        // Normally a no-op (the watchdog killed the group); covers grandchildren should the
        // watchdog itself have been killed from outside.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -KILL -- -{} 2>/dev/null; true", self.pgid)])
            .stdin(Stdio::null())
            .status();
        running
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for `child` until `deadline`, then kills it and waits once more.
fn wait_bounded(child: &mut Child, deadline: Instant) {
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Live (not zombie) processes whose process group is `pgid`, from `/proc`, waiting up to
/// `wait` for them to go away: `pid comm` each.
pub fn live_group_members(pgid: u32, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let mut out = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid pgrp …: split after the last ')'.
            let Some((head, tail)) = stat.rsplit_once(')') else { continue };
            let fields: Vec<&str> = tail.split_whitespace().collect();
            let (Some(state), Some(group)) = (fields.first(), fields.get(2)) else { continue };
            if *state != "Z" && group.parse::<u32>().ok() == Some(pgid) {
                out.push(head.replace(" (", " ").trim().to_owned());
            }
        }
        if out.is_empty() || Instant::now() >= deadline {
            return out;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of a log file (for error messages).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().iter().map(|l| format!("  | {l}\n")).collect()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// The directory cargo builds into (`CARGO_TARGET_DIR`, else `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => sh::root().join(dir),
        None => sh::root().join("target"),
    }
}

/// A binary of the workspace in the debug profile.
pub fn bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// `cargo build` of the simulators and the four exporters (debug profile).
pub fn build() -> anyhow::Result<()> {
    let mut cmd = sh::cargo();
    cmd.arg("build");
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    sh::run(&mut cmd)
}

/// A free TCP port on 127.0.0.1 (bound, read, released: another process could take it
/// before the caller binds it, so callers retry when their child fails to bind).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a probe socket")?;
    Ok(listener.local_addr().context("probe socket address")?.port())
}

/// Whether `program` exists on `PATH` (without running it).
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

// ---------------------------------------------------------------------------------------------
// The stack: simulators and exporters.

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Start the ModemManager simulator and mm-exporter (needs `dbus-daemon`).
    pub modem: bool,
    /// A second LinkHub simulator as a MiFi with a battery, probed through /probe.
    pub mifi: bool,
    /// Gateways of the TTN simulator.
    pub ttn_gateways: usize,
    /// Extra arguments for the main LinkHub simulator (e.g. `--no-drift`).
    pub linkhub_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options { modem: true, mifi: true, ttn_gateways: 4, linkhub_args: Vec::new() }
    }
}

/// A running simulator: the URL it serves (for the modem: the D-Bus address).
#[derive(Debug, Clone)]
pub struct Sim {
    pub name: String,
    pub url: String,
}

/// A running exporter and how Prometheus should scrape it.
#[derive(Debug, Clone)]
pub struct Exporter {
    /// The binary, e.g. `linkhub-exporter`.
    pub binary: String,
    /// Metric namespace, e.g. `linkhub`.
    pub namespace: String,
    /// Scrape job base name, e.g. `linkhub` (the /probe job adds `-probe`).
    pub job: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Named devices to show as `/probe?target=` links (the demo, the promtool check).
    pub probe_targets: Vec<String>,
    /// How many targets its `/sd` offers (0: no `<job>-probe` job).
    pub sd_targets: usize,
}

impl Exporter {
    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

/// The simulators and exporters of one stack, running in a [`Group`].
#[derive(Debug, Clone, Default)]
pub struct Stack {
    pub sims: Vec<Sim>,
    pub exporters: Vec<Exporter>,
}

impl Stack {
    /// The simulator named `name`.
    pub fn sim(&self, name: &str) -> anyhow::Result<&Sim> {
        self.sims.iter().find(|s| s.name == name).with_context(|| format!("no simulator {name}"))
    }

    /// Starts the simulators and exporters of `opts` in `group` and waits until every
    /// exporter answers `/-/healthy`.
    pub fn start(group: &mut Group, opts: &Options) -> anyhow::Result<Stack> {
        let mut stack = Stack::default();
        let linkhub = start_http_sim(group, "sim-linkhub", &["linkhub"], &opts.linkhub_args)?;
        let smarthub = start_http_sim(group, "sim-smarthub", &["smarthub"], &[])?;
        if opts.mifi {
            let mifi =
                start_http_sim(group, "sim-linkhub-mifi", &["linkhub", "--model", "mifi"], &[])?;
            stack.sims.push(Sim { name: "linkhub-mifi".into(), url: mifi });
        }
        stack.sims.push(Sim { name: "linkhub".into(), url: linkhub.clone() });
        stack.sims.push(Sim { name: "smarthub".into(), url: smarthub.clone() });

        // TTN: several lines, the exporter flags and the simulated user key among them.
        let gateways = opts.ttn_gateways.to_string();
        let mut cmd = Command::new(bin("device-sim"));
        // A rate limit far above what the stack uses, so the X-Rate-Limit-* headers are there.
        cmd.args(["ttn", "--listen", "127.0.0.1:0", "--gateways", &gateways])
            .args(["--rate-limit-per-min", "6000"]);
        let ttn = group.spawn("sim-ttn", cmd)?;
        let key = group.wait_line(ttn, "user key (TTN_API_KEY): ", Duration::from_secs(20))?;
        let flags = group.wait_line(ttn, "exporter flags: ", Duration::from_secs(1))?;
        let identity = group.wait_line(ttn, "identity ", Duration::from_secs(1))?;
        stack.sims.push(Sim { name: "ttn".into(), url: identity });
        let key_file = group.dir().join("ttn-api-key");
        fs::write(&key_file, format!("{key}\n")).context("write the TTN API key file")?;
        let password_file = group.dir().join("linkhub-password");
        write_secret(&password_file, "admin\n")?;

        // Named targets, each its own Prometheus target through /sd: the router with its
        // password, the MiFi without one (it reads only what needs no login).
        let mut linkhub_config = format!(
            "# Generated by cargo xtask: the stack's named LinkHubs.\ntargets:\n  home:\n    address: {linkhub}\n    password_file: {}\n    labels:\n      site: demo\n      room: office\n",
            path_arg(&password_file)
        );
        let mut linkhub_names = vec!["home".to_owned()];
        if let Some(mifi) = stack.sims.iter().find(|s| s.name == "linkhub-mifi") {
            let _ = write!(
                linkhub_config,
                "  mifi:\n    address: {}\n    labels:\n      site: demo\n      room: car\n",
                mifi.url
            );
            linkhub_names.push("mifi".to_owned());
        }
        let linkhub_config_file = group.dir().join("linkhub-config.yml");
        fs::write(&linkhub_config_file, linkhub_config).context("write the LinkHub config")?;
        let smarthub_config_file = group.dir().join("smarthub-config.yml");
        fs::write(
            &smarthub_config_file,
            format!(
                "# Generated by cargo xtask: the stack's named Smart Hub.\ntargets:\n  hub:\n    address: {smarthub}\n    labels:\n      site: demo\n"
            ),
        )
        .context("write the Smart Hub config")?;

        let mut bus = None;
        if opts.modem {
            let mut cmd = Command::new(bin("device-sim"));
            cmd.arg("modem");
            let modem = group.spawn("sim-modem", cmd)?;
            let address = group.wait_line(modem, "listening on ", Duration::from_secs(20))?;
            stack.sims.push(Sim { name: "modem".into(), url: address.clone() });
            bus = Some(address);
        }

        let mut pending = Vec::new();
        // The flags set the default target of /metrics; the files add the named targets.
        let linkhub_args = vec![
            "--target".to_owned(),
            linkhub.clone(),
            "--password-file".to_owned(),
            path_arg(&password_file),
            "--config-file".to_owned(),
            path_arg(&linkhub_config_file),
        ];
        let sd = linkhub_names.len();
        pending.push(start_exporter(
            group,
            ("linkhub-exporter", "linkhub", "linkhub"),
            &linkhub_args,
            (linkhub_names, sd),
        )?);
        pending.push(start_exporter(
            group,
            ("smarthub-exporter", "smarthub", "smarthub"),
            &[
                "--target".to_owned(),
                smarthub.clone(),
                "--config-file".to_owned(),
                path_arg(&smarthub_config_file),
            ],
            (vec!["hub".to_owned()], 1),
        )?);
        let mut ttn_args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
        ttn_args.extend(["--api-key-file".to_owned(), path_arg(&key_file)]);
        pending.push(start_exporter(
            group,
            ("ttn-exporter", "ttn", "ttn"),
            &ttn_args,
            (Vec::new(), opts.ttn_gateways),
        )?);
        if let Some(bus) = bus {
            pending.push(start_exporter(
                group,
                ("mm-exporter", "modemmanager", "modemmanager"),
                &["--bus-address".to_owned(), bus],
                (Vec::new(), 1),
            )?);
        }
        for (index, exporter) in pending {
            group.wait_http_ok(
                index,
                &format!("{}/-/healthy", exporter.url),
                Duration::from_secs(20),
            )?;
            stack.exporters.push(exporter);
        }
        Ok(stack)
    }
}

/// Writes a secret file readable by its owner only (the exporters warn about others).
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// A path as a command-line argument.
pub fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Starts `device-sim <args> --listen 127.0.0.1:0 <extra>` and returns its URL.
pub fn start_http_sim(
    group: &mut Group,
    name: &str,
    args: &[&str],
    extra: &[String],
) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin("device-sim"));
    cmd.args(args).args(["--listen", "127.0.0.1:0"]).args(extra);
    let index = group.spawn(name, cmd)?;
    group.wait_line(index, "listening on ", Duration::from_secs(20))
}

/// Starts an exporter (binary, namespace, job) on `127.0.0.1:0` and reads the address it
/// logged (`address=[127.0.0.1:PORT]`, logfmt); it is not yet known to be healthy.
pub fn start_exporter(
    group: &mut Group,
    names: (&str, &str, &str),
    args: &[String],
    targets: (Vec<String>, usize),
) -> anyhow::Result<(usize, Exporter)> {
    start_exporter_from(group, &bin(names.0), names, args, targets)
}

/// [`start_exporter`] with the binary at `program` (e.g. a release build).
pub fn start_exporter_from(
    group: &mut Group,
    program: &Path,
    (binary, namespace, job): (&str, &str, &str),
    args: &[String],
    (probe_targets, sd_targets): (Vec<String>, usize),
) -> anyhow::Result<(usize, Exporter)> {
    let mut cmd = Command::new(program);
    cmd.args(args).args(["--listen-address", "127.0.0.1:0", "--log-format", "logfmt"]);
    let name = format!("{job}-exporter");
    let name = if group.procs.iter().any(|p| p.name == name) {
        format!("{name}-{}", group.procs.len())
    } else {
        name
    };
    let index = group.spawn(&name, cmd)?;
    let address = wait_logged_address(group, index, Duration::from_secs(20))?;
    let exporter = Exporter {
        binary: binary.to_owned(),
        namespace: namespace.to_owned(),
        job: job.to_owned(),
        url: format!("http://{address}"),
        probe_targets,
        sd_targets,
    };
    Ok((index, exporter))
}

/// The first `address=[…]` the child logged on a "listening" line.
fn wait_logged_address(
    group: &mut Group,
    index: usize,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = group.proc(index)?.log.clone();
        let text = fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("listening")) {
            if let Some(rest) = line.split("address=[").nth(1)
                && let Some(list) = rest.split(']').next()
                && let Some(first) = list.split(',').next()
                && !first.trim().is_empty()
            {
                return Ok(first.trim().to_owned());
            }
        }
        group.check_running(index)?;
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{} logged no listening address within {timeout:?}; its log:\n{}",
                group.proc(index)?.name,
                log_tail(&log, 20)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus.

/// A running Prometheus.
#[derive(Debug, Clone)]
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

/// Starts `prometheus` with `config` (written to `dir/prometheus.yml`) on a free loopback
/// port, retrying with another port if the first is taken, and waits for `/-/ready`.
/// `args` are extra flags (e.g. `--enable-feature=agent`).
pub fn start_prometheus(
    group: &mut Group,
    name: &str,
    config: &str,
    args: &[&str],
) -> anyhow::Result<Prometheus> {
    let dir = group.dir().join(name);
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let config_file = dir.join("prometheus.yml");
    fs::write(&config_file, config).with_context(|| format!("write {}", config_file.display()))?;
    let agent = args.iter().any(|a| a.contains("agent"));
    let mut last = None;
    for attempt in 0..3 {
        let port = free_port()?;
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(if agent { "--storage.agent.path" } else { "--storage.tsdb.path" })
            .arg(dir.join(format!("data{attempt}")))
            .args(args);
        let index = group.spawn(&format!("{name}-{attempt}"), cmd)?;
        let url = format!("http://127.0.0.1:{port}");
        match group.wait_http_ok(index, &format!("{url}/-/ready"), Duration::from_secs(30)) {
            Ok(()) => return Ok(Prometheus { url }),
            Err(err) => {
                let log = fs::read_to_string(&group.proc(index)?.log).unwrap_or_default();
                if let Some(proc) = group.procs.get_mut(index) {
                    proc.retired = true;
                }
                if !log.contains("address already in use") {
                    return Err(err.context(format!("start prometheus {name}")));
                }
                last = Some(err);
            }
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!("start prometheus {name}: every port was taken")))
}

impl Prometheus {
    /// `/api/v1/query?query=expr`: the result vector (or matrix/scalar as JSON values).
    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(expr)))?;
        let result = data.get("result").context("no result in the query answer")?;
        match result {
            Value::Array(items) => Ok(items.clone()),
            // A scalar or string: [time, "value"].
            other => Ok(vec![other.clone()]),
        }
    }

    /// The single value of an instant query that must return exactly one series.
    pub fn query_one(&self, expr: &str) -> anyhow::Result<f64> {
        let result = self.query(expr)?;
        anyhow::ensure!(result.len() == 1, "{expr}: {} series, expected 1", result.len());
        sample_value(result.first().context("empty")?)
            .with_context(|| format!("{expr}: no numeric value in {result:?}"))
    }

    /// GET `path` of the HTTP API and return `data` (Err on `status` != success).
    pub fn api(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url);
        let (status, body) = get(&url, Duration::from_secs(10))?;
        let json: Value = serde_json::from_str(&body).with_context(|| {
            format!("GET {path}: HTTP {status}, not JSON: {}", first_line(&body))
        })?;
        if json.get("status").and_then(Value::as_str) != Some("success") {
            anyhow::bail!(
                "GET {path}: HTTP {status}: {} {}",
                json.get("errorType").and_then(Value::as_str).unwrap_or("?"),
                json.get("error").and_then(Value::as_str).unwrap_or("?")
            );
        }
        json.get("data").cloned().context("no data in the answer")
    }
}

/// One scrape target as `/api/v1/targets` reports it: (job, instance, health, last error).
pub type TargetState = (String, String, String, String);

impl Prometheus {
    /// The active targets.
    pub fn targets(&self) -> anyhow::Result<Vec<TargetState>> {
        let data = self.api("/api/v1/targets?state=active")?;
        let list = data.get("activeTargets").and_then(Value::as_array).cloned().unwrap_or_default();
        let text = |t: &Value, k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Ok(list
            .iter()
            .map(|t| {
                let labels = t.get("labels").cloned().unwrap_or(Value::Null);
                (
                    text(&labels, "job"),
                    text(&labels, "instance"),
                    text(t, "health"),
                    text(t, "lastError"),
                )
            })
            .collect())
    }

    /// Waits until there are `expected` active targets and every one is `up`; Err lists the
    /// ones that are not when `timeout` passes.
    pub fn wait_targets_up(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<TargetState>> {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self.targets()?;
            let bad: Vec<String> = targets
                .iter()
                .filter(|t| t.2 != "up")
                .map(|(job, instance, health, err)| format!("{job} {instance}: {health} {err}"))
                .collect();
            if targets.len() == expected && bad.is_empty() {
                return Ok(targets);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} of {expected} targets, not up after {timeout:?}:\n  {}",
                    targets.len(),
                    bad.join("\n  ")
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

/// How many scrape targets [`scrape_configs`] makes for `stack`.
pub fn target_count(stack: &Stack) -> usize {
    stack.exporters.iter().map(|e| 1 + e.sd_targets).sum()
}

/// The value of one result element (`{"metric":…, "value":[t, "v"]}`) or of a scalar.
pub fn sample_value(item: &Value) -> Option<f64> {
    let pair = item.get("value").unwrap_or(item);
    pair.get(1).and_then(Value::as_str).and_then(|v| v.parse().ok())
}

/// A scrape configuration for every exporter of `stack`: `<job>` through /metrics and
/// `<job>-probe` with the targets of the exporter's `/sd` (Prometheus HTTP service
/// discovery: every device its own target, `instance` its name, scraped through /probe).
pub fn scrape_configs(stack: &Stack) -> String {
    let mut out = String::from("scrape_configs:\n");
    for e in &stack.exporters {
        let _ = write!(
            out,
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n",
            job = e.job,
            addr = e.address()
        );
        if e.sd_targets > 0 {
            let _ = write!(
                out,
                "  - job_name: {job}-probe\n    http_sd_configs:\n      - url: '{url}/sd'\n        refresh_interval: 5s\n",
                job = e.job,
                url = e.url
            );
        }
    }
    out
}

/// A whole Prometheus configuration for `stack`: `interval` for scrapes and rule evaluation
/// and the project's rules from `rules_dir` (`*.rules.yml`).
pub fn prometheus_config(stack: &Stack, interval: &str, rules_dir: &Path) -> String {
    format!(
        "# Generated by cargo xtask: scrapes the stack's exporters on loopback.\nglobal:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\nrule_files:\n  - '{rules}/*.rules.yml'\n{scrapes}",
        rules = rules_dir.display(),
        scrapes = scrape_configs(stack)
    )
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (loopback, no TLS), so xtask needs no HTTP dependency.

/// GET `url`: (status, body).
pub fn get(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    request("GET", url, timeout)
}

/// POST `url` with an empty body: (status, body).
pub fn post(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    request("POST", url, timeout)
}

/// Sets a simulator knob through its control API (`POST /_sim/set?key=K&value=V`).
pub fn sim_set(sim_url: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let url = format!("{sim_url}/_sim/set?key={}&value={}", urlencode(key), urlencode(value));
    let (status, body) = post(&url, Duration::from_secs(5))?;
    anyhow::ensure!(
        status == 200,
        "set {key}={value} on {sim_url}: HTTP {status}: {}",
        body.trim()
    );
    Ok(())
}

/// The body is capped at this size.
const MAX_BODY: usize = 64 << 20;

fn request(method: &str, url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").with_context(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolve {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))?;
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("{method} {url}: connect"))?;
    stream.set_write_timeout(Some(timeout)).context("set write timeout")?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: uplink-xtask\r\nAccept: */*\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).with_context(|| format!("{method} {url}: send"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(!left.is_zero(), "{method} {url}: no complete answer within {timeout:?}");
        stream.set_read_timeout(Some(left)).context("set read timeout")?;
        let n = stream.read(&mut buf).with_context(|| format!("{method} {url}: read"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(buf.get(..n).unwrap_or_default());
        anyhow::ensure!(
            raw.len() <= MAX_BODY,
            "{method} {url}: answer larger than {MAX_BODY} bytes"
        );
    }
    parse_response(&raw).with_context(|| format!("{method} {url}"))
}

/// Parses a whole HTTP/1.x response (read until close): status and body, de-chunked.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let split =
        raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of the response head")?;
    let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default()).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.lines();
    let status_line = lines.next().context("empty response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Decodes a chunked body.
fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        let eol = body.windows(2).position(|w| w == b"\r\n").context("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(body.get(..eol).unwrap_or_default()).into_owned();
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        body = body.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).context("truncated chunk")?);
        body = body.get(size + 2..).unwrap_or_default();
    }
    anyhow::bail!("too many chunks")
}

/// Percent-encodes everything but unreserved characters (for query parameters).
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Live processes (not zombies) in process group `pgid`: from `/proc`, and cross-checked
    /// with `pgrep -g` where procps is installed.
    fn wait_until_empty(pgid: u32, limit: Duration) -> Vec<String> {
        let live = live_group_members(pgid, limit);
        if on_path("pgrep") {
            let out = Command::new("pgrep").args(["-g", &pgid.to_string()]).output().unwrap();
            let listed = String::from_utf8_lossy(&out.stdout).into_owned();
            for pid in listed.lines() {
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next();
                assert!(
                    state.is_none_or(|s| s == "Z"),
                    "pgrep -g {pgid} still lists {pid}: {stat}"
                );
            }
        }
        live
    }

    fn scratch(name: &str) -> PathBuf {
        target_dir().join("xtask-tests").join(format!("{name}-{}", std::process::id()))
    }

    /// A child that ignores SIGINT and has a grandchild: both must still be gone after stop.
    fn stubborn(group: &mut Group) {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' INT; sleep 300 & sleep 300; wait"]);
        group.spawn("stubborn", cmd).unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("300");
        group.spawn("sleeper", cmd).unwrap();
    }

    #[test]
    fn dropping_the_group_leaves_no_process() {
        let dir = scratch("drop");
        let mut group = Group::new(&dir, "").unwrap();
        stubborn(&mut group);
        let pgid = group.pgid();
        thread::sleep(Duration::from_millis(200));
        let before = live_group_members(pgid, Duration::ZERO);
        assert!(before.len() >= 4, "{before:?}");
        let started = Instant::now();
        drop(group);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(wait_until_empty(pgid, Duration::from_secs(3)), Vec::<String>::new());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn the_watchdog_ends_the_group_when_xtask_goes_away() {
        let dir = scratch("eof");
        let mut group = Group::new(&dir, "").unwrap();
        stubborn(&mut group);
        let pgid = group.pgid();
        thread::sleep(Duration::from_millis(200));
        // What the kernel does when xtask dies: the watchdog's stdin reaches EOF.
        drop(group.watchdog_in.take());
        let live = wait_until_empty(pgid, Duration::from_secs(10));
        assert_eq!(live, Vec::<String>::new());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_child_that_exits_early_is_reported_with_its_log() {
        let dir = scratch("early");
        let mut group = Group::new(&dir, "").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo broken config >&2; exit 3"]);
        let i = group.spawn("early", cmd).unwrap();
        let err = group.wait_line(i, "listening on ", Duration::from_secs(5)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("early exited") && text.contains("broken config"), "{text}");
        drop(group);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain).unwrap(), (200, "hello".to_owned()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, "abcde".to_owned()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn urlencode_escapes_promql() {
        assert_eq!(urlencode(r#"up{job=~"a.*"} > 0"#), "up%7Bjob%3D~%22a.%2A%22%7D%20%3E%200");
    }

    #[test]
    fn scrape_config_discovers_devices_through_sd() {
        let stack = Stack {
            sims: vec![],
            exporters: vec![
                Exporter {
                    binary: "linkhub-exporter".into(),
                    namespace: "linkhub".into(),
                    job: "linkhub".into(),
                    url: "http://127.0.0.1:1234".into(),
                    probe_targets: vec!["home".into()],
                    sd_targets: 2,
                },
                Exporter {
                    binary: "smarthub-exporter".into(),
                    namespace: "smarthub".into(),
                    job: "smarthub".into(),
                    url: "http://127.0.0.1:1235".into(),
                    probe_targets: vec![],
                    sd_targets: 0,
                },
            ],
        };
        let text = scrape_configs(&stack);
        assert!(text.contains("job_name: linkhub\n"), "{text}");
        assert!(
            text.contains("job_name: linkhub-probe\n    http_sd_configs:\n      - url: 'http://127.0.0.1:1234/sd'"),
            "{text}"
        );
        assert!(!text.contains("smarthub-probe"), "no /sd targets, no probe job: {text}");
        assert_eq!(target_count(&stack), 4);
    }
}
