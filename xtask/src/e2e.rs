//! `cargo xtask e2e`: the whole stack against a real Prometheus (Debian's 2.42), on loopback.
//!
//! It starts the simulators and the four exporters (`stack.rs`), a Prometheus with the
//! project's rules scraping every exporter through `/metrics` and the LinkHub and Smart Hub
//! also through `/probe` (every 2 s), and a fleet: two Prometheus agents (sites `alpha` and
//! `beta`, rendered from `packaging/fleet/agent.yml`, two LinkHub simulators and exporters
//! each) remote-writing to a central Prometheus (`packaging/fleet/central.yml`). Then it checks:
//!
//! - every scrape target is up;
//! - key series carry the simulators' values (RSRP set through the control API, the TTN
//!   gateway count, the Smart Hub WAN state, the fake modem's state);
//! - every rule of `grafana/rules/*.rules.yml` is loaded with health ok;
//! - `promtool check metrics` is clean on every exporter's `/metrics` and one `/probe` each;
//! - every landing page renders in headless Chromium (screenshot in `target/e2e/`; the DOM
//!   names the exporter, `/metrics`, `/probe` and `/-/healthy`);
//! - every query of every dashboard returns data (a short, justified allow-list aside);
//! - every device is its own target through the exporters' `/sd` (named LinkHubs and Smart
//!   Hub from config files, each gateway, each modem), with the config file's labels, and a
//!   LinkHub taken down turns only its own `linkhub_up` to 0;
//! - `LinkHubWeakSignal` becomes pending when the simulator's RSRP drops below -100 dBm (the
//!   real rule, `for: 10m`: pending proves the expression and the rule, firing would take
//!   ten minutes);
//! - the central Prometheus holds both sites' series with their `site` label, and a dashboard
//!   query with `site=~"alpha"` returns only alpha's series;
//! - the checkers can fail: a temporary copy of `grafana/` with one dashboard query's metric
//!   renamed must fail the query check, and one with a broken rule file must fail to load.
//!
//! Everything runs in one process group that is ended on exit, whatever the exit (`stack.rs`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use argh::FromArgs;
use serde_json::Value;

use crate::{
    grafana, sh,
    stack::{self, Group, Options, Prometheus, Stack},
};

/// run the stack against a real Prometheus: targets, series, rules, dashboards, landing
/// pages and the fleet set-up (needs prometheus, promtool, chromium, dbus-daemon)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "e2e")]
pub struct E2e {
    /// use the binaries already in target/debug instead of running cargo build first
    #[argh(switch)]
    no_build: bool,
    /// copy the LinkHub landing-page screenshot to docs/images/landing-linkhub.png
    #[argh(switch)]
    update_screenshot: bool,
}

/// Scrape, rule evaluation and remote-write interval of every Prometheus here.
const INTERVAL: &str = "2s";
/// Gateways of the TTN simulator.
const TTN_GATEWAYS: usize = 4;
/// RSRP set on the LinkHub simulator for the value check (dBm, green band).
const RSRP_GOOD: f64 = -85.0;
/// RSRP that must make `LinkHubWeakSignal` pending (dBm, red band: below -100).
const RSRP_WEAK: f64 = -120.0;
/// A monthly data plan on the LinkHub simulator (bytes), so the plan panels have data.
const DATA_PLAN: &str = "53687091200";
/// The fleet's sites.
const SITES: [&str; 2] = ["alpha", "beta"];
/// LinkHub simulators and exporters per site.
const PER_SITE: usize = 2;

/// Dashboard queries that return nothing with the simulators, and why: (dashboard file
/// stem, panel title, reason). Each is a real gap of the simulators, not of the dashboards;
/// an entry that returns data after all is reported as stale.
const ALLOWED_EMPTY: &[(&str, &str, &str)] = &[];

/// The command tools it needs: (program, Debian package).
const TOOLS: [(&str, &str); 4] = [
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("dbus-daemon", "dbus"),
    ("chromium", "chromium"),
];

impl E2e {
    pub fn run(self) -> anyhow::Result<()> {
        let missing: Vec<String> = TOOLS
            .iter()
            .filter(|(program, _)| !stack::on_path(program))
            .map(|(program, package)| format!("{program} (apt-get install {package})"))
            .collect();
        anyhow::ensure!(missing.is_empty(), "cargo xtask e2e needs {}", missing.join(", "));
        if !self.no_build {
            stack::build()?;
        }
        run(self.update_screenshot)
    }
}

/// The `cargo xtask ci` hook: the e2e run; without its tools it is skipped with a warning on
/// a developer machine and an error under CI.
pub fn ci_step() -> anyhow::Result<()> {
    let missing: Vec<&str> =
        TOOLS.iter().filter(|(p, _)| !stack::on_path(p)).map(|(_, pkg)| *pkg).collect();
    if !missing.is_empty() {
        let msg = format!("e2e needs apt-get install {}", missing.join(" "));
        if sh::in_ci() {
            anyhow::bail!("{msg}; CI=true requires it");
        }
        eprintln!("warning: {msg}: skipping the end-to-end run");
        return Ok(());
    }
    stack::build()?;
    run(false)
}

