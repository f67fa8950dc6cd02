//! Debian packages with cargo-deb, and their checks: the `Depends:` line against the ELF
//! file's needs, lintian, `systemd-analyze verify` and `security --offline=yes`, and (as
//! root) an install test: dpkg -i, the unit's ExecStart by hand with the packaged defaults
//! file, `/metrics`, `--healthcheck`, then purge.

use std::{
    collections::BTreeSet,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    EXPORTERS, Exporter,
    build::output,
    report::{PackageRow, Report},
    tools,
};
use crate::sh;

/// Largest exposure `systemd-analyze security` may give a unit, in tenths (its
/// `--threshold` unit: 15 means 1.5 on the printed 0-10 scale).
const EXPOSURE_THRESHOLD_TENTHS: u32 = 15;

/// Builds, checks and records the package of every exporter for one target.
pub fn package_all(
    dist: &Path,
    triple: &str,
    arch: &str,
    profile: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let out = dist.join("deb");
    fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    for exporter in &EXPORTERS {
        let deb = cargo_deb(exporter, triple, profile, &out)?;
        let row = check_package(dist, exporter, arch, &deb, report)?;
        report.package(row);
    }
    Ok(())
}

/// `cargo deb --no-build --no-strip` (the profile already strips); returns the .deb path.
fn cargo_deb(
    exporter: &Exporter,
    triple: &str,
    profile: &str,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let mut cmd = sh::cargo();
    cmd.args(["deb", "--no-build", "--no-strip", "-p", exporter.name])
        .args(super::build::target_args(triple)?)
        .args(["--profile", profile])
        .arg("--output")
        .arg(out);
    let shown = sh::display(&cmd);
    eprintln!("$ {shown}");
    let stdout = output(&mut cmd)?;
    let path = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .with_context(|| format!("`{shown}` printed no .deb path: {stdout}"))?;
    Ok(PathBuf::from(path))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A control field of a .deb (`dpkg-deb -f`).
fn control_field(deb: &Path, field: &str) -> anyhow::Result<String> {
    Ok(output(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))?.trim().to_owned())
}

fn check_package(
    dist: &Path,
    exporter: &Exporter,
    arch: &str,
    deb: &Path,
    report: &mut Report,
) -> anyhow::Result<PackageRow> {
    let name = file_name(deb);
    let deb_arch = control_field(deb, "Architecture")?;
    if deb_arch != arch {
        report.fail(format!("{name}: Architecture {deb_arch}, expected {arch}"));
    }
    let tree = dist.join("tree").join(arch).join(exporter.name);
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(&tree).with_context(|| format!("create {}", tree.display()))?;
    output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree))?;

    let depends = control_field(deb, "Depends")?;
    let bin = tree.join("usr/bin").join(exporter.name);
    if let Err(err) = check_depends(&bin, &depends) {
        report.fail(format!("{name}: {err:#}"));
    }
    for path in [
        format!("usr/bin/{}", exporter.name),
        format!("usr/lib/systemd/system/{}.service", exporter.name),
        format!("etc/default/{}", exporter.name),
        format!("usr/share/man/man1/{}.1.gz", exporter.name),
        format!("usr/share/doc/{}/copyright", exporter.name),
        format!("usr/share/doc/{}/changelog.Debian.gz", exporter.name),
    ] {
        if !tree.join(&path).is_file() {
            report.fail(format!("{name}: /{path} is missing"));
        }
    }

    let lintian = lintian(deb);
    let lintian_cell = match &lintian {
        Ok(summary) => summary.clone(),
        Err(err) => {
            report.fail(format!("lintian {name}: {err:#}"));
            "FAILED".to_owned()
        }
    };
    let verify = verify_extracted(dist, exporter, arch, &tree);
    let verify_cell = match &verify {
        Ok(()) => "clean".to_owned(),
        Err(err) => {
            report.fail(format!("systemd-analyze verify {name}: {err:#}"));
            "FAILED".to_owned()
        }
    };
    let unit = tree.join(format!("usr/lib/systemd/system/{}.service", exporter.name));
    let exposure_cell = match exposure(&unit) {
        Ok((score, ok)) => {
            if !ok {
                report.fail(format!(
                    "{name}: exposure {score} is above {}.{}",
                    EXPOSURE_THRESHOLD_TENTHS / 10,
                    EXPOSURE_THRESHOLD_TENTHS % 10
                ));
            }
            score
        }
        Err(err) => {
            report.fail(format!("systemd-analyze security {name}: {err:#}"));
            "FAILED".to_owned()
        }
    };
    let size = fs::metadata(deb).with_context(|| format!("stat {}", deb.display()))?.len();
    let installed_size_kib = control_field(deb, "Installed-Size")?.parse().unwrap_or(0);
    eprintln!(
        "dist: {name}: lintian {lintian_cell}; verify {verify_cell}; exposure {exposure_cell}"
    );
    Ok(PackageRow {
        file: name,
        size,
        installed_size_kib,
        lintian: lintian_cell,
        verify: verify_cell,
        exposure: exposure_cell,
    })
}

