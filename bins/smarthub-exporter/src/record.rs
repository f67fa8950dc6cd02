//! What `capture` records of the hub's pages: every exchange, with the body in a form the
//! core's redactor can see through, and the identifiers the parse found.
//!
//! The hub `%XX`-encodes every value, so an address or a name in a page never looks like the
//! same value in the exposition (`AA%3ABB%3A…` against `AA:BB:…`): the redactor would miss
//! the encoded one, or give the two forms different placeholders, and a replay would then
//! show other labels than the scrape it was taken from. So, only while a capture is taken,
//! the recorded copy of a body (never the text the exporter parses) has each string literal
//! - decoded when that is harmless (only letters, digits, spaces and `.:/_+-;,=()@`),
//! - with MAC addresses in upper case, as the exporter shows them,
//! - with the `'NULL'` of `cgi_owl.js` empty (the exporter reads both as "none"), and
//! - with each name the parse found written as the exposition writes it (`"` and `\`
//!   escaped), so that the redactor replaces it by the same placeholder there and here.
//!
//! The exporter reads that form exactly as the hub's own (it decodes after tokenising).
//! Outside a capture nothing here runs.

use std::collections::HashSet;

use exporter_core::capture::{self, CapturedHttp, Identifier};

use crate::api;

/// An exchange waiting for the parse of its body, to be recorded with what the parse found.
#[derive(Debug, Default)]
pub struct Pending(Option<CapturedHttp>);

impl Pending {
    /// An exchange to record later; `None` outside a capture.
    pub fn new(exchange: Option<CapturedHttp>) -> Pending {
        Pending(exchange)
    }

    /// Records the exchange with `identifiers` (what the parse found: names, SSIDs, serial
    /// numbers) registered with the redactor and the body normalised as the module says.
    pub fn record(self, identifiers: &[(Identifier, String)]) {
        let Some(mut exchange) = self.0 else { return };
        let mut names = HashSet::new();
        for (kind, value) in identifiers {
            if value.trim().is_empty() {
                continue;
            }
            let escaped = label_escape(value);
            capture::identifier(*kind, &escaped);
            capture::identifier(*kind, value);
            names.insert(value.as_str());
        }
        if let Some(body) = exchange.response_body.take() {
            exchange.response_body = Some(normalise(&body, &names));
        }
        capture::record_http(|| exchange);
    }
}

/// The body with its string literals normalised (see the module doc).
pub fn normalise(body: &str, names: &HashSet<&str>) -> String {
    let pass = literals(body, b'"', &HashSet::new());
    literals(&pass, b'\'', names)
}

/// Rewrites every literal quoted with `quote` that ends on its own line.
fn literals(text: &str, quote: u8, names: &HashSet<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let q = char::from(quote);
    while let Some(open) = rest.find(q) {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        out.push(q);
        let content_and_more = after.get(1..).unwrap_or_default();
        let line_end = content_and_more.find('\n').unwrap_or(content_and_more.len());
        let close = content_and_more.get(..line_end).and_then(|line| line.find(q));
        match close {
            Some(close) => {
                let content = content_and_more.get(..close).unwrap_or_default();
                match rewrite(content, names) {
                    Some(new) => out.push_str(&new),
                    None => out.push_str(content),
                }
                out.push(q);
                rest = content_and_more.get(close + 1..).unwrap_or_default();
            }
            None => rest = content_and_more,
        }
    }
    out.push_str(rest);
    out
}

/// The normalised form of one literal's content, `None` to keep it.
fn rewrite(content: &str, names: &HashSet<&str>) -> Option<String> {
    // `cgi_owl.js` says "none" with the string 'NULL', which the redactor would take for a
    // name under keys such as `station_name` (and then replace everywhere, `parent_id` too);
    // the exporter reads an empty value the same way.
    if content == "NULL" {
        return Some(String::new());
    }
    if content.contains('\'') || content.contains('"') {
        return None;
    }
    let decoded = api::decode(content);
    if is_mac(&decoded) {
        let upper = decoded.to_ascii_uppercase();
        return (upper != content).then_some(upper);
    }
    if !content.contains('%') {
        return None;
    }
    if names.contains(decoded.as_str()) {
        let escaped = label_escape(&decoded);
        // The redactor skips values under 3 characters outside a key; keep those encoded.
        return (escaped.len() >= 3).then_some(escaped);
    }
    let harmless = |c: char| c.is_ascii_alphanumeric() || " .:/_+-;,=()@".contains(c);
    decoded.chars().all(harmless).then_some(decoded)
}

/// `AA:BB:CC:DD:EE:FF` or with dashes, any case.
fn is_mac(text: &str) -> bool {
    let groups: Vec<&str> = text.split([':', '-']).collect();
    groups.len() == 6
        && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A label value as the text format writes it: `\`, `"` and newline escaped.
pub fn label_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_normalised_where_harmless() {
        let names: HashSet<&str> = ["Tom's iPhone", "Kids \"Den\" TV\\1"].into_iter().collect();
        let body = "var known_device_list=[{mac:'AA%3ABB%3ACC%3A00%3A00%3A01',\
            hostname:'Tom%27s%20iPhone',name:'Kids%20%22Den%22%20TV%5C1',os:'100%25%20x'},\n\
            {mac:'aa:bb:cc:00:00:02',ip:'192%2E168%2E1%2E64'},null];\n\
            var serial_no = \"%2B068341%2BNQ00000000\";\n\
            <x value=\"[['connected%3B58%3Bpass'],\nnull]\" />\n<y value=\"a%3Bb\" />";
        let out = normalise(body, &names);
        assert!(out.contains("mac:'AA:BB:CC:00:00:01'"), "{out}");
        assert!(out.contains("hostname:'Tom's iPhone'"), "{out}");
        assert!(out.contains("name:'Kids \\\"Den\\\" TV\\\\1'"), "{out}");
        assert!(out.contains("os:'100%25%20x'"), "not harmless, kept: {out}");
        assert!(out.contains("mac:'AA:BB:CC:00:00:02'"), "{out}");
        assert!(out.contains("ip:'192.168.1.64'"), "{out}");
        assert!(out.contains("serial_no = \"+068341+NQ00000000\";"), "{out}");
        assert!(out.contains("[['connected;58;pass'],\nnull]"), "{out}");
        assert!(out.contains("<y value=\"a;b\" />"), "{out}");
        assert_eq!(normalise("no literals here", &names), "no literals here");
        assert_eq!(normalise("parent_id:'NULL',x:'NULLS'", &names), "parent_id:'',x:'NULLS'");
        assert_eq!(normalise("odd ' quote\nnext 'a%2Eb'", &names), "odd ' quote\nnext 'a.b'");
    }
}