/// One check's outcome for the summary.
struct Outcome {
    name: &'static str,
    seconds: f64,
    result: anyhow::Result<String>,
}

fn run(update_screenshot: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = sh::root();
    let out_dir = stack::target_dir().join("e2e");
    let mut group = Group::new(&out_dir.join("run"), "e2e: interrupted; stopped its processes")?;
    let pgid = group.pgid();

    eprintln!("e2e: starting the simulators and exporters");
    let stack = Stack::start(
        &mut group,
        &Options { modem: true, mifi: true, ttn_gateways: TTN_GATEWAYS, linkhub_args: vec![] },
    )?;
    let linkhub_sim = stack.sim("linkhub")?.url.clone();
    stack::sim_set(&linkhub_sim, "GetNetworkInfo.RSRP", &RSRP_GOOD.to_string())?;
    stack::sim_set(&linkhub_sim, "GetUsageRecord.MonthlyPlan", DATA_PLAN)?;
    let rules_dir = root.join("grafana/rules");
    let config = stack::prometheus_config(&stack, INTERVAL, &rules_dir);
    let prom = stack::start_prometheus(&mut group, "prometheus", &config, &[])?;
    eprintln!("e2e: starting the fleet (two agents, a central Prometheus)");
    let fleet = Fleet::start(&mut group, &root)?;
    let stack_ready = started.elapsed();
    eprintln!("e2e: everything started in {:.1} s", stack_ready.as_secs_f64());

    let mut outcomes = Vec::new();
    let mut check = |name: &'static str, f: &mut dyn FnMut() -> anyhow::Result<String>| {
        let t = Instant::now();
        let result = f();
        let seconds = t.elapsed().as_secs_f64();
        match &result {
            Ok(summary) => eprintln!("e2e: ok   {name} ({seconds:.1} s): {summary}"),
            Err(err) => eprintln!("e2e: FAIL {name} ({seconds:.1} s): {err:#}"),
        }
        outcomes.push(Outcome { name, seconds, result });
    };

    check("targets up", &mut || {
        let targets = prom.wait_targets_up(stack::target_count(&stack), Duration::from_secs(60))?;
        Ok(format!("{} targets up", targets.len()))
    });
    check("simulator values", &mut || simulator_values(&prom));
    check("rules loaded", &mut || rules_loaded(&prom, &rules_dir, Duration::from_secs(20)));
    check("promtool check metrics", &mut || promtool_metrics(&mut group, &stack));
    check("landing pages", &mut || landing_pages(&mut group, &stack, &out_dir));
    check("dashboard queries", &mut || {
        let queries = grafana::dashboard_queries(&root)?;
        dashboard_queries(&prom, &queries, ALLOWED_EMPTY, Duration::from_secs(30))
    });
    check("weak-signal alert", &mut || weak_signal(&prom, &linkhub_sim));
    check("one device down", &mut || one_device_down(&prom, &stack));
    check("fleet", &mut || fleet.check(&mut group, &root));
    check("self-test", &mut || self_test(&mut group, &prom, &root, &out_dir));

    let exited = group.exited();
    let processes = group.stop();
    let leftovers = stack::live_group_members(pgid, Duration::from_secs(3));
    let mut failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e:#}", o.name)))
        .collect();
    if !exited.is_empty() {
        failed.push(format!("processes exited during the run: {}", exited.join(", ")));
    }
    if !leftovers.is_empty() {
        failed.push(format!("processes left in group {pgid}: {}", leftovers.join(", ")));
    }
    if update_screenshot && failed.is_empty() {
        let to = root.join("docs/images/landing-linkhub.png");
        fs::create_dir_all(to.parent().unwrap_or(&root)).context("create docs/images")?;
        fs::copy(out_dir.join("landing-linkhub.png"), &to).context("copy the screenshot")?;
        eprintln!("e2e: wrote {}", to.display());
    }

    eprintln!("\ne2e summary (logs in {}):", out_dir.join("run").display());
    eprintln!("  stack started in {:.1} s", stack_ready.as_secs_f64());
    for o in &outcomes {
        let mark = if o.result.is_ok() { "ok  " } else { "FAIL" };
        eprintln!("  {mark} {:<24} {:>5.1} s", o.name, o.seconds);
    }
    eprintln!(
        "  stopped {processes} running processes; none left in the process group: {}",
        leftovers.is_empty()
    );
    eprintln!("  total {:.1} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        anyhow::bail!("e2e failed:\n  {}", failed.join("\n  "));
    }
    eprintln!("e2e: passed");
    Ok(())
}

/// Polls `f` every 250 ms until it returns Ok, at most `timeout`; returns its last error.
fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!("still failing after {timeout:?}")));
            }
            Err(_) => thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Checks one query's single value.
fn expect_value(prom: &Prometheus, expr: &str, want: f64) -> anyhow::Result<()> {
    let got = prom.query_one(expr)?;
    anyhow::ensure!((got - want).abs() < 1e-9, "{expr} = {got}, expected {want}");
    Ok(())
}

