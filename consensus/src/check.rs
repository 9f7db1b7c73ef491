//! Transaction and block rules, and connecting a block to a UTXO set.
//!
//! The same [`check_transaction`] and [`check_inputs`] serve the mempool and
//! blocks. Signature checks are returned as data and run through a
//! [`SignatureVerifier`], so a node can spread them over its cores while this
//! crate stays free of threads.

use std::collections::{HashMap, HashSet};

use secp256k1::{Secp256k1, VerifyOnly};

use crate::amount::Amount;
use crate::block::{Block, MAX_BLOCK_SIZE};
use crate::chain::check_header;
use crate::error::{BlockError, TxError};
use crate::height::Height;
use crate::merkle::block_merkle_root;
use crate::params::Params;
use crate::sighash::{is_valid_key, SighashCache, SignatureCheck};
use crate::transaction::{OutPoint, Transaction, TxOut, LOCK_VERSION_KEY, SEQUENCE_FINAL};

/// Lock times below this are heights; at or above, Unix times.
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// Smallest and largest coinbase data.
pub const COINBASE_DATA_RANGE: core::ops::RangeInclusive<usize> = 4..=100;

/// An unspent output and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Coin {
    /// The output.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: Height,
    /// Whether a coinbase created it.
    pub is_coinbase: bool,
}

/// Read access to a UTXO set.
pub trait UtxoView {
    /// The unspent coin at `outpoint`, if any.
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin>;
}

impl UtxoView for HashMap<OutPoint, Coin> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.get(outpoint).cloned()
    }
}

/// Runs signature checks; returns the position of the first that fails.
///
/// It also runs [`check_block_with`]'s per-transaction checks, whose
/// output-key checks cost a Legendre symbol each: a verifier that spreads
/// work over cores spreads those too.
pub trait SignatureVerifier {
    /// `None` when all verify, else the index into `checks` of one that fails.
    fn first_failure(&self, checks: &[SignatureCheck]) -> Option<usize>;

    /// [`check_transaction`] on each of `txs`: `None` when all pass, else
    /// the lowest index that fails and its error.
    fn first_invalid_transaction(&self, txs: &[Transaction]) -> Option<(usize, TxError)> {
        txs.iter().enumerate().find_map(|(index, tx)| check_transaction(tx).err().map(|error| (index, error)))
    }

    /// Told that `tx`, whose signature checks are `checks`, passed every
    /// check and was accepted (into a mempool), so that a verifier that
    /// caches results may remember them for when `tx` comes in a block.
    /// Does nothing by default.
    fn remember(&self, tx: &Transaction, checks: &[SignatureCheck]) {
        let _ = (tx, checks);
    }
}

/// Verifies one signature after another on the calling thread.
#[derive(Debug)]
pub struct SequentialVerifier {
    secp: Secp256k1<VerifyOnly>,
}

impl Default for SequentialVerifier {
    fn default() -> Self {
        Self { secp: Secp256k1::verification_only() }
    }
}

impl SignatureVerifier for SequentialVerifier {
    fn first_failure(&self, checks: &[SignatureCheck]) -> Option<usize> {
        checks.iter().position(|check| !check.verify(&self.secp))
    }
}

/// Context-free transaction checks.
///
/// # Consensus
/// - Version is 1; at least one input and one output; size within the block limit;
///   neither serialization is exactly 64 bytes.
/// - Every output's lock is version 1 with a valid 32-byte x-only key.
/// - Outputs sum to at most MAX_MONEY.
/// - No outpoint is spent twice.
/// - A coinbase has 4 to 100 bytes of data; any other input spends a
///   non-null outpoint and carries no data.
///
/// # Errors
/// The first rule broken.
pub fn check_transaction(tx: &Transaction) -> Result<(), TxError> {
    if tx.version != 1 {
        return Err(TxError::UnsupportedVersion(tx.version));
    }
    if tx.inputs.is_empty() {
        return Err(TxError::NoInputs);
    }
    if tx.outputs.is_empty() {
        return Err(TxError::NoOutputs);
    }
    let size = tx.size();
    if size > MAX_BLOCK_SIZE {
        return Err(TxError::TooLarge { size, limit: MAX_BLOCK_SIZE });
    }
    if size == 64 || tx.base_size() == 64 {
        return Err(TxError::SixtyFourBytes);
    }
    for (index, output) in tx.outputs.iter().enumerate() {
        if output.lock.version != LOCK_VERSION_KEY {
            return Err(TxError::UnknownLockVersion { output: index, version: output.lock.version });
        }
        match output.lock.key_bytes() {
            Some(key) if is_valid_key(&key) => {}
            _ => return Err(TxError::InvalidLockKey { output: index, len: output.lock.payload.len() }),
        }
    }
    Amount::sum(tx.outputs.iter().map(|o| o.amount)).map_err(|_| TxError::OutputSumOverflow)?;
    if tx.is_coinbase() {
        let len = tx.inputs[0].data.len();
        if !COINBASE_DATA_RANGE.contains(&len) {
            return Err(TxError::CoinbaseDataSize(len));
        }
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(tx.inputs.len());
    for (index, input) in tx.inputs.iter().enumerate() {
        if input.prevout.is_null() {
            return Err(TxError::NullPrevout(index));
        }
        if !input.data.is_empty() {
            return Err(TxError::InputData { input: index, len: input.data.len() });
        }
        if !seen.insert(input.prevout) {
            return Err(TxError::DuplicateInput(input.prevout));
        }
    }
    Ok(())
}

/// Whether `tx`'s lock time allows it into the block at `height`, whose
/// parent's median time past is `median_time`.
///
/// # Consensus
/// Final when lock time is 0, when every sequence is `0xffffffff`, or when
/// the lock time is below the height (lock time < 500,000,000) or below the
/// median time past (otherwise).
#[must_use]
pub fn is_final(tx: &Transaction, height: Height, median_time: u32) -> bool {
    if tx.lock_time == 0 {
        return true;
    }
    let bound = if tx.lock_time < LOCKTIME_THRESHOLD { height.get() } else { median_time };
    tx.lock_time < bound || tx.inputs.iter().all(|i| i.sequence == SEQUENCE_FINAL)
}

/// What a transaction's inputs resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedInputs {
    /// Inputs minus outputs.
    pub fee: Amount,
    /// The signatures still to verify.
    pub signatures: Vec<SignatureCheck>,
}

