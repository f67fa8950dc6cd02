//! The exporter-toolkit web-config file (`--web-config-file`): TLS via rustls, basic auth
//! with bcrypt hashes, extra response headers, rate limiting. Validated at start, re-read
//! when it (or a file it names) changes.
//!
//! The format is the one of prometheus/exporter-toolkit (`docs/web-configuration.md`),
//! parsed as strictly as the toolkit does: unknown keys, duplicate keys, unknown names and
//! bad bcrypt hashes are errors, and every error names the field, e.g.
//! `tls_server_config.min_version: unknown TLS version "TLS9"`. Relative file names are
//! resolved against the directory of the config file. Scalars are read the way Go's
//! `yaml.v2` reads them into the toolkit's types: `yes`/`no`/`on`/`off` are booleans,
//! `X-XSS-Protection: 0` is the string `"0"`, `interval: 1s` is a Go duration.
//!
//! Where Go's `crypto/tls` and rustls (with the *ring* provider) differ, this module decides
//! as follows (the agreement table in `tests/web_config.rs` pins each case against
//! `promtool check web-config`):
//! - `min_version: TLS10` / `TLS11`: accepted, but the effective minimum is TLS 1.2 (rustls
//!   has no TLS 1.0/1.1); a warning is logged. `max_version: TLS10` / `TLS11` is an error,
//!   as no version would be left. `min_version` above `max_version` is an error (Go only
//!   fails at the handshake).
//! - `cipher_suites`: Go names. TLS 1.3 suites are not configurable in Go, so TLS 1.3 names
//!   are accepted and ignored and all TLS 1.3 suites stay enabled, as in Go. The six ECDHE
//!   AEAD suites map to rustls suites in the order given. Suites Go knows but rustls does not
//!   implement (CBC, RSA key exchange) are ignored with a warning; if none of the listed TLS
//!   1.2 suites is implemented while TLS 1.2 is enabled, that is an error.
//! - `curve_preferences`: `X25519`, `CurveP256`, `CurveP384` map to the rustls key-exchange
//!   groups in the order given. `CurveP521` is not implemented by *ring*: it is ignored with
//!   a warning, and a list with nothing else is an error.
//! - `RequireAndVerifyClientCert` and `VerifyClientCertIfGiven` need `client_ca_file` (or
//!   `client_ca`): the system trust store is not used for client certificates (Go uses it).
//!   A client CA file without any certificate is an error (Go ignores it silently).
//! - `RequestClientCert` and `RequireAnyClientCert` (alias `RequireClientCert`) ask for a
//!   client certificate and check only that the client owns its key, like Go.
//! - `client_allowed_sans`: exact match against the DNS, e-mail, IP and URI names of the
//!   client certificate, checked in the certificate verifier (the handshake fails).
//! - `cert` and `cert_file` (or `key`/`key_file`, `client_ca`/`client_ca_file`) together are
//!   an error (the toolkit docs say "should not be specified"; the toolkit uses the file).
//! - A bcrypt hash must also be one the Rust `bcrypt` crate can verify (Go checks only its
//!   prefix and cost at start).
//! - `http_server_config.http2` sets the ALPN protocols of the TLS config (`h2` first).
//!   Header values that are blank are not sent ("unset if blank").
//! - `rate_limit` (token bucket: one token per `interval`, at most `burst`) is implemented by
//!   [`WebConfig::rate_limit_allows`]; the bucket starts full again after a reload.
//!
//! Basic auth follows the toolkit: `401` for a missing or wrong login, an unknown user is
//! still checked against a fixed dummy hash (of the configured cost) so that timing does not
//! reveal which users exist, bcrypt runs under a process-wide mutex, and good logins are
//! cached under a keyed SHA-256 of (user, hash, password) with a random per-process key, so
//! no password is kept. Passwords and hashes are never logged or put in error messages.

use std::{
    collections::HashSet,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, anyhow, bail};
use hyper::header::{HeaderName, HeaderValue};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme, SupportedCipherSuite,
    client::danger::HandshakeSignatureValid,
    crypto::{SupportedKxGroup, WebPkiSupportedAlgorithms, ring},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use serde::{Deserialize, Deserializer, de};

/// A validated web-config file.
#[derive(Debug)]
pub(crate) struct WebConfig {
    /// `Some` when `tls_server_config` is set: the rustls config to accept connections with.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// `http_server_config.headers`, added to every response (including 401s).
    pub(crate) headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// `http_server_config.http2` (default true; only with TLS).
    pub(crate) http2: bool,
    /// `basic_auth_users`.
    users: Users,
    /// `rate_limit`, when its interval is above zero.
    rate_limiter: Option<RateLimiter>,
    /// The files the config names (certificates, keys, CAs): a change re-reads the config.
    watched_files: Vec<PathBuf>,
}

impl Default for WebConfig {
    /// No TLS, no users, no extra headers, no rate limit: what runs without a config file.
    fn default() -> WebConfig {
        WebConfig {
            tls: None,
            headers: Vec::new(),
            http2: true,
            users: Users::default(),
            rate_limiter: None,
            watched_files: Vec::new(),
        }
    }
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No users configured, or good credentials.
    Allowed,
    /// Missing or wrong credentials: answer 401 with `WWW-Authenticate: Basic`.
    Denied,
}

impl WebConfig {
    /// Reads and validates the file; the error names the offending field.
    pub(crate) fn load(path: &Path) -> anyhow::Result<WebConfig> {
        load_file(path).map_err(|e| anyhow!("web config file {}: {e:#}", path.display()))
    }