/// Key series carry what the simulators serve.
fn simulator_values(prom: &Prometheus) -> anyhow::Result<String> {
    let checks: Vec<(String, f64)> = vec![
        ("linkhub_rsrp_dbm{job=\"linkhub\"}".to_owned(), RSRP_GOOD),
        // The named targets, found through /sd, with the labels of the config file.
        (
            "linkhub_rsrp_dbm{job=\"linkhub-probe\",instance=\"home\",site=\"demo\",room=\"office\"}"
                .to_owned(),
            RSRP_GOOD,
        ),
        (
            "linkhub_usage_monthly_limit_bytes{job=\"linkhub\"}".to_owned(),
            DATA_PLAN.parse().unwrap_or(0.0),
        ),
        ("count(linkhub_battery_charge_ratio{instance=\"mifi\",room=\"car\"})".to_owned(), 1.0),
        // The router has a password, the MiFi none: each target its own credentials.
        ("linkhub_login_state{instance=\"home\",state=\"logged_in\"}".to_owned(), 1.0),
        ("linkhub_login_state{instance=\"mifi\",state=\"no_credentials\"}".to_owned(), 1.0),
        ("count(ttn_gateway_info{job=\"ttn\"})".to_owned(), TTN_GATEWAYS as f64),
        ("ttn_up{job=\"ttn\"}".to_owned(), 1.0),
        ("smarthub_wan_connected{job=\"smarthub\"}".to_owned(), 1.0),
        ("smarthub_wan_connected{job=\"smarthub-probe\",instance=\"hub\",site=\"demo\"}".to_owned(), 1.0),
        // Every gateway and every modem is its own target through /sd.
        ("count(ttn_up{job=\"ttn-probe\"} == 1)".to_owned(), TTN_GATEWAYS as f64),
        ("count(modemmanager_up{job=\"modemmanager-probe\"} == 1)".to_owned(), 1.0),
        ("modemmanager_modems{job=\"modemmanager\"}".to_owned(), 1.0),
        // The fake modem's State property is 8, MM_MODEM_STATE_REGISTERED.
        ("modemmanager_modem_state_code{job=\"modemmanager\"}".to_owned(), 8.0),
        ("modemmanager_modem_state{job=\"modemmanager\",state=\"registered\"}".to_owned(), 1.0),
    ];
    // The RSRP was set just before Prometheus started; allow a few scrapes.
    eventually(Duration::from_secs(20), || {
        for (expr, want) in &checks {
            expect_value(prom, expr, *want)?;
        }
        Ok(())
    })?;
    Ok(format!("{} series match the simulators", checks.len()))
}

