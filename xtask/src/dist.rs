//! `cargo xtask dist`: release builds, Debian packages, container images and the checks of
//! the deployment manifests, all into `target/dist/` (issue 7).
//!
//! - default: x86_64 + aarch64 glibc builds, `.deb` packages for amd64 and arm64 (lintian,
//!   `systemd-analyze verify` and `security`), the arm64 binaries under qemu, static x86_64
//!   and aarch64 musl builds, buildah images for amd64 and arm64 with multi-arch manifest
//!   lists (hadolint, size limits, the amd64 image run with podman, the arm64 image's binary
//!   under qemu), the Kubernetes and compose files (kubernetes-validate, yamllint, promtool),
//!   `SHA256SUMS` and a results table;
//! - `--amd64-only`: what CI runs ([`ci`]): x86_64 build, amd64 packages and their checks;
//! - `--images`: only the musl builds, the amd64 and arm64 images and the manifest checks.
//!
//! When run as root with dpkg, and none of the packages is installed already, the amd64
//! packages are also installed, their unit's `ExecStart` is run by hand with the packaged
//! defaults file and `/metrics` fetched, and the packages are purged again.
//! Missing tools are installed (and named) first, see `dist/tools.rs`.

mod build;
mod deb;
mod image;
mod manifest;
mod manpage;
mod report;
mod tools;

use std::{path::PathBuf, time::Instant};

use argh::FromArgs;

use crate::sh;

/// A secret the unit hands over as a systemd credential.
#[derive(Debug, Clone, Copy)]
pub struct Credential {
    /// The credential name (`LoadCredential=NAME:PATH`).
    pub name: &'static str,
    /// The file on the host.
    pub path: &'static str,
    /// What it is, for the man page.
    pub what: &'static str,
}

/// What packaging needs to know about one exporter.
#[derive(Debug, Clone, Copy)]
pub struct Exporter {
    /// Binary, package, unit and image name.
    pub name: &'static str,
    /// The one-line summary (also the man page's NAME line).
    pub summary: &'static str,
    /// The environment variable prefix without `_`.
    pub env_prefix: &'static str,
    /// The metric namespace (`<ns>_up`).
    pub namespace: &'static str,
    /// The default port.
    pub port: u16,
    pub credential: Option<Credential>,
    /// Environment variables beyond `<PREFIX>_<FLAG>`, for the man page.
    pub extra_env: &'static [(&'static str, &'static str)],
    /// Further files for the man page's FILES section.
    pub extra_files: &'static [(&'static str, &'static str)],
    /// Further SEE ALSO references, `page(section)`.
    pub see_also: &'static [&'static str],
    /// Largest allowed image size in MiB.
    pub image_limit_mib: u64,
    /// Flags that point the exporter at a closed loopback port (or a missing bus) for the
    /// smoke tests, so that a scrape never leaves the machine; `{closed}` is replaced by a
    /// `127.0.0.1:PORT` nothing listens on.
    pub smoke_args: &'static [&'static str],
    /// Environment for the smoke tests (e.g. a dummy API key the exporter insists on).
    pub smoke_env: &'static [(&'static str, &'static str)],
}

/// The four exporters.
pub const EXPORTERS: [Exporter; 4] = [
    Exporter {
        name: "linkhub-exporter",
        summary: "Prometheus exporter for Alcatel/TCL LinkHub 4G routers",
        env_prefix: "LINKHUB",
        namespace: "linkhub",
        port: 9877,
        credential: Some(Credential {
            name: "linkhub-password",
            path: "/etc/linkhub-exporter/password",
            what: "router's web UI password (an empty file means no login)",
        }),
        extra_env: &[],
        extra_files: &[],
        see_also: &[],
        image_limit_mib: 10,
        smoke_args: &["--target", "http://{closed}"],
        smoke_env: &[],
    },
    Exporter {
        name: "mm-exporter",
        summary: "Prometheus exporter for cellular modems managed by ModemManager",
        env_prefix: "MM",
        namespace: "modemmanager",
        port: 9539,
        credential: None,
        extra_env: &[],
        extra_files: &[(
            "/usr/share/doc/mm-exporter/examples/50-mm-exporter.rules",
            "example polkit rule that lets the mm-exporter user call Signal.Setup (for \
             --signal-rate); copy it to /etc/polkit-1/rules.d/ to use it",
        )],
        see_also: &["ModemManager(8)", "mmcli(1)"],
        image_limit_mib: 10,
        smoke_args: &["--bus-address", "unix:path=/nonexistent/system_bus_socket"],
        smoke_env: &[],
    },
    Exporter {
        name: "ttn-exporter",
        summary: "Prometheus exporter for LoRaWAN gateways on The Things Stack",
        env_prefix: "TTN",
        namespace: "ttn",
        port: 9714,
        credential: Some(Credential {
            name: "ttn-api-key",
            path: "/etc/ttn-exporter/api-key",
            what: "The Things Stack API key",
        }),
        extra_env: &[(
            "TTN_API_KEY",
            "the API key itself, when neither --api-key-file nor the systemd credential is \
             used (a secret: prefer the file)",
        )],
        extra_files: &[],
        see_also: &[],
        image_limit_mib: 10,
        smoke_args: &["--api-url", "http://{closed}"],
        smoke_env: &[("TTN_API_KEY", "NNSXS.SMOKE-TEST-NOT-A-KEY")],
    },
    Exporter {
        name: "smarthub-exporter",
        summary: "Prometheus exporter for the BT Smart Hub 2",
        env_prefix: "SMARTHUB",
        namespace: "smarthub",
        port: 9101,
        credential: None,
        extra_env: &[(
            "SMARTHUB_HOST",
            "the hub of the earlier Go exporter, read when neither --target nor \
             SMARTHUB_TARGET is set",
        )],
        extra_files: &[],
        see_also: &[],
        image_limit_mib: 12,
        smoke_args: &["--target", "http://{closed}"],
        smoke_env: &[],
    },
];

