//! One scrape of one target: fresh metric families, per-collector outcomes and the
//! `<ns>_up` / duration metrics the core adds at the end.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, hash_map::Entry},
    fmt::Write as _,
    future::Future,
    time::{Duration, Instant},
};

/// The outcome of one sub-collector, produced by [`timed`] and consumed by [`Scrape::record`].
#[derive(Debug)]
pub struct Timed<T> {
    pub name: &'static str,
    pub elapsed: Duration,
    pub result: anyhow::Result<T>,
}

/// Runs one sub-collector's device call, bounded by `deadline`.
///
/// A call still running at the deadline is dropped and becomes an error, so the other
/// collectors' results survive and the scrape answers in time.
pub async fn timed<T>(
    name: &'static str,
    deadline: Instant,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> Timed<T> {
    let start = Instant::now();
    let result = match tokio::time::timeout_at(deadline.into(), fut).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!(
            "scrape deadline exceeded after {:.3}s",
            start.elapsed().as_secs_f64()
        )),
    };
    Timed { name, elapsed: start.elapsed(), result }
}

/// One collector's recorded outcome.
#[derive(Debug, Clone)]
pub(crate) struct CollectorOutcome {
    pub(crate) name: &'static str,
    pub(crate) elapsed: Duration,
    /// The error chain (`{:#}`), when the collector failed.
    pub(crate) error: Option<String>,
    /// Samples written before this collector was recorded (its series are those written
    /// after it, until the next collector is recorded).
    pub(crate) samples_before: usize,
}

/// The metric families of one scrape, written by an exporter's probe.
///
/// Every name passed in is prefixed with the namespace (`gauge("rsrp_dbm", …)` writes
/// `linkhub_rsrp_dbm`), so no exporter assembles metric names by hand.
#[derive(Debug)]
pub struct Scrape {
    namespace: &'static str,
    target: String,
    deadline: Instant,
    /// The families in the order they were first written, and their positions by name
    /// (the text is written sorted by name).
    families: Vec<FamilyEntry>,
    index: BTreeMap<String, usize>,
    /// The label texts of all families' samples.
    labels: Labels,
    /// A reused buffer for family names being looked up.
    key: String,
    pub(crate) collectors: Vec<CollectorOutcome>,
    pub(crate) trace: Vec<String>,
    /// What the device is (`model`, `firmware`, …), for `check`.
    pub(crate) facts: Vec<(String, String)>,
    /// What needed a login and how it went, for `check`.
    pub(crate) logins: Vec<String>,
    /// Device quirks detected in this scrape, for `check`.
    pub(crate) quirks: Vec<String>,
}

/// A metric family inside a [`Scrape`]; add one sample per label set.
#[derive(Debug)]
pub struct Family<'a> {
    entry: &'a mut FamilyEntry,
    labels: &'a mut Labels,
}

/// The label texts of a scrape's samples (`{k="v",…}` escaped, or a histogram's
/// `_bucket{…}`), back to back in one buffer shared by all families, with no allocation per
/// sample. A label text equal to one of the last few kept is not stored again: an exporter
/// writes one device's (gateway's, modem's…) families one after another with the same labels,
/// so each label set is usually stored once, not once per family (a gateway's
/// `{gateway_id="…"}` once, not by each of its 20 families).
#[derive(Debug, Default)]
struct Labels {
    text: String,
    /// The spans of the label texts kept last, newest at `next - 1` (a ring).
    recent: [(u32, u32); RECENT],
    next: usize,
}

/// How many recent label texts a new one is compared with.
const RECENT: usize = 4;

/// How much to add to a buffer of capacity `capacity` holding `len` that needs room for
/// `more`: nothing while it fits; else double while small, and above [`GROW_BY_QUARTERS`] a
/// quarter more (a large buffer is a mapping of its own above glibc's mmap threshold, see
/// `alloc.rs`, so growing it moves no bytes), so that at most a fifth of a large scrape's
/// buffers stands empty rather than up to half.
fn growth(len: usize, capacity: usize, more: usize) -> usize {
    if capacity - len >= more {
        0
    } else if capacity < GROW_BY_QUARTERS {
        more.max(capacity).max(64)
    } else {
        more.max(capacity / 4)
    }
}

/// See [`growth`].
const GROW_BY_QUARTERS: usize = 256 << 10;

impl Labels {
    /// Makes room for a label text of up to `more` bytes.
    fn reserve(&mut self, more: usize) {
        let add = growth(self.text.len(), self.text.capacity(), more);
        self.text.reserve_exact(add);
    }

