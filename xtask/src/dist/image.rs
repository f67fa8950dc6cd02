//! Container images for amd64 and arm64: static musl builds for both, `buildah bud
//! --platform linux/<arch>` of `packaging/container/<exporter>.Containerfile` (FROM scratch
//! with COPY only, so no emulation is needed), hadolint, the size limits, and the results in
//! `target/dist/images/`:
//!
//! - `localhost/<exporter>:<version>-<arch>`, saved as `<exporter>_<version>_<arch>.tar`
//!   (docker-archive, loads as `localhost/<exporter>:<version>`);
//! - the manifest lists `localhost/<exporter>:<version>` and `:latest` over both, saved as
//!   the multi-arch `<exporter>_<version>.oci.tar` (an OCI layout holding Docker v2s2
//!   manifests: OCI image configs have no HEALTHCHECK).
//!
//! The amd64 image runs with podman (`--version`, then a started container's `podman
//! healthcheck run`). Without binfmt_misc an arm64 container cannot run here, so the arm64
//! image is checked from outside: `podman image inspect` says linux/arm64, and its binary,
//! copied back out of the image, is the one built and runs under `qemu-aarch64-static`
//! (`--version`, then started on a loopback port until `--healthcheck` exits 0).
//!
//! podman runs with runc and lowered ulimits from `target/dist/containers.conf`
//! (crun fails on this machine kind, see tooling.md §5).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    EXPORTERS, Exporter, build,
    build::output,
    deb::{free_port, http_get, stop},
    report::{ImageRow, Report, human},
};
use crate::sh;

/// One image architecture and the musl target its binaries come from.
#[derive(Debug, Clone, Copy)]
struct Arch {
    /// The Rust target.
    triple: &'static str,
    /// The OCI (and Debian) architecture name.
    name: &'static str,
    /// What `file -b` says about a binary of this architecture.
    file_says: &'static str,
    /// The user-mode emulator its binary is checked with, for an architecture whose
    /// containers cannot run here; `None`: run the image with podman.
    qemu: Option<&'static str>,
}

/// amd64 first: its binary gives the version, and it is the one podman can run here.
const ARCHES: [Arch; 2] = [
    Arch { triple: "x86_64-unknown-linux-musl", name: "amd64", file_says: "x86-64", qemu: None },
    Arch {
        triple: "aarch64-unknown-linux-musl",
        name: "arm64",
        file_says: "ARM aarch64",
        qemu: Some("qemu-aarch64-static"),
    },
];

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CONTAINERS_CONF: &str = "[containers]\n\
    default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
    [engine]\n\
    runtime = \"runc\"\n";

/// Labels and timestamps shared by every image of one run.
struct Stamp {
    version: String,
    /// Short git revision.
    revision: String,
    /// Commit time as Unix seconds (`--timestamp`, reproducible images).
    epoch: String,
    /// The same as RFC 3339.
    created: String,
}

pub fn build_all(dist: &Path, profile: &str, report: &mut Report) -> anyhow::Result<()> {
    for arch in &ARCHES {
        let started = Instant::now();
        build::cargo_build(arch.triple, profile)?;
        report.timing(format!("build {}", arch.triple), started.elapsed());
        build::collect(dist, arch.triple, profile, report)?;
    }
    let stamp = source_date(build::version(dist, ARCHES[0].triple)?)?;
    let conf = dist.join("containers.conf");
    fs::write(&conf, CONTAINERS_CONF).with_context(|| format!("write {}", conf.display()))?;
    let images = dist.join("images");
    fs::create_dir_all(&images).with_context(|| format!("create {}", images.display()))?;
    let _ = fs::remove_dir_all(dist.join("image-context"));
    let started = Instant::now();
    for exporter in &EXPORTERS {
        let hadolint = hadolint(exporter, report);
        let mut tags = Vec::new();
        for arch in &ARCHES {
            match image(dist, exporter, arch, &stamp, &hadolint, &conf, report) {
                Ok(row) => {
                    tags.push(row.image.clone());
                    report.image(row);
                }
                Err(err) => {
                    report.fail(format!("image {} {}: {err:#}", exporter.name, arch.name));
                }
            }
        }
        if tags.len() < ARCHES.len() {
            eprintln!("dist: no manifest list for {}: not every image was built", exporter.name);
            continue;
        }
        let list = format!("localhost/{}:{}", exporter.name, stamp.version);
        match manifest_list(dist, exporter, &stamp.version, &tags, &conf) {
            Ok(summary) => report.check(format!("manifest list {list}"), summary),
            Err(err) => report.fail(format!("manifest list {list}: {err:#}")),
        }
    }
    report.timing("images (buildah, hadolint, podman, qemu)".to_owned(), started.elapsed());
    Ok(())
}

