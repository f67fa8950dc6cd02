//! A trivial device for exporter-core's own tests and the demo.
//!
//! `GET /status` answers `{"temperature_celsius": 21.5, "uptime_seconds": 1234, "ok": true}`.
//! Knobs (`POST /_sim/set?key=K&value=V` or [`HttpDevice::control`]):
//! `temperature` (a number, `null` for a JSON null, or `absent` to leave the field out),
//! `uptime` (seconds) and `ok` (`true`/`false`).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use argh::FromArgs;

use crate::http::{Ctx, Fault, HttpDevice, Request, Response};

/// The demo device's state.
#[derive(Debug)]
pub struct Demo {
    state: Mutex<State>,
}

#[derive(Debug, Clone)]
struct State {
    /// `None`: the field is left out of the answer.
    temperature: Option<serde_json::Value>,
    uptime_seconds: u64,
    ok: bool,
}

impl Default for Demo {
    fn default() -> Demo {
        Demo {
            state: Mutex::new(State {
                temperature: Some(serde_json::Value::from(21.5)),
                uptime_seconds: 1234,
                ok: true,
            }),
        }
    }
}

impl Demo {
    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl HttpDevice for Demo {
    fn handle(&self, req: &Request, _ctx: &Ctx) -> Response {
        if req.path != "/status" {
            return Response::json(404, &serde_json::json!({ "error": "not found" }));
        }
        if req.method != "GET" && req.method != "HEAD" {
            return Response::json(405, &serde_json::json!({ "error": "method not allowed" }))
                .with_header("allow", "GET, HEAD");
        }
        let state = self.state();
        let mut body = serde_json::Map::new();
        if let Some(temperature) = state.temperature {
            body.insert("temperature_celsius".to_owned(), temperature);
        }
        body.insert("uptime_seconds".to_owned(), serde_json::Value::from(state.uptime_seconds));
        body.insert("ok".to_owned(), serde_json::Value::from(state.ok));
        Response::json(200, &serde_json::Value::Object(body))
    }

    fn control(&self, key: &str, value: &str) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match key {
            "temperature" => {
                state.temperature = match value {
                    "absent" => None,
                    "null" => Some(serde_json::Value::Null),
                    number => {
                        let parsed: f64 = number
                            .parse()
                            .ok()
                            .filter(|t: &f64| t.is_finite())
                            .ok_or_else(|| {
                                format!(
                                    "temperature: expected a number, null or absent, got {value:?}"
                                )
                            })?;
                        Some(serde_json::Value::from(parsed))
                    }
                };
            }
            "uptime" => {
                state.uptime_seconds = value
                    .parse()
                    .map_err(|_| format!("uptime: expected whole seconds, got {value:?}"))?;
            }
            "ok" => {
                state.ok = value
                    .parse()
                    .map_err(|_| format!("ok: expected true or false, got {value:?}"))?;
            }
            _ => {
                return Err(format!("unknown knob {key}={value} (known: temperature, uptime, ok)"));
            }
        }
        Ok(())
    }
}

/// `device-sim demo`: a trivial device answering `GET /status`.
#[derive(FromArgs, Debug)]
struct Args {
    /// address to listen on, loopback only (default 127.0.0.1:0, a free port)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// milliseconds to wait before every answer (default 0)
    #[argh(option, default = "0")]
    latency_ms: u64,
    /// fault to inject: refuse, hang, status:CODE, garbage, truncated, reset-mid-body, drip,
    /// endless, oversized, invalid-utf8 or wrong-content-type
    #[argh(option)]
    fault: Option<Fault>,
    /// starting temperature in degrees Celsius (default 21.5)
    #[argh(option)]
    temperature: Option<f64>,
}

/// Runs the simulator from the command line (`device-sim demo …`).
pub async fn main(args: &[&str]) -> anyhow::Result<()> {
    let Some(args) = crate::http::parse_args::<Args>("device-sim demo", args)? else {
        return Ok(());
    };
    let demo = Demo::default();
    if let Some(temperature) = args.temperature {
        demo.control("temperature", &temperature.to_string()).map_err(anyhow::Error::msg)?;
    }
    crate::http::run_cli(
        Arc::new(demo),
        args.listen,
        Duration::from_millis(args.latency_ms),
        args.fault,
    )
    .await
}
