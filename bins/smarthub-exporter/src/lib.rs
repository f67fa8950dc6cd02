//! smarthub-exporter: a Prometheus exporter for the BT Smart Hub 2 (`HomeHub6DX`).
//!
//! Per scrape it reads, without a login:
//! - `GET /nonAuth/wan_conn.xml` (collector `wan`): the live WAN slot chosen by
//!   `wan_active_idx`, its session, link, bytes and rates, and the DSL line;
//! - `GET /cgi/cgi_basicMyDevice.js` (collector `devices`): the LAN device list and per-device
//!   byte counters;
//! - `GET /cgi/cgi_owl.js` (collector `mesh`): the hub, its discs and the stations they serve.
//!
//! The two scripts are evaluated in a sandboxed QuickJS ([`js`]); `--no-lan-devices` turns
//! both pages, and all JavaScript, off. Module map: [`client`] fetches, [`api`] parses,
//! [`metrics`] renders.

pub mod api;
pub mod client;
pub mod js;
pub mod metrics;

use std::{fmt, str::FromStr, sync::Arc, time::Duration, time::Instant};

use anyhow::{Context as _, bail};
use argh::{ArgsInfo, FromArgs};
use exporter_core::{Exporter, ExporterInfo, Scrape, timed};

use crate::{
    api::{DEVICE_FIELDS, NODE_FIELDS, RATE_FIELDS, STATION_FIELDS},
    client::{HubClient, HubUrl},
    js::{ByteSize, Extract, JsLimits},
};

/// What the core needs to know about this binary.
pub const INFO: ExporterInfo = ExporterInfo {
    binary: "smarthub-exporter",
    env_prefix: "SMARTHUB",
    version: env!("CARGO_PKG_VERSION"),
    default_port: 9101,
};

/// The hub's address when neither `--target`, `SMARTHUB_TARGET` nor `SMARTHUB_HOST` is set.
pub const DEFAULT_TARGET: &str = "http://192.168.1.254";

/// WAN status page.
pub const WAN_PATH: &str = "/nonAuth/wan_conn.xml";
/// Device list script.
pub const DEVICES_PATH: &str = "/cgi/cgi_basicMyDevice.js";
/// Mesh (discs and stations) script.
pub const MESH_PATH: &str = "/cgi/cgi_owl.js";

/// What is read from `cgi_basicMyDevice.js`.
pub const DEVICE_EXTRACTS: &[Extract] = &[
    Extract { global: "known_device_list", fields: DEVICE_FIELDS },
    Extract { global: "rate", fields: RATE_FIELDS },
];
/// What is read from `cgi_owl.js`.
pub const MESH_EXTRACTS: &[Extract] = &[
    Extract { global: "owl_tplg", fields: NODE_FIELDS },
    Extract { global: "owl_station", fields: STATION_FIELDS },
];

/// Exports WAN, DSL line, LAN device and mesh metrics of a BT Smart Hub 2.
#[derive(FromArgs, ArgsInfo, Debug)]
pub struct Flags {
    /// base URL of the hub, e.g. http://192.168.1.254 (the default); when neither this nor
    /// SMARTHUB_TARGET is set, SMARTHUB_HOST of the earlier Go exporter is read (a bare host
    /// or IP there means http://HOST)
    #[argh(option)]
    pub target: Option<HubUrl>,

    /// do not fetch the device list and mesh pages, and so run no JavaScript at all
    #[argh(switch)]
    pub no_lan_devices: bool,

    /// memory limit of the sandboxed JavaScript engine per evaluation, e.g. 16MiB (the
    /// default), 512KiB, 32MB or a plain number of bytes; at least 1MiB
    #[argh(option, default = "JsLimits::default().memory")]
    pub js_memory_limit: ByteSize,

    /// time limit of one JavaScript evaluation, e.g. 1s (the default) or 500ms; an evaluation
    /// never runs past the scrape deadline either
    #[argh(option, default = "Timeout(JsLimits::default().timeout)")]
    pub js_timeout: Timeout,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            target: None,
            no_lan_devices: false,
            js_memory_limit: JsLimits::default().memory,
            js_timeout: Timeout(JsLimits::default().timeout),
        }
    }
}

/// The exporter: one hub by default (`--target`), any hub through `/probe?target=`.
#[derive(Debug)]
pub struct Smarthub {
    client: HubClient,
    target: HubUrl,
    lan_devices: bool,
    js: JsLimits,
    /// One JavaScript evaluation at a time, process-wide (see [`js::new_gate`]).
    js_gate: Arc<tokio::sync::Semaphore>,
}

