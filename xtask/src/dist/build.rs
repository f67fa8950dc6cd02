//! Release builds per Rust target, collecting the binaries into `target/dist/bin/<target>/`,
//! the man pages, the arm64 checks under qemu, and `SHA256SUMS`.
//!
//! aarch64 musl has no packaged cross compiler: C code (ring, aws-lc, QuickJS) is compiled by
//! `aarch64-linux-gnu-gcc` with musl's `musl-gcc.specs` from `musl-dev:arm64`, through a
//! wrapper script in `target/cross/` (the `cc` crate takes one program, no extra flags).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::Context as _;

use super::{EXPORTERS, manpage, report::Report};
use crate::sh;

/// The host's Rust target (`rustc -vV`), e.g. `x86_64-unknown-linux-gnu`.
pub fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let info = output(Command::new(rustc).arg("-vV"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .context("no host line in rustc -vV")
}

/// `--target TRIPLE` unless `triple` is the host: host builds stay in `target/<profile>/`,
/// where a plain `cargo build --release` puts them (no second build of the same thing).
pub fn target_args(triple: &str) -> anyhow::Result<Vec<String>> {
    Ok(if host_triple()? == triple {
        Vec::new()
    } else {
        vec!["--target".to_owned(), triple.to_owned()]
    })
}

/// The specs file of `musl-dev:arm64` that points gcc at musl's headers, crt files and libc.
const AARCH64_MUSL_SPECS: &str = "/usr/lib/aarch64-linux-musl/musl-gcc.specs";

/// The aarch64 musl C compiler: `aarch64-linux-gnu-gcc` with [`AARCH64_MUSL_SPECS`].
fn aarch64_musl_gcc_script() -> String {
    format!("#!/bin/sh\nexec aarch64-linux-gnu-gcc \"$@\" -specs {AARCH64_MUSL_SPECS}\n")
}

/// Writes `target/cross/aarch64-linux-musl-gcc` (mode 755; left alone when unchanged) and
/// returns its path.
fn aarch64_musl_gcc() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;

    anyhow::ensure!(
        Path::new(AARCH64_MUSL_SPECS).is_file(),
        "{AARCH64_MUSL_SPECS} is missing: sudo dpkg --add-architecture arm64 && \
         sudo apt-get update && sudo apt-get install -y musl-dev:arm64"
    );
    let dir = sh::root().join("target/cross");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("aarch64-linux-musl-gcc");
    let script = aarch64_musl_gcc_script();
    if fs::read_to_string(&path).ok().as_deref() != Some(script.as_str()) {
        fs::write(&path, &script).with_context(|| format!("write {}", path.display()))?;
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", path.display()))?;
    Ok(path)
}

/// `cargo build --locked --profile PROFILE [--target TRIPLE] -p <each exporter>`, with the
/// cross linker and C compiler set for aarch64 and the C compiler for musl.
pub fn cargo_build(triple: &str, profile: &str) -> anyhow::Result<()> {
    let mut cmd = sh::cargo();
    cmd.args(["build", "--locked", "--profile", profile]).args(target_args(triple)?);
    for exporter in &EXPORTERS {
        cmd.args(["-p", exporter.name]);
    }
    match triple {
        "aarch64-unknown-linux-gnu" => {
            cmd.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
                .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
                .env("AR_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-ar");
        }
        "x86_64-unknown-linux-musl" => {
            cmd.env("CC_x86_64_unknown_linux_musl", "musl-gcc");
        }
        "aarch64-unknown-linux-musl" => {
            // Rust links against its own self-contained musl; gcc is only the linker driver.
            cmd.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "aarch64-linux-gnu-gcc")
                .env("CC_aarch64_unknown_linux_musl", aarch64_musl_gcc()?)
                .env("AR_aarch64_unknown_linux_musl", "aarch64-linux-gnu-ar");
        }
        _ => {}
    }
    let started = Instant::now();
    sh::run(&mut cmd)?;
    eprintln!("dist: built {triple} ({profile}) in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `target/[<triple>/]<profile>/`, where cargo puts the binaries (see [`target_args`]).
pub fn products_dir(triple: &str, profile: &str) -> anyhow::Result<PathBuf> {
    let is_host = host_triple()? == triple;
    Ok(products_dir_for(triple, is_host, profile))
}

fn products_dir_for(triple: &str, is_host: bool, profile: &str) -> PathBuf {
    // The `dev` profile writes to `debug/`; every other profile to its own name.
    let dir = if profile == "dev" { "debug" } else { profile };
    let target = sh::root().join("target");
    if is_host { target.join(dir) } else { target.join(triple).join(dir) }
}

/// Copies the four binaries of `triple` into `target/dist/bin/<triple>/` and records sizes.
pub fn collect(
    dist: &Path,
    triple: &str,
    profile: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let out = dist.join("bin").join(triple);
    fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    for exporter in &EXPORTERS {
        let from = products_dir(triple, profile)?.join(exporter.name);
        let to = out.join(exporter.name);
        fs::copy(&from, &to)
            .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
        let size = fs::metadata(&to).with_context(|| format!("stat {}", to.display()))?.len();
        report.binary(triple, exporter.name, size);
    }
    Ok(())
}

/// The version the x86_64 binaries print (`linkhub-exporter 0.1.0 (revision …)` -> `0.1.0`).
pub fn version(dist: &Path, native: &str) -> anyhow::Result<String> {
    let exporter = &EXPORTERS[0];
    let bin = dist.join("bin").join(native).join(exporter.name);
    let out = output(Command::new(&bin).arg("--version"))?;
    parse_version(exporter.name, &out)
}

fn parse_version(name: &str, line: &str) -> anyhow::Result<String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(n), Some(v)) if n == name && v.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
            Ok(v.to_owned())
        }
        _ => anyhow::bail!("unexpected `{name} --version` output {line:?}"),
    }
}