/// `- alert: NAME` and `- record: NAME` of every `*.rules.yml` in `dir`, as (kind, name) with
/// the file each comes from.
fn rules_in_files(dir: &Path) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let mut out = BTreeMap::new();
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no *.rules.yml in {}", dir.display());
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        let shown = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for line in text.lines() {
            let line = line.trim_start().trim_start_matches("- ").trim();
            for kind in ["alert", "record"] {
                if let Some(name) = line.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) {
                    let name = name.trim().trim_matches(['"', '\'']).to_owned();
                    out.insert((kind.to_owned(), name), shown.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Every alerting and recording rule of the files in `rules_dir` is loaded by `prom`, has
/// been evaluated and reports health ok.
fn rules_loaded(prom: &Prometheus, rules_dir: &Path, timeout: Duration) -> anyhow::Result<String> {
    let wanted = rules_in_files(rules_dir)?;
    eventually(timeout, || {
        let data = prom.api("/api/v1/rules")?;
        let mut loaded = BTreeMap::new();
        for group in data.get("groups").and_then(Value::as_array).into_iter().flatten() {
            for rule in group.get("rules").and_then(Value::as_array).into_iter().flatten() {
                let text = |k: &str| rule.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let kind = if text("type") == "alerting" { "alert" } else { "record" };
                loaded.insert((kind.to_owned(), text("name")), (text("health"), text("lastError")));
            }
        }
        let mut problems = Vec::new();
        for ((kind, name), file) in &wanted {
            match loaded.get(&(kind.clone(), name.clone())) {
                None => problems.push(format!("{file}: {kind} {name} is not loaded")),
                Some((health, err)) if health != "ok" => {
                    problems.push(format!("{file}: {kind} {name}: health {health} {err}"));
                }
                Some(_) => {}
            }
        }
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        let alerts = wanted.keys().filter(|(k, _)| k == "alert").count();
        Ok(format!("{alerts} alerts and {} recording rules ok", wanted.len() - alerts))
    })
}

/// `promtool check metrics` over `text`.
fn promtool_check(group: &mut Group, name: &str, text: &str) -> anyhow::Result<()> {
    let file = group.dir().join(format!("{name}.prom"));
    fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "metrics"]);
    let (ok, stdout, stderr) =
        group.run(&format!("promtool-{name}"), cmd, Some(&file), Duration::from_secs(30))?;
    anyhow::ensure!(ok, "{name}: promtool check metrics: {}{}", stdout.trim(), stderr.trim());
    Ok(())
}

/// `promtool check metrics` on every exporter's /metrics and one /probe each.
fn promtool_metrics(group: &mut Group, stack: &Stack) -> anyhow::Result<String> {
    let mut checked = 0;
    let mut problems = Vec::new();
    for e in &stack.exporters {
        let mut urls = vec![(format!("{}-metrics", e.namespace), format!("{}/metrics", e.url))];
        if let Some(target) = e.probe_targets.first() {
            urls.push((
                format!("{}-probe", e.namespace),
                format!("{}/probe?target={}", e.url, stack::urlencode(target)),
            ));
        }
        for (name, url) in urls {
            let (status, body) = stack::get(&url, Duration::from_secs(20))?;
            let up = format!("{}_up 1", e.namespace);
            if status != 200 || !body.lines().any(|l| l == up) {
                problems.push(format!("{url}: HTTP {status}, no `{up}` line"));
            }
            if let Err(err) = promtool_check(group, &name, &body) {
                problems.push(format!("{err:#}"));
            }
            checked += 1;
        }
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(format!("{checked} expositions clean"))
}

/// The Chromium binary.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser"].into_iter().find(|p| stack::on_path(p)).unwrap_or("chromium")
}

/// Headless Chromium with the flags for an offline machine (tooling.md §7) and a fresh
/// profile directory.
fn chromium_cmd(profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1000,800",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Problems with a landing page's DOM: the exporter's name and links to its endpoints.
fn dom_problems(dom: &str, binary: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !dom.contains(&format!("<h1>{binary}</h1>")) && !dom.contains(&format!("<title>{binary}")) {
        problems.push(format!("the name {binary} is not in the page"));
    }
    for endpoint in ["metrics", "probe", "-/healthy"] {
        let linked = ["href", "action"].iter().any(|attr| {
            [
                format!("{attr}=\"{endpoint}\""),
                format!("{attr}=\"/{endpoint}\""),
                format!("{attr}=\"./{endpoint}\""),
            ]
            .iter()
            .any(|needle| dom.contains(needle))
        });
        if !linked {
            problems.push(format!("no link or form to /{endpoint}"));
        }
    }
    problems
}

/// Whether `path` is a PNG of a real page (signature and a size a blank page does not reach).
fn png_ok(path: &Path) -> anyhow::Result<u64> {
    let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    anyhow::ensure!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    let size = bytes.len() as u64;
    anyhow::ensure!(size > 10_000, "{} is only {size} bytes: a blank page?", path.display());
    Ok(size)
}

/// Every landing page in headless Chromium: a screenshot and the rendered DOM.
fn landing_pages(group: &mut Group, stack: &Stack, out_dir: &Path) -> anyhow::Result<String> {
    let mut problems = Vec::new();
    let mut shots = Vec::new();
    for e in &stack.exporters {
        let url = format!("{}/", e.url);
        let shot = out_dir.join(format!("landing-{}.png", e.namespace));
        let _ = fs::remove_file(&shot);
        let profile = group.dir().join(format!("chromium-{}", e.namespace));
        let mut cmd = chromium_cmd(&profile.join("shot"));
        cmd.arg(format!("--screenshot={}", shot.display())).arg(&url);
        let (ok, _, stderr) = group.run("chromium-shot", cmd, None, Duration::from_secs(60))?;
        if !ok {
            problems.push(format!("{url}: chromium --screenshot failed: {}", tail(&stderr)));
        } else if let Err(err) = png_ok(&shot) {
            problems.push(format!("{url}: {err:#}"));
        } else {
            shots.push(shot.display().to_string());
        }
        let mut cmd = chromium_cmd(&profile.join("dom"));
        cmd.arg("--dump-dom").arg(&url);
        let (ok, dom, stderr) = group.run("chromium-dom", cmd, None, Duration::from_secs(60))?;
        if !ok {
            problems.push(format!("{url}: chromium --dump-dom failed: {}", tail(&stderr)));
        }
        for p in dom_problems(&dom, &e.binary) {
            problems.push(format!("{url}: {p}"));
        }
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(format!("{} pages rendered: {}", shots.len(), shots.join(", ")))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).collect();
    lines.get(lines.len().saturating_sub(3)..).unwrap_or_default().join(" | ")
}

/// Runs every dashboard query; the empty ones (not allow-listed) are retried until `retry`
/// passes (rates need two samples, recording rules one evaluation).
fn dashboard_queries(
    prom: &Prometheus,
    queries: &[(String, String, String)],
    allowed: &[(&str, &str, &str)],
    retry: Duration,
) -> anyhow::Result<String> {
    anyhow::ensure!(!queries.is_empty(), "no dashboard queries found");
    let is_allowed =
        |dash: &str, title: &str| allowed.iter().any(|(d, t, _)| *d == dash && *t == title);
    let mut pending: Vec<&(String, String, String)> = queries.iter().collect();
    let mut errors = Vec::new();
    let mut allowed_with_data = BTreeSet::new();
    let deadline = Instant::now() + retry;
    for _ in 0..1000 {
        let mut empty = Vec::new();
        for q in pending {
            let (dash, title, expr) = q;
            match prom.query(expr) {
                Err(err) => errors.push(format!("{dash} / {title}: {expr}: {err:#}")),
                Ok(result) if result.is_empty() => empty.push(q),
                Ok(_) if is_allowed(dash, title) => {
                    allowed_with_data.insert(format!("{dash} / {title}"));
                }
                Ok(_) => {}
            }
        }
        let waiting = empty.iter().any(|(d, t, _)| !is_allowed(d, t));
        pending = empty;
        if !waiting || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_secs(1));
    }
    let empty: Vec<String> = pending
        .iter()
        .filter(|(d, t, _)| !is_allowed(d, t))
        .map(|(d, t, e)| format!("{d} / {t}: no data: {e}"))
        .collect();
    errors.extend(empty);
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("\n"));
    let skipped = pending.len();
    let mut summary =
        format!("{} queries returned data, {skipped} allow-listed empty", queries.len() - skipped);
    if !allowed_with_data.is_empty() {
        let stale: Vec<String> = allowed_with_data.into_iter().collect();
        summary.push_str(&format!(
            " (stale allow-list entries, they have data: {})",
            stale.join(", ")
        ));
    }
    Ok(summary)
}

