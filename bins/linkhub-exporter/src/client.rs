//! The LinkHub JSON-RPC client: one `POST /jrd/webapi` per call, the verification-key and
//! token headers, and the login session of each target.
//!
//! Architecture invariants:
//! - A password is used only with the [`Access`] of a configured router ([`crate::config`]
//!   decides which address that is); a probe of any other address has no password, never
//!   sends `Login` and reads only what needs none. Redirects are never followed (the core's
//!   client), so a router cannot forward the login elsewhere.
//! - One probe per device at a time: every call goes through a [`Conn`], which holds the
//!   target's [`Device`] lock for the whole probe. Within a probe, the calls after the login
//!   ([`Conn::fetch_all`]) go out at most `--device-concurrency` at once; the login itself,
//!   and the retry of what needed it, are settled one call at a time first.
//! - Any rejected login starts `--login-backoff` for that router (by address), whatever the
//!   firmware says about attempts left, and no further `Login` is sent before it ends; a
//!   password the router rejected is not tried again while the device has
//!   [`LOGIN_ATTEMPTS_KEPT`] or fewer attempts left either, so the exporter cannot lock the
//!   router (it locks after 5 wrong passwords until rebooted).
//!   The login bookkeeping of a router with a password is never evicted, and with
//!   `--state-directory` the backoff survives a restart ([`BACKOFF_FILE`], no secrets).
//! - Another administrator's session (`010102`) is never forced out (no `ForceLogin`).
//! - The only state kept between scrapes is the login session and its bookkeeping, and the
//!   static facts of [`crate::statics`] (with their TTL); device readings are fetched fresh
//!   on every scrape.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::PathBuf,
    sync::{Arc, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use exporter_core::{Secret, Timed, capture};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};

use crate::{
    api::{ErrorCode, LoginResult, LoginState},
    crypto,
    statics::Statics,
    target::{Address, Target},
};

/// The `_TclRequestVerificationKey` every G1 web UI hard-codes (public).
pub const DEFAULT_VERIFICATION_KEY: &str =
    "KSDHSDFOGQ5WERYTUIQWERTYUISDFG1HJZXCVCXBN2GDSMNDHKVKFsVBNf";

/// Login attempts the exporter leaves to a human: after a rejected password it does not
/// try again once the device reports this many attempts left (or fewer).
pub const LOGIN_ATTEMPTS_KEPT: i64 = 2;

/// Largest response body accepted (device answers are a few KiB).
pub const BODY_LIMIT: usize = 256 << 10;

/// The state file of the login backoff in `--state-directory` (per router address: the
/// login state and until when no login may be tried; never a secret).
pub const BACKOFF_FILE: &str = "linkhub-login-backoff.json";

/// Routers without a password whose per-device lock is kept (ad-hoc probes); beyond it the
/// least used are forgotten, which loses nothing but the lock.
const ADHOC_CAPACITY: u64 = 1024;

/// What a probe may use on one router. `Debug` shows neither the key nor the password.
#[derive(Clone)]
pub struct Access {
    /// `_TclRequestVerificationKey`.
    pub verification_key: String,
    /// The web UI user (`admin`).
    pub username: String,
    /// The web UI password; `None` reads only what needs no login.
    pub password: Option<Secret>,
    /// A router named by the flags or the config file (the plain HTTP client), rather than
    /// an ad-hoc address (the client restricted by `--probe-allow`).
    pub configured: bool,
}

impl Access {
    /// An address nobody configured: the public key, no password.
    pub fn adhoc() -> Access {
        Access {
            verification_key: DEFAULT_VERIFICATION_KEY.to_owned(),
            username: String::new(),
            password: None,
            configured: false,
        }
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("verification_key", &"<hidden>")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("configured", &self.configured)
            .finish()
    }
}

/// How the client behaves on every router.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The pause after a rejected login.
    pub login_backoff: Duration,
    /// `--state-directory`: where the backoff survives a restart.
    pub state_directory: Option<PathBuf>,
    /// `--device-concurrency`: device calls of one probe in flight at once after the login
    /// (0 counts as 1).
    pub concurrency: usize,
}

/// A failure that says the target as a whole is not a usable LinkHub (or not reachable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// The HTTP request failed (connect refused, reset, timeout).
    Unreachable(String),
    /// `/jrd/webapi` answered 404 or 405: not an Alcatel/TCL JSON-RPC device.
    NotLinkhub(u16),
    /// Another HTTP status.
    Status(u16),
    /// The body was not JSON (a busy or reboot page, another device).
    NotJson(String),
    /// JSON, but neither a `result` nor an `error` member.
    NotJsonRpc(String),
    /// `result` is a string: the encrypted API of newer TCL 5G firmware.
    Encrypted,
    /// The body exceeded [`BODY_LIMIT`].
    TooLarge(String),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Unreachable(e) => write!(f, "device unreachable: {e}"),
            DeviceError::NotLinkhub(s) => write!(
                f,
                "not an Alcatel/TCL LinkHub: /jrd/webapi answered HTTP {s} (no JSON-RPC API there)"
            ),
            DeviceError::Status(s) => write!(f, "device answered HTTP {s}"),
            DeviceError::NotJson(start) => {
                write!(
                    f,
                    "response is not JSON (a busy page or not a LinkHub): starts with {start}"
                )
            }
            DeviceError::NotJsonRpc(start) => {
                write!(f, "response is JSON but not a JSON-RPC 2.0 reply: starts with {start}")
            }
            DeviceError::Encrypted => write!(
                f,
                "unsupported encrypted firmware: the result is an encrypted string \
                 (newer TCL 5G API), not a JSON object"
            ),
            DeviceError::TooLarge(e) => write!(f, "response too large: {e}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// The device answered a JSON-RPC error for a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device answered error {} ({})", self.code, self.message)
    }
}

