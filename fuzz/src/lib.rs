//! Shared helpers of the fuzz targets: a fresh [`Scrape`] and an oracle for its exposition.
//!
//! Each target feeds outside input (a device body, a D-Bus property map, a config file, a
//! request line) through the same parse and render functions a scrape uses. A panic, an
//! exposition line that Prometheus could not parse, or a hang past libFuzzer's `-timeout`
//! is a finding.

use std::time::{Duration, Instant};

use exporter_core::Scrape;

/// A fresh scrape of `namespace` with a deadline a second away.
pub fn scrape(namespace: &'static str) -> Scrape {
    Scrape::new(namespace, "fuzz", Instant::now() + Duration::from_secs(1))
}

/// Encodes `out` and checks every line of the text format 0.0.4; panics on a line that
/// Prometheus would reject (unescaped label values, a name or value it cannot read).
pub fn check_exposition(out: &Scrape) {
    let text = out.encode();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        if let Err(why) = check_sample(line) {
            panic!("bad exposition line ({why}): {line:?}");
        }
    }
}

fn check_sample(line: &str) -> Result<(), &'static str> {
    let bytes = line.as_bytes();
    let mut i = 0;
    let name_start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b':';
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    if !bytes.first().copied().is_some_and(name_start) {
        return Err("metric name");
    }
    while bytes.get(i).copied().is_some_and(name_char) {
        i += 1;
    }
    if bytes.get(i) == Some(&b'{') {
        i += 1;
        loop {
            if bytes.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            if !bytes.get(i).copied().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') {
                return Err("label name");
            }
            while bytes.get(i).copied().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                i += 1;
            }
            if bytes.get(i..i + 2) != Some(b"=\"".as_slice()) {
                return Err("label =\"");
            }
            i += 2;
            loop {
                match bytes.get(i) {
                    None => return Err("unterminated label value"),
                    Some(b'"') => break,
                    Some(b'\\') => match bytes.get(i + 1) {
                        Some(b'\\' | b'"' | b'n') => i += 2,
                        _ => return Err("bad escape in label value"),
                    },
                    Some(_) => i += 1,
                }
            }
            i += 1;
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => return Err("label separator"),
            }
        }
    }
    let rest = line.get(i..).ok_or("split")?;
    let value = rest.strip_prefix(' ').ok_or("space before value")?;
    match value {
        "NaN" | "+Inf" | "-Inf" => Ok(()),
        v if v.parse::<f64>().is_ok() => Ok(()),
        _ => Err("value"),
    }
}

#[cfg(test)]
mod tests {
    use super::check_sample;

    #[test]
    fn oracle_accepts_good_lines_and_rejects_bad_ones() {
        assert!(check_sample("a_b 1").is_ok());
        assert!(check_sample(r#"a{b="x\"y\\z\n",c=""} -1.5e3"#).is_ok());
        assert!(check_sample("a +Inf").is_ok());
        assert!(check_sample(r#"a{b="x"y"} 1"#).is_err());
        assert!(check_sample(r#"a{b="x\q"} 1"#).is_err());
        assert!(check_sample("a 1 2").is_err());
        assert!(check_sample("1a 1").is_err());
    }
}
