//! Captures: every request and response of one scrape, redacted, as a YAML or JSON file a
//! person can read before sending it, and that `device-sim replay` serves back as the device.
//!
//! The core runs a probe inside a task-local recorder ([`crate::Exporter::probe`] is the
//! same code as for serving); device code reports each exchange right where it talks to the
//! device with [`record_http`] / [`record_dbus`], and tells the redactor its secrets with
//! [`secret`] and any identifier the generic rules cannot see with [`identifier`]. Outside a
//! capture all of these return at once without calling their closure.
//!
//! Exchanges recorded from tasks the probe spawns are lost (the recorder is task-local):
//! record in the probe's own task.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

pub use crate::redact::Identifier;
use crate::redact::Redactor;

/// The version of the capture file format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The largest capture file [`Capture::from_slice`] reads.
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Where people report problems with a capture attached.
pub const REPORT_TO: &str = "https://example.invalid/uplink-exporters/issues";

/// One HTTP request and its response (or the error instead of a response).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturedHttp {
    /// `GET`, `POST`, …
    pub method: String,
    /// The full URL, or the path and query.
    pub url: String,
    /// Request headers that matter (see [`header_pairs`]), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers: Vec<(String, String)>,
    /// The request body as text (UTF-8, lossy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// The response status; absent when no response came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Response headers that matter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
    /// The response body as text (UTF-8, lossy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Why no (complete) response came: the error chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One D-Bus method call and its reply (or error).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturedDbus {
    /// The bus name called, e.g. `org.freedesktop.ModemManager1`.
    #[serde(default)]
    pub destination: String,
    /// The object path, e.g. `/org/freedesktop/ModemManager1/Modem/0`.
    pub path: String,
    /// The interface, e.g. `org.freedesktop.DBus.Properties`.
    pub interface: String,
    /// The method, e.g. `GetAll`.
    pub member: String,
    /// The arguments as JSON values (D-Bus variants as `{"type": signature, "value": …}`).
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
    /// The D-Bus signature of the reply body, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_signature: Option<String>,
    /// The reply body as JSON values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Vec<serde_json::Value>>,
    /// The error name and message, when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One exchange with the device, in the order they happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Exchange {
    Http(CapturedHttp),
    Dbus(CapturedDbus),
}

/// A capture file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// What was redacted and how to report it (the same text as the YAML comment block).
    #[serde(default)]
    pub notice: Vec<String>,
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The exporter binary, e.g. `linkhub-exporter`.
    pub exporter: String,
    /// Its version.
    pub version: String,
    /// The metric namespace, e.g. `linkhub`.
    pub namespace: String,
    /// The target scraped (redacted like everything else).
    pub target: String,
    /// When the scrape started (UTC, RFC 3339).
    pub taken_at: String,
    /// The kinds of values replaced by placeholders.
    #[serde(default)]
    pub redacted: Vec<String>,
    /// The exchanges, in order.
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
    /// The exposition of the scrape, redacted the same way (for comparing a replay).
    #[serde(default)]
    pub exposition: String,
}

/// The file formats [`Capture::to_text`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureFormat {
    #[default]
    Yaml,
    Json,
}

