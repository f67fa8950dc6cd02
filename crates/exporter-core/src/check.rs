//! `<binary> check` and `<binary> capture`: one scrape of each target with the exporter built
//! exactly as for serving (same flags, config file, secrets and login backoff), then a short
//! report (human or `--json`) or a redacted capture file instead of a server.

use std::{
    fmt::Write as _,
    io::Write as _,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    Exporter, ServeOptions, TargetError,
    capture::{self, Capture, CaptureFormat, Recorder},
    options::Command,
    scrape::{ProbeEnd, Rendered, Report, Scrape},
};

/// How long past the scrape deadline a probe may run so that its collectors' own deadline
/// errors are recorded (as the server does).
const PROBE_GRACE: Duration = Duration::from_millis(25);

/// One probe of `target`, bounded by `deadline`, inside a capture recorder when given.
pub(crate) async fn probe_once<E: Exporter>(
    exporter: &E,
    target: &E::Target,
    deadline: Instant,
    recorder: Option<Recorder>,
) -> Rendered {
    let start = Instant::now();
    let mut out = Scrape::new(E::NAMESPACE, target.to_string(), deadline);
    let probe = exporter.probe(target, &mut out);
    let bounded = tokio::time::timeout_at((deadline + PROBE_GRACE).into(), probe);
    let result = match recorder {
        Some(recorder) => capture::scope(recorder, bounded).await,
        None => bounded.await,
    };
    let end = match result {
        Ok(Ok(())) => ProbeEnd::Ok,
        Ok(Err(err)) => ProbeEnd::Failed(err),
        Err(_) => ProbeEnd::DeadlineExceeded,
    };
    out.finish(end, start.elapsed())
}

/// One scrape of `target` recorded and redacted into a capture.
pub(crate) async fn capture_once<E: Exporter>(
    exporter: &E,
    info: crate::ExporterInfo,
    target: &E::Target,
    deadline: Instant,
) -> (Rendered, Capture) {
    let started = SystemTime::now();
    let recorder = capture::recorder();
    let rendered = probe_once(exporter, target, deadline, Some(recorder.clone())).await;
    let label = target.to_string();
    let file = capture::build(
        &recorder,
        &capture::Meta {
            info,
            namespace: E::NAMESPACE,
            target: &label,
            started,
            exposition: &rendered.text(),
        },
    );
    (rendered, file)
}

/// What `check` or `capture` printed and its exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// 0: every target up (check) or the capture written; 1: a target down or the capture
    /// failed; 2: nothing to do (no target, bad `--target`).
    pub exit_code: u8,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    fn fail(code: u8, err: &anyhow::Error) -> CommandOutput {
        CommandOutput {
            exit_code: code,
            stdout: String::new(),
            stderr: format!("error: {err:#}\n"),
        }
    }

    /// Prints the output and returns the exit code.
    pub(crate) fn emit(self) -> ExitCode {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(self.stdout.as_bytes());
        let _ = stdout.flush();
        eprint!("{}", self.stderr);
        ExitCode::from(self.exit_code)
    }
}

/// Runs the `check` or `capture` of `opts.command` with `exporter` (built as for serving)
/// and returns what to print; [`crate::run`] prints it and exits with its code.
pub async fn run_command<E: Exporter>(exporter: &E, opts: &ServeOptions) -> CommandOutput {
    match &opts.command {
        Command::Serve => CommandOutput::default(),
        Command::Check { target, json } => {
            let targets = match select(exporter, target.as_deref()).await {
                Ok(targets) => targets,
                Err(err) => return CommandOutput::fail(2, &err),
            };
            let mut results = Vec::new();
            for (label, resolved) in targets {
                let report = match resolved {
                    Ok(target) => {
                        let deadline = Instant::now() + opts.scrape_timeout;
                        probe_once(exporter, &target, deadline, None).await.report
                    }
                    Err(why) => Report { error: Some(why), ..Report::default() },
                };
                results.push((label, report));
            }
            let all_up = results.iter().all(|(_, r)| r.up);
            let text = if *json {
                format!("{}\n", json_report(opts.info, &results))
            } else {
                human_report(opts.info, &results)
            };
            CommandOutput { exit_code: u8::from(!all_up), stdout: text, stderr: String::new() }
        }
        Command::Capture { target, out, format } => {
            match capture_command(exporter, opts, target.as_deref(), out, *format).await {
                Ok(output) => output,
                Err(err) => CommandOutput::fail(1, &err),
            }
        }
    }
}

