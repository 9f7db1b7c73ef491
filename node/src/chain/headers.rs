//! Headers first: locators, checking and storing runs of headers, and
//! the bodies still missing on the way to the best header.

use std::collections::HashMap;

use cairn_consensus::chain::{check_header, check_header_contextual};
use cairn_consensus::{BlockHash, BlockHeader, HeaderError, Height, Work};

use super::{Chain, Entry};
use crate::records::{IndexRecord, HAS_BODY, INVALID};
use crate::store::{Batch, Cf, StoreError};

/// Why a run of headers was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HeadersError {
    /// The first header's parent is not known.
    #[error("the headers do not connect to a known block (parent {0})")]
    Unconnected(BlockHash),
    /// A header does not follow the one before it in the run.
    #[error("header {0} of the run does not follow the one before it")]
    NotAChain(usize),
    /// A header extends a block known to be invalid.
    #[error("header {0} of the run descends from an invalid block")]
    InvalidAncestor(usize),
    /// A header breaks a rule.
    #[error("header {index} of the run is invalid: {error}")]
    Invalid {
        /// Its position in the run.
        index: usize,
        /// The rule.
        error: HeaderError,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl HeadersError {
    /// Whether the sender is to blame (the headers are provably bad), as
    /// opposed to headers that only cannot be checked yet.
    #[must_use]
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            Self::NotAChain(_) | Self::InvalidAncestor(_) => true,
            Self::Invalid { error, .. } => error.is_permanent(),
            Self::Unconnected(_) | Self::Store(_) => false,
        }
    }
}

/// The summary of a chain tip another node can compare with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TipSummary {
    /// The block.
    pub hash: BlockHash,
    /// Its height.
    pub height: Height,
    /// The work of the chain up to it.
    pub chain_work: Work,
}

/// Headers in one answer to a request by locator, at most.
pub const MAX_HEADERS_PER_ANSWER: usize = 2_000;

impl Chain {
    /// The active tip as a summary.
    #[must_use]
    pub fn tip_summary(&self) -> TipSummary {
        let entry = self.tip_entry();
        TipSummary { hash: self.tip(), height: entry.record.height, chain_work: entry.record.chain_work }
    }

    /// The valid header with the most work, body or not (the first seen among equals).
    #[must_use]
    pub fn best_header(&self) -> TipSummary {
        match self.ranked_headers.iter().next_back() {
            Some((chain_work, _, hash)) => {
                TipSummary { hash: *hash, height: self.index[hash].record.height, chain_work: *chain_work }
            }
            None => self.tip_summary(),
        }
    }

    /// Hashes that describe the chain ending at `tip` to a peer: the last
    /// ten blocks, then exponentially sparser, then genesis.
    #[must_use]
    pub fn locator(&self, tip: &BlockHash) -> Vec<BlockHash> {
        let mut hashes = Vec::new();
        let Some(entry) = self.index.get(tip) else { return vec![self.params.genesis_hash] };
        let mut height = entry.record.height.get();
        let mut hash = *tip;
        let mut step = 1u32;
        loop {
            hashes.push(hash);
            if height == 0 {
                break;
            }
            if hashes.len() >= 10 {
                step = step.saturating_mul(2);
            }
            let target = height.saturating_sub(step);
            // Walk back along the branch until it joins the active chain, then index it.
            while height > target {
                if self.is_active(&hash) {
                    hash = self.active[target as usize];
                    height = target;
                    break;
                }
                hash = self.index[&hash].header.prev_block;
                height -= 1;
            }
        }
        hashes
    }

    /// The active chain's headers after the first locator hash it holds
    /// (genesis when it holds none), at most `max`.
    #[must_use]
    pub fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<BlockHeader> {
        let start = locator
            .iter()
            .find(|hash| self.is_active(hash))
            .map_or(0, |hash| self.index[hash].record.height.get() as usize);
        self.active
            .iter()
            .skip(start + 1)
            .take(max.min(MAX_HEADERS_PER_ANSWER))
            .map(|hash| self.index[hash].header)
            .collect()
    }

