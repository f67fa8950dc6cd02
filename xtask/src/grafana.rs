//! Checks of `grafana/`: the dashboards against Grafana's dashboard JSON schema and the
//! project's conventions, the Prometheus rules with `promtool`, and the dashboards' PromQL
//! with template variables substituted, for a run against a live Prometheus.
//!
//! Tools: `check-jsonschema` (`pip install check-jsonschema`) for the schema and `promtool`
//! (`apt-get install prometheus`) for the rules; `PROMTOOL` overrides the promtool binary. A
//! missing tool is a warning on a developer machine and an error under CI (`CI=true`). When
//! the promtool in use knows `--experimental promql format` (2.53 and later), every dashboard
//! query is also parsed with it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context as _;
use serde_json::Value;

/// The schema generated from `@grafana/schema` (see `grafana/schema/README.md`).
const SCHEMA: &str = "grafana/schema/dashboard.schema.json";
const DASHBOARDS: &str = "grafana/dashboards";
const RULES: &str = "grafana/rules";
const RULE_TESTS: &str = "grafana/rules/tests";

/// The datasource reference every panel and target uses.
const DATASOURCE_UID: &str = "${datasource}";
/// The matcher every metric selector in a dashboard query carries.
const SITE_MATCHER: &str = "site=~\"$site\"";
/// Prefixes of the series the dashboards query: the exporters' metrics, the recording rules'
/// series, and Prometheus' own `up`.
const METRIC_PREFIXES: [&str; 8] = [
    "linkhub_",
    "modemmanager_",
    "ttn_",
    "smarthub_",
    "instance:",
    "device:",
    "bearer:",
    "gateway:",
];

/// Grafana's built-in variables and the literal each becomes for a live Prometheus.
const BUILTINS: [(&str, &str); 8] = [
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
    ("__interval_ms", "60000"),
    ("__rate_interval_ms", "60000"),
    ("datasource", ""),
];

/// Runs every check of `grafana/` under `root` (the workspace root), reporting all problems
/// found before failing.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let files = dashboard_files(root)?;
    anyhow::ensure!(!files.is_empty(), "no dashboards in {DASHBOARDS}/");

    let mut problems = Vec::new();
    let mut uids = BTreeMap::new();
    for file in &files {
        let name = file_name(file);
        let dash = read_json(file)?;
        for p in dashboard_problems(&dash) {
            problems.push(format!("{name}: {p}"));
        }
        if let Some(uid) = dash.get("uid").and_then(Value::as_str)
            && let Some(other) = uids.insert(uid.to_owned(), name.clone())
        {
            problems.push(format!("{name}: uid {uid:?} is also used by {other}"));
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("dashboard problems:\n  {}", problems.join("\n  "));
    }
    eprintln!("grafana: {} dashboards follow the conventions", files.len());

    schema_check(root, &files)?;
    rule_problems(root)?;
    promtool_rules(root)?;
    promql_syntax(root)?;
    Ok(())
}

/// Every query of every dashboard as (dashboard file stem, panel title, expression), with
/// the template variables replaced for a live Prometheus: `$__rate_interval` and `$__interval`
/// by `1m`, `$__range` by `1h`, `$datasource` dropped, and every dashboard variable (`$site`,
/// `$instance`, `$job`, device variables) by `.*`, the value of "All".
pub fn dashboard_queries(root: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for file in dashboard_files(root)? {
        let dash = read_json(&file)?;
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let vars = variable_names(&dash);
        for panel in all_panels(&dash) {
            let title = panel.get("title").and_then(Value::as_str).unwrap_or("(untitled)");
            for target in panel.get("targets").and_then(Value::as_array).into_iter().flatten() {
                let Some(expr) = target.get("expr").and_then(Value::as_str) else { continue };
                out.push((stem.clone(), title.to_owned(), substitute(expr, &vars)));
            }
        }
    }
    Ok(out)
}

/// `grafana/dashboards/*.json`, sorted.
fn dashboard_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    files_with_extension(&root.join(DASHBOARDS), "json")
}

