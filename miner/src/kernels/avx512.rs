//! 16 nonces at once in AVX-512's 512-bit registers, with its native
//! rotate and three-input logic (one instruction for Ch, Maj and each
//! three-way xor).
//!
//! Safety: [`Avx512`] values exist only inside [`scan`], which the
//! dispatcher calls only after `is_x86_feature_detected!("avx512f")`;
//! every intrinsic below therefore runs on a CPU that has AVX-512F.
#![allow(unsafe_code)]

use core::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_ror_epi32, _mm512_set1_epi32, _mm512_setr_epi32, _mm512_srli_epi32,
    _mm512_storeu_si512, _mm512_ternarylogic_epi32,
};

use crate::job::Job;
use crate::lanes::{Lanes, Precompute, DIGEST_PADDING, EARLY_REJECT, MIDSTATE, NONCE_ROUNDS};

#[derive(Clone, Copy)]
struct Avx512(__m512i);

/// Three-input bitwise functions, by their truth tables.
const XOR3: i32 = 0x96;
const CH: i32 = 0xca;
const MAJ: i32 = 0xe8;

macro_rules! ror {
    ($x:expr, $n:literal) => {
        // SAFETY: see the module comment.
        unsafe { _mm512_ror_epi32::<$n>($x) }
    };
}

#[inline(always)]
fn ternary<const TABLE: i32>(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    // SAFETY: see the module comment.
    unsafe { _mm512_ternarylogic_epi32::<TABLE>(a, b, c) }
}

impl Lanes for Avx512 {
    const N: usize = 16;
    #[inline(always)]
    fn splat(x: u32) -> Self {
        // SAFETY: see the module comment.
        Self(unsafe { _mm512_set1_epi32(x as i32) })
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        // SAFETY: see the module comment.
        Self(unsafe { _mm512_add_epi32(self.0, other.0) })
    }
    #[inline(always)]
    fn bsig0(self) -> Self {
        Self(ternary::<XOR3>(ror!(self.0, 2), ror!(self.0, 13), ror!(self.0, 22)))
    }
    #[inline(always)]
    fn bsig1(self) -> Self {
        Self(ternary::<XOR3>(ror!(self.0, 6), ror!(self.0, 11), ror!(self.0, 25)))
    }
    #[inline(always)]
    fn ssig0(self) -> Self {
        // SAFETY: see the module comment.
        let shifted = unsafe { _mm512_srli_epi32::<3>(self.0) };
        Self(ternary::<XOR3>(ror!(self.0, 7), ror!(self.0, 18), shifted))
    }
    #[inline(always)]
    fn ssig1(self) -> Self {
        // SAFETY: see the module comment.
        let shifted = unsafe { _mm512_srli_epi32::<10>(self.0) };
        Self(ternary::<XOR3>(ror!(self.0, 17), ror!(self.0, 19), shifted))
    }
    #[inline(always)]
    fn ch(e: Self, f: Self, g: Self) -> Self {
        Self(ternary::<CH>(e.0, f.0, g.0))
    }
    #[inline(always)]
    fn maj(a: Self, b: Self, c: Self) -> Self {
        Self(ternary::<MAJ>(a.0, b.0, c.0))
    }
    #[inline(always)]
    fn nonce_words(first: u32) -> Self {
        // SAFETY: see the module comment.
        let nonces = unsafe {
            _mm512_add_epi32(
                _mm512_set1_epi32(first as i32),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            )
        };
        // Byte swap with AVX-512F alone: bytes 3 and 1 come from a right
        // rotation by 8, bytes 2 and 0 from a left rotation by 8.
        let mask = Self::splat(0xff00_ff00).0;
        Self(ternary::<CH>(mask, ror!(nonces, 8), ror!(nonces, 24)))
    }
    #[inline(always)]
    fn store(self, out: &mut [u32; 16]) {
        // SAFETY: see the module comment; `out` holds exactly the 16 words
        // stored, unaligned stores allowed.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), self.0) }
    }
}

/// Whether this CPU can run the kernel.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[target_feature(enable = "avx512f")]
fn scan_avx512<const LEVEL: u8>(job: &Job, first: u32, count: u32) -> Option<u32> {
    crate::lanes::scan::<Avx512, LEVEL>(job, first, count)
}

/// The AVX-512 kernel at a precomputation level.
///
/// # Panics
/// When the CPU lacks AVX-512F (check [`available`] first).
#[inline(never)]
pub(crate) fn scan(level: Precompute, job: &Job, first: u32, count: u32) -> Option<u32> {
    assert!(available(), "the AVX-512 kernel needs a CPU with AVX-512F");
    // SAFETY: AVX-512F is present, checked just above.
    unsafe {
        match level {
            Precompute::Midstate => scan_avx512::<MIDSTATE>(job, first, count),
            Precompute::NonceRounds => scan_avx512::<NONCE_ROUNDS>(job, first, count),
            Precompute::DigestPadding => scan_avx512::<DIGEST_PADDING>(job, first, count),
            Precompute::EarlyReject => scan_avx512::<EARLY_REJECT>(job, first, count),
        }
    }
}
