//! Work done on all cores before a block's connection, which itself runs
//! in order on one: the coins its inputs spend are read in parallel, and
//! each transaction's inputs are checked and its signatures verified in
//! parallel, so that the ordered pass finds its coins in memory and its
//! signatures already verified.
//!
//! Nothing here decides validity: the ordered pass (`connect_block`) still
//! checks every rule. This only caches reads and the results of signature
//! verification, a pure function of (message, signature, key).

use std::collections::{HashMap, HashSet};

use cairn_consensus::check::{check_inputs, BlockContext, Coin, SignatureVerifier, UtxoView};
use cairn_consensus::sighash::SignatureCheck;
use cairn_consensus::{Block, OutPoint, Params, Transaction, TxError};
use rayon::prelude::*;
use secp256k1::{Secp256k1, VerifyOnly};

use crate::chain::PARALLEL_TRANSACTIONS;
use crate::records::{coin_from_bytes, outpoint_key};
use crate::store::{Cf, Store};

type Verified = HashSet<([u8; 32], [u8; 64], [u8; 32])>;

/// What [`prepare`] found.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    coins: HashMap<OutPoint, Coin>,
    verified: Verified,
}

/// Reads the coins `block` spends and verifies its signatures, all in parallel.
#[must_use]
pub(crate) fn prepare(
    block: &Block,
    store: &dyn Store,
    context: BlockContext,
    params: &Params,
    secp: &Secp256k1<VerifyOnly>,
) -> Prepared {
    let mut created: HashMap<OutPoint, Coin> = HashMap::new();
    for (index, tx) in block.transactions.iter().enumerate() {
        let txid = tx.txid();
        for (vout, output) in tx.outputs.iter().enumerate() {
            let coin = Coin { output: output.clone(), height: context.height, is_coinbase: index == 0 };
            created.insert(OutPoint { txid, index: vout as u32 }, coin);
        }
    }
    let spends: Vec<&Transaction> = block.transactions.iter().skip(1).collect();
    let prevouts: Vec<OutPoint> = spends
        .iter()
        .flat_map(|tx| tx.inputs.iter().map(|input| input.prevout))
        .filter(|outpoint| !created.contains_key(outpoint))
        .collect();
    let read = |outpoint: &OutPoint| {
        let bytes = store.get(Cf::Utxo, &outpoint_key(outpoint)).ok()??;
        Some((*outpoint, coin_from_bytes(&bytes).ok()?))
    };
    // Small blocks stay on this thread: handing a few microseconds of work
    // to the pool and waiting for it costs more than it saves.
    let coins: HashMap<OutPoint, Coin> = if prevouts.len() < PARALLEL_TRANSACTIONS {
        prevouts.iter().filter_map(read).collect()
    } else {
        prevouts.par_iter().with_min_len(16).filter_map(read).collect()
    };
    let verify = |tx: &&Transaction| {
        let spent: Option<Vec<Coin>> = tx
            .inputs
            .iter()
            .map(|input| coins.get(&input.prevout).or_else(|| created.get(&input.prevout)).cloned())
            .collect();
        let checks = spent
            .and_then(|spent| check_inputs(tx, &spent, context.height, context.median_time, params).ok())
            .map_or_else(Vec::new, |checked| checked.signatures);
        checks.into_iter().filter(|check| check.verify(secp)).map(|c| (c.message, c.signature, c.key))
    };
    // Each transaction carries at least one signature: worth the pool from two.
    let verified: Verified = if spends.len() < 2 {
        spends.iter().flat_map(verify).collect()
    } else {
        spends.par_iter().with_min_len(4).flat_map_iter(verify).collect()
    };
    Prepared { coins, verified }
}

/// The UTXO set seen through the prepared coins first.
pub(crate) struct PreparedView<'a, V> {
    /// The prepared coins.
    pub prepared: &'a Prepared,
    /// The store, for anything not prepared.
    pub fallback: &'a V,
}

impl<V: UtxoView> UtxoView for PreparedView<'_, V> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.prepared.coins.get(outpoint).cloned().or_else(|| self.fallback.coin(outpoint))
    }
}

/// A verifier that knows the prepared results and verifies only the rest.
pub(crate) struct PreparedVerifier<'a, V> {
    /// The prepared results.
    pub prepared: &'a Prepared,
    /// Verifies whatever was not prepared.
    pub inner: &'a V,
}

impl<V: SignatureVerifier> SignatureVerifier for PreparedVerifier<'_, V> {
    fn first_failure(&self, checks: &[SignatureCheck]) -> Option<usize> {
        let unknown: Vec<usize> = (0..checks.len())
            .filter(|&i| {
                let c = &checks[i];
                !self.prepared.verified.contains(&(c.message, c.signature, c.key))
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
