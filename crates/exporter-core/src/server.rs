//! The HTTP server: accept loop, routing, scrapes, graceful shutdown, systemd readiness.
//!
//! One task per connection (hyper 1 via hyper-util), bounded by a header-read timeout and a
//! maximum header size. Plain connections speak HTTP/1.1; TLS connections (from the web
//! config) also HTTP/2 when ALPN picks it. Every request is checked against the web config's
//! basic auth and gets its extra headers.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    process::ExitCode,
    str::FromStr as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
    task::JoinHandle,
};

use crate::{
    Cli, Exporter, ServeOptions, TargetError,
    coalesce::{Coalescer, Joined},
    deadline::{SCRAPE_TIMEOUT_HEADER, scrape_budget},
    options::{parse_listen_address, resolve_listen_address},
    reply::Reply,
    scrape::{Body, ProbeEnd, Rendered, Scrape},
    self_metrics::SelfMetrics,
    web_config::{Auth, WebConfig, WebConfigWatcher},
};

/// The content type of every exposition answer.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a client may take to send a request's headers (and a TLS handshake).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long graceful shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The largest request head accepted (HTTP/1 buffer, HTTP/2 header list).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Connections served at once; further ones wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 1024;
/// How long past the scrape deadline a probe may run so that the collectors' own deadline
/// errors (from [`crate::timed`]) are recorded before the probe is dropped.
const PROBE_GRACE: Duration = Duration::from_millis(25);

const TEXT: &str = "text/plain; charset=utf-8";

/// Every path the server answers (also the `handler` label of the request counter).
const ROUTES: [&str; 7] = ["/", "/metrics", "/probe", "/sd", "/-/healthy", "/-/ready", "/-/reload"];

/// A server started by [`spawn`].
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    reloader: Arc<dyn Reloader>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer").field("addrs", &self.addrs).finish_non_exhaustive()
    }
}

/// The reload of a running server, without its exporter type.
trait Reloader: Send + Sync {
    fn reload(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

impl<E: Exporter> Reloader for App<E> {
    fn reload(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(reload_config(self))
    }
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

    /// Reloads the configuration as SIGHUP and `POST /-/reload` do; `Err` is why the
    /// running configuration was kept.
    pub async fn reload(&self) -> Result<(), String> {
        self.reloader.reload().await
    }

    /// Stops accepting, lets in-flight scrapes finish (at most 5 s), then calls
    /// [`Exporter::shutdown`].
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            log::error!(err = err.to_string().as_str(); "bug: the server task failed");
        }
    }
}

/// Binds the listen addresses and serves in background tasks; returns once bound.
///
/// Dropping the returned [`RunningServer`] also stops the server (gracefully, in the
/// background).
pub async fn spawn<E: Exporter>(exporter: E, opts: ServeOptions) -> anyhow::Result<RunningServer> {
    // A bad file stops the start; the error names the file and the field.
    let web = WebConfigWatcher::new(opts.web_config_file.as_deref())?;
    let mut listeners = Vec::new();
    for addr in &opts.listen_addresses {
        listeners.extend(bind(addr).await?);
    }
    let addrs = listeners.iter().map(TcpListener::local_addr).collect::<Result<Vec<_>, _>>()?;
    let metrics = SelfMetrics::new(E::NAMESPACE, opts.info.version)?;
    let mut shown = opts.clone();
    let bound: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    shown.add_config("listening on", bound.join(", "));
    let landing = render_landing(&exporter, &shown);
    let app = Arc::new(App {
        exporter: Arc::new(exporter),
        coalescer: Arc::new(Coalescer::new(opts.max_concurrent_scrapes)),
        metrics,
        web,
        landing: Mutex::new(landing),
        shown,
        reload_lock: tokio::sync::Mutex::new(()),
        first_addr: addrs.first().map(ToString::to_string).unwrap_or_default(),
        tls_cache: Mutex::new(None),
        h1: http1_builder(),
        h2: http2_builder(),
        opts,
    });
    log::info!(
        version = app.opts.info.version,
        revision = crate::self_metrics::REVISION,
        address = format!("{addrs:?}").as_str();
        "{} listening",
        app.opts.info.binary
    );
    for (key, value) in &app.opts.effective_config {
        log::debug!(setting = key.as_str(), value = value.as_str(); "configuration");
    }
    let (stop, stop_rx) = watch::channel(false);
    let reloader: Arc<dyn Reloader> = Arc::clone(&app) as Arc<dyn Reloader>;
    let task = tokio::spawn(run_server(app, listeners, stop_rx));
    Ok(RunningServer { addrs, stop, task, reloader })
}