impl Capture {
    /// Reads a capture file (YAML or JSON, told apart by the first character).
    pub fn from_slice(bytes: &[u8]) -> anyhow::Result<Capture> {
        anyhow::ensure!(
            bytes.len() <= MAX_FILE_BYTES,
            "the capture file is larger than {MAX_FILE_BYTES} bytes"
        );
        let text = std::str::from_utf8(bytes)
            .map_err(|e| anyhow::anyhow!("the capture file is not UTF-8: {e}"))?;
        let capture: Capture = if text.trim_start().starts_with('{') {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow::anyhow!("invalid capture file (JSON): {e}"))?
        } else {
            crate::config::parse_yaml("capture file", text)?
        };
        anyhow::ensure!(
            capture.format == FORMAT_VERSION,
            "capture file format {} is not supported (this build reads format {FORMAT_VERSION})",
            capture.format
        );
        for (i, exchange) in capture.exchanges.iter().enumerate() {
            match exchange {
                Exchange::Http(h) => anyhow::ensure!(
                    !h.method.is_empty() && !h.url.is_empty(),
                    "exchange {i}: an HTTP exchange needs a method and a url"
                ),
                Exchange::Dbus(d) => anyhow::ensure!(
                    !d.path.is_empty() && !d.member.is_empty(),
                    "exchange {i}: a D-Bus exchange needs a path and a member"
                ),
            }
        }
        Ok(capture)
    }

    /// The file text: YAML with the notice as a leading comment block, or JSON.
    pub fn to_text(&self, format: CaptureFormat) -> anyhow::Result<String> {
        match format {
            CaptureFormat::Json => {
                let mut text = serde_json::to_string_pretty(self)?;
                text.push('\n');
                Ok(text)
            }
            CaptureFormat::Yaml => {
                let mut text = String::new();
                for line in &self.notice {
                    let _ = writeln!(text, "# {line}");
                }
                text.push_str(&serde_yaml_ng::to_string(self)?);
                Ok(text)
            }
        }
    }

    /// The HTTP exchanges, in order.
    pub fn http(&self) -> impl Iterator<Item = &CapturedHttp> {
        self.exchanges.iter().filter_map(|e| match e {
            Exchange::Http(h) => Some(h),
            Exchange::Dbus(_) => None,
        })
    }
}