/// Runs `cmd`, returning stdout; a failure names the command and shows stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = sh::display(cmd);
    let out = cmd.output().with_context(|| format!("start `{shown}`"))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The date for the man pages: `SOURCE_DATE_EPOCH`, else the last commit's date.
fn man_date() -> String {
    let from_epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|epoch| {
        output(Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%F"])).ok()
    });
    let from_git = || {
        output(Command::new("git").args(["log", "-1", "--format=%cs"]).current_dir(sh::root())).ok()
    };
    from_epoch
        .or_else(from_git)
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "1970-01-01".to_owned())
}

/// Writes `target/dist/man/<exporter>.1.gz` (from the x86_64 binary's `--help`, gzip -9n)
/// and copies it to `target/<triple>/<profile>/man/`, where the `target/release/man/…`
/// asset of `[package.metadata.deb]` finds it for every target.
pub fn man_pages(
    dist: &Path,
    version: &str,
    targets: &[(&str, &str)],
    profile: &str,
) -> anyhow::Result<()> {
    let man = dist.join("man");
    fs::create_dir_all(&man).with_context(|| format!("create {}", man.display()))?;
    let date = man_date();
    for exporter in &EXPORTERS {
        let bin = dist.join("bin").join(targets[0].0).join(exporter.name);
        let help = output(Command::new(&bin).arg("--help"))?;
        let page = manpage::render(exporter, &help, version, &date)
            .with_context(|| format!("man page of {}", exporter.name))?;
        let roff = man.join(format!("{}.1", exporter.name));
        fs::write(&roff, page).with_context(|| format!("write {}", roff.display()))?;
        let gz = man.join(format!("{}.1.gz", exporter.name));
        let compressed =
            Command::new("gzip").args(["-9n", "-c"]).arg(&roff).output().context("run gzip -9n")?;
        if !compressed.status.success() {
            anyhow::bail!("gzip -9n {} failed", roff.display());
        }
        fs::write(&gz, &compressed.stdout).with_context(|| format!("write {}", gz.display()))?;
        for (triple, _) in targets {
            let dir = products_dir(triple, profile)?.join("man");
            fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let to = dir.join(format!("{}.1.gz", exporter.name));
            fs::copy(&gz, &to).with_context(|| format!("copy the man page to {}", to.display()))?;
        }
    }
    eprintln!("dist: man pages in {}", man.display());
    Ok(())
}

