//! The SHA extensions (SHA-NI): two rounds per `sha256rnds2`, several
//! nonces' streams interleaved so that each instruction's latency is
//! hidden behind the other streams' work.
//!
//! Precomputed per call: the midstate in the instructions' ABEF/CDGH
//! layout, rounds 0-1 of the header's second block, the round-constant sums
//! of its padding words (rounds 4-15) and the schedule terms made of
//! padding only; the second hash's padding sums likewise; and the second
//! hash stops after rounds 60-61, which fix the last digest word.
//!
//! Safety: the intrinsics run only inside [`scan_streams`], compiled with
//! the `sha`, `sse2`, `ssse3` and `sse4.1` features and called only after
//! [`available`] has seen all of them.
#![allow(unsafe_code)]
// Streams are indexed in step across several arrays, and the unrolled
// group bodies compare their constant index with bounds that some copies
// meet trivially.
#![allow(clippy::needless_range_loop, clippy::absurd_extreme_comparisons)]

use core::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_cvtsi128_si32, _mm_set_epi32,
    _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
};

use crate::job::Job;
use crate::sha256::{DIGEST_PAD, HEADER_PAD, IV, K};

/// Whether this CPU can run the kernel.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("sse2")
        && std::arch::is_x86_feature_detected!("ssse3")
        && std::arch::is_x86_feature_detected!("sse4.1")
}

/// Streams interleaved by the kernel the dispatcher uses (the fastest
/// measured; see docs/performance.md).
pub(crate) const STREAMS: usize = 4;

/// The SHA-NI kernel with `S` interleaved streams.
///
/// # Panics
/// When the CPU lacks the SHA extensions (check [`available`] first).
#[inline(never)]
pub(crate) fn scan<const S: usize>(job: &Job, first: u32, count: u32) -> Option<u32> {
    assert!(available(), "the SHA-NI kernel needs a CPU with the SHA extensions and SSE4.1");
    // SAFETY: the features `scan_streams` is compiled with are present,
    // checked just above.
    unsafe { scan_streams::<S>(job, first, count) }
}

