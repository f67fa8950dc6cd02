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
    let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let mut enc = pooled.unwrap_or_else(|| DeflateEncoder::new(Vec::new(), Compression::fast()));
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Exposition text compresses about 4:1 at this level; the guess saves regrowing.
    let mut out = Vec::with_capacity(len / 3 + 64);
    out.extend_from_slice(&HEADER);
    // `reset` finishes the (already finished) previous stream, resets the deflate state and
    // swaps in our buffer.
    enc.reset(out).ok()?;
    let mut crc = Crc::new();
    for part in parts {
        enc.write_all(part).ok()?;
        crc.update(part);
    }
    enc.try_finish().ok()?;
    let mut out = enc.reset(Vec::new()).ok()?;
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1).
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.len() < POOL_SIZE {
        pool.push(enc);
    }
    Some(out)
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
