//! Cairn's SHA-256d search core.
//!
//! A [`Job`] is an 80-byte header template and a target with everything
//! that does not depend on the nonce computed once. A [`Kernel`] scans a
//! nonce range for the first nonce whose header hash meets the target;
//! [`Kernel::best`] picks the widest path this CPU has at run time
//! (AVX-512, SHA extensions, AVX2) over the portable kernel that every fast
//! one is tested against. [`search`] spreads a range over a rayon pool and
//! answers a stop signal within a batch; [`ExtranonceRoller`] makes new work
//! when the 32-bit range is spent.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use cairn_consensus::{Network, Params};
//! use cairn_miner::{search, Job, Kernel, NonceRange};
//!
//! let genesis = Params::for_network(Network::Devnet).genesis.header;
//! let job = Job::from_header(&genesis).unwrap();
//! let found = search(&job, NonceRange::ALL, Kernel::best(), None, &AtomicBool::new(false));
//! assert_eq!(found.nonce, Some(genesis.nonce));
//! ```
//!
//! `unsafe` appears only in the x86-64 kernels, each module saying why it
//! is sound.

/// Expands `$body` once per listed constant, bound to `$t`, so that every
/// round and schedule index is a compile-time constant.
macro_rules! unroll {
    ($t:ident in [$($n:literal)*] $body:block) => {
        $( { const $t: usize = $n; $body } )*
    };
}

mod extranonce;
mod job;
mod kernels;
mod lanes;
mod search;
mod sha256;

pub use extranonce::{
    solve, solve_block, ExtranonceRoller, Solved, TemplateError, EXTRANONCE_OFFSET, EXTRANONCE_SIZE,
};
pub use job::{Job, NONCE_OFFSET};
#[cfg(target_arch = "x86_64")]
pub use kernels::{scan_sha_ni_interleaved, sha_ni_ceiling};
pub use kernels::{Kernel, UnknownKernel};
pub use lanes::Precompute;
pub use search::{search, NonceRange, Outcome, RangeError, BATCH};

#[cfg(test)]
mod tests;