fn files_with_extension(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry.with_context(|| format!("list {}", dir.display()))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

/// Every panel, including those inside rows, excluding the rows themselves.
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel.get("type").and_then(Value::as_str) == Some("row") {
                if let Some(inner) = panel.get("panels") {
                    walk(inner, out);
                }
            } else {
                out.push(panel);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(panels) = dash.get("panels") {
        walk(panels, &mut out);
    }
    out
}

fn variables(dash: &Value) -> Vec<&Value> {
    dash.pointer("/templating/list").and_then(Value::as_array).into_iter().flatten().collect()
}

fn variable_names(dash: &Value) -> BTreeSet<String> {
    variables(dash)
        .iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The project's conventions for one dashboard, as a list of problems.
fn dashboard_problems(dash: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for key in ["__inputs", "__requires"] {
        if dash.get(key).is_some() {
            problems
                .push(format!("has {key}: use the datasource variable instead of an import input"));
        }
    }
    match dash.get("uid").and_then(Value::as_str) {
        Some(uid) if uid.starts_with("uplink-") && uid.len() <= 40 => {}
        other => problems.push(format!("uid {other:?} is not a stable \"uplink-...\" uid")),
    }
    if dash.get("title").and_then(Value::as_str).is_none_or(str::is_empty) {
        problems.push("has no title".to_owned());
    }

    let vars = variables(dash);
    let find =
        |name: &str| vars.iter().find(|v| v.get("name").and_then(Value::as_str) == Some(name));
    match find("datasource") {
        Some(v)
            if v.get("type").and_then(Value::as_str) == Some("datasource")
                && v.get("query").and_then(Value::as_str) == Some("prometheus") => {}
        _ => problems
            .push("needs a variable `datasource` of type datasource, query prometheus".to_owned()),
    }
    match find("site") {
        Some(v)
            if v.get("type").and_then(Value::as_str) == Some("query")
                && v.get("includeAll").and_then(Value::as_bool) == Some(true)
                && v.get("allValue").and_then(Value::as_str) == Some(".*")
                && v.get("query")
                    .and_then(Value::as_str)
                    .is_some_and(|q| q.starts_with("label_values(") && q.contains("site")) => {}
        _ => problems.push(
            "needs a query variable `site` (label_values(..., site), include all, all value .*)"
                .to_owned(),
        ),
    }
    for v in &vars {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
        if v.get("type").and_then(Value::as_str) != Some("query") {
            continue;
        }
        if v.pointer("/datasource/uid").and_then(Value::as_str) != Some(DATASOURCE_UID) {
            problems.push(format!("variable {name}: datasource is not {DATASOURCE_UID}"));
        }
        let query = v.get("query").and_then(Value::as_str).unwrap_or_default();
        if !query.starts_with("label_values(") {
            problems.push(format!("variable {name}: query {query:?} is not label_values(...)"));
        }
        if name != "site" && !query.contains(SITE_MATCHER) {
            problems.push(format!("variable {name}: query does not filter by {SITE_MATCHER}"));
        }
        if v.get("includeAll").and_then(Value::as_bool) == Some(true)
            && v.get("allValue").and_then(Value::as_str) != Some(".*")
        {
            problems.push(format!("variable {name}: the all value must be .*"));
        }
    }

    let names = variable_names(dash);
    let mut ids = BTreeSet::new();
    let mut rows_and_panels: Vec<&Value> = all_panels(dash);
    rows_and_panels.extend(
        dash.get("panels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("row")),
    );
    for panel in &rows_and_panels {
        match panel.get("id").and_then(Value::as_u64) {
            Some(id) if !ids.insert(id) => problems.push(format!("panel id {id} is used twice")),
            Some(_) => {}
            None => problems.push(format!("panel {:?} has no id", panel.get("title"))),
        }
        if panel.get("gridPos").is_none() {
            problems.push(format!("panel {:?} has no gridPos", panel.get("title")));
        }
    }
    for panel in all_panels(dash) {
        let title = panel.get("title").and_then(Value::as_str).unwrap_or("(untitled)");
        let kind = panel.get("type").and_then(Value::as_str).unwrap_or_default();
        let targets = panel.get("targets").and_then(Value::as_array);
        if kind == "text" {
            continue;
        }
        if panel.pointer("/datasource/uid").and_then(Value::as_str) != Some(DATASOURCE_UID) {
            problems.push(format!("panel {title:?}: datasource is not {DATASOURCE_UID}"));
        }
        let Some(targets) = targets.filter(|t| !t.is_empty()) else {
            problems.push(format!("panel {title:?} has no targets"));
            continue;
        };
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            let ref_id = target.get("refId").and_then(Value::as_str).unwrap_or_default();
            if ref_id.is_empty() || !ref_ids.insert(ref_id) {
                problems.push(format!("panel {title:?}: missing or repeated refId {ref_id:?}"));
            }
            if target.pointer("/datasource/uid").and_then(Value::as_str) != Some(DATASOURCE_UID) {
                problems
                    .push(format!("panel {title:?} {ref_id}: datasource is not {DATASOURCE_UID}"));
            }
            match target.get("expr").and_then(Value::as_str) {
                Some(expr) if !expr.trim().is_empty() => {
                    for p in expr_problems(expr, &names) {
                        problems.push(format!("panel {title:?} {ref_id}: {p}"));
                    }
                }
                _ => problems.push(format!("panel {title:?} {ref_id}: no expr")),
            }
        }
    }
    problems
}

/// Problems of one dashboard expression: a selector without the site matcher, a variable
/// that is not defined or not used as a regex matcher.
fn expr_problems(expr: &str, variables: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for selector in selectors(expr) {
        if !selector.contains(SITE_MATCHER) {
            problems.push(format!("selector {{{selector}}} lacks {SITE_MATCHER} in `{expr}`"));
        }
    }
    for name in bare_metrics(expr) {
        problems.push(format!("metric {name} has no {{{SITE_MATCHER}}} selector in `{expr}`"));
    }
    for (at, name) in variable_refs(expr) {
        if BUILTINS.iter().any(|(b, _)| *b == name) {
            continue;
        }
        let before = expr.get(..at).unwrap_or_default();
        if !variables.contains(&name) {
            problems.push(format!("${name} is not a variable of this dashboard in `{expr}`"));
        } else if !(before.ends_with("=~\"") || before.ends_with("!~\"")) {
            problems.push(format!(
                "${name} is not used as a regex matcher (=~\"${name}\") in `{expr}`"
            ));
        }
    }
    problems
}

/// The insides of every `{...}` label-matcher block, outside string literals.
fn selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            if let Some(cur) = current.as_mut() {
                cur.push(c);
            }
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                quote = Some(c);
                if let Some(cur) = current.as_mut() {
                    cur.push(c);
                }
            }
            '{' => current = Some(String::new()),
            '}' => {
                if let Some(cur) = current.take() {
                    out.push(cur);
                }
            }
            _ => {
                if let Some(cur) = current.as_mut() {
                    cur.push(c);
                }
            }
        }
    }
    out
}