/// Drops the LinkHub simulator's RSRP into the red band; `LinkHubWeakSignal` must go pending
/// (or firing) for that router.
fn weak_signal(prom: &Prometheus, linkhub_sim: &str) -> anyhow::Result<String> {
    stack::sim_set(linkhub_sim, "GetNetworkInfo.RSRP", &RSRP_WEAK.to_string())?;
    let t = Instant::now();
    let state = eventually(Duration::from_secs(30), || {
        let data = prom.api("/api/v1/alerts")?;
        let alerts = data.get("alerts").and_then(Value::as_array).cloned().unwrap_or_default();
        let found = alerts.iter().find(|a| {
            let label = |k: &str| a.pointer(&format!("/labels/{k}")).and_then(Value::as_str);
            label("alertname") == Some("LinkHubWeakSignal") && label("job") == Some("linkhub")
        });
        let state = found.and_then(|a| a.get("state")).and_then(Value::as_str).unwrap_or("");
        anyhow::ensure!(
            state == "pending" || state == "firing",
            "LinkHubWeakSignal for job linkhub is not pending (alerts: {})",
            alerts.len()
        );
        Ok(state.to_owned())
    })?;
    // Back to a good signal, so later checks see the normal picture.
    stack::sim_set(linkhub_sim, "GetNetworkInfo.RSRP", &RSRP_GOOD.to_string())?;
    Ok(format!(
        "LinkHubWeakSignal {state} {:.1} s after RSRP {RSRP_WEAK} dBm",
        t.elapsed().as_secs_f64()
    ))
}

/// Every device is its own target through /sd: with the MiFi's simulator refusing
/// connections, only the MiFi's `linkhub_up` turns 0, the router's stays 1, and Prometheus'
/// own `up` stays 1 for both (the exporter answered; the device did not).
fn one_device_down(prom: &Prometheus, stack: &Stack) -> anyhow::Result<String> {
    let mifi = &stack.sim("linkhub-mifi")?.url;
    let set = |kind: &str| -> anyhow::Result<()> {
        let (status, body) =
            stack::post(&format!("{mifi}/_sim/fault?kind={kind}"), Duration::from_secs(5))?;
        anyhow::ensure!(status == 200, "fault {kind} on the MiFi: HTTP {status}: {}", body.trim());
        Ok(())
    };
    set("refuse")?;
    let t = Instant::now();
    let down = eventually(Duration::from_secs(30), || {
        expect_value(prom, "linkhub_up{job=\"linkhub-probe\",instance=\"mifi\"}", 0.0)?;
        expect_value(prom, "linkhub_up{job=\"linkhub-probe\",instance=\"home\"}", 1.0)?;
        expect_value(prom, "up{job=\"linkhub-probe\",instance=\"mifi\"}", 1.0)?;
        expect_value(prom, "up{job=\"linkhub-probe\",instance=\"home\"}", 1.0)
    });
    let seconds = t.elapsed().as_secs_f64();
    set("none")?;
    down?;
    eventually(Duration::from_secs(30), || {
        expect_value(prom, "linkhub_up{job=\"linkhub-probe\",instance=\"mifi\"}", 1.0)
    })?;
    Ok(format!(
        "MiFi down: its linkhub_up 0 after {seconds:.1} s, the router's still 1; back to 1 after"
    ))
}

// ---------------------------------------------------------------------------------------------
// Fleet: two agents remote-writing to a central Prometheus.

struct Fleet {
    central: Prometheus,
    /// Site → LinkHub exporter addresses.
    sites: BTreeMap<String, Vec<String>>,
}

/// `text` with `from` replaced by `to`; Err when `from` is not in it (the template changed).
fn replace_in(text: &str, from: &str, to: &str, file: &str) -> anyhow::Result<String> {
    anyhow::ensure!(text.contains(from), "{file}: {from:?} not found (template changed?)");
    Ok(text.replace(from, to))
}