    /// Checks basic auth (bcrypt, constant-time for unknown users, cached good logins).
    /// May block for a bcrypt verification: call it from `spawn_blocking`.
    pub(crate) fn check_auth(&self, authorization: Option<&str>) -> Auth {
        if !self.auth_required() {
            return Auth::Allowed;
        }
        let Some((user, password)) = authorization.and_then(parse_basic_auth) else {
            return Auth::Denied;
        };
        let known = std::str::from_utf8(&user).ok().and_then(|user| self.users.hash_of(user));
        let (hash, known) = match known {
            Some(hash) => (hash, true),
            // Unknown user: spend the same bcrypt time on a dummy hash.
            None => (self.users.dummy_hash(), false),
        };
        let cache = auth_cache();
        let key = cache.key(&user, hash, &password);
        if known && key.as_ref().is_some_and(|key| cache.contains(key)) {
            return Auth::Allowed;
        }
        let good = {
            let _serialised = lock(&BCRYPT_MUTEX);
            bcrypt::verify(&password, hash).unwrap_or(false)
        };
        if good && known {
            if let Some(key) = key {
                cache.insert(key);
            }
            Auth::Allowed
        } else {
            Auth::Denied
        }
    }

    /// Whether `basic_auth_users` is set, i.e. whether [`WebConfig::check_auth`] can deny.
    pub(crate) fn auth_required(&self) -> bool {
        !self.users.entries.is_empty()
    }

    /// Takes a token from the `rate_limit` bucket: `false` means answer `429 Too Many
    /// Requests`. Always `true` without a rate limit.
    #[allow(dead_code)] // used by the server once it wires up rate limiting
    pub(crate) fn rate_limit_allows(&self) -> bool {
        self.rate_limiter.as_ref().is_none_or(RateLimiter::allow)
    }
}

/// Holds the current config and re-reads the file when its modification time or size
/// changes, keeping the last good config (and logging the error) when the new one is bad.
///
/// The files are looked at (one `stat` each) at most once per second, on [`current`]. The
/// certificate, key and CA files named by the config are watched as well, so a renewed
/// certificate takes effect without a restart.
///
/// [`current`]: WebConfigWatcher::current
#[derive(Debug)]
pub(crate) struct WebConfigWatcher {
    path: Option<PathBuf>,
    recheck: Duration,
    state: Mutex<WatchState>,
}

#[derive(Debug)]
struct WatchState {
    config: Arc<WebConfig>,
    /// Stamps of the config file and the files it names, as of the current config.
    stamps: Vec<Option<FileStamp>>,
    checked_at: Instant,
    /// The last reload error logged, so that a broken file is logged once, not per check.
    last_error: Option<String>,
}

/// How often [`WebConfigWatcher::current`] looks at the files.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

impl WebConfigWatcher {
    /// Loads the file at start; a bad file is an error (the exporter does not start).
    pub(crate) fn new(path: Option<&Path>) -> anyhow::Result<WebConfigWatcher> {
        WebConfigWatcher::with_recheck_interval(path, RECHECK_INTERVAL)
    }

    fn with_recheck_interval(
        path: Option<&Path>,
        recheck: Duration,
    ) -> anyhow::Result<WebConfigWatcher> {
        let (config, stamps) = match path {
            Some(path) => load_with_stamps(path)?,
            None => (WebConfig::default(), Vec::new()),
        };
        Ok(WebConfigWatcher {
            path: path.map(Path::to_path_buf),
            recheck,
            state: Mutex::new(WatchState {
                config: Arc::new(config),
                stamps,
                checked_at: Instant::now(),
                last_error: None,
            }),
        })
    }

    /// The current config, re-read first if the file changed. Cheap when it did not.
    pub(crate) fn current(&self) -> Arc<WebConfig> {
        let mut state = lock(&self.state);
        let Some(path) = &self.path else {
            return Arc::clone(&state.config);
        };
        if state.checked_at.elapsed() < self.recheck {
            return Arc::clone(&state.config);
        }
        state.checked_at = Instant::now();
        let stamps = stamps_of(path, &state.config.watched_files);
        if stamps == state.stamps {
            return Arc::clone(&state.config);
        }
        match load_with_stamps(path) {
            Ok((config, stamps)) => {
                log::info!("web config file {} reloaded", path.display());
                state.stamps = stamps;
                state.config = Arc::new(config);
                state.last_error = None;
            }
            Err(e) => {
                // The stamps stay those of the good config, so the file is retried at each
                // check until it is good again; the error is logged when it changes.
                let message = format!("{e:#}");
                if state.last_error.as_deref() != Some(message.as_str()) {
                    log::error!("{message}; keeping the previous web config");
                    state.last_error = Some(message);
                }
            }
        }
        Arc::clone(&state.config)
    }
}

/// Loads the config and stamps its files. If the config file changed while it was read,
/// the stamps are left empty, so that the next check reads it again.
fn load_with_stamps(path: &Path) -> anyhow::Result<(WebConfig, Vec<Option<FileStamp>>)> {
    let before = stamp(path);
    let config = WebConfig::load(path)?;
    let mut stamps = stamps_of(path, &config.watched_files);
    if stamps.first() != Some(&before) {
        stamps.clear();
    }
    Ok((config, stamps))
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What identifies one version of a file: a rewrite, a rename over it or a removal changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64, i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt as _;
        (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
    };
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode,
    })
}