/// Names of the project's series used without a `{...}` selector (outside strings,
/// selectors and range brackets).
fn bare_metrics(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut depth_brace = 0usize;
    let mut depth_bracket = 0usize;
    while i < chars.len() {
        let c = chars.get(i).copied().unwrap_or_default();
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() {
                    let d = chars.get(i).copied().unwrap_or_default();
                    if d == '\\' {
                        i += 1;
                    } else if d == c {
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => {
                depth_brace += 1;
                i += 1;
            }
            '}' => {
                depth_brace = depth_brace.saturating_sub(1);
                i += 1;
            }
            '[' => {
                depth_bracket += 1;
                i += 1;
            }
            ']' => {
                depth_bracket = depth_bracket.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_' || *d == ':')
                {
                    i += 1;
                }
                let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
                let prev = start.checked_sub(1).and_then(|p| chars.get(p)).copied();
                let is_var = prev == Some('$');
                let next = chars.get(i..).unwrap_or_default().iter().find(|d| !d.is_whitespace());
                let ours = word == "up" || METRIC_PREFIXES.iter().any(|p| word.starts_with(p));
                if ours && !is_var && depth_brace == 0 && depth_bracket == 0 && next != Some(&'{') {
                    out.push(word);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// `$name`, `${name}` and `${name:format}` references as (byte offset of the `$`, name).
fn variable_refs(expr: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'$') {
            i += 1;
            continue;
        }
        let braced = bytes.get(i + 1) == Some(&b'{');
        let start = if braced { i + 2 } else { i + 1 };
        let mut end = start;
        while bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            end += 1;
        }
        let name = expr.get(start..end).unwrap_or_default();
        // `$1` in label_replace replacements is not a variable.
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            out.push((i, name.to_owned()));
        }
        i = end.max(i + 1);
    }
    out
}

/// Replaces Grafana variables in `expr` with literals for a live Prometheus (see
/// [`dashboard_queries`]); unknown `$names` are left alone.
fn substitute(expr: &str, variables: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(pos) = rest.find('$') {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        let braced = tail.starts_with("${");
        let body = if braced { &tail[2..] } else { &tail[1..] };
        let name_len =
            body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
        let name = &body[..name_len];
        let mut consumed = 1 + name_len;
        if braced {
            // `${name}` or `${name:format}`: skip to the closing brace.
            match body.find('}') {
                Some(close) => consumed = 2 + close + 1,
                None => consumed = tail.len(),
            }
        }
        let replacement = BUILTINS
            .iter()
            .find(|(b, _)| *b == name)
            .map(|(_, lit)| *lit)
            .or_else(|| variables.contains(name).then_some(".*"));
        match replacement {
            Some(lit) if !name.is_empty() => out.push_str(lit),
            _ => {
                out.push('$');
                consumed = 1;
            }
        }
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    out
}

/// Whether we run under CI (`CI=true`): a missing tool is then an error.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `program --version` starts.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Skips a check for a missing tool with a warning, or fails under CI.
fn missing(tool: &str, install: &str, what: &str) -> anyhow::Result<()> {
    let msg = format!("{tool} not found ({install})");
    if in_ci() {
        anyhow::bail!("{msg}; CI=true requires it");
    }
    eprintln!("warning: {msg}: skipping {what}");
    Ok(())
}

fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned())
}

/// Runs `cmd` in `root`, failing with its output when it exits non-zero.
fn run(cmd: &mut Command, root: &Path) -> anyhow::Result<String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    );
    eprintln!("$ {shown}");
    let output = cmd.current_dir(root).output().with_context(|| format!("start `{shown}`"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        anyhow::bail!("`{shown}` failed ({}):\n{text}", output.status);
    }
    Ok(text)
}

