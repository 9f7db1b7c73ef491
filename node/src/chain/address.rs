//! The address index: what a lock holds and what paid or spent it, and
//! the keys each block writes there.

use std::collections::HashMap;

use cairn_consensus::check::Coin;
use cairn_consensus::{Amount, Block, BlockHash, Decode, Height, OutPoint};

use super::{Chain, ChainError};
use crate::records::{
    address_coin_prefix, address_history_prefix, coin_from_bytes, decode_undo, outpoint_from_key,
};
use crate::store::{Cf, Store, StoreError};

/// What one transaction did to the coins of one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressDelta {
    /// Which of the locks asked about.
    pub lock_index: usize,
    /// The block's height.
    pub height: Height,
    /// The block.
    pub block_hash: BlockHash,
    /// The transaction.
    pub txid: cairn_consensus::Txid,
    /// What its outputs paid the lock.
    pub received: Amount,
    /// What the lock's coins that its inputs spent held.
    pub sent: Amount,
}

/// One row of an address's history on the active chain: a transaction
/// that paid or spent one of the locks asked about, in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryRow {
    /// The block's height.
    pub height: Height,
    /// The transaction.
    pub txid: cairn_consensus::Txid,
    /// Which of the locks asked about.
    pub lock_index: usize,
    /// The active block at that height.
    pub block_hash: BlockHash,
}

/// The unspent coins a lock holds, from the address index in `store`.
///
/// The store is read without the chain (one prefix scan, which sees the
/// store between two block writes), so callers need not hold the node's
/// state lock while a large set is read.
///
/// # Errors
/// When the store fails or holds a record that does not decode.
pub fn address_coins_in(
    store: &dyn Store,
    lock: &cairn_consensus::Lock,
) -> Result<Vec<(OutPoint, Coin)>, ChainError> {
    let corrupt = |_| ChainError::Store(StoreError::Corrupt("address coin"));
    let prefix = address_coin_prefix(lock);
    store
        .scan_prefix(Cf::Address, &prefix)?
        .into_iter()
        .map(|(key, value)| {
            Ok((
                outpoint_from_key(&key[prefix.len()..]).map_err(corrupt)?,
                coin_from_bytes(&value).map_err(corrupt)?,
            ))
        })
        .collect()
}

/// The transactions that paid or spent a lock, by height, from the address
/// index in `store` (read as [`address_coins_in`] reads it).
///
/// # Errors
/// When the store fails or holds a key that does not decode.
pub fn address_history_in(
    store: &dyn Store,
    lock: &cairn_consensus::Lock,
) -> Result<Vec<(Height, cairn_consensus::Txid)>, ChainError> {
    let prefix = address_history_prefix(lock);
    store
        .scan_prefix(Cf::Address, &prefix)?
        .into_iter()
        .map(|(key, _)| {
            let rest = &key[prefix.len()..];
            let height: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(StoreError::Corrupt("address history"))?;
            let txid: [u8; 32] = rest
                .get(4..)
                .and_then(|b| b.try_into().ok())
                .ok_or(StoreError::Corrupt("address history"))?;
            Ok((Height::new(u32::from_be_bytes(height)), cairn_consensus::Txid::from_byte_array(txid)))
        })
        .collect()
}

/// The transactions that paid or spent `locks` at heights in `heights`,
/// each (height, transaction, lock index) once, in that order, from the
/// address index in `store` (read as [`address_coins_in`] reads it).
///
/// # Errors
/// When the store fails or holds a key that does not decode.
pub fn address_history_of(
    store: &dyn Store,
    locks: &[cairn_consensus::Lock],
    heights: std::ops::RangeInclusive<u32>,
) -> Result<Vec<(Height, cairn_consensus::Txid, usize)>, ChainError> {
    let mut history = Vec::new();
    for (lock_index, lock) in locks.iter().enumerate() {
        for (height, txid) in address_history_in(store, lock)? {
            if heights.contains(&height.get()) {
                history.push((height, txid, lock_index));
            }
        }
    }
    history.sort();
    history.dedup();
    Ok(history)
}