impl std::error::Error for MethodError {}

/// True when `err` (or its cause) says the device as a whole is unusable.
pub fn is_device_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<DeviceError>().is_some())
}

/// True when `err` (or its cause) is a JSON-RPC method error.
pub fn method_error(err: &anyhow::Error) -> Option<&MethodError> {
    err.chain().find_map(|e| e.downcast_ref::<MethodError>())
}

/// A method's answer, or the note that it needs a login and no password is configured.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched<T> {
    Data(T),
    NeedsLogin,
}

/// The exporter's view of its login on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginStatus {
    /// No login was needed yet.
    #[default]
    LoggedOut,
    LoggedIn,
    /// Username or password rejected (`010101`), or another login error: in backoff.
    WrongPassword,
    /// Another administrator is logged in (`010102` or `GetLoginState.State` 1).
    OtherSession,
    /// The device locked its login (`010103` or `GetLoginState.State` 2).
    Locked,
    /// No password is configured for this address: only what needs no login is read.
    NoCredentials,
}

impl LoginStatus {
    /// Every state, in the order of the one-hot metric.
    pub const ALL: [LoginStatus; 6] = [
        LoginStatus::LoggedOut,
        LoginStatus::LoggedIn,
        LoginStatus::WrongPassword,
        LoginStatus::OtherSession,
        LoginStatus::Locked,
        LoginStatus::NoCredentials,
    ];

    /// The `state` label.
    pub fn label(self) -> &'static str {
        match self {
            LoginStatus::LoggedOut => "logged_out",
            LoginStatus::LoggedIn => "logged_in",
            LoginStatus::WrongPassword => "wrong_password",
            LoginStatus::OtherSession => "other_session",
            LoginStatus::Locked => "locked",
            LoginStatus::NoCredentials => "no_credentials",
        }
    }

    fn from_label(label: &str) -> Option<LoginStatus> {
        LoginStatus::ALL.into_iter().find(|s| s.label() == label)
    }
}

/// Why a login failed, the `reason` label of `linkhub_login_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    WrongPassword,
    OtherSession,
    Locked,
    Error,
}

impl FailureReason {
    pub const ALL: [FailureReason; 4] = [
        FailureReason::WrongPassword,
        FailureReason::OtherSession,
        FailureReason::Locked,
        FailureReason::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FailureReason::WrongPassword => "wrong_password",
            FailureReason::OtherSession => "other_session",
            FailureReason::Locked => "locked",
            FailureReason::Error => "error",
        }
    }
}

/// A snapshot of one target's login bookkeeping, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginReport {
    pub status: LoginStatus,
    /// `Login` requests sent since the exporter started.
    pub attempts: u64,
    /// Rejected or refused logins by reason, in [`FailureReason::ALL`] order.
    pub failures: [u64; 4],
    /// Seconds until the next login attempt is allowed (0 = now).
    pub backoff_remaining: f64,
}

/// Login state of one router, kept between scrapes (never device readings).
#[derive(Debug)]
pub struct Device {
    address: Address,
    session: Option<Session>,
    status: LoginStatus,
    next_login_at: Option<Instant>,
    attempts: u64,
    failures: [u64; 4],
    /// Lower-cased `GetSystemInfo.DeviceName`, to pick the login variant.
    model: Option<String>,
    /// A keyed hash (in memory only) of the password the router rejected, so that a new
    /// password (after a reload) may be tried while the same one is not.
    rejected: Option<u64>,
    /// The static facts read from this router, with their TTL ([`crate::statics`]).
    statics: Statics,
}

#[derive(Debug, Clone)]
struct Session {
    /// The ready `_TclRequestVerificationToken` value.
    header: String,
    /// The key it was obtained with, for the `Logout` at shutdown.
    verification_key: String,
}

impl Device {
    fn new(address: Address) -> Device {
        Device {
            address,
            session: None,
            status: LoginStatus::LoggedOut,
            next_login_at: None,
            attempts: 0,
            failures: [0; 4],
            model: None,
            rejected: None,
            statics: Statics::default(),
        }
    }

    fn fail(&mut self, reason: FailureReason) {
        if let Some(n) = self.failures.get_mut(reason as usize) {
            *n += 1;
        }
    }

