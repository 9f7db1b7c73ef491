//! SHA-256 constants and the scalar compression function the kernels are
//! checked against and the templates are prepared with.

/// The round constants.
pub(crate) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The initial hash value.
pub(crate) const IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Padding words 4..16 of the header's second block: the 0x80 byte after
/// the 16 header bytes, zeros, and the bit length of the 80-byte header.
pub(crate) const HEADER_PAD: [u32; 12] = [0x8000_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 640];

/// Padding words 8..16 of the second hash's only block: after the 32-byte
/// digest, the 0x80 byte, zeros, and the bit length 256.
pub(crate) const DIGEST_PAD: [u32; 8] = [0x8000_0000, 0, 0, 0, 0, 0, 0, 256];

pub(crate) const fn bsig0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}
pub(crate) const fn bsig1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}
pub(crate) const fn ssig0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
pub(crate) const fn ssig1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}
pub(crate) const fn ch(e: u32, f: u32, g: u32) -> u32 {
    g ^ (e & (f ^ g))
}
pub(crate) const fn maj(a: u32, b: u32, c: u32) -> u32 {
    (a & b) | (c & (a | b))
}

/// One round on a state `[a, b, c, d, e, f, g, h]`.
pub(crate) fn round(s: &mut [u32; 8], k: u32, w: u32) {
    let t1 =
        s[7].wrapping_add(bsig1(s[4])).wrapping_add(ch(s[4], s[5], s[6])).wrapping_add(k).wrapping_add(w);
    let t2 = bsig0(s[0]).wrapping_add(maj(s[0], s[1], s[2]));
    *s = [t1.wrapping_add(t2), s[0], s[1], s[2], s[3].wrapping_add(t1), s[4], s[5], s[6]];
}

/// The 16 big-endian words of a 64-byte block.
pub(crate) fn block_words(block: &[u8; 64]) -> [u32; 16] {
    core::array::from_fn(|i| {
        u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]])
    })
}

/// The message schedule of one block.
pub(crate) fn schedule(block: [u32; 16]) -> [u32; 64] {
    let mut w = [0u32; 64];
    w[..16].copy_from_slice(&block);
    for t in 16..64 {
        w[t] = ssig1(w[t - 2]).wrapping_add(w[t - 7]).wrapping_add(ssig0(w[t - 15])).wrapping_add(w[t - 16]);
    }
    w
}

/// SHA-256's compression function.
pub(crate) fn compress(state: [u32; 8], block: [u32; 16]) -> [u32; 8] {
    let w = schedule(block);
    let mut s = state;
    for t in 0..64 {
        round(&mut s, K[t], w[t]);
    }
    core::array::from_fn(|i| state[i].wrapping_add(s[i]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha256_via_compress(data: &[u8]) -> [u8; 32] {
        let mut padded = data.to_vec();
        padded.push(0x80);
        while padded.len() % 64 != 56 {
            padded.push(0);
        }
        padded.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
        let mut state = IV;
        for block in padded.chunks_exact(64) {
            state = compress(state, block_words(block.try_into().expect("64 bytes")));
        }
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    #[test]
    fn compress_matches_sha2_crate() {
        for len in [0usize, 1, 55, 56, 63, 64, 80, 119, 200] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(sha256_via_compress(&data), <[u8; 32]>::from(Sha256::digest(&data)), "length {len}");
        }
    }

    #[test]
    fn padding_words_are_sha256_padding() {
        // The header's second block: 16 bytes of header, then the padding.
        let mut block = [0u8; 64];
        block[16] = 0x80;
        block[56..].copy_from_slice(&(80u64 * 8).to_be_bytes());
        assert_eq!(block_words(&block)[4..], HEADER_PAD);
        let mut block = [0u8; 64];
        block[32] = 0x80;
        block[56..].copy_from_slice(&(32u64 * 8).to_be_bytes());
        assert_eq!(block_words(&block)[8..], DIGEST_PAD);
    }
}
