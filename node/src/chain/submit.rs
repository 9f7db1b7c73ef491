//! A submitted block: its checks, its storage, then one switch to the
//! most-work chain for a whole run.

use std::collections::HashSet;

use cairn_consensus::chain::{check_header, check_header_contextual};
use cairn_consensus::check::{check_block_body_with, check_block_with};
use cairn_consensus::{Block, BlockError, BlockHash, Encode, HeaderError};
use rayon::prelude::*;

use super::{Accepted, Chain, ChainError, Entry, Reorganization, Submitted, PARALLEL_TRANSACTIONS};
use crate::records::{IndexRecord, HAS_BODY, INVALID};
use crate::store::{Batch, Cf};

impl Chain {
    /// Validates `block` and stores it; switches to the branch with the
    /// most work if that changed. `now` is the node's clock in Unix seconds.
    ///
    /// # Errors
    /// The rule the block breaks (when it breaks a rule its header commits
    /// to, it is remembered as invalid with its descendants), or a store
    /// failure.
    pub fn submit_block(&mut self, block: Block, now: u64) -> Result<(Accepted, Reorganization), ChainError> {
        let (mut results, reorg) = self.submit_blocks(vec![block], now);
        match results.pop() {
            Some((_, result)) => result.map(|accepted| (accepted, reorg)),
            None => unreachable!("one result per block"),
        }
    }

    /// [`Chain::submit_block`] for a run of blocks (parents before
    /// children), switching branches once after storing them all: the
    /// checks of each block connected then overlap the write of the block
    /// before it. Returns what came of each block, in order, and the change
    /// of the active chain.
    pub fn submit_blocks(&mut self, blocks: Vec<Block>, now: u64) -> (Vec<Submitted>, Reorganization) {
        self.submit_blocks_reporting(blocks, now, &mut |_| {})
    }

    /// [`Chain::submit_blocks`], calling `on_valid` with each block that
    /// passed every check as it is about to be connected, before its
    /// connection is written: the moment it may be relayed, while the write
    /// (most of a block's time once its signatures are cached) goes on.
    pub fn submit_blocks_reporting(
        &mut self,
        blocks: Vec<Block>,
        now: u64,
        on_valid: &mut dyn FnMut(BlockHash),
    ) -> (Vec<Submitted>, Reorganization) {
        let hashes: Vec<BlockHash> = blocks.iter().map(Block::block_hash).collect();
        // A run's context-free body checks (merkle root, output keys) run on
        // all cores at once, a block each, instead of one block after the
        // other; blocks already stored or known invalid are skipped. A run
        // of nearly empty blocks stays on this thread: waking the pool for
        // it costs more than it saves.
        let transactions: usize = blocks.iter().map(|block| block.transactions.len()).sum();
        let body_checks: Vec<Option<Result<(), BlockError>>> = if blocks.len() > 1
            && transactions >= 4 * PARALLEL_TRANSACTIONS
        {
            let (index, params, verifier) = (&self.index, &self.params, &self.verifier);
            blocks
                .par_iter()
                .zip(&hashes)
                .map(|(block, hash)| {
                    let known = index.get(hash).is_some_and(|e| e.record.flags & (HAS_BODY | INVALID) != 0);
                    (!known).then(|| check_block_with(block, params, verifier))
                })
                .collect()
        } else {
            vec![None; blocks.len()]
        };
        let mut results = Vec::with_capacity(blocks.len());
        let mut stored = Vec::new();
        for ((block, hash), body_check) in blocks.into_iter().zip(hashes).zip(body_checks) {
            let result = self.store_block(hash, block, body_check, now);
            if matches!(result, Ok(None)) {
                stored.push(results.len());
            }
            results.push((hash, result.map(|done| done.unwrap_or(Accepted::SideBranch))));
        }
        if stored.is_empty() {
            return (results, Reorganization::default());
        }
        self.last_failure = None;
        // A store failure part way leaves the chain at the last block
        // written: `reorg` says what changed up to there.
        let mut reorg = Reorganization::default();
        let activated = self.activate_best_chain(&mut reorg, on_valid);
        self.just_stored.clear();
        let connected: HashSet<BlockHash> = reorg.connected.iter().map(Block::block_hash).collect();
        let failure = self.last_failure.take();
        for &i in &stored {
            let hash = results[i].0;
            results[i].1 = if self.index[&hash].record.flags & INVALID != 0 {
                // Connecting it, or an ancestor stored with it, failed.
                Err(match &failure {
                    Some((failed, error)) if *failed == hash => ChainError::Block(error.clone()),
                    Some(_) => ChainError::InvalidAncestor(hash),
                    None => ChainError::KnownInvalid(hash),
                })
            } else if connected.contains(&hash) {
                Ok(Accepted::Activated)
            } else if let Err(error) = &activated {
                // Stored; it connects at the next switch (or the next start).
                Err(match error {
                    ChainError::Store(error) => ChainError::StoredUnconnected(error.clone()),
                    other => other.clone(),
                })
            } else {
                Ok(Accepted::SideBranch)
            };
        }
        if activated.is_ok() {
            for &i in &stored {
                if results[i].1.is_ok() {
                    self.adopt_orphans(results[i].0, now, &mut reorg);
                }
            }
        }
        (results, reorg)
    }