    /// The bookkeeping for the metrics.
    pub fn report(&self) -> LoginReport {
        let now = Instant::now();
        LoginReport {
            status: self.status,
            attempts: self.attempts,
            failures: self.failures,
            backoff_remaining: self
                .next_login_at
                .map(|at| at.saturating_duration_since(now).as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

/// One router's entry in [`BACKOFF_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    /// The login state label (`wrong_password`, `locked`, …).
    state: String,
    /// Unix time (s) before which no login is tried.
    backoff_until: f64,
}

/// The backoff of every router with a password, as kept in `--state-directory`.
#[derive(Debug)]
struct Store {
    dir: Option<PathBuf>,
    entries: std::sync::Mutex<BTreeMap<String, Saved>>,
}

impl Store {
    fn open(dir: Option<PathBuf>) -> Store {
        let entries = dir
            .as_deref()
            .and_then(|d| exporter_core::state::read(d, BACKOFF_FILE))
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(map) => Some(map),
                Err(err) => {
                    log::warn!(target: "linkhub", file = BACKOFF_FILE; "ignoring the login backoff state: {err}");
                    None
                }
            })
            .unwrap_or_default();
        Store { dir, entries: std::sync::Mutex::new(entries) }
    }

    fn get(&self, address: &Address) -> Option<Saved> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&address.to_string())
            .cloned()
    }

    /// Records (`Some`) or clears (`None`) a router's backoff, and writes the file.
    fn set(&self, address: &Address, saved: Option<Saved>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let key = address.to_string();
        let changed = match saved {
            Some(saved) => entries.insert(key, saved.clone()).as_ref() != Some(&saved),
            None => entries.remove(&key).is_some(),
        };
        let Some(dir) = &self.dir else { return };
        if !changed {
            return;
        }
        let written = serde_json::to_vec_pretty(&*entries)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| exporter_core::state::write_atomic(dir, BACKOFF_FILE, &bytes));
        if let Err(err) = written {
            log::warn!(target: "linkhub", dir = dir.display().to_string().as_str(); "cannot keep the login backoff across restarts: {err:#}");
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The client: HTTP, and the login state of every router.
pub struct Client {
    /// For configured routers.
    http: reqwest::Client,
    /// For ad-hoc addresses (restricted by `--probe-allow` when it is given).
    adhoc_http: reqwest::Client,
    options: Options,
    /// Routers with a password: never evicted, so no flood of probes or cache pressure can
    /// drop a running backoff.
    logins: std::sync::Mutex<HashMap<Address, Arc<Mutex<Device>>>>,
    /// Routers without a password: only their one-request-at-a-time lock.
    adhoc: moka::future::Cache<Address, Arc<Mutex<Device>>>,
    store: Store,
    /// Keys the in-memory fingerprint of a rejected password.
    hasher: std::hash::RandomState,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Client {
    /// A client using `http` for configured routers and `adhoc_http` for other addresses.
    pub fn new(http: reqwest::Client, adhoc_http: reqwest::Client, options: Options) -> Client {
        let adhoc = moka::future::Cache::builder()
            .max_capacity(ADHOC_CAPACITY)
            .time_to_idle(Duration::from_secs(600))
            .build();
        let store = Store::open(options.state_directory.clone());
        Client {
            http,
            adhoc_http,
            options,
            logins: Default::default(),
            adhoc,
            store,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Connects to `target` with `access`: waits for its lock, so one request at a time
    /// reaches it.
    pub async fn connect<'a>(&'a self, target: &'a Target, access: Access) -> Conn<'a> {
        let address = target.address();
        let device = if access.password.is_some() {
            let mut logins = self.logins.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(logins.entry(address.clone()).or_insert_with(|| {
                let mut dev = Device::new(address.clone());
                if let Some(saved) = self.store.get(address) {
                    dev.status = LoginStatus::from_label(&saved.state)
                        .unwrap_or(LoginStatus::WrongPassword);
                    let left = saved.backoff_until - unix_now();
                    if left > 0.0 {
                        let left = Duration::from_secs_f64(left.min(86_400.0));
                        dev.next_login_at = Some(Instant::now() + left);
                        log::info!(target: "linkhub", target = address.to_string().as_str();
                            "login backoff from the state directory: next attempt in {}s", left.as_secs());
                    }
                }
                Arc::new(Mutex::new(dev))
            }))
        } else {
            self.adhoc
                .get_with(address.clone(), async {
                    Arc::new(Mutex::new(Device::new(address.clone())))
                })
                .await
        };
        Conn {
            client: self,
            target,
            access,
            dev: device.lock_owned().await,
            login_error: None,
            session_lost: false,
            logins: Vec::new(),
            quirks: Vec::new(),
        }
    }

    /// Logs out of every router with a session (at shutdown), each bounded by `timeout`.
    pub async fn logout_all(&self, timeout: Duration) {
        let devices: Vec<_> =
            self.logins.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for device in devices {
            let Ok(dev) = tokio::time::timeout(timeout, device.lock_owned()).await else {
                continue;
            };
            let Some(session) = dev.session.clone() else { continue };
            let target = Target::from(dev.address.clone());
            let access = Access {
                verification_key: session.verification_key,
                username: String::new(),
                password: None,
                configured: true,
            };
            let mut conn = Conn {
                client: self,
                target: &target,
                access,
                dev,
                login_error: None,
                session_lost: false,
                logins: Vec::new(),
                quirks: Vec::new(),
            };
            if tokio::time::timeout(timeout, conn.logout()).await.is_err() {
                log::warn!(target: "linkhub", target = target.to_string().as_str(); "Logout timed out");
            }
        }
    }
}

/// One target, locked for one probe: every device call of the probe goes through it.
pub struct Conn<'a> {
    client: &'a Client,
    target: &'a Target,
    access: Access,
    dev: OwnedMutexGuard<Device>,
    /// Set when a login failed during this probe, so later calls fail the same way
    /// without asking the device again.
    login_error: Option<String>,
    /// Set when the session held before this probe was refused (the router restarted, or
    /// the token expired): the static facts are read again.
    session_lost: bool,
    /// What `check` and the debug trace say about the login (never a secret).
    pub logins: Vec<String>,
    /// What this router does differently (for `check` and the debug trace).
    pub quirks: Vec<String>,
}

/// One JSON-RPC answer.
enum Reply {
    Result(Value),
    Error(MethodError),
}

impl Conn<'_> {
    /// The login bookkeeping of this target.
    pub fn login_report(&self) -> LoginReport {
        self.dev.report()
    }

    /// Whether a password is configured for this address.
    pub fn can_login(&self) -> bool {
        self.access.password.is_some()
    }

    /// The static facts cached for this router (any age).
    pub fn statics(&self) -> &Statics {
        &self.dev.statics
    }

    /// The static facts cached for this router, to update.
    pub fn statics_mut(&mut self) -> &mut Statics {
        &mut self.dev.statics
    }

    /// Whether this probe found the session of an earlier probe refused (a router restart
    /// logs everybody out).
    pub fn session_lost(&self) -> bool {
        self.session_lost
    }

    /// Remembers the model name (from `GetSystemInfo`) for the login variant.
    pub fn set_model(&mut self, name: Option<&str>) {
        if let Some(name) = name {
            self.dev.model = Some(name.to_ascii_lowercase());
        }
    }

    /// Calls `method` with empty params and decodes its result object into `T`.
    pub async fn get<T: DeserializeOwned>(&mut self, method: &str) -> anyhow::Result<Fetched<T>> {
        self.get_with(method, json!({})).await
    }

    /// Calls `method` with `params` and decodes its result object into `T`.
    pub async fn get_with<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Fetched<T>> {
        let value = match self.call(method, params).await.context(method.to_owned())? {
            Fetched::Data(v) => v,
            Fetched::NeedsLogin => return Ok(Fetched::NeedsLogin),
        };
        decode_value(method, value).map(Fetched::Data)
    }

    /// Calls `method`; on an authentication error logs in (if configured) and retries once.
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Fetched<Value>> {
        let had_session = self.dev.session.is_some();
        match self.request(method, &params).await? {
            Reply::Result(v) => return Ok(Fetched::Data(v)),
            Reply::Error(e) if !e.code.needs_login() => return Err(e.into()),
            Reply::Error(_) => {}
        }
        if had_session {
            self.lose_session();
        }
        if !self.can_login() {
            return Ok(Fetched::NeedsLogin);
        }
        self.logins.push(format!("{method} needed a login"));
        self.login().await?;
        let reply = self.request(method, &params).await?;
        self.after_login(reply)
    }

    /// The token of an earlier probe expired or was revoked (device reboot, idle timeout).
    fn lose_session(&mut self) {
        self.dev.session = None;
        self.dev.status = LoginStatus::LoggedOut;
        self.session_lost = true;
    }

    /// The answer to a call retried right after a fresh login.
    fn after_login(&mut self, reply: Reply) -> anyhow::Result<Fetched<Value>> {
        match reply {
            Reply::Result(v) => Ok(Fetched::Data(v)),
            Reply::Error(e) if e.code.needs_login() => {
                if self.dev.session.is_some() {
                    // A token the device does not take: as good as a rejected login.
                    self.dev.session = None;
                    self.dev.fail(FailureReason::Error);
                    self.start_backoff(LoginStatus::LoggedOut);
                }
                Err(anyhow::Error::new(e).context(format!(
                    "authentication failure right after a fresh login; next attempt in {}s",
                    self.client.options.login_backoff.as_secs()
                )))
            }
            Reply::Error(e) => Err(e.into()),
        }
    }

    /// Calls every `(collector, method)` of `calls` (empty params), at most
    /// `--device-concurrency` at once, each bounded by `deadline`; the results come back in
    /// the order of `calls`, like [`Conn::get`]'s.
    ///
    /// The login stays one call at a time: the calls that were refused for want of a token
    /// wait until all calls of the round are answered, then one login (as in [`Conn::get`],
    /// with its backoff) and their retry, again concurrently.
    pub async fn fetch_all(
        &mut self,
        calls: &[(&'static str, &'static str)],
        deadline: std::time::Instant,
    ) -> Vec<Timed<Fetched<Value>>> {
        let had_session = self.dev.session.is_some();
        let first = self.round(calls.iter().map(|(_, m)| *m), deadline).await;
        let mut results: Vec<Timed<Fetched<Value>>> = Vec::with_capacity(calls.len());
        let mut refused = Vec::new();
        for (i, ((name, method), (elapsed, reply))) in calls.iter().zip(first).enumerate() {
            let result = match reply {
                Ok(Reply::Result(v)) => Ok(Fetched::Data(v)),
                Ok(Reply::Error(e)) if e.code.needs_login() => {
                    refused.push(i);
                    Ok(Fetched::NeedsLogin)
                }
                Ok(Reply::Error(e)) => Err(anyhow::Error::new(e).context(*method)),
                Err(e) => Err(e.context(*method)),
            };
            results.push(Timed { name, elapsed, result });
        }
        if refused.is_empty() {
            return results;
        }
        if had_session {
            self.lose_session();
        }
        if !self.can_login() {
            return results;
        }
        let needed: Vec<&str> = refused.iter().filter_map(|i| calls.get(*i).map(|c| c.1)).collect();
        self.logins.push(format!("{} needed a login", needed.join(", ")));
        let started = std::time::Instant::now();
        let login = match tokio::time::timeout_at(deadline.into(), self.login()).await {
            Ok(login) => login,
            Err(_) => Err(anyhow::anyhow!(
                "scrape deadline exceeded after {:.3}s",
                started.elapsed().as_secs_f64()
            )),
        };
        let login_time = started.elapsed();
        if let Err(err) = login {
            let text = format!("{err:#}");
            for i in refused {
                if let Some(t) = results.get_mut(i) {
                    let method = calls.get(i).map(|c| c.1).unwrap_or_default();
                    t.elapsed += login_time;
                    t.result = Err(anyhow::anyhow!("{text}").context(method));
                }
            }
            return results;
        }
        let methods: Vec<&'static str> =
            refused.iter().filter_map(|i| calls.get(*i).map(|c| c.1)).collect();
        let second = self.round(methods.iter().copied(), deadline).await;
        for ((i, method), (elapsed, reply)) in refused.into_iter().zip(methods).zip(second) {
            let result = reply.and_then(|r| self.after_login(r)).context(method);
            if let Some(t) = results.get_mut(i) {
                t.elapsed += login_time + elapsed;
                t.result = result;
            }
        }
        results
    }

    /// One round of calls, at most `--device-concurrency` in flight; each answer with the
    /// time it took (the wait for a free slot included).
    async fn round(
        &self,
        methods: impl Iterator<Item = &'static str>,
        deadline: std::time::Instant,
    ) -> Vec<(Duration, anyhow::Result<Reply>)> {
        let slots = Semaphore::new(self.client.options.concurrency.max(1));
        let empty = json!({});
        let calls = methods.map(|method| {
            let (slots, empty) = (&slots, &empty);
            async move {
                let start = std::time::Instant::now();
                let call = async {
                    let _slot = slots.acquire().await.context("the call slots are closed")?;
                    self.request(method, empty).await
                };
                let result = match tokio::time::timeout_at(deadline.into(), call).await {
                    Ok(result) => result,
                    Err(_) => Err(anyhow::anyhow!(
                        "scrape deadline exceeded after {:.3}s",
                        start.elapsed().as_secs_f64()
                    )),
                };
                (start.elapsed(), result)
            }
        });
        join_all(calls.collect()).await
    }

    /// Logs in as the spec describes, unless backoff, lockout or another session forbid it.
    async fn login(&mut self) -> anyhow::Result<()> {
        if let Some(err) = &self.login_error {
            anyhow::bail!("{err}");
        }
        let result = self.try_login().await;
        if let Err(err) = &result {
            self.login_error = Some(format!("{err:#}"));
        }
        result
    }

    async fn try_login(&mut self) -> anyhow::Result<()> {
        let Some(password) = self.access.password.clone() else {
            anyhow::bail!("login required and no password configured");
        };
        capture::secret(&password);
        let now = Instant::now();
        if let Some(at) = self.dev.next_login_at
            && now < at
        {
            self.logins.push(format!(
                "login skipped: backoff ({}) for {}s more (--login-backoff)",
                self.dev.status.label(),
                at.duration_since(now).as_secs().max(1)
            ));
            anyhow::bail!(
                "login suspended after a rejected login ({}); next attempt in {}s",
                self.dev.status.label(),
                at.duration_since(now).as_secs().max(1)
            );
        }
        let state: LoginState = match self.request("GetLoginState", &json!({})).await? {
            Reply::Result(v) => serde_json::from_value(v).unwrap_or_default(),
            Reply::Error(_) => LoginState::default(),
        };
        match state.state.code() {
            Some(2) => {
                self.logins.push("locked until the router restarts (GetLoginState.State 2)".into());
                self.refused(LoginStatus::Locked, FailureReason::Locked);
                anyhow::bail!(
                    "the device has locked its login (GetLoginState.State 2, too many wrong \
                     passwords); not trying until it is rebooted"
                );
            }
            Some(1) => {
                self.logins.push("another user is logged in (GetLoginState.State 1)".into());
                self.refused(LoginStatus::OtherSession, FailureReason::OtherSession);
                anyhow::bail!(
                    "another administrator is logged in (GetLoginState.State 1); \
                     retrying on a later scrape without forcing that session out"
                );
            }
            _ => {}
        }
        let remaining = state.login_remaining_times.code();
        let fingerprint = std::hash::BuildHasher::hash_one(&self.client.hasher, password.expose());
        if self.dev.status == LoginStatus::WrongPassword
            && self.dev.rejected == Some(fingerprint)
            && remaining.is_some_and(|n| n <= LOGIN_ATTEMPTS_KEPT)
        {
            anyhow::bail!(
                "this password was rejected before and the device has {} login attempts left; \
                 leaving them to a human (fix the password file, then reload or restart the \
                 exporter)",
                remaining.unwrap_or(0)
            );
        }
        let model = self.dev.model.clone().unwrap_or_default();
        let md5_class = ["mw12", "mw70", "mw43", "mw45"].iter().any(|m| model.contains(m));
        let md5 = crypto::md5_hex(password.expose().as_bytes());
        // Every form the password may take on the wire, for the capture's redactor.
        for form in [password.expose(), md5.as_str()] {
            capture::secret_str(form);
            capture::secret_str(&crypto::obfuscate(form));
        }
        let password = if md5_class { md5 } else { password.expose().to_owned() };
        let username = &self.access.username;
        capture::secret_str(&crypto::obfuscate(username));
        let pw_encrypt = state.pw_encrypt.code();
        let (user, pass) = if state.pw_encrypt.code() == Some(1) {
            (crypto::obfuscate(username), crypto::obfuscate(&password))
        } else {
            (username.clone(), password)
        };
        self.dev.attempts += 1;
        let reply = match self.request("Login", &json!({"UserName": user, "Password": pass})).await
        {
            Ok(reply) => reply,
            Err(err) => {
                // No answer (a redirect, a busy page, a reset): the device may have counted
                // the attempt, so it is a rejected login for the backoff.
                self.dev.fail(FailureReason::Error);
                let status = self.dev.status;
                self.start_backoff(status);
                return Err(err.context(format!(
                    "Login: no usable answer; next attempt in {}s",
                    self.client.options.login_backoff.as_secs()
                )));
            }
        };
        let result = match reply {
            Reply::Result(v) => v,
            Reply::Error(e) => {
                self.dev.rejected = Some(fingerprint);
                let line = match e.code.0.as_str() {
                    "010101" => match remaining {
                        Some(n) => format!(
                            "login refused: wrong password (010101), {} attempts left",
                            (n - 1).max(0)
                        ),
                        None => "login refused: wrong password (010101)".to_owned(),
                    },
                    "010102" => "another user is logged in (010102)".to_owned(),
                    "010103" => "locked until the router restarts (010103)".to_owned(),
                    code => format!("login refused ({code})"),
                };
                self.logins.push(line);
                return Err(self.rejected(e));
            }
        };
        let result: LoginResult = serde_json::from_value(result).unwrap_or_default();
        let Some(token) = result.token.get() else {
            self.dev.fail(FailureReason::Error);
            let status = self.dev.status;
            self.start_backoff(status);
            anyhow::bail!(
                "Login: the result has no token; next attempt in {}s",
                self.client.options.login_backoff.as_secs()
            );
        };
        let obfuscated = crypto::obfuscate(token);
        // The token itself is hidden by the redactor's `token` key rule, which keeps a bare
        // number a number (as a registered secret it would become a string there and the
        // capture would not be JSON any more); its header form is registered.
        capture::secret_str(&obfuscated);
        let header = match (result.param0.get(), result.param1.get()) {
            (Some(key), Some(iv)) => {
                self.quirks.push("uses the AES token variant".to_owned());
                capture::secret_str(key);
                capture::secret_str(iv);
                crypto::aes_cbc_base64(key.as_bytes(), iv.as_bytes(), obfuscated.as_bytes())
                    .context("Login: cannot build the AES token header")?
            }
            _ => obfuscated,
        };
        capture::secret_str(&header);
        self.logins.push(match pw_encrypt {
            Some(n) => format!("PwEncrypt={n}; login succeeded"),
            None => "login succeeded (no PwEncrypt in GetLoginState)".to_owned(),
        });
        if self.dev.status != LoginStatus::LoggedIn && self.dev.status != LoginStatus::LoggedOut {
            log::info!(target: "linkhub", target = self.target.to_string().as_str(); "logged in again");
        }
        self.dev.session =
            Some(Session { header, verification_key: self.access.verification_key.clone() });
        self.dev.status = LoginStatus::LoggedIn;
        self.dev.next_login_at = None;
        self.dev.rejected = None;
        self.client.store.set(&self.dev.address, None);
        Ok(())
    }

    /// Starts `--login-backoff` for this router (in memory and in the state directory).
    fn start_backoff(&mut self, status: LoginStatus) {
        let backoff = self.client.options.login_backoff;
        self.dev.status = status;
        self.dev.next_login_at = Some(Instant::now() + backoff);
        let saved = Saved {
            state: status.label().to_owned(),
            backoff_until: unix_now() + backoff.as_secs_f64(),
        };
        self.client.store.set(&self.dev.address, Some(saved));
    }

    /// Bookkeeping for a refusal seen in `GetLoginState` (no `Login` was sent).
    fn refused(&mut self, status: LoginStatus, reason: FailureReason) {
        if self.dev.status != status {
            log::warn!(
                target: "linkhub", target = self.target.to_string().as_str(), state = status.label();
                "cannot log in: {}",
                match status {
                    LoginStatus::Locked => "the device has locked its login until it is rebooted",
                    _ => "another administrator is logged in; retrying on later scrapes",
                }
            );
        }
        self.dev.fail(reason);
        self.dev.status = status;
    }

    /// Bookkeeping for a `Login` error; returns the error for the collector.
    fn rejected(&mut self, e: MethodError) -> anyhow::Error {
        let backoff = self.client.options.login_backoff;
        let target = self.target.to_string();
        let (status, reason, what) = match e.code.0.as_str() {
            "010101" => (
                LoginStatus::WrongPassword,
                FailureReason::WrongPassword,
                "wrong username or password",
            ),
            "010102" => (
                LoginStatus::OtherSession,
                FailureReason::OtherSession,
                "another administrator is logged in",
            ),
            "010103" => (
                LoginStatus::Locked,
                FailureReason::Locked,
                "login locked after too many wrong passwords",
            ),
            _ => (LoginStatus::WrongPassword, FailureReason::Error, "login refused"),
        };
        self.dev.fail(reason);
        if status == LoginStatus::OtherSession {
            // Not a password problem: try again on a later scrape, never forcing it out.
            if self.dev.status != status {
                log::warn!(target: "linkhub", target = target.as_str(), code = e.code.0.as_str();
                    "Login: {what}; retrying on later scrapes");
            }
            self.dev.status = status;
            return anyhow::Error::new(e)
                .context(format!("Login: {what}; retrying on a later scrape"));
        }
        self.start_backoff(status);
        log::error!(
            target: "linkhub", target = target.as_str(), code = e.code.0.as_str();
            "Login: {what}; next attempt in {}s (--login-backoff)", backoff.as_secs()
        );
        anyhow::Error::new(e)
            .context(format!("Login: {what}; next attempt in {}s", backoff.as_secs()))
    }

    /// Whether the exporter holds a session on this router.
    pub fn has_session(&self) -> bool {
        self.dev.session.is_some()
    }

    /// Ends the session, if any (best effort).
    pub async fn logout(&mut self) {
        if self.dev.session.is_none() {
            return;
        }
        if let Err(err) = self.request("Logout", &json!({})).await {
            log::warn!(target: "linkhub", target = self.target.to_string().as_str(); "Logout failed: {err:#}");
        }
        self.dev.session = None;
        self.dev.status = LoginStatus::LoggedOut;
    }

    /// One HTTP request: the JSON-RPC envelope, the headers, the body limit and the
    /// classification of what came back.
    ///
    /// Under `capture`, every exchange is recorded (the redactor hides the key and token
    /// headers and the login fields).
    async fn request(&self, method: &str, params: &Value) -> anyhow::Result<Reply> {
        let body =
            json!({"jsonrpc": "2.0", "method": method, "params": params, "id": method_id(method)});
        let body = body.to_string();
        let http = if self.access.configured { &self.client.http } else { &self.client.adhoc_http };
        let endpoint = self.target.endpoint();
        let referer = self.target.referer();
        let mut req = http
            .post(endpoint.as_str())
            .header("_TclRequestVerificationKey", &self.access.verification_key)
            .header(reqwest::header::REFERER, referer.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        let token = self.dev.session.as_ref().map(|s| s.header.clone());
        if let Some(token) = &token {
            req = req.header("_TclRequestVerificationToken", token.as_str());
        }
        let exchange = |status: Option<u16>,
                        response_headers: Vec<(String, String)>,
                        response_body: Option<String>,
                        error: Option<String>| {
            let mut request_headers = vec![(
                "_TclRequestVerificationKey".to_owned(),
                self.access.verification_key.clone(),
            )];
            if let Some(token) = &token {
                request_headers.push(("_TclRequestVerificationToken".to_owned(), token.clone()));
            }
            request_headers.push(("referer".to_owned(), referer.to_string()));
            capture::CapturedHttp {
                method: "POST".to_owned(),
                url: endpoint.to_string(),
                request_headers,
                request_body: Some(body.clone()),
                status,
                response_headers,
                response_body,
                error,
            }
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                let text = error_chain(&e);
                capture::record_http(|| exchange(None, Vec::new(), None, Some(text.clone())));
                return Err(DeviceError::Unreachable(text).into());
            }
        };
        let status = resp.status().as_u16();
        let headers = capture::active().then(|| capture::header_pairs(resp.headers()));
        // Two ways to fail here: the connection broke mid-body (a reqwest error inside), or
        // the body passed the limit.
        let bytes = match exporter_core::client::read_body_limited(resp, BODY_LIMIT).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let text = format!("{e:#}");
                capture::record_http(|| {
                    exchange(
                        Some(status),
                        headers.clone().unwrap_or_default(),
                        None,
                        Some(text.clone()),
                    )
                });
                return Err(if e.chain().any(|c| c.is::<reqwest::Error>()) {
                    DeviceError::Unreachable(text)
                } else {
                    DeviceError::TooLarge(text)
                }
                .into());
            }
        };
        capture::record_http(|| {
            exchange(
                Some(status),
                headers.unwrap_or_default(),
                Some(String::from_utf8_lossy(&bytes).into_owned()),
                None,
            )
        });
        if status == 404 || status == 405 {
            return Err(DeviceError::NotLinkhub(status).into());
        }
        if !(200..300).contains(&status) {
            return Err(DeviceError::Status(status).into());
        }
        parse_reply(&bytes).map_err(Into::into)
    }
}

