//! gzip for exposition answers, cheap enough to run on every scrape.
//!
//! Prometheus asks for gzip on every scrape. Two things made it the largest cost of a scrape:
//! the default compression level, and a fresh deflate state per answer (a few hundred KiB,
//! allocated and zeroed every time). Answers are compressed at the fastest level (exposition
//! text shrinks about as well: it is highly repetitive), with deflate states kept in a small
//! pool and reset between answers; the gzip header and trailer (RFC 1952) are written here.

use std::{
    io::Write as _,
    sync::{Mutex, PoisonError},
};

use flate2::{Compression, Crc, write::DeflateEncoder};

/// Deflate states kept for reuse; more concurrent compressions allocate their own.
const POOL_SIZE: usize = 2;

static POOL: Mutex<Vec<DeflateEncoder<Vec<u8>>>> = Mutex::new(Vec::new());

/// Header of a gzip member: magic, deflate, no flags, no mtime, "fastest" (XFL 4), OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff];

/// `parts`, back to back, as one gzip member; `None` only if deflate fails (the caller then
/// sends it plain).
pub fn compress(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Exposition text compresses about 4:1 at this level; the guess saves regrowing.
    let mut out = Vec::with_capacity(len / 3 + 64);
    out.extend_from_slice(&HEADER);
    let mut deflater = Deflater::into(out);
    for part in parts {
        deflater.write(part)?;
    }
    let Deflated { data, crc, .. } = deflater.finish()?;
    Some(trailer(data, &crc))
}

/// Appends the gzip trailer (RFC 1952 §2.3.1): the CRC-32 and the length modulo 2^32.
fn trailer(mut out: Vec<u8>, crc: &Crc) -> Vec<u8> {
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

/// A finished raw deflate stream (RFC 1951) of a text, with the text's CRC-32 and length:
/// a large scrape is compressed as its text is written, so the whole text never exists at
/// once; [`with_prefix`] makes it a gzip member, [`inflate`] gives the text back.
#[derive(Debug)]
pub struct Deflated {
    data: Vec<u8>,
    crc: Crc,
    len: u64,
}

impl Deflated {
    /// The length of the text.
    pub fn text_len(&self) -> u64 {
        self.len
    }

    /// The length of the compressed stream.
    #[cfg(test)]
    pub fn compressed_len(&self) -> usize {
        self.data.len()
    }
}

/// Compresses a text written in pieces, with a pooled deflate state.
pub struct Deflater {
    enc: DeflateEncoder<Vec<u8>>,
    crc: Crc,
    len: u64,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Default for Deflater {
    fn default() -> Deflater {
        Deflater::into(Vec::new())
    }
}

impl Deflater {
    /// A deflater whose output is appended to `out`.
    fn into(out: Vec<u8>) -> Deflater {
        let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        // A pooled state is reset here, once per stream: `reset` ends the previous stream
        // (if it was only flushed) into the buffer left in it, clears the deflate state and
        // swaps in an empty buffer, which then is replaced by `out`.
        let enc = pooled.and_then(|mut enc| enc.reset(Vec::new()).ok().map(|_| enc));
        let enc = match enc {
            Some(mut enc) => {
                *enc.get_mut() = out;
                enc
            }
            None => DeflateEncoder::new(out, Compression::fast()),
        };
        Deflater { enc, crc: Crc::new(), len: 0 }
    }

    /// Compresses the next piece of the text; `None` only if deflate fails.
    pub fn write(&mut self, part: &[u8]) -> Option<()> {
        self.enc.write_all(part).ok()?;
        self.crc.update(part);
        self.len += part.len() as u64;
        Some(())
    }

    /// Ends the stream (its last block is marked final).
    pub fn finish(mut self) -> Option<Deflated> {
        self.enc.try_finish().ok()?;
        let data = std::mem::take(self.enc.get_mut());
        give_back(self.enc);
        Some(Deflated { data, crc: self.crc, len: self.len })
    }

    /// Flushes the stream to a byte boundary without ending it (a sync flush: no block is
    /// marked final), so that another deflate stream can follow it in the same gzip member.
    fn flushed(mut self) -> Option<(Vec<u8>, Crc)> {
        self.enc.flush().ok()?;
        let data = std::mem::take(self.enc.get_mut());
        give_back(self.enc);
        Some((data, self.crc))
    }
}

fn give_back(enc: DeflateEncoder<Vec<u8>>) {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.len() < POOL_SIZE {
        pool.push(enc);
    }
}

/// One gzip member of `prefix` followed by the text of `body`: `prefix` is compressed and
/// flushed to a byte boundary, `body`'s stream follows unchanged (deflate blocks may follow
/// one another across streams as long as only the last is final, and `body`'s never looks
/// back past its own start), and the trailer carries the CRC of both texts combined.
/// `None` only if deflate fails.
pub fn with_prefix(prefix: &[u8], body: &Deflated) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER.len() + prefix.len() / 3 + body.data.len() + 64);
    out.extend_from_slice(&HEADER);
    let mut crc = Crc::new();
    if !prefix.is_empty() {
        let mut deflater = Deflater::default();
        deflater.write(prefix)?;
        let (data, prefix_crc) = deflater.flushed()?;
        out.extend_from_slice(&data);
        crc = prefix_crc;
    }
    out.extend_from_slice(&body.data);
    crc.combine(&body.crc);
    Some(trailer(out, &crc))
}

