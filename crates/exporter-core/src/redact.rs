//! Redaction of a capture before anything is written: secrets (and their base64, hex and
//! percent-encoded forms), values under sensitive keys (JSON, XML, JavaScript, query strings,
//! exposition labels) and identifiers recognised by their shape (MAC, IPv4, IPv6, IMEI/IMSI,
//! ICCID, EID, E.164 numbers), each replaced by a stable placeholder of the same shape.
//!
//! It works in two passes over every text of a capture: [`Redactor::discover`] collects the
//! values to hide into one map (so the same value gets the same placeholder in a request, a
//! response and the exposition), then [`Redactor::apply`] replaces every occurrence.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
};

/// What kind of value a placeholder stands for (it decides the placeholder's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// A password, token, API key, cookie value: `redacted-N`.
    Secret,
    /// A MAC address: `02:00:00:00:00:NN`, same separator and case.
    Mac,
    /// An IPv4 address: one in the documentation ranges (192.0.2.0/24, 198.51.100.0/24, …).
    Ipv4,
    /// An IPv6 address: one in 2001:db8::/32.
    Ipv6,
    /// A number (IMEI, IMSI, ICCID, EID, phone number): the same count of digits.
    Number,
    /// A name a person chose (device, host, gateway name, user): `device-N`.
    Name,
    /// A Wi-Fi network name: `ssid-N`.
    Ssid,
    /// A gateway or device id: `gateway-N`.
    Id,
    /// A serial number or EUI: the same length and character classes.
    Serial,
    /// A GPS coordinate: the same sign, digit count and decimal point.
    Position,
}

/// The per-capture map from each hidden value to its placeholder.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Secret forms, longest first after [`Redactor::seal`]; replaced anywhere.
    secrets: Vec<String>,
    map: HashMap<String, String>,
    counters: HashMap<Identifier, u64>,
    /// The kinds found, for the notice.
    found: Vec<Identifier>,
}

