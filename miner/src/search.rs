//! Searching a nonce range on one or many threads, with a stop signal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::job::Job;
use crate::kernels::Kernel;

/// Nonces one kernel call covers between looks at the stop signal: about a
/// millisecond at the portable kernel's rate, far less at the fast ones'.
pub const BATCH: u32 = 2048;

/// Nonces a thread takes from the shared range at a time.
const CHUNK: u64 = 1 << 18;

/// A range of nonces: `start`, `start + 1`, ... `start + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceRange {
    start: u32,
    count: u64,
}

/// A nonce range that cannot be searched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Zero nonces.
    #[error("the nonce range is empty (count 0)")]
    Empty,
    /// The range runs past the largest nonce.
    #[error("the nonce range {start} + {count} runs past the largest nonce, 4294967295")]
    PastEnd {
        /// First nonce.
        start: u32,
        /// Number of nonces.
        count: u64,
    },
}

impl NonceRange {
    /// Every nonce.
    pub const ALL: Self = Self { start: 0, count: 1 << 32 };

    /// `count` nonces from `start`.
    ///
    /// # Errors
    /// When `count` is zero or the range runs past `u32::MAX`.
    pub fn new(start: u32, count: u64) -> Result<Self, RangeError> {
        if count == 0 {
            return Err(RangeError::Empty);
        }
        if u64::from(start) + count > 1 << 32 {
            return Err(RangeError::PastEnd { start, count });
        }
        Ok(Self { start, count })
    }

    /// From `start` to the largest nonce.
    #[must_use]
    pub fn from_start(start: u32) -> Self {
        Self { start, count: (1 << 32) - u64::from(start) }
    }

    /// The first nonce.
    #[must_use]
    pub fn start(self) -> u32 {
        self.start
    }

    /// The number of nonces.
    #[must_use]
    pub fn count(self) -> u64 {
        self.count
    }
}

/// What a search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The lowest nonce in the range that meets the target, if the search
    /// got that far.
    pub nonce: Option<u32>,
    /// Nonces hashed.
    pub hashes: u64,
    /// Whether the stop signal ended the search early.
    pub stopped: bool,
}

/// Searches `range` for the lowest nonce whose header hash meets the job's
/// target, on `threads` threads (the calling one when 1, else `pool`'s).
///
/// Each thread takes chunks of the range in order; once a winner is found,
/// threads finish only the chunks below it, so the answer is the lowest
/// winner however many threads run. `stop` ends the search within a batch
/// ([`BATCH`] nonces).
pub fn search(
    job: &Job,
    range: NonceRange,
    kernel: Kernel,
    pool: Option<&rayon::ThreadPool>,
    stop: &AtomicBool,
) -> Outcome {
    let shared = Shared {
        job,
        range,
        kernel,
        stop,
        next_chunk: AtomicU64::new(0),
        best: AtomicU64::new(u64::MAX),
        hashes: AtomicU64::new(0),
    };
    match pool {
        Some(pool) if pool.current_num_threads() > 1 => {
            pool.broadcast(|_| shared.work());
        }
        _ => shared.work(),
    }
    let best = shared.best.load(Ordering::Acquire);
    let stopped = stop.load(Ordering::Acquire) && best == u64::MAX;
    Outcome {
        nonce: (best != u64::MAX).then(|| range.start + best as u32),
        hashes: shared.hashes.load(Ordering::Acquire),
        stopped,
    }
}

struct Shared<'a> {
    job: &'a Job,
    range: NonceRange,
    kernel: Kernel,
    stop: &'a AtomicBool,
    next_chunk: AtomicU64,
    /// The lowest winning offset (from the range start) found so far.
    best: AtomicU64,
    hashes: AtomicU64,
}

impl Shared<'_> {
    fn work(&self) {
        let mut hashes = 0u64;
        'chunks: loop {
            let chunk_start = self.next_chunk.fetch_add(1, Ordering::Relaxed).saturating_mul(CHUNK);
            if chunk_start >= self.range.count || chunk_start >= self.best.load(Ordering::Acquire) {
                break;
            }
            let chunk_end = (chunk_start + CHUNK).min(self.range.count);
            let mut offset = chunk_start;
            while offset < chunk_end {
                if self.stop.load(Ordering::Relaxed) || offset >= self.best.load(Ordering::Acquire) {
                    break 'chunks;
                }
                let count = (chunk_end - offset).min(u64::from(BATCH)) as u32;
                let first = self.range.start + offset as u32;
                if let Some(nonce) = self.kernel.scan(self.job, first, count) {
                    let found = u64::from(nonce - self.range.start);
                    hashes += found - offset + 1;
                    self.best.fetch_min(found, Ordering::AcqRel);
                    break 'chunks;
                }
                hashes += u64::from(count);
                offset += u64::from(count);
            }
        }
        self.hashes.fetch_add(hashes, Ordering::AcqRel);
    }
}
