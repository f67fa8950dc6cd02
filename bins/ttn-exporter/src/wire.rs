//! Scalar encodings of the The Things Stack JSON API (protobuf JSON, spec §1.7), parsed by
//! hand: RFC 3339 timestamps with 0 to 9 fraction digits, durations such as `"0.0588s"`,
//! 64-bit integers sent as strings, and floats that may be the strings `"NaN"` or
//! `"Infinity"`.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Deserializer, de};

/// A point in time as seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// 1971-01-01T00:00:00Z: bogus boot times of year 1 or 1970 lie before it.
const PLAUSIBLE_SINCE: i64 = 31_536_000;

impl Timestamp {
    /// Parses an RFC 3339 timestamp (`2024-10-28T07:12:44.318204117Z`, offsets allowed).
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        parse_rfc3339(text).map_err(|why| format!("invalid timestamp {text:?}: {why}"))
    }

    /// Seconds since the Unix epoch, as Prometheus wants timestamps.
    pub fn as_secs_f64(self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }

    /// `None` for the placeholder times some gateways send (year 1 or 1970).
    pub fn plausible(self) -> Option<Timestamp> {
        (self.secs >= PLAUSIBLE_SINCE).then_some(self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)?;
        if self.nanos != 0 {
            write!(f, ".{:09}", self.nanos)?;
        }
        f.write_str("Z")
    }
}

/// A JSON object of a few entries (a status message's `versions` and `metrics`), kept as
/// pairs sorted by key: a `BTreeMap` node costs about 0.5 KB even for two entries, which is
/// 10 MB for 10,000 gateways. The keys gateways send are the same few names, so a known name
/// costs no allocation. A key given twice keeps its last value, as a map would.
#[derive(Debug, Clone, PartialEq)]
pub struct SmallMap<V>(Vec<(Cow<'static, str>, V)>);

/// Keys of `versions` and `metrics` as gateways send them (spec §1.6), shared by all.
const KNOWN_KEYS: [&str; 20] = [
    "ackr",
    "alti",
    "dwnb",
    "firmware",
    "lati",
    "long",
    "package",
    "platform",
    "rxfw",
    "rxin",
    "rxnb",
    "rxok",
    "station",
    "temp",
    "ttn-lw-gateway-server",
    "txin",
    "txnb",
    "txok",
    "model",
    "features",
];

fn key(text: String) -> Cow<'static, str> {
    match KNOWN_KEYS.iter().find(|k| **k == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text),
    }
}

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<V> SmallMap<V> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        let i = self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok()?;
        self.0.get(i).map(|(_, v)| v)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> FromIterator<(String, V)> for SmallMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(entries: I) -> Self {
        let mut pairs: Vec<(Cow<'static, str>, V)> =
            entries.into_iter().map(|(k, v)| (key(k), v)).collect();
        // Stable: of two equal keys the later stays later, and wins below.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Cow<'static, str>, V)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        SmallMap(out)
    }
}

impl<V> std::ops::Index<&str> for SmallMap<V> {
    type Output = V;

    /// Panics when `key` is absent, like a map's index (tests only; the exporter uses
    /// [`SmallMap::get`]).
    fn index(&self, key: &str) -> &V {
        #[allow(clippy::expect_used)]
        self.get(key).expect("no such key")
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SmallMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> de::Visitor<'de> for Pairs<V> {
            type Value = SmallMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SmallMap<V>, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<String, V>()? {
                    pairs.push(entry);
                }
                Ok(pairs.into_iter().collect())
            }
        }
        d.deserialize_map(Pairs(std::marker::PhantomData))
    }
}

/// Parses a protobuf JSON duration (`"3s"`, `"1.500s"`, `"-0.5s"`) into seconds.
pub fn parse_duration_secs(text: &str) -> Result<f64, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    let body = text.strip_suffix('s').ok_or_else(|| bad("missing unit s"))?;
    let (negative, body) = match body.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (body, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected digits before the unit"));
    }
    let whole: u64 = int.parse().map_err(|_| bad("seconds out of range"))?;
    let mut nanos = 0u64;
    if let Some(frac) = frac {
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected 1 to 9 fraction digits"));
        }
        let digits: u64 = frac.parse().map_err(|_| bad("bad fraction"))?;
        nanos = digits * 10u64.pow(9 - frac.len() as u32);
    }
    let secs = whole as f64 + nanos as f64 / 1e9;
    Ok(if negative { -secs } else { secs })
}