/// Polls every future of `futures` in the calling task (so the capture recorder, which is
/// task-local, sees them) until all are ready; the outputs in the order of `futures`.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Decodes a result object of `method` into `T` (after [`Conn::fetch_all`]).
pub fn decode_result<T: DeserializeOwned>(method: &str, value: Value) -> anyhow::Result<T> {
    decode_value(method, value)
}

/// Decodes one response body of `method` into `T` the way a probe does: device-level
/// problems are [`DeviceError`]s, JSON-RPC errors [`MethodError`]s.
pub fn decode<T: DeserializeOwned>(method: &str, body: &[u8]) -> anyhow::Result<T> {
    match parse_reply(body).with_context(|| method.to_owned())? {
        Reply::Result(value) => decode_value(method, value),
        Reply::Error(e) => Err(anyhow::Error::new(e).context(method.to_owned())),
    }
}

fn decode_value<T: DeserializeOwned>(method: &str, value: Value) -> anyhow::Result<T> {
    anyhow::ensure!(value.is_object(), "{method}: result is {} instead of an object", kind(&value));
    serde_json::from_value(value).with_context(|| format!("{method}: cannot decode the result"))
}

/// Classifies a response body.
fn parse_reply(bytes: &[u8]) -> Result<Reply, DeviceError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| DeviceError::NotJson(snippet(bytes)))?;
    let Some(obj) = value.as_object() else {
        return Err(DeviceError::NotJsonRpc(snippet(bytes)));
    };
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        let code = ErrorCode::from_json(err.get("code").unwrap_or(&Value::Null));
        let message = err.get("message").and_then(Value::as_str).unwrap_or("");
        return Ok(Reply::Error(MethodError { code, message: clean(message) }));
    }
    match obj.get("result") {
        Some(Value::String(_)) => Err(DeviceError::Encrypted),
        Some(result) => Ok(Reply::Result(result.clone())),
        None => Err(DeviceError::NotJsonRpc(snippet(bytes))),
    }
}