/// The exposition without the samples that differ from run to run (durations), for comparing
/// a replay with the live scrape it was captured from.
pub fn comparable(exposition: &str) -> String {
    exposition
        .lines()
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            // Durations differ from run to run: gauges, and histograms' buckets, sum, count.
            let header = l.starts_with('#') && l.contains("_duration_seconds");
            !(header || name.contains("_duration_seconds"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What a capture collects while the probe runs.
#[derive(Debug, Default)]
pub(crate) struct Recording {
    exchanges: Vec<Exchange>,
    secrets: Vec<String>,
    identifiers: Vec<(Identifier, String)>,
}

/// A recorder shared between the probe's task and the core.
pub(crate) type Recorder = Arc<Mutex<Recording>>;

tokio::task_local! {
    static RECORDER: Recorder;
}

fn with_recording(f: impl FnOnce(&mut Recording)) {
    let _ = RECORDER.try_with(|r| f(&mut r.lock().unwrap_or_else(PoisonError::into_inner)));
}

/// Whether the current probe is being captured.
pub fn active() -> bool {
    RECORDER.try_with(|_| ()).is_ok()
}

/// Records one HTTP exchange (built only while capturing).
pub fn record_http(exchange: impl FnOnce() -> CapturedHttp) {
    if active() {
        let exchange = exchange();
        with_recording(|r| r.exchanges.push(Exchange::Http(exchange)));
    }
}

/// Records one D-Bus call (built only while capturing).
pub fn record_dbus(call: impl FnOnce() -> CapturedDbus) {
    if active() {
        let call = call();
        with_recording(|r| r.exchanges.push(Exchange::Dbus(call)));
    }
}

/// Tells the redactor a secret this probe uses; it and its base64, hex and percent-encoded
/// forms are replaced wherever they appear.
pub fn secret(secret: &crate::Secret) {
    secret_str(secret.expose());
}

/// Like [`secret`] for a derived secret string (e.g. an obfuscated password form or a
/// session token the exporter computed).
pub fn secret_str(value: &str) {
    if active() && !value.is_empty() {
        with_recording(|r| r.secrets.push(value.to_owned()));
    }
}

/// Tells the redactor an identifier the generic rules cannot recognise (a device name from a
/// positional JavaScript array, a serial without a key).
pub fn identifier(kind: Identifier, value: &str) {
    if active() && !value.trim().is_empty() {
        with_recording(|r| r.identifiers.push((kind, value.to_owned())));
    }
}

/// The headers worth keeping in a capture (everything but transport noise), as pairs.
pub fn header_pairs(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    const NOISE: &[&str] = &[
        "date",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "server",
        "user-agent",
        "accept-encoding",
        "host",
        "accept",
        "vary",
        "etag",
        "last-modified",
        "cache-control",
        "expires",
        "pragma",
        "x-frame-options",
        "x-content-type-options",
        "x-xss-protection",
        "strict-transport-security",
        "content-security-policy",
    ];
    headers
        .iter()
        .filter(|(name, _)| !NOISE.contains(&name.as_str()))
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect()
}

/// Runs `fut` with a recorder in scope.
pub(crate) async fn scope<F: std::future::Future>(recorder: Recorder, fut: F) -> F::Output {
    RECORDER.scope(recorder, fut).await
}

/// A new, empty recorder.
pub(crate) fn recorder() -> Recorder {
    Arc::new(Mutex::new(Recording::default()))
}

/// Everything the core knows about the capture besides the recording.
#[derive(Debug)]
pub(crate) struct Meta<'a> {
    pub(crate) info: crate::ExporterInfo,
    pub(crate) namespace: &'static str,
    pub(crate) target: &'a str,
    pub(crate) started: SystemTime,
    pub(crate) exposition: &'a str,
}

/// Redacts the recording and builds the capture file's content.
pub(crate) fn build(recorder: &Recorder, meta: &Meta<'_>) -> Capture {
    let recording = std::mem::take(&mut *recorder.lock().unwrap_or_else(PoisonError::into_inner));
    redact(recording, meta)
}

fn redact(recording: Recording, meta: &Meta<'_>) -> Capture {
    let mut r = Redactor::new();
    for s in &recording.secrets {
        r.add_secret(s);
    }
    for (kind, value) in &recording.identifiers {
        r.add_identifier(*kind, value);
    }
    // Pass 1: every text of the capture (of the exposition only the samples: HELP texts are
    // the exporter's own prose).
    let samples = exposition_samples(meta.exposition);
    let mut texts: Vec<&str> = vec![meta.target, &samples];
    for exchange in &recording.exchanges {
        match exchange {
            Exchange::Http(h) => {
                texts.push(&h.url);
                texts.extend(h.request_body.as_deref());
                texts.extend(h.response_body.as_deref());
                texts.extend(h.error.as_deref());
                for (_, v) in h.request_headers.iter().chain(&h.response_headers) {
                    texts.push(v);
                }
            }
            Exchange::Dbus(_) => {}
        }
    }
    for t in &texts {
        r.discover(t);
    }
    let mut dbus_texts = Vec::new();
    for exchange in &recording.exchanges {
        if let Exchange::Dbus(d) = exchange {
            dbus_texts.push(serde_json::to_string(d).unwrap_or_default());
        }
    }
    for t in &dbus_texts {
        r.discover(t);
    }
    // Pass 2.
    let headers = |pairs: &[(String, String)]| -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.clone(), r.header(k, v))).collect()
    };
    let opt = |t: &Option<String>| t.as_deref().map(|t| r.apply(t));
    let exchanges = recording
        .exchanges
        .iter()
        .map(|e| match e {
            Exchange::Http(h) => Exchange::Http(CapturedHttp {
                method: h.method.clone(),
                url: r.apply(&h.url),
                request_headers: headers(&h.request_headers),
                request_body: opt(&h.request_body),
                status: h.status,
                response_headers: headers(&h.response_headers),
                response_body: opt(&h.response_body),
                error: opt(&h.error),
            }),
            Exchange::Dbus(d) => {
                // Redact the call as its JSON text, so strings inside variants are reached too.
                let text = serde_json::to_string(d).unwrap_or_default();
                let redacted = r.apply(&text);
                Exchange::Dbus(serde_json::from_str(&redacted).unwrap_or_else(|_| CapturedDbus {
                    destination: d.destination.clone(),
                    path: r.apply(&d.path),
                    interface: d.interface.clone(),
                    member: d.member.clone(),
                    error: Some("(this call could not be redacted and was left out)".to_owned()),
                    ..CapturedDbus::default()
                }))
            }
        })
        .collect();
    let redacted: Vec<String> = r.found().iter().map(|k| describe(*k).to_owned()).collect();
    Capture {
        notice: notice(meta.info),
        format: FORMAT_VERSION,
        exporter: meta.info.binary.to_owned(),
        version: meta.info.version.to_owned(),
        namespace: meta.namespace.to_owned(),
        target: r.apply(meta.target),
        taken_at: rfc3339(meta.started),
        redacted,
        exchanges,
        exposition: meta
            .exposition
            .split_inclusive('\n')
            .map(|line| if line.starts_with('#') { line.to_owned() } else { r.apply(line) })
            .collect(),
    }
}

