//! `cargo xtask bench --cpu-profile LABEL`: where the CPU of a scrape goes, per exporter.
//!
//! Each exporter (the `profiling` build: release with line tables) runs under valgrind's
//! callgrind against its simulator (which runs natively). After a warm-up the counters are
//! zeroed (`callgrind_control -z`), a fixed number of sequential gzip scrapes is made, and the
//! counters are dumped (`callgrind_control -d`). Callgrind counts user-space instructions
//! exactly and repeatably (the kernel's share, loopback and context switches, is not in it:
//! the benchmark's system-time column has that). The instructions are summed by component
//! (gzip, JSON, D-Bus, HTTP, allocation, …, from the crate in each function's source path or
//! name) and the top functions by self cost are listed; the result is written into the
//! section `bench-profile-LABEL` of docs/performance.md, so `before` and `after` stand side by
//! side.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    load::{self, Kind, Rig, RigOptions},
    sh,
    stack::{self, Group},
};

/// Warm-up scrapes before the counters are zeroed.
const WARMUP: u64 = 20;
/// Functions listed per exporter.
const TOP: usize = 15;
/// Where new label sections go in docs/performance.md when the page has none for the label.
const ANCHOR: &str = "<!-- bench --cpu-profile adds new labels above this line -->";

/// Components, tried in order: the first whose pattern occurs in a function's
/// `file:function [object]` line (lowercased) takes its cost.
const COMPONENTS: [(&str, &[&str]); 14] = [
    ("gzip (flate2, miniz_oxide)", &["miniz_oxide", "flate2", "crc32fast", "adler"]),
    (
        "JavaScript (QuickJS)",
        &[
            "rquickjs",
            "quickjs",
            ":js_",
            ":__js_",
            ":lre_",
            ":dbuf_",
            ":string_buffer_",
            ":free_",
            ":mark_",
        ],
    ),
    ("D-Bus (zbus, zvariant)", &["zbus", "zvariant", "dbus"]),
    ("JSON (serde_json)", &["serde_json", "serde_core", "/serde-", "serde::"]),
    ("XML (quick-xml)", &["quick_xml", "quick-xml"]),
    ("TLS and crypto", &["rustls", "/ring-", "ring::", "aes", "sha2", "md5", "bcrypt", "blowfish"]),
    (
        "HTTP (hyper, reqwest, http)",
        &[
            "hyper", "reqwest", "/http-", "http::", "httparse", "h2::", "/h2-", "tower", "url::",
            "/url-", "idna",
        ],
    ),
    (
        "allocation (malloc, free)",
        &[
            "malloc",
            ":free ",
            ":free[",
            ":cfree",
            "realloc",
            "calloc",
            "_int_",
            "tcache",
            "__rust_alloc",
            "__rust_dealloc",
            "__rust_realloc",
            "__rdl_",
            "unlink_chunk",
            "alloc::alloc",
            "raw_vec",
        ],
    ),
    (
        "memory copies (memcpy, memmove, memset)",
        &["memcpy", "memmove", "memset", "memcmp", "memchr", "strlen"],
    ),
    (
        "formatting (core::fmt, itoa, ryu)",
        &["core::fmt", "alloc::fmt", "/fmt/", "itoa", "ryu", "zmij"],
    ),
    (
        "async runtime and I/O (tokio, mio, std, libc)",
        &[
            "tokio",
            "mio",
            "futures",
            "parking_lot",
            "std::sys",
            "/std/src/",
            "libc.so",
            "ld-linux",
            "pthread",
            "epoll",
            "syscall",
        ],
    ),
    ("exporter-core (server, exposition text)", &["exporter_core", "exporter-core"]),
    (
        "the exporter's own code",
        &["linkhub_exporter", "mm_exporter", "ttn_exporter", "smarthub_exporter", "/bins/"],
    ),
    (
        "strings, hashing, collections",
        &[
            "core::str",
            "alloc::str",
            "alloc::string",
            "hashbrown",
            "core::hash",
            "foldhash",
            "alloc::vec",
            "core::slice",
            "/core/src/",
            "/alloc/src/",
        ],
    ),
];