impl Fleet {
    /// Starts the central Prometheus and per site two LinkHub simulators and exporters and an
    /// agent rendered from `packaging/fleet/agent.yml`.
    fn start(group: &mut Group, root: &Path) -> anyhow::Result<Fleet> {
        let fleet_dir = root.join("packaging/fleet");
        let central_yml = fs::read_to_string(fleet_dir.join("central.yml"))
            .context("read packaging/fleet/central.yml")?;
        let rules = root.join("grafana/rules");
        let central_yml = replace_in(
            &central_yml,
            "/etc/prometheus/uplink-rules/*.rules.yml",
            &format!("{}/*.rules.yml", rules.display()),
            "central.yml",
        )?;
        let central_yml = replace_in(
            &central_yml,
            "evaluation_interval: 30s",
            &format!("evaluation_interval: {INTERVAL}"),
            "central.yml",
        )?;
        let central = stack::start_prometheus(
            group,
            "central",
            &central_yml,
            &["--web.enable-remote-write-receiver"],
        )?;
        let agent_yml = fs::read_to_string(fleet_dir.join("agent.yml"))
            .context("read packaging/fleet/agent.yml")?;
        let mut sites = BTreeMap::new();
        for site in SITES {
            let mut addresses = Vec::new();
            let mut pending = Vec::new();
            for n in 0..PER_SITE {
                let sim_url = stack::start_http_sim(
                    group,
                    &format!("{site}-sim-linkhub-{n}"),
                    &["linkhub"],
                    &[],
                )?;
                let (index, exporter) = stack::start_exporter(
                    group,
                    ("linkhub-exporter", "linkhub", &format!("{site}-linkhub-{n}")),
                    &["--target".to_owned(), sim_url],
                    (Vec::new(), 0),
                )?;
                pending.push((index, exporter));
            }
            for (index, exporter) in pending {
                group.wait_http_ok(
                    index,
                    &format!("{}/-/healthy", exporter.url),
                    Duration::from_secs(20),
                )?;
                addresses.push(exporter.address().to_owned());
            }
            let name = format!("agent-{site}");
            let dir = group.dir().join(&name);
            // Every job's directory exists (a site without such devices leaves it empty).
            for job in
                ["linkhub", "linkhub-probe", "smarthub", "smarthub-probe", "ttn", "modemmanager"]
            {
                let jobdir = dir.join("targets").join(job);
                fs::create_dir_all(&jobdir)
                    .with_context(|| format!("create {}", jobdir.display()))?;
            }
            let targets = dir.join("targets/linkhub");
            let list: Vec<String> = addresses.iter().map(|a| format!("'{a}'")).collect();
            fs::write(targets.join("site.yml"), format!("- targets: [{}]\n", list.join(", ")))
                .context("write the agent's targets")?;
            let mut config = replace_in(&agent_yml, "${SITE}", site, "agent.yml")?;
            config = replace_in(&config, "${CENTRAL_URL}", &central.url, "agent.yml")?;
            config = replace_in(
                &config,
                "scrape_interval: 30s",
                &format!("scrape_interval: {INTERVAL}"),
                "agent.yml",
            )?;
            config = replace_in(
                &config,
                "scrape_timeout: 20s",
                &format!("scrape_timeout: {INTERVAL}"),
                "agent.yml",
            )?;
            config = replace_in(
                &config,
                "batch_send_deadline: 10s",
                "batch_send_deadline: 1s",
                "agent.yml",
            )?;
            stack::start_prometheus(group, &name, &config, &["--enable-feature=agent"])?;
            sites.insert(site.to_owned(), addresses);
        }
        Ok(Fleet { central, sites })
    }