/// `hadolint` over the exporter's Containerfile (one for every architecture).
fn hadolint(exporter: &Exporter, report: &mut Report) -> String {
    match output(Command::new("hadolint").arg(containerfile(exporter))) {
        Ok(_) => "clean".to_owned(),
        Err(err) => {
            report.fail(format!("hadolint {}: {err:#}", exporter.name));
            "FAILED".to_owned()
        }
    }
}

fn containerfile(exporter: &Exporter) -> PathBuf {
    sh::root().join("packaging/container").join(format!("{}.Containerfile", exporter.name))
}

/// Builds, measures, saves and tests `localhost/<exporter>:<version>-<arch>`.
fn image(
    dist: &Path,
    exporter: &Exporter,
    arch: &Arch,
    stamp: &Stamp,
    hadolint: &str,
    conf: &Path,
    report: &mut Report,
) -> anyhow::Result<ImageRow> {
    let name = exporter.name;
    let version = &stamp.version;
    let bin = dist.join("bin").join(arch.triple).join(name);
    let file = output(Command::new("file").arg("-b").arg(&bin))?;
    anyhow::ensure!(
        (file.contains("statically linked") || file.contains("static-pie linked"))
            && file.contains(arch.file_says),
        "{} is not a static {} binary: {}",
        bin.display(),
        arch.file_says,
        file.trim()
    );

    let context = dist.join("image-context").join(arch.name).join(name);
    fs::create_dir_all(&context).with_context(|| format!("create {}", context.display()))?;
    fs::copy(&bin, context.join(name)).context("copy the binary into the build context")?;
    fs::copy(CA_BUNDLE, context.join("ca-certificates.crt"))
        .with_context(|| format!("copy {CA_BUNDLE} (apt-get install ca-certificates)"))?;

    let tag = format!("localhost/{name}:{version}-{}", arch.name);
    sh::run(
        buildah(conf)
            .args(["bud", "--quiet", "--format", "docker", "--layers=false"])
            .args(["--platform", &format!("linux/{}", arch.name)])
            .args(["--timestamp", &stamp.epoch])
            .args(["--build-arg", &format!("VERSION={version}")])
            .args(["--build-arg", &format!("REVISION={}", stamp.revision)])
            .args(["--build-arg", &format!("CREATED={}", stamp.created)])
            .args(["-t", &tag])
            .arg("-f")
            .arg(containerfile(exporter))
            .arg(&context),
    )?;
    let inspected = output(podman(conf).args([
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}} {{.Size}}",
        &tag,
    ]))?;
    let (platform, size) = inspected.trim().split_once(' ').context("podman image inspect")?;
    let wanted = format!("linux/{}", arch.name);
    anyhow::ensure!(platform == wanted, "{tag} is labelled {platform}, not {wanted}");
    let size: u64 = size.parse().context("podman image inspect: size")?;
    let limit = exporter.image_limit_mib * 1024 * 1024;
    if size > limit {
        report.fail(format!(
            "image {tag} is {} (limit {} MiB)",
            human(size),
            exporter.image_limit_mib
        ));
    }
    // A docker-archive (keeps HEALTHCHECK) that loads under the plain version tag as well.
    let archive = dist.join("images").join(format!("{name}_{version}_{}.tar", arch.name));
    let _ = fs::remove_file(&archive);
    output(
        buildah(conf)
            .args(["push", "--quiet", &tag])
            .arg(format!("docker-archive:{}:localhost/{name}:{version}", archive.display())),
    )?;

    let tested = match arch.qemu {
        None => run_image(exporter, &tag, version, conf),
        Some(qemu) => qemu_check(dist, exporter, arch, qemu, &tag, version, conf),
    };
    let run = match tested {
        Ok(summary) => summary,
        Err(err) => {
            report.fail(format!("run {tag}: {err:#}"));
            "FAILED".to_owned()
        }
    };
    eprintln!(
        "dist: {tag}: {} (limit {} MiB), hadolint {hadolint}; {run}",
        human(size),
        exporter.image_limit_mib
    );
    Ok(ImageRow {
        image: tag,
        arch: arch.name.to_owned(),
        size,
        limit_mib: exporter.image_limit_mib,
        hadolint: hadolint.to_owned(),
        run,
    })
}

