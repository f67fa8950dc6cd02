//! The `--web-config-file` (exporter-toolkit format): YAML with Go's scalar rules, then the
//! validation of TLS, basic auth, headers and rate limit. Relative certificate paths resolve
//! in an empty scratch directory. Seeds: `crates/exporter-core/tests/fixtures/**/*.yml`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = exporter_core::fuzzing::web_config(body);
});
