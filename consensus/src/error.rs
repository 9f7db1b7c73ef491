//! One error variant per consensus rule, carrying the values that broke it.

use crate::amount::AmountError;
use crate::hash::{BlockHash, MerkleRoot, Txid};
use crate::height::Height;
use crate::pow::{CompactTarget, CompactTargetError};
use crate::transaction::OutPoint;

/// A header breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// With the rolling bits masked out, the version is below 1.
    #[error("block version {0:#010x} is below 1 once the rolling bits are masked out")]
    VersionTooLow(u32),
    /// `bits` does not encode a usable target.
    #[error("invalid bits: {0}")]
    BadBits(#[from] CompactTargetError),
    /// `bits` is easier than the network allows.
    #[error("target of bits {bits} is easier than the limit {limit}")]
    TargetAboveLimit {
        /// The header's bits.
        bits: CompactTarget,
        /// The network's limit.
        limit: CompactTarget,
    },
    /// The hash does not meet the target.
    #[error("hash {hash} does not meet the target of bits {bits}")]
    InsufficientWork {
        /// The header's hash.
        hash: BlockHash,
        /// The header's bits.
        bits: CompactTarget,
    },
    /// `bits` differs from what the difficulty rule requires.
    #[error("bits {got} differ from the required {expected}")]
    UnexpectedBits {
        /// What the rule gives.
        expected: CompactTarget,
        /// What the header has.
        got: CompactTarget,
    },
    /// The time is not above the median of the previous blocks.
    #[error("time {time} is not above the median time past {median}")]
    TimeTooOld {
        /// The header's time.
        time: u32,
        /// The median of the previous 11 (or all) blocks.
        median: u32,
    },
    /// The time is too far ahead of the node's clock. Not a mark of
    /// invalidity: the same header may be fine later.
    #[error("time {time} is more than the allowed bound ahead of the clock (latest allowed {max})")]
    TimeTooNew {
        /// The header's time.
        time: u32,
        /// The latest time allowed now.
        max: u64,
    },
    /// The header does not extend the block it was checked against.
    #[error("header's previous block {got} is not {expected}")]
    PrevMismatch {
        /// The block the context describes.
        expected: BlockHash,
        /// The header's prev_block.
        got: BlockHash,
    },
    /// The chain context lacks an ancestor the rules need.
    #[error("ancestor at height {0} is not known")]
    MissingAncestor(Height),
}

impl HeaderError {
    /// Whether a header failing this way is invalid for good. Otherwise it
    /// might pass later (its time) or with more context (a missing
    /// ancestor), so its hash must not be marked invalid.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::TimeTooNew { .. } | Self::MissingAncestor(_))
    }
}

