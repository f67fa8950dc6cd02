//! mm-exporter's entry point: flags and environment, then the shared server.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match exporter_core::parse_cli::<mm_exporter::Flags>(mm_exporter::INFO) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    exporter_core::run(cli, |flags, _opts| {
        let exporter = mm_exporter::ModemManager::new(flags);
        // Set up signal polling on the modems present now, before the first scrape.
        exporter.start_watcher();
        Ok(exporter)
    })
}
