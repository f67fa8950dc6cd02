//! Checks of the deployment files: yamllint over `packaging/kubernetes/` and
//! `packaging/compose/`, `kubernetes-validate --strict` over the Kubernetes manifests (CRDs
//! such as ServiceMonitor and Probe are only warned about by it), and `promtool check config`
//! of the compose stack's prometheus.yml with the project's rules where the stack mounts them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{build::output, report::Report};
use crate::sh;

/// The yamllint configuration the project uses for deployment files.
const YAMLLINT_CONFIG: &str =
    "{extends: default, rules: {document-start: disable, line-length: {max: 120}}}";

pub fn check_all(report: &mut Report) -> anyhow::Result<()> {
    let root = sh::root();
    let kube = yaml_files(&root.join("packaging/kubernetes"))?;
    let compose = yaml_files(&root.join("packaging/compose"))?;
    anyhow::ensure!(!kube.is_empty(), "no YAML files in packaging/kubernetes/");
    anyhow::ensure!(!compose.is_empty(), "no YAML files in packaging/compose/");

    let all: Vec<&PathBuf> = kube.iter().chain(&compose).collect();
    match output(Command::new("yamllint").args(["-s", "-d", YAMLLINT_CONFIG]).args(&all)) {
        Ok(_) => {
            report.check("yamllint (kubernetes, compose)", format!("{} files clean", all.len()))
        }
        Err(err) => report.fail(format!("yamllint: {err:#}")),
    }

    let mut resources = 0;
    for file in &kube {
        let shown = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        match Command::new("kubernetes-validate").arg("--strict").arg(file).output() {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                resources += text.lines().filter(|l| l.contains("INFO")).count();
            }
            Ok(out) => report.fail(format!(
                "kubernetes-validate --strict {shown}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(err) => report.fail(format!("run kubernetes-validate: {err}")),
        }
    }
    report.check(
        "kubernetes-validate --strict",
        format!("{} files, {resources} core resources valid (CRDs warned only)", kube.len()),
    );

    match promtool_config(&root) {
        Ok(summary) => report.check("promtool check config (compose)", summary),
        Err(err) => report.fail(format!("promtool check config: {err:#}")),
    }
    Ok(())
}

/// `*.yaml` / `*.yml` under `dir`, sorted.
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.with_context(|| format!("list {}", dir.display()))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The compose stack mounts prometheus.yml at /etc/prometheus/ and grafana/rules/ at
/// /etc/prometheus/rules/; the same layout in a scratch directory lets promtool also check
/// every rule file the config names.
fn promtool_config(root: &Path) -> anyhow::Result<String> {
    let scratch = root.join("target/dist/promtool-config");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(scratch.join("rules")).context("create the promtool scratch directory")?;
    fs::copy(root.join("packaging/compose/prometheus.yml"), scratch.join("prometheus.yml"))
        .context("copy packaging/compose/prometheus.yml")?;
    let rules = root.join("grafana/rules");
    for entry in fs::read_dir(&rules).with_context(|| format!("list {}", rules.display()))? {
        let path = entry.context("list grafana/rules")?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let name = path.file_name().context("rule file name")?;
            fs::copy(&path, scratch.join("rules").join(name)).context("copy a rule file")?;
        }
    }
    let text = output(
        Command::new("promtool").args(["check", "config", "prometheus.yml"]).current_dir(&scratch),
    )?;
    let rule_files =
        text.lines().filter(|l| l.contains("SUCCESS") && l.contains("rules found")).count();
    Ok(format!("SUCCESS, {rule_files} rule files checked"))
}