async fn capture_command<E: Exporter>(
    exporter: &E,
    opts: &ServeOptions,
    target: Option<&str>,
    out: &Path,
    format: CaptureFormat,
) -> anyhow::Result<CommandOutput> {
    let mut targets = select(exporter, target).await?;
    anyhow::ensure!(
        targets.len() == 1,
        "capture records one target; choose one with --target ({})",
        targets.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>().join(", ")
    );
    let (label, resolved) = targets.remove(0);
    let target = resolved.map_err(|why| anyhow::anyhow!("target {label}: {why}"))?;
    let deadline = Instant::now() + opts.scrape_timeout;
    let (rendered, file) = capture_once(exporter, opts.info, &target, deadline).await;
    let text = file.to_text(format)?;
    let mut output = CommandOutput::default();
    let state = if rendered.report.up { "up" } else { "down" };
    if out.as_os_str() == "-" {
        output.stdout = text;
    } else {
        std::fs::write(out, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write the capture to {}: {e}", out.display()))?;
        output.stderr = format!(
            "wrote the capture of {} exchange(s) with {label} ({state}) to {}; read it before \
             sending it\n",
            file.exchanges.len(),
            out.display()
        );
    }
    Ok(output)
}

/// The targets to check: the one named by `--target`, else the default target, every named
/// target and every service-discovery target (without duplicates).
async fn select<E: Exporter>(
    exporter: &E,
    raw: Option<&str>,
) -> anyhow::Result<Vec<(String, Result<E::Target, String>)>> {
    let named: Vec<String> = exporter.targets().into_iter().map(|t| t.name).collect();
    let default = exporter.default_target();
    if let Some(raw) = raw {
        // A name wins; else the default target when `--target` set it (the exporter's own
        // flag, with its secrets); else whatever the exporter makes of the value.
        if !named.iter().any(|n| n == raw)
            && let Some(default) = default.filter(|d| d.to_string() == raw)
        {
            return Ok(vec![(raw.to_owned(), Ok(default))]);
        }
        return Ok(vec![(raw.to_owned(), resolve(exporter, raw).await)]);
    }
    let mut out: Vec<(String, Result<E::Target, String>)> = Vec::new();
    if let Some(default) = default {
        out.push((default.to_string(), Ok(default)));
    }
    let mut raws = named;
    match exporter.sd_targets().await {
        Ok(sd) => raws.extend(sd.into_iter().map(|t| t.target)),
        // Without a list, the default and named targets are still worth checking: they
        // will show why the list could not be read (the device or API is down).
        Err(err) if !out.is_empty() || !raws.is_empty() => {
            log::warn!(err = format!("{err:#}").as_str(); "cannot list the discovered targets; checking the configured ones");
        }
        Err(err) => anyhow::bail!("cannot list the targets: {err:#}"),
    }
    for raw in raws {
        if out.iter().any(|(label, _)| *label == raw) {
            continue;
        }
        let resolved = resolve(exporter, &raw).await;
        out.push((raw, resolved));
    }
    anyhow::ensure!(
        !out.is_empty(),
        "there is no target to check: give one with --target, or configure targets"
    );
    Ok(out)
}

async fn resolve<E: Exporter>(exporter: &E, raw: &str) -> Result<E::Target, String> {
    match exporter.resolve_target(raw).await {
        Ok(target) => Ok(target),
        Err(TargetError::Invalid(err)) => Err(format!("invalid target: {err:#}")),
        Err(TargetError::NotAllowed(why)) => Err(format!("target not allowed: {why}")),
    }
}

/// Why a target could not be reached, from its error chain: `dns`, `refused`, `tls`,
/// `timeout`, `login`, or `error` for anything else.
pub fn classify(chain: &str) -> &'static str {
    let e = chain.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if any(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "no such host",
        "temporary failure in name resolution",
        "nodename nor servname",
        "no address associated",
    ]) {
        "dns"
    } else if any(&["connection refused"]) {
        "refused"
    } else if any(&["certificate", "tls", "handshake", "ssl"]) {
        "tls"
    } else if any(&["timed out", "deadline", "timeout", "time out"]) {
        "timeout"
    } else if any(&["login", "authentication", "unauthorized", "unauthenticated", "forbidden"]) {
        "login"
    } else {
        "error"
    }
}

