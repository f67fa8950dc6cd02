//! Repository-wide rules, checked as an ordinary test so that `cargo test` finds what CI finds.
//!
//! - every `.rs` file under `crates/`, `bins/` and `xtask/` (tests, benches and fuzz targets
//!   too) starts with a `//!` doc comment saying what it is;
//! - every member `Cargo.toml` takes its dependencies from `[workspace.dependencies]` only;
//! - no test is switched off or inverted with the ignore or should-panic attributes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Built with `concat!` so that this file does not trip its own check.
const FORBIDDEN_ATTRIBUTES: [&str; 2] = [concat!("#[", "ignore"), concat!("#[", "should_panic")];

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let problems: Vec<String> = rust_files()
        .iter()
        .filter_map(|path| {
            let text = fs::read_to_string(path).unwrap();
            check_module_doc(&text).err().map(|err| format!("{}: {err}", shown(path)))
        })
        .collect();
    assert!(problems.is_empty(), "add a `//!` doc at the top of:\n{}", problems.join("\n"));
}

#[test]
fn no_test_is_ignored_or_expected_to_panic() {
    let problems: Vec<String> = rust_files()
        .iter()
        .flat_map(|path| {
            let text = fs::read_to_string(path).unwrap();
            check_attributes(&text).into_iter().map(move |err| format!("{}:{err}", shown(path)))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "tests must run and must be able to fail:\n{}",
        problems.join("\n")
    );
}

#[test]
fn member_manifests_use_workspace_dependencies_only() {
    let manifests = member_manifests();
    assert!(manifests.len() >= 3, "found only {manifests:?}");
    let problems: Vec<String> = manifests
        .iter()
        .flat_map(|path| {
            let text = fs::read_to_string(path).unwrap();
            check_manifest(&text).into_iter().map(move |err| format!("{}: {err}", shown(path)))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "declare dependencies once in the root [workspace.dependencies] and use \
         `name.workspace = true` in members:\n{}",
        problems.join("\n")
    );
}

// The checks themselves, and tests that show each of them can fail.

#[test]
fn module_doc_check_rejects_a_missing_doc() {
    assert!(check_module_doc("//! A module.\nfn f() {}\n").is_ok());
    assert!(check_module_doc("\n//! After a blank line.\n").is_ok());
    assert!(check_module_doc("// A plain comment.\nfn f() {}\n").is_err());
    assert!(check_module_doc("use std::fs;\n//! Too late.\n").is_err());
    assert!(check_module_doc("").is_err());
}

#[test]
fn attribute_check_finds_ignore_and_should_panic() {
    let ignored = format!("#[test]\n{}]\nfn t() {{}}\n", FORBIDDEN_ATTRIBUTES[0]);
    assert_eq!(check_attributes(&ignored), ["2: #[ignore"]);
    let panicking = format!("fn a() {{}}\n    {}(expected = \"x\")]\n", FORBIDDEN_ATTRIBUTES[1]);
    assert_eq!(check_attributes(&panicking), ["2: #[should_panic"]);
    assert!(check_attributes("#[test]\nfn ignore_me() {}\n").is_empty());
}

#[test]
fn manifest_check_rejects_direct_dependencies() {
    let good = "[package]\nname = \"x\"\nversion = \"0.0.0\"\n\n[dependencies]\n\
                anyhow.workspace = true\n# a comment\ntokio = { workspace = true, features = [\"fs\"] }\n\n\
                [dev-dependencies.reqwest]\nworkspace = true\n\n[lints]\nworkspace = true\n";
    assert_eq!(check_manifest(good), Vec::<String>::new());

    let bad = "[dependencies]\nanyhow = \"1\"\nserde = { version = \"1\" }\n\
               [target.'cfg(unix)'.dev-dependencies]\nlocal = { path = \"../local\" }\n\
               [build-dependencies.cc]\nversion = \"1\"\n\
               [package.metadata.deb]\nassets = [\n  [\"target/release/x\", \"usr/bin/\"],\n  [\"x.1\", \"man/\"]]\n";
    assert_eq!(
        check_manifest(bad),
        [
            "[dependencies] anyhow: not `workspace = true`",
            "[dependencies] serde: not `workspace = true`",
            "[target.'cfg(unix)'.dev-dependencies] local: not `workspace = true`",
            "[build-dependencies.cc]: not `workspace = true`",
        ]
    );
}

/// `Ok` when the first non-blank line is a `//!` comment.
fn check_module_doc(text: &str) -> Result<(), String> {
    match text.lines().map(str::trim).find(|line| !line.is_empty()) {
        Some(line) if line.starts_with("//!") => Ok(()),
        Some(line) => Err(format!("starts with {line:?}")),
        None => Err("empty file".to_owned()),
    }
}

/// `line: attribute` for every forbidden attribute.
fn check_attributes(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for attribute in FORBIDDEN_ATTRIBUTES {
            if line.trim_start().starts_with(attribute) {
                found.push(format!("{}: {attribute}", index + 1));
            }
        }
    }
    found
}

/// Every dependency that does not come from the workspace, as `[section] name: reason`.
fn check_manifest(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    // The current section and, for `[dependencies.NAME]` tables, whether it said `workspace = true`.
    let mut section = String::new();
    let mut table_ok: Option<bool> = None;
    let finish_table = |section: &str, table_ok: Option<bool>, problems: &mut Vec<String>| {
        if table_ok == Some(false) {
            problems.push(format!("[{section}]: not `workspace = true`"));
        }
    };
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = section_header(line) {
            finish_table(&section, table_ok, &mut problems);
            section = header;
            table_ok = is_dependency_table(&section).then_some(false);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if let Some(ok) = table_ok.as_mut() {
            if key == "workspace" && value == "true" {
                *ok = true;
            }
        } else if is_dependency_section(&section) {
            let from_workspace = (key.ends_with(".workspace") && value == "true")
                || (value.starts_with('{') && inline_workspace_true(value));
            if !from_workspace {
                let name = key.trim_end_matches(".workspace");
                problems.push(format!("[{section}] {name}: not `workspace = true`"));
            }
        }
    }
    finish_table(&section, table_ok, &mut problems);
    problems
}

/// The name inside `[name]` or `[[name]]`; `None` for other lines, such as the rows of a
/// multi-line array (`["a", "b"],`).
fn section_header(line: &str) -> Option<String> {
    if !line.starts_with('[') || !line.ends_with(']') {
        return None;
    }
    let name = line.trim_start_matches('[').trim_end_matches(']').trim();
    let looks_like_a_key = name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    looks_like_a_key.then(|| name.to_owned())
}

/// `dependencies`, `dev-dependencies`, `build-dependencies`, also under `target.*.`.
fn is_dependency_section(section: &str) -> bool {
    let last = section.rsplit('.').next().unwrap_or(section);
    matches!(last, "dependencies" | "dev-dependencies" | "build-dependencies")
}

/// `[dependencies.NAME]` and the like.
fn is_dependency_table(section: &str) -> bool {
    let mut parts = section.rsplitn(2, '.');
    let _name = parts.next();
    parts.next().is_some_and(is_dependency_section)
}

fn inline_workspace_true(value: &str) -> bool {
    value.trim_matches(|c| c == '{' || c == '}').split(',').any(|pair| {
        pair.split_once('=').is_some_and(|(k, v)| k.trim() == "workspace" && v.trim() == "true")
    })
}

fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// `crates/*/Cargo.toml`, `bins/*/Cargo.toml` and `xtask/Cargo.toml`.
fn member_manifests() -> Vec<PathBuf> {
    let root = root();
    let mut manifests = vec![root.join("xtask/Cargo.toml")];
    for group in ["crates", "bins"] {
        let Ok(members) = fs::read_dir(root.join(group)) else { continue };
        for member in members {
            let manifest = member.unwrap().path().join("Cargo.toml");
            if manifest.is_file() {
                manifests.push(manifest);
            }
        }
    }
    manifests.sort();
    manifests
}

/// Every `.rs` file under `crates/`, `bins/` and `xtask/`, skipping `target` and hidden folders.
fn rust_files() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    for top in ["crates", "bins", "xtask"] {
        walk(&root.join(top), &mut files);
    }
    assert!(files.len() >= 10, "found only {} Rust files under {}", files.len(), root.display());
    files.sort();
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, files);
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}
