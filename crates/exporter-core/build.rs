//! Captures the rustc version and the git revision for `<ns>_exporter_build_info` and
//! `--version`. `UPLINK_REVISION` in the environment overrides git (for builds from a tarball).

use std::{path::Path, process::Command};

fn main() {
    println!("cargo:rerun-if-env-changed=UPLINK_REVISION");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".to_owned());
    let revision = std::env::var("UPLINK_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| run("git", &["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // Rebuild when HEAD moves, if this is a git checkout.
    if let Some(git_dir) = run("git", &["rev-parse", "--git-dir"]) {
        let head = Path::new(&git_dir).join("HEAD");
        if head.exists() {
            println!("cargo:rerun-if-changed={}", head.display());
            if let Ok(text) = std::fs::read_to_string(&head)
                && let Some(reference) = text.trim().strip_prefix("ref: ")
            {
                let path = Path::new(&git_dir).join(reference);
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
    println!("cargo:rustc-env=EXPORTER_CORE_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=EXPORTER_CORE_REVISION={revision}");
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