/// Contextual checks of a non-coinbase transaction against the coins it
/// spends (`coins[i]` is what input `i` spends), for inclusion at `height`.
/// Signatures are returned, not verified.
///
/// # Consensus
/// - The lock time is final (see [`is_final`]).
/// - A coinbase output is spent only at `coin height + coinbase_maturity` or later.
/// - Inputs sum to at most MAX_MONEY and at least the outputs.
/// - Each input spending a version-1 lock has exactly one 64-byte witness
///   item, a BIP-340 signature of the message in [`crate::sighash`].
///
/// # Errors
/// The first rule broken.
///
/// # Panics
/// When `coins` and the inputs differ in number (a caller's bug).
pub fn check_inputs(
    tx: &Transaction,
    coins: &[Coin],
    height: Height,
    median_time: u32,
    params: &Params,
) -> Result<CheckedInputs, TxError> {
    assert_eq!(tx.inputs.len(), coins.len(), "one coin per input");
    if tx.is_coinbase() {
        return Err(TxError::UnexpectedCoinbase);
    }
    if !is_final(tx, height, median_time) {
        return Err(TxError::NotFinal { lock_time: tx.lock_time, height, median_time });
    }
    let mut total_in = Amount::ZERO;
    for (index, coin) in coins.iter().enumerate() {
        let mature_at = coin.height.checked_add(params.coinbase_maturity).unwrap_or(Height::new(u32::MAX));
        if coin.is_coinbase && height < mature_at {
            return Err(TxError::ImmatureCoinbase {
                input: index,
                coin_height: coin.height,
                spend_height: height,
                maturity: params.coinbase_maturity,
            });
        }
        total_in = total_in.checked_add(coin.output.amount).map_err(|_| TxError::InputSumOverflow)?;
    }
    let total_out =
        Amount::sum(tx.outputs.iter().map(|o| o.amount)).map_err(|_| TxError::OutputSumOverflow)?;
    let fee = total_in.checked_sub(total_out).map_err(|_| TxError::OutputsExceedInputs {
        inputs: total_in.to_base_units(),
        outputs: total_out.to_base_units(),
    })?;
    let spent: Vec<&TxOut> = coins.iter().map(|c| &c.output).collect();
    let cache = SighashCache::new(tx, &spent, params.genesis_hash);
    let mut signatures = Vec::with_capacity(tx.inputs.len());
    for (index, (input, coin)) in tx.inputs.iter().zip(coins).enumerate() {
        // Locks are checked when created, so a stored coin's lock is a valid key.
        let key = coin
            .output
            .lock
            .key_bytes()
            .ok_or(TxError::UnknownLockVersion { output: index, version: coin.output.lock.version })?;
        let signature: [u8; 64] = match input.witness.single() {
            Some(item) => item.try_into().map_err(|_| TxError::BadWitness { input: index, items: 1 })?,
            None => return Err(TxError::BadWitness { input: index, items: input.witness.len() }),
        };
        signatures.push(SignatureCheck {
            input: index,
            message: cache.message(index as u32),
            signature,
            key,
        });
    }
    Ok(CheckedInputs { fee, signatures })
}

