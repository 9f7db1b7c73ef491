//! Signature and context-free transaction checks on all cores, through
//! the signature cache.

use std::sync::Arc;

use cairn_consensus::check::{check_transaction, SignatureVerifier};
use cairn_consensus::sighash::SignatureCheck;
use cairn_consensus::{Transaction, TxError};
use rayon::prelude::*;
use secp256k1::{Secp256k1, VerifyOnly};

use crate::sigcache::SignatureCache;

/// Below this many transactions, per-transaction work stays on the calling
/// thread: handing it to the thread pool and waiting costs more than the
/// checks (a few microseconds each).
pub(crate) const PARALLEL_TRANSACTIONS: usize = 16;

/// Checks signatures and transactions' context-free rules on all cores,
/// skipping those the signature cache holds; a remembering verifier (the
/// mempool's) adds to the cache the transactions the mempool accepts, with
/// their signatures.
#[derive(Debug)]
pub struct ParallelVerifier {
    secp: Secp256k1<VerifyOnly>,
    cache: Arc<SignatureCache>,
    remember: bool,
}

impl Default for ParallelVerifier {
    /// A verifier with a cache of its own that it does not fill.
    fn default() -> Self {
        Self::new(Arc::new(SignatureCache::default()), false)
    }
}

impl ParallelVerifier {
    /// A verifier that looks signatures and transactions up in `cache`
    /// first and, when `remember`, adds those it is told were accepted.
    #[must_use]
    pub fn new(cache: Arc<SignatureCache>, remember: bool) -> Self {
        Self { secp: Secp256k1::verification_only(), cache, remember }
    }

    /// The cache it looks signatures up in.
    #[must_use]
    pub fn cache(&self) -> &Arc<SignatureCache> {
        &self.cache
    }

    /// Whether `check` is valid: remembered so, or verified now.
    #[must_use]
    pub fn is_valid(&self, check: &SignatureCheck) -> bool {
        self.cache.contains(check) || check.verify(&self.secp)
    }
}

impl SignatureVerifier for ParallelVerifier {
    fn first_failure(&self, checks: &[SignatureCheck]) -> Option<usize> {
        // A verification is worth handing to the pool; a lone one is not.
        if checks.len() < 2 {
            return checks.iter().position(|check| !self.is_valid(check));
        }
        checks.par_iter().with_min_len(8).position_any(|check| !self.is_valid(check))
    }

    fn first_invalid_transaction(&self, txs: &[Transaction]) -> Option<(usize, TxError)> {
        let check = |(index, tx): (usize, &Transaction)| {
            if self.cache.contains_transaction(tx) {
                return None;
            }
            check_transaction(tx).err().map(|error| (index, error))
        };
        // A few microseconds each: a handful stays on this thread.
        if txs.len() < PARALLEL_TRANSACTIONS {
            return txs.iter().enumerate().find_map(check);
        }
        txs.par_iter().with_min_len(8).enumerate().filter_map(check).min_by_key(|(index, _)| *index)
    }

    fn remember(&self, tx: &Transaction, checks: &[SignatureCheck]) {
        if self.remember {
            self.cache.insert(checks);
            self.cache.insert_transactions([tx]);
        }
    }
}