impl Smarthub {
    /// Builds the exporter from its flags; reads `SMARTHUB_HOST` as described on `--target`.
    pub fn new(flags: Flags) -> anyhow::Result<Smarthub> {
        let http = exporter_core::client::http_client(&INFO).context("build the HTTP client")?;
        let host = std::env::var("SMARTHUB_HOST").ok();
        Smarthub::with_client(flags, host.as_deref(), http)
    }

    /// Builds the exporter with a given HTTP client and `SMARTHUB_HOST` value (for tests).
    pub fn with_client(
        flags: Flags,
        smarthub_host: Option<&str>,
        http: reqwest::Client,
    ) -> anyhow::Result<Smarthub> {
        Ok(Smarthub {
            client: HubClient::new(http),
            target: resolve_target(flags.target, smarthub_host)?,
            lan_devices: !flags.no_lan_devices,
            js: JsLimits { memory: flags.js_memory_limit, timeout: flags.js_timeout.0 },
            js_gate: js::new_gate(),
        })
    }

    async fn wan(&self, hub: &HubUrl, deadline: Instant) -> anyhow::Result<api::WanConn> {
        let body =
            self.client.get(hub, WAN_PATH, deadline).await.context("GET /nonAuth/wan_conn.xml")?;
        api::parse_wan_xml(&body).context("parse wan_conn.xml")
    }

    async fn devices(&self, hub: &HubUrl, deadline: Instant) -> anyhow::Result<api::DeviceList> {
        let body = self
            .client
            .get(hub, DEVICES_PATH, deadline)
            .await
            .context("GET /cgi/cgi_basicMyDevice.js")?;
        let limits = self.js;
        let js_deadline = js_deadline(deadline);
        self.sandboxed(move || devices_from_js(&body, limits, js_deadline)).await
    }

    async fn mesh(&self, hub: &HubUrl, deadline: Instant) -> anyhow::Result<api::Mesh> {
        let body =
            self.client.get(hub, MESH_PATH, deadline).await.context("GET /cgi/cgi_owl.js")?;
        let limits = self.js;
        let js_deadline = js_deadline(deadline);
        self.sandboxed(move || mesh_from_js(&body, limits, js_deadline)).await
    }

    async fn sandboxed<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let permit =
            self.js_gate.clone().acquire_owned().await.context("javascript gate closed")?;
        js::run_blocking(permit, work).await
    }
}

/// Evaluates `cgi_basicMyDevice.js` in the sandbox and reads the device list (blocking).
pub fn devices_from_js(
    body: &str,
    limits: JsLimits,
    deadline: Instant,
) -> anyhow::Result<api::DeviceList> {
    let lists = js::evaluate(body, DEVICE_EXTRACTS, limits, deadline)
        .context("run cgi_basicMyDevice.js")?;
    match lists.as_slice() {
        [devices, rates] => api::device_list(devices, rates).context("read cgi_basicMyDevice.js"),
        _ => bail!("cgi_basicMyDevice.js: unexpected extraction result"),
    }
}

/// Evaluates `cgi_owl.js` in the sandbox and reads the mesh (blocking).
pub fn mesh_from_js(body: &str, limits: JsLimits, deadline: Instant) -> anyhow::Result<api::Mesh> {
    let lists = js::evaluate(body, MESH_EXTRACTS, limits, deadline).context("run cgi_owl.js")?;
    match lists.as_slice() {
        [nodes, stations] => api::mesh(nodes, stations).context("read cgi_owl.js"),
        _ => bail!("cgi_owl.js: unexpected extraction result"),
    }
}

/// The interrupt instant for a scrape deadline: a moment earlier, to report the reason.
fn js_deadline(deadline: Instant) -> Instant {
    deadline.checked_sub(Duration::from_millis(25)).unwrap_or(deadline)
}

impl Exporter for Smarthub {
    const NAMESPACE: &'static str = "smarthub";
    const DESCRIPTION: &'static str =
        "Prometheus exporter for the BT Smart Hub 2: WAN, DSL line, LAN devices and mesh discs";
    type Target = HubUrl;

    fn default_target(&self) -> Option<HubUrl> {
        Some(self.target.clone())
    }