/// The Debian packages that provide each shared library the binaries may need.
const LIBRARY_PACKAGES: [(&str, &str); 6] = [
    ("libc.so.6", "libc6"),
    ("libm.so.6", "libc6"),
    ("ld-linux-x86-64.so.2", "libc6"),
    ("ld-linux-aarch64.so.1", "libc6"),
    ("libgcc_s.so.1", "libgcc-s1"),
    ("libpthread.so.0", "libc6"),
];

/// Every `NEEDED` library of `bin` comes from a package in `depends`, and the `libc6`
/// version there covers the newest `GLIBC_x.y` symbol version the binary uses. (The Depends
/// line is written by hand because cargo-deb's `$auto` names arch-qualified packages in cross
/// builds.)
fn check_depends(bin: &Path, depends: &str) -> anyhow::Result<()> {
    let dynamic = output(Command::new("readelf").arg("-dW").arg(bin))?;
    let needed: BTreeSet<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_owned))
        .collect();
    let symbols = output(Command::new("readelf").arg("--dyn-syms").arg("-W").arg(bin))?;
    let newest_glibc = symbols
        .split(|c: char| c.is_whitespace() || c == '@' || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(parse_version)
        .max();
    let deps = parse_depends(depends);
    for lib in &needed {
        let package = LIBRARY_PACKAGES
            .iter()
            .find(|(l, _)| l == lib)
            .map(|(_, p)| *p)
            .with_context(|| format!("the binary needs {lib}, which Depends does not cover"))?;
        if !deps.iter().any(|(p, _)| p == package) {
            anyhow::bail!("the binary needs {lib} (package {package}) but Depends is {depends:?}");
        }
    }
    if let Some(newest) = newest_glibc {
        let declared = deps
            .iter()
            .find(|(p, _)| p == "libc6")
            .and_then(|(_, v)| v.as_deref())
            .and_then(parse_version)
            .with_context(|| format!("Depends {depends:?} has no libc6 (>= x.y)"))?;
        if declared < newest {
            anyhow::bail!(
                "the binary uses GLIBC_{}.{} symbols but Depends says libc6 (>= {}.{})",
                newest.0,
                newest.1,
                declared.0,
                declared.1
            );
        }
    }
    Ok(())
}

/// `2.34` -> `(2, 34)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// `libc6 (>= 2.34), adduser` -> `[("libc6", Some("2.34")), ("adduser", None)]`.
fn parse_depends(depends: &str) -> Vec<(String, Option<String>)> {
    depends
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let first = d.split('|').next().unwrap_or(d).trim();
            let (name, rest) = first.split_once('(').unwrap_or((first, ""));
            let version =
                rest.trim_end_matches(')').trim().strip_prefix(">=").map(|v| v.trim().to_owned());
            (name.trim().to_owned(), version)
        })
        .collect()
}

