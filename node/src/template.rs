//! Block templates: a coinbase paying subsidy plus fees, then transactions
//! chosen by the mempool, on top of the tip.

use cairn_consensus::merkle::block_merkle_root;
use cairn_consensus::pow::CompactTarget;
use cairn_consensus::transaction::SEQUENCE_FINAL;
use cairn_consensus::{
    Amount, Block, BlockHash, BlockHeader, Height, Lock, OutPoint, Transaction, TxIn, TxOut,
};
use cairn_miner::{EXTRANONCE_OFFSET, EXTRANONCE_SIZE};

use crate::chain::Chain;

/// Room the coinbase takes in a block, kept free when filling it.
pub const COINBASE_RESERVE: usize = 1_000;

/// A new block on the tip paying `lock`, holding `transactions` (in an
/// order where every parent precedes its children) that pay `fees`, with
/// time `now` or just past the median time past, whichever is later. Its
/// nonce is zero: it still needs mining.
///
/// # Panics
/// When `fees` and the subsidy together pass the money supply (the caller
/// summed fees of valid transactions, so they cannot).
#[must_use]
pub fn new_block(
    chain: &Chain,
    lock: &Lock,
    transactions: Vec<Transaction>,
    fees: Amount,
    now: u64,
) -> Block {
    let height = chain.height().next();
    let reward =
        chain.params().subsidy(height).checked_add(fees).expect("subsidy plus fees within the money supply");
    let time = u32::try_from(now).unwrap_or(u32::MAX).max(chain.median_time_past().saturating_add(1));
    let place = Placement { prev: chain.tip(), height, time, bits: chain.next_bits() };
    unmined_block(&place, b"/cairn/", lock, reward, transactions)
}

/// Where a block goes: on `prev`, at `height`, with `time` and `bits`.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// The parent block.
    pub prev: BlockHash,
    /// The block's height.
    pub height: Height,
    /// Its header time.
    pub time: u32,
    /// Its header bits.
    pub bits: CompactTarget,
}

/// A block at `place` whose coinbase pays `reward` to `lock` (its data: the
/// height, the extranonce room, then `tag`), holding `transactions`; nonce
/// zero, to be mined.
#[must_use]
pub fn unmined_block(
    place: &Placement,
    tag: &[u8],
    lock: &Lock,
    reward: Amount,
    transactions: Vec<Transaction>,
) -> Block {
    let mut data = place.height.get().to_le_bytes().to_vec();
    data.resize(EXTRANONCE_OFFSET + EXTRANONCE_SIZE, 0);
    data.extend_from_slice(tag);
    let coinbase = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint::NULL,
            data,
            sequence: SEQUENCE_FINAL,
            witness: cairn_consensus::Witness::new(),
        }],
        outputs: vec![TxOut { amount: reward, lock: lock.clone() }],
        lock_time: 0,
    };
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_block: place.prev,
            merkle_root: cairn_consensus::MerkleRoot::ZERO,
            time: place.time,
            bits: place.bits,
            nonce: 0,
        },
        transactions: std::iter::once(coinbase).chain(transactions).collect(),
    };
    block.header.merkle_root = block_merkle_root(&block).root;
    block
}