/// Parses an unsigned 64-bit integer written as decimal digits (no sign, no spaces).
pub fn parse_u64(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid 64-bit count {text:?}: expected decimal digits"));
    }
    text.parse().map_err(|_| format!("invalid 64-bit count {text:?}: out of range"))
}

/// Serde helpers for the encodings above, for `#[serde(deserialize_with = "…")]`.
pub mod de_opt {
    use super::*;

    /// An optional timestamp string.
    pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => Timestamp::parse(&s).map(Some).map_err(de::Error::custom),
        }
    }

    /// An optional duration string, as seconds.
    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse_duration_secs(&s).map(Some).map_err(de::Error::custom),
        }
    }

    /// An optional uint64: a string of digits (the API's encoding) or a plain number.
    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<U64>::deserialize(d)? {
            None => Ok(None),
            Some(U64(v)) => Ok(Some(v)),
        }
    }

    /// An optional float: a number or one of `"NaN"`, `"Infinity"`, `"-Infinity"`.
    pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<Float>::deserialize(d)? {
            None => Ok(None),
            Some(Float(v)) => Ok(Some(v)),
        }
    }
}

/// A uint64 in either JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U64(pub u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<U64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned 64-bit integer as a string or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64, E> {
                Ok(U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64, E> {
                u64::try_from(v)
                    .map(U64)
                    .map_err(|_| E::custom(format!("invalid 64-bit count {v}: negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<U64, E> {
                parse_u64(v).map(U64).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A float in either JSON form (numbers, or the strings protobuf JSON uses for NaN and ±∞).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float(pub f64);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Float, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Float;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Float, E> {
                Ok(Float(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Float, E> {
                match v {
                    "NaN" => Ok(Float(f64::NAN)),
                    "Infinity" => Ok(Float(f64::INFINITY)),
                    "-Infinity" => Ok(Float(f64::NEG_INFINITY)),
                    other => Err(E::custom(format!("invalid float {other:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_rfc3339(s: &str) -> Result<Timestamp, &'static str> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err("too short");
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let part = b.get(range).ok_or("too short")?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err("expected digits");
        }
        Ok(part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, allowed: &[u8]| -> Result<(), &'static str> {
        match b.get(i) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err("unexpected separator"),
        }
    };
    let year = num(0..4)?;
    sep(4, b"-")?;
    let month = num(5..7)?;
    sep(7, b"-")?;
    let day = num(8..10)?;
    sep(10, b"Tt ")?;
    let hour = num(11..13)?;
    sep(13, b":")?;
    let minute = num(14..16)?;
    sep(16, b":")?;
    let second = num(17..19)?;
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range");
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return Err("expected 1 to 9 fraction digits");
        }
        let frac = num(start..i)?;
        nanos = u32::try_from(frac * 10i64.pow(9 - digits as u32)).map_err(|_| "bad fraction")?;
    }
    let offset = match b.get(i..) {
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), _, _, b':', _, _]) => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return Err("expected Z or a ±hh:mm offset at the end"),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Ok(Timestamp { secs, nanos })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn small_maps_are_sorted_and_keep_the_last_of_a_repeated_key() {
        let m: SmallMap<Float> =
            serde_json::from_str(r#"{"temp": 31.5, "ackr": "NaN", "rxin": 3, "temp": 32}"#)
                .unwrap();
        let entries: Vec<(&str, f64)> = m.iter().map(|(k, v)| (k, v.0)).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, "ackr");
        assert!(entries[0].1.is_nan());
        assert_eq!(&entries[1..], [("rxin", 3.0), ("temp", 32.0)]);
        assert_eq!(m.get("temp").map(|v| v.0), Some(32.0));
        assert!(m.get("txin").is_none());
        // Through a parsed value too (the batch answer is decoded entry by entry).
        let value = serde_json::json!({"b": "2", "a": "1"});
        let v: SmallMap<String> = serde_json::from_value(value).unwrap();
        assert_eq!(v.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(v["b"], "2");
        assert!(serde_json::from_str::<SmallMap<String>>("[1]").is_err());
        assert!(serde_json::from_str::<SmallMap<String>>(r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn timestamps_with_0_to_9_fraction_digits() {
        assert_eq!(ts("2024-10-28T09:41:05Z"), Timestamp { secs: 1_730_108_465, nanos: 0 });
        assert_eq!(ts("2021-06-14T18:22:05.497Z").nanos, 497_000_000);
        assert_eq!(ts("2024-03-02T09:11:47.120853Z").nanos, 120_853_000);
        let t = ts("2024-10-28T07:12:44.318204117Z");
        assert_eq!(t, Timestamp { secs: 1_730_099_564, nanos: 318_204_117 });
        for digits in 1..=9 {
            let s = format!("1970-01-01T00:00:01.{}Z", "1".repeat(digits));
            assert!(ts(&s).nanos > 0, "{s}");
        }
        assert_eq!(ts("2024-10-28T11:41:05+02:00"), ts("2024-10-28T09:41:05Z"));
        assert_eq!(ts("2024-10-28T08:41:05-01:00"), ts("2024-10-28T09:41:05Z"));
        assert_eq!(ts("2024-02-29T00:00:00Z").to_string(), "2024-02-29T00:00:00Z");
        assert_eq!(t.to_string(), "2024-10-28T07:12:44.318204117Z");
        assert!((t.as_secs_f64() - 1_730_099_564.318_204).abs() < 1e-5);
    }

    #[test]
    fn bogus_boot_times_are_implausible() {
        let year1 = ts("0001-01-01T00:00:00Z");
        assert!(year1.secs < 0);
        assert_eq!(year1.to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(year1.plausible(), None);
        assert_eq!(ts("1970-01-01T00:00:00Z").plausible(), None);
        assert_eq!(ts("1970-12-31T23:59:59Z").plausible(), None);
        assert!(ts("2024-10-20T03:02:11Z").plausible().is_some());
    }

    #[test]
    fn malformed_timestamps_are_errors() {
        for bad in [
            "",
            "2024-10-28",
            "2024-10-28T09:41:05",
            "2024-10-28T09:41:05.Z",
            "2024-10-28T09:41:05.1234567890Z",
            "2024-13-28T09:41:05Z",
            "2023-02-29T09:41:05Z",
            "2024-10-28T24:00:00Z",
            "2024-10-28T09:41:05+2:00",
            "2024-10-28T09:41:05Zjunk",
            "2024-1a-28T09:41:05Z",
            "２024-10-28T09:41:05Z",
        ] {
            let err = Timestamp::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid timestamp"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("3s").unwrap(), 3.0);
        assert_eq!(parse_duration_secs("1.500s").unwrap(), 1.5);
        assert!((parse_duration_secs("0.058803412s").unwrap() - 0.058_803_412).abs() < 1e-12);
        assert!((parse_duration_secs("0.0588s").unwrap() - 0.0588).abs() < 1e-12);
        assert_eq!(parse_duration_secs("-0.5s").unwrap(), -0.5);
        for bad in ["", "s", "3", "0.5ms", ".5s", "1.s", "1e3s", "inf s", "0.1234567890s", "+1s"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn u64_strings_and_numbers() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "de_opt::u64")]
            v: Option<u64>,
        }
        let p = |s: &str| serde_json::from_str::<T>(s).map(|t| t.v);
        assert_eq!(p(r#"{"v":"18446744073709551615"}"#).unwrap(), Some(u64::MAX));
        assert_eq!(p(r#"{"v":"18342"}"#).unwrap(), Some(18342));
        assert_eq!(p(r#"{"v":0}"#).unwrap(), Some(0));
        assert_eq!(p(r#"{}"#).unwrap(), None);
        assert_eq!(p(r#"{"v":null}"#).unwrap(), None);
        for bad in
            [r#"{"v":"18446744073709551616"}"#, r#"{"v":"-1"}"#, r#"{"v":"1.5"}"#, r#"{"v":-1}"#]
        {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn floats_with_nan_strings() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "de_opt::float")]
            v: Option<f64>,
        }
        let p = |s: &str| serde_json::from_str::<T>(s).map(|t| t.v);
        assert_eq!(p(r#"{"v":5e-07}"#).unwrap(), Some(5e-7));
        assert_eq!(p(r#"{"v":1}"#).unwrap(), Some(1.0));
        assert!(p(r#"{"v":"NaN"}"#).unwrap().unwrap().is_nan());
        assert_eq!(p(r#"{"v":"-Infinity"}"#).unwrap(), Some(f64::NEG_INFINITY));
        assert!(p(r#"{"v":"1.0"}"#).is_err());
    }
}