fn relative(root: &Path, files: &[PathBuf]) -> Vec<String> {
    files.iter().map(|f| f.strip_prefix(root).unwrap_or(f).display().to_string()).collect()
}

/// Every dashboard against the JSON schema generated from `@grafana/schema`.
fn schema_check(root: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    anyhow::ensure!(root.join(SCHEMA).is_file(), "{SCHEMA} is missing");
    if !have("check-jsonschema") {
        return missing(
            "check-jsonschema",
            "pip install check-jsonschema",
            "the dashboard schema check",
        );
    }
    let out = run(
        Command::new("check-jsonschema").args(["--schemafile", SCHEMA]).args(relative(root, files)),
        root,
    )
    .context("a dashboard does not match Grafana's dashboard schema")?;
    eprint!("{out}");
    Ok(())
}

/// `promtool check rules` over `grafana/rules/*.yml` and `promtool test rules` over
/// `grafana/rules/tests/*.yml`.
fn promtool_rules(root: &Path) -> anyhow::Result<()> {
    let rules = files_with_extension(&root.join(RULES), "yml")?;
    let tests = files_with_extension(&root.join(RULE_TESTS), "yml")?;
    let promtool = promtool();
    if !have(&promtool) {
        return missing(&promtool, "apt-get install prometheus", "the rule checks and rule tests");
    }
    let out =
        run(Command::new(&promtool).args(["check", "rules"]).args(relative(root, &rules)), root)
            .context("promtool check rules found problems")?;
    eprint!("{out}");
    let out =
        run(Command::new(&promtool).args(["test", "rules"]).args(relative(root, &tests)), root)
            .context("a rule unit test failed")?;
    eprint!("{out}");
    Ok(())
}