    /// The text of a span.
    fn get(&self, (start, end): (u32, u32)) -> &str {
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    /// The span of the label text appended since `start`: a recent equal text's (the copy is
    /// dropped), or the new text's, which then becomes the most recent.
    fn intern(&mut self, start: usize) -> (u32, u32) {
        let new = (start as u32, self.text.len() as u32);
        let text = self.get(new);
        let same = self
            .recent
            .iter()
            .copied()
            .find(|&span| span.1 - span.0 == new.1 - new.0 && self.get(span) == text);
        if let Some(span) = same {
            self.text.truncate(start);
            return span;
        }
        if let Some(slot) = self.recent.get_mut(self.next % RECENT) {
            *slot = new;
        }
        self.next = self.next.wrapping_add(1);
        new
    }
}

/// A family: its header and samples, kept as the text they are written as (no model objects:
/// a scrape of 1000 gateways writes tens of thousands of samples), their label texts in the
/// scrape's [`Labels`]. A sample with the labels of an earlier one replaces its value: in a
/// small family when it is added, in a large one when the text is written (through a hash
/// index that exists only then, so a scrape of 10,000 gateways does not keep an index per
/// family while it is written).
#[derive(Debug)]
struct FamilyEntry {
    name: String,
    help: String,
    kind: Kind,
    /// Per sample: where its label text starts and ends in the scrape's [`Labels`], and its
    /// value.
    samples: Vec<(u32, u32, f64)>,
    /// The length of all samples' label texts.
    label_len: usize,
}

/// Above this estimated size, the text of a scrape is compressed as it is written and never
/// exists whole (see [`Scrape::encode_body`]).
const BIG_TEXT: usize = 1 << 20;

/// A big scrape's text goes to the compressor in pieces of about this size.
const CHUNK: usize = 64 << 10;

/// Families with at least this many samples are deduplicated when written, through a hash
/// index of their label sets; smaller ones when a sample is added, by a scan.
const INDEX_FROM: usize = 16;

/// The metric types the exporters write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl FamilyEntry {
    fn new(name: String, help: &str, kind: Kind) -> FamilyEntry {
        FamilyEntry { name, help: help.to_owned(), kind, samples: Vec::new(), label_len: 0 }
    }

    /// The label text of sample `i`.
    fn label<'l>(&self, labels: &'l Labels, i: usize) -> &'l str {
        self.samples.get(i).map_or("", |&(start, end, _)| labels.get((start, end)))
    }

    /// An upper estimate of the length of the family's text, to size the output once.
    fn text_len(&self) -> usize {
        if self.samples.is_empty() {
            return 0;
        }
        self.help.len() * 2
            + self.name.len() * (2 + self.samples.len())
            + self.label_len
            + self.samples.len() * 26
            + 32
    }

    /// Appends the family as text format 0.0.4 (nothing when it has no samples), exactly as
    /// the `prometheus` crate's `TextEncoder` writes it. With `drain`, `out` is handed to it
    /// whenever it has grown past [`CHUNK`] (to be compressed and cleared), so that a family
    /// of 70,000 samples is never one text.
    fn write_text(&self, labels: &Labels, out: &mut String, mut drain: Drain<'_>) {
        if self.samples.is_empty() {
            return;
        }
        if !self.help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(&self.name);
            out.push(' ');
            escape_into(out, &self.help, false);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(&self.name);
        out.push_str(match self.kind {
            Kind::Gauge => " gauge\n",
            Kind::Counter => " counter\n",
            Kind::Histogram => " histogram\n",
        });
        let duplicates = self.duplicates(labels);
        if duplicates.is_empty() {
            for (i, &(_, _, value)) in self.samples.iter().enumerate() {
                self.write_sample(labels, out, i, value);
                drained(out, &mut drain);
            }
            return;
        }
        // A later sample with the labels of an earlier one gives it its value, in place.
        let mut values: Vec<Option<f64>> = self.samples.iter().map(|s| Some(s.2)).collect();
        for &(first, later) in &duplicates {
            let value = values.get_mut(later).and_then(Option::take);
            if let (Some(slot), Some(value)) = (values.get_mut(first), value) {
                *slot = Some(value);
            }
        }
        for (i, value) in values.into_iter().enumerate() {
            if let Some(value) = value {
                self.write_sample(labels, out, i, value);
                drained(out, &mut drain);
            }
        }
    }

    fn write_sample(&self, labels: &Labels, out: &mut String, i: usize, value: f64) {
        out.push_str(&self.name);
        out.push_str(self.label(labels, i));
        out.push(' ');
        write_value(out, value);
        out.push('\n');
    }

    /// `(first, later)` for every sample whose label text an earlier sample has, in order.
    /// Only a family that grew past [`INDEX_FROM`] can have any: smaller ones merge them as
    /// they come.
    fn duplicates(&self, labels: &Labels) -> Vec<(usize, usize)> {
        let mut duplicates = Vec::new();
        if self.samples.len() <= INDEX_FROM {
            return duplicates;
        }
        let mut first: HashMap<u64, u32, PassThrough> =
            HashMap::with_capacity_and_hasher(self.samples.len(), PassThrough);
        for i in 0..self.samples.len() {
            let text = self.label(labels, i);
            match first.entry(hash_text(text)) {
                Entry::Vacant(slot) => {
                    slot.insert(i as u32);
                }
                Entry::Occupied(slot) => {
                    let j = *slot.get() as usize;
                    // Two label texts with one hash: rare, settled by a scan.
                    let same = if self.label(labels, j) == text {
                        Some(j)
                    } else {
                        (0..i).find(|&k| self.label(labels, k) == text)
                    };
                    if let Some(j) = same {
                        duplicates.push((j, i));
                    }
                }
            }
        }
        duplicates
    }

    /// Takes the label text appended to `labels` since `start` as a new sample with `value`;
    /// in a small family, a sample that already has that text gets the value instead and the
    /// copy is dropped.
    fn commit(&mut self, labels: &mut Labels, start: usize, value: f64) {
        if self.samples.len() < INDEX_FROM {
            let text = labels.text.get(start..).unwrap_or("");
            let found = (0..self.samples.len()).find(|&i| self.label(labels, i) == text);
            if let Some(sample) = found.and_then(|i| self.samples.get_mut(i)) {
                sample.2 = value;
                labels.text.truncate(start);
                return;
            }
        }
        let (start, end) = labels.intern(start);
        let add = growth(self.samples.len(), self.samples.capacity(), 1);
        self.samples.reserve_exact(add);
        self.samples.push((start, end, value));
        self.label_len += (end - start) as usize;
    }
}