/// The text of `body`; `None` if it does not decompress to UTF-8 text of its length.
pub fn inflate(body: &Deflated) -> Option<String> {
    let mut text = Vec::with_capacity(usize::try_from(body.len).ok()?);
    let mut inflate = Inflate::default();
    while let Some(piece) = inflate.next(body, PIECE) {
        text.extend_from_slice(&piece.ok()?);
    }
    String::from_utf8(text).ok()
}

/// The size of the pieces a large text is given back in.
pub const PIECE: usize = 64 << 10;

/// The text of a [`Deflated`], given back piece by piece (to a client that does not accept
/// gzip: the whole text never exists at once).
pub struct Inflate {
    dec: flate2::Decompress,
    done: bool,
}

impl std::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflate").field("out", &self.dec.total_out()).finish_non_exhaustive()
    }
}

impl Default for Inflate {
    fn default() -> Inflate {
        Inflate { dec: flate2::Decompress::new(false), done: false }
    }
}

impl Inflate {
    /// The next piece of `body`'s text, at most `max` bytes (not empty); `None` after the
    /// last; an error (once, then `None`) when `body` does not decompress to exactly its
    /// length.
    pub fn next(&mut self, body: &Deflated, max: usize) -> Option<Result<Vec<u8>, &'static str>> {
        if self.done {
            return None;
        }
        let mut out = Vec::with_capacity(max.max(1));
        let ended = loop {
            let before = (self.dec.total_in(), self.dec.total_out());
            let input = usize::try_from(before.0).ok().and_then(|at| body.data.get(at..));
            let status = input.and_then(|input| {
                self.dec.decompress_vec(input, &mut out, flate2::FlushDecompress::None).ok()
            });
            match status {
                None => break Err("the compressed text is damaged"),
                Some(flate2::Status::StreamEnd) => break Ok(true),
                Some(_) if out.len() == out.capacity() => break Ok(false),
                // Neither input taken nor output given: the stream stops short of its end.
                Some(_) if (self.dec.total_in(), self.dec.total_out()) == before => {
                    break Err("the compressed text ends early");
                }
                Some(_) => {}
            }
        };
        let result = match ended {
            Ok(_) if self.dec.total_out() > body.len => {
                Err("the compressed text is longer than recorded")
            }
            Ok(true) if self.dec.total_out() != body.len => {
                Err("the compressed text is shorter than recorded")
            }
            Ok(ended) => {
                self.done = ended;
                if out.is_empty() {
                    return None;
                }
                return Some(Ok(out));
            }
            Err(why) => Err(why),
        };
        self.done = true;
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read as _;

    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn answers_decode_and_reused_states_start_clean() {
        let big: String =
            (0..5000).map(|i| format!("demo_metric{{gateway=\"gw-{i}\"}} {i}\n")).collect();
        let inputs: [&[u8]; 5] = [b"", b"x", big.as_bytes(), b"# HELP a b\na 1\n", big.as_bytes()];
        for _ in 0..3 {
            for input in inputs {
                let gz = compress(&[input]).unwrap();
                assert_eq!(gz.get(..2), Some(&[0x1f, 0x8b][..]));
                assert_eq!(gunzip(&gz), input);
            }
        }
        let gz = compress(&[big.as_bytes()]).unwrap();
        // Parts are one stream: split anywhere, the same text comes out.
        let (a, b) = big.as_bytes().split_at(12_345);
        assert_eq!(gunzip(&compress(&[a, b, b""]).unwrap()), big.as_bytes());
        assert!(gz.len() * 5 < big.len(), "{} -> {}", big.len(), gz.len());
    }