/// Context-free block checks: header proof of work, body against header,
/// size, coinbase placement, and every transaction's context-free rules.
///
/// # Consensus
/// - The header passes [`check_header`].
/// - Body matches header: at least one transaction, merkle root of (coinbase
///   txid, other wtxids) equals the header's, the tree is not mutated, no
///   transaction serializes to 64 bytes, and the coinbase witness is empty.
/// - At most 2,000,000 bytes serialized with witnesses.
/// - The first transaction, and only it, is a coinbase.
///
/// # Errors
/// The first rule broken; [`BlockError::is_mutation`] tells a body that
/// does not match its header from an invalid block.
pub fn check_block(block: &Block, params: &Params) -> Result<(), BlockError> {
    check_block_with(block, params, &SequentialVerifier::default())
}

/// [`check_block`], with the per-transaction checks run by `verifier`
/// (see [`SignatureVerifier::first_invalid_transaction`]).
///
/// # Errors
/// As [`check_block`].
pub fn check_block_with(
    block: &Block,
    params: &Params,
    verifier: &impl SignatureVerifier,
) -> Result<(), BlockError> {
    check_header(&block.header, params)?;
    check_block_body_with(block, verifier)
}

/// [`check_block_with`] without the header's own checks (proof of work,
/// version, target limit): every rule of the body. For a block template,
/// which has no proof of work yet (Bitcoin Core's `TestBlockValidity`
/// without the proof-of-work check).
///
/// # Errors
/// As [`check_block`], for every rule but those of [`check_header`].
pub fn check_block_body_with(block: &Block, verifier: &impl SignatureVerifier) -> Result<(), BlockError> {
    let Some(coinbase) = block.transactions.first() else {
        return Err(BlockError::NoTransactions);
    };
    for (index, tx) in block.transactions.iter().enumerate() {
        if tx.size() == 64 || tx.base_size() == 64 {
            return Err(BlockError::SixtyFourByteTransaction(index));
        }
    }
    let merkle = block_merkle_root(block);
    if merkle.root != block.header.merkle_root {
        return Err(BlockError::MerkleMismatch { computed: merkle.root, header: block.header.merkle_root });
    }
    if merkle.mutated {
        return Err(BlockError::MutatedMerkle);
    }
    // The header commits to the first transaction's txid, hence to whether it
    // is a coinbase, but not to its witness.
    if !coinbase.is_coinbase() {
        return Err(BlockError::FirstNotCoinbase);
    }
    if coinbase.inputs.iter().any(|i| !i.witness.is_empty()) {
        return Err(BlockError::CoinbaseWitness);
    }
    let size = block.size();
    if size > MAX_BLOCK_SIZE {
        return Err(BlockError::TooLarge { size, limit: MAX_BLOCK_SIZE });
    }
    if let Some(index) = block.transactions.iter().skip(1).position(Transaction::is_coinbase) {
        return Err(BlockError::ExtraCoinbase(index + 1));
    }
    if let Some((index, error)) = verifier.first_invalid_transaction(&block.transactions) {
        return Err(BlockError::Transaction { index, txid: block.transactions[index].txid(), error });
    }
    Ok(())
}

/// The UTXO changes of a connected block, which are also its undo data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockChanges {
    /// Coins that existed before the block and that it spends, in input
    /// order: restoring them undoes the block.
    pub spent: Vec<(OutPoint, Coin)>,
    /// Coins the block creates that are still unspent after it.
    pub created: Vec<(OutPoint, Coin)>,
    /// Total fees paid by the block's transactions.
    pub fees: Amount,
}

/// The chain context a block connects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockContext {
    /// The block's height.
    pub height: Height,
    /// The median time past of its parent.
    pub median_time: u32,
}

/// Connects a block that passed [`check_block`] (and its header the
/// contextual header checks) to the UTXO set seen through `view`, checking
/// every contextual rule and all signatures, and returns the changes to
/// apply. Nothing is written: the caller applies the changes atomically.
///
/// This is [`connect_block_unverified`] followed by
/// [`UnverifiedBlock::verify`].
///
/// # Errors
/// The first rule broken; a bad signature only when every other rule holds.
pub fn connect_block(
    block: &Block,
    context: BlockContext,
    view: &impl UtxoView,
    params: &Params,
    verifier: &impl SignatureVerifier,
) -> Result<BlockChanges, BlockError> {
    connect_block_unverified(block, context, view, params)?.verify(block, verifier)
}

/// A block whose every rule but its signatures holds: the changes it
/// makes, and the signature checks still to run before they may be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedBlock {
    /// The changes, valid once the signatures are.
    pub changes: BlockChanges,
    signatures: Vec<SignatureCheck>,
    /// The transaction (index in the block) of each signature check.
    owners: Vec<usize>,
}

