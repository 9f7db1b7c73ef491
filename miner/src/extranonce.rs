//! New work once the 32-bit nonce range is spent: an extranonce in the
//! coinbase data, with the merkle root recomputed from the coinbase's
//! branch alone (a few hashes, not the whole tree).

use std::sync::atomic::AtomicBool;

use cairn_consensus::merkle::{block_leaves, coinbase_branch, root_from_coinbase};
use cairn_consensus::{Block, BlockHeader};

use crate::job::Job;
use crate::kernels::Kernel;
use crate::search::{search, NonceRange};

/// Bytes of coinbase data before the extranonce: the height, as consensus
/// requires.
pub const EXTRANONCE_OFFSET: usize = 4;

/// Bytes of the extranonce.
pub const EXTRANONCE_SIZE: usize = 8;

/// A block template whose coinbase cannot carry an extranonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No transactions, or the first has no input.
    #[error("the block has no coinbase input to roll")]
    NoCoinbase,
    /// The coinbase data is shorter than height + extranonce.
    #[error("coinbase data is {0} bytes; the extranonce needs at least {need}", need = EXTRANONCE_OFFSET + EXTRANONCE_SIZE)]
    ShortCoinbaseData(usize),
    /// The header's bits do not encode a target.
    #[error("the header's bits are not a valid target: {0}")]
    Bits(#[from] cairn_consensus::pow::CompactTargetError),
}

/// A block template and its coinbase branch, ready to roll the extranonce.
#[derive(Debug, Clone)]
pub struct ExtranonceRoller {
    block: Block,
    branch: Vec<[u8; 32]>,
}

impl ExtranonceRoller {
    /// Takes a template whose coinbase data has room for the extranonce
    /// (bytes 4..12, after the height).
    ///
    /// # Errors
    /// When the block has no coinbase input or its data is too short.
    pub fn new(block: Block) -> Result<Self, TemplateError> {
        let data_len = block
            .transactions
            .first()
            .and_then(|coinbase| coinbase.inputs.first())
            .map(|input| input.data.len())
            .ok_or(TemplateError::NoCoinbase)?;
        if data_len < EXTRANONCE_OFFSET + EXTRANONCE_SIZE {
            return Err(TemplateError::ShortCoinbaseData(data_len));
        }
        let branch = coinbase_branch(&block_leaves(&block));
        Ok(Self { block, branch })
    }

    /// Writes `extranonce` into the coinbase and returns the header with the
    /// merkle root that follows.
    pub fn set_extranonce(&mut self, extranonce: u64) -> BlockHeader {
        let coinbase = &mut self.block.transactions[0];
        coinbase.inputs[0].data[EXTRANONCE_OFFSET..EXTRANONCE_OFFSET + EXTRANONCE_SIZE]
            .copy_from_slice(&extranonce.to_le_bytes());
        let txid = coinbase.txid().to_byte_array();
        self.block.header.merkle_root = root_from_coinbase(txid, &self.branch);
        self.block.header
    }

    /// The block as it stands (the last extranonce and nonce set).
    #[must_use]
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// Takes the block out.
    #[must_use]
    pub fn into_block(self) -> Block {
        self.block
    }

    /// Sets the header's nonce.
    pub fn set_nonce(&mut self, nonce: u32) {
        self.block.header.nonce = nonce;
    }
}

/// What [`solve_block`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solved {
    /// Whether the block now meets its target (false: stopped first).
    pub found: bool,
    /// Nonces hashed.
    pub hashes: u64,
}

/// Mines `block` on this thread until its header meets its target, however
/// long that takes (nothing stops it): for easy targets, as in tests,
/// tools and regtest. The solved block.
///
/// # Errors
/// When the block has no coinbase to roll or its bits are not a target.
pub fn solve(block: Block, kernel: Kernel) -> Result<Block, TemplateError> {
    let mut roller = ExtranonceRoller::new(block)?;
    let solved = solve_block(&mut roller, 0, kernel, None, &AtomicBool::new(false))?;
    assert!(solved.found, "a search nothing stops ends only with a solution");
    Ok(roller.into_block())
}

/// Mines `roller`'s block until its header meets the target its bits
/// encode or `stop` is set: the whole nonce range for each extranonce,
/// from `first_extranonce` up.
///
/// # Errors
/// When the header's bits are not a valid target.
pub fn solve_block(
    roller: &mut ExtranonceRoller,
    first_extranonce: u64,
    kernel: Kernel,
    pool: Option<&rayon::ThreadPool>,
    stop: &AtomicBool,
) -> Result<Solved, TemplateError> {
    let mut hashes = 0;
    let mut extranonce = first_extranonce;
    loop {
        let header = roller.set_extranonce(extranonce);
        let job = Job::from_header(&header)?;
        let outcome = search(&job, NonceRange::ALL, kernel, pool, stop);
        hashes += outcome.hashes;
        if let Some(nonce) = outcome.nonce {
            roller.set_nonce(nonce);
            return Ok(Solved { found: true, hashes });
        }
        if outcome.stopped || stop.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(Solved { found: false, hashes });
        }
        extranonce = extranonce.wrapping_add(1);
    }
}