/// Callers of a function with the instructions of their calls.
type Callers = Vec<(String, u64)>;

/// One exporter's profile.
#[derive(Debug)]
struct Profile {
    kind: Kind,
    scrapes: u64,
    device_requests: u64,
    total: u64,
    /// (component, instructions), largest first; "other" last.
    components: Vec<(String, u64)>,
    /// (function, instructions, its largest callers with their share of the calls in
    /// thousandths), largest first.
    top: Vec<(String, u64, Callers)>,
}

/// Records the profiles of the `only` exporters (default all) and writes section `label`.
pub fn run(
    only: Option<&str>,
    label: &str,
    scrapes: u64,
    no_build: bool,
    write: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "--cpu-profile: a label of letters, digits and dashes (e.g. before, after), not {label:?}"
    );
    anyhow::ensure!((10..=5000).contains(&scrapes), "--profile-scrapes: 10 to 5000");
    for tool in ["valgrind", "callgrind_control", "callgrind_annotate"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        anyhow::ensure!(found, "{tool} not found: apt-get install valgrind");
    }
    let kinds = match only {
        Some(list) => Kind::parse_list(list)?,
        None => Kind::ALL.to_vec(),
    };
    let bin_dir = if no_build { load::profile_dir("profiling") } else { load::build("profiling")? };
    let started = Instant::now();
    let mut profiles = Vec::new();
    for kind in kinds {
        eprintln!("==> cpu profile {kind}");
        profiles.push(record(&bin_dir, kind, scrapes).with_context(|| format!("profile {kind}"))?);
    }
    let report = render(&profiles, started.elapsed());
    println!("{report}");
    if write {
        let name = format!("bench-profile-{label}");
        ensure_section("docs/performance.md", &name, label)?;
        let mut command = format!("cargo xtask bench --cpu-profile {label}");
        if scrapes != 300 {
            let _ = write!(command, " --profile-scrapes {scrapes}");
        }
        if let Some(only) = only {
            let _ = write!(command, " --only {only}");
        }
        load::write_generated("docs/performance.md", &name, &command, &report)?;
    }
    Ok(())
}

