//! `device-sim <device> --listen 127.0.0.1:0 [knobs]`: runs one simulator and prints the
//! address it bound, until interrupted; `device-sim replay FILE` serves a capture file.

use std::process::ExitCode;

const USAGE: &str = "usage: device-sim <demo|linkhub|ttn|smarthub|modem> [--listen 127.0.0.1:0] [knobs] (--help for a device's knobs)\n       device-sim replay FILE [--listen 127.0.0.1:0] (serve a capture file as the device; a D-Bus capture prints the bus address for --bus-address)";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((device, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let result = match device.as_str() {
        "demo" => device_sim::demo::main(&rest).await,
        "linkhub" => device_sim::linkhub::main(&rest).await,
        "ttn" => device_sim::ttn::main(&rest).await,
        "smarthub" => device_sim::smarthub::main(&rest).await,
        "modem" => device_sim::modem::main(&rest).await,
        "replay" => device_sim::replay::main(&rest).await,
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("device-sim: unknown device {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("device-sim: {err:#}");
            ExitCode::FAILURE
        }
    }
}