/// What the transactions of `rows` (from [`Chain::place_history`])
/// did to `locks`: the amounts received and spent, read from the bodies and
/// undo data in `store`, which never change once stored, so they are read
/// without the chain.
///
/// # Errors
/// When the store fails or holds a record that does not decode.
pub fn address_deltas_in(
    store: &dyn Store,
    locks: &[cairn_consensus::Lock],
    rows: &[HistoryRow],
) -> Result<Vec<AddressDelta>, ChainError> {
    let mut deltas = Vec::with_capacity(rows.len());
    let mut loaded: Option<(BlockHash, Block, HashMap<OutPoint, Coin>)> = None;
    for row in rows {
        if loaded.as_ref().is_none_or(|(hash, ..)| *hash != row.block_hash) {
            let hash = row.block_hash;
            let bytes =
                store.get(Cf::Bodies, &hash.to_byte_array())?.ok_or(StoreError::Corrupt("missing body"))?;
            let block = Block::decode(&bytes).map_err(|_| StoreError::Corrupt("body"))?;
            let undo =
                store.get(Cf::Undo, &hash.to_byte_array())?.ok_or(StoreError::Corrupt("missing undo"))?;
            let mut spent: HashMap<OutPoint, Coin> =
                decode_undo(&undo).map_err(|_| StoreError::Corrupt("undo"))?.into_iter().collect();
            // Coins created and spent inside the block are in no undo data.
            for tx in &block.transactions {
                let id = tx.txid();
                for (index, output) in tx.outputs.iter().enumerate() {
                    let coin =
                        Coin { output: output.clone(), height: row.height, is_coinbase: tx.is_coinbase() };
                    spent.entry(OutPoint { txid: id, index: index as u32 }).or_insert(coin);
                }
            }
            loaded = Some((hash, block, spent));
        }
        let (_, block, coins) = loaded.as_ref().expect("loaded above");
        let tx = block
            .transactions
            .iter()
            .find(|tx| tx.txid() == row.txid)
            .ok_or(StoreError::Corrupt("address history transaction"))?;
        let lock = &locks[row.lock_index];
        let corrupt = |_| ChainError::Store(StoreError::Corrupt("amounts"));
        let received =
            Amount::sum(tx.outputs.iter().filter(|o| o.lock == *lock).map(|o| o.amount)).map_err(corrupt)?;
        let sent = Amount::sum(
            tx.inputs
                .iter()
                .filter_map(|input| coins.get(&input.prevout))
                .filter(|coin| coin.output.lock == *lock)
                .map(|coin| coin.output.amount),
        )
        .map_err(corrupt)?;
        deltas.push(AddressDelta {
            lock_index: row.lock_index,
            height: row.height,
            block_hash: row.block_hash,
            txid: row.txid,
            received,
            sent,
        });
    }
    Ok(deltas)
}

impl Chain {
    /// The unspent coins a lock holds (see [`address_coins_in`]).
    ///
    /// # Errors
    /// When the store fails or holds a record that does not decode.
    pub fn address_coins(&self, lock: &cairn_consensus::Lock) -> Result<Vec<(OutPoint, Coin)>, ChainError> {
        address_coins_in(self.store.as_ref(), lock)
    }

    /// The transactions that paid or spent a lock, by height (see
    /// [`address_history_in`]).
    ///
    /// # Errors
    /// When the store fails or holds a key that does not decode.
    pub fn address_history(
        &self,
        lock: &cairn_consensus::Lock,
    ) -> Result<Vec<(Height, cairn_consensus::Txid)>, ChainError> {
        address_history_in(self.store.as_ref(), lock)
    }

    /// The blocks of the active chain that hold `history` (from
    /// [`address_history_of`]): in memory, so this is all that needs the
    /// chain while an address's history is read.
    ///
    /// # Errors
    /// When a height is past the tip (the address index and the chain
    /// disagree, or the chain got shorter since `history` was read).
    pub fn place_history(
        &self,
        history: &[(Height, cairn_consensus::Txid, usize)],
    ) -> Result<Vec<HistoryRow>, ChainError> {
        history
            .iter()
            .map(|&(height, txid, lock_index)| {
                let block_hash = self.hash_at(height).ok_or(StoreError::Corrupt("address history height"))?;
                Ok(HistoryRow { height, txid, lock_index, block_hash })
            })
            .collect()
    }

    /// What each active-chain transaction that paid or spent `locks` did
    /// to them: the amounts received and spent, per (transaction, lock),
    /// read from the address index, the bodies and the undo data, in
    /// height order. Only heights in `heights` are read.
    ///
    /// # Errors
    /// When the store fails or holds a record that does not decode.
    pub fn address_deltas(
        &self,
        locks: &[cairn_consensus::Lock],
        heights: std::ops::RangeInclusive<u32>,
    ) -> Result<Vec<AddressDelta>, ChainError> {
        let history = address_history_of(self.store.as_ref(), locks, heights)?;
        let rows = self.place_history(&history)?;
        address_deltas_in(self.store.as_ref(), locks, &rows)
    }
}

/// Every (lock, txid) pair of the block: each output's lock, and each
/// spent coin's lock, with the transaction that pays or spends it; each
/// pair once.
pub(super) fn touched_locks<'a>(
    block: &'a Block,
    spent: &'a [(OutPoint, Coin)],
) -> Vec<(&'a cairn_consensus::Lock, cairn_consensus::Txid)> {
    let spent: HashMap<&OutPoint, &Coin> = spent.iter().map(|(o, c)| (o, c)).collect();
    let mut created: HashMap<OutPoint, &cairn_consensus::Lock> = HashMap::new();
    let mut touched = Vec::new();
    for tx in &block.transactions {
        let txid = tx.txid();
        for input in tx.inputs.iter().filter(|i| !i.prevout.is_null()) {
            if let Some(coin) = spent.get(&input.prevout) {
                touched.push((&coin.output.lock, txid));
            } else if let Some(lock) = created.get(&input.prevout) {
                touched.push((*lock, txid));
            }
        }
        for (index, output) in tx.outputs.iter().enumerate() {
            created.insert(OutPoint { txid, index: index as u32 }, &output.lock);
            touched.push((&output.lock, txid));
        }
    }
    touched.sort_unstable();
    touched.dedup();
    touched
}
