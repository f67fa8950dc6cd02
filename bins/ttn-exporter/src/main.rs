//! `ttn-exporter`: parses the flags and serves (see the library for everything else).

use std::process::ExitCode;

use exporter_core::Command;
use ttn_exporter::{Flags, INFO, Startup, Ttn};

fn main() -> ExitCode {
    let cli = match exporter_core::parse_cli::<Flags>(INFO) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    exporter_core::run(cli, |flags, opts| {
        let ttn = Ttn::start(Startup {
            flags,
            given: opts.set_flags.clone(),
            config_file: opts.config_file.clone(),
            state_directory: opts.state_directory.clone(),
        })?;
        // `check` and `capture` look at every gateway in one scrape (`*`).
        Ok(if opts.command == Command::Serve { ttn } else { ttn.for_command() })
    })
}