fn stamps_of(config: &Path, files: &[PathBuf]) -> Vec<Option<FileStamp>> {
    std::iter::once(config).chain(files.iter().map(PathBuf::as_path)).map(stamp).collect()
}

// ---------------------------------------------------------------------------------------
// Raw YAML, read with Go's yaml.v2 scalar rules.

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<UniqueMap>,
    rate_limit: Option<RawRateLimit>,
}

/// `tls_server_config`. No `Debug`: `key` is a secret.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTls {
    cert: GoString,
    key: GoString,
    client_ca: GoString,
    cert_file: GoString,
    key_file: GoString,
    client_auth_type: GoString,
    client_ca_file: GoString,
    client_allowed_sans: Option<Vec<GoString>>,
    min_version: Option<GoString>,
    max_version: Option<GoString>,
    cipher_suites: Option<Vec<GoString>>,
    prefer_server_cipher_suites: Option<GoBool>,
    curve_preferences: Option<Vec<GoString>>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHttp {
    http2: Option<GoBool>,
    headers: Option<UniqueMap>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<GoDuration>,
    burst: Option<i64>,
}

/// A string field: any scalar, as its text (Go's yaml.v2 turns `0` into `"0"` for a string),
/// null as the empty string.
#[derive(Default)]
struct GoString(String);