/// The arm64 binaries: `file` says aarch64 ELF, and under `qemu-aarch64-static` with the
/// arm64 sysroot they print `<name> <version>` for `--version`.
pub fn check_arm64(dist: &Path, version: &str, report: &mut Report) -> anyhow::Result<()> {
    for exporter in &EXPORTERS {
        let bin = dist.join("bin/aarch64-unknown-linux-gnu").join(exporter.name);
        let file = output(Command::new("file").arg("-b").arg(&bin))?;
        if !file.contains("ELF 64-bit") || !file.contains("ARM aarch64") {
            anyhow::bail!("{} is not an aarch64 ELF file: {}", bin.display(), file.trim());
        }
        let printed = output(
            Command::new("qemu-aarch64-static")
                .args(["-L", "/usr/aarch64-linux-gnu"])
                .arg(&bin)
                .arg("--version"),
        )?;
        let expected = format!("{} {version}", exporter.name);
        if !printed.starts_with(&expected) {
            anyhow::bail!(
                "{} --version under qemu printed {printed:?}, not {expected:?}",
                bin.display()
            );
        }
        report.note(format!(
            "arm64 {}: {} | qemu: {}",
            exporter.name,
            short_file(&file),
            printed.trim()
        ));
    }
    Ok(())
}

fn short_file(file: &str) -> String {
    file.split(',').take(2).collect::<Vec<_>>().join(",").trim().to_owned()
}

/// `target/dist/SHA256SUMS` over every file under `bin/`, `deb/`, `images/`, `man/`.
pub fn sha256sums(dist: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for sub in ["bin", "deb", "images", "man"] {
        walk(&dist.join(sub), &mut files)?;
    }
    files.sort();
    let rel: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(dist).ok())
        .map(|f| f.display().to_string())
        .collect();
    if rel.is_empty() {
        return Ok(());
    }
    let sums = output(Command::new("sha256sum").args(&rel).current_dir(dist))?;
    let path = dist.join("SHA256SUMS");
    fs::write(&path, sums).with_context(|| format!("write {}", path.display()))?;
    eprintln!("dist: {} files in {}", rel.len(), path.display());
    Ok(())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry.with_context(|| format!("list {}", dir.display()))?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn version_is_the_second_word_of_the_version_line() {
        let line = "linkhub-exporter 0.1.0 (revision a57ed30, rustc 1.95.0)\n";
        assert_eq!(super::parse_version("linkhub-exporter", line).unwrap(), "0.1.0");
        assert!(super::parse_version("mm-exporter", line).is_err());
        assert!(super::parse_version("linkhub-exporter", "linkhub-exporter\n").is_err());
        assert!(super::parse_version("linkhub-exporter", "").is_err());
    }

    #[test]
    fn aarch64_musl_gcc_passes_the_arguments_before_the_specs() {
        assert_eq!(
            super::aarch64_musl_gcc_script(),
            "#!/bin/sh\nexec aarch64-linux-gnu-gcc \"$@\" -specs \
             /usr/lib/aarch64-linux-musl/musl-gcc.specs\n"
        );
    }

    #[test]
    fn products_dir_follows_cargo_layout() {
        let dir = super::products_dir_for("aarch64-unknown-linux-gnu", false, "release");
        assert!(dir.ends_with("target/aarch64-unknown-linux-gnu/release"), "{}", dir.display());
        assert!(super::products_dir_for("x", false, "dev").ends_with("target/x/debug"));
        assert!(super::products_dir_for("x", true, "ci-release").ends_with("target/ci-release"));
        assert!(super::host_triple().unwrap().contains("-linux"));
    }
}
