//! `cargo xtask demo`: the whole stack on loopback for a newcomer to look at.
//!
//! Builds the simulators and exporters, starts device-sim for all four devices (ModemManager
//! through the zbus fake on a private `dbus-daemon`), the four exporters against them and,
//! when the `prometheus` binary is installed, a Prometheus with the project's rules that
//! scrapes every exporter through `/metrics` and `/probe`. It prints every URL and runs until
//! Ctrl-C; the stack's process group is then ended by its watchdog (see `stack.rs`), also when
//! this command is killed in another way. Logs and the generated Prometheus configuration are
//! in `target/demo/`.

use std::{
    thread,
    time::{Duration, Instant},
};

use argh::FromArgs;

use crate::{
    sh,
    stack::{self, Group, Options, Stack},
};

/// start the simulators, the four exporters and (when installed) Prometheus on loopback,
/// print their URLs and run until Ctrl-C
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "demo")]
pub struct Demo {
    /// use the binaries already in target/debug instead of running cargo build first
    #[argh(switch)]
    no_build: bool,
}

/// Scrape and rule evaluation interval of the demo's Prometheus.
const INTERVAL: &str = "5s";

impl Demo {
    pub fn run(self) -> anyhow::Result<()> {
        if !self.no_build {
            stack::build()?;
        }
        let started = Instant::now();
        let dir = stack::target_dir().join("demo");
        let mut group = Group::new(&dir, "demo: stopped the simulators, exporters and Prometheus")?;

        let modem = stack::on_path("dbus-daemon");
        if !modem {
            eprintln!(
                "demo: dbus-daemon not found: skipping ModemManager (apt-get install dbus to add it)"
            );
        }
        let opts = Options {
            modem,
            linkhub_args: vec!["--cell-hop-secs".to_owned(), "120".to_owned()],
            ..Options::default()
        };
        let stack = Stack::start(&mut group, &opts)?;
        // A data plan on the router, so the "data plan used" panel has something to show.
        stack::sim_set(&stack.sim("linkhub")?.url, "GetUsageRecord.MonthlyPlan", "53687091200")?;

        let prometheus = if stack::on_path("prometheus") {
            let config =
                stack::prometheus_config(&stack, INTERVAL, &sh::root().join("grafana/rules"));
            let prom = stack::start_prometheus(&mut group, "prometheus", &config, &[])?;
            prom.wait_targets_up(stack::target_count(&stack), Duration::from_secs(40))?;
            Some(prom)
        } else {
            eprintln!(
                "demo: prometheus not found: running without it (apt-get install prometheus to add it)"
            );
            None
        };
        let ready = started.elapsed();

        println!("\nuplink-exporters demo (logs and configuration in {})\n", dir.display());
        println!("Exporters (landing pages):");
        for e in &stack.exporters {
            println!("  {:<18} {}/", e.binary, e.url);
            println!("  {:<18} {}/metrics", "", e.url);
            if e.sd_targets > 0 {
                println!("  {:<18} {}/sd (one target per device, for http_sd_configs)", "", e.url);
            }
            for t in &e.probe_targets {
                println!("  {:<18} {}/probe?target={}", "", e.url, stack::urlencode(t));
            }
        }
        println!("Simulators:");
        for s in &stack.sims {
            let hint = if s.url.starts_with("http") {
                "(control: POST /_sim/set?key=K&value=V, GET /_sim/requests)"
            } else {
                "(D-Bus address of the fake ModemManager)"
            };
            println!("  {:<18} {} {hint}", s.name, s.url);
        }
        if let Some(prom) = &prometheus {
            println!("Prometheus:");
            println!("  {:<18} {}/targets", "targets", prom.url);
            println!("  {:<18} {}/alerts", "alerts", prom.url);
            println!(
                "  {:<18} {}/graph?g0.expr={}",
                "example query",
                prom.url,
                stack::urlencode("linkhub_rsrp_dbm")
            );
        }
        println!(
            "\nReady {:.1} s after the build ({} processes in process group {}). Press Ctrl-C to stop.",
            ready.as_secs_f64(),
            stack.sims.len() + stack.exporters.len() + usize::from(prometheus.is_some()),
            group.pgid()
        );

        // Runs until Ctrl-C ends this process (the watchdog then stops the group). A child that
        // dies on its own ends the demo with an error; dropping the group stops the others.
        loop {
            thread::sleep(Duration::from_secs(1));
            let exited = group.exited();
            if !exited.is_empty() {
                anyhow::bail!(
                    "demo: {} exited; logs in {}",
                    exited.join(", "),
                    group.dir().display()
                );
            }
        }
    }
}