/// A transaction breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Version is not 1.
    #[error("transaction version {0} is not 1")]
    UnsupportedVersion(u32),
    /// No inputs.
    #[error("transaction has no inputs")]
    NoInputs,
    /// No outputs.
    #[error("transaction has no outputs")]
    NoOutputs,
    /// Larger than a block could hold.
    #[error("transaction size {size} exceeds the block size limit {limit}")]
    TooLarge {
        /// Its size with witnesses.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The serialization (with or without witnesses) is exactly 64 bytes,
    /// which could be confused with an inner merkle node.
    #[error("transaction serialization is exactly 64 bytes")]
    SixtyFourBytes,
    /// An output's lock version is not known.
    #[error("output {output} has unknown lock version {version}")]
    UnknownLockVersion {
        /// The output's position.
        output: usize,
        /// Its lock version.
        version: u8,
    },
    /// A version-1 lock whose payload is not a valid 32-byte x-only key.
    #[error("output {output} locks to an invalid key ({len}-byte payload)")]
    InvalidLockKey {
        /// The output's position.
        output: usize,
        /// The payload's length.
        len: usize,
    },
    /// Outputs add up past the money supply.
    #[error("outputs add up past the maximum money")]
    OutputSumOverflow,
    /// Inputs add up past the money supply.
    #[error("inputs add up past the maximum money")]
    InputSumOverflow,
    /// The same outpoint is spent twice.
    #[error("outpoint {0:?} is spent twice in one transaction")]
    DuplicateInput(OutPoint),
    /// A coinbase's data is shorter than 4 or longer than 100 bytes.
    #[error("coinbase data is {0} bytes; it must be 4 to 100")]
    CoinbaseDataSize(usize),
    /// A non-coinbase input spends the null outpoint.
    #[error("input {0} spends the null outpoint outside a coinbase")]
    NullPrevout(usize),
    /// A non-coinbase input carries data.
    #[error("input {input} carries {len} bytes of data; only the coinbase may")]
    InputData {
        /// The input's position.
        input: usize,
        /// How many bytes.
        len: usize,
    },
    /// A coinbase outside the first position of a block, or sent alone.
    #[error("a coinbase is only valid as a block's first transaction")]
    UnexpectedCoinbase,
    /// An input spends an output that does not exist or is spent.
    #[error("input {input} spends {outpoint:?}, which is missing or spent")]
    MissingInput {
        /// The input's position.
        input: usize,
        /// What it spends.
        outpoint: OutPoint,
    },
    /// A coinbase output spent too early.
    #[error("input {input} spends a coinbase from height {coin_height} at height {spend_height}; needs {maturity} confirmations")]
    ImmatureCoinbase {
        /// The input's position.
        input: usize,
        /// Height of the coinbase.
        coin_height: Height,
        /// Height of the spending block.
        spend_height: Height,
        /// Required depth.
        maturity: u32,
    },
    /// Outputs exceed inputs.
    #[error("outputs {outputs} exceed inputs {inputs}")]
    OutputsExceedInputs {
        /// Sum of inputs, base units.
        inputs: u64,
        /// Sum of outputs, base units.
        outputs: u64,
    },
    /// The lock time has not passed.
    #[error("lock time {lock_time} is not final at height {height} / median time {median_time}")]
    NotFinal {
        /// The transaction's lock time.
        lock_time: u32,
        /// The height it would enter.
        height: Height,
        /// The median time past it is compared with.
        median_time: u32,
    },
    /// A key-locked input's witness is not exactly one 64-byte item.
    #[error("input {input} witness must be one 64-byte signature (got {items} items)")]
    BadWitness {
        /// The input's position.
        input: usize,
        /// How many items it has.
        items: usize,
    },
    /// A signature does not verify.
    #[error("input {input} signature does not verify")]
    BadSignature {
        /// The input's position.
        input: usize,
    },
    /// Amount arithmetic failed.
    #[error(transparent)]
    Amount(#[from] AmountError),
}

/// A block breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The header breaks a rule.
    #[error("header: {0}")]
    Header(#[from] HeaderError),
    /// No transactions at all. (Body does not match header.)
    #[error("block has no transactions")]
    NoTransactions,
    /// The merkle root differs. (Body does not match header.)
    #[error("merkle root {computed} differs from the header's {header}")]
    MerkleMismatch {
        /// Root of the body.
        computed: MerkleRoot,
        /// Root in the header.
        header: MerkleRoot,
    },
    /// The tree has duplicated siblings (CVE-2012-2459). (Body does not match header.)
    #[error("merkle tree is mutated (duplicated transactions)")]
    MutatedMerkle,
    /// A transaction serializes to exactly 64 bytes. (Body does not match header.)
    #[error("transaction {0} serializes to exactly 64 bytes")]
    SixtyFourByteTransaction(usize),
    /// The coinbase has witness data, which the merkle root does not commit
    /// to. (Body does not match header.)
    #[error("coinbase witness is not empty")]
    CoinbaseWitness,
    /// Too large.
    #[error("block size {size} exceeds {limit}")]
    TooLarge {
        /// Serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The first transaction is not a coinbase.
    #[error("first transaction is not a coinbase")]
    FirstNotCoinbase,
    /// A later transaction is a coinbase.
    #[error("transaction {0} is a second coinbase")]
    ExtraCoinbase(usize),
    /// The coinbase data does not start with the height.
    #[error("coinbase data must begin with height {expected} as u32 little-endian")]
    CoinbaseHeight {
        /// The block's height.
        expected: Height,
    },
    /// The coinbase pays more than subsidy plus fees.
    #[error("coinbase pays {paid}, more than subsidy plus fees {allowed}")]
    CoinbaseOverpays {
        /// What it pays, base units.
        paid: u64,
        /// Subsidy plus fees, base units.
        allowed: u64,
    },
    /// A transaction breaks a rule.
    #[error("transaction {index} ({txid}): {error}")]
    Transaction {
        /// Its position in the block.
        index: usize,
        /// Its txid.
        txid: Txid,
        /// The rule.
        error: TxError,
    },
}

impl BlockError {
    /// Whether the body simply does not match the header (mutated or
    /// corrupted in transit). Such a block must be dropped without marking
    /// its hash invalid: an honest copy of the same header may still arrive.
    #[must_use]
    pub fn is_mutation(&self) -> bool {
        matches!(
            self,
            Self::NoTransactions
                | Self::MerkleMismatch { .. }
                | Self::MutatedMerkle
                | Self::SixtyFourByteTransaction(_)
                | Self::CoinbaseWitness
        )
    }

    /// Whether the block's hash (and its descendants) should be marked
    /// invalid for good.
    #[must_use]
    pub fn marks_invalid(&self) -> bool {
        match self {
            Self::Header(error) => error.is_permanent(),
            other => !other.is_mutation(),
        }
    }
}
