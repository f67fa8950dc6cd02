//! `smarthub-exporter`: flags → [`smarthub_exporter::Smarthub`] → `exporter_core::run`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match exporter_core::parse_cli::<smarthub_exporter::Flags>(smarthub_exporter::INFO) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    exporter_core::run(cli, |flags, opts| {
        smarthub_exporter::Smarthub::new(flags, opts.config_file.clone())
    })
}