/// The glibc targets the packages are built for: (Rust target, Debian architecture).
pub const GNU_TARGETS: [(&str, &str); 2] =
    [("x86_64-unknown-linux-gnu", "amd64"), ("aarch64-unknown-linux-gnu", "arm64")];

/// build release binaries, .deb packages (amd64, arm64) and container images into target/dist
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "dist")]
pub struct Dist {
    /// only what CI runs: x86_64 glibc build, amd64 packages, lintian, systemd-analyze, the
    /// manifest lints (and the dpkg install test when root)
    #[argh(switch)]
    amd64_only: bool,
    /// only the container part: static x86_64 and aarch64 musl builds, amd64 and arm64
    /// buildah images and their manifest lists, hadolint, size limits, a podman run (amd64),
    /// qemu checks (arm64), and the kubernetes/compose checks
    #[argh(switch)]
    images: bool,
    /// cargo profile of the builds (default release)
    #[argh(option, default = "String::from(\"release\")")]
    profile: String,
    /// skip the dpkg -i / ExecStart / purge test that runs when root
    #[argh(switch)]
    no_install_test: bool,
}

/// What one run does.
#[derive(Debug, Clone)]
struct Plan {
    packages: bool,
    /// The aarch64 glibc build and the arm64 packages.
    arm64: bool,
    /// The images, for amd64 and arm64 both.
    images: bool,
    manifests: bool,
    install_test: bool,
    profile: String,
}

impl Dist {
    pub fn run(self) -> anyhow::Result<()> {
        if self.amd64_only && self.images {
            anyhow::bail!("--amd64-only and --images exclude each other");
        }
        let plan = Plan {
            packages: !self.images,
            arm64: !self.amd64_only && !self.images,
            images: !self.amd64_only,
            manifests: true,
            install_test: !self.images && !self.no_install_test,
            profile: self.profile,
        };
        execute(&plan)
    }
}

/// The amd64 part of `cargo xtask dist`, for `cargo xtask ci` (the same as `--amd64-only`):
/// x86_64 release build, amd64 packages, lintian, `systemd-analyze verify` + `security`, the
/// Kubernetes/compose lints, and (when root) dpkg -i, the ExecStart smoke run and purge.
pub fn ci() -> anyhow::Result<()> {
    Dist { amd64_only: true, images: false, profile: "release".to_owned(), no_install_test: false }
        .run()
}

/// `target/dist/` (created).
fn dist_dir() -> anyhow::Result<PathBuf> {
    let dir = sh::root().join("target/dist");
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn execute(plan: &Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    let dist = dist_dir()?;
    let mut report = report::Report::default();

    tools::ensure(&tools::Needs {
        packages: plan.packages,
        arm64: plan.arm64,
        images: plan.images,
        manifests: plan.manifests,
    })?;

    if plan.packages {
        let mut targets = vec![GNU_TARGETS[0]];
        if plan.arm64 {
            targets.push(GNU_TARGETS[1]);
        }
        for (triple, _) in &targets {
            let step = Instant::now();
            build::cargo_build(triple, &plan.profile)?;
            report.timing(format!("build {triple}"), step.elapsed());
            build::collect(&dist, triple, &plan.profile, &mut report)?;
        }
        let version = build::version(&dist, GNU_TARGETS[0].0)?;
        let step = Instant::now();
        build::man_pages(&dist, &version, &targets, &plan.profile)?;
        for (triple, arch) in &targets {
            deb::package_all(&dist, triple, arch, &plan.profile, &mut report)?;
        }
        report.timing("packages and checks".to_owned(), step.elapsed());
        if plan.arm64 {
            build::check_arm64(&dist, &version, &mut report)?;
        }
        if plan.install_test {
            let step = Instant::now();
            deb::install_test(&dist, &mut report)?;
            report.timing("install test".to_owned(), step.elapsed());
        }
    }
    if plan.images {
        image::build_all(&dist, &plan.profile, &mut report)?;
    }
    if plan.manifests {
        let step = Instant::now();
        manifest::check_all(&mut report)?;
        report.timing("manifest checks".to_owned(), step.elapsed());
    }
    build::sha256sums(&dist)?;
    report.timing("total".to_owned(), started.elapsed());
    report.print_and_save(&dist)?;
    report.result()
}
