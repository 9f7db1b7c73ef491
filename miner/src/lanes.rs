//! The lane-parallel SHA-256d search, written once over a [`Lanes`] type:
//! `u32` for the portable kernel, 8 lanes of AVX2, 16 of AVX-512.
//!
//! Each round and schedule word is written out with a constant index, so
//! the compiler sees every padding word as the constant it is and folds
//! it (and its round constant) away; see [`Precompute`] for what each level
//! adds.

use core::hint::black_box;

use crate::job::Job;
use crate::sha256::{DIGEST_PAD, HEADER_PAD, IV, K};

/// Vectors of SHA-256 words, one nonce per lane.
pub(crate) trait Lanes: Copy {
    /// Nonces per vector.
    const N: usize;
    fn splat(x: u32) -> Self;
    fn add(self, other: Self) -> Self;
    fn bsig0(self) -> Self;
    fn bsig1(self) -> Self;
    fn ssig0(self) -> Self;
    fn ssig1(self) -> Self;
    fn ch(e: Self, f: Self, g: Self) -> Self;
    fn maj(a: Self, b: Self, c: Self) -> Self;
    /// Schedule word 3 for nonces `first`, `first + 1`, ...: the nonce
    /// bytes, which the header stores little-endian, read big-endian.
    fn nonce_words(first: u32) -> Self;
    /// Writes the lanes to `out[..N]`.
    fn store(self, out: &mut [u32; 16]);
}

/// How much of the work the kernel leaves out, cumulatively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precompute {
    /// Only the midstate of the first 64 bytes: two full compressions per nonce.
    Midstate,
    /// Also rounds 0-2 of the second block, most of round 3 and schedule
    /// words 16-19, and the header's padding words folded in.
    NonceRounds,
    /// Also the second hash's constant padding (words 8-15) folded in.
    DigestPadding,
    /// Also early rejection: the second hash stops after round 60, which
    /// fixes the last state word, the hash's top 32 bits.
    EarlyReject,
}

impl Precompute {
    /// Every level, the least first.
    pub const ALL: [Self; 4] = [Self::Midstate, Self::NonceRounds, Self::DigestPadding, Self::EarlyReject];

    /// A short name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Midstate => "midstate-only",
            Self::NonceRounds => "+nonce-rounds",
            Self::DigestPadding => "+digest-padding",
            Self::EarlyReject => "+early-reject",
        }
    }
}

pub(crate) const MIDSTATE: u8 = 0;
pub(crate) const NONCE_ROUNDS: u8 = 1;
pub(crate) const DIGEST_PADDING: u8 = 2;
pub(crate) const EARLY_REJECT: u8 = 3;

#[inline(always)]
fn round<V: Lanes>(s: &mut [V; 8], k: u32, w: V) {
    let t1 = s[7].add(s[4].bsig1()).add(V::ch(s[4], s[5], s[6])).add(V::splat(k).add(w));
    let t2 = s[0].bsig0().add(V::maj(s[0], s[1], s[2]));
    *s = [t1.add(t2), s[0], s[1], s[2], s[3].add(t1), s[4], s[5], s[6]];
}

#[inline(always)]
fn expand<V: Lanes>(w: &mut [V; 64], t: usize) {
    w[t] = w[t - 2].ssig1().add(w[t - 7]).add(w[t - 15].ssig0()).add(w[t - 16]);
}

#[inline(always)]
fn splat8<V: Lanes>(words: [u32; 8]) -> [V; 8] {
    words.map(V::splat)
}