impl Redactor {
    /// A redactor with nothing to hide yet.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Hides `secret` and its base64 (standard and URL-safe, with and without padding),
    /// hex and percent-encoded forms, anywhere they appear.
    pub fn add_secret(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let bytes = secret.as_bytes();
        let mut forms = vec![
            secret.to_owned(),
            base64(bytes, STANDARD, true),
            base64(bytes, STANDARD, false),
            base64(bytes, URL_SAFE, true),
            base64(bytes, URL_SAFE, false),
            hex(bytes, false),
            hex(bytes, true),
            percent_encode(secret),
        ];
        if let Ok(json) = serde_json::to_string(secret) {
            forms.push(json.trim_matches('"').to_owned());
        }
        for form in forms {
            if !form.is_empty() && !self.secrets.contains(&form) {
                self.found_kind(Identifier::Secret);
                self.secrets.push(form);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Hides `value` (an identifier the exporter knows, e.g. a device name from a positional
    /// JavaScript array) everywhere, as a placeholder of `kind`.
    pub fn add_identifier(&mut self, kind: Identifier, value: &str) {
        if value.trim().is_empty() || self.map.contains_key(value) {
            return;
        }
        let placeholder = self.placeholder(kind, value);
        self.map.insert(value.to_owned(), placeholder);
    }

    /// The kinds of values hidden so far.
    pub fn found(&self) -> &[Identifier] {
        &self.found
    }

    /// Pass 1: collects the sensitive values of `text` (under sensitive keys, or by shape).
    pub fn discover(&mut self, text: &str) {
        for (key, start, end, bare) in key_values(text) {
            let (start, end) = unescaped_span(text, start, end);
            let Some(value) = text.get(start..end) else { continue };
            match effective_kind(&key, value, bare) {
                Some(Identifier::Secret) | None => {}
                Some(kind) => self.add_identifier(kind, value),
            }
        }
        for (start, end, kind) in shapes(text) {
            if let Some(value) = text.get(start..end) {
                self.add_identifier(kind, value);
            }
        }
    }

    /// Pass 2: `text` with every secret form and every collected value replaced.
    pub fn apply(&self, text: &str) -> String {
        // (start, end, replacement); overlapping matches keep the earliest, then the longest.
        let mut hits: Vec<(usize, usize, String)> = Vec::new();
        for (n, form) in self.secrets.iter().enumerate() {
            if form.len() < 3 {
                continue;
            }
            for (at, _) in text.match_indices(form.as_str()) {
                hits.push((at, at + form.len(), format!("redacted-{}", secret_number(n))));
            }
        }
        for (key, start, end, bare) in key_values(text) {
            let (start, end) = unescaped_span(text, start, end);
            let Some(value) = text.get(start..end) else { continue };
            match effective_kind(&key, value, bare) {
                None => {}
                Some(Identifier::Secret) => hits.push((start, end, "redacted".to_owned())),
                Some(_) => {
                    if let Some(placeholder) = self.map.get(value) {
                        hits.push((start, end, placeholder.clone()));
                    }
                }
            }
        }
        for (raw, placeholder) in &self.map {
            if raw.len() < 3 {
                continue;
            }
            for (at, _) in text.match_indices(raw.as_str()) {
                let end = at + raw.len();
                if bounded(text, at, end) {
                    hits.push((at, end, placeholder.clone()));
                }
            }
        }
        hits.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for (start, end, replacement) in hits {
            if start < pos {
                continue;
            }
            out.push_str(text.get(pos..start).unwrap_or_default());
            out.push_str(&replacement);
            pos = end;
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        out
    }

    /// One header value: credentials and cookies hidden whole (cookie names kept), other
    /// values redacted as text.
    pub fn header(&self, name: &str, value: &str) -> String {
        let lower = name.to_ascii_lowercase();
        if lower == "cookie" || lower == "set-cookie" {
            return value
                .split(';')
                .enumerate()
                .map(|(i, part)| {
                    let part = part.trim();
                    match part.split_once('=') {
                        // The first pair is the cookie; the rest of Set-Cookie are attributes.
                        Some((k, _)) if i == 0 || lower == "cookie" => format!("{k}=redacted"),
                        _ => self.apply(part),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
        if lower == "authorization" || lower == "proxy-authorization" {
            return match value.split_once(' ') {
                Some((scheme, _)) => format!("{scheme} redacted"),
                None => "redacted".to_owned(),
            };
        }
        if sensitive_header(&lower) {
            return "redacted".to_owned();
        }
        self.apply(value)
    }

    fn found_kind(&mut self, kind: Identifier) {
        if !self.found.contains(&kind) {
            self.found.push(kind);
        }
    }

    fn placeholder(&mut self, kind: Identifier, value: &str) -> String {
        self.found_kind(kind);
        let counter = self.counters.entry(kind).or_insert(0);
        *counter += 1;
        let n = *counter;
        match kind {
            Identifier::Secret => format!("redacted-{n}"),
            Identifier::Mac => {
                let sep = if value.contains('-') { '-' } else { ':' };
                let text = format!(
                    "02{sep}00{sep}00{sep}{:02x}{sep}{:02x}{sep}{:02x}",
                    (n >> 16) & 0xff,
                    (n >> 8) & 0xff,
                    n & 0xff
                );
                if value.chars().any(|c| c.is_ascii_uppercase()) {
                    text.to_ascii_uppercase()
                } else {
                    text
                }
            }
            Identifier::Ipv4 => {
                let ranges = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
                let i = usize::try_from((n - 1) / 254).unwrap_or(0) % ranges.len();
                let host = u8::try_from((n - 1) % 254 + 1).unwrap_or(1);
                let [a, b, c] = ranges.get(i).copied().unwrap_or([192, 0, 2]);
                Ipv4Addr::new(a, b, c, host).to_string()
            }
            Identifier::Ipv6 => {
                let low = u16::try_from(n & 0xffff).unwrap_or(1);
                let high = u16::try_from((n >> 16) & 0xffff).unwrap_or(0);
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, high, low).to_string()
            }
            Identifier::Number => number_placeholder(value, n),
            Identifier::Position => position_placeholder(value, n),
            Identifier::Serial => serial_placeholder(value, n),
            Identifier::Name => format!("device-{n}"),
            Identifier::Ssid => format!("ssid-{n}"),
            Identifier::Id => format!("gateway-{n}"),
        }
    }
}

/// The part of a value span before its first escape sequence (`"8c:dc:…:b5\\n"` from
/// firmware that ends values with a newline), so a placeholder never swallows half an
/// escape and the text stays valid JSON.
fn unescaped_span(text: &str, start: usize, end: usize) -> (usize, usize) {
    match text.get(start..end).and_then(|v| v.find('\\')) {
        Some(i) => (start, start + i),
        None => (start, end),
    }
}

/// Values that mean "no value" (`N/A`, `NULL`, `-`…): not identifiers, and replacing them
/// would make a replay show a reading the live scrape left out.
fn is_no_value(value: &str) -> bool {
    let v = value.trim().trim_matches(['\'', '"']).to_ascii_lowercase();
    matches!(
        v.as_str(),
        "" | "n/a" | "na" | "null" | "none" | "nil" | "unknown" | "-" | "--" | "undefined"
    )
}

/// Secret placeholders are numbered by the secret's position in the list of forms (stable
/// within one capture).
fn secret_number(n: usize) -> usize {
    n + 1
}

/// Whether the match `start..end` is a whole token: no letter or digit right before or after
/// (when the value itself starts or ends with one).
fn bounded(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let first = bytes.get(start);
    let last = end.checked_sub(1).and_then(|i| bytes.get(i));
    let before = start.checked_sub(1).and_then(|i| bytes.get(i));
    (!alnum(first) || !alnum(before)) && (!alnum(last) || !alnum(bytes.get(end)))
}

/// A number of the same digit count: the sign, `+` and other characters are kept, the first
/// digit is never 0 (so a bare JSON number stays valid), ICCID and EID keep their `89` prefix.
fn number_placeholder(value: &str, n: u64) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let keep = if digits >= 19 && value.trim_start_matches('+').starts_with("89") { 2 } else { 0 };
    let mut fill: Vec<char> = format!("{n}").chars().collect();
    let free = digits.saturating_sub(keep);
    let mut generated: Vec<char> = vec!['0'; free.saturating_sub(fill.len())];
    generated.append(&mut fill);
    if let Some(first) = generated.first_mut()
        && *first == '0'
        && keep == 0
    {
        *first = '1';
    }
    // The counter can only outgrow the digit count after 10^digits values.
    let skip = generated.len().saturating_sub(free);
    let mut generated = generated.into_iter().skip(skip);
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen <= keep { c } else { generated.next().unwrap_or('0') }
            } else {
                c
            }
        })
        .collect()
}

/// A coordinate of the same shape: every digit 0 but the last, which carries the counter.
fn position_placeholder(value: &str, n: u64) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let counter: Vec<char> = format!("{n}").chars().collect();
    let mut tail = counter.into_iter().rev().take(digits).collect::<Vec<_>>().into_iter();
    let mut out: Vec<char> = value.chars().rev().collect();
    for c in &mut out {
        if c.is_ascii_digit() {
            *c = tail.next().unwrap_or('0');
        }
    }
    out.reverse();
    // A bare JSON number may not start with 0 followed by a digit.
    let first = out.iter().position(char::is_ascii_digit);
    if let Some(i) = first
        && out.get(i + 1).is_some_and(char::is_ascii_digit)
        && let Some(c) = out.get_mut(i)
        && *c == '0'
    {
        *c = '1';
    }
    out.into_iter().collect()
}

/// The same length and character classes (digit, hex, upper, lower), the counter in the
/// last positions.
fn serial_placeholder(value: &str, n: u64) -> String {
    let hex = value.len() >= 8 && value.chars().all(|c| c.is_ascii_hexdigit());
    let upper = value.chars().any(|c| c.is_ascii_uppercase());
    let counter: Vec<char> = format!("{n}").chars().rev().collect();
    let mut counter = counter.into_iter();
    let mut out: Vec<char> = Vec::with_capacity(value.len());
    for c in value.chars().rev() {
        let alnum = c.is_ascii_alphanumeric();
        let next = if alnum { counter.next() } else { None };
        out.push(match next {
            Some(d) => d,
            None if c.is_ascii_digit() || (hex && alnum) => '0',
            None if c.is_ascii_uppercase() || (alnum && upper && hex) => 'X',
            None if c.is_ascii_lowercase() => 'x',
            None => c,
        });
    }
    out.reverse();
    let text: String = out.into_iter().collect();
    if hex && !upper { text.to_ascii_lowercase() } else { text }
}

/// Headers whose whole value is a credential.
fn sensitive_header(lower: &str) -> bool {
    let squashed: String = lower.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    ["token", "key", "secret", "password", "session", "auth", "csrf", "xsrf"]
        .iter()
        .any(|w| squashed.contains(w))
}

/// The kind of placeholder for `value` under `key`: an address keeps an address's shape
/// under any sensitive key, and a bare (unquoted) value keeps a number's shape, so that a
/// JSON number stays a number; bare `null`, `true` and `false` are left alone.
fn effective_kind(key: &str, value: &str, bare: bool) -> Option<Identifier> {
    if bare && matches!(value, "null" | "true" | "false" | "undefined" | "NaN") {
        return None;
    }
    let kind = classify_key(key, value)?;
    if let Some(shape) = shape_of(value) {
        return Some(shape);
    }
    let numeric = bare && value.parse::<f64>().is_ok();
    Some(match kind {
        Identifier::Position => kind,
        _ if numeric => Identifier::Number,
        _ => kind,
    })
}

/// What a key says about its value, or `None` for a key that is not sensitive.
fn classify_key(key: &str, value: &str) -> Option<Identifier> {
    let k: String = key
        .rsplit(':')
        .next()
        .unwrap_or(key)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let k = k.to_ascii_lowercase();
    if value.is_empty() || k.is_empty() {
        return None;
    }
    let ends = |words: &[&str]| words.iter().any(|w| k.ends_with(w));
    let is = |words: &[&str]| words.iter().any(|w| k == *w);
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let numeric = value.chars().all(|c| c.is_ascii_digit() || c == '+' || c == ' ' || c == '-');
    if is(&["method", "jsonrpc", "filename", "modelname", "productname", "manufacturer"]) {
        return None;
    }
    if ends(&[
        "password",
        "passwd",
        "pwd",
        "token",
        "apikey",
        "secret",
        "cookie",
        "sessionid",
        "authorization",
        "credential",
        "credentials",
        "encryptkey",
        "verificationkey",
    ]) || is(&["key", "auth", "sid"])
    {
        return Some(Identifier::Secret);
    }
    if is_no_value(value) {
        return None;
    }
    if ends(&["imei", "imsi", "iccid", "eid", "msisdn", "meid", "esn"]) {
        return Some(if numeric { Identifier::Number } else { Identifier::Serial });
    }
    if ends(&["phonenumber", "ownnumbers", "ownnumber", "number", "phone"])
        && numeric
        && digits >= 6
    {
        return Some(Identifier::Number);
    }
    if ends(&["mac", "macaddress", "macaddr", "bssid", "hwaddr", "hwaddress"]) {
        return Some(Identifier::Serial);
    }
    if ends(&["ssid", "essid", "wifiname", "networkname"]) {
        return Some(Identifier::Ssid);
    }
    if ends(&["serial", "serialnumber", "serialno"]) || is(&["sn"]) {
        return Some(if numeric { Identifier::Number } else { Identifier::Serial });
    }
    if ends(&["eui", "gatewayeui", "deveui", "joineui"]) {
        return Some(Identifier::Serial);
    }
    if ends(&["gatewayid", "gatewayids", "deviceid", "userid", "organizationid", "applicationid"]) {
        return Some(Identifier::Id);
    }
    if is(&["latitude", "longitude", "altitude", "lat", "lon", "lng", "long", "alt"]) {
        return value
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
            .then_some(Identifier::Position);
    }
    if ends(&["name", "hostname", "username", "user", "alias", "owner", "description"]) {
        // An error or enum name (`api_key_expired`, `not_connected`) is vocabulary, not a
        // person's or a device's name; replays need it to behave as the original.
        if k == "name" && is_snake_identifier(value) {
            return None;
        }
        return Some(Identifier::Name);
    }
    None
}

/// `lower_case_words_with_underscores` (at least one underscore).
fn is_snake_identifier(value: &str) -> bool {
    value.contains('_')
        && !value.starts_with('_')
        && !value.ends_with('_')
        && !value.contains("__")
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && value.starts_with(|c: char| c.is_ascii_lowercase())
}

/// `(key, value start, value end, bare)` for every `key: value`, `key = value`, `"key": "value"`,
/// `key="value"` (attributes, labels, query strings) and `<Key>value</Key>` in `text`.
fn key_values(text: &str) -> Vec<(String, usize, usize, bool)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let is_key = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        // An XML element: `<Key ...>value<`.
        if b == b'<' {
            let start = i + 1;
            let mut j = start;
            while bytes.get(j).copied().is_some_and(is_key) {
                j += 1;
            }
            if j > start
                && let Some(close) = text.get(j..).and_then(|rest| rest.find('>'))
            {
                let value_start = j + close + 1;
                let self_closing = close > 0 && bytes.get(j + close - 1) == Some(&b'/');
                if !self_closing
                    && let Some(len) = text.get(value_start..).and_then(|rest| rest.find('<'))
                {
                    let key = text.get(start..j).unwrap_or_default().to_owned();
                    let (vs, ve) = trim_span(text, value_start, value_start + len);
                    if ve > vs {
                        out.push((key, vs, ve, false));
                    }
                }
            }
            i += 1;
            continue;
        }
        // A key, bare or quoted, at a token start.
        let quote = (b == b'"' || b == b'\'').then_some(b);
        let start = if quote.is_some() { i + 1 } else { i };
        let prev_ok = i == 0 || !bytes.get(i - 1).copied().is_some_and(is_key);
        if !prev_ok
            || !bytes.get(start).copied().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        {
            i += 1;
            continue;
        }
        let mut j = start;
        while bytes.get(j).copied().is_some_and(|c| is_key(c) && c != b':') {
            j += 1;
        }
        let key_end = j;
        if let Some(q) = quote {
            if bytes.get(j) != Some(&q) {
                i = j.max(i + 1);
                continue;
            }
            j += 1;
        }
        while bytes.get(j).is_some_and(|c| *c == b' ' || *c == b'\t') {
            j += 1;
        }
        if !matches!(bytes.get(j), Some(b':' | b'=')) || bytes.get(j + 1) == Some(&b'=') {
            i = key_end.max(i + 1);
            continue;
        }
        j += 1;
        while bytes.get(j).is_some_and(|c| *c == b' ' || *c == b'\t') {
            j += 1;
        }
        let key = text.get(start..key_end).unwrap_or_default().to_owned();
        match bytes.get(j) {
            Some(&q @ (b'"' | b'\'')) => {
                let vs = j + 1;
                let mut k = vs;
                while let Some(&c) = bytes.get(k) {
                    if c == b'\\' {
                        k += 2;
                        continue;
                    }
                    if c == q || c == b'\n' {
                        break;
                    }
                    k += 1;
                }
                if bytes.get(k) == Some(&q) && k > vs {
                    out.push((key, vs, k, false));
                }
                i = k.max(j) + 1;
            }
            Some(_) => {
                let vs = j;
                let mut k = vs;
                while bytes.get(k).is_some_and(|c| {
                    !matches!(
                        c,
                        b',' | b';'
                            | b'&'
                            | b'}'
                            | b']'
                            | b')'
                            | b' '
                            | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'<'
                            | b'"'
                            | b'\''
                            | b'{'
                            | b'['
                    )
                }) {
                    k += 1;
                }
                if k > vs {
                    out.push((key, vs, k, true));
                }
                i = k.max(j + 1);
            }
            None => break,
        }
    }
    out
}

fn trim_span(text: &str, start: usize, end: usize) -> (usize, usize) {
    let Some(slice) = text.get(start..end) else { return (start, start) };
    let lead = slice.len() - slice.trim_start().len();
    let trail = slice.len() - slice.trim_end().len();
    (start + lead, end.saturating_sub(trail).max(start + lead))
}

/// Identifiers recognised by their shape anywhere in `text`: `(start, end, kind)`.
fn shapes(text: &str) -> Vec<(usize, usize, Identifier)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        let prev = i.checked_sub(1).and_then(|p| bytes.get(p)).copied();
        // Runs of hex digits, colons, dashes and dots: MAC, IPv4, IPv6.
        if b.is_ascii_hexdigit() || b == b':' {
            let prev_word = prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == b'.');
            let mut j = i;
            while bytes
                .get(j)
                .is_some_and(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'-' | b'.'))
            {
                j += 1;
            }
            let next_word = bytes.get(j).is_some_and(|c| c.is_ascii_alphanumeric());
            let run = text.get(i..j).unwrap_or_default();
            // Trailing separators belong to the text around (e.g. "1.2.3.4." ends a sentence).
            let run = run.trim_end_matches(['.', '-', ':']);
            let end = i + run.len();
            if !prev_word && !next_word {
                if let Some(kind) = shape_of(run) {
                    out.push((i, end, kind));
                } else {
                    out.extend(digit_runs(text, i, end));
                }
            }
            i = j.max(i + 1);
            continue;
        }
        if b == b'+' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let mut j = i + 1;
            while bytes.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            let count = j - i - 1;
            let word = prev.is_some_and(|p| p.is_ascii_alphanumeric())
                || bytes.get(j).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.');
            if (8..=15).contains(&count) && !word {
                out.push((i, j, Identifier::Number));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// A MAC, IPv4 or IPv6 address, unless it is a placeholder, loopback, unspecified, a
/// netmask or already a documentation address.
fn shape_of(run: &str) -> Option<Identifier> {
    let groups: Vec<&str> = run.split([':', '-']).collect();
    let sep_ok = !(run.contains(':') && run.contains('-'));
    if sep_ok && groups.len() == 6 && groups.iter().all(|g| g.len() == 2) && !run.contains('.') {
        let lower = run.to_ascii_lowercase().replace('-', ":");
        if groups.iter().all(|g| g.bytes().all(|c| c.is_ascii_hexdigit()))
            && lower != "00:00:00:00:00:00"
            && lower != "ff:ff:ff:ff:ff:ff"
            && !lower.starts_with("02:00:00:")
        {
            return Some(Identifier::Mac);
        }
        return None;
    }
    if let Ok(ip) = run.parse::<Ipv4Addr>() {
        let [a, b, c, _] = ip.octets();
        let doc = matches!([a, b, c], [192, 0, 2] | [198, 51, 100] | [203, 0, 113]);
        let boring = a == 0 || a == 127 || a == 255 || ip.is_broadcast() || doc;
        return (!boring && run.split('.').all(|o| o.len() <= 3)).then_some(Identifier::Ipv4);
    }
    if run.contains(':')
        && run.matches(':').count() >= 2
        && let Ok(ip) = run.parse::<Ipv6Addr>()
    {
        let seg = ip.segments();
        let doc = seg.first() == Some(&0x2001) && seg.get(1) == Some(&0xdb8);
        let boring = ip.is_loopback() || ip.is_unspecified() || doc || run.len() < 6;
        return (!boring).then_some(Identifier::Ipv6);
    }
    None
}

/// Long digit runs inside `start..end`: 15 digits (IMEI, IMSI), 19–20 starting with 89
/// (ICCID), 32 starting with 89 (EID). Runs next to a `.` (decimals, versions) are skipped.
fn digit_runs(text: &str, start: usize, end: usize) -> Vec<(usize, usize, Identifier)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = start;
    while i < end {
        if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < end && bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let len = j - i;
        let run = text.get(i..j).unwrap_or_default();
        let dotted = i.checked_sub(1).and_then(|p| bytes.get(p)) == Some(&b'.')
            || bytes.get(j) == Some(&b'.');
        let hexy = i.checked_sub(1).and_then(|p| bytes.get(p)).is_some_and(u8::is_ascii_hexdigit)
            || bytes.get(j).is_some_and(|c| c.is_ascii_hexdigit() && !matches!(c, b'F' | b'f'));
        let iccid = (19..=20).contains(&len) && run.starts_with("89");
        let eid = len == 32 && run.starts_with("89");
        if !dotted && !hexy && (len == 15 || iccid || eid) {
            out.push((i, j, Identifier::Number));
        }
        i = j;
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `bytes` with `alphabet`, padded with `=` when `pad`.
pub(crate) fn base64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for k in 0..4 {
            if k < chars {
                let index = usize::try_from((n >> (18 - 6 * k)) & 63).unwrap_or(0);
                out.push(char::from(alphabet.get(index).copied().unwrap_or(b'A')));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes.iter().map(|b| if upper { format!("{b:02X}") } else { format!("{b:02x}") }).collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn redact(texts: &[&str]) -> Vec<String> {
        let mut r = Redactor::new();
        for t in texts {
            r.discover(t);
        }
        texts.iter().map(|t| r.apply(t)).collect()
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (input, expected) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(input.as_bytes(), STANDARD, true), expected);
        }
        assert_eq!(base64(b"\xfb\xff", URL_SAFE, false), "-_8");
    }

    #[test]
    fn shapes_are_kept_and_stable() {
        let out = redact(&[
            r#"{"mac":"AA:BB:CC:DD:EE:01","ip":"192.168.1.20","imei":"356938035643809","v6":"fd00::1:2"}"#,
            "mac aa-bb-cc-dd-ee-02 then AA:BB:CC:DD:EE:01 and 192.168.1.20 at +447700900123",
        ]);
        let a = &out[0];
        assert!(a.contains(r#""mac":"02:00:00:00:00:01""#), "{a}");
        assert!(a.contains(r#""ip":"192.0.2.1""#), "{a}");
        assert!(a.contains(r#""imei":"100000000000001""#), "{a}");
        assert!(a.contains(r#""v6":"2001:db8::1""#), "{a}");
        let b = &out[1];
        assert!(b.contains("02-00-00-00-00-02"), "{b}");
        assert!(b.contains("then 02:00:00:00:00:01 and 192.0.2.1"), "{b}");
        assert!(b.contains("+100000000002"), "{b}");
    }

    #[test]
    fn versions_times_and_measurements_stay() {
        let text = "fw 1.2.3.4.5 at 12:34:56, rsrp -95.5, 1700000000000 ms, build 20240101";
        assert_eq!(redact(&[text])[0], text);
    }

    #[test]
    fn keys_in_every_format() {
        let out = redact(&[
            r#"<SSID>Home Wifi</SSID><Password>hunter22</Password>"#,
            "var hostname = 'kitchen-pi'; obj = {name: \"TV\", serialNumber: 'SN12XZ34'}",
            "gateway_id=\"my-gw\",latitude=\"51.5074\"",
        ]);
        assert_eq!(out[0], "<SSID>ssid-1</SSID><Password>redacted</Password>");
        assert!(out[1].contains("hostname = 'device-1'"), "{}", out[1]);
        assert!(out[1].contains("name: \"device-2\""), "{}", out[1]);
        assert!(out[1].contains("serialNumber: 'XX00XX01'"), "{}", out[1]);
        assert!(out[2].contains("gateway_id=\"gateway-1\""), "{}", out[2]);
        assert!(out[2].contains("latitude=\"10.0001\""), "{}", out[2]);
    }

    #[test]
    fn escapes_and_no_values_stay_intact() {
        let mut r = Redactor::default();
        let text = r#"{"MacAddress":"8c:dc:d4:31:ba:b5\n","NetworkName":"N/A","ssid":"NULL","name":"Bob"}"#;
        r.discover(text);
        let out = r.apply(text);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(!out.contains("8c:dc:d4:31:ba:b5"), "{out}");
        assert!(v["MacAddress"].as_str().unwrap().ends_with('\n'), "{out}");
        assert_eq!(v["NetworkName"], "N/A", "{out}");
        assert_eq!(v["ssid"], "NULL", "{out}");
        assert_ne!(v["name"], "Bob", "{out}");
    }

    #[test]
    fn error_names_stay_and_device_names_go() {
        assert!(is_snake_identifier("api_key_expired"));
        assert!(!is_snake_identifier("Johns-iPhone"));
        assert!(!is_snake_identifier("laptop"));
        assert!(!is_snake_identifier("_x"));
        assert_eq!(classify_key("name", "not_connected"), None);
        assert_eq!(classify_key("name", "Living room disc"), Some(Identifier::Name));
        assert_eq!(classify_key("hostname", "my_laptop"), Some(Identifier::Name));
    }

    #[test]
    fn bare_values_stay_valid_json() {
        let text = r#"{"name":null,"token":12345678,"serial":987654,"ok":true,"user":"admin","rsrp":-95,"imei":356938035643809}"#;
        let out = redact(&[text])[0].clone();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], serde_json::Value::Null, "{out}");
        assert!(v["token"].is_u64() && v["token"] != 12_345_678, "{out}");
        assert!(v["serial"].is_u64() && v["serial"] != 987_654, "{out}");
        assert!(v["imei"].is_u64() && v["imei"] != 356_938_035_643_809_u64, "{out}");
        assert_eq!(v["rsrp"], -95);
        assert_eq!(v["user"], "device-1");
    }

    #[test]
    fn headers() {
        let r = Redactor::new();
        assert_eq!(r.header("Cookie", "a=1; b=2"), "a=redacted; b=redacted");
        assert_eq!(
            r.header("Set-Cookie", "sid=xyz; Path=/; HttpOnly"),
            "sid=redacted; Path=/; HttpOnly"
        );
        assert_eq!(r.header("Authorization", "Bearer NNSXS.abc"), "Bearer redacted");
        assert_eq!(r.header("_TclRequestVerificationToken", "abc"), "redacted");
        assert_eq!(r.header("content-type", "application/json"), "application/json");
    }
}
