//! A header template prepared for the search: everything that does not
//! depend on the nonce, computed once.

use cairn_consensus::{BlockHeader, Target};

use crate::sha256::{block_words, bsig0, bsig1, ch, maj, round, ssig0, ssig1, HEADER_PAD, IV, K};

/// Byte offset of the nonce in the 80-byte header.
pub const NONCE_OFFSET: usize = 76;

/// A header template and target, with the nonce-independent part of
/// SHA-256d precomputed.
///
/// The header's first 64 bytes hash to a midstate once. The second block
/// holds 12 fixed header bytes (words 0..3), the nonce (word 3) and padding,
/// so rounds 0..3 and schedule words 16 and 17 are fixed, round 3 and words
/// 18 and 19 are fixed but for one term, and the kernels start there.
#[derive(Debug, Clone)]
pub struct Job {
    pub(crate) header: [u8; 80],
    pub(crate) target: Target,
    /// The target's top 32 bits: a hash whose top 32 bits are above this
    /// cannot meet it, which the kernels test before anything else.
    pub(crate) target_top: u32,
    pub(crate) midstate: [u32; 8],
    /// Words 0..3 of the second block (the end of the merkle root, time, bits).
    pub(crate) tail: [u32; 3],
    /// The state after rounds 0, 1 and 2 of the second block.
    pub(crate) state3: [u32; 8],
    /// Round 3's T1 without the nonce word, and its T2.
    pub(crate) t1_3: u32,
    pub(crate) t2_3: u32,
    /// Schedule words 16 and 17, and 18 and 19 without their nonce terms
    /// (sigma0(W3) and W3).
    pub(crate) w16: u32,
    pub(crate) w17: u32,
    pub(crate) w18: u32,
    pub(crate) w19: u32,
}

impl Job {
    /// Prepares `header` (its nonce is ignored) for a search against `target`.
    #[must_use]
    pub fn new(header: [u8; 80], target: Target) -> Self {
        let first: &[u8; 64] = header[..64].try_into().expect("64 of 80 bytes");
        let midstate = crate::sha256::compress(IV, block_words(first));
        let word = |i: usize| u32::from_be_bytes(header[64 + 4 * i..68 + 4 * i].try_into().expect("4 bytes"));
        let tail = [word(0), word(1), word(2)];
        let mut state3 = midstate;
        for (t, w) in tail.iter().enumerate() {
            round(&mut state3, K[t], *w);
        }
        let [a, b, c, _, e, f, g, h] = state3;
        let t1_3 = h.wrapping_add(bsig1(e)).wrapping_add(ch(e, f, g)).wrapping_add(K[3]);
        let t2_3 = bsig0(a).wrapping_add(maj(a, b, c));
        // W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], with W4..W15
        // the fixed padding (W[4 + i] = HEADER_PAD[i]).
        let pad = |t: usize| HEADER_PAD[t - 4];
        let w16 = ssig1(pad(14)).wrapping_add(pad(9)).wrapping_add(ssig0(tail[1])).wrapping_add(tail[0]);
        let w17 = ssig1(pad(15)).wrapping_add(pad(10)).wrapping_add(ssig0(tail[2])).wrapping_add(tail[1]);
        let w18 = ssig1(w16).wrapping_add(pad(11)).wrapping_add(tail[2]);
        let w19 = ssig1(w17).wrapping_add(pad(12)).wrapping_add(ssig0(pad(4)));
        let top = target.to_u256().to_le_bytes();
        let target_top = u32::from_le_bytes([top[28], top[29], top[30], top[31]]);
        Self { header, target, target_top, midstate, tail, state3, t1_3, t2_3, w16, w17, w18, w19 }
    }

    /// Prepares a header for the target its own bits encode.
    ///
    /// # Errors
    /// When the bits are not a valid target.
    pub fn from_header(header: &BlockHeader) -> Result<Self, cairn_consensus::pow::CompactTargetError> {
        Ok(Self::new(header.to_bytes(), header.bits.to_target()?))
    }

    /// The template header (with whatever nonce it came with).
    #[must_use]
    pub fn header(&self) -> [u8; 80] {
        self.header
    }

    /// The target searched for.
    #[must_use]
    pub fn target(&self) -> Target {
        self.target
    }

    /// The header with `nonce` in place.
    #[must_use]
    pub fn header_with_nonce(&self, nonce: u32) -> [u8; 80] {
        let mut header = self.header;
        header[NONCE_OFFSET..].copy_from_slice(&nonce.to_le_bytes());
        header
    }

    /// The first of `lanes` nonces from `base` whose hash meets the target,
    /// given each one's last digest word (`tops`, before byte swapping):
    /// a word above the target's top 32 bits rejects a nonce at once, and
    /// the rare rest get the full check.
    #[inline]
    pub(crate) fn first_winner(&self, base: u32, tops: &[u32], lanes: u32) -> Option<u32> {
        (0..lanes)
            .find(|&lane| {
                tops[lane as usize].swap_bytes() <= self.target_top
                    && self.meets_target(base.wrapping_add(lane))
            })
            .map(|lane| base.wrapping_add(lane))
    }

    /// Whether the header with `nonce` meets the target: the full SHA-256d
    /// and 256-bit comparison, run on the kernels' rare candidates.
    #[must_use]
    pub fn meets_target(&self, nonce: u32) -> bool {
        self.target.is_met_by(BlockHeader::from_bytes(&self.header_with_nonce(nonce)).block_hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256::{compress, schedule, DIGEST_PAD};
    use cairn_consensus::pow::U256;

    #[test]
    fn precomputed_parts_match_the_full_computation() {
        let header: [u8; 80] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        let job = Job::new(header, Target::from_u256(U256::MAX.div_u64(3)).expect("target"));
        let nonce = 0x1234_5678u32;
        let full = job.header_with_nonce(nonce);
        let block: [u32; 16] = block_words(
            full[64..].iter().copied().chain([0; 48]).collect::<Vec<_>>()[..64].try_into().expect("64"),
        );
        let mut block = block;
        block[4..].copy_from_slice(&HEADER_PAD);
        let w = schedule(block);
        let w3 = nonce.swap_bytes();
        assert_eq!(w[3], w3);
        assert_eq!([w[16], w[17]], [job.w16, job.w17]);
        assert_eq!(w[18], job.w18.wrapping_add(ssig0(w3)));
        assert_eq!(w[19], job.w19.wrapping_add(w3));
        let mut s = job.midstate;
        for t in 0..3 {
            round(&mut s, K[t], w[t]);
        }
        assert_eq!(s, job.state3);
        // The double hash from these pieces is the header's block hash.
        let first = compress(job.midstate, block);
        let mut second = [0u32; 16];
        second[..8].copy_from_slice(&first);
        second[8..].copy_from_slice(&DIGEST_PAD);
        let digest = compress(IV, second);
        let mut bytes = [0u8; 32];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(digest) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        assert_eq!(bytes, BlockHeader::from_bytes(&full).block_hash().to_byte_array());
    }
}