fn record(bin_dir: &Path, kind: Kind, scrapes: u64) -> anyhow::Result<Profile> {
    let dir = stack::target_dir().join("bench").join(format!("profile-{}", kind.short()));
    let mut group = Group::new(&dir, "bench: stopped the profiled exporter")?;
    let out = dir.join("callgrind.out");
    let opts = RigOptions { ttn_gateways: 10, ..RigOptions::default() };
    let wrapper = [
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", stack::path_arg(&out)),
        "--dump-instr=no".to_owned(),
        "--collect-jumps=no".to_owned(),
    ];
    let mut rig = Rig::start_under(&mut group, bin_dir, kind, &opts, &wrapper)?;
    rig.check_up()?;
    let mut conn = rig.scraper()?;
    for _ in 0..WARMUP {
        conn.scrape("/metrics", true, 30.0)?;
    }
    control(rig.pid, "-z")?;
    let dev0 = rig.device.count()?;
    let started = Instant::now();
    let mut done = 0;
    while done < scrapes && started.elapsed() < Duration::from_secs(600) {
        let a = conn.scrape("/metrics", true, 30.0)?;
        anyhow::ensure!(a.status == 200, "{kind}: scrape under callgrind: HTTP {}", a.status);
        done += 1;
    }
    let dev1 = rig.device.count()?;
    control(rig.pid, "-d")?;
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::metadata(&dump).is_ok_and(|m| m.len() > 0) {
        anyhow::ensure!(Instant::now() < deadline, "no callgrind dump {}", dump.display());
        thread::sleep(Duration::from_millis(200));
    }
    // The dump is written in one go, but give it a moment to be complete.
    thread::sleep(Duration::from_millis(500));
    group.check_running(rig.index)?;
    group.stop();
    let annotated = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--auto=no", "--tree=caller"])
        .arg(&dump)
        .output()
        .context("run callgrind_annotate")?;
    anyhow::ensure!(
        annotated.status.success(),
        "callgrind_annotate failed: {}",
        String::from_utf8_lossy(&annotated.stderr).trim()
    );
    let text = String::from_utf8_lossy(&annotated.stdout);
    fs::write(dir.join("callgrind.txt"), text.as_bytes()).context("keep the annotated profile")?;
    let (total, functions, callers) = parse(&text)?;
    let mut components: Vec<(String, u64)> =
        COMPONENTS.iter().map(|(name, _)| ((*name).to_owned(), 0)).collect();
    let mut other = 0;
    for (line, cost) in &functions {
        let lower = line.to_lowercase();
        match COMPONENTS.iter().position(|(_, pats)| pats.iter().any(|p| lower.contains(p))) {
            Some(i) => {
                if let Some(c) = components.get_mut(i) {
                    c.1 += cost;
                }
            }
            None => other += cost,
        }
    }
    components.retain(|c| c.1 > 0);
    components.sort_by_key(|c| std::cmp::Reverse(c.1));
    components.push(("other".to_owned(), other));
    // One entry per function name (inlined code shows up under several source files).
    let mut merged: Vec<(String, u64, Callers)> = Vec::new();
    for (line, cost) in &functions {
        let name = function_name(line);
        let index = match merged.iter().position(|(n, _, _)| *n == name) {
            Some(i) => i,
            None => {
                merged.push((name, 0, Vec::new()));
                merged.len() - 1
            }
        };
        let Some(entry) = merged.get_mut(index) else { continue };
        entry.1 += cost;
        for (caller, c) in callers.get(line).into_iter().flatten() {
            let caller = function_name(caller);
            match entry.2.iter_mut().find(|(n, _)| *n == caller) {
                Some(e) => e.1 += c,
                None => entry.2.push((caller, *c)),
            }
        }
    }
    merged.sort_by_key(|m| std::cmp::Reverse(m.1));
    let top = merged
        .into_iter()
        .take(TOP)
        .map(|(name, cost, mut from)| {
            // Shares of the calls into the function (each call's cost includes what the
            // function called in turn, so they are shares of the calls, not of the self cost).
            let calls: u64 = from.iter().map(|(_, c)| c).sum();
            from.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
            from.truncate(2);
            let from = from.into_iter().map(|(n, c)| (n, c * 1000 / calls.max(1))).collect();
            (name, cost, from)
        })
        .collect();
    Ok(Profile {
        kind,
        scrapes: done,
        device_requests: (dev1 - dev0).requests,
        total,
        components,
        top,
    })
}

/// `callgrind_control FLAG PID`.
fn control(pid: u32, flag: &str) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .args([flag, &pid.to_string()])
        .output()
        .context("run callgrind_control")?;
    anyhow::ensure!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("Error"),
        "callgrind_control {flag} {pid}: {}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// What `callgrind_annotate --tree=caller` says: the program total, the
/// `file:function [object]` lines with their self cost (largest first, without the roots of
/// the stacks, whose "self" cost is the whole program's), and each line's callers with the
/// cost of their calls.
type Parsed = (u64, Vec<(String, u64)>, HashMap<String, Callers>);

