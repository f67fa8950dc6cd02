//! `linkhub-exporter`: parses the flags and serves (see the library for everything else).

use std::process::ExitCode;

use linkhub_exporter::{Flags, INFO, Linkhub};

fn main() -> ExitCode {
    let cli = match exporter_core::parse_cli::<Flags>(INFO) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    exporter_core::run(cli, |flags, opts| {
        let exporter = Linkhub::new(flags)?;
        if exporter.login_configured() {
            opts.add_config("password", "<secret> (login enabled)");
        }
        Ok(exporter)
    })
}
