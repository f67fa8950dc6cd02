//! Project automation, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! Every command is a plain Rust function in its own module, so CI and developers run the same
//! code. Repository-wide checks ("tidy") are an ordinary test in `xtask/tests/tidy.rs`, so plain
//! `cargo test` finds what CI finds.

mod bench;
mod ci;
mod demo;
mod dist;
mod e2e;
mod fuzz;
mod grafana;
mod load;
mod sh;
mod soak;
mod stack;

use std::process::ExitCode;

use argh::FromArgs;

/// Project automation for uplink-exporters.
#[derive(FromArgs, Debug)]
struct Xtask {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Ci(ci::Ci),
    Demo(demo::Demo),
    E2e(e2e::E2e),
    Dist(dist::Dist),
    Bench(bench::Bench),
    Fuzz(fuzz::Fuzz),
    Soak(soak::Soak),
}

fn main() -> ExitCode {
    let flags: Xtask = argh::from_env();
    let result = match flags.command {
        Command::Ci(cmd) => cmd.run(),
        Command::Demo(cmd) => cmd.run(),
        Command::E2e(cmd) => cmd.run(),
        Command::Dist(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Fuzz(cmd) => cmd.run(),
        Command::Soak(cmd) => cmd.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
