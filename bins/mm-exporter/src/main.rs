//! mm-exporter's entry point: flags, environment and `--config-file`, then the shared server.

use std::process::ExitCode;

use mm_exporter::config::FILE_FLAGS;

fn main() -> ExitCode {
    let cli = match exporter_core::parse_cli::<mm_exporter::Flags>(mm_exporter::INFO) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    exporter_core::run(cli, |flags, opts| {
        let explicit: Vec<String> =
            FILE_FLAGS.iter().filter(|f| opts.is_set(f)).map(|f| (*f).to_owned()).collect();
        let exporter =
            mm_exporter::ModemManager::with_config(flags, opts.config_file.clone(), explicit)?;
        for (flag, value) in exporter.described_settings() {
            opts.add_config(flag, value);
        }
        // Set up signal polling on the modems present now, before the first scrape.
        exporter.start_watcher();
        Ok(exporter)
    })
}
