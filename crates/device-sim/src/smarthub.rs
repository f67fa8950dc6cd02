//! STUB: the smarthub simulator (being written).

/// Runs the simulator from the command line (`device-sim smarthub …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("device-sim smarthub: not written yet ({} args)", args.len())
}
