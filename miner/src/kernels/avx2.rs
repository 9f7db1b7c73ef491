//! 8 nonces at once in AVX2's 256-bit registers.
//!
//! Safety: [`Avx2`] values exist only inside [`scan`], which the dispatcher
//! calls only after `is_x86_feature_detected!("avx2")`; every intrinsic
//! below therefore runs on a CPU that has AVX2.
#![allow(unsafe_code)]

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_or_si256, _mm256_set1_epi32, _mm256_setr_epi32,
    _mm256_setr_epi8, _mm256_shuffle_epi8, _mm256_slli_epi32, _mm256_srli_epi32, _mm256_storeu_si256,
    _mm256_xor_si256,
};

use crate::job::Job;
use crate::lanes::{Lanes, Precompute, DIGEST_PADDING, EARLY_REJECT, MIDSTATE, NONCE_ROUNDS};

#[derive(Clone, Copy)]
struct Avx2(__m256i);

macro_rules! rotr {
    ($x:expr, $n:literal) => {
        // SAFETY: see the module comment.
        unsafe { _mm256_or_si256(_mm256_srli_epi32::<$n>($x), _mm256_slli_epi32::<{ 32 - $n }>($x)) }
    };
}

#[inline(always)]
fn xor(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: see the module comment.
    unsafe { _mm256_xor_si256(a, b) }
}

#[inline(always)]
fn and(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: see the module comment.
    unsafe { _mm256_and_si256(a, b) }
}

#[inline(always)]
fn or(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: see the module comment.
    unsafe { _mm256_or_si256(a, b) }
}

impl Lanes for Avx2 {
    const N: usize = 8;
    #[inline(always)]
    fn splat(x: u32) -> Self {
        // SAFETY: see the module comment.
        Self(unsafe { _mm256_set1_epi32(x as i32) })
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        // SAFETY: see the module comment.
        Self(unsafe { _mm256_add_epi32(self.0, other.0) })
    }
    #[inline(always)]
    fn bsig0(self) -> Self {
        Self(xor(xor(rotr!(self.0, 2), rotr!(self.0, 13)), rotr!(self.0, 22)))
    }
    #[inline(always)]
    fn bsig1(self) -> Self {
        Self(xor(xor(rotr!(self.0, 6), rotr!(self.0, 11)), rotr!(self.0, 25)))
    }
    #[inline(always)]
    fn ssig0(self) -> Self {
        // SAFETY: see the module comment.
        let shifted = unsafe { _mm256_srli_epi32::<3>(self.0) };
        Self(xor(xor(rotr!(self.0, 7), rotr!(self.0, 18)), shifted))
    }
    #[inline(always)]
    fn ssig1(self) -> Self {
        // SAFETY: see the module comment.
        let shifted = unsafe { _mm256_srli_epi32::<10>(self.0) };
        Self(xor(xor(rotr!(self.0, 17), rotr!(self.0, 19)), shifted))
    }
    #[inline(always)]
    fn ch(e: Self, f: Self, g: Self) -> Self {
        Self(xor(g.0, and(e.0, xor(f.0, g.0))))
    }
    #[inline(always)]
    fn maj(a: Self, b: Self, c: Self) -> Self {
        Self(or(and(a.0, b.0), and(c.0, or(a.0, b.0))))
    }
    #[inline(always)]
    fn nonce_words(first: u32) -> Self {
        // SAFETY: see the module comment.
        unsafe {
            let nonces =
                _mm256_add_epi32(_mm256_set1_epi32(first as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            let swap = _mm256_setr_epi8(
                3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8,
                15, 14, 13, 12,
            );
            Self(_mm256_shuffle_epi8(nonces, swap))
        }
    }
    #[inline(always)]
    fn store(self, out: &mut [u32; 16]) {
        // SAFETY: see the module comment; `out` has room for 16 words and
        // the store writes 8, unaligned stores allowed.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast::<__m256i>(), self.0) }
    }
}

/// Whether this CPU can run the kernel.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[target_feature(enable = "avx2")]
fn scan_avx2<const LEVEL: u8>(job: &Job, first: u32, count: u32) -> Option<u32> {
    crate::lanes::scan::<Avx2, LEVEL>(job, first, count)
}

/// The AVX2 kernel at a precomputation level.
///
/// # Panics
/// When the CPU lacks AVX2 (check [`available`] first).
#[inline(never)]
pub(crate) fn scan(level: Precompute, job: &Job, first: u32, count: u32) -> Option<u32> {
    assert!(available(), "the AVX2 kernel needs a CPU with AVX2");
    // SAFETY: AVX2 is present, checked just above.
    unsafe {
        match level {
            Precompute::Midstate => scan_avx2::<MIDSTATE>(job, first, count),
            Precompute::NonceRounds => scan_avx2::<NONCE_ROUNDS>(job, first, count),
            Precompute::DigestPadding => scan_avx2::<DIGEST_PADDING>(job, first, count),
            Precompute::EarlyReject => scan_avx2::<EARLY_REJECT>(job, first, count),
        }
    }
}