    /// Both sites' series arrive centrally with their `site` label, and the dashboards' `site`
    /// variable separates them.
    fn check(&self, group: &mut Group, root: &Path) -> anyhow::Result<String> {
        // The rendered configurations pass promtool (agent mode for the agents).
        let mut configs = vec![("central".to_owned(), false)];
        configs.extend(self.sites.keys().map(|site| (format!("agent-{site}"), true)));
        for (name, agent) in configs {
            let file = group.dir().join(&name).join("prometheus.yml");
            let mut cmd = Command::new("promtool");
            cmd.args(["check", "config"]);
            if agent {
                cmd.arg("--agent");
            }
            cmd.arg(&file);
            let (ok, stdout, stderr) =
                group.run("promtool-config", cmd, None, Duration::from_secs(30))?;
            anyhow::ensure!(ok, "promtool check config {name}: {}{}", stdout.trim(), stderr.trim());
        }
        let want: BTreeMap<String, f64> =
            self.sites.iter().map(|(s, a)| (s.clone(), a.len() as f64)).collect();
        eventually(Duration::from_secs(60), || {
            let mut got = BTreeMap::new();
            for item in self.central.query("count by (site) (linkhub_up == 1)")? {
                let site = item.pointer("/metric/site").and_then(Value::as_str).unwrap_or("");
                got.insert(site.to_owned(), stack::sample_value(&item).unwrap_or(0.0));
            }
            anyhow::ensure!(
                got == want,
                "count by (site) (linkhub_up == 1) = {got:?}, expected {want:?}"
            );
            Ok(())
        })?;
        // The dashboards' `site` variable: label_values(linkhub_up, site).
        let values = self.central.api("/api/v1/label/site/values?match[]=linkhub_up")?;
        let values: Vec<&str> =
            values.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        anyhow::ensure!(values == SITES, "site values {values:?}, expected {SITES:?}");

        // Every LinkHub and overview query with site=~"alpha": only alpha's series.
        let queries = grafana::dashboard_queries(root)?;
        let mut with_data = 0;
        let mut problems = Vec::new();
        for (dash, title, expr) in
            queries.iter().filter(|(d, _, _)| d == "linkhub" || d == "site-overview")
        {
            anyhow::ensure!(
                expr.contains("site=~\".*\""),
                "{dash} / {title}: no site matcher: {expr}"
            );
            let alpha = expr.replace("site=~\".*\"", "site=~\"alpha\"");
            let result = self.central.query(&alpha)?;
            let foreign: Vec<&str> = result
                .iter()
                .filter_map(|r| r.pointer("/metric/site").and_then(Value::as_str))
                .filter(|s| *s != "alpha")
                .collect();
            if !foreign.is_empty() {
                problems
                    .push(format!("{dash} / {title}: site=~\"alpha\" returned sites {foreign:?}"));
            }
            with_data += usize::from(!result.is_empty());
        }
        let rsrp = self
            .central
            .query("linkhub_rsrp_dbm{site=~\"alpha\", job=~\".*\", instance=~\".*\"}")?;
        let alpha_count = self.sites.get("alpha").map_or(0, Vec::len);
        if rsrp.len() != alpha_count
            || rsrp
                .iter()
                .any(|r| r.pointer("/metric/site").and_then(Value::as_str) != Some("alpha"))
        {
            problems.push(format!(
                "linkhub RSRP with site=~\"alpha\": {} series, expected {alpha_count} of alpha",
                rsrp.len()
            ));
        }
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(format!(
            "central has {want:?} LinkHubs by site; {with_data} dashboard queries with site=~\"alpha\" return only alpha"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Self-test: the checkers must fail on a broken copy of grafana/.

/// Copies `from` to `to` recursively (small trees only).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("list {}", from.display()))? {
        let entry = entry.with_context(|| format!("list {}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.file_type().context("file type")?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copy to {}", target.display()))?;
        }
    }
    Ok(())
}

/// Renames the metric of the first query using `metric` in `dashboards/<dash>.json` of `root`.
fn break_dashboard(root: &Path, dash: &str, metric: &str) -> anyhow::Result<()> {
    let file = root.join(format!("grafana/dashboards/{dash}.json"));
    let text = fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    let needle = format!("{metric}{{");
    anyhow::ensure!(text.contains(&needle), "{dash}.json has no query on {metric}");
    fs::write(&file, text.replacen(&needle, &format!("{metric}_renamed{{"), 1))
        .with_context(|| format!("write {}", file.display()))
}

/// Breaks the expression of `alert` in `file` (a PromQL syntax error).
fn break_rule(file: &Path, alert: &str) -> anyhow::Result<()> {
    let text = fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let start =
        text.find(&format!("alert: {alert}")).with_context(|| format!("no alert {alert}"))?;
    let rest = text.get(start..).unwrap_or_default();
    let expr = rest.find("expr:").with_context(|| format!("{alert}: no expr"))?;
    let pos = start + expr + "expr:".len();
    let broken = format!("{} sum by (", text.get(..pos).unwrap_or_default());
    fs::write(file, broken + text.get(pos..).unwrap_or_default())
        .with_context(|| format!("write {}", file.display()))
}

/// Starts a Prometheus that only loads `rules_dir` and checks its rules ([`rules_loaded`]).
fn rules_in_fresh_prometheus(
    group: &mut Group,
    name: &str,
    rules_dir: &Path,
) -> anyhow::Result<String> {
    let config = format!(
        "global:\n  evaluation_interval: {INTERVAL}\nrule_files:\n  - '{}/*.rules.yml'\n",
        rules_dir.display()
    );
    let prom = stack::start_prometheus(group, name, &config, &[])?;
    rules_loaded(&prom, rules_dir, Duration::from_secs(20))
}

/// The checkers fail on broken copies of `grafana/` and pass on good ones.
fn self_test(
    group: &mut Group,
    prom: &Prometheus,
    root: &Path,
    out_dir: &Path,
) -> anyhow::Result<String> {
    let copy = out_dir.join("self-test");
    if copy.exists() {
        fs::remove_dir_all(&copy).with_context(|| format!("remove {}", copy.display()))?;
    }
    copy_tree(&root.join("grafana"), &copy.join("grafana"))?;

    // A dashboard query whose metric was renamed must fail the query check.
    break_dashboard(&copy, "linkhub", "linkhub_rsrp_dbm")?;
    let queries = grafana::dashboard_queries(&copy)?;
    let broken: Vec<_> =
        queries.iter().filter(|(_, _, e)| e.contains("_renamed")).cloned().collect();
    anyhow::ensure!(broken.len() == 1, "expected one renamed query, found {}", broken.len());
    let err = match dashboard_queries(prom, &queries, ALLOWED_EMPTY, Duration::ZERO) {
        Ok(summary) => anyhow::bail!("the query check passed with a renamed metric: {summary}"),
        Err(err) => format!("{err:#}"),
    };
    anyhow::ensure!(
        err.contains("linkhub_rsrp_dbm_renamed") && err.lines().count() == 1,
        "the query check should report exactly the renamed query, got:\n{err}"
    );

    // A rule file with a syntax error must not load (Prometheus refuses it).
    let rules = copy.join("grafana/rules");
    rules_in_fresh_prometheus(group, "selftest-good-rules", &rules)
        .context("the unbroken copy of the rules should load")?;
    break_rule(&rules.join("linkhub.rules.yml"), "LinkHubWeakSignal")?;
    if let Ok(summary) = rules_in_fresh_prometheus(group, "selftest-broken-rules", &rules) {
        anyhow::bail!("a broken rule file loaded: {summary}");
    }
    // And a rule that is in the files but not in Prometheus is reported.
    let extra = copy.join("extra-rules");
    copy_tree(&root.join("grafana/rules"), &extra)?;
    fs::write(
        extra.join("zz-extra.rules.yml"),
        "groups:\n  - name: extra\n    rules:\n      - alert: SelfTestNotLoaded\n        expr: vector(1)\n",
    )
    .context("write the extra rule file")?;
    match rules_loaded(prom, &extra, Duration::ZERO) {
        Ok(summary) => anyhow::bail!("a rule missing from Prometheus went unnoticed: {summary}"),
        Err(err) => anyhow::ensure!(
            format!("{err:#}").contains("SelfTestNotLoaded is not loaded"),
            "unexpected rule check error: {err:#}"
        ),
    }
    Ok("a renamed dashboard metric, a broken rule file and a rule missing from Prometheus are caught".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            stack::target_dir().join("xtask-tests").join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rule_names_come_from_every_rules_file() {
        let rules = rules_in_files(&sh::root().join("grafana/rules")).unwrap();
        assert!(rules.contains_key(&("alert".to_owned(), "LinkHubWeakSignal".to_owned())));
        assert!(rules.contains_key(&(
            "record".to_owned(),
            "instance:linkhub_serving_cell_id:changes1h".to_owned()
        )));
        // The README's alert table has 28 alerts.
        assert!(rules.keys().filter(|(k, _)| k == "alert").count() >= 28, "{rules:?}");
    }

    #[test]
    fn broken_copies_are_broken() {
        let dir = scratch("broken");
        copy_tree(&sh::root().join("grafana"), &dir.join("grafana")).unwrap();
        break_dashboard(&dir, "linkhub", "linkhub_rsrp_dbm").unwrap();
        let queries = grafana::dashboard_queries(&dir).unwrap();
        assert_eq!(
            queries.iter().filter(|(_, _, e)| e.contains("linkhub_rsrp_dbm_renamed")).count(),
            1
        );
        let original = grafana::dashboard_queries(&sh::root()).unwrap();
        assert_eq!(queries.len(), original.len());

        let file = dir.join("grafana/rules/linkhub.rules.yml");
        break_rule(&file, "LinkHubWeakSignal").unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.contains("expr: sum by ( linkhub_rsrp_dbm < -100"), "{text}");
        if stack::on_path("promtool") {
            let out =
                Command::new("promtool").args(["check", "rules"]).arg(&file).output().unwrap();
            assert!(!out.status.success(), "promtool accepted the broken rule file");
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn dom_check_needs_the_name_and_the_endpoints() {
        let good = r#"<html><head><title>linkhub-exporter</title></head><body><h1>linkhub-exporter</h1>
            <a href="metrics">Metrics</a><a href="-/healthy">Health</a><form action="probe"></form></body></html>"#;
        assert_eq!(dom_problems(good, "linkhub-exporter"), Vec::<String>::new());
        let problems = dom_problems(
            "<html><body><h1>other</h1><a href=\"metrics\"></a></body></html>",
            "linkhub-exporter",
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("/probe")));
        assert!(problems.iter().any(|p| p.contains("/-/healthy")));
    }

    #[test]
    fn the_fleet_templates_have_what_the_e2e_fills_in() {
        let root = sh::root();
        let agent = fs::read_to_string(root.join("packaging/fleet/agent.yml")).unwrap();
        for token in [
            "${SITE}",
            "${CENTRAL_URL}",
            "scrape_interval: 30s",
            "scrape_timeout: 20s",
            "batch_send_deadline: 10s",
        ] {
            assert!(agent.contains(token), "agent.yml lost {token}");
        }
        for job in ["linkhub", "smarthub", "ttn", "modemmanager", "linkhub-probe", "smarthub-probe"]
        {
            assert!(agent.contains(&format!("job_name: {job}\n")), "agent.yml lost job {job}");
        }
        let central = fs::read_to_string(root.join("packaging/fleet/central.yml")).unwrap();
        assert!(central.contains("/etc/prometheus/uplink-rules/*.rules.yml"));
        assert!(central.contains("evaluation_interval: 30s"));
    }

    #[test]
    fn allow_list_entries_name_real_panels() {
        let queries = grafana::dashboard_queries(&sh::root()).unwrap();
        for (dash, title, reason) in ALLOWED_EMPTY {
            assert!(!reason.is_empty());
            assert!(
                queries.iter().any(|(d, t, _)| d == dash && t == title),
                "allow-list entry {dash} / {title} matches no panel"
            );
        }
    }
}