/// The hash's top 32 bits (as the last digest word, before byte swapping)
/// for each lane's nonce.
#[inline(always)]
fn last_words<V: Lanes, const LEVEL: u8>(job: &Job, w3: V) -> V {
    // Below the first level every per-template value is re-read each time,
    // as a kernel without precomputation would have to.
    let job = if LEVEL == MIDSTATE { black_box(job) } else { job };
    let header_pad = if LEVEL == MIDSTATE { black_box(HEADER_PAD) } else { HEADER_PAD };
    let digest_pad = if LEVEL < DIGEST_PADDING { black_box(DIGEST_PAD) } else { DIGEST_PAD };
    let iv = if LEVEL < DIGEST_PADDING { black_box(IV) } else { IV };

    // First hash, second block.
    let zero = V::splat(0);
    let mut w = [zero; 64];
    w[0] = V::splat(job.tail[0]);
    w[1] = V::splat(job.tail[1]);
    w[2] = V::splat(job.tail[2]);
    w[3] = w3;
    for (i, word) in header_pad.iter().enumerate() {
        w[4 + i] = V::splat(*word);
    }
    let mut s;
    if LEVEL == MIDSTATE {
        unroll!(T in [16 17 18 19] { expand(&mut w, T); });
        s = splat8::<V>(job.midstate);
        unroll!(T in [0 1 2 3] { round(&mut s, K[T], w[T]); });
    } else {
        w[16] = V::splat(job.w16);
        w[17] = V::splat(job.w17);
        w[18] = V::splat(job.w18).add(w3.ssig0());
        w[19] = V::splat(job.w19).add(w3);
        let [a, b, c, d, e, f, g, _] = splat8::<V>(job.state3);
        let t1 = V::splat(job.t1_3).add(w3);
        s = [t1.add(V::splat(job.t2_3)), a, b, c, d.add(t1), e, f, g];
    }
    unroll!(T in [20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47
                  48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63] { expand(&mut w, T); });
    unroll!(T in [4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33
                  34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
                  62 63] { round(&mut s, K[T], w[T]); });
    let mid = splat8::<V>(job.midstate);
    let first: [V; 8] = core::array::from_fn(|i| mid[i].add(s[i]));

    // Second hash: the 32-byte digest and padding, one block.
    let mut w = [zero; 64];
    w[..8].copy_from_slice(&first);
    for (i, word) in digest_pad.iter().enumerate() {
        w[8 + i] = V::splat(*word);
    }
    let iv = splat8::<V>(iv);
    let mut s = iv;
    unroll!(T in [16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43
                  44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60] { expand(&mut w, T); });
    unroll!(T in [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
                  31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58
                  59] { round(&mut s, K[T], w[T]); });
    if LEVEL >= EARLY_REJECT {
        // Round 60's new e is the final h: the last digest word.
        let [_, _, _, d, e, f, g, h] = s;
        let t1 = h.add(e.bsig1()).add(V::ch(e, f, g)).add(V::splat(K[60]).add(w[60]));
        return iv[7].add(d.add(t1));
    }
    unroll!(T in [61 62 63] { expand(&mut w, T); });
    unroll!(T in [60 61 62 63] { round(&mut s, K[T], w[T]); });
    // The whole digest, as a kernel without early rejection computes it.
    let digest: [V; 8] = black_box(core::array::from_fn(|i| iv[i].add(s[i])));
    digest[7]
}

/// Searches nonces `first .. first + count` (wrapping past `u32::MAX` is
/// the caller's to avoid) and returns the first that meets the job's target.
#[inline(always)]
pub(crate) fn scan<V: Lanes, const LEVEL: u8>(job: &Job, first: u32, count: u32) -> Option<u32> {
    let mut done = 0u32;
    let mut words = [0u32; 16];
    while done < count {
        let base = first.wrapping_add(done);
        last_words::<V, LEVEL>(job, V::nonce_words(base)).store(&mut words);
        let lanes = (count - done).min(V::N as u32);
        if let Some(nonce) = job.first_winner(base, &words, lanes) {
            return Some(nonce);
        }
        done = done.saturating_add(lanes);
    }
    None
}

impl Lanes for u32 {
    const N: usize = 1;
    #[inline(always)]
    fn splat(x: u32) -> Self {
        x
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline(always)]
    fn bsig0(self) -> Self {
        crate::sha256::bsig0(self)
    }
    #[inline(always)]
    fn bsig1(self) -> Self {
        crate::sha256::bsig1(self)
    }
    #[inline(always)]
    fn ssig0(self) -> Self {
        crate::sha256::ssig0(self)
    }
    #[inline(always)]
    fn ssig1(self) -> Self {
        crate::sha256::ssig1(self)
    }
    #[inline(always)]
    fn ch(e: Self, f: Self, g: Self) -> Self {
        crate::sha256::ch(e, f, g)
    }
    #[inline(always)]
    fn maj(a: Self, b: Self, c: Self) -> Self {
        crate::sha256::maj(a, b, c)
    }
    #[inline(always)]
    fn nonce_words(first: u32) -> Self {
        first.swap_bytes()
    }
    #[inline(always)]
    fn store(self, out: &mut [u32; 16]) {
        out[0] = self;
    }
}

/// The portable kernel at each precomputation level.
pub(crate) fn scan_portable(level: Precompute, job: &Job, first: u32, count: u32) -> Option<u32> {
    match level {
        Precompute::Midstate => scan::<u32, MIDSTATE>(job, first, count),
        Precompute::NonceRounds => scan::<u32, NONCE_ROUNDS>(job, first, count),
        Precompute::DigestPadding => scan::<u32, DIGEST_PADDING>(job, first, count),
        Precompute::EarlyReject => scan::<u32, EARLY_REJECT>(job, first, count),
    }
}