    /// Checks a run of headers that starts from a known block, without
    /// storing it: each must follow the one before, and pass the header
    /// rules (work, bits, time) in the context of its branch. `checked` is
    /// the start of the run, already checked by an earlier call; `headers`
    /// continue it. Returns the work of the chain ending at the last one.
    ///
    /// # Errors
    /// The first problem found (its index counts within `headers`).
    pub fn check_headers(
        &self,
        checked: &[BlockHeader],
        headers: &[BlockHeader],
        now: u64,
    ) -> Result<Work, HeadersError> {
        let Some(first) = checked.first().or(headers.first()) else {
            return Ok(self.tip_entry().record.chain_work);
        };
        let parent = self.index.get(&first.prev_block).ok_or(HeadersError::Unconnected(first.prev_block))?;
        if parent.record.flags & INVALID != 0 {
            return Err(HeadersError::InvalidAncestor(0));
        }
        let mut branch = self.branch(first.prev_block);
        let mut height = parent.record.height;
        let mut work = parent.record.chain_work;
        let mut previous = first.prev_block;
        for header in checked {
            let target =
                header.bits.to_target().map_err(|e| HeadersError::Invalid { index: 0, error: e.into() })?;
            work = work + target.work();
            height = height.next();
            branch.above.push(*header);
            previous = header.block_hash();
        }
        for (index, header) in headers.iter().enumerate() {
            if header.prev_block != previous {
                return Err(HeadersError::NotAChain(index));
            }
            let hash = header.block_hash();
            if let Some(known) = self.index.get(&hash) {
                if known.record.flags & INVALID != 0 {
                    return Err(HeadersError::InvalidAncestor(index));
                }
            }
            let invalid = |error: HeaderError| HeadersError::Invalid { index, error };
            check_header(header, &self.params).map_err(invalid)?;
            check_header_contextual(header, &self.params, &branch, height, now).map_err(invalid)?;
            let target = header.bits.to_target().map_err(|e| invalid(e.into()))?;
            work = work + target.work();
            height = height.next();
            branch.above.push(*header);
            previous = hash;
        }
        Ok(work)
    }

    /// Checks a run of headers as [`Chain::check_headers`] and stores the
    /// ones not yet known, in one batch; returns how many were new.
    ///
    /// # Errors
    /// As [`Chain::check_headers`], or a store failure.
    pub fn store_headers(&mut self, headers: &[BlockHeader], now: u64) -> Result<usize, HeadersError> {
        self.check_headers(&[], headers, now)?;
        self.store_checked_headers(headers)
    }

    /// Stores a run of headers that [`Chain::check_headers`] accepted on
    /// this chain, with no change to it since; returns how many were new.
    ///
    /// # Errors
    /// A store failure.
    pub(crate) fn store_checked_headers(&mut self, headers: &[BlockHeader]) -> Result<usize, HeadersError> {
        let mut batch = Batch::new();
        let mut new = Vec::new();
        let mut added: HashMap<BlockHash, IndexRecord> = HashMap::new();
        for header in headers {
            let hash = header.block_hash();
            if self.index.contains_key(&hash) || added.contains_key(&hash) {
                continue;
            }
            let parent = match added.get(&header.prev_block) {
                Some(record) => *record,
                None => self.index[&header.prev_block].record,
            };
            let target =
                header.bits.to_target().map_err(|e| HeadersError::Invalid { index: 0, error: e.into() })?;
            let record = IndexRecord {
                height: parent.height.next(),
                chain_work: parent.chain_work + target.work(),
                flags: 0,
            };
            batch.put(Cf::Headers, hash.to_byte_array(), header.to_bytes());
            batch.put(Cf::Index, hash.to_byte_array(), record.to_bytes());
            added.insert(hash, record);
            new.push((hash, *header, record));
        }
        if new.is_empty() {
            return Ok(0);
        }
        self.store.write(batch)?;
        let count = new.len();
        for (hash, header, record) in new {
            let seq = self.take_seq();
            self.insert_entry(hash, Entry { header, record, seq });
        }
        Ok(count)
    }

    /// Whether a block's body is stored.
    #[must_use]
    pub fn has_body(&self, hash: &BlockHash) -> bool {
        self.index.get(hash).is_some_and(|e| e.record.flags & HAS_BODY != 0)
    }

    /// The blocks on the way from the active chain to the best header whose
    /// bodies are missing, lowest first, at most `limit`.
    #[must_use]
    pub fn missing_bodies(&self, limit: usize) -> Vec<BlockHash> {
        let best = self.best_header();
        let mut path = Vec::new();
        let mut hash = best.hash;
        while !self.is_active(&hash) {
            let Some(entry) = self.index.get(&hash) else { break };
            path.push((hash, entry.record.flags & HAS_BODY != 0));
            hash = entry.header.prev_block;
        }
        path.into_iter().rev().filter(|(_, has)| !has).map(|(h, _)| h).take(limit).collect()
    }
}
