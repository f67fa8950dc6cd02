//! The external programs the ModemManager tests run, and what to do when one is missing.
//!
//! Tests that need `dbus-daemon`, `ModemManager` or `mmcli` call [`require`] first. Outside
//! CI a missing program skips the test with a message saying so; under `CI=true` (as every CI
//! system sets it) it fails the test with a message naming the Debian packages to install,
//! so a CI machine without them can never pass the real-daemon tests by skipping them.

use std::path::{Path, PathBuf};

/// A program a test runs, and the Debian package that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The executable's file name.
    pub binary: &'static str,
    /// The Debian package to install for it.
    pub package: &'static str,
}

/// The message bus daemon [`super::PrivateBus`] starts.
pub const DBUS_DAEMON: Tool = Tool { binary: "dbus-daemon", package: "dbus" };
/// The real daemon [`super::real_mm::RealModemManager`] starts (in `/usr/sbin` on Debian).
pub const MODEM_MANAGER: Tool = Tool { binary: "ModemManager", package: "modemmanager" };
/// ModemManager's command-line client, which the real-daemon tests drive it with.
pub const MMCLI: Tool = Tool { binary: "mmcli", package: "modemmanager" };

/// Everything the real-ModemManager tests need.
pub const REAL_MM: &[Tool] = &[DBUS_DAEMON, MODEM_MANAGER, MMCLI];
/// Everything the fake-ModemManager tests need.
pub const FAKE_MM: &[Tool] = &[DBUS_DAEMON];

/// Directories searched after `PATH`: `ModemManager` lives in `/usr/sbin`, which an ordinary
/// user's `PATH` on Debian does not contain.
const SBIN: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

impl Tool {
    /// Where the program is installed: the first executable file of that name in `PATH`, then
    /// in the sbin directories.
    pub fn path(&self) -> Option<PathBuf> {
        let from_env = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&from_env)
            .chain(SBIN.iter().map(PathBuf::from))
            .map(|dir| dir.join(self.binary))
            .find(|p| is_executable(p))
    }

    /// Whether the program is installed.
    pub fn installed(&self) -> bool {
        self.path().is_some()
    }
}

/// Whether the environment says this is a CI run (`CI=true`, also `1` or `yes`).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Checks that every tool in `tools` is installed before `test` runs.
///
/// Returns `true` when they all are. When some are missing, outside CI it prints that `test`
/// is skipped and why, and returns `false` (the caller returns at once); under `CI=true` it
/// fails the test.
///
/// # Panics
/// Under `CI=true` when a tool is missing, with the `apt-get install` line that fixes it.
pub fn require(test: &str, tools: &[Tool]) -> bool {
    let missing: Vec<Tool> = tools.iter().copied().filter(|t| !t.installed()).collect();
    match decide(test, &missing, in_ci()) {
        Decision::Run => true,
        Decision::Skip(message) => {
            eprintln!("{message}");
            false
        }
        Decision::Fail(message) => panic!("{message}"),
    }
}

/// What [`require`] does about `missing` tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is missing.
    Run,
    /// Outside CI: skip, printing this.
    Skip(String),
    /// Under CI: fail with this.
    Fail(String),
}

/// The pure decision behind [`require`].
pub fn decide(test: &str, missing: &[Tool], ci: bool) -> Decision {
    if missing.is_empty() {
        return Decision::Run;
    }
    let names: Vec<&str> = missing.iter().map(|t| t.binary).collect();
    let mut packages: Vec<&str> = Vec::new();
    for t in missing {
        if !packages.contains(&t.package) {
            packages.push(t.package);
        }
    }
    let install = format!("apt-get install {}", packages.join(" "));
    if ci {
        Decision::Fail(format!(
            "{test}: {} not installed, and CI=true does not allow skipping: install it with `{install}`",
            names.join(", ")
        ))
    } else {
        Decision::Skip(format!(
            "SKIPPED {test}: {} not installed (`{install}` to run it; under CI=true this fails)",
            names.join(", ")
        ))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_missing_runs() {
        assert_eq!(decide("t", &[], true), Decision::Run);
        assert_eq!(decide("t", &[], false), Decision::Run);
    }

    #[test]
    fn ci_fails_naming_the_packages_and_local_runs_skip_loudly() {
        let Decision::Fail(msg) =
            decide("real_mm::replug", &[MODEM_MANAGER, MMCLI, DBUS_DAEMON], true)
        else {
            panic!("CI must fail");
        };
        assert!(msg.contains("ModemManager, mmcli, dbus-daemon"), "{msg}");
        assert!(msg.contains("apt-get install modemmanager dbus"), "{msg}");
        assert!(msg.contains("real_mm::replug"), "{msg}");
        let Decision::Skip(msg) = decide("real_mm::replug", &[MMCLI], false) else {
            panic!("outside CI it skips");
        };
        assert!(msg.starts_with("SKIPPED real_mm::replug"), "{msg}");
        assert!(msg.contains("apt-get install modemmanager"), "{msg}");
    }

    #[test]
    fn a_tool_that_does_not_exist_is_not_installed() {
        let nothing = Tool { binary: "no-such-program-mm-exporter-test", package: "none" };
        assert!(!nothing.installed());
        let sh = Tool { binary: "sh", package: "dash" };
        assert!(sh.installed());
    }
}
