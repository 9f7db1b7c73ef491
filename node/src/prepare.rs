//! The parallel parts of connecting a block. Its connection itself (the
//! ordered pass, `connect_block_unverified`) runs in order on one core;
//! around it, on all cores:
//!
//! - [`read_coins`]: the coins its inputs spend are read first, so that
//!   the ordered pass finds them in memory;
//! - [`verify_signatures`]: each transaction's inputs are checked and its
//!   signatures verified, while the ordered pass runs.
//!
//! Nothing here decides validity: the ordered pass still checks every rule,
//! and every signature it returns is looked up in the set verified here
//! (and verified then if it is missing). This only caches reads and the
//! results of signature verification, a pure function of (message,
//! signature, key).

use std::collections::{HashMap, HashSet};

use crate::chain::{ParallelVerifier, PARALLEL_TRANSACTIONS};
use cairn_consensus::check::{check_inputs, BlockContext, Coin, SignatureVerifier, UtxoView};
use cairn_consensus::sighash::SignatureCheck;
use cairn_consensus::{Block, Height, OutPoint, Params, Transaction, TxError};
use rayon::prelude::*;

/// Signature checks found valid.
pub(crate) type Verified = HashSet<([u8; 32], [u8; 64], [u8; 32])>;

/// Coins by outpoint.
pub(crate) type Coins = HashMap<OutPoint, Coin>;

/// The coins `block` creates, as they would be at `height`.
#[must_use]
pub(crate) fn created_coins(block: &Block, height: Height) -> Coins {
    let mut created = Coins::with_capacity(block.transactions.iter().map(|tx| tx.outputs.len()).sum());
    for (index, tx) in block.transactions.iter().enumerate() {
        let txid = tx.txid();
        for (vout, output) in tx.outputs.iter().enumerate() {
            let coin = Coin { output: output.clone(), height, is_coinbase: index == 0 };
            created.insert(OutPoint { txid, index: vout as u32 }, coin);
        }
    }
    created
}

/// Reads, in parallel through `view`, the coins `block`'s inputs spend
/// that it does not create itself (`created`).
#[must_use]
pub(crate) fn read_coins(block: &Block, created: &Coins, view: &(impl UtxoView + Sync)) -> Coins {
    let prevouts: Vec<OutPoint> = block
        .transactions
        .iter()
        .skip(1)
        .flat_map(|tx| tx.inputs.iter().map(|input| input.prevout))
        .filter(|outpoint| !created.contains_key(outpoint))
        .collect();
    let read = |outpoint: &OutPoint| view.coin(outpoint).map(|coin| (*outpoint, coin));
    // Small blocks stay on this thread: handing a few microseconds of work
    // to the pool and waiting for it costs more than it saves.
    if prevouts.len() < PARALLEL_TRANSACTIONS {
        prevouts.iter().filter_map(read).collect()
    } else {
        prevouts.par_iter().with_min_len(16).filter_map(read).collect()
    }
}

/// Verifies, in parallel, the signatures of every transaction of `block`
/// whose inputs pass [`check_inputs`] against `coins` and `created`
/// (those the signature cache holds are not verified again); returns the
/// checks that passed.
#[must_use]
pub(crate) fn verify_signatures(
    block: &Block,
    coins: &Coins,
    created: &Coins,
    context: BlockContext,
    params: &Params,
    verifier: &ParallelVerifier,
) -> Verified {
    let spends = &block.transactions[1.min(block.transactions.len())..];
    let verify = |tx: &Transaction| {
        let spent: Option<Vec<Coin>> = tx
            .inputs
            .iter()
            .map(|input| coins.get(&input.prevout).or_else(|| created.get(&input.prevout)).cloned())
            .collect();
        let checks = spent
            .and_then(|spent| check_inputs(tx, &spent, context.height, context.median_time, params).ok())
            .map_or_else(Vec::new, |checked| checked.signatures);
        checks.into_iter().filter(|check| verifier.is_valid(check)).map(|c| (c.message, c.signature, c.key))
    };
    // Each transaction carries at least one signature: worth the pool from two.
    if spends.len() < 2 {
        spends.iter().flat_map(verify).collect()
    } else {
        spends.par_iter().with_min_len(4).flat_map_iter(verify).collect()
    }
}

/// The UTXO set seen through coins read ahead first.
pub(crate) struct PreparedView<'a, V> {
    /// The coins read ahead.
    pub coins: &'a Coins,
    /// The set itself, for anything not read ahead.
    pub fallback: &'a V,
}

impl<V: UtxoView> UtxoView for PreparedView<'_, V> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.coins.get(outpoint).cloned().or_else(|| self.fallback.coin(outpoint))
    }
}

/// A verifier that knows the checks already verified and verifies only the rest.
pub(crate) struct PreparedVerifier<'a, V> {
    /// The checks found valid.
    pub verified: &'a Verified,
    /// Verifies whatever was not verified ahead.
    pub inner: &'a V,
}

impl<V: SignatureVerifier> SignatureVerifier for PreparedVerifier<'_, V> {
    fn first_failure(&self, checks: &[SignatureCheck]) -> Option<usize> {
        let unknown: Vec<usize> = (0..checks.len())
            .filter(|&i| {
                let c = &checks[i];
                !self.verified.contains(&(c.message, c.signature, c.key))
            })
            .collect();
        if unknown.is_empty() {
            return None;
        }
        let rest: Vec<SignatureCheck> = unknown.iter().map(|&i| checks[i].clone()).collect();
        self.inner.first_failure(&rest).map(|i| unknown[i])
    }

    fn first_invalid_transaction(&self, txs: &[Transaction]) -> Option<(usize, TxError)> {
        self.inner.first_invalid_transaction(txs)
    }
}