    #[test]
    fn a_stream_written_in_pieces_follows_a_prefix_in_one_member() {
        let text: String =
            (0..20_000).map(|i| format!("demo_metric{{gateway=\"gw-{i}\"}} {i}\n")).collect();
        for prefix in [&b""[..], b"# HELP own_metric O.\nown_metric 1\n"] {
            for piece in [1, 777, 65_536, text.len()] {
                let mut deflater = Deflater::default();
                for part in text.as_bytes().chunks(piece) {
                    deflater.write(part).unwrap();
                }
                let deflated = deflater.finish().unwrap();
                assert_eq!(deflated.text_len(), text.len() as u64);
                assert_eq!(inflate(&deflated).unwrap(), text);
                let gz = with_prefix(prefix, &deflated).unwrap();
                assert_eq!(gunzip(&gz), [prefix, text.as_bytes()].concat());
                // Also read strictly as one member: the trailer's CRC and length are checked.
                let mut decoder = flate2::read::GzDecoder::new(gz.as_slice());
                let mut out = Vec::new();
                decoder.read_to_end(&mut out).unwrap();
                assert_eq!(out.len(), prefix.len() + text.len());
                assert!(gz.len() * 5 < text.len());
            }
        }
        // An empty text is a valid stream too.
        let empty = Deflater::default().finish().unwrap();
        assert_eq!(inflate(&empty).unwrap(), "");
        assert_eq!(gunzip(&with_prefix(b"a 1\n", &empty).unwrap()), b"a 1\n");
    }

    #[test]
    fn a_damaged_stream_is_no_text() {
        let mut deflater = Deflater::default();
        deflater.write(b"demo 1\n").unwrap();
        let mut deflated = deflater.finish().unwrap();
        deflated.len += 1;
        assert_eq!(inflate(&deflated), None);
        deflated.len -= 2;
        assert_eq!(inflate(&deflated), None, "longer than recorded");
        deflated.len += 1;
        assert_eq!(inflate(&deflated).as_deref(), Some("demo 1\n"));
        // Cut short, or with a damaged byte: an error once, then nothing more.
        let whole = deflated.data.clone();
        for damaged in [whole[..whole.len() / 2].to_vec(), vec![0xff; whole.len()]] {
            deflated.data = damaged;
            let mut pieces = Inflate::default();
            assert!(matches!(pieces.next(&deflated, PIECE), Some(Err(_))));
            assert!(pieces.next(&deflated, PIECE).is_none());
        }
    }

    #[test]
    fn a_text_is_given_back_in_pieces_of_at_most_the_size_asked() {
        let text: String =
            (0..30_000).map(|i| format!("demo_metric{{gateway=\"gw-{i}\"}} {i}\n")).collect();
        let mut deflater = Deflater::default();
        deflater.write(text.as_bytes()).unwrap();
        let deflated = deflater.finish().unwrap();
        for max in [1, 1000, PIECE, text.len() * 2] {
            let mut pieces = Inflate::default();
            let mut out = Vec::new();
            let mut count = 0;
            while let Some(piece) = pieces.next(&deflated, max) {
                let piece = piece.unwrap();
                assert!(!piece.is_empty() && piece.len() <= max.max(1), "{}", piece.len());
                out.extend_from_slice(&piece);
                count += 1;
                assert!(count <= text.len(), "no end");
            }
            assert_eq!(out, text.as_bytes(), "{max}");
            assert_eq!(count, text.len().div_ceil(max), "{max}");
        }
    }

    #[test]
    fn concurrent_compressions_do_not_mix() {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let text: String = (0..500).map(|i| format!("t{t}_m {i}\n")).collect();
                    for _ in 0..20 {
                        assert_eq!(gunzip(&compress(&[text.as_bytes()]).unwrap()), text.as_bytes());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
