//! device-sim: simulators of the four devices the uplink exporters talk to, for tests, the
//! demo and benchmarks. They stand in for the hardware only, and model the real devices'
//! quirks from the protocol notes (string values, invalid markers, lockouts, rate limits).
//!
//! Every simulator listens on loopback only. HTTP devices share the [`http`] framework:
//! per-endpoint request counters readable by tests, fault knobs (latency, refuse, hang, a
//! status, garbage, truncated, reset, dripping, endless, oversized, invalid UTF-8 and
//! wrong-content-type bodies) and a control API under `/_sim/`.

pub mod busy;
pub mod demo;
pub mod http;
pub mod linkhub;
pub mod modem;
pub mod recorder;
pub mod replay;
pub mod smarthub;
pub mod ttn;