fn hint(class: &str) -> &'static str {
    match class {
        "dns" => "the host name does not resolve: check its spelling and the DNS of this machine",
        "refused" => {
            "nothing accepts connections at that address and port: check the address, the port \
             and that the device's web interface is on"
        }
        "tls" => {
            "the TLS handshake or the certificate check failed: use http:// for a device without \
             HTTPS, or give it a certificate this machine trusts"
        }
        "timeout" => {
            "no answer in time: the device is off, not reachable from this machine, or slow \
             (--scrape-timeout raises the limit)"
        }
        "login" => {
            "the device or API refused the login or the key's rights: check the user, the \
             password or key file, and the rights the key was given"
        }
        _ => "see the error below",
    }
}

/// Why a report is down: the probe's error, else the first failed collector's.
fn failure(report: &Report) -> Option<&str> {
    report
        .error
        .as_deref()
        .or_else(|| report.collectors.iter().find_map(|(_, e, _, _)| e.as_deref()))
}

fn human_report(info: crate::ExporterInfo, results: &[(String, Report)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}: checking {} target{}",
        info.binary,
        info.version,
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    );
    for (label, r) in results {
        out.push('\n');
        if r.up {
            let _ = writeln!(
                out,
                "{label}: UP in {:.3}s, {} series",
                r.duration.as_secs_f64(),
                r.series
            );
        } else {
            let why = failure(r).unwrap_or("no collector succeeded");
            let class = classify(why);
            let _ = writeln!(out, "{label}: DOWN ({class}): {}", hint(class));
            let _ = writeln!(out, "  error: {why}");
        }
        for (key, value) in &r.facts {
            let _ = writeln!(out, "  {key}: {value}");
        }
        for line in &r.logins {
            let _ = writeln!(out, "  login: {line}");
        }
        for line in &r.quirks {
            let _ = writeln!(out, "  quirk: {line}");
        }
        for (name, error, took, series) in &r.collectors {
            match error {
                None => {
                    let _ = writeln!(
                        out,
                        "  collector {name}: ok in {:.3}s, {series} series",
                        took.as_secs_f64()
                    );
                }
                Some(err) => {
                    let _ = writeln!(
                        out,
                        "  collector {name}: FAILED after {:.3}s ({}): {err}",
                        took.as_secs_f64(),
                        classify(err)
                    );
                }
            }
        }
    }
    let up = results.iter().filter(|(_, r)| r.up).count();
    let _ = writeln!(out, "\n{up} of {} target{} up", results.len(), plural(results.len()));
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn json_report(info: crate::ExporterInfo, results: &[(String, Report)]) -> serde_json::Value {
    let targets: Vec<serde_json::Value> = results
        .iter()
        .map(|(label, r)| {
            let why =
                if r.up { None } else { Some(failure(r).unwrap_or("no collector succeeded")) };
            let facts: serde_json::Map<String, serde_json::Value> =
                r.facts.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            let collectors: Vec<serde_json::Value> = r
                .collectors
                .iter()
                .map(|(name, error, took, series)| {
                    serde_json::json!({
                        "name": name,
                        "success": error.is_none(),
                        "duration_seconds": took.as_secs_f64(),
                        "series": series,
                        "error": error,
                        "reason": error.as_deref().map(classify),
                    })
                })
                .collect();
            serde_json::json!({
                "target": label,
                "up": r.up,
                "reason": why.map(classify),
                "error": why,
                "duration_seconds": r.duration.as_secs_f64(),
                "series": r.series,
                "facts": facts,
                "logins": r.logins,
                "quirks": r.quirks,
                "collectors": collectors,
            })
        })
        .collect();
    let up = results.iter().filter(|(_, r)| r.up).count();
    serde_json::json!({
        "exporter": info.binary,
        "version": info.version,
        "up": up,
        "total": results.len(),
        "all_up": up == results.len(),
        "targets": targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachability_classes() {
        for (chain, class) in [
            (
                "GetStatus: error sending request: client error (Connect): dns error: failed to \
                 lookup address information: Name or service not known",
                "dns",
            ),
            (
                "error sending request: tcp connect error: Connection refused (os error 111)",
                "refused",
            ),
            ("error sending request: invalid peer certificate: UnknownIssuer", "tls"),
            ("scrape deadline exceeded after 1.000s", "timeout"),
            ("login: Authentication Failure", "login"),
            ("decode: expected value at line 1", "error"),
        ] {
            assert_eq!(classify(chain), class, "{chain}");
        }
    }
}