/// Where a large text goes as it is written (see [`FamilyEntry::write_text`]).
type Drain<'a> = Option<&'a mut dyn FnMut(&mut String)>;

/// Hands `out` to `drain` once it has grown past [`CHUNK`].
fn drained(out: &mut String, drain: &mut Drain<'_>) {
    if out.len() >= CHUNK
        && let Some(drain) = drain
    {
        drain(out);
    }
}

/// FNV-1a over 8-byte words, then a final mix: a fast hash for label texts (written by the
/// exporter itself, so no hash flooding to fear; collisions only cost a scan).
fn hash_text(text: &str) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ text.len() as u64;
    let mut chunks = text.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(PRIME);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// A hasher for keys that already are hashes ([`hash_text`]).
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

impl std::hash::BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

#[derive(Debug)]
struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Appends a sample value as the text format writes it: integers without a fraction (most
/// values: counters, states, dBm), others as the shortest text that reads back the same,
/// and `+Inf`, `-Inf`, `NaN` spelled as Prometheus spells them.
fn write_value(out: &mut String, value: f64) {
    // 2^53: every integer up to it is exact in an f64. -0 keeps its sign through Display.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() <= EXACT && !(value == 0.0 && value.is_sign_negative()) {
        let mut buf = itoa::Buffer::new();
        #[allow(clippy::cast_possible_truncation)]
        out.push_str(buf.format(value as i64));
    } else if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Appends `text` escaped for the text format: `\` and newline always, `"` in label values.
fn escape_into(out: &mut String, text: &str, quote: bool) {
    let mut rest = text;
    // Copy the runs between special characters whole (most texts have none), found with
    // memchr's vectorised search. The special characters are ASCII, so a byte position is
    // a char boundary.
    let special = |t: &str| {
        if quote {
            memchr::memchr3(b'\\', b'\n', b'"', t.as_bytes())
        } else {
            memchr::memchr2(b'\\', b'\n', t.as_bytes())
        }
    };
    while let Some(i) = special(rest) {
        let (plain, tail) = rest.split_at(i);
        out.push_str(plain);
        let mut chars = tail.chars();
        out.push_str(match chars.next() {
            Some('\\') => "\\\\",
            Some('\n') => "\\n",
            _ => "\\\"",
        });
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// The most bytes [`label_text_into`] may write for `labels` (every value character escaped).
fn label_text_bound(labels: &[(&str, &str)]) -> usize {
    labels.iter().map(|(k, v)| k.len() + 2 * v.len() + 4).sum::<usize>() + 1
}

/// Appends `{k="v",…}` for `labels` (nothing for none), values escaped.
fn label_text_into(out: &mut String, labels: &[(&str, &str)]) {
    let mut sep = '{';
    for (k, v) in labels {
        debug_assert!(valid_label_name(k), "invalid label name {k}");
        out.push(sep);
        out.push_str(k);
        out.push_str("=\"");
        escape_into(out, v, true);
        out.push('"');
        sep = ',';
    }
    if sep == ',' {
        out.push('}');
    }
}

impl Scrape {
    /// A new, empty scrape of `target` that must finish by `deadline`.
    pub fn new(namespace: &'static str, target: impl Into<String>, deadline: Instant) -> Scrape {
        Scrape {
            namespace,
            target: target.into(),
            deadline,
            families: Vec::new(),
            index: BTreeMap::new(),
            labels: Labels::default(),
            key: String::new(),
            collectors: Vec::new(),
            trace: Vec::new(),
            facts: Vec::new(),
            logins: Vec::new(),
            quirks: Vec::new(),
        }
    }

    /// The namespace (metric prefix) of this scrape.
    pub fn namespace(&self) -> &'static str {
        self.namespace
    }

    /// The target this scrape is for, as the request named it.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The instant by which the whole scrape must have answered.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Records one sub-collector's outcome: emits its success and duration, logs a failure
    /// once (with the error chain) and returns the value on success.
    ///
    /// `check` counts the series written after this call (until the next collector is
    /// recorded) as this collector's: record a collector's result, then render it.
    pub fn record<T>(&mut self, timed: Timed<T>) -> Option<T> {
        let samples_before = self.sample_count();
        match timed.result {
            Ok(value) => {
                self.trace.push(format!(
                    "collector {} succeeded in {:.6}s",
                    timed.name,
                    timed.elapsed.as_secs_f64()
                ));
                self.collectors.push(CollectorOutcome {
                    name: timed.name,
                    elapsed: timed.elapsed,
                    error: None,
                    samples_before,
                });
                Some(value)
            }
            Err(err) => {
                let chain = format!("{err:#}");
                log::warn!(
                    target: "scrape",
                    namespace = self.namespace, target = self.target.as_str(),
                    collector = timed.name, err = chain.as_str();
                    "collector failed"
                );
                self.trace.push(format!(
                    "collector {} failed after {:.6}s: {chain}",
                    timed.name,
                    timed.elapsed.as_secs_f64()
                ));
                self.collectors.push(CollectorOutcome {
                    name: timed.name,
                    elapsed: timed.elapsed,
                    error: Some(chain),
                    samples_before,
                });
                None
            }
        }
    }

    /// Adds a line to the `&debug=true` trace of this scrape.
    pub fn note(&mut self, line: impl Into<String>) {
        self.trace.push(line.into());
    }

    /// A fact about the device for `check` and the trace, e.g. `fact("model", "HH71")`,
    /// `fact("firmware", "HH71_E1_02.00_22")`. A second fact with the same key replaces the
    /// first. Never pass a secret; identifiers only when the user opted in to them.
    pub fn fact(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        self.trace.push(format!("fact {key}: {value}"));
        match self.facts.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.facts.push((key.to_owned(), value)),
        }
    }

    /// What needed a login and how it went, for `check` and the trace, e.g.
    /// `login("PwEncrypt=1; login succeeded")` or
    /// `login("login refused: wrong password, 3 attempts left")`.
    pub fn login(&mut self, text: impl Into<String>) {
        let text = text.into();
        self.trace.push(format!("login: {text}"));
        self.logins.push(text);
    }

    /// A device quirk this scrape detected, for `check` and the trace, e.g.
    /// `quirk("uses the AES token variant")`.
    pub fn quirk(&mut self, text: impl Into<String>) {
        let text = text.into();
        self.trace.push(format!("quirk: {text}"));
        if !self.quirks.contains(&text) {
            self.quirks.push(text);
        }
    }

    /// The samples written so far.
    fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    /// The gauge family `<ns>_<name>`, created on first use in this scrape.
    pub fn gauge(&mut self, name: &str, help: &str) -> Family<'_> {
        self.family(name, help, Kind::Gauge)
    }

    /// The counter family `<ns>_<name>`; `name` must end in `_total`.
    pub fn counter(&mut self, name: &str, help: &str) -> Family<'_> {
        debug_assert!(name.ends_with("_total"), "counter {name} must end in _total");
        self.family(name, help, Kind::Counter)
    }

    /// An `_info` gauge with value 1 carrying `labels`.
    pub fn info(&mut self, name: &str, help: &str, labels: &[(&str, &str)]) {
        debug_assert!(name.ends_with("_info"), "info metric {name} must end in _info");
        self.gauge(name, help).sample(labels, 1.0);
    }

    /// A one-hot enumeration: one sample per state in `states` with a `state` label, 1 for
    /// `current` and 0 for the others. When `current` is not among `states` (a code the
    /// exporter does not know), it is added as its own series so nothing is hidden.
    pub fn state_set(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        states: &[&str],
        current: &str,
    ) {
        let mut family = self.gauge(name, help);
        let mut seen = false;
        for state in states {
            let on = *state == current;
            seen |= on;
            family.sample(&with_label(labels, "state", state), if on { 1.0 } else { 0.0 });
        }
        if !seen {
            family.sample(&with_label(labels, "state", current), 1.0);
        }
    }

    /// The families written so far, as Prometheus text format 0.0.4 (without the core's
    /// `<ns>_up` and duration metrics). Render tests compare this with golden files.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.families.iter().map(FamilyEntry::text_len).sum());
        for &i in self.index.values() {
            if let Some(family) = self.families.get(i) {
                family.write_text(&self.labels, &mut out, None);
            }
        }
        out
    }

    /// Like [`Scrape::encode`], but gives each family's buffers back as soon as its text is
    /// written, and compresses a large scrape's text as it is written (10,000 gateways: about
    /// 18 MB of text, 1.2 MB compressed), so that neither the samples and the whole text nor
    /// the whole text and its compressed form are ever held at once. Most answers are gzipped
    /// (Prometheus asks for it); the few that are not get the text back by decompression.
    fn encode_body(&mut self) -> Body {
        let len: usize = self.families.iter().map(FamilyEntry::text_len).sum();
        let mut families = std::mem::take(&mut self.families);
        let order = std::mem::take(&mut self.index);
        if len <= BIG_TEXT {
            let mut out = String::with_capacity(len);
            for &i in order.values() {
                if let Some(family) = families.get(i) {
                    family.write_text(&self.labels, &mut out, None);
                }
            }
            return Body::Text(out);
        }
        let mut deflater = crate::gzip::Deflater::default();
        // A sample's text is far below CHUNK: the chunk is drained before it needs to grow.
        let mut chunk = String::with_capacity(CHUNK * 2);
        let mut ok = Some(());
        let mut drain = |chunk: &mut String| {
            ok = ok.and_then(|()| deflater.write(chunk.as_bytes()));
            chunk.clear();
        };
        for (_, i) in order {
            if let Some(family) = families.get_mut(i) {
                family.write_text(&self.labels, &mut chunk, Some(&mut drain));
                *family = FamilyEntry::new(String::new(), "", family.kind);
            }
        }
        drain(&mut chunk);
        match ok.and_then(|()| deflater.finish()) {
            Some(deflated) => Body::Deflated(deflated),
            None => {
                // Compressing into memory does not fail; if it ever did, say so rather than
                // answer with part of the text.
                log::error!(
                    target: "scrape",
                    namespace = self.namespace, target = self.target.as_str();
                    "cannot compress the scrape's text; answering without it"
                );
                Body::Text(String::new())
            }
        }
    }

    /// A histogram family: per label set, cumulative bucket counts, a sum and a count
    /// (written as `<name>_bucket{…,le=…}`, `<name>_sum`, `<name>_count`).
    pub fn histogram(&mut self, name: &str, help: &str) -> HistogramFamily<'_> {
        HistogramFamily { family: self.family(name, help, Kind::Histogram) }
    }

    fn family(&mut self, name: &str, help: &str, kind: Kind) -> Family<'_> {
        // Look the family up by a name assembled in a reused buffer: a family written again
        // (once per gateway, per modem…) costs no allocation.
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push_str(self.namespace);
        key.push('_');
        key.push_str(name);
        debug_assert!(valid_metric_name(&key), "invalid metric name {key}");
        let i = match self.index.get(key.as_str()) {
            Some(&i) => i,
            None => {
                self.families.push(FamilyEntry::new(key.clone(), help, kind));
                self.index.insert(key.clone(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let entry = &mut self.families[i];
        self.key = key;
        debug_assert_eq!(entry.kind, kind, "metric {name} used with two types");
        Family { entry, labels: &mut self.labels }
    }
}

impl Family<'_> {
    /// Adds the sample `labels` = `value`. A second sample with the same labels replaces the
    /// first, so the output never has duplicate series.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.labels.reserve(label_text_bound(labels));
        let start = self.labels.text.len();
        label_text_into(&mut self.labels.text, labels);
        self.entry.commit(self.labels, start, value);
        self
    }

    /// Adds the sample only when the device gave a value: `None` is an absent series,
    /// never a made-up 0.
    pub fn sample_opt(&mut self, labels: &[(&str, &str)], value: Option<f64>) -> &mut Self {
        if let Some(v) = value {
            self.sample(labels, v);
        }
        self
    }
}

