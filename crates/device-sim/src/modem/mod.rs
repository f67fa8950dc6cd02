//! STUB: the ModemManager simulators (being written): a zbus fake ModemManager on a private
//! bus, and a fake AT-command modem that the real ModemManager drives in its test mode.

/// Runs the simulator from the command line (`device-sim modem …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("device-sim modem: not written yet ({} args)", args.len())
}