fn parse(text: &str) -> anyhow::Result<Parsed> {
    let mut total = None;
    let mut functions = Vec::new();
    let mut callers: HashMap<String, Callers> = HashMap::new();
    let mut pending: Vec<(String, u64)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-- ") && line.contains("annotated source") {
            break;
        }
        let Some((number, rest)) = line.split_once(char::is_whitespace) else {
            pending.clear();
            continue;
        };
        if !number.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            pending.clear();
            continue;
        }
        let Ok(cost) = number.replace(',', "").parse::<u64>() else { continue };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or(r, |(_, after)| after).trim_start(),
            None => rest,
        };
        if let Some(caller) = rest.strip_prefix("< ") {
            // `file:function (3x) [object]`: drop the call count.
            let caller = match (caller.rfind(" ("), caller.rfind("x)")) {
                (Some(a), Some(b)) if b > a => format!("{}{}", &caller[..a], &caller[b + 2..]),
                _ => caller.to_owned(),
            };
            pending.push((caller, cost));
            continue;
        }
        if let Some(callee) = rest.strip_prefix("> ") {
            let _ = callee;
            continue;
        }
        let rest = rest.strip_prefix("* ").map_or(rest, str::trim_start);
        if rest.starts_with("PROGRAM TOTALS") {
            total = Some(cost);
        } else if !rest.is_empty() {
            if !pending.is_empty() {
                callers.entry(rest.to_owned()).or_default().append(&mut pending);
            }
            if !functions.iter().any(|(l, _)| l == rest) {
                functions.push((rest.to_owned(), cost));
            }
        }
        pending.clear();
    }
    let total = total.context("callgrind_annotate printed no PROGRAM TOTALS")?;
    // The functions at the bottom of each thread's stack never return, and callgrind shows
    // them with the cost of everything above them.
    functions.retain(|(line, cost)| (*cost as f64) < total as f64 * 0.99 && !is_root(line));
    functions.sort_by_key(|f| std::cmp::Reverse(f.1));
    Ok((total, functions, callers))
}

/// Whether a `file:function [object]` line is the bottom of a thread's stack.
fn is_root(line: &str) -> bool {
    let name = function_name(line);
    const ROOTS: [&str; 9] = [
        "clone",
        "clone3",
        "start_thread",
        "(below main)",
        "main",
        "__libc_start_main@@GLIBC_2.34",
        "std::sys::backtrace::__rust_begin_short_backtrace",
        "<std::sys::thread::unix::Thread>::new::thread_start",
        "core::ops::function::FnOnce::call_once{{vtable.shim}}",
    ];
    ROOTS.contains(&name.as_str())
        || name.starts_with("__libc_start_main")
        // A binary's own `main` (`smarthub_exporter::main`) is the bottom of the main
        // thread's stack: with other threads busy too it is below the 99 % cut.
        || (name.ends_with("::main") && line.contains("src/main.rs:"))
        || (line.contains("ld-linux") && name.starts_with("0x"))
}

/// The function of a `file:function [object]` line, shortened for a table.
fn function_name(line: &str) -> String {
    let without_object = match line.rfind(" [") {
        Some(i) if line.ends_with(']') => &line[..i],
        _ => line,
    };
    // The file ends at the first ':' that is not part of a '::' path.
    let bytes = without_object.as_bytes();
    let mut split = None;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b':'
            && bytes.get(i + 1) != Some(&b':')
            && (i == 0 || bytes.get(i - 1) != Some(&b':'))
        {
            split = Some(i);
            break;
        }
    }
    let function = split.map_or(without_object, |i| &without_object[i + 1..]);
    let mut name: String = function.chars().take(110).collect();
    if function.chars().count() > 110 {
        name.push('…');
    }
    name.replace('|', "\\|").replace('`', "'")
}

fn render(profiles: &[Profile], took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Recorded {} with valgrind's callgrind on the `profiling` build, {} s in all; instructions are user space only.\n",
        super::today(),
        took.as_secs()
    );
    let _ = writeln!(
        s,
        "| exporter | scrapes recorded | instructions per scrape | device requests per scrape | largest components |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---|");
    for p in profiles {
        let n = p.scrapes.max(1);
        let largest: Vec<String> = p
            .components
            .iter()
            .take(3)
            .map(|(c, v)| format!("{} {:.0} %", c, pct(*v, p.total)))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {} |",
            p.kind,
            p.scrapes,
            thousands(p.total / n),
            p.device_requests as f64 / n as f64,
            largest.join(", ")
        );
    }
    for p in profiles {
        let n = p.scrapes.max(1);
        let _ = writeln!(s, "\n#### {}\n", p.kind);
        let _ = writeln!(s, "| component | share | instructions per scrape |");
        let _ = writeln!(s, "|---|---:|---:|");
        for (c, v) in &p.components {
            let _ = writeln!(s, "| {c} | {:.1} % | {} |", pct(*v, p.total), thousands(v / n));
        }
        let _ = writeln!(
            s,
            "\n| function (self cost) | share | instructions per scrape | mostly called from |"
        );
        let _ = writeln!(s, "|---|---:|---:|---|");
        for (f, v, from) in &p.top {
            let from: Vec<String> = from
                .iter()
                .map(|(c, permille)| format!("`{c}` ({:.0} %)", *permille as f64 / 10.0))
                .collect();
            let _ = writeln!(
                s,
                "| `{f}` | {:.1} % | {} | {} |",
                pct(*v, p.total),
                thousands(v / n),
                from.join(", ")
            );
        }
    }
    s
}