/// A histogram family inside a [`Scrape`], from [`Scrape::histogram`].
#[derive(Debug)]
pub struct HistogramFamily<'a> {
    family: Family<'a>,
}

impl HistogramFamily<'_> {
    /// Adds one histogram for `labels`: `buckets` are `(upper bound, cumulative count)` in
    /// increasing order (the `+Inf` bucket is `count` and is added here), then the sum of the
    /// observed values and their count.
    pub fn sample(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) -> &mut Self {
        let Family { entry, labels: arena } = &mut self.family;
        for (bound, n) in buckets.iter().map(|(b, n)| (Some(*b), *n)).chain([(None, count)]) {
            let start = arena.text.len();
            arena.text.push_str("_bucket");
            let mut le = String::new();
            match bound {
                Some(b) => write_value(&mut le, b),
                None => le.push_str("+Inf"),
            }
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            arena.reserve(label_text_bound(&with_le));
            label_text_into(&mut arena.text, &with_le);
            entry.commit(arena, start, n as f64);
        }
        for (suffix, value) in [("_sum", sum), ("_count", count as f64)] {
            arena.reserve(suffix.len() + label_text_bound(labels));
            let start = arena.text.len();
            arena.text.push_str(suffix);
            label_text_into(&mut arena.text, labels);
            entry.commit(arena, start, value);
        }
        self
    }
}

