//! Hostile hub scripts end to end: every mode fails only the JavaScript collectors, with a
//! clear message, within the scrape deadline, and the memory of the process stays bounded.
//! One test in its own binary, so that no other test shares the process while its resident
//! memory is measured.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{collector, rig, rss_kib, value};
use device_sim::{
    http::HttpDevice as _,
    smarthub::{HOSTILE_MODES, Profile},
};
use smarthub_exporter::Flags;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_fail_only_the_lan_collectors_within_the_deadline_and_bounded_memory() {
    let rig = rig(Profile::Vdsl, Flags::default()).await;
    // Warm up (first scrape allocates the client pool, the sandbox code, …).
    let (_, text) = rig.probe(None).await;
    assert_eq!(collector(&text, "devices"), Some(1.0), "{text}");
    let before = rss_kib();
    let mut peak = before;
    for round in 0..2 {
        for mode in HOSTILE_MODES {
            rig.hub.control("lan", mode).unwrap();
            // A 3 s scrape: deadline 2.5 s; two scripts of at most --js-timeout (1 s) each.
            let (elapsed, text) = rig.probe(Some(3.0)).await;
            assert!(elapsed < Duration::from_millis(3000), "{mode}: answered after {elapsed:?}");
            assert_eq!(value(&text, "smarthub_up"), Some(1.0), "{mode}: {text}");
            assert_eq!(collector(&text, "wan"), Some(1.0), "{mode}: {text}");
            assert_eq!(collector(&text, "devices"), Some(0.0), "{mode}: {text}");
            assert_eq!(collector(&text, "mesh"), Some(0.0), "{mode}: {text}");
            assert!(value(&text, "smarthub_wan_connected").is_some(), "{mode}: {text}");
            assert!(
                !text.contains("smarthub_lan_devices{"),
                "{mode}: no silent empty list\n{text}"
            );
            peak = peak.max(rss_kib());
            if round == 0 {
                let trace = rig.trace().await;
                let expect = match *mode {
                    "loop" => "interrupted",
                    "memory" => "memory",
                    "recursion" => "stack",
                    "syntax" => "not valid javascript",
                    "html" => "an HTML page instead of data",
                    "exception" => "sim: the page failed",
                    "missing" => "defines no known_device_list",
                    other => panic!("untested mode {other}"),
                };
                assert!(trace.contains(expect), "{mode}: expected {expect:?} in\n{trace}");
            }
        }
        // A 1 s scrape (deadline 0.5 s) with an endless script answers in time too.
        rig.hub.control("lan", "loop").unwrap();
        let (elapsed, text) = rig.probe(Some(1.0)).await;
        assert!(elapsed < Duration::from_millis(1100), "loop with a 1 s header: {elapsed:?}");
        assert_eq!(collector(&text, "wan"), Some(1.0), "{text}");
        assert_eq!(collector(&text, "devices"), Some(0.0), "{text}");
    }
    rig.hub.control("lan", "ok").unwrap();
    let (_, text) = rig.probe(None).await;
    assert_eq!(collector(&text, "devices"), Some(1.0), "the process is healthy afterwards: {text}");
    let after = rss_kib();
    eprintln!("resident memory: {before} KiB before, {peak} KiB peak, {after} KiB after");
    // One sandbox at a time with a 16 MiB limit: the process may grow by about that much.
    assert!(peak < before + 40 * 1024, "peak {peak} KiB from {before} KiB");
    // The whole test process (exporter, simulator, test harness) stays under the 64 MiB the
    // exporter alone is allowed.
    assert!(peak < 64 * 1024, "peak {peak} KiB");
}