/// `lintian -I --fail-on error,warning`: Ok("0 E, 0 W, N I") or Err with the findings.
fn lintian(deb: &Path) -> anyhow::Result<String> {
    let out = Command::new("lintian")
        .args(["-I", "--fail-on", "error,warning"])
        .arg(deb)
        .output()
        .context("run lintian")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |tag: &str| text.lines().filter(|l| l.starts_with(tag)).count();
    let (errors, warnings, infos) = (count("E: "), count("W: "), count("I: "));
    if !out.status.success() || errors > 0 || warnings > 0 {
        anyhow::bail!(
            "{errors} error(s), {warnings} warning(s):\n{}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tags: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("I: "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    if !tags.is_empty() {
        let tags: Vec<&str> = tags.into_iter().collect();
        eprintln!("dist: lintian {}: info tags {}", file_name(deb), tags.join(", "));
    }
    Ok(format!("0 E, 0 W, {infos} I"))
}

/// `systemd-analyze verify` of the packaged unit, before installing: a copy whose
/// `/usr/bin/<exporter>` points into the extracted tree, with `MANPATH` set to the tree's man
/// pages (for `Documentation=man:`). Any output counts as a finding.
fn verify_extracted(
    dist: &Path,
    exporter: &Exporter,
    arch: &str,
    tree: &Path,
) -> anyhow::Result<()> {
    let unit_name = format!("{}.service", exporter.name);
    let unit = fs::read_to_string(tree.join("usr/lib/systemd/system").join(&unit_name))
        .with_context(|| format!("read the packaged {unit_name}"))?;
    let bin = format!("/usr/bin/{}", exporter.name);
    let tree_bin = tree.join(bin.trim_start_matches('/'));
    let copy_dir = dist.join("verify").join(arch);
    fs::create_dir_all(&copy_dir).with_context(|| format!("create {}", copy_dir.display()))?;
    let copy = copy_dir.join(&unit_name);
    fs::write(&copy, unit.replace(&bin, &tree_bin.display().to_string()))
        .with_context(|| format!("write {}", copy.display()))?;
    verify(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .env("MANPATH", tree.join("usr/share/man")),
    )
}

/// Runs a `systemd-analyze verify` command: exit 0 and nothing on stdout or stderr.
fn verify(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().context("run systemd-analyze verify")?;
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !said.trim().is_empty() {
        anyhow::bail!("{} {}", out.status, said.trim());
    }
    Ok(())
}

/// `systemd-analyze security --offline=yes --threshold=15`: ("1.1 OK", within threshold).
fn exposure(unit: &Path) -> anyhow::Result<(String, bool)> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--threshold={EXPOSURE_THRESHOLD_TENTHS}"))
        .arg(unit)
        .output()
        .context("run systemd-analyze security")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).with_context(|| {
        format!("no exposure level in: {}{}", text, String::from_utf8_lossy(&out.stderr))
    })?;
    let score = line
        .rsplit_once(": ")
        .map(|(_, s)| s.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    Ok((score, out.status.success()))
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr().context("local address")?.port())
}

