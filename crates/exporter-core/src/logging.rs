//! A tiny `log` backend: logfmt (default) or JSON lines on stderr, with the record's
//! key-value pairs (`log::warn!(collector = name; "collector failed")`).

use std::{
    fmt::Write as _,
    io::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::LogFormat;

/// Installs the logger (once; later calls only change the level).
pub fn init(level: LevelFilter, format: LogFormat) {
    static LOGGER_LOGFMT: Logger = Logger { format: LogFormat::Logfmt };
    static LOGGER_JSON: Logger = Logger { format: LogFormat::Json };
    let logger: &'static Logger = match format {
        LogFormat::Logfmt => &LOGGER_LOGFMT,
        LogFormat::Json => &LOGGER_JSON,
    };
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

/// Formats one log line (without the newline). Public for tests of other crates' logging.
pub fn format_line(format: LogFormat, ts: SystemTime, record: &Record<'_>) -> String {
    let mut fields: Vec<(String, String)> = vec![
        ("ts".to_owned(), rfc3339(ts)),
        ("level".to_owned(), level_name(record.level()).to_owned()),
        ("module".to_owned(), record.target().to_owned()),
        ("msg".to_owned(), record.args().to_string()),
    ];
    let mut visitor = Collect(&mut fields);
    let _ = record.key_values().visit(&mut visitor);
    match format {
        LogFormat::Logfmt => {
            let mut out = String::new();
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&logfmt_key(key));
                out.push('=');
                out.push_str(&logfmt_value(value));
            }
            out
        }
        LogFormat::Json => {
            let mut out = String::from("{");
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{}:{}",
                    serde_json::Value::from(key.as_str()),
                    serde_json::Value::from(value.as_str())
                );
            }
            out.push('}');
            out
        }
    }
}

struct Logger {
    format: LogFormat,
}

/// Dependencies that log a lot at debug level; only their warnings are shown.
const NOISY: &[&str] = &[
    "rustls",
    "rustls_platform_verifier",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "tokio_rustls",
    "mio",
    "want",
];

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        if metadata.level() > log::max_level() {
            return false;
        }
        let target = metadata.target();
        let noisy = NOISY.iter().any(|n| {
            target.strip_prefix(n).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        });
        !noisy || metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = format_line(self.format, SystemTime::now(), record);
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl<'kvs> log::kv::VisitSource<'kvs> for Collect<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        // A pair named like a fixed field (ts, level, module, msg) or an earlier pair gets a
        // prefix, so no line has a key twice.
        let mut key = key.as_str().to_owned();
        while self.0.iter().any(|(k, _)| *k == key) {
            key.insert_str(0, "kv_");
        }
        self.0.push((key, value.to_string()));
        Ok(())
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

fn logfmt_key(key: &str) -> String {
    let key: String = key
        .chars()
        .map(
            |c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' { c } else { '_' },
        )
        .collect();
    if key.is_empty() { "_".to_owned() } else { key }
}

fn logfmt_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value.chars().all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && c != '\u{7f}');
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `2026-11-21T10:00:00.123Z`.
fn rfc3339(ts: SystemTime) -> String {
    let dur = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = dur.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        dur.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn line(format: LogFormat, msg: &str, kvs: &[(&str, &str)]) -> String {
        let ts = UNIX_EPOCH + Duration::from_millis(1_763_719_200_123);
        let kvs: Vec<(&str, log::kv::Value<'_>)> =
            kvs.iter().map(|(k, v)| (*k, log::kv::Value::from(*v))).collect();
        format_line(
            format,
            ts,
            &Record::builder()
                .level(Level::Warn)
                .target("scrape")
                .args(format_args!("{msg}"))
                .key_values(&kvs)
                .build(),
        )
    }

    #[test]
    fn logfmt_quotes_and_escapes() {
        let got = line(
            LogFormat::Logfmt,
            "collector failed",
            &[("collector", "network"), ("err", "GetNetworkInfo: a=\"b\"\nc")],
        );
        assert_eq!(
            got,
            "ts=2025-11-21T10:00:00.123Z level=warn module=scrape msg=\"collector failed\" \
             collector=network err=\"GetNetworkInfo: a=\\\"b\\\"\\nc\""
        );
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a\\b"), "\"a\\\\b\"");
    }

    #[test]
    fn json_lines_parse_back() {
        let got = line(
            LogFormat::Json,
            "it \"broke\"",
            &[("target", "http://x/\u{1}"), ("msg", "a pair named msg")],
        );
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "it \"broke\"");
        assert_eq!(v["target"], "http://x/\u{1}");
        assert_eq!(v["module"], "scrape");
        assert_eq!(v["kv_msg"], "a pair named msg");
        assert_eq!(v["ts"], "2025-11-21T10:00:00.123Z");
        assert!(got.starts_with("{\"ts\":"), "{got}");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31T23:59:59.000Z"
        );
    }
}