fn pct(v: u64, total: u64) -> f64 {
    v as f64 * 100.0 / total.max(1) as f64
}

/// 1234567 as 1,234,567.
fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Adds an empty `name` section (with a heading for `label`) above [`ANCHOR`] when the page
/// has none yet.
fn ensure_section(doc: &str, name: &str, label: &str) -> anyhow::Result<()> {
    let path = sh::root().join(doc);
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let start = format!("<!-- generated by cargo xtask {name}: start -->");
    if text.contains(&start) {
        return Ok(());
    }
    let Some(at) = text.find(ANCHOR) else {
        anyhow::bail!(
            "{} has no `{ANCHOR}` line to add the {label} profiles above",
            path.display()
        );
    };
    let section = format!(
        "### Profile: {label}\n\n{start}\n<!-- generated by cargo xtask {name}: end -->\n\n"
    );
    let new = format!("{}{section}{}", &text[..at], &text[at..]);
    fs::write(&path, new).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_callgrind_annotate() {
        let text = "--------\nIr\n--------\n12,000 (100.0%)  PROGRAM TOTALS\n\n--------\nIr  file:function\n--------\n3,000 (25.0%)  ???:malloc [/usr/lib/x86_64-linux-gnu/libc.so.6]\n9,000 (75.0%)  /root/.cargo/registry/src/index/miniz_oxide-0.8.0/src/deflate/core.rs:miniz_oxide::deflate::core::compress_inner [/x/ttn-exporter]\n";
        let (total, functions, _) = parse(text).unwrap();
        assert_eq!(total, 12_000);
        assert_eq!(functions.len(), 2);
        assert_eq!(functions[0].1, 9_000);
        assert_eq!(function_name(&functions[0].0), "miniz_oxide::deflate::core::compress_inner");
        assert_eq!(function_name(&functions[1].0), "malloc");
        assert_eq!(thousands(1_234_567), "1,234,567");

        // --tree=caller: callers before the function's `*` line; stack roots dropped.
        let tree = "100 (100.0%)  PROGRAM TOTALS\n\n100 (100.0%)  *  ???:main [/x/e]\n\n   70 (70.0%)  < /s/flate2-1/src/a.rs:flate2::reset (3x) [/x/e]\n   10 (10.0%)  < ???:other [/x/e]\n   60 (60.0%)  *  ???:memset [/lib/libc.so.6]\n";
        let (total, functions, callers) = parse(tree).unwrap();
        assert_eq!(total, 100);
        assert_eq!(functions, vec![("???:memset [/lib/libc.so.6]".to_owned(), 60)]);
        let from = &callers["???:memset [/lib/libc.so.6]"];
        assert_eq!(from[0], ("/s/flate2-1/src/a.rs:flate2::reset [/x/e]".to_owned(), 70));
        assert_eq!(function_name(&from[0].0), "flate2::reset");
        assert!(is_root("???:main [/x/e]"));
        assert!(is_root("bins/smarthub-exporter/src/main.rs:smarthub_exporter::main [/x/e]"));
        assert!(!is_root("bins/a/src/lib.rs:a::main_loop [/x/e]"));
        assert_eq!(thousands(12), "12");
    }
}