/// The sample lines of an exposition.
fn exposition_samples(exposition: &str) -> String {
    exposition.split_inclusive('\n').filter(|l| !l.starts_with('#')).collect()
}

fn describe(kind: Identifier) -> &'static str {
    match kind {
        Identifier::Secret => "secrets (passwords, tokens, API keys, cookies)",
        Identifier::Mac => "MAC addresses",
        Identifier::Ipv4 => "IPv4 addresses",
        Identifier::Ipv6 => "IPv6 addresses",
        Identifier::Number => "IMEI, IMSI, ICCID, EID and phone numbers",
        Identifier::Name => "names (devices, hosts, gateways, users)",
        Identifier::Ssid => "Wi-Fi network names",
        Identifier::Id => "gateway and device ids",
        Identifier::Serial => "serial numbers and EUIs",
        Identifier::Position => "GPS positions",
    }
}

fn notice(info: crate::ExporterInfo) -> Vec<String> {
    vec![
        format!("Capture of one scrape by {} {}.", info.binary, info.version),
        "Redacted before writing: passwords, tokens, API keys, cookies and the login fields,"
            .to_owned(),
        "IMEI, IMSI, ICCID, EID, phone numbers, MAC and IP addresses, serial numbers, SSIDs,"
            .to_owned(),
        "device and host names, gateway EUIs and ids, GPS positions. Each is replaced by a"
            .to_owned(),
        "placeholder of the same shape (the same value always by the same placeholder).".to_owned(),
        "Read the file before sending it: anything else you consider private, replace it"
            .to_owned(),
        "consistently by hand. Attach it to a report at".to_owned(),
        format!("{REPORT_TO} (see docs/troubleshooting.md)."),
    ]
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `time` (UTC).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_733_313_600);
        assert_eq!(rfc3339(t), "2024-12-04T12:00:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[tokio::test]
    async fn recording_is_a_no_op_outside_a_capture() {
        let mut built = false;
        record_http(|| {
            built = true;
            CapturedHttp::default()
        });
        assert!(!built);
        assert!(!active());
        let rec = recorder();
        scope(Arc::clone(&rec), async {
            assert!(active());
            record_http(|| CapturedHttp {
                method: "GET".to_owned(),
                url: "/x".to_owned(),
                ..CapturedHttp::default()
            });
        })
        .await;
        assert_eq!(rec.lock().unwrap().exchanges.len(), 1);
    }

    #[test]
    fn comparable_drops_durations() {
        let text = "# HELP a_duration_seconds D.\n# TYPE a_duration_seconds gauge\n\
                    a_duration_seconds 0.1\na_up 1\nb_duration_seconds{c=\"x\"} 2\n\
                    c_duration_seconds_bucket{le=\"1\"} 3\nc_duration_seconds_sum 0.2\n";
        assert_eq!(comparable(text), "a_up 1\n");
    }
}