/// How a probe ended, for [`Scrape::finish`].
#[derive(Debug)]
pub(crate) enum ProbeEnd {
    /// `probe` returned `Ok`.
    Ok,
    /// `probe` returned `Err`: the device could not be reached as a whole.
    Failed(anyhow::Error),
    /// The probe was still running at the deadline and was dropped.
    DeadlineExceeded,
    /// This request joined another request's scrape of the target and its own deadline
    /// passed before that scrape ended.
    WaitTimedOut,
}

/// A finished scrape: the exposition text and the `&debug=true` trace (which the server
/// shows followed by the text), shared by every request that joined it.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) body: Body,
    pub(crate) trace: String,
    /// The outcome in parts, for `check`.
    pub(crate) report: Report,
}

/// The exposition text of a scrape: as text, or (above [`BIG_TEXT`]) compressed.
#[derive(Debug)]
pub(crate) enum Body {
    Text(String),
    Deflated(crate::gzip::Deflated),
}

impl Rendered {
    /// The exposition text (decompressed when the scrape was large).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match &self.body {
            Body::Text(text) => Cow::Borrowed(text),
            Body::Deflated(deflated) => match crate::gzip::inflate(deflated) {
                Some(text) => Cow::Owned(text),
                None => {
                    log::error!(target: "scrape", "cannot decompress a scrape's text");
                    Cow::Borrowed("")
                }
            },
        }
    }
}