    async fn probe(&self, target: &HubUrl, out: &mut Scrape) -> anyhow::Result<()> {
        let d = out.deadline();
        if self.lan_devices {
            let (wan, devices, mesh) = tokio::join!(
                timed("wan", d, self.wan(target, d)),
                timed("devices", d, self.devices(target, d)),
                timed("mesh", d, self.mesh(target, d)),
            );
            if let Some(w) = out.record(wan) {
                note_slot(out, &w);
                metrics::wan(out, &w);
            }
            if let Some(list) = out.record(devices) {
                metrics::devices(out, &list);
            }
            if let Some(m) = out.record(mesh) {
                metrics::mesh(out, &m);
            }
        } else {
            let wan = timed("wan", d, self.wan(target, d)).await;
            if let Some(w) = out.record(wan) {
                note_slot(out, &w);
                metrics::wan(out, &w);
            }
        }
        Ok(())
    }
}

fn note_slot(out: &mut Scrape, w: &api::WanConn) {
    let source = if w.slot_from_hub {
        "wan_active_idx"
    } else {
        "the fallback rule (no valid wan_active_idx)"
    };
    out.note(format!("live WAN slot {} ({}) from {source}", w.slot, metrics::slot_type(w.slot)));
}

/// `--target` (flag or `SMARTHUB_TARGET`), else `SMARTHUB_HOST`, else the default.
pub fn resolve_target(flag: Option<HubUrl>, smarthub_host: Option<&str>) -> anyhow::Result<HubUrl> {
    if let Some(t) = flag {
        return Ok(t);
    }
    if let Some(host) = smarthub_host.filter(|h| !h.trim().is_empty()) {
        return host.parse().context("SMARTHUB_HOST");
    }
    DEFAULT_TARGET.parse()
}

/// A duration given as `1s`, `500ms`, `1.5s`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl FromStr for Timeout {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Timeout> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 =
            num.parse().with_context(|| format!("invalid duration {s:?} (e.g. 1s or 500ms)"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "" => bail!("duration {s:?} needs a unit (ms, s or m)"),
            other => bail!("invalid duration unit {other:?} in {s:?} (use ms, s or m)"),
        };
        if !(0.01..=600.0).contains(&secs) {
            bail!("duration {s:?} must be between 10ms and 10m");
        }
        Ok(Timeout(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) { write!(f, "{}s", ms / 1000) } else { write!(f, "{ms}ms") }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn target_resolution_order() {
        let flag: HubUrl = "http://10.0.0.1".parse().unwrap();
        assert_eq!(resolve_target(Some(flag.clone()), Some("10.0.0.2")).unwrap(), flag);
        assert_eq!(resolve_target(None, Some("10.0.0.2")).unwrap().as_str(), "http://10.0.0.2");
        assert_eq!(resolve_target(None, None).unwrap().as_str(), DEFAULT_TARGET);
        assert_eq!(resolve_target(None, Some(" ")).unwrap().as_str(), DEFAULT_TARGET);
        let err = format!("{:#}", resolve_target(None, Some("ftp://x")).unwrap_err());
        assert!(err.contains("SMARTHUB_HOST"), "{err}");
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!("1s".parse::<Timeout>().unwrap().0, Duration::from_secs(1));
        assert_eq!("500ms".parse::<Timeout>().unwrap().0, Duration::from_millis(500));
        assert_eq!("1.5s".parse::<Timeout>().unwrap().0, Duration::from_millis(1500));
        assert!("1".parse::<Timeout>().is_err());
        assert!("0s".parse::<Timeout>().is_err());
        assert!("1h".parse::<Timeout>().is_err());
        assert_eq!(Timeout(Duration::from_millis(500)).to_string(), "500ms");
    }

    #[test]
    fn flags_parse_with_defaults_and_values() {
        let f = Flags::from_args(&["smarthub-exporter"], &[]).unwrap();
        assert_eq!(f.js_memory_limit, ByteSize(16 << 20));
        assert_eq!(f.js_timeout.0, Duration::from_secs(1));
        assert!(f.target.is_none() && !f.no_lan_devices);
        let f = Flags::from_args(
            &["smarthub-exporter"],
            &[
                "--target",
                "127.0.0.1:8080",
                "--no-lan-devices",
                "--js-memory-limit",
                "8MiB",
                "--js-timeout",
                "250ms",
            ],
        )
        .unwrap();
        assert_eq!(f.target.unwrap().as_str(), "http://127.0.0.1:8080");
        assert!(f.no_lan_devices);
        assert_eq!(f.js_memory_limit, ByteSize(8 << 20));
        assert_eq!(f.js_timeout.0, Duration::from_millis(250));
        assert!(Flags::from_args(&["x"], &["--js-memory-limit", "1KiB"]).is_err());
    }
}
