//! STUB: the ttn simulator (being written).

/// Runs the simulator from the command line (`device-sim ttn …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("device-sim ttn: not written yet ({} args)", args.len())
}
