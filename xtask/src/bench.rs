//! `cargo xtask bench`: measures the exporters against device-sim (issue 9; not written yet).

use argh::FromArgs;

/// measures the exporters against device-sim (not implemented yet, issue 9)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
pub struct Bench {}

impl Bench {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("cargo xtask bench: not implemented yet (issue 9)")
    }
}
