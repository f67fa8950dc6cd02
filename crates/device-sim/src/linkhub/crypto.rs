//! The simulator's copy of the LinkHub login cryptography (the exporter has its own; the
//! simulator does not depend on the exporter): TCL's nibble-XOR obfuscation and the
//! hotspot models' AES-CBC token header. Checked against the spec's vectors and openssl.

/// The obfuscation key from TCL's web UI and Android app (public).
pub const OBFUSCATION_KEY: &[u8; 32] = b"e5dl12XYVggihggafXWf0f2YSf2Xngd1";

/// TCL's nibble-XOR obfuscation: every UTF-16 unit `c` becomes two characters,
/// `(k & 0xF0) | ((c & 0x0F) ^ (k & 0x0F))` and `(k & 0xF0) | ((c >> 4) ^ (k & 0x0F))`,
/// with `k` the key byte at the same position (mod 32). `""` stays `""`.
pub fn obfuscate(input: &str) -> String {
    let mut out = String::with_capacity(input.len() * 2);
    for (i, c) in input.encode_utf16().enumerate() {
        let k = u32::from(OBFUSCATION_KEY[i % OBFUSCATION_KEY.len()]);
        let c = u32::from(c);
        for v in [(k & 0xF0) | ((c & 0x0F) ^ (k & 0x0F)), (k & 0xF0) | ((c >> 4) ^ (k & 0x0F))] {
            // The values stay below 0x1000, far from the surrogate range.
            out.push(char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }
    out
}

/// base64(AES-CBC(key, iv, PKCS#7-padded `data`)); the key length (16, 24 or 32 bytes)
/// selects AES-128/192/256, and the IV must be 16 bytes.
pub fn aes_cbc_base64(key: &[u8], iv: &[u8], data: &[u8]) -> anyhow::Result<String> {
    let aes = Aes::new(key)?;
    let mut chain: [u8; 16] = iv
        .try_into()
        .map_err(|_| anyhow::anyhow!("AES IV (param1) has {} bytes, expected 16", iv.len()))?;
    let pad = 16 - data.len() % 16;
    let mut padded = data.to_vec();
    padded.resize(data.len() + pad, pad as u8);
    let mut out = Vec::with_capacity(padded.len());
    for block in padded.chunks_exact(16) {
        for (c, b) in chain.iter_mut().zip(block) {
            *c ^= b;
        }
        aes.encrypt_block(&mut chain);
        out.extend_from_slice(&chain);
    }
    Ok(base64(&out))
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3F) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

const SBOX: [u8; 256] = [
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
];

/// The AES block cipher (FIPS-197), encryption direction only.
struct Aes {
    round_keys: Vec<[u8; 16]>,
}

impl Aes {
    fn new(key: &[u8]) -> anyhow::Result<Aes> {
        let nk = match key.len() {
            16 | 24 | 32 => key.len() / 4,
            n => anyhow::bail!("AES key (param0) has {n} bytes, expected 16, 24 or 32"),
        };
        let rounds = nk + 6;
        let total = 4 * (rounds + 1);
        let mut words: Vec<[u8; 4]> =
            key.chunks_exact(4).map(|w| [w[0], w[1], w[2], w[3]]).collect();
        let mut rcon: u8 = 1;
        for i in nk..total {
            let mut t = words[i - 1];
            if i % nk == 0 {
                t = [
                    SBOX[t[1] as usize],
                    SBOX[t[2] as usize],
                    SBOX[t[3] as usize],
                    SBOX[t[0] as usize],
                ];
                t[0] ^= rcon;
                rcon = xtime(rcon);
            } else if nk > 6 && i % nk == 4 {
                t = t.map(|b| SBOX[b as usize]);
            }
            let prev = words[i - nk];
            words.push([prev[0] ^ t[0], prev[1] ^ t[1], prev[2] ^ t[2], prev[3] ^ t[3]]);
        }
        let round_keys = words
            .chunks_exact(4)
            .map(|w| {
                let mut k = [0u8; 16];
                for (j, word) in w.iter().enumerate() {
                    k[4 * j..4 * j + 4].copy_from_slice(word);
                }
                k
            })
            .collect();
        Ok(Aes { round_keys })
    }

    fn encrypt_block(&self, state: &mut [u8; 16]) {
        let last = self.round_keys.len() - 1;
        add(state, &self.round_keys[0]);
        for (round, key) in self.round_keys.iter().enumerate().skip(1) {
            for b in state.iter_mut() {
                *b = SBOX[*b as usize];
            }
            // ShiftRows: row r (bytes r, r+4, r+8, r+12) rotates left by r.
            let s = *state;
            for c in 0..4 {
                for r in 0..4 {
                    state[4 * c + r] = s[4 * ((c + r) % 4) + r];
                }
            }
            if round != last {
                for c in 0..4 {
                    let col = [state[4 * c], state[4 * c + 1], state[4 * c + 2], state[4 * c + 3]];
                    let all = col[0] ^ col[1] ^ col[2] ^ col[3];
                    for r in 0..4 {
                        state[4 * c + r] = col[r] ^ all ^ xtime(col[r] ^ col[(r + 1) % 4]);
                    }
                }
            }
            add(state, key);
        }
    }
}

fn add(state: &mut [u8; 16], key: &[u8; 16]) {
    for (s, k) in state.iter_mut().zip(key) {
        *s ^= k;
    }
}

fn xtime(b: u8) -> u8 {
    (b << 1) ^ if b & 0x80 != 0 { 0x1b } else { 0 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_and_openssl() {
        assert_eq!(obfuscate("admin"), "dc13ibej?7");
        assert_eq!(obfuscate("45487484"), "af06`gdo6261P[]Z");
        let header = aes_cbc_base64(
            b"1234567890123456",
            b"6543210987654321",
            obfuscate("45487484").as_bytes(),
        );
        assert_eq!(header.unwrap(), "ml2L9t8hRE9sb0i7B6FYdNDo1LSAB0YlaD6X2TcO/8Q=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