impl<'de> Deserialize<'de> for GoString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoString, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = GoString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoString, E> {
                Ok(GoString(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<GoString, E> {
                Ok(GoString::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<GoString, E> {
                Ok(GoString::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean, with YAML 1.1's `yes`/`no`/`on`/`off`/`y`/`n` as Go's yaml.v2 reads them.
#[derive(Clone, Copy)]
struct GoBool(bool);

impl<'de> Deserialize<'de> for GoBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoBool, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = GoBool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean (true or false)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<GoBool, E> {
                Ok(GoBool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoBool, E> {
                match v {
                    "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On"
                    | "ON" => Ok(GoBool(true)),
                    "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off"
                    | "Off" | "OFF" => Ok(GoBool(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A Go `time.Duration`: a string such as `1s` or `1m30s`, or an integer of nanoseconds.
#[derive(Clone, Copy)]
struct GoDuration(i128);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoDuration, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 1s, 500ms or 1m30s")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse_go_duration(v)
                    .map(GoDuration)
                    .ok_or_else(|| E::custom(format!("invalid duration {v:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                Ok(GoDuration(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                if v > i64::MAX as u64 {
                    return Err(E::custom(format!("invalid duration {v}")));
                }
                Ok(GoDuration(i128::from(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string-to-string map that, like yaml.v2, rejects a key given twice. No `Debug`: the
/// values may be password hashes.
#[derive(Default)]
struct UniqueMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UniqueMap, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((GoString(key), GoString(value))) = map.next_entry()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    out.push((key, value));
                }
                Ok(UniqueMap(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<UniqueMap, E> {
                Ok(UniqueMap::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]` then one or more `<number><unit>`
/// with units ns, us (µs, μs), ms, s, m, h; `0` alone needs no unit.
fn parse_go_duration(s: &str) -> Option<i128> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let frac_len = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
                after.split_at(frac_len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.get(..int_part.len().min(30))?.parse().ok()?
        };
        let mut value = int.checked_mul(scale)?;
        // The fraction, exactly to the nanosecond (digits beyond that are dropped, like Go).
        let mut frac_scale = scale;
        for digit in frac_part.bytes() {
            frac_scale /= 10;
            if frac_scale == 0 {
                break;
            }
            value += i128::from(digit - b'0') * frac_scale;
        }
        total = total.checked_add(value)?;
        if total > i128::from(i64::MAX) {
            return None;
        }
        rest = after;
    }
    Some(if negative { -total } else { total })
}

// ---------------------------------------------------------------------------------------
// Validation.

fn load_file(path: &Path) -> anyhow::Result<WebConfig> {
    let text = std::fs::read_to_string(path).context("cannot read file")?;
    let raw = parse_yaml(&text)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let http = raw.http_server_config.unwrap_or_default();
    let headers = validate_headers(http.headers.unwrap_or_default())?;
    let http2 = http.http2.is_none_or(|b| b.0);
    let users = validate_users(raw.basic_auth_users.unwrap_or_default())?;
    let rate_limiter = validate_rate_limit(raw.rate_limit.unwrap_or_default())?;
    let mut watched_files = Vec::new();
    let tls =
        validate_tls(raw.tls_server_config.unwrap_or_default(), &dir, http2, &mut watched_files)?;
    Ok(WebConfig { tls, headers, http2, users, rate_limiter, watched_files })
}

fn parse_yaml(text: &str) -> anyhow::Result<RawConfig> {
    // An empty file (or only comments, or `~`) is a valid config with nothing set.
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| anyhow!("invalid YAML: {e}"))?;
    if value.is_null() {
        return Ok(RawConfig::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| anyhow!("{e}"))
}

/// The headers the toolkit allows, with their allowed values (empty: any value).
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-XSS-Protection", &[]),
    ("Strict-Transport-Security", &[]),
];

fn validate_headers(headers: UniqueMap) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    let mut out = Vec::new();
    for (name, value) in headers.0 {
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            bail!(
                "http_server_config.headers: header {name:?} cannot be configured (allowed: {})",
                names.join(", ")
            );
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            bail!(
                "http_server_config.headers.{name}: invalid value {value:?}, expected one of: {}",
                allowed.join(", ")
            );
        }
        if value.is_empty() {
            continue;
        }
        let header_value = HeaderValue::from_str(&value).map_err(|_| {
            anyhow!("http_server_config.headers.{name}: the value is not a valid HTTP header value")
        })?;
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| anyhow!("http_server_config.headers: invalid header name {name:?}"))?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

/// `basic_auth_users`: user name to bcrypt hash.
#[derive(Default)]
struct Users {
    entries: Vec<(String, String)>,
    /// The highest cost among the hashes: the dummy hash for unknown users has this cost.
    max_cost: u32,
    dummy: OnceLock<String>,
}

impl fmt::Debug for Users {
    /// User names only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|(user, _)| user)).finish()
    }
}

/// The toolkit's dummy hash (bcrypt of "fakepassword", cost 10) for unknown users.
const TOOLKIT_DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

impl Users {
    fn hash_of(&self, user: &str) -> Option<&str> {
        self.entries.iter().find(|(u, _)| u == user).map(|(_, hash)| hash.as_str())
    }

    /// A hash no password matches in practice, of the same cost as the real ones, so that
    /// checking an unknown user takes as long as checking a known one.
    fn dummy_hash(&self) -> &str {
        self.dummy.get_or_init(|| {
            if self.max_cost == 10 {
                return TOOLKIT_DUMMY_HASH.to_owned();
            }
            bcrypt::hash_with_salt("fakepassword", self.max_cost, *b"uplink-exporters")
                .map(|parts| parts.format_for_version(bcrypt::Version::TwoY))
                .unwrap_or_else(|_| TOOLKIT_DUMMY_HASH.to_owned())
        })
    }
}

fn validate_users(users: UniqueMap) -> anyhow::Result<Users> {
    let mut max_cost = 0;
    for (user, hash) in &users.0 {
        let cost = bcrypt_cost(hash).map_err(|e| anyhow!("basic_auth_users.{user}: {e}"))?;
        max_cost = max_cost.max(cost);
    }
    Ok(Users { entries: users.0, max_cost, dummy: OnceLock::new() })
}

/// The cost of a bcrypt hash, or why it is not one (never quoting the hash).
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    if hash.is_empty() {
        return Err("empty password hash (expected a bcrypt hash)".to_owned());
    }
    let parts: bcrypt::HashParts =
        hash.parse().map_err(|e| format!("not a valid bcrypt hash ({e})"))?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside the allowed range 4-31"));
    }
    Ok(cost)
}

fn validate_rate_limit(raw: RawRateLimit) -> anyhow::Result<Option<RateLimiter>> {
    let interval = raw.interval.map_or(0, |d| d.0);
    if interval <= 0 {
        // Zero disables it; Go's rate.Every of a negative interval never limits either.
        return Ok(None);
    }
    let burst = raw.burst.unwrap_or(0);
    if burst < 1 {
        bail!("rate_limit.burst: must be at least 1 when rate_limit.interval is set (got {burst})");
    }
    let burst =
        u32::try_from(burst).map_err(|_| anyhow!("rate_limit.burst: {burst} is too large"))?;
    let interval = Duration::from_nanos(
        u64::try_from(interval).map_err(|_| anyhow!("rate_limit.interval: too large"))?,
    );
    Ok(Some(RateLimiter::new(interval, burst)))
}

/// A token bucket: one token per `interval`, at most `burst` tokens.
#[derive(Debug)]
struct RateLimiter {
    interval: Duration,
    burst: u32,
    /// (tokens, when they were counted)
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter { interval, burst, state: Mutex::new((f64::from(burst), Instant::now())) }
    }

    fn allow(&self) -> bool {
        let mut state = lock(&self.state);
        let now = Instant::now();
        let earned = now.duration_since(state.1).as_secs_f64() / self.interval.as_secs_f64();
        let tokens = (state.0 + earned).min(f64::from(self.burst));
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

/// Go's `tls.VersionTLS1x`, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(
        field: &str,
        name: Option<&GoString>,
        default: TlsVersion,
    ) -> anyhow::Result<TlsVersion> {
        let Some(GoString(name)) = name else {
            return Ok(default);
        };
        Ok(match name.as_str() {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            other => bail!(
                "tls_server_config.{field}: unknown TLS version {other:?} (expected TLS10, TLS11, TLS12 or TLS13)"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLS10",
            TlsVersion::Tls11 => "TLS11",
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        }
    }
}

/// `client_auth_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    No,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(name: &str) -> anyhow::Result<ClientAuth> {
        Ok(match name {
            "" | "NoClientCert" => ClientAuth::No,
            "RequestClientCert" => ClientAuth::Request,
            // RequireClientCert: kept by the toolkit for backwards compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            other => bail!(
                "tls_server_config.client_auth_type: unknown client auth type {other:?} (expected \
                 NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven \
                 or RequireAndVerifyClientCert)"
            ),
        })
    }
}

/// One `cipher_suites` entry, by Go name.
#[derive(Debug, Clone, Copy)]
enum Cipher {
    /// A TLS 1.3 suite: not configurable in Go (all stay enabled), so ignored.
    Tls13,
    /// A TLS 1.2 suite rustls implements.
    Tls12(SupportedCipherSuite),
    /// A suite Go's `tls.CipherSuites()` lists but rustls does not implement.
    NotInRustls,
}

/// Go's `tls.CipherSuites()` names (the secure list of Go 1.19, which promtool 2.42 uses).
fn go_cipher(name: &str) -> Option<Cipher> {
    use ring::cipher_suite as cs;
    Some(match name {
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            Cipher::Tls13
        }
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            Cipher::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            Cipher::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Cipher::Tls12(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            Cipher::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            Cipher::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Cipher::Tls12(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" => Cipher::NotInRustls,
        _ => return None,
    })
}

/// Go's curve names: `Some(None)` is a curve Go has but rustls (ring) does not.
fn go_curve(name: &str) -> Option<Option<&'static dyn SupportedKxGroup>> {
    use ring::kx_group;
    Some(match name {
        "CurveP256" => Some(kx_group::SECP256R1),
        "CurveP384" => Some(kx_group::SECP384R1),
        "X25519" => Some(kx_group::X25519),
        "CurveP521" => None,
        _ => return None,
    })
}

/// Where a PEM value comes from: inline in the config, or a file next to it.
fn pem_source(
    inline_field: &str,
    inline: &str,
    file_field: &str,
    file: &str,
    dir: &Path,
    watched: &mut Vec<PathBuf>,
) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    match (inline.is_empty(), file.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => bail!(
            "tls_server_config.{inline_field}: {inline_field} and {file_field} cannot both be set"
        ),
        (false, true) => {
            Ok(Some((format!("tls_server_config.{inline_field}"), inline.as_bytes().to_vec())))
        }
        (true, false) => {
            let path = dir.join(file);
            watched.push(path.clone());
            let bytes = std::fs::read(&path).map_err(|e| {
                anyhow!("tls_server_config.{file_field}: cannot read {}: {e}", path.display())
            })?;
            Ok(Some((format!("tls_server_config.{file_field}"), bytes)))
        }
    }
}

fn parse_certs(field: &str, pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{field}: invalid PEM: {e}"))?;
    if certs.is_empty() {
        bail!("{field}: no PEM CERTIFICATE block found");
    }
    Ok(certs)
}

fn validate_tls(
    raw: RawTls,
    dir: &Path,
    http2: bool,
    watched: &mut Vec<PathBuf>,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    // Names are checked whether or not TLS is on, as Go checks them while decoding.
    let min = TlsVersion::parse("min_version", raw.min_version.as_ref(), TlsVersion::Tls12)?;
    let max = TlsVersion::parse("max_version", raw.max_version.as_ref(), TlsVersion::Tls13)?;
    let mut ciphers = Vec::new();
    for GoString(name) in raw.cipher_suites.iter().flatten() {
        let cipher = go_cipher(name).ok_or_else(|| {
            anyhow!("tls_server_config.cipher_suites: unknown cipher suite {name:?}")
        })?;
        ciphers.push((name.as_str(), cipher));
    }
    let mut curves = Vec::new();
    for GoString(name) in raw.curve_preferences.iter().flatten() {
        let curve = go_curve(name).ok_or_else(|| {
            anyhow!(
                "tls_server_config.curve_preferences: unknown curve {name:?} (expected CurveP256, CurveP384, CurveP521 or X25519)"
            )
        })?;
        curves.push((name.as_str(), curve));
    }

    // TLS is on as soon as any of these is set (the toolkit's TLSConfig.IsEnabled).
    let enabled = [
        &raw.cert,
        &raw.key,
        &raw.client_ca,
        &raw.cert_file,
        &raw.key_file,
        &raw.client_ca_file,
        &raw.client_auth_type,
    ]
    .iter()
    .any(|s| !s.0.is_empty());
    if !enabled {
        return Ok(None);
    }

    let cert = pem_source("cert", &raw.cert.0, "cert_file", &raw.cert_file.0, dir, watched)?;
    let key = pem_source("key", &raw.key.0, "key_file", &raw.key_file.0, dir, watched)?;
    let (Some((cert_field, cert_pem)), Some((key_field, key_pem))) = (cert, key) else {
        bail!(
            "tls_server_config: missing one of cert or cert_file, or one of key or key_file (both a certificate and its key are needed)"
        );
    };
    let chain = parse_certs(&cert_field, &cert_pem)?;
    // No details from the PEM parser here: they could quote bits of the key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow!("{key_field}: no PEM private key block found")
        }
        _ => anyhow!("{key_field}: invalid PEM private key"),
    })?;

    let client_auth = ClientAuth::parse(&raw.client_auth_type.0)?;
    let ca = pem_source(
        "client_ca",
        &raw.client_ca.0,
        "client_ca_file",
        &raw.client_ca_file.0,
        dir,
        watched,
    )?;
    let roots = match &ca {
        Some((field, pem)) => {
            if client_auth == ClientAuth::No {
                bail!(
                    "{field}: a client CA is set without a client_auth_type (client CA's have been configured without a Client Auth Policy)"
                );
            }
            let mut roots = RootCertStore::empty();
            let (_, ignored) = roots.add_parsable_certificates(parse_certs(field, pem)?);
            if ignored > 0 {
                bail!("{field}: {ignored} certificate(s) cannot be used as a trust anchor");
            }
            Some(roots)
        }
        None => None,
    };

    // Versions: rustls has TLS 1.2 and 1.3 only.
    if max < TlsVersion::Tls12 {
        bail!(
            "tls_server_config.max_version: {} is not supported: rustls implements only TLS12 and TLS13",
            max.name()
        );
    }
    if min > max {
        bail!("tls_server_config.min_version: {} is above max_version {}", min.name(), max.name());
    }
    if min < TlsVersion::Tls12 {
        log::warn!(
            "tls_server_config.min_version: {} is not supported by rustls, TLS12 is the minimum",
            min.name()
        );
    }
    let tls12_on = min <= TlsVersion::Tls12;
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if tls12_on {
        versions.push(&rustls::version::TLS12);
    }
    versions.push(&rustls::version::TLS13);

    let mut provider = ring::default_provider();
    if !ciphers.is_empty() {
        let mut tls12: Vec<SupportedCipherSuite> = Vec::new();
        let mut not_in_rustls = Vec::new();
        for (name, cipher) in &ciphers {
            match cipher {
                Cipher::Tls13 => {}
                Cipher::Tls12(suite) => {
                    if !tls12.iter().any(|s| s.suite() == suite.suite()) {
                        tls12.push(*suite);
                    }
                }
                Cipher::NotInRustls => not_in_rustls.push(*name),
            }
        }
        if !not_in_rustls.is_empty() && tls12_on {
            if tls12.is_empty() {
                bail!(
                    "tls_server_config.cipher_suites: none of the listed TLS 1.2 cipher suites is implemented by rustls (it has no CBC or RSA key exchange suites): {}; list an ECDHE GCM or CHACHA20 suite, or set min_version: TLS13",
                    not_in_rustls.join(", ")
                );
            }
            log::warn!(
                "tls_server_config.cipher_suites: ignoring {} (not implemented by rustls)",
                not_in_rustls.join(", ")
            );
        }
        // TLS 1.3 suites are not configurable (as in Go); the TLS 1.2 ones as listed.
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .collect();
        suites.extend(tls12);
        provider.cipher_suites = suites;
    }
    if !curves.is_empty() {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for (_, group) in &curves {
            if let Some(group) = group
                && !groups.iter().any(|g| g.name() == group.name())
            {
                groups.push(*group);
            }
        }
        if groups.is_empty() {
            bail!(
                "tls_server_config.curve_preferences: CurveP521 is not implemented by rustls (ring) and no other curve is listed; add X25519, CurveP256 or CurveP384"
            );
        }
        if curves.iter().any(|(_, g)| g.is_none()) {
            log::warn!(
                "tls_server_config.curve_preferences: ignoring CurveP521 (not implemented by rustls)"
            );
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    let verifier: Option<Arc<dyn ClientCertVerifier>> = match client_auth {
        ClientAuth::No => None,
        ClientAuth::Request | ClientAuth::RequireAny => Some(Arc::new(AnyClientCert {
            mandatory: client_auth == ClientAuth::RequireAny,
            hints: roots.as_ref().map(RootCertStore::subjects).unwrap_or_default(),
            algorithms: provider.signature_verification_algorithms,
        })),
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
            let Some(roots) = roots else {
                bail!(
                    "tls_server_config.client_ca_file: client_auth_type {} needs client_ca_file or client_ca (the system trust store is not used for client certificates)",
                    raw.client_auth_type.0
                );
            };
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let builder = if client_auth == ClientAuth::VerifyIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            Some(builder.build().map_err(|e| anyhow!("tls_server_config.client_ca_file: {e}"))?)
        }
    };
    let verifier = match raw.client_allowed_sans {
        None => verifier,
        Some(sans) => {
            let Some(inner) = verifier.filter(|_| {
                matches!(client_auth, ClientAuth::RequireAny | ClientAuth::RequireAndVerify)
            }) else {
                bail!(
                    "tls_server_config.client_allowed_sans: needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert"
                );
            };
            let verifier: Arc<dyn ClientCertVerifier> =
                Arc::new(AllowedSans { inner, sans: sans.into_iter().map(|s| s.0).collect() });
            Some(verifier)
        }
    };

    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| anyhow!("tls_server_config: {e}"))?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            anyhow!("{key_field}: the private key does not match the certificate in {cert_field}")
        }
        e => anyhow!("{key_field}: {e}"),
    })?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.is_none_or(|b| b.0);
    config.alpn_protocols =
        if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Some(Arc::new(config)))
}

// ---------------------------------------------------------------------------------------
// Client certificate verifiers.

/// `RequestClientCert` / `RequireAnyClientCert`: asks for a certificate, accepts any, and
/// checks only the handshake signature (the client owns the certificate's key).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: the inner verifier, then an exact match of one SAN.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity)
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if names.iter().any(|name| self.sans.contains(name)) {
            Ok(verified)
        } else {
            log::debug!("client certificate rejected: none of its SANs is in client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER TLV: (tag, contents, rest). Single-byte tags (all X.509 needs), definite lengths.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// The DNS, e-mail, IP and URI names in a certificate's subjectAltName extension, written
/// as Go writes them (IPs in their usual text form). `None` if the DER does not parse.
fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    const SEQUENCE: u8 = 0x30;
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
    let (SEQUENCE, cert, _) = der_tlv(cert)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = der_tlv(cert)? else {
        return None;
    };
    let mut names = Vec::new();
    while !tbs.is_empty() {
        let (tag, value, rest) = der_tlv(tbs)?;
        tbs = rest;
        if tag != 0xa3 {
            continue; // not [3] extensions
        }
        let (SEQUENCE, mut extensions, _) = der_tlv(value)? else {
            return None;
        };
        while !extensions.is_empty() {
            let (SEQUENCE, extension, rest) = der_tlv(extensions)? else {
                return None;
            };
            extensions = rest;
            let (0x06, oid, mut fields) = der_tlv(extension)? else {
                return None;
            };
            if oid != SAN_OID {
                continue;
            }
            let (mut tag, mut value, rest) = der_tlv(fields)?;
            if tag == 0x01 {
                // critical BOOLEAN
                fields = rest;
                (tag, value, _) = der_tlv(fields)?;
            }
            if tag != 0x04 {
                return None;
            }
            let (SEQUENCE, mut general_names, _) = der_tlv(value)? else {
                return None;
            };
            while !general_names.is_empty() {
                let (tag, value, rest) = der_tlv(general_names)?;
                general_names = rest;
                match tag {
                    // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]: IA5String
                    0x81 | 0x82 | 0x86 => {
                        names.push(String::from_utf8_lossy(value).into_owned());
                    }
                    // iPAddress [7]
                    0x87 => {
                        if let Ok(v4) = <[u8; 4]>::try_from(value) {
                            names.push(std::net::Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(value) {
                            names.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Some(names)
}

// ---------------------------------------------------------------------------------------
// Basic auth.

/// bcrypt is CPU-heavy: one verification at a time, as in the toolkit.
static BCRYPT_MUTEX: Mutex<()> = Mutex::new(());

/// `Authorization: Basic base64(user:password)` as Go's `Request.BasicAuth` reads it
/// (scheme case-insensitive, split at the first colon). Byte strings: neither needs UTF-8.
fn parse_basic_auth(header: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    const PREFIX: &str = "basic ";
    let scheme = header.get(..PREFIX.len())?;
    if !scheme.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64_decode(header.get(PREFIX.len()..)?)?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, password) = decoded.split_at(colon);
    Some((user.to_vec(), password.get(1..)?.to_vec()))
}

/// Standard base64 with padding (Go's `base64.StdEncoding`, which skips CR and LF).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes: Vec<u8> = text.bytes().filter(|&b| b != b'\r' && b != b'\n').collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.chunks_exact(4);
    let last = chunks.len().checked_sub(1);
    for (i, chunk) in chunks.enumerate() {
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && Some(i) != last) {
            return None;
        }
        let mut n: u32 = 0;
        for &c in chunk.iter().take(4 - pad) {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let [_, b0, b1, b2] = n.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..3 - pad]);
    }
    Some(out)
}

/// Good logins seen before, as keyed hashes of (user, bcrypt hash, password).
struct AuthCache {
    /// Random per-process key; `None` if the system RNG failed (then nothing is cached).
    key: Option<[u8; 32]>,
    sha256: Option<&'static dyn rustls::crypto::hash::Hash>,
    entries: Mutex<HashSet<Vec<u8>>>,
}

/// At most this many cached logins; the cache is emptied when full.
const AUTH_CACHE_SIZE: usize = 256;

fn auth_cache() -> &'static AuthCache {
    static CACHE: OnceLock<AuthCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut key = [0u8; 32];
        let key = ring::default_provider().secure_random.fill(&mut key).ok().map(|()| key);
        let sha256 = match ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
            SupportedCipherSuite::Tls13(suite) => Some(suite.common.hash_provider),
            _ => None,
        };
        AuthCache { key, sha256, entries: Mutex::new(HashSet::new()) }
    })
}

impl AuthCache {
    fn key(&self, user: &[u8], hash: &str, password: &[u8]) -> Option<Vec<u8>> {
        let (key, sha256) = (self.key?, self.sha256?);
        let mut ctx = sha256.start();
        ctx.update(&key);
        for part in [user, hash.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        Some(ctx.finish().as_ref().to_vec())
    }

    fn contains(&self, key: &[u8]) -> bool {
        lock(&self.entries).contains(key)
    }

    fn insert(&self, key: Vec<u8>) {
        let mut entries = lock(&self.entries);
        if entries.len() >= AUTH_CACHE_SIZE {
            entries.clear();
        }
        entries.insert(key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web-config").join(name)
    }

    fn basic(user: &str, password: &str) -> String {
        // A tiny encoder, only for tests.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let input = format!("{user}:{password}").into_bytes();
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b =
                [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        format!("Basic {out}")
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("1s"), Some(1_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_go_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_go_duration("2us"), Some(2_000));
        assert_eq!(parse_go_duration("2µs"), Some(2_000));
        assert_eq!(parse_go_duration("-1s"), Some(-1_000_000_000));
        assert_eq!(parse_go_duration("1"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration("9999999999h"), None);
    }

    #[test]
    fn base64_decodes_like_go() {
        assert_eq!(base64_decode("YWxpY2U6cHc=").unwrap(), b"alice:pw");
        assert_eq!(base64_decode("YTpi").unwrap(), b"a:b");
        assert_eq!(base64_decode("YTpiYw==").unwrap(), b"a:bc");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("YTpiYw").is_none(), "padding is required");
        assert!(base64_decode("YT=iYw==").is_none(), "padding only at the end");
        assert!(base64_decode("YTpi!w==").is_none());
        assert!(base64_decode("Y===").is_none());
    }

    #[test]
    fn basic_auth_header_parsing() {
        assert_eq!(
            parse_basic_auth(&basic("alice", "a:b")),
            Some((b"alice".to_vec(), b"a:b".to_vec()))
        );
        assert_eq!(parse_basic_auth("bAsIc YTpi"), Some((b"a".to_vec(), b"b".to_vec())));
        assert_eq!(parse_basic_auth("Bearer YTpi"), None);
        assert_eq!(parse_basic_auth("Basic"), None);
        assert_eq!(parse_basic_auth("Basic YWxpY2U="), None, "no colon");
        assert_eq!(parse_basic_auth("Basic ÿÿÿÿ"), None);
    }

    #[test]
    fn check_auth_accepts_only_good_logins() {
        let config = WebConfig::load(&fixture("basic-auth.yml")).unwrap();
        assert!(config.auth_required());
        let good = basic("alice", "alice-secret");
        assert_eq!(config.check_auth(Some(&good)), Auth::Allowed);
        // Second time from the cache.
        assert_eq!(config.check_auth(Some(&good)), Auth::Allowed);
        assert_eq!(
            config.check_auth(Some(&basic("bob", "bob-secret"))),
            Auth::Allowed,
            "a $2y$ hash"
        );
        assert_eq!(config.check_auth(Some(&basic("alice", "bob-secret"))), Auth::Denied);
        assert_eq!(config.check_auth(Some(&basic("alice", ""))), Auth::Denied);
        assert_eq!(config.check_auth(Some(&basic("mallory", "alice-secret"))), Auth::Denied);
        assert_eq!(config.check_auth(Some(&basic("", ""))), Auth::Denied);
        assert_eq!(config.check_auth(None), Auth::Denied);
        assert_eq!(config.check_auth(Some("Basic !!!")), Auth::Denied);
        // The dummy hash for unknown users has the cost of the configured ones.
        assert!(config.users.dummy_hash().starts_with("$2y$04$"));
        // No users: everything is allowed.
        let open = WebConfig::default();
        assert!(!open.auth_required());
        assert_eq!(open.check_auth(None), Auth::Allowed);
    }

    #[test]
    fn debug_output_has_no_hashes() {
        let config = WebConfig::load(&fixture("basic-auth.yml")).unwrap();
        let debug = format!("{config:?}");
        assert!(debug.contains("alice"));
        assert!(!debug.contains("$2b$"), "{debug}");
        assert!(!debug.contains("$2y$"), "{debug}");
    }

    #[test]
    fn subject_alt_names_of_the_client_cert() {
        let pem = std::fs::read(fixture("certs/client.pem")).unwrap();
        let cert = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(
            subject_alt_names(&cert).unwrap(),
            vec!["scraper.example".to_owned(), "scraper@example.com".to_owned()]
        );
        let pem = std::fs::read(fixture("certs/server.pem")).unwrap();
        let cert = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(
            subject_alt_names(&cert).unwrap(),
            vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()]
        );
        assert_eq!(subject_alt_names(b"\x30\x05\x30"), None);
        assert_eq!(subject_alt_names(b""), None);
    }

    #[test]
    fn rate_limiter_is_a_token_bucket() {
        let limiter = RateLimiter::new(Duration::from_secs(3600), 2);
        assert!(limiter.allow());
        assert!(limiter.allow());
        assert!(!limiter.allow());
        let config = WebConfig::load(&fixture("rate-limit.yml")).unwrap();
        let allowed = (0..20).filter(|_| config.rate_limit_allows()).count();
        // burst 10, one token per second: 10 (or 11 if a second passed meanwhile).
        assert!((10..=11).contains(&allowed), "{allowed}");
        assert!(WebConfig::default().rate_limit_allows());
    }

    #[test]
    fn tls_config_follows_the_file() {
        let config = WebConfig::load(&fixture("http2-off.yml")).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(!config.http2);
        let config = WebConfig::load(&fixture("tls-files.yml")).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(tls.ignore_client_order);
        assert_eq!(config.watched_files.len(), 2);
        let config = WebConfig::load(&fixture("prefer-server-cipher-suites.yml")).unwrap();
        assert!(!config.tls.as_ref().unwrap().ignore_client_order);
        let config = WebConfig::load(&fixture("headers.yml")).unwrap();
        assert!(config.tls.is_none());
        assert_eq!(config.headers.len(), 5);
        assert_eq!(
            config.headers[1],
            (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("deny"))
        );
    }

    #[test]
    fn watcher_reloads_and_keeps_the_last_good_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        let alice = "basic_auth_users:\n  alice: $2b$04$c79Hc5eFgoBvEZEmJUjNBem8y.F7JvNxDS5w8/b09W.31O8sjr58q\n";
        std::fs::write(&path, alice).unwrap();
        let watcher = WebConfigWatcher::with_recheck_interval(Some(&path), Duration::ZERO).unwrap();
        let first = watcher.current();
        assert_eq!(first.users.entries.len(), 1);
        assert!(Arc::ptr_eq(&first, &watcher.current()), "unchanged: same config");

        std::fs::write(&path, "basic_auth_users:\n  alice: broken\n").unwrap();
        let kept = watcher.current();
        assert!(Arc::ptr_eq(&first, &kept), "a bad file keeps the last good config");

        std::fs::write(
            &path,
            format!("{alice}  bob: $2y$04$wLud.nFOliSMT3RkwzKB6OBMDs7ByRWOs62XLbZZ2FHAlOU7rmbEG\n"),
        )
        .unwrap();
        let second = watcher.current();
        assert_eq!(second.users.entries.len(), 2);

        std::fs::remove_file(&path).unwrap();
        assert!(Arc::ptr_eq(&second, &watcher.current()), "a removed file keeps it too");

        let none = WebConfigWatcher::new(None).unwrap();
        assert!(none.current().tls.is_none());
        assert!(WebConfigWatcher::new(Some(&dir.path().join("missing.yml"))).is_err());
    }
}