impl UnverifiedBlock {
    /// Runs the signature checks through `verifier`; the changes if all pass.
    ///
    /// # Errors
    /// [`TxError::BadSignature`] for a failing check (`block` names its transaction).
    pub fn verify(
        self,
        block: &Block,
        verifier: &impl SignatureVerifier,
    ) -> Result<BlockChanges, BlockError> {
        match verifier.first_failure(&self.signatures) {
            None => Ok(self.changes),
            Some(failed) => {
                let index = self.owners[failed];
                Err(BlockError::Transaction {
                    index,
                    txid: block.transactions[index].txid(),
                    error: TxError::BadSignature { input: self.signatures[failed].input },
                })
            }
        }
    }
}

/// Every rule of [`connect_block`] but the signatures, which are returned
/// to be verified (so that a node can check them while it does other work).
///
/// # Consensus
/// - The coinbase data begins with the block height as u32 little-endian.
/// - Every transaction is final at this height and median time.
/// - Every non-coinbase transaction passes [`check_inputs`] against the
///   coins before it (earlier transactions of the same block included), and
///   no coin is spent twice.
/// - The coinbase pays at most the subsidy plus all fees.
/// - (Then, in [`UnverifiedBlock::verify`]: every signature is valid.)
///
/// # Errors
/// The first rule broken.
pub fn connect_block_unverified(
    block: &Block,
    context: BlockContext,
    view: &impl UtxoView,
    params: &Params,
) -> Result<UnverifiedBlock, BlockError> {
    let BlockContext { height, median_time } = context;
    // check_block has ensured this; a caller that skipped it gets an error, not a panic.
    let Some(coinbase) = block.transactions.first().filter(|tx| tx.is_coinbase()) else {
        return Err(BlockError::FirstNotCoinbase);
    };
    if !coinbase.inputs[0].data.starts_with(&height.get().to_le_bytes()) {
        return Err(BlockError::CoinbaseHeight { expected: height });
    }
    let tx_error = |index: usize, tx: &Transaction, error: TxError| BlockError::Transaction {
        index,
        txid: tx.txid(),
        error,
    };
    if !is_final(coinbase, height, median_time) {
        let error = TxError::NotFinal { lock_time: coinbase.lock_time, height, median_time };
        return Err(tx_error(0, coinbase, error));
    }

    // Coins created in this block and not yet spent, and pre-existing coins spent.
    let mut created: HashMap<OutPoint, Coin> = HashMap::new();
    let mut spent_outpoints: HashSet<OutPoint> = HashSet::new();
    let mut spent = Vec::new();
    let mut fees = Amount::ZERO;
    let mut signatures = Vec::new();
    let mut signature_owner = Vec::new();
    let mut created_order = Vec::new();

    for (index, tx) in block.transactions.iter().enumerate() {
        let txid = tx.txid();
        if index > 0 {
            let mut coins = Vec::with_capacity(tx.inputs.len());
            for (input_index, input) in tx.inputs.iter().enumerate() {
                let coin = if let Some(coin) = created.remove(&input.prevout) {
                    Some(coin)
                } else if spent_outpoints.contains(&input.prevout) {
                    None
                } else {
                    view.coin(&input.prevout).inspect(|coin| spent.push((input.prevout, coin.clone())))
                }
                .ok_or_else(|| {
                    tx_error(index, tx, TxError::MissingInput { input: input_index, outpoint: input.prevout })
                })?;
                spent_outpoints.insert(input.prevout);
                coins.push(coin);
            }
            let checked = check_inputs(tx, &coins, height, median_time, params)
                .map_err(|error| tx_error(index, tx, error))?;
            fees = fees.checked_add(checked.fee).map_err(|e| tx_error(index, tx, e.into()))?;
            signature_owner.extend(std::iter::repeat_n(index, checked.signatures.len()));
            signatures.extend(checked.signatures);
        }
        for (vout, output) in tx.outputs.iter().enumerate() {
            let outpoint = OutPoint { txid, index: vout as u32 };
            created.insert(outpoint, Coin { output: output.clone(), height, is_coinbase: index == 0 });
            created_order.push(outpoint);
        }
    }

    let paid = Amount::sum(coinbase.outputs.iter().map(|o| o.amount))
        .map_err(|e| tx_error(0, coinbase, e.into()))?;
    let allowed = params.subsidy(height).checked_add(fees).map_err(|e| tx_error(0, coinbase, e.into()))?;
    if paid > allowed {
        return Err(BlockError::CoinbaseOverpays {
            paid: paid.to_base_units(),
            allowed: allowed.to_base_units(),
        });
    }

    let created = created_order
        .into_iter()
        .filter_map(|outpoint| created.remove(&outpoint).map(|coin| (outpoint, coin)))
        .collect();
    Ok(UnverifiedBlock {
        changes: BlockChanges { spent, created, fees },
        signatures,
        owners: signature_owner,
    })
}