/// Every alert in `grafana/rules/*.yml` has a test case where it fires and one where it does
/// not, and every rule file has a test file.
fn rule_problems(root: &Path) -> anyhow::Result<()> {
    let rules = files_with_extension(&root.join(RULES), "yml")?;
    let tests = files_with_extension(&root.join(RULE_TESTS), "yml")?;
    anyhow::ensure!(!rules.is_empty(), "no rule files in {RULES}/");
    let mut alerts = BTreeSet::new();
    for file in &rules {
        let text = fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        alerts.extend(yaml_values(&text, "- alert:"));
    }
    let mut test_text = String::new();
    for file in &tests {
        test_text +=
            &fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        test_text.push('\n');
    }
    let (firing, quiet) = alert_cases(&test_text);
    let mut problems = Vec::new();
    for alert in &alerts {
        if !firing.contains(alert) {
            problems.push(format!("alert {alert} has no test case where it fires"));
        }
        if !quiet.contains(alert) {
            problems.push(format!("alert {alert} has no test case where it does not fire"));
        }
    }
    for file in &rules {
        let rel = format!("../{}", file_name(file));
        if !test_text.contains(&rel) {
            problems
                .push(format!("{} is not loaded by any test in {RULE_TESTS}/", file_name(file)));
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("rule test coverage:\n  {}", problems.join("\n  "));
    }
    eprintln!("grafana: {} alerts, each with a firing and a non-firing test case", alerts.len());
    Ok(())
}

/// The values after `key` at the start of a (trimmed) line.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Alerts with a firing case (`exp_alerts:` followed by items) and with a non-firing case
/// (`exp_alerts: []`) in promtool test files.
fn alert_cases(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix("alertname:").or_else(|| t.strip_prefix("- alertname:"))
        {
            current = Some(name.trim().trim_matches(|c| c == '"' || c == '\'').to_owned());
        } else if let Some(rest) = t.strip_prefix("exp_alerts:")
            && let Some(name) = current.take()
        {
            if rest.trim() == "[]" {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    (firing, quiet)
}

/// Parses every dashboard query with `promtool --experimental promql format` when the
/// promtool in use supports it (2.53 and later; Debian 12's 2.42 does not).
fn promql_syntax(root: &Path) -> anyhow::Result<()> {
    let promtool = promtool();
    let supported = Command::new(&promtool)
        .args(["--experimental", "promql", "format", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !supported {
        eprintln!(
            "grafana: {promtool} has no `promql format` (2.53+): PromQL syntax checked in the e2e run only"
        );
        return Ok(());
    }
    let queries = dashboard_queries(root)?;
    let mut failed = Vec::new();
    for (dash, title, expr) in &queries {
        let output = Command::new(&promtool)
            .args(["--experimental", "promql", "format", expr])
            .output()
            .with_context(|| format!("start {promtool}"))?;
        if !output.status.success() {
            failed.push(format!(
                "{dash} / {title}: `{expr}`: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("dashboard queries that do not parse:\n  {}", failed.join("\n  "));
    }
    eprintln!("grafana: {} dashboard queries parse ({promtool} promql format)", queries.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    fn vars(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn root() -> PathBuf {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest_dir.parent().unwrap().to_path_buf()
    }

    #[test]
    fn substitutes_variables_for_a_live_prometheus() {
        let v = vars(&["site", "instance", "job", "datasource"]);
        assert_eq!(
            substitute(
                r#"rate(x_total{site=~"$site", instance=~"${instance}", job=~"${job:regex}"}[$__rate_interval])"#,
                &v
            ),
            r#"rate(x_total{site=~".*", instance=~".*", job=~".*"}[1m])"#
        );
        assert_eq!(substitute("avg_over_time(x[$__range])", &v), "avg_over_time(x[1h])");
        // `$1` of label_replace and unknown names stay.
        assert_eq!(
            substitute(r#"label_replace(x, "a", "$1", "b", "(.*)") + $other"#, &v),
            r#"label_replace(x, "a", "$1", "b", "(.*)") + $other"#
        );
        assert_eq!(substitute("a $", &v), "a $");
    }

    #[test]
    fn finds_selectors_without_the_site_matcher() {
        let v = vars(&["site", "instance"]);
        assert!(
            expr_problems(r#"linkhub_up{site=~"$site", instance=~"$instance"}"#, &v).is_empty()
        );
        let p = expr_problems(r#"linkhub_up{instance=~"$instance"}"#, &v);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("lacks"), "{p:?}");
        // A bare metric of ours, and one inside an aggregation.
        let p = expr_problems(r#"sum by (site) (ttn_up) + linkhub_up{site=~"$site"}"#, &v);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("metric ttn_up"), "{p:?}");
        // Label names and function names are not metrics; strings are skipped.
        assert!(
            expr_problems(
                r#"sum by (device_id) (rate(modemmanager_bearer_rx_bytes_total{site=~"$site", x="{up}"}[5m]))"#,
                &v
            )
            .is_empty()
        );
    }

    #[test]
    fn finds_undefined_and_non_regex_variables() {
        let v = vars(&["site", "instance"]);
        let p = expr_problems(r#"up{site=~"$site", job=~"$job"}"#, &v);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("$job is not a variable"), "{p:?}");
        let p = expr_problems(r#"up{site=~"$site", instance="$instance"}"#, &v);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("regex matcher"), "{p:?}");
        assert!(expr_problems(r#"rate(up{site=~"$site"}[$__rate_interval])"#, &v).is_empty());
    }

    #[test]
    fn counts_firing_and_quiet_cases() {
        let text = "
        alert_rule_test:
          - eval_time: 4m
            alertname: A
            exp_alerts: []
          - eval_time: 10m
            alertname: A
            exp_alerts:
              - exp_labels: {severity: critical}
          - eval_time: 10m
            alertname: B
            exp_alerts: []
        ";
        let (firing, quiet) = alert_cases(text);
        assert_eq!(firing, vars(&["A"]));
        assert_eq!(quiet, vars(&["A", "B"]));
    }

    #[test]
    fn dashboard_conventions_catch_a_missing_site_variable() {
        let mut dash: Value = serde_json::from_str(
            r#"{"uid": "uplink-x", "title": "X", "schemaVersion": 39,
                "templating": {"list": [
                  {"name": "datasource", "type": "datasource", "query": "prometheus"},
                  {"name": "site", "type": "query", "includeAll": true, "allValue": ".*",
                   "datasource": {"type": "prometheus", "uid": "${datasource}"},
                   "query": "label_values(up, site)"}]},
                "panels": [{"id": 1, "type": "timeseries", "title": "T",
                  "gridPos": {"h": 1, "w": 1, "x": 0, "y": 0},
                  "datasource": {"type": "prometheus", "uid": "${datasource}"},
                  "targets": [{"refId": "A", "expr": "up{site=~\"$site\"}",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(dashboard_problems(&dash), Vec::<String>::new());
        dash["templating"]["list"].as_array_mut().unwrap().pop();
        let p = dashboard_problems(&dash);
        assert!(p.iter().any(|p| p.contains("variable `site`")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("$site is not a variable")), "{p:?}");
        dash["panels"][0]["targets"][0]["expr"] = Value::from("");
        assert!(dashboard_problems(&dash).iter().any(|p| p.contains("no expr")));
    }

    #[test]
    fn the_committed_dashboards_follow_the_conventions() {
        let files = dashboard_files(&root()).unwrap();
        let names: Vec<String> = files.iter().map(|f| file_name(f)).collect();
        for want in
            ["linkhub.json", "modemmanager.json", "ttn.json", "smarthub.json", "site-overview.json"]
        {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        for file in &files {
            let problems = dashboard_problems(&read_json(file).unwrap());
            assert!(problems.is_empty(), "{}: {problems:#?}", file.display());
        }
        let queries = dashboard_queries(&root()).unwrap();
        assert!(queries.len() > 100, "{}", queries.len());
        for (dash, title, expr) in &queries {
            assert!(!expr.contains('$') || expr.contains("\"$1\""), "{dash} / {title}: {expr}");
            assert!(expr.contains(r#"site=~".*""#), "{dash} / {title}: {expr}");
        }
    }

    #[test]
    fn every_alert_has_firing_and_quiet_tests() {
        rule_problems(&root()).unwrap();
    }
}
