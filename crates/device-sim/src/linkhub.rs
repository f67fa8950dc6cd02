//! STUB: the linkhub simulator (being written).

/// Runs the simulator from the command line (`device-sim linkhub …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("device-sim linkhub: not written yet ({} args)", args.len())
}