fn render_landing<E: Exporter>(exporter: &E, shown: &ServeOptions) -> Bytes {
    let default_target = exporter.default_target().map(|t| t.to_string());
    let targets = exporter.targets();
    Bytes::from(crate::landing::render(
        E::NAMESPACE,
        E::DESCRIPTION,
        shown,
        default_target.as_deref(),
        &targets,
    ))
}

/// One reload at a time: the exporter re-reads its files; the outcome goes to the log and
/// to `<ns>_exporter_config_last_reload_*`, and the landing page shows the new targets.
async fn reload_config<E: Exporter>(app: &App<E>) -> Result<(), String> {
    let _one_at_a_time = app.reload_lock.lock().await;
    match app.exporter.reload().await {
        Ok(()) => {
            app.metrics.reloaded(true);
            let landing = render_landing(&*app.exporter, &app.shown);
            *app.landing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = landing;
            log::info!("configuration reloaded");
            Ok(())
        }
        Err(err) => {
            app.metrics.reloaded(false);
            let why = format!("{err:#}");
            log::error!(err = why.as_str(); "configuration reload failed; keeping the running configuration");
            Err(why)
        }
    }
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully. Notifies systemd when ready.
pub async fn serve<E: Exporter>(exporter: E, opts: ServeOptions) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let server = spawn(exporter, opts).await?;
    sd_notify("READY=1");
    let which = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                log::info!(signal = "SIGHUP"; "reloading the configuration");
                sd_notify("RELOADING=1");
                let _ = server.reload().await;
                sd_notify("READY=1");
            }
        }
    };
    log::info!(signal = which; "shutting down");
    sd_notify("STOPPING=1");
    server.shutdown().await;
    Ok(())
}

