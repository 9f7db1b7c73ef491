//! The message each input signs, and signing and verifying through it.
//!
//! # Consensus
//! For input `i` the message is
//! `tagged_hash("Cairn/sighash", genesis_hash || version || lock_time ||
//! sha_prevouts || sha_amounts || sha_locks || sha_sequences || sha_outputs || i)`
//! with integers as little-endian u32, the genesis hash in internal order, and
//! each `sha_*` one SHA-256 over every input's (or output's) field in order:
//! outpoints (`txid || index`), spent amounts (u64), spent locks (encoded),
//! sequences, and outputs (encoded). The digests are computed once per
//! transaction, so signing or checking all inputs is linear in its size.

use secp256k1::{schnorr, Keypair, Secp256k1, Verification, XOnlyPublicKey};
use sha2::{Digest, Sha256};

use crate::encode::Encode;
use crate::hash::{tagged_hash, BlockHash};
use crate::transaction::{Transaction, TxOut};

/// The tag of the signature message.
pub const SIGHASH_TAG: &str = "Cairn/sighash";

/// The per-transaction digests every input's message shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SighashCache {
    genesis: [u8; 32],
    version: u32,
    lock_time: u32,
    /// SHA-256 of all outpoints.
    pub sha_prevouts: [u8; 32],
    /// SHA-256 of all spent amounts.
    pub sha_amounts: [u8; 32],
    /// SHA-256 of all spent locks.
    pub sha_locks: [u8; 32],
    /// SHA-256 of all sequences.
    pub sha_sequences: [u8; 32],
    /// SHA-256 of all outputs.
    pub sha_outputs: [u8; 32],
}

impl SighashCache {
    /// Computes the digests. `spent` holds the output each input spends, in
    /// input order.
    ///
    /// # Panics
    /// When `spent` and the inputs differ in number (a caller's bug).
    #[must_use]
    pub fn new(tx: &Transaction, spent: &[&TxOut], genesis: BlockHash) -> Self {
        assert_eq!(tx.inputs.len(), spent.len(), "one spent output per input");
        // One buffer for every field's encoding.
        let mut buffer = Vec::with_capacity(64);
        let mut hash_encoded = |hasher: &mut Sha256, value: &dyn Encode| {
            buffer.clear();
            value.encode_to(&mut buffer);
            hasher.update(&buffer);
        };
        let mut prevouts = Sha256::new();
        let mut sequences = Sha256::new();
        for input in &tx.inputs {
            hash_encoded(&mut prevouts, &input.prevout);
            sequences.update(input.sequence.to_le_bytes());
        }
        let mut amounts = Sha256::new();
        let mut locks = Sha256::new();
        for output in spent {
            amounts.update(output.amount.to_base_units().to_le_bytes());
            hash_encoded(&mut locks, &output.lock);
        }
        let mut outputs = Sha256::new();
        for output in &tx.outputs {
            hash_encoded(&mut outputs, output);
        }
        Self {
            genesis: genesis.to_byte_array(),
            version: tx.version,
            lock_time: tx.lock_time,
            sha_prevouts: prevouts.finalize().into(),
            sha_amounts: amounts.finalize().into(),
            sha_locks: locks.finalize().into(),
            sha_sequences: sequences.finalize().into(),
            sha_outputs: outputs.finalize().into(),
        }
    }

    /// The 32-byte message input `index` signs.
    #[must_use]
    pub fn message(&self, index: u32) -> [u8; 32] {
        tagged_hash(
            SIGHASH_TAG,
            &[
                &self.genesis,
                &self.version.to_le_bytes(),
                &self.lock_time.to_le_bytes(),
                &self.sha_prevouts,
                &self.sha_amounts,
                &self.sha_locks,
                &self.sha_sequences,
                &self.sha_outputs,
                &index.to_le_bytes(),
            ],
        )
    }
}

/// One BIP-340 signature check: a message, a signature and an x-only key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// Which transaction input (within its transaction) it belongs to.
    pub input: usize,
    /// The signed message.
    pub message: [u8; 32],
    /// The 64-byte signature.
    pub signature: [u8; 64],
    /// The x-only key (already known to be valid: checked at output creation).
    pub key: [u8; 32],
}

impl SignatureCheck {
    /// Whether the signature is valid.
    #[must_use]
    pub fn verify<C: Verification>(&self, secp: &Secp256k1<C>) -> bool {
        let Ok(key) = XOnlyPublicKey::from_byte_array(&self.key) else {
            return false;
        };
        let signature = schnorr::Signature::from_byte_array(self.signature);
        secp.verify_schnorr(&signature, &self.message, &key).is_ok()
    }
}

/// Whether 32 bytes are a valid x-only secp256k1 key (BIP-340's `lift_x`
/// succeeds): by the Legendre symbol of x^3 + 7, several times faster than
/// `lift_x`'s square root, and by `lift_x` itself when that does not
/// converge.
#[must_use]
pub fn is_valid_key(key: &[u8; 32]) -> bool {
    crate::field::is_x_coordinate(key).unwrap_or_else(|| XOnlyPublicKey::from_byte_array(key).is_ok())
}

/// Signs every input of `tx` whose spent output is locked to `keypair`'s key,
/// putting one 64-byte signature in its witness; returns how many it signed.
/// `aux_rand` is BIP-340's auxiliary randomness (fresh randomness is best;
/// fixed bytes still give valid signatures).
///
/// # Panics
/// When `spent` and the inputs differ in number (a caller's bug).
pub fn sign_inputs<C: secp256k1::Signing>(
    secp: &Secp256k1<C>,
    tx: &mut Transaction,
    spent: &[&TxOut],
    genesis: BlockHash,
    keypair: &Keypair,
    aux_rand: &[u8; 32],
) -> usize {
    let own_key = keypair.x_only_public_key().0.serialize();
    sign_inputs_with(secp, tx, spent, genesis, |key| (*key == own_key).then_some(*keypair), aux_rand)
}

/// Signs every input of `tx` whose spent output is locked to a key that
/// `keypair_for` knows (it maps an x-only key to its key pair), with one
/// digest computation for the whole transaction; returns how many it signed.
///
/// # Panics
/// When `spent` and the inputs differ in number (a caller's bug).
pub fn sign_inputs_with<C: secp256k1::Signing>(
    secp: &Secp256k1<C>,
    tx: &mut Transaction,
    spent: &[&TxOut],
    genesis: BlockHash,
    keypair_for: impl Fn(&[u8; 32]) -> Option<Keypair>,
    aux_rand: &[u8; 32],
) -> usize {
    let cache = SighashCache::new(tx, spent, genesis);
    let mut signed = 0;
    for (index, (input, spent)) in tx.inputs.iter_mut().zip(spent).enumerate() {
        let Some(keypair) = spent.lock.key_bytes().as_ref().and_then(&keypair_for) else {
            continue;
        };
        let message = cache.message(index as u32);
        let signature = secp.sign_schnorr_with_aux_rand(&message, &keypair, aux_rand);
        input.witness = crate::Witness::from_items([signature.to_byte_array()]);
        signed += 1;
    }
    signed
}
