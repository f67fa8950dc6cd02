//! STUB: the demo simulator (being written).

/// Runs the simulator from the command line (`device-sim demo …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("device-sim demo: not written yet ({} args)", args.len())
}
