//! The digest of the UTXO set, for comparing two nodes' sets.

use cairn_consensus::Amount;

use super::{Chain, ChainError};
use crate::records::coin_from_bytes;
use crate::store::{Cf, Store, StoreError};

/// A digest of the UTXO set: the same on two nodes with the same set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtxoDigest {
    /// Unspent outputs.
    pub count: u64,
    /// Their total amount.
    pub total: Amount,
    /// SHA-256 over every (outpoint key, coin record) pair in key order.
    pub hash: [u8; 32],
}

impl Chain {
    /// The digest of the UTXO set.
    ///
    /// # Errors
    /// When the store fails or holds a coin that does not decode.
    pub fn utxo_digest(&self) -> Result<UtxoDigest, ChainError> {
        utxo_digest(self.store.as_ref())
    }
}

/// The digest of the UTXO set in `store`.
///
/// # Errors
/// When the store fails or holds a coin that does not decode.
pub fn utxo_digest(store: &dyn Store) -> Result<UtxoDigest, ChainError> {
    use sha2::Digest;
    let mut count = 0u64;
    let mut total = Amount::ZERO;
    let mut hasher = sha2::Sha256::new();
    let mut corrupt = false;
    store.for_each(Cf::Utxo, &mut |key, value| {
        count += 1;
        match coin_from_bytes(value).ok().and_then(|coin| total.checked_add(coin.output.amount).ok()) {
            Some(sum) => total = sum,
            None => corrupt = true,
        }
        hasher.update(key);
        hasher.update((value.len() as u32).to_le_bytes());
        hasher.update(value);
    })?;
    if corrupt {
        return Err(StoreError::Corrupt("coin").into());
    }
    Ok(UtxoDigest { count, total, hash: hasher.finalize().into() })
}