/// `curl` a URL on loopback: (HTTP status, body).
pub fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", url])
        .output()
        .context("run curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// Polls `http://addr/-/healthy` until it answers 200 or `timeout` passes.
pub fn wait_healthy(addr: &str, child: &mut Child, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = http_get(&format!("http://{addr}/-/healthy")) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("the exporter exited before answering /-/healthy ({status})");
        }
        if Instant::now() > deadline {
            anyhow::bail!("no answer on http://{addr}/-/healthy within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Sends SIGTERM and waits up to 5 s for a clean exit (SIGKILL after that).
pub fn stop(child: &mut Child) -> anyhow::Result<()> {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().context("wait for the exporter")? {
            anyhow::ensure!(status.success(), "exited with {status} after SIGTERM");
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("did not stop within 5 s of SIGTERM");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The amd64 packages on this machine, as root: dpkg -i, installed files, the unit verified
/// in place, its ExecStart run by hand with the packaged defaults, then dpkg --purge.
/// Skipped (with a note) when not root, without dpkg, or when one of the packages is
/// installed already (a real installation is never touched).
pub fn install_test(dist: &Path, report: &mut Report) -> anyhow::Result<()> {
    if !tools::is_root() || !sh::have("dpkg") {
        report.check("install test", "skipped (needs root and dpkg)");
        return Ok(());
    }
    if let Some(e) = EXPORTERS.iter().find(|e| tools::dpkg_installed(e.name)) {
        report.check("install test", format!("skipped ({} is installed on this machine)", e.name));
        return Ok(());
    }
    let debs: Vec<PathBuf> = EXPORTERS
        .iter()
        .map(|e| newest_deb(&dist.join("deb"), e.name, "amd64"))
        .collect::<anyhow::Result<_>>()?;
    let installed = sh::run(
        Command::new("dpkg").arg("-i").args(&debs).env("DEBIAN_FRONTEND", "noninteractive"),
    );
    let result = installed.map(|()| {
        for exporter in &EXPORTERS {
            match check_installed(exporter) {
                Ok(summary) => report.check(format!("install {}", exporter.name), summary),
                Err(err) => report.fail(format!("installed {}: {err:#}", exporter.name)),
            }
        }
    });
    let purged =
        sh::run(Command::new("dpkg").arg("--purge").args(EXPORTERS.iter().map(|e| e.name)));
    result?;
    purged?;
    for exporter in &EXPORTERS {
        if Path::new("/usr/bin").join(exporter.name).exists() {
            report.fail(format!("{} is still there after dpkg --purge", exporter.name));
        }
    }
    if Path::new("/etc/linkhub-exporter").exists() {
        report.fail("/etc/linkhub-exporter is still there after dpkg --purge".to_owned());
    }
    Ok(())
}

/// The newest `<name>_*_<arch>.deb` in `dir`.
fn newest_deb(dir: &Path, name: &str, arch: &str) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = file_name(p);
            n.starts_with(&format!("{name}_")) && n.ends_with(&format!("_{arch}.deb"))
        })
        .collect();
    found.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop().with_context(|| format!("no {name}_*_{arch}.deb in {}", dir.display()))
}

fn check_installed(exporter: &Exporter) -> anyhow::Result<String> {
    let name = exporter.name;
    let unit = format!("/usr/lib/systemd/system/{name}.service");
    for path in [format!("/usr/bin/{name}"), unit.clone(), format!("/etc/default/{name}")] {
        anyhow::ensure!(Path::new(&path).is_file(), "{path} is missing");
    }
    let wants = format!("/etc/systemd/system/multi-user.target.wants/{name}.service");
    anyhow::ensure!(Path::new(&wants).exists(), "the unit is not enabled ({wants} is missing)");
    let conffiles = output(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", name]))?;
    anyhow::ensure!(
        conffiles.contains(&format!("/etc/default/{name}")),
        "/etc/default/{name} is not a conffile: {conffiles:?}"
    );
    let man = output(Command::new("man").args(["-w", name]))?;
    anyhow::ensure!(man.contains(&format!("{name}.1.gz")), "man -w {name}: {man}");
    verify(Command::new("systemd-analyze").arg("verify").arg(&unit))
        .context("systemd-analyze verify of the installed unit")?;
    if let Some(credential) = &exporter.credential
        && name == "linkhub-exporter"
    {
        let meta =
            fs::metadata(credential.path).with_context(|| format!("stat {}", credential.path))?;
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        anyhow::ensure!(
            meta.len() == 0 && mode == 0o600,
            "{} is not empty with mode 0600 (mode {mode:o})",
            credential.path
        );
    }
    if name == "mm-exporter" {
        output(Command::new("getent").args(["passwd", "mm-exporter"]))
            .context("the mm-exporter system user")?;
        let rule = "/usr/share/doc/mm-exporter/examples/50-mm-exporter.rules";
        anyhow::ensure!(Path::new(rule).is_file(), "{rule} is missing");
    }
    let scraped = smoke_run(exporter)?;
    Ok(format!("files, enabled unit, conffile, man page, verify clean; {scraped}"))
}

/// Runs the unit's ExecStart by hand with the packaged defaults file, on a loopback port,
/// pointed at a closed port: `/metrics` answers 200 with `<ns>_up`, `--healthcheck` exits 0
/// (and 1 against a closed port), SIGTERM stops it cleanly.
fn smoke_run(exporter: &Exporter) -> anyhow::Result<String> {
    let port = free_port()?;
    let closed = format!("127.0.0.1:{}", free_port()?);
    let addr = format!("127.0.0.1:{port}");
    let script = format!(
        "set -a; . /etc/default/{0}; set +a; exec /usr/bin/{0} $ARGS \"$@\"",
        exporter.name
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script, "sh", "--listen-address", &addr])
        .args(exporter.smoke_args.iter().map(|a| a.replace("{closed}", &closed)))
        .envs(exporter.smoke_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("start the exporter")?;
    let result = (|| {
        wait_healthy(&addr, &mut child, Duration::from_secs(15))?;
        let (status, body) = http_get(&format!("http://{addr}/metrics"))?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        let up = format!("{}_up ", exporter.namespace);
        let up_line = body
            .lines()
            .find(|l| l.starts_with(&up))
            .with_context(|| format!("no {up} in /metrics:\n{body}"))?
            .to_owned();
        let health = Command::new(format!("/usr/bin/{}", exporter.name))
            .args(["--healthcheck", "--listen-address", &addr])
            .output()
            .context("run --healthcheck")?;
        anyhow::ensure!(health.status.success(), "--healthcheck against a running exporter failed");
        let dead = Command::new(format!("/usr/bin/{}", exporter.name))
            .args(["--healthcheck", "--listen-address", &closed])
            .output()
            .context("run --healthcheck")?;
        anyhow::ensure!(!dead.status.success(), "--healthcheck against a closed port succeeded");
        Ok(format!("/metrics 200 ({} lines, {up_line}), --healthcheck 0/1", body.lines().count()))
    })();
    let stopped = stop(&mut child);
    if result.is_err() || stopped.is_err() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use std::io::Read as _;
            let _ = pipe.read_to_string(&mut stderr);
        }
        eprintln!("{} stderr:\n{stderr}", exporter.name);
    }
    let summary = result?;
    stopped?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn depends_lines_are_parsed() {
        let deps = parse_depends("libc6 (>= 2.34), libgcc-s1 (>= 4.2), adduser, a | b");
        assert_eq!(deps[0], ("libc6".to_owned(), Some("2.34".to_owned())));
        assert_eq!(deps[1], ("libgcc-s1".to_owned(), Some("4.2".to_owned())));
        assert_eq!(deps[2], ("adduser".to_owned(), None));
        assert_eq!(deps[3], ("a".to_owned(), None));
        assert_eq!(parse_version("2.35"), Some((2, 35)));
        assert_eq!(parse_version("3"), Some((3, 0)));
        assert_eq!(parse_version("x.1"), None);
        assert!(parse_version("2.34").unwrap() < parse_version("2.35").unwrap());
    }

    #[test]
    fn depends_check_reads_the_libraries_and_glibc_version_of_a_real_binary() {
        // This test binary is a glibc Rust program like the exporters.
        let me = std::env::current_exe().unwrap();
        check_depends(&me, "libc6 (>= 99.0), libgcc-s1 (>= 4.2)").unwrap();
        let too_old = check_depends(&me, "libc6 (>= 2.0), libgcc-s1").unwrap_err();
        assert!(format!("{too_old:#}").contains("GLIBC_2."), "{too_old:#}");
        let missing = check_depends(&me, "libc6 (>= 99.0)").unwrap_err();
        assert!(format!("{missing:#}").contains("libgcc_s.so.1"), "{missing:#}");
    }

    #[test]
    fn depends_check_fails_for_a_binary_it_cannot_read() {
        let err = check_depends(Path::new("/nonexistent/bin"), "libc6 (>= 2.36)").unwrap_err();
        assert!(format!("{err:#}").contains("readelf"), "{err:#}");
    }
}
