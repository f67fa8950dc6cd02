//! Capture files (`<exporter> capture`, read by `device-sim replay`): YAML or JSON, then the
//! checks of the reader; a file that reads must also write and read back in both formats.
//! Seeds: `crates/exporter-core/tests/fixtures/captures/*`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = exporter_core::fuzzing::capture_file(body);
});
