//! `ttn-exporter`: parses the flags and serves (see the library for everything else).

use std::process::ExitCode;

use ttn_exporter::{Flags, INFO, Ttn};

fn main() -> ExitCode {
    let cli = match exporter_core::parse_cli::<Flags>(INFO) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    exporter_core::run(cli, |flags, _opts| Ttn::new(flags))
}
