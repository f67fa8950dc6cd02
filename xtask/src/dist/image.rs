//! Container images: static musl builds, `buildah bud` of `packaging/container/<exporter>.Containerfile`
//! (FROM scratch), hadolint, the size limits, `podman save` into `target/dist/images/`, and a
//! run with podman (`--version`, then a started container's `podman healthcheck run`).
//!
//! podman runs with runc and lowered ulimits from `target/dist/containers.conf`
//! (crun fails on this machine kind, see tooling.md §5).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    EXPORTERS, Exporter, build,
    build::output,
    deb::{free_port, http_get},
    report::{ImageRow, Report, human},
};
use crate::sh;

const MUSL: &str = "x86_64-unknown-linux-musl";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CONTAINERS_CONF: &str = "[containers]\n\
    default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
    [engine]\n\
    runtime = \"runc\"\n";

pub fn build_all(dist: &Path, profile: &str, report: &mut Report) -> anyhow::Result<()> {
    let started = Instant::now();
    build::cargo_build(MUSL, profile)?;
    report.timing(format!("build {MUSL}"), started.elapsed());
    build::collect(dist, MUSL, profile, report)?;
    let version = build::version(dist, MUSL)?;
    let conf = dist.join("containers.conf");
    fs::write(&conf, CONTAINERS_CONF).with_context(|| format!("write {}", conf.display()))?;
    let images = dist.join("images");
    fs::create_dir_all(&images).with_context(|| format!("create {}", images.display()))?;
    let started = Instant::now();
    for exporter in &EXPORTERS {
        match image(dist, exporter, &version, &conf, report) {
            Ok(row) => report.image(row),
            Err(err) => report.fail(format!("image {}: {err:#}", exporter.name)),
        }
    }
    report.timing("images (buildah, hadolint, podman)".to_owned(), started.elapsed());
    Ok(())
}

fn image(
    dist: &Path,
    exporter: &Exporter,
    version: &str,
    conf: &Path,
    report: &mut Report,
) -> anyhow::Result<ImageRow> {
    let name = exporter.name;
    let bin = dist.join("bin").join(MUSL).join(name);
    let file = output(Command::new("file").arg("-b").arg(&bin))?;
    anyhow::ensure!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{} is not static: {}",
        bin.display(),
        file.trim()
    );

    let context = dist.join("image-context").join(name);
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context).with_context(|| format!("create {}", context.display()))?;
    fs::copy(&bin, context.join(name)).context("copy the binary into the build context")?;
    fs::copy(CA_BUNDLE, context.join("ca-certificates.crt"))
        .with_context(|| format!("copy {CA_BUNDLE} (apt-get install ca-certificates)"))?;

    let containerfile =
        sh::root().join("packaging/container").join(format!("{name}.Containerfile"));
    let hadolint = match output(Command::new("hadolint").arg(&containerfile)) {
        Ok(_) => "clean".to_owned(),
        Err(err) => {
            report.fail(format!("hadolint {name}: {err:#}"));
            "FAILED".to_owned()
        }
    };

    let tag = format!("localhost/{name}:{version}");
    let (revision, epoch, created) = source_date()?;
    sh::run(
        Command::new("buildah")
            .args([
                "bud",
                "--quiet",
                "--format",
                "docker",
                "--layers=false",
                "--platform",
                "linux/amd64",
            ])
            .args(["--timestamp", &epoch])
            .args(["--build-arg", &format!("VERSION={version}")])
            .args(["--build-arg", &format!("REVISION={revision}")])
            .args(["--build-arg", &format!("CREATED={created}")])
            .args(["-t", &tag, "-t", &format!("localhost/{name}:latest")])
            .arg("-f")
            .arg(&containerfile)
            .arg(&context)
            .env("CONTAINERS_CONF", conf),
    )?;
    let size: u64 = output(podman(conf).args(["image", "inspect", "--format", "{{.Size}}", &tag]))?
        .trim()
        .parse()
        .context("podman image inspect: size")?;
    let limit = exporter.image_limit_mib * 1024 * 1024;
    if size > limit {
        report.fail(format!(
            "image {tag} is {} (limit {} MiB)",
            human(size),
            exporter.image_limit_mib
        ));
    }
    let archive = dist.join("images").join(format!("{name}_{version}_amd64.tar"));
    let _ = fs::remove_file(&archive);
    output(
        podman(conf)
            .args(["save", "--quiet", "--format", "docker-archive", "-o"])
            .arg(&archive)
            .arg(&tag),
    )?;

    let run = match run_image(exporter, &tag, version, conf) {
        Ok(summary) => summary,
        Err(err) => {
            report.fail(format!("podman run {tag}: {err:#}"));
            "FAILED".to_owned()
        }
    };
    eprintln!(
        "dist: {tag}: {} (limit {} MiB), hadolint {hadolint}; {run}",
        human(size),
        exporter.image_limit_mib
    );
    Ok(ImageRow { image: tag, size, limit_mib: exporter.image_limit_mib, hadolint, run })
}

fn podman(conf: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

/// (git revision, commit time as Unix seconds, commit time RFC 3339), for labels and
/// `--timestamp` (reproducible image timestamps).
fn source_date() -> anyhow::Result<(String, String, String)> {
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
    Ok((revision, epoch, created))
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
        let (status, body) = http_get(&format!("http://{addr}/metrics"))?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        anyhow::ensure!(
            body.contains(&format!("{}_up ", exporter.namespace)),
            "no {}_up in /metrics",
            exporter.namespace
        );
        let pid = output(podman(conf).args(["inspect", "--format", "{{.State.Pid}}", &container]))?;
        let rss =
            rss_kib(pid.trim()).map(|k| format!(", RSS {} MiB", k / 1024)).unwrap_or_default();
        Ok(format!("--version ok, healthy, /metrics 200{rss}"))
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

/// VmRSS of a process in KiB.
fn rss_kib(pid: &str) -> Option<u64> {
    let status = fs::read_to_string(PathBuf::from("/proc").join(pid).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}
