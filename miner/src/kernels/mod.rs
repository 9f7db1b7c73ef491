//! The search kernels and the choice between them at run time.

use core::fmt;
use core::str::FromStr;

use crate::job::Job;
use crate::lanes::Precompute;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod sha_ni;

/// A SHA-256d search kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// 16 nonces per instruction stream in AVX-512 registers.
    Avx512,
    /// The SHA extensions, several nonces interleaved.
    ShaNi,
    /// 8 nonces per instruction stream in AVX2 registers.
    Avx2,
    /// Plain 32-bit arithmetic: any CPU, and the reference the others are tested against.
    Portable,
}

impl Kernel {
    /// Every kernel, in the order [`Kernel::best`] prefers them: measured
    /// fastest first where the CPU has them (docs/performance.md).
    pub const ALL: [Self; 4] = [Self::Avx512, Self::ShaNi, Self::Avx2, Self::Portable];

    /// The name `--kernel` takes.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::ShaNi => "sha-ni",
            Self::Avx2 => "avx2",
            Self::Portable => "portable",
        }
    }

    /// Nonces hashed together.
    #[must_use]
    pub const fn lanes(self) -> usize {
        match self {
            Self::Avx512 => 16,
            #[cfg(target_arch = "x86_64")]
            Self::ShaNi => sha_ni::STREAMS,
            #[cfg(not(target_arch = "x86_64"))]
            Self::ShaNi => 1,
            Self::Avx2 => 8,
            Self::Portable => 1,
        }
    }

    /// Whether this CPU can run the kernel.
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => avx512::available(),
            #[cfg(target_arch = "x86_64")]
            Self::ShaNi => sha_ni::available(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => avx2::available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU can run, preferred first.
    #[must_use]
    pub fn available() -> Vec<Self> {
        Self::ALL.into_iter().filter(|kernel| kernel.is_available()).collect()
    }

    /// The kernel to use on this CPU.
    #[must_use]
    pub fn best() -> Self {
        Self::available().first().copied().unwrap_or(Self::Portable)
    }

    /// Whether [`Kernel::scan_with`] takes every [`Precompute`] level
    /// (the lane kernels); the SHA-NI kernel always does all it can.
    #[must_use]
    pub const fn has_levels(self) -> bool {
        !matches!(self, Self::ShaNi)
    }

    /// Searches nonces `first ..= first + count - 1`, which must not pass
    /// `u32::MAX`, and returns the first whose header hash meets the target.
    ///
    /// # Panics
    /// When the CPU cannot run this kernel.
    #[must_use]
    pub fn scan(self, job: &Job, first: u32, count: u32) -> Option<u32> {
        self.scan_with(Precompute::EarlyReject, job, first, count)
    }

    /// [`Kernel::scan`] with only the precomputation up to `level` (for
    /// measuring what each step gains).
    ///
    /// # Panics
    /// When the CPU cannot run this kernel.
    #[must_use]
    pub fn scan_with(self, level: Precompute, job: &Job, first: u32, count: u32) -> Option<u32> {
        debug_assert!(count == 0 || first.checked_add(count - 1).is_some(), "range passes u32::MAX");
        match self {
            Self::Portable => crate::lanes::scan_portable(level, job, first, count),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => avx2::scan(level, job, first, count),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => avx512::scan(level, job, first, count),
            #[cfg(target_arch = "x86_64")]
            Self::ShaNi => sha_ni::scan::<{ sha_ni::STREAMS }>(job, first, count),
            #[cfg(not(target_arch = "x86_64"))]
            _ => panic!("the {} kernel needs an x86-64 CPU", self.name()),
        }
    }
}

/// The SHA-NI kernel with 1 to 6 or 8 interleaved streams, for the benchmarks
/// that choose the interleave.
///
/// # Panics
/// When the CPU lacks the SHA extensions, or `streams` is not 1 to 6 or 8.
#[doc(hidden)]
#[cfg(target_arch = "x86_64")]
#[must_use]
pub fn scan_sha_ni_interleaved(streams: usize, job: &Job, first: u32, count: u32) -> Option<u32> {
    match streams {
        1 => sha_ni::scan::<1>(job, first, count),
        2 => sha_ni::scan::<2>(job, first, count),
        3 => sha_ni::scan::<3>(job, first, count),
        4 => sha_ni::scan::<4>(job, first, count),
        5 => sha_ni::scan::<5>(job, first, count),
        6 => sha_ni::scan::<6>(job, first, count),
        8 => sha_ni::scan::<8>(job, first, count),
        _ => panic!("1 to 6 or 8 streams, not {streams}"),
    }
}

/// The SHA-NI kernel's ceiling on one core, in nonces per second: the
/// measured rate of the kernel's SHA instruction mix over `seconds`,
/// divided by the mix per nonce; `None` without the SHA extensions.
#[cfg(target_arch = "x86_64")]
#[must_use]
pub fn sha_ni_ceiling(seconds: f64) -> Option<f64> {
    if !sha_ni::available() {
        return None;
    }
    let started = std::time::Instant::now();
    let mut iterations = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        core::hint::black_box(sha_ni::sha_mix_probe(1 << 16));
        iterations += 1 << 16;
    }
    // Each probe iteration runs 8 sha256rnds2: a nonce needs 62/8 iterations.
    let per_second = iterations as f64 / started.elapsed().as_secs_f64();
    Some(per_second * 8.0 / sha_ni::SHA_OPS_PER_NONCE.0 as f64)
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--kernel` name that is not a kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kernel {0:?}; expected one of avx512, sha-ni, avx2, portable")]
pub struct UnknownKernel(pub String);

impl FromStr for Kernel {
    type Err = UnknownKernel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|kernel| kernel.name() == s).ok_or_else(|| UnknownKernel(s.to_owned()))
    }
}