/// One scrape's outcome for `check`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) up: bool,
    /// Why the probe as a whole failed (the error chain), when it did.
    pub(crate) error: Option<String>,
    pub(crate) duration: Duration,
    /// `(name, error, duration, series)` per collector, in the order recorded.
    pub(crate) collectors: Vec<(&'static str, Option<String>, Duration, usize)>,
    /// Samples the exporter wrote (without the core's).
    pub(crate) series: usize,
    pub(crate) facts: Vec<(String, String)>,
    pub(crate) logins: Vec<String>,
    pub(crate) quirks: Vec<String>,
}

impl Scrape {
    /// Adds the core's metrics (`<ns>_up`, durations, per-collector outcomes), logs a failed
    /// probe once and renders the text and the trace.
    pub(crate) fn finish(mut self, end: ProbeEnd, elapsed: Duration) -> Rendered {
        let succeeded = self.collectors.iter().any(|c| c.error.is_none());
        let probe_line = match &end {
            ProbeEnd::Ok => "probe: ok".to_owned(),
            ProbeEnd::Failed(err) => {
                let chain = format!("{err:#}");
                log::warn!(
                    target: "scrape",
                    namespace = self.namespace, target = self.target.as_str(), err = chain.as_str();
                    "probe failed"
                );
                format!("probe failed: {chain}")
            }
            ProbeEnd::DeadlineExceeded => {
                let line = format!(
                    "probe stopped at the scrape deadline after {:.3}s",
                    elapsed.as_secs_f64()
                );
                log::warn!(
                    target: "scrape",
                    namespace = self.namespace, target = self.target.as_str();
                    "{line}"
                );
                line
            }
            ProbeEnd::WaitTimedOut => {
                let line = format!(
                    "gave up after {:.3}s waiting for the scrape of this target already in \
                     flight (the scrape deadline passed)",
                    elapsed.as_secs_f64()
                );
                log::warn!(
                    target: "scrape",
                    namespace = self.namespace, target = self.target.as_str();
                    "{line}"
                );
                line
            }
        };
        let up = matches!(end, ProbeEnd::Ok) && (self.collectors.is_empty() || succeeded);
        let written = self.sample_count();
        let mut report = Report {
            up,
            error: match &end {
                ProbeEnd::Ok => None,
                ProbeEnd::Failed(err) => Some(format!("{err:#}")),
                ProbeEnd::DeadlineExceeded | ProbeEnd::WaitTimedOut => Some(probe_line.clone()),
            },
            duration: elapsed,
            collectors: Vec::new(),
            series: written,
            facts: std::mem::take(&mut self.facts),
            logins: std::mem::take(&mut self.logins),
            quirks: std::mem::take(&mut self.quirks),
        };
        for (i, c) in self.collectors.iter().enumerate() {
            let next = self.collectors.get(i + 1).map_or(written, |n| n.samples_before);
            report.collectors.push((
                c.name,
                c.error.clone(),
                c.elapsed,
                next.saturating_sub(c.samples_before),
            ));
        }

        // One sample per collector name: a collector recorded twice succeeded only if every
        // run did, and took as long as its slowest run.
        let mut outcomes: BTreeMap<&'static str, (bool, Duration)> = BTreeMap::new();
        for c in &self.collectors {
            let entry = outcomes.entry(c.name).or_insert((true, Duration::ZERO));
            entry.0 &= c.error.is_none();
            entry.1 = entry.1.max(c.elapsed);
        }
        {
            let mut success = self.gauge(
                "scrape_collector_success",
                "Whether the collector succeeded in this scrape (1) or failed (0).",
            );
            for (name, (ok, _)) in &outcomes {
                success.sample(&[("collector", name)], if *ok { 1.0 } else { 0.0 });
            }
        }
        {
            let mut duration = self.gauge(
                "scrape_collector_duration_seconds",
                "How long the collector took in this scrape, in seconds.",
            );
            for (name, (_, took)) in &outcomes {
                duration.sample(&[("collector", name)], took.as_secs_f64());
            }
        }
        self.gauge(
            "scrape_duration_seconds",
            "How long the scrape of the target took, in seconds.",
        )
        .sample(&[], elapsed.as_secs_f64());
        self.gauge(
            "up",
            "Whether the target answered the scrape (1) or not (0): the device was reached and, \
             when collectors ran, at least one succeeded.",
        )
        .sample(&[], if up { 1.0 } else { 0.0 });
        let body = self.encode_body();

        let mut trace = String::new();
        let _ = writeln!(trace, "target: {}", self.target);
        for line in &self.trace {
            let _ = writeln!(trace, "{line}");
        }
        let _ = writeln!(trace, "{probe_line}");
        let _ = writeln!(trace, "up: {}", u8::from(up));
        let _ = writeln!(trace, "scrape duration: {:.6}s", elapsed.as_secs_f64());
        Rendered { body, trace, report }
    }
}