/// Runs an exporter from `main`: builds a tokio runtime, calls `build` inside it (so it may
/// spawn tasks), serves until a signal arrives, and turns errors into a message on stderr
/// and a failure exit code. With `--healthcheck` it checks a running exporter instead.
pub fn run<D, E: Exporter>(
    cli: Cli<D>,
    build: impl FnOnce(D, &mut ServeOptions) -> anyhow::Result<E>,
) -> ExitCode {
    let Cli { flags, serve: mut opts } = cli;
    crate::alloc::tune();
    // One thread serves everything: a scrape is a few milliseconds of work between waits on
    // the device, and one thread saves the cross-thread wake-ups (CPU) and a second stack
    // and allocator arena (memory) of a multi-threaded runtime. Blocking work (bcrypt, the
    // Smart Hub's JavaScript) runs on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(32)
        .thread_name(opts.info.binary)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if opts.healthcheck {
        return match runtime.block_on(healthcheck(&opts)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("unhealthy: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if opts.command != crate::Command::Serve {
        let code = runtime.block_on(async move {
            match build(flags, &mut opts) {
                Ok(exporter) => crate::check::run_command(&exporter, &opts).await.emit(),
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::from(2)
                }
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        return code;
    }
    let result = runtime.block_on(async move {
        let exporter = build(flags, &mut opts)?;
        serve(exporter, opts).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /-/healthy` on the first listen address (127.0.0.1 for all interfaces), 2 s timeout.
/// A 401 counts as healthy: the server answered, it only wants credentials.
async fn healthcheck(opts: &ServeOptions) -> anyhow::Result<()> {
    let first = opts.listen_addresses.first().context("no listen address")?;
    let (host, port) = parse_listen_address(first).map_err(anyhow::Error::msg)?;
    let host = match host.as_deref().map(std::net::IpAddr::from_str) {
        None => "127.0.0.1".to_owned(),
        Some(Ok(ip)) if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
        Some(Ok(ip)) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        Some(Ok(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
        Some(Ok(ip)) => ip.to_string(),
        Some(Err(_)) => host.unwrap_or_default(),
    };
    let tls = WebConfigWatcher::new(opts.web_config_file.as_deref())?.current().tls.is_some();
    let url = format!("{}://{host}:{port}/-/healthy", if tls { "https" } else { "http" });
    crate::client::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_danger_accept_invalid_certs(true)
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the HTTP client")?;
    let resp = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    anyhow::ensure!(
        status.is_success() || status == StatusCode::UNAUTHORIZED,
        "GET {url}: status {status}"
    );
    Ok(())
}

/// Sends a state (`READY=1`, `STOPPING=1`) to systemd when `NOTIFY_SOCKET` is set
/// (`Type=notify`); abstract sockets are written `@name`. Failures are logged, not fatal.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(err) = notify_socket(&path, state) {
        log::warn!(socket = path.to_string_lossy().as_ref(), err = err.to_string().as_str(); "cannot notify systemd");
    }
}

pub(crate) fn notify_socket(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::{ffi::OsStrExt as _, net::UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    }
    sock.send_to(state.as_bytes(), std::path::Path::new(path))?;
    Ok(())
}

/// Everything the connection tasks share.
struct App<E: Exporter> {
    exporter: Arc<E>,
    opts: ServeOptions,
    coalescer: Arc<Coalescer>,
    metrics: SelfMetrics,
    web: WebConfigWatcher,
    /// The landing page, rendered at start and after every successful reload.
    landing: Mutex<Bytes>,
    /// The options the landing page shows.
    shown: ServeOptions,
    reload_lock: tokio::sync::Mutex<()>,
    /// The first bound address, for `/sd` answers to clients that send no `Host`.
    first_addr: String,
    /// The TLS config with ALPN set, for the web config it was derived from.
    tls_cache: Mutex<Option<(Arc<WebConfig>, Arc<rustls::ServerConfig>)>>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl<E: Exporter> App<E> {
    fn tls_config(&self, web: &Arc<WebConfig>) -> Option<Arc<rustls::ServerConfig>> {
        let base = web.tls.as_ref()?;
        let mut cache = self.tls_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached_web, config)) = cache.as_ref()
            && Arc::ptr_eq(cached_web, web)
        {
            return Some(Arc::clone(config));
        }
        let mut config = (**base).clone();
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols = if web.http2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
        } else if !web.http2 {
            config.alpn_protocols.retain(|p| p.as_slice() != b"h2");
        }
        let config = Arc::new(config);
        *cache = Some((Arc::clone(web), Arc::clone(&config)));
        Some(config)
    }
}

fn http1_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(100);
    builder
}

fn http2_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http2_only();
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .max_concurrent_streams(100)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Binds one listen address: `:port` binds `[::]` (dual stack) or, without IPv6,
/// `0.0.0.0`; a host name binds every address it resolves to.
async fn bind(addr: &str) -> anyhow::Result<Vec<TcpListener>> {
    let candidates = resolve_listen_address(addr).await?;
    let all_interfaces = parse_listen_address(addr).map_err(anyhow::Error::msg)?.0.is_none();
    let mut listeners = Vec::new();
    let mut last_err = None;
    for candidate in candidates {
        match TcpListener::bind(candidate).await {
            Ok(listener) => {
                listeners.push(listener);
                if all_interfaces {
                    break;
                }
            }
            Err(err) => last_err = Some((candidate, err)),
        }
    }
    match (listeners.is_empty(), last_err) {
        (false, _) => Ok(listeners),
        (true, Some((candidate, err))) => {
            Err(anyhow::anyhow!("cannot listen on {addr} ({candidate}): {err}"))
        }
        (true, None) => Err(anyhow::anyhow!("cannot listen on {addr}: no address")),
    }
}

type Accepted = (TcpStream, SocketAddr, OwnedSemaphorePermit);

async fn run_server<E: Exporter>(
    app: Arc<App<E>>,
    listeners: Vec<TcpListener>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let (conn_tx, mut conn_rx) = mpsc::channel::<Accepted>(64);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let accept_tasks: Vec<JoinHandle<()>> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(listener, conn_tx.clone(), Arc::clone(&permits))))
        .collect();
    drop(conn_tx);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = conn_rx.recv() => {
                let Some((stream, peer, permit)) = accepted else { break };
                let watcher = graceful.watcher();
                tokio::spawn(serve_connection(Arc::clone(&app), stream, peer, watcher, permit));
            }
        }
    }
    // Stop accepting: closing the listeners refuses new connections.
    for task in &accept_tasks {
        task.abort();
    }
    for task in accept_tasks {
        let _ = task.await;
    }
    drop(conn_rx);
    let open = graceful.count();
    log::info!(connections = open; "stopped accepting; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        log::warn!("requests still in flight after {}s; closing them", SHUTDOWN_GRACE.as_secs());
    }
    app.exporter.shutdown().await;
    log::info!("stopped");
}

async fn accept_loop(listener: TcpListener, tx: mpsc::Sender<Accepted>, permits: Arc<Semaphore>) {
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, peer)) => {
                if tx.send((stream, peer, permit)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // Usually EMFILE or a connection reset before accept; back off briefly.
                log::warn!(err = err.to_string().as_str(); "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection<E: Exporter>(
    app: Arc<App<E>>,
    stream: TcpStream,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let web = app.web.current();
    let service_app = Arc::clone(&app);
    let service = service_fn(move |req| {
        let app = Arc::clone(&service_app);
        async move { Ok::<_, Infallible>(handle(app, req).await) }
    });
    let result = match app.tls_config(&web) {
        None => watcher.watch(app.h1.serve_connection(TokioIo::new(stream), service)).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls = match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    log::debug!(peer = peer.to_string().as_str(), err = err.to_string().as_str(); "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    log::debug!(peer = peer.to_string().as_str(); "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            let builder = if h2 { &app.h2 } else { &app.h1 };
            watcher.watch(builder.serve_connection(TokioIo::new(tls), service)).await
        }
    };
    if let Err(err) = result {
        log::debug!(peer = peer.to_string().as_str(), err = err.to_string().as_str(); "connection ended with an error");
    }
}

/// The routes: rate limit and auth (web config), then path, then method.
async fn handle<E: Exporter>(app: Arc<App<E>>, req: Request<Incoming>) -> Response<Reply> {
    let web = app.web.current();
    let path = req.uri().path();
    let handler = if ROUTES.contains(&path) { path.to_owned() } else { "other".to_owned() };
    let head = req.method() == Method::HEAD;
    let mut resp = route(&app, &web, req).await;
    for (name, value) in &web.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    app.metrics.count_request(&handler, resp.status().as_u16());
    if head {
        let len = resp.body().len();
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        *resp.body_mut() = Reply::from(Bytes::new());
    }
    resp
}

async fn route<E: Exporter>(
    app: &Arc<App<E>>,
    web: &Arc<WebConfig>,
    req: Request<Incoming>,
) -> Response<Reply> {
    if !web.rate_limit_allows() {
        return text(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
    }
    if check_auth(web, &req).await == Auth::Denied {
        let mut resp = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        let realm = format!("Basic realm=\"{}\"", app.opts.info.binary);
        if let Ok(value) = HeaderValue::from_str(&realm) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        return resp;
    }
    let path = req.uri().path();
    if !ROUTES.contains(&path) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if path == "/-/reload" {
        if req.method() != Method::POST && req.method() != Method::PUT {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "use POST or PUT to reload\n");
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
            return resp;
        }
        return match reload_config(app).await {
            Ok(()) => text(StatusCode::OK, "configuration reloaded\n"),
            Err(why) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("reload failed, the running configuration is kept: {why}\n"),
            ),
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp =
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed; use GET or HEAD\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/" => {
            let page =
                app.landing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let mut resp = Response::new(Reply::from(page));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            resp
        }
        "/metrics" => metrics_page(app, &req).await,
        "/probe" => probe_page(app, &req).await,
        "/sd" => sd_page(app, &req, web).await,
        _ => text(StatusCode::OK, "OK\n"),
    }
}

async fn check_auth(web: &Arc<WebConfig>, req: &Request<Incoming>) -> Auth {
    if !web.auth_required() {
        return Auth::Allowed;
    }
    match req.headers().get(header::AUTHORIZATION) {
        // Without credentials no bcrypt runs: answer on the spot.
        None => web.check_auth(None),
        Some(value) => {
            let Ok(value) = value.to_str().map(str::to_owned) else { return Auth::Denied };
            let web = Arc::clone(web);
            tokio::task::spawn_blocking(move || web.check_auth(Some(&value)))
                .await
                .unwrap_or(Auth::Denied)
        }
    }
}

async fn metrics_page<E: Exporter>(app: &Arc<App<E>>, req: &Request<Incoming>) -> Response<Reply> {
    let own = app.metrics.encode();
    let rendered = match app.exporter.default_target() {
        Some(target) => {
            let deadline = Instant::now() + budget(app, req);
            match scrape(app, target, deadline).await {
                Ok(rendered) => Some(rendered),
                Err(resp) => return resp,
            }
        }
        None => None,
    };
    match rendered {
        Some(rendered) => match &rendered.body {
            Body::Text(device) => exposition(req, &[own.as_bytes(), device.as_bytes()]),
            Body::Deflated(_) => exposition_deflated(req, own.into_bytes(), rendered),
        },
        None => exposition(req, &[own.as_bytes()]),
    }
}

async fn probe_page<E: Exporter>(app: &Arc<App<E>>, req: &Request<Incoming>) -> Response<Reply> {
    let query = req.uri().query().unwrap_or("");
    let params = match parse_query(query) {
        Ok(params) => params,
        Err(why) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
    };
    let targets: Vec<&String> =
        params.iter().filter(|(k, _)| k == "target").map(|(_, v)| v).collect();
    let raw = match targets.as_slice() {
        [] => {
            return text(
                StatusCode::BAD_REQUEST,
                "missing target parameter: use /probe?target=...\n",
            );
        }
        [one] if one.trim().is_empty() => {
            return text(StatusCode::BAD_REQUEST, "empty target parameter\n");
        }
        [one] => one.as_str(),
        more => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("the target parameter is given {} times; give it once\n", more.len()),
            );
        }
    };
    let debugs: Vec<&String> =
        params.iter().filter(|(k, _)| k == "debug").map(|(_, v)| v).collect();
    let debug = match debugs.as_slice() {
        [] => false,
        [one] => match one.as_str() {
            "true" | "1" => true,
            "false" | "0" | "" => false,
            other => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid debug parameter {other:?}: use true or false\n"),
                );
            }
        },
        _ => return text(StatusCode::BAD_REQUEST, "the debug parameter is given more than once\n"),
    };
    let capture = match bool_param(&params, "capture") {
        Ok(capture) => capture,
        Err(why) => return text(StatusCode::BAD_REQUEST, &why),
    };
    let target = match app.exporter.resolve_target(raw).await {
        Ok(target) => target,
        Err(TargetError::Invalid(err)) => {
            app.metrics.count_rejected("invalid_target");
            return text(StatusCode::BAD_REQUEST, &format!("invalid target {raw:?}: {err:#}\n"));
        }
        Err(TargetError::NotAllowed(why)) => {
            app.metrics.count_rejected("not_allowed");
            log::warn!(target = raw; "probe refused: {why}");
            return text(
                StatusCode::FORBIDDEN,
                &format!(
                    "target {raw:?} is not allowed: {why}; configure it as a named target or add it to --probe-allow\n"
                ),
            );
        }
    };
    let deadline = Instant::now() + budget(app, req);
    if capture {
        return capture_page(app, target, deadline).await;
    }
    match scrape(app, target, deadline).await {
        Ok(rendered) if debug => {
            text(StatusCode::OK, &format!("{}\nmetrics:\n{}", rendered.trace, rendered.text()))
        }
        Ok(rendered) => match &rendered.body {
            Body::Text(device) => exposition(req, &[device.as_bytes()]),
            Body::Deflated(_) => exposition_deflated(req, Vec::new(), rendered),
        },
        Err(resp) => resp,
    }
}

/// A `true`/`false` query parameter given at most once (absent: false).
fn bool_param(params: &[(String, String)], name: &str) -> Result<bool, String> {
    let values: Vec<&String> = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect();
    match values.as_slice() {
        [] => Ok(false),
        [one] => match one.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            other => Err(format!("invalid {name} parameter {other:?}: use true or false\n")),
        },
        _ => Err(format!("the {name} parameter is given more than once\n")),
    }
}

/// `/probe?target=…&capture=true`: a scrape of its own (not shared with other requests),
/// recorded and redacted, answered as the YAML capture file. It takes a slot of
/// `--max-concurrent-scrapes` like any scrape.
async fn capture_page<E: Exporter>(
    app: &Arc<App<E>>,
    target: E::Target,
    deadline: Instant,
) -> Response<Reply> {
    let key = format!("capture {target}");
    let exporter = Arc::clone(&app.exporter);
    let info = app.opts.info;
    let slot: Arc<Mutex<Option<crate::capture::Capture>>> = Arc::new(Mutex::new(None));
    let filled = Arc::clone(&slot);
    let joined = app
        .coalescer
        .run(key, deadline, move || async move {
            let (rendered, file) =
                crate::check::capture_once(&*exporter, info, &target, deadline).await;
            *filled.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(file);
            rendered
        })
        .await;
    if let Joined::Busy = joined {
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes in flight (--max-concurrent-scrapes); retry later\n",
        );
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    let file = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let Some(file) = file else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the capture did not finish (the scrape deadline passed or another capture of this \
             target was running); retry\n",
        );
    };
    match file.to_text(crate::capture::CaptureFormat::Yaml) {
        Ok(body) => {
            let mut resp = Response::new(Reply::from(Bytes::from(body)));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            resp
        }
        Err(err) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot write the capture: {err:#}\n"))
        }
    }
}

/// `GET /sd`: Prometheus HTTP service discovery, one group per device, each scraped through
/// this exporter's `/probe` with its own `instance` (the target) and labels.
async fn sd_page<E: Exporter>(
    app: &Arc<App<E>>,
    req: &Request<Incoming>,
    web: &Arc<WebConfig>,
) -> Response<Reply> {
    let found = tokio::time::timeout(app.opts.scrape_timeout, app.exporter.sd_targets()).await;
    let targets = match found {
        Ok(Ok(targets)) => targets,
        Ok(Err(err)) => {
            log::warn!(err = format!("{err:#}").as_str(); "service discovery failed");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot list the targets now: {err:#}\n"),
            );
        }
        Err(_) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot list the targets now: timed out (--scrape-timeout)\n",
            );
        }
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .filter(|h| !h.is_empty() && h.len() <= 300 && !h.chars().any(char::is_control))
        .unwrap_or_else(|| app.first_addr.clone());
    let groups: Vec<serde_json::Value> = targets
        .into_iter()
        .map(|t| {
            let mut labels = serde_json::Map::new();
            for (name, value) in t.labels {
                labels.insert(name, serde_json::Value::String(value));
            }
            labels.insert("__metrics_path__".to_owned(), "/probe".into());
            labels.insert("__param_target".to_owned(), t.target.clone().into());
            if web.tls.is_some() {
                labels.insert("__scheme__".to_owned(), "https".into());
            }
            labels.insert("instance".to_owned(), t.target.into());
            serde_json::json!({ "targets": [host.clone()], "labels": labels })
        })
        .collect();
    let body = serde_json::Value::Array(groups).to_string();
    let mut resp = Response::new(Reply::from(Bytes::from(body)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn budget<E: Exporter>(app: &App<E>, req: &Request<Incoming>) -> Duration {
    let header = req.headers().get(SCRAPE_TIMEOUT_HEADER).map(|v| v.to_str().unwrap_or("invalid"));
    scrape_budget(header, app.opts.timeout_offset, app.opts.scrape_timeout)
}

/// One scrape of `target`, shared with concurrent requests for the same target.
async fn scrape<E: Exporter>(
    app: &Arc<App<E>>,
    target: E::Target,
    deadline: Instant,
) -> Result<Arc<Rendered>, Response<Reply>> {
    let start = Instant::now();
    let key = target.to_string();
    let exporter = Arc::clone(&app.exporter);
    let joined = app
        .coalescer
        .run(key.clone(), deadline, move || run_probe(exporter, target, deadline))
        .await;
    match joined {
        Joined::Done { rendered, leader } => {
            if !leader {
                app.metrics.count_coalesced();
            }
            Ok(rendered)
        }
        Joined::TimedOut => Ok(Arc::new(
            Scrape::new(E::NAMESPACE, key, deadline)
                .finish(ProbeEnd::WaitTimedOut, start.elapsed()),
        )),
        Joined::Busy => {
            log::warn!(target = key.as_str(), limit = app.opts.max_concurrent_scrapes; "too many scrapes in flight");
            let mut resp = text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "too many scrapes in flight (--max-concurrent-scrapes {}); retry later\n",
                    app.opts.max_concurrent_scrapes
                ),
            );
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(resp)
        }
        Joined::Bug => Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the probe crashed (a bug in the exporter); see its log\n",
        )),
    }
}

/// The probe task: runs [`Exporter::probe`] until the deadline, keeps partial results.
async fn run_probe<E: Exporter>(
    exporter: Arc<E>,
    target: E::Target,
    deadline: Instant,
) -> Rendered {
    let start = Instant::now();
    let mut out = Scrape::new(E::NAMESPACE, target.to_string(), deadline);
    let probe = exporter.probe(&target, &mut out);
    let end = match tokio::time::timeout_at((deadline + PROBE_GRACE).into(), probe).await {
        Ok(Ok(())) => ProbeEnd::Ok,
        Ok(Err(err)) => ProbeEnd::Failed(err),
        Err(_) => ProbeEnd::DeadlineExceeded,
    };
    out.finish(end, start.elapsed())
}

fn text(status: StatusCode, body: &str) -> Response<Reply> {
    let mut resp = Response::new(Reply::from(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    resp
}

/// An exposition answer of `parts` back to back: exact content type, gzip when the client
/// accepts it (compressed straight from the parts, without joining them first).
fn exposition(req: &Request<Incoming>, parts: &[&[u8]]) -> Response<Reply> {
    let compressed = if wants_gzip(req) { crate::gzip::compress(parts) } else { None };
    match compressed {
        Some(data) => exposition_response(Reply::from(data), true),
        None => exposition_response(Reply::from(parts.concat()), false),
    }
}

/// An exposition answer of `prefix` followed by a large scrape compressed as it was written:
/// gzip from the compressed text as it is; plain text, decompressed piece by piece as it is
/// sent, only for a client that does not accept gzip.
fn exposition_deflated(
    req: &Request<Incoming>,
    prefix: Vec<u8>,
    rendered: Arc<Rendered>,
) -> Response<Reply> {
    if wants_gzip(req)
        && let Body::Deflated(device) = &rendered.body
        && let Some(data) = crate::gzip::with_prefix(&prefix, device)
    {
        return exposition_response(Reply::from(data), true);
    }
    exposition_response(Reply::inflating(Bytes::from(prefix), rendered), false)
}

fn wants_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip)
}

fn exposition_response(body: Reply, gzipped: bool) -> Response<Reply> {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(EXPOSITION_CONTENT_TYPE));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// Whether one `Accept-Encoding` header value accepts gzip (`gzip`, `x-gzip` or `*` with a
/// q-value above 0; an explicit `gzip;q=0` wins over `*`).
pub(crate) fn accepts_gzip(value: &str) -> bool {
    let mut explicit = None;
    let mut star = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let mut q = 1.0f64;
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            explicit = Some(q);
        } else if coding == "*" {
            star = Some(q);
        }
    }
    explicit.or(star).is_some_and(|q| q > 0.0)
}

/// Splits a query string into percent-decoded pairs (`+` is a space).
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(pairs)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("malformed percent-encoding in query: {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("query parameter is not UTF-8: {s:?}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(accepts_gzip("br, x-gzip"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("gzip; q=0.000, *"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("*;q=0"));
        assert!(!accepts_gzip(""));
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("target=http%3A%2F%2Fa%2Fb+c&debug=true&&x").unwrap(),
            vec![
                ("target".to_owned(), "http://a/b c".to_owned()),
                ("debug".to_owned(), "true".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert!(parse_query("target=%zz").is_err());
        assert!(parse_query("target=%4").is_err());
        assert!(parse_query("target=%ff").is_err());
    }

    #[test]
    fn notify_socket_sends_datagrams() {
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        notify_socket(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt as _;
            let name = format!("ec-notify-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let server = UnixDatagram::bind_addr(&addr).unwrap();
            notify_socket(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
            let n = server.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"STOPPING=1");
        }
    }
}
