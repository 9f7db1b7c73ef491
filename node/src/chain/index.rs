//! The block index: entries and their rankings as candidates, blocks
//! known invalid, and the orphan pool.

use cairn_consensus::{Block, BlockHash, BlockHeader, Height, Work};

use super::{rank, Chain, ChainError, Entry, MAX_ORPHAN_BLOCKS};
use crate::records::{IndexRecord, HAS_BODY, INVALID};
use crate::store::{Batch, Cf};

impl Chain {
    /// Adds or replaces an index entry, keeping the rankings in step.
    pub(super) fn insert_entry(&mut self, hash: BlockHash, entry: Entry) {
        if let Some(old) = self.index.get(&hash) {
            let old = rank(&hash, old);
            self.ranked_headers.remove(&old);
            self.ranked_bodies.remove(&old);
        }
        if entry.record.flags & INVALID == 0 {
            self.ranked_headers.insert(rank(&hash, &entry));
        }
        self.index.insert(hash, entry);
        self.link(hash);
    }

    /// Whether `hash` is a valid block whose body and ancestors' bodies are all stored.
    fn is_linked(&self, hash: &BlockHash) -> bool {
        self.index.get(hash).is_some_and(|entry| self.ranked_bodies.contains(&rank(hash, entry)))
    }

    /// Ranks the valid stored body `hash` as a candidate once its parent is
    /// linked, and with it every body that waited for it; until then it
    /// waits for its parent. Linear in the blocks it links, whatever order
    /// bodies arrive in.
    fn link(&mut self, hash: BlockHash) {
        let usable = |entry: &Entry| entry.record.flags & (HAS_BODY | INVALID) == HAS_BODY;
        let Some(entry) = self.index.get(&hash).filter(|e| usable(e)) else { return };
        let parent = entry.header.prev_block;
        if entry.record.height != Height::GENESIS && !self.is_linked(&parent) {
            self.unlinked.entry(parent).or_default().push(hash);
            return;
        }
        let mut ready = vec![hash];
        while let Some(hash) = ready.pop() {
            let Some(entry) = self.index.get(&hash).filter(|e| usable(e)) else { continue };
            self.ranked_bodies.insert(rank(&hash, entry));
            if let Some(children) = self.unlinked.remove(&hash) {
                ready.extend(children);
            }
        }
    }

    /// Remembers a block as invalid (header only), so that it and its
    /// descendants are refused without being checked again.
    pub(super) fn store_invalid(
        &mut self,
        header: &BlockHeader,
        parent: Option<IndexRecord>,
    ) -> Result<(), ChainError> {
        let hash = header.block_hash();
        let (height, chain_work) =
            parent.map_or((Height::GENESIS, Work::ZERO), |p| (p.height.next(), p.chain_work));
        let record = IndexRecord { height, chain_work, flags: INVALID };
        let mut batch = Batch::new();
        batch.put(Cf::Headers, hash.to_byte_array(), header.to_bytes());
        batch.put(Cf::Index, hash.to_byte_array(), record.to_bytes());
        self.store.write(batch)?;
        let seq = self.take_seq();
        self.insert_entry(hash, Entry { header: *header, record, seq });
        Ok(())
    }

    /// Marks `hash` and every stored descendant invalid.
    pub(super) fn mark_invalid(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let mut marked = vec![hash];
        let mut batch = Batch::new();
        let mut frontier = vec![hash];
        while let Some(parent) = frontier.pop() {
            let children: Vec<BlockHash> =
                self.index.iter().filter(|(_, e)| e.header.prev_block == parent).map(|(h, _)| *h).collect();
            frontier.extend(&children);
            marked.extend(children);
        }
        for h in &marked {
            let entry = self.index.get(h).expect("marked blocks are indexed");
            let record = IndexRecord { flags: entry.record.flags | INVALID, ..entry.record };
            batch.put(Cf::Index, h.to_byte_array(), record.to_bytes());
        }
        self.store.write(batch)?;
        for h in marked {
            if let Some(entry) = self.index.get_mut(&h) {
                entry.record.flags |= INVALID;
                let ranked = rank(&h, entry);
                self.ranked_headers.remove(&ranked);
                self.ranked_bodies.remove(&ranked);
            }
        }
        Ok(())
    }

    /// The valid stored block with the most work whose ancestors all have
    /// their bodies (the first seen among equals; the tip among equals to it).
    pub(super) fn best_candidate(&self) -> BlockHash {
        let tip = self.tip();
        let tip_work = self.index[&tip].record.chain_work;
        match self.ranked_bodies.iter().next_back() {
            Some((work, _, hash)) if *work > tip_work => *hash,
            _ => tip,
        }
    }

    pub(super) fn add_orphan(&mut self, hash: BlockHash, block: Block) {
        if self.orphans.contains_key(&hash) {
            return;
        }
        while self.orphans.len() >= MAX_ORPHAN_BLOCKS {
            match self.orphan_order.pop_front() {
                Some(oldest) => {
                    self.orphans.remove(&oldest);
                }
                None => break,
            }
        }
        self.orphans.insert(hash, block);
        self.orphan_order.push_back(hash);
    }

    pub(super) fn remove_orphan(&mut self, hash: &BlockHash) -> Option<Block> {
        self.orphan_order.retain(|h| h != hash);
        self.orphans.remove(hash)
    }
}