fn with_label<'a>(
    labels: &[(&'a str, &'a str)],
    k: &'a str,
    v: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut all = labels.to_vec();
    all.push((k, v));
    all
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape() -> Scrape {
        Scrape::new("demo", "t", Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn families_are_prefixed_sorted_and_deduplicated() {
        let mut s = scrape();
        s.gauge("b_ratio", "B.").sample(&[("x", "1")], 0.5).sample(&[("x", "1")], 0.25);
        s.counter("a_bytes_total", "A.").sample(&[], 0.0);
        s.gauge("empty", "Never written.");
        let text = s.encode();
        assert_eq!(
            text,
            "# HELP demo_a_bytes_total A.\n# TYPE demo_a_bytes_total counter\ndemo_a_bytes_total 0\n\
             # HELP demo_b_ratio B.\n# TYPE demo_b_ratio gauge\ndemo_b_ratio{x=\"1\"} 0.25\n"
        );
    }

    #[test]
    fn histograms_write_buckets_sum_and_count() {
        let mut s = scrape();
        s.histogram("call_duration_seconds", "Calls.")
            .sample(&[("endpoint", "list")], &[(0.1, 2), (1.0, 3)], 1.25, 4)
            .sample(&[("endpoint", "list")], &[(0.1, 2), (1.0, 3)], 1.5, 5);
        let text = s.encode();
        assert_eq!(
            text,
            "# HELP demo_call_duration_seconds Calls.\n# TYPE demo_call_duration_seconds histogram\n\
             demo_call_duration_seconds_bucket{endpoint=\"list\",le=\"0.1\"} 2\n\
             demo_call_duration_seconds_bucket{endpoint=\"list\",le=\"1\"} 3\n\
             demo_call_duration_seconds_bucket{endpoint=\"list\",le=\"+Inf\"} 5\n\
             demo_call_duration_seconds_sum{endpoint=\"list\"} 1.5\n\
             demo_call_duration_seconds_count{endpoint=\"list\"} 5\n"
        );
        if let Some(findings) = crate::testing::promtool_check_metrics(&text) {
            assert_eq!(findings, "", "{text}");
        }
    }

    #[test]
    fn large_families_deduplicate_through_the_index() {
        let mut s = scrape();
        let ids: Vec<String> = (0..100).map(|i| format!("gw-{i}")).collect();
        for round in 0..3 {
            let mut f = s.gauge("g", "G.");
            for id in &ids {
                f.sample(&[("id", id)], f64::from(round));
            }
            // A late duplicate of an early label set replaces it.
            f.sample(&[("id", "gw-3")], 42.0);
        }
        // The same with the families written straight into the compressor.
        let mut big = scrape();
        for (i, id) in ids.iter().enumerate() {
            big.gauge("g", "G.").sample(&[("id", id)], 1.0);
            big.gauge("g", "G.").sample(&[("id", "gw-0")], i as f64);
        }
        for i in 0..30_000 {
            big.gauge("h", "H.").sample(&[("n", &format!("value-{i:030}"))], 1.0);
        }
        let expected = big.encode();
        assert!(expected.contains("demo_g{id=\"gw-0\"} 99\n"), "{}", &expected[..300]);
        assert_eq!(expected.matches("demo_g{id=\"gw-0\"}").count(), 1);
        let body = big.encode_body();
        assert!(matches!(body, Body::Deflated(_)));
        let rendered = Rendered { body, trace: String::new(), report: Report::default() };
        assert_eq!(rendered.text(), expected);

        let text = s.encode();
        assert_eq!(text.lines().filter(|l| l.starts_with("demo_g{")).count(), 100);
        assert!(text.contains("demo_g{id=\"gw-3\"} 42\n"));
        assert!(text.contains("demo_g{id=\"gw-99\"} 2\n"));
        // Insertion order is kept.
        let first = text.lines().find(|l| l.starts_with("demo_g{")).unwrap_or_default();
        assert_eq!(first, "demo_g{id=\"gw-0\"} 2");
    }

    #[test]
    fn a_label_set_written_to_many_families_is_stored_once() {
        let mut s = scrape();
        let ids: Vec<String> = (0..1000).map(|i| format!("gw-{i:04}")).collect();
        for id in &ids {
            for family in ["a", "b", "c", "d", "e", "f"] {
                s.gauge(family, "F.").sample(&[("gateway_id", id)], 1.0);
            }
            // Other label sets in between (more than the recent ones compared) still find
            // no false match, and a family's repeat in between is merged.
            for n in 0..6 {
                s.gauge("g", "G.").sample(&[("gateway_id", id), ("n", &n.to_string())], 2.0);
            }
            s.gauge("a", "F.").sample(&[("gateway_id", id)], 3.0);
        }
        let one = r#"{gateway_id="gw-0000"}"#.len();
        let other = r#"{gateway_id="gw-0000",n="0"}"#.len();
        // The repeat of `a` comes after more other label sets than are compared: it is stored
        // again, except while `a` is small enough to be scanned for it.
        let repeats = ids.len() - (INDEX_FROM - 1);
        assert_eq!(s.labels.text.len(), ids.len() * (one + 6 * other) + repeats * one);
        assert!(s.labels.text.capacity() <= s.labels.text.len() * 5 / 4 + GROW_BY_QUARTERS);
        let text = s.encode();
        for family in ["a", "b", "c", "d", "e", "f"] {
            let lines: Vec<&str> =
                text.lines().filter(|l| l.starts_with(&format!("demo_{family}{{"))).collect();
            assert_eq!(lines.len(), 1000, "{family}");
            assert_eq!(
                lines[17],
                format!(
                    "demo_{family}{{gateway_id=\"gw-0017\"}} {}",
                    if family == "a" { 3 } else { 1 }
                )
            );
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("demo_g{")).count(), 6000);
        assert!(text.contains("demo_g{gateway_id=\"gw-0999\",n=\"5\"} 2\n"));
    }

    #[test]
    fn buffers_grow_by_quarters_once_large() {
        assert_eq!(growth(10, 64, 8), 0);
        assert_eq!(growth(60, 64, 8), 64, "small: doubled");
        assert_eq!(growth(0, 0, 3), 64);
        assert_eq!(growth(1 << 20, 1 << 20, 100), 1 << 18, "large: a quarter more");
        assert_eq!(growth(1 << 20, 1 << 20, 1 << 19), 1 << 19, "or what is needed");
    }

    #[test]
    fn values_are_written_as_the_text_format_spells_them() {
        let cases: [(f64, &str); 12] = [
            (0.0, "0"),
            (-0.0, "-0"),
            (42.0, "42"),
            (-113.0, "-113"),
            (0.25, "0.25"),
            (-85.5, "-85.5"),
            (1e-7, "0.0000001"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (1e300, &format!("{}", 1e300)),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, want) in cases {
            let mut out = String::new();
            write_value(&mut out, value);
            assert_eq!(out, want, "{value:?}");
            assert!(out.parse::<f64>().is_ok() || out.ends_with("Inf"), "{out}");
        }
    }

    #[test]
    fn label_text_hashes_spread() {
        let hashes: std::collections::HashSet<u64> =
            (0..10_000).map(|i| hash_text(&format!("{{gateway=\"gw-{i}\"}}"))).collect();
        assert_eq!(hashes.len(), 10_000);
    }

    #[test]
    fn the_body_is_the_same_text_small_and_large() {
        for gateways in [3, 40_000] {
            let mut s = scrape();
            for i in 0..gateways {
                let id = format!("gw-{i}");
                s.gauge("up_ratio", "U.").sample(&[("gateway", &id)], 0.5);
                s.counter("rx_total", "R.").sample(&[("gateway", &id)], f64::from(i));
            }
            s.gauge("a", "First by name.").sample(&[], 1.0);
            let text = s.encode();
            assert_eq!(gateways > 10_000, text.len() > BIG_TEXT, "{}", text.len());
            let body = s.encode_body();
            assert_eq!(matches!(body, Body::Deflated(_)), gateways > 10_000);
            if let Body::Deflated(deflated) = &body {
                assert_eq!(deflated.text_len(), text.len() as u64);
                assert!(deflated.compressed_len() * 5 < text.len());
            }
            let rendered = Rendered { body, trace: String::new(), report: Report::default() };
            assert_eq!(rendered.text(), text);
            assert_eq!(s.encode(), "", "the families were given back");
        }
    }

    #[test]
    fn absent_values_are_absent_and_zero_is_kept() {
        let mut s = scrape();
        s.gauge("v", "V.")
            .sample_opt(&[("k", "none")], None)
            .sample_opt(&[("k", "zero")], Some(0.0));
        let text = s.encode();
        assert!(text.contains("demo_v{k=\"zero\"} 0\n"), "{text}");
        assert!(!text.contains("none"), "{text}");
    }

    #[test]
    fn state_set_is_one_hot_and_shows_unknown_states() {
        let mut s = scrape();
        s.state_set("state", "S.", &[("modem", "a")], &["on", "off"], "off");
        s.state_set("state", "S.", &[("modem", "b")], &["on", "off"], "weird");
        let text = s.encode();
        assert!(text.contains("demo_state{modem=\"a\",state=\"on\"} 0\n"), "{text}");
        assert!(text.contains("demo_state{modem=\"a\",state=\"off\"} 1\n"), "{text}");
        assert!(text.contains("demo_state{modem=\"b\",state=\"weird\"} 1\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = scrape();
        s.info("device_info", "I.", &[("name", "a\"b\\c\nd")]);
        assert!(s.encode().contains(r#"name="a\"b\\c\nd""#), "{}", s.encode());
        let mut s = scrape();
        s.gauge("g", "Says \"hi\" \\ twice\nover lines, ünïcode.").sample(&[("l", "ü\"")], 1.0);
        assert_eq!(
            s.encode(),
            "# HELP demo_g Says \"hi\" \\\\ twice\\nover lines, ünïcode.\n# TYPE demo_g gauge\n\
             demo_g{l=\"ü\\\"\"} 1\n"
        );
    }

    #[tokio::test]
    async fn timed_bounds_a_hanging_call_and_record_keeps_others() {
        let mut s = Scrape::new("demo", "t", Instant::now() + Duration::from_millis(50));
        let d = s.deadline();
        let (slow, fast) = tokio::join!(
            timed("slow", d, std::future::pending::<anyhow::Result<u8>>()),
            timed("fast", d, async { Ok(7u8) }),
        );
        assert!(slow.elapsed < Duration::from_millis(500));
        assert_eq!(s.record(slow), None);
        assert_eq!(s.record(fast), Some(7));
        assert_eq!(s.collectors.len(), 2);
        assert!(s.collectors[0].error.as_deref().unwrap_or("").contains("deadline"));
        assert!(s.collectors[1].error.is_none());
    }
}