/// Four round constants as one vector, lowest round in lane 0.
#[inline(always)]
fn k4(g: usize) -> [i32; 4] {
    [K[4 * g] as i32, K[4 * g + 1] as i32, K[4 * g + 2] as i32, K[4 * g + 3] as i32]
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn scan_streams<const S: usize>(job: &Job, first: u32, count: u32) -> Option<u32> {
    let set = |w: [i32; 4]| _mm_set_epi32(w[3], w[2], w[1], w[0]);
    let words = |w: [u32; 4]| set(w.map(|x| x as i32));
    let add = |a, b| _mm_add_epi32(a, b);

    // Header, second block: state and constants.
    let [a, b, c, d, e, f, g, h] = job.midstate;
    let abef0 = words([f, e, b, a]);
    let cdgh0 = words([h, g, d, c]);
    let tail = job.tail;
    let wk01 = words([tail[0].wrapping_add(K[0]), tail[1].wrapping_add(K[1]), 0, 0]);
    let abef1 = _mm_sha256rnds2_epu32(cdgh0, abef0, wk01);
    let w2k2 = tail[2].wrapping_add(K[2]);
    let m1 = words([HEADER_PAD[0], HEADER_PAD[1], HEADER_PAD[2], HEADER_PAD[3]]);
    let m2 = words([HEADER_PAD[4], HEADER_PAD[5], HEADER_PAD[6], HEADER_PAD[7]]);
    let m3 = words([HEADER_PAD[8], HEADER_PAD[9], HEADER_PAD[10], HEADER_PAD[11]]);
    let pad_wk = [add(m1, set(k4(1))), add(m2, set(k4(2))), add(m3, set(k4(3)))];
    let pad_wk_hi = pad_wk.map(|wk| _mm_shuffle_epi32::<0x0e>(wk));
    let m1_next = _mm_sha256msg1_epu32(m1, m2);
    let m2_next = _mm_sha256msg1_epu32(m2, m3);
    let m3_m2 = _mm_alignr_epi8::<4>(m3, m2);

    // Second hash: state and constants.
    let iv_abef = words([IV[5], IV[4], IV[1], IV[0]]);
    let iv_cdgh = words([IV[7], IV[6], IV[3], IV[2]]);
    let p2 = words([DIGEST_PAD[0], DIGEST_PAD[1], DIGEST_PAD[2], DIGEST_PAD[3]]);
    let p3 = words([DIGEST_PAD[4], DIGEST_PAD[5], DIGEST_PAD[6], DIGEST_PAD[7]]);
    let p2_wk = add(p2, set(k4(2)));
    let p3_wk = add(p3, set(k4(3)));
    let p3_p2 = _mm_alignr_epi8::<4>(p3, p2);
    let p2_next = _mm_sha256msg1_epu32(p2, p3);

    let zero = _mm_setzero_si128();
    let mut done = 0u32;
    while done < count {
        let base = first.wrapping_add(done);
        let mut s0 = [zero; S];
        let mut s1 = [zero; S];
        let mut x = [[zero; 4]; S];
        for i in 0..S {
            let w3 = base.wrapping_add(i as u32).swap_bytes();
            x[i][0] = words([tail[0], tail[1], tail[2], w3]);
            // Rounds 2-3.
            let wk23 = words([w2k2, w3.wrapping_add(K[3]), 0, 0]);
            s0[i] = _mm_sha256rnds2_epu32(abef0, abef1, wk23);
            s1[i] = abef1;
        }
        // Rounds 4-15: the message is padding, its sums with K precomputed.
        unroll!(G in [1 2 3] {
            for i in 0..S {
                s1[i] = _mm_sha256rnds2_epu32(s1[i], s0[i], pad_wk[G - 1]);
            }
            if G == 3 {
                for i in 0..S {
                    x[i][0] = _mm_sha256msg2_epu32(add(x[i][0], m3_m2), m3);
                }
            }
            for i in 0..S {
                s0[i] = _mm_sha256rnds2_epu32(s0[i], s1[i], pad_wk_hi[G - 1]);
            }
            if G == 1 {
                for i in 0..S {
                    x[i][0] = _mm_sha256msg1_epu32(x[i][0], m1);
                }
            }
        });
        for i in 0..S {
            x[i][1] = m1_next;
            x[i][2] = m2_next;
            x[i][3] = m3;
        }
        // Rounds 16-63.
        unroll!(G in [4 5 6 7 8 9 10 11 12 13 14 15] {
            let k = set(k4(G));
            for i in 0..S {
                let wk = add(x[i][G % 4], k);
                s1[i] = _mm_sha256rnds2_epu32(s1[i], s0[i], wk);
                if G <= 14 {
                    let next = add(x[i][(G + 1) % 4], _mm_alignr_epi8::<4>(x[i][G % 4], x[i][(G + 3) % 4]));
                    x[i][(G + 1) % 4] = _mm_sha256msg2_epu32(next, x[i][G % 4]);
                }
                s0[i] = _mm_sha256rnds2_epu32(s0[i], s1[i], _mm_shuffle_epi32::<0x0e>(wk));
                if G <= 12 {
                    x[i][(G + 3) % 4] = _mm_sha256msg1_epu32(x[i][(G + 3) % 4], x[i][G % 4]);
                }
            }
        });
        // The first digest, as message words 0-7 of the second hash.
        for i in 0..S {
            let abef = add(s0[i], abef0);
            let cdgh = add(s1[i], cdgh0);
            let abef_rev = _mm_shuffle_epi32::<0x1b>(abef); // A B E F in lanes 0..3
            let dchg = _mm_shuffle_epi32::<0xb1>(cdgh); // G H C D
            x[i] = [_mm_blend_epi16::<0xf0>(abef_rev, dchg), _mm_alignr_epi8::<8>(dchg, abef_rev), p2, p3];
            s0[i] = iv_abef;
            s1[i] = iv_cdgh;
        }
        // Second hash, rounds 0-59. Words 8-15 are padding: their sums with
        // K, and the schedule terms made of them alone, are constants.
        unroll!(G in [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14] {
            let k = set(k4(G));
            for i in 0..S {
                let wk = match G {
                    2 => p2_wk,
                    3 => p3_wk,
                    _ => add(x[i][G % 4], k),
                };
                s1[i] = _mm_sha256rnds2_epu32(s1[i], s0[i], wk);
                if G >= 3 {
                    let align = if G == 3 { p3_p2 } else { _mm_alignr_epi8::<4>(x[i][G % 4], x[i][(G + 3) % 4]) };
                    x[i][(G + 1) % 4] = _mm_sha256msg2_epu32(add(x[i][(G + 1) % 4], align), x[i][G % 4]);
                }
                s0[i] = _mm_sha256rnds2_epu32(s0[i], s1[i], _mm_shuffle_epi32::<0x0e>(wk));
                if (1..=12).contains(&G) {
                    x[i][(G + 3) % 4] =
                        if G == 3 { p2_next } else { _mm_sha256msg1_epu32(x[i][(G + 3) % 4], x[i][G % 4]) };
                }
            }
        });
        // Rounds 60-61 fix the final h (lane 0, F, of the new ABEF).
        let k = set(k4(15));
        let mut tops = [0u32; S];
        for i in 0..S {
            let abef = _mm_sha256rnds2_epu32(s1[i], s0[i], add(x[i][3], k));
            tops[i] = IV[7].wrapping_add(_mm_cvtsi128_si32(abef) as u32);
        }
        let lanes = (count - done).min(S as u32);
        if let Some(nonce) = job.first_winner(base, &tops, lanes) {
            return Some(nonce);
        }
        done = done.saturating_add(lanes);
    }
    None
}

/// SHA instructions per nonce in [`scan_streams`]: `sha256rnds2` 31 for
/// the header's second block (rounds 2-63) and 31 for the second hash
/// (rounds 0-61); `sha256msg1` 10 + 11 and `sha256msg2` 12 + 12.
pub(crate) const SHA_OPS_PER_NONCE: (u64, u64, u64) = (62, 21, 24);

/// Runs `iterations` rounds of 8 `sha256rnds2`, 3 `sha256msg1` and 3
/// `sha256msg2` (about the kernel's mix, 62:21:24) on independent
/// chains, enough to hide every latency: timed, this gives the rate the
/// SHA unit sustains for the kernel's instruction mix, its ceiling on this
/// core.
///
/// # Panics
/// When the CPU lacks the SHA extensions.
#[inline(never)]
pub(crate) fn sha_mix_probe(iterations: u64) -> u32 {
    assert!(available(), "the probe needs the SHA extensions");
    // SAFETY: the features `probe` is compiled with are present, checked above.
    unsafe { probe(iterations) }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn probe(iterations: u64) -> u32 {
    let k = _mm_set_epi32(1, 2, 3, 4);
    let c = _mm_set_epi32(9, 10, 11, 12);
    let mut rounds: [__m128i; 8] = core::array::from_fn(|i| _mm_set_epi32(i as i32, 5, 6, 7));
    let mut msg1: [__m128i; 3] = core::array::from_fn(|i| _mm_set_epi32(i as i32, 15, 16, 17));
    let mut msg2: [__m128i; 3] = core::array::from_fn(|i| _mm_set_epi32(i as i32, 25, 26, 27));
    for _ in 0..iterations {
        for chain in &mut rounds {
            *chain = _mm_sha256rnds2_epu32(c, *chain, k);
        }
        for chain in &mut msg1 {
            *chain = _mm_sha256msg1_epu32(*chain, k);
        }
        for chain in &mut msg2 {
            *chain = _mm_sha256msg2_epu32(*chain, c);
        }
    }
    rounds.iter().chain(&msg1).chain(&msg2).fold(0, |acc, chain| acc ^ _mm_cvtsi128_si32(*chain) as u32)
}
