//! The small amount of cryptography the LinkHub login needs, written out so the exporter
//! does not pull in a cipher crate for one call per session.
//!
//! - [`obfuscate`]: TCL's reversible nibble-XOR obfuscation of user name, password and token
//!   (`units.encrypt` in the web UI, `EncryptUtils.encryptAdmin` in the Android app);
//! - [`aes_cbc_base64`]: the token header of "hotspot" models (HH72, MW43/45/70/12):
//!   base64(AES-CBC-PKCS#7(obfuscated token)) with key `param0` and IV `param1` from `Login`;
//! - [`md5_hex`]: the password hash of the MW-series MiFis before obfuscation.
//!
//! Only encryption is implemented; each function is checked against published test vectors
//! (FIPS-197, RFC 1321, RFC 4648) and against `openssl enc`.

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

/// MD5 of `input` as 32 lower-case hex digits.
pub fn md5_hex(input: &[u8]) -> String {
    md5(input).iter().map(|b| format!("{b:02x}")).collect()
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

fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> =
        (0..64).map(|i| ((f64::from(i + 1)).sin().abs() * 4_294_967_296.0) as u32).collect();
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> =
            chunk.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 16];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn obfuscation_matches_the_spec_vectors() {
        assert_eq!(obfuscate("admin"), "dc13ibej?7");
        assert_eq!(obfuscate("1234"), "df76ggho");
        assert_eq!(obfuscate("admin123"), "dc13ibej?731Z[ZZ");
        assert_eq!(obfuscate("45487484"), "af06`gdo6261P[]Z");
        assert_eq!(obfuscate(""), "");
    }

    #[test]
    fn aes_matches_fips_197() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        };
        let plain: [u8; 16] = hex("00112233445566778899aabbccddeeff").try_into().unwrap();
        for (key, expected) in [
            ("000102030405060708090a0b0c0d0e0f", "69c4e0d86a7b0430d8cdb78070b4c55a"),
            (
                "000102030405060708090a0b0c0d0e0f1011121314151617",
                "dda97ca4864cdfe06eaf70a0ec0d7191",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "8ea2b7ca516745bfeafc49904b496089",
            ),
        ] {
            let mut block = plain;
            Aes::new(&hex(key)).unwrap().encrypt_block(&mut block);
            assert_eq!(block.to_vec(), hex(expected), "key {key}");
        }
    }

    #[test]
    fn token_header_matches_openssl() {
        // printf '%s' 'af06`gdo6261P[]Z' | openssl enc -aes-128-cbc -K <hex "1234567890123456">
        //   -iv <hex "6543210987654321"> | base64
        let token = obfuscate("45487484");
        let header = aes_cbc_base64(b"1234567890123456", b"6543210987654321", token.as_bytes());
        assert_eq!(header.unwrap(), "ml2L9t8hRE9sb0i7B6FYdNDo1LSAB0YlaD6X2TcO/8Q=");
        let long = aes_cbc_base64(b"12345678901234567890123456789012", b"6543210987654321", b"abc");
        assert_eq!(long.unwrap(), "tSstMArU6OxA6tDRLggcGw==");
        let mid = aes_cbc_base64(b"123456789012345678901234", b"6543210987654321", b"abc");
        assert_eq!(mid.unwrap(), "/0KZTvo62+s/mMFlBAgSKA==");
    }

    #[test]
    fn bad_aes_parameters_are_errors() {
        let err = aes_cbc_base64(b"short", b"6543210987654321", b"x").unwrap_err();
        assert!(err.to_string().contains("param0"), "{err}");
        let err = aes_cbc_base64(b"1234567890123456", b"short", b"x").unwrap_err();
        assert!(err.to_string().contains("param1"), "{err}");
    }

    #[test]
    fn md5_and_base64_match_their_rfcs() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(md5_hex(b"admin"), "21232f297a57a5a743894a0e4a801fc3");
        assert_eq!(
            md5_hex(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
