//! `linkhub-exporter`: parses the flags (and the earlier exporter's environment, see
//! [`linkhub_exporter::legacy`]) and serves (see the library for everything else).

use std::process::ExitCode;

use linkhub_exporter::{Flags, INFO, Linkhub, legacy};

fn main() -> ExitCode {
    let cli = match exporter_core::parse_cli_with_env::<Flags>(INFO, legacy::rewrite_env) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    exporter_core::run(cli, |flags, opts| {
        let exporter = Linkhub::with_options(flags, opts)?;
        for (key, value) in exporter.describe() {
            opts.add_config(key, value);
        }
        Ok(exporter)
    })
}