/// The web UI's ids (module.method, spec §2.6); the device only echoes them.
fn method_id(method: &str) -> &'static str {
    match method {
        "Login" => "1.1",
        "Logout" => "1.2",
        "GetLoginState" => "1.3",
        "HeartBeat" => "1.5",
        "GetSimStatus" => "2.1",
        "GetSMSStorageState" => "6.4",
        "GetConnectedDeviceList" => "12.1",
        "GetConnectionState" => "3.1",
        "GetNetworkInfo" => "4.1",
        "GetUsageRecord" => "7.1",
        "GetSystemInfo" => "13.1",
        "GetSystemStatus" => "13.4",
        "GetBatteryState" => "13.9",
        _ => "1",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first bytes of a body, quoted and escaped, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
    let more = if bytes.len() > 40 { "…" } else { "" };
    format!("\"{}{more}\"", text.escape_debug())
}

/// A device-sent message, made safe for logs: printable, at most 100 characters.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn classify(body: &str) -> Result<Reply, DeviceError> {
        parse_reply(body.as_bytes())
    }

    #[test]
    fn replies_are_classified() {
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","result":{},"id":"4.1"}"#),
            Ok(Reply::Result(_))
        ));
        // Some firmware omits the id.
        assert!(matches!(classify(r#"{"jsonrpc":"2.0","result":{"a":1}}"#), Ok(Reply::Result(_))));
        let Ok(Reply::Error(e)) = classify(
            r#"{"jsonrpc":"2.0","error":{"code":-32699,"message":"Authentication Failure"},"id":"1"}"#,
        ) else {
            panic!("not an error reply")
        };
        assert!(e.code.needs_login());
        let Ok(Reply::Error(e)) =
            classify(r#"{"error":{"code":"-32698","message":"token error"}}"#)
        else {
            panic!("not an error reply")
        };
        assert!(e.code.needs_login());
        let Ok(Reply::Error(e)) = classify(r#"{"error":{"code":"010101","message":"x\ny"}}"#)
        else {
            panic!("not an error reply")
        };
        assert_eq!(e.code.0, "010101");
        assert_eq!(e.message, "xy");
        assert_eq!(
            classify(r#"{"jsonrpc":"2.0","result":"U2FsdGVkX1+abc","id":"1"}"#).err(),
            Some(DeviceError::Encrypted)
        );
        assert!(matches!(classify("<html><body>busy</body></html>"), Err(DeviceError::NotJson(_))));
        assert!(matches!(classify(r#"{"status":"ok"}"#), Err(DeviceError::NotJsonRpc(_))));
        assert!(matches!(classify("[1,2]"), Err(DeviceError::NotJsonRpc(_))));
        assert!(matches!(classify(""), Err(DeviceError::NotJson(_))));
    }

    #[test]
    fn device_errors_name_what_was_found() {
        let e = DeviceError::NotJson(snippet(b"<html><head><title>Rebooting</title></head><body>"));
        assert_eq!(
            e.to_string(),
            "response is not JSON (a busy page or not a LinkHub): starts with \"<html><head><title>Rebooting</title></he…\""
        );
        assert!(DeviceError::Encrypted.to_string().contains("encrypted firmware"));
        assert!(DeviceError::NotLinkhub(404).to_string().contains("not an Alcatel/TCL LinkHub"));
        let wrapped = anyhow::Error::new(DeviceError::Encrypted).context("GetSystemInfo");
        assert!(is_device_error(&wrapped));
        assert!(!is_device_error(&anyhow::anyhow!("other")));
    }
}