fn podman(conf: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

fn buildah(conf: &Path) -> Command {
    let mut cmd = Command::new("buildah");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

/// The labels and timestamps: git revision and commit time (`SOURCE_DATE_EPOCH` first).
fn source_date(version: String) -> anyhow::Result<Stamp> {
    let git = |format: &str| {
        output(
            Command::new("git")
                .args(["log", "-1", &format!("--format={format}")])
                .current_dir(sh::root()),
        )
        .map(|s| s.trim().to_owned())
    };
    let revision = git("%h").unwrap_or_else(|_| "unknown".to_owned());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .or_else(|_| git("%ct"))
        .unwrap_or_else(|_| "0".to_owned());
    let created = output(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{epoch}"),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]))?
    .trim()
    .to_owned();
    Ok(Stamp { version, revision, epoch, created })
}

/// Makes the manifest lists `localhost/<exporter>:<version>` and `:latest` over `tags` and
/// saves the first as `<exporter>_<version>.oci.tar`, then reads the archive back: one
/// list with every architecture, each image with its HEALTHCHECK.
fn manifest_list(
    dist: &Path,
    exporter: &Exporter,
    version: &str,
    tags: &[String],
    conf: &Path,
) -> anyhow::Result<String> {
    let name = exporter.name;
    let list = format!("localhost/{name}:{version}");
    for reference in [list.clone(), format!("localhost/{name}:latest")] {
        remove_name(&reference, conf)?;
        output(buildah(conf).args(["manifest", "create", &reference]))?;
        for tag in tags {
            output(buildah(conf).args([
                "manifest",
                "add",
                &reference,
                &format!("containers-storage:{tag}"),
            ]))?;
        }
    }
    let archive = dist.join("images").join(format!("{name}_{version}.oci.tar"));
    let _ = fs::remove_file(&archive);
    // v2s2: converting to OCI manifests would drop the images' HEALTHCHECK.
    output(
        buildah(conf)
            .args(["manifest", "push", "--all", "--quiet", "--format", "v2s2", &list])
            .arg(format!("oci-archive:{}:{list}", archive.display())),
    )?;
    let platforms = archive_platforms(&archive)?;
    let wanted: Vec<String> = ARCHES.iter().map(|a| format!("linux/{}", a.name)).collect();
    anyhow::ensure!(
        platforms == wanted,
        "{} holds {platforms:?}, not {wanted:?}",
        archive.display()
    );
    let size = fs::metadata(&archive).with_context(|| format!("stat {}", archive.display()))?.len();
    let file = archive.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(format!(
        "{} (also :latest); {file} {}, every image with its HEALTHCHECK",
        platforms.join(" + "),
        human(size)
    ))
}

/// Removes the local name `reference`: a manifest list with `buildah manifest rm` (`buildah
/// rmi` of a list name removes the image it resolves to for this machine, not the list), an
/// image (a single-architecture one from before the lists) with `buildah rmi`, which only
/// untags it when it has further names.
fn remove_name(reference: &str, conf: &Path) -> anyhow::Result<()> {
    let exists = |kind: &str| {
        podman(conf)
            .args([kind, "exists", reference])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if exists("manifest") {
        output(buildah(conf).args(["manifest", "rm", reference]))?;
    } else if exists("image") {
        output(buildah(conf).args(["rmi", reference]))?;
    }
    Ok(())
}

/// `os/architecture` of every image in the multi-arch archive, checking on the way that
/// each one's config has a HEALTHCHECK.
fn archive_platforms(archive: &Path) -> anyhow::Result<Vec<String>> {
    let index = archive_json(archive, "index.json")?;
    let list_digest = index["manifests"][0]["digest"].as_str().context("index.json: digest")?;
    let list = archive_blob(archive, list_digest)?;
    let entries = list["manifests"].as_array().context("the list has no manifests")?;
    let mut platforms = Vec::new();
    for entry in entries {
        let platform = format!(
            "{}/{}",
            entry["platform"]["os"].as_str().unwrap_or("?"),
            entry["platform"]["architecture"].as_str().unwrap_or("?")
        );
        let manifest = archive_blob(archive, entry["digest"].as_str().context("entry digest")?)?;
        let config =
            archive_blob(archive, manifest["config"]["digest"].as_str().context("config")?)?;
        anyhow::ensure!(
            config["config"]["Healthcheck"].is_object(),
            "the {platform} image in {} has no HEALTHCHECK",
            archive.display()
        );
        platforms.push(platform);
    }
    Ok(platforms)
}

/// A JSON blob (`sha256:<hex>`) of an OCI archive.
fn archive_blob(archive: &Path, digest: &str) -> anyhow::Result<serde_json::Value> {
    let hex = digest.strip_prefix("sha256:").with_context(|| format!("digest {digest}"))?;
    anyhow::ensure!(hex.chars().all(|c| c.is_ascii_hexdigit()), "digest {digest}");
    archive_json(archive, &format!("blobs/sha256/{hex}"))
}

fn archive_json(archive: &Path, member: &str) -> anyhow::Result<serde_json::Value> {
    let text = output(Command::new("tar").arg("-xOf").arg(archive).arg(member))?;
    serde_json::from_str(&text).with_context(|| format!("{member} in {}", archive.display()))
}

/// `podman run IMAGE --version`, then a detached container on a loopback port (host
/// network) until `podman healthcheck run` says healthy, `/metrics` once, and its RSS.
fn run_image(exporter: &Exporter, tag: &str, version: &str, conf: &Path) -> anyhow::Result<String> {
    let printed = output(podman(conf).args([
        "run",
        "--rm",
        "--network=host",
        "--no-healthcheck",
        tag,
        "--version",
    ]))?;
    let expected = format!("{} {version}", exporter.name);
    anyhow::ensure!(printed.starts_with(&expected), "--version printed {printed:?}");

    let port = free_port()?;
    let closed = format!("127.0.0.1:{}", free_port()?);
    let addr = format!("127.0.0.1:{port}");
    let container = format!("dist-smoke-{}", exporter.name);
    let _ = podman(conf).args(["rm", "-f", &container]).output();
    let mut cmd = podman(conf);
    cmd.args([
        "run",
        "-d",
        "--rm",
        "--network=host",
        "--read-only",
        "--cap-drop=ALL",
        "--name",
        &container,
    ])
    .arg("-e")
    .arg(format!("{}_LISTEN_ADDRESS={addr}", exporter.env_prefix));
    for (key, value) in exporter.smoke_env {
        cmd.arg("-e").arg(format!("{key}={value}"));
    }
    cmd.arg(tag).args(exporter.smoke_args.iter().map(|a| a.replace("{closed}", &closed)));
    output(&mut cmd)?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let check = podman(conf)
                .args(["healthcheck", "run", &container])
                .output()
                .context("podman healthcheck run")?;
            if check.status.success() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "podman healthcheck run never passed: {}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            thread::sleep(Duration::from_millis(500));
        }
        metrics_answer(&addr, exporter)?;
        let pid = output(podman(conf).args(["inspect", "--format", "{{.State.Pid}}", &container]))?;
        let rss =
            rss_kib(pid.trim()).map(|k| format!(", RSS {} MiB", k / 1024)).unwrap_or_default();
        Ok(format!("podman: --version ok, healthy, /metrics 200{rss}"))
    })();
    // Logs first: the container is started with --rm, so it is gone once stopped.
    if result.is_err()
        && let Ok(logs) = output(podman(conf).args(["logs", &container]))
    {
        eprintln!("{container} logs:\n{logs}");
    }
    let _ = podman(conf).args(["stop", "-t", "5", &container]).output();
    result
}

/// The image's binary, copied out (`podman create` + `podman cp`), is the one built; under
/// `qemu` (`qemu-aarch64-static`) it prints the version, and started on a loopback port it passes
/// its own `--healthcheck`, serves `/metrics` and stops on SIGTERM.
fn qemu_check(
    dist: &Path,
    exporter: &Exporter,
    arch: &Arch,
    qemu: &str,
    tag: &str,
    version: &str,
    conf: &Path,
) -> anyhow::Result<String> {
    let name = exporter.name;
    let dir = dist.join("image-context").join(arch.name).join("extracted");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let bin = dir.join(name);
    let _ = fs::remove_file(&bin);
    let container = output(podman(conf).args([
        "create",
        "--no-healthcheck",
        "--platform",
        &format!("linux/{}", arch.name),
        tag,
    ]))?
    .trim()
    .to_owned();
    let copied = output(podman(conf).arg("cp").arg(format!("{container}:/{name}")).arg(&bin));
    let removed = output(podman(conf).args(["rm", &container]));
    copied?;
    removed?;
    let built = dist.join("bin").join(arch.triple).join(name);
    anyhow::ensure!(
        fs::read(&bin).context("read the copied binary")?
            == fs::read(&built).with_context(|| format!("read {}", built.display()))?,
        "/{name} in {tag} differs from {}",
        built.display()
    );

    let printed = output(Command::new(qemu).arg(&bin).arg("--version"))?;
    let expected = format!("{name} {version}");
    anyhow::ensure!(printed.starts_with(&expected), "--version under qemu printed {printed:?}");

    let closed = format!("127.0.0.1:{}", free_port()?);
    let addr = format!("127.0.0.1:{}", free_port()?);
    let listen = (format!("{}_LISTEN_ADDRESS", exporter.env_prefix), addr.clone());
    let log_path = dir.join(format!("{name}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let mut child = Command::new(qemu)
        .arg(&bin)
        .args(exporter.smoke_args.iter().map(|a| a.replace("{closed}", &closed)))
        .env(&listen.0, &listen.1)
        .envs(exporter.smoke_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("start the exporter under {qemu}"))?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let check = Command::new(qemu)
                .arg(&bin)
                .arg("--healthcheck")
                .env(&listen.0, &listen.1)
                .envs(exporter.smoke_env.iter().copied())
                .output()
                .context("run --healthcheck under qemu")?;
            if check.status.success() {
                break;
            }
            if let Some(status) = child.try_wait().context("wait for the exporter")? {
                anyhow::bail!("the exporter exited before it was healthy ({status})");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "--healthcheck never exited 0 within 30 s: {}",
                String::from_utf8_lossy(&check.stderr).trim()
            );
            thread::sleep(Duration::from_millis(500));
        }
        metrics_answer(&addr, exporter)?;
        Ok("qemu: same binary, --version ok, --healthcheck 0, /metrics 200".to_owned())
    })();
    let stopped = stop(&mut child);
    if result.is_err() || stopped.is_err() {
        let logs = fs::read_to_string(&log_path).unwrap_or_default();
        eprintln!("{name} under qemu, stderr:\n{logs}");
    }
    let summary = result?;
    stopped?;
    Ok(format!("{summary}, SIGTERM exit 0"))
}

/// `/metrics` on `addr` answers 200 with the exporter's `<ns>_up`.
fn metrics_answer(addr: &str, exporter: &Exporter) -> anyhow::Result<()> {
    let (status, body) = http_get(&format!("http://{addr}/metrics"))?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    anyhow::ensure!(
        body.contains(&format!("{}_up ", exporter.namespace)),
        "no {}_up in /metrics",
        exporter.namespace
    );
    Ok(())
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: &str) -> Option<u64> {
    let status = fs::read_to_string(PathBuf::from("/proc").join(pid).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}
