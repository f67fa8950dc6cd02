//! The HTTP server: accept loop, routing, graceful shutdown.
//!
//! STUB: signatures are final, bodies are being written.

use std::net::SocketAddr;

use crate::{Exporter, ServeOptions};

/// A server started by [`spawn`].
#[derive(Debug)]
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
}

impl RunningServer {
    /// The first bound address (tests listen on `127.0.0.1:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every bound address.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting, lets in-flight scrapes finish (at most 5 s), then calls
    /// [`Exporter::shutdown`].
    pub async fn shutdown(self) {}
}

/// Binds the listen addresses and serves in background tasks; returns once bound.
pub async fn spawn<E: Exporter>(exporter: E, opts: ServeOptions) -> anyhow::Result<RunningServer> {
    let _ = (exporter, opts);
    unimplemented!("spawn")
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully. Notifies systemd when ready.
pub async fn serve<E: Exporter>(exporter: E, opts: ServeOptions) -> anyhow::Result<()> {
    let _ = (exporter, opts);
    unimplemented!("serve")
}