    /// Checks `block` and stores it with its index entry, without
    /// connecting it: `Some` when it was not stored (already stored, or an
    /// orphan).
    /// `body_check` is [`check_block_with`]'s answer when it was already
    /// asked (it is asked here otherwise).
    fn store_block(
        &mut self,
        hash: BlockHash,
        block: Block,
        body_check: Option<Result<(), BlockError>>,
        now: u64,
    ) -> Result<Option<Accepted>, ChainError> {
        if let Some(entry) = self.index.get(&hash) {
            if entry.record.flags & INVALID != 0 {
                return Err(ChainError::KnownInvalid(hash));
            }
            if entry.record.flags & HAS_BODY != 0 {
                return Ok(Some(Accepted::Duplicate));
            }
        }
        // A header already in the index (sent ahead of its body) passed
        // every header check when it was stored; the clock only moved on.
        let header_known = self.index.contains_key(&hash);
        if !header_known {
            check_header(&block.header, &self.params)?;
        }
        let Some(parent) = self.index.get(&block.header.prev_block) else {
            self.add_orphan(hash, block);
            return Ok(Some(Accepted::Orphan));
        };
        if parent.record.flags & INVALID != 0 {
            self.store_invalid(&block.header, None)?;
            return Err(ChainError::InvalidAncestor(hash));
        }
        let parent_record = parent.record;
        if !header_known {
            let ancestry = self.branch(block.header.prev_block);
            if let Err(error) =
                check_header_contextual(&block.header, &self.params, &ancestry, parent_record.height, now)
            {
                if error.is_permanent() {
                    self.store_invalid(&block.header, Some(parent_record))?;
                }
                return Err(error.into());
            }
        }
        let body_check = body_check.unwrap_or_else(|| check_block_with(&block, &self.params, &self.verifier));
        if let Err(error) = body_check {
            if error.marks_invalid() {
                self.store_invalid(&block.header, Some(parent_record))?;
            }
            return Err(error.into());
        }
        let target = block.header.bits.to_target().map_err(HeaderError::from)?;
        let record = IndexRecord {
            height: parent_record.height.next(),
            chain_work: parent_record.chain_work + target.work(),
            flags: HAS_BODY,
        };
        let mut batch = Batch::new();
        batch.put(Cf::Headers, hash.to_byte_array(), block.header.to_bytes());
        batch.put(Cf::Bodies, hash.to_byte_array(), block.encode());
        batch.put(Cf::Index, hash.to_byte_array(), record.to_bytes());
        self.store.write(batch)?;
        // A header stored first keeps its place in arrival order.
        let seq = match self.index.get(&hash) {
            Some(entry) => entry.seq,
            None => self.take_seq(),
        };
        self.insert_entry(hash, Entry { header: block.header, record, seq });
        self.just_stored.insert(hash, block);
        Ok(None)
    }

    /// Submits the orphans waiting for `hash`, adding what they change to `reorg`.
    fn adopt_orphans(&mut self, hash: BlockHash, now: u64, reorg: &mut Reorganization) {
        let waiting: Vec<BlockHash> =
            self.orphans.iter().filter(|(_, b)| b.header.prev_block == hash).map(|(h, _)| *h).collect();
        for orphan_hash in waiting {
            if let Some(orphan) = self.remove_orphan(&orphan_hash) {
                if let Ok((_, more)) = self.submit_block(orphan, now) {
                    reorg.disconnected.extend(more.disconnected);
                    reorg.connected.extend(more.connected);
                }
            }
        }
    }

    /// Checks a block template on the tip as if it were submitted, but
    /// for its proof of work, without storing anything (Bitcoin Core's
    /// `TestBlockValidity`): the header's bits and time in context, every
    /// rule of the body, and its connection to the UTXO set with every
    /// signature (through the signature cache).
    ///
    /// # Errors
    /// The first rule the template breaks, or a store failure.
    pub fn check_template(&self, block: &Block, now: u64) -> Result<(), ChainError> {
        if block.header.prev_block != self.tip() {
            return Err(ChainError::NotOnTip(block.header.prev_block));
        }
        check_header_contextual(&block.header, &self.params, &self.active_ancestry(), self.height(), now)?;
        check_block_body_with(block, &self.verifier)?;
        match self.check_connection(block.block_hash(), block, None)? {
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
