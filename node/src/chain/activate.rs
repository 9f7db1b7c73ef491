//! Choosing the most-work chain: connecting blocks (each one store batch,
//! written on a thread of its own while the next is checked) and
//! disconnecting them through their undo data.

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use cairn_consensus::chain::median_time_past;
use cairn_consensus::check::{connect_block_unverified, BlockChanges, BlockContext, Coin, UtxoView};
use cairn_consensus::{Block, BlockError, BlockHash, Height, OutPoint};

use super::{address::touched_locks, Chain, ChainError, Reorganization, META_TIP, PARALLEL_TRANSACTIONS};
use crate::records::{
    address_coin_key, address_history_key, coin_bytes, coin_from_bytes, decode_undo, encode_undo,
    outpoint_key,
};
use crate::store::{Batch, Cf, Store, StoreError};

/// The coins of a block whose connection is being written: seen before
/// the store, which may or may not hold them yet.
#[derive(Debug, Default)]
pub(super) struct Unwritten {
    spent: HashSet<OutPoint>,
    created: HashMap<OutPoint, Coin>,
}

impl Unwritten {
    fn new(changes: BlockChanges) -> Self {
        Self {
            spent: changes.spent.into_iter().map(|(outpoint, _)| outpoint).collect(),
            created: changes.created.into_iter().collect(),
        }
    }
}

/// The UTXO set in the store (after the block being written, if any),
/// remembering a read failure so that it is not mistaken for a missing coin.
struct StoreView<'a> {
    store: &'a dyn Store,
    unwritten: Option<&'a Unwritten>,
    failure: Mutex<Option<StoreError>>,
}

impl<'a> StoreView<'a> {
    fn new(store: &'a dyn Store, unwritten: Option<&'a Unwritten>) -> Self {
        Self { store, unwritten, failure: Mutex::new(None) }
    }

    fn fail(&self, error: StoreError) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    fn into_failure(self) -> Option<StoreError> {
        self.failure.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

impl UtxoView for StoreView<'_> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        if let Some(unwritten) = self.unwritten {
            if unwritten.spent.contains(outpoint) {
                return None;
            }
            if let Some(coin) = unwritten.created.get(outpoint) {
                return Some(coin.clone());
            }
        }
        match self.store.get(Cf::Utxo, &outpoint_key(outpoint)) {
            Ok(Some(bytes)) => match coin_from_bytes(&bytes) {
                Ok(coin) => Some(coin),
                Err(_) => {
                    self.fail(StoreError::Corrupt("coin"));
                    None
                }
            },
            Ok(None) => None,
            Err(error) => {
                self.fail(error);
                None
            }
        }
    }
}

/// Writes connection batches on a thread of its own, one at a time, so
/// that the checks of a block overlap the write of the block before it.
struct Writer {
    batches: Option<mpsc::SyncSender<Batch>>,
    results: mpsc::Receiver<Result<(), StoreError>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// `None` when the thread cannot be started (the caller writes itself).
    fn start(store: Arc<dyn Store>) -> Option<Self> {
        let (batches, to_write) = mpsc::sync_channel::<Batch>(1);
        let (written, results) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("cairn-write".into())
            .spawn(move || {
                for batch in to_write {
                    if written.send(store.write(batch)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Self { batches: Some(batches), results, thread: Some(thread) })
    }

    /// Starts writing `batch`; gives it back when the thread is gone.
    fn send(&self, batch: Batch) -> Result<(), Batch> {
        match &self.batches {
            Some(batches) => batches.send(batch).map_err(|e| e.0),
            None => Err(batch),
        }
    }

    /// Waits for the batch sent last.
    fn wait(&self) -> Result<(), StoreError> {
        self.results.recv().unwrap_or(Err(StoreError::Corrupt("write thread stopped")))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A block whose connection is being written.
struct Writing {
    hash: BlockHash,
    block: Block,
    /// Its coins, for the checks of the next block while the write runs;
    /// `None` once written.
    unwritten: Option<Unwritten>,
}

impl Chain {
    /// Switches to the most-work valid branch, any depth, one block per
    /// store batch; a block that fails to connect is marked invalid with its
    /// descendants and the search goes on. What it disconnected and
    /// connected goes into `reorg`, also when a store failure stops it.
    ///
    /// `on_valid` hears of each block found valid before it is written.
    pub(super) fn activate_best_chain(
        &mut self,
        reorg: &mut Reorganization,
        on_valid: &mut dyn FnMut(BlockHash),
    ) -> Result<(), ChainError> {
        loop {
            let candidate = self.best_candidate();
            if candidate == self.tip() {
                return Ok(());
            }
            // The branch from the fork up to the candidate.
            let mut path = Vec::new();
            let mut hash = candidate;
            while !self.is_active(&hash) {
                path.push(hash);
                hash = self.index[&hash].header.prev_block;
            }
            path.reverse();
            let fork = hash;
            while self.tip() != fork {
                reorg.disconnected.push(self.disconnect_tip()?);
            }
            self.connect_path(&path, reorg, on_valid)?;
        }
    }

    /// Connects the blocks of `path` (the first a child of the tip) in
    /// order, until one fails: it is marked invalid with its descendants.
    /// While a block's connection is written on the writer thread, the next
    /// block is checked against the UTXO set as it will be after it; the tip
    /// moves only once the write is done. `on_valid` hears of each block
    /// that passed its checks, before its write starts.
    fn connect_path(
        &mut self,
        path: &[BlockHash],
        reorg: &mut Reorganization,
        on_valid: &mut dyn FnMut(BlockHash),
    ) -> Result<(), ChainError> {
        // Started at the first batch worth handing over: for a block of a
        // few transactions the hand-over costs more than the write.
        let mut writer: Option<Writer> = None;
        let mut writing: Option<Writing> = None;
        for (position, &hash) in path.iter().enumerate() {
            let block = self.take_block(&hash);
            let checked = block.and_then(|block| {
                let unwritten = writing.as_ref().and_then(|w| w.unwritten.as_ref());
                Ok(self.check_connection(hash, &block, unwritten)?.map(|connection| (block, connection)))
            });
            if let Some(done) = writing.take() {
                self.finish_connection(done, writer.as_ref(), reorg)?;
            }
            match checked? {
                Ok((block, (batch, changes))) => {
                    on_valid(hash);
                    crate::failpoint::hit("connect-block");
                    // The last block's write overlaps nothing.
                    let hand_over =
                        position + 1 < path.len() && block.transactions.len() >= PARALLEL_TRANSACTIONS;
                    if hand_over && writer.is_none() {
                        writer = Writer::start(Arc::clone(&self.store));
                    }
                    let sent = match &writer {
                        Some(writer) if hand_over => writer.send(batch),
                        _ => Err(batch),
                    };
                    let unwritten = match sent {
                        Ok(()) => Some(Unwritten::new(changes)),
                        Err(batch) => {
                            self.store.write(batch)?;
                            None
                        }
                    };
                    writing = Some(Writing { hash, block, unwritten });
                }
                Err(error) => {
                    self.mark_invalid(hash)?;
                    self.last_failure = Some((hash, error));
                    return Ok(());
                }
            }
        }
        if let Some(done) = writing.take() {
            self.finish_connection(done, writer.as_ref(), reorg)?;
        }
        Ok(())
    }

    /// Waits for the write of `done` when the writer thread has it, then
    /// moves the tip onto it.
    fn finish_connection(
        &mut self,
        done: Writing,
        writer: Option<&Writer>,
        reorg: &mut Reorganization,
    ) -> Result<(), ChainError> {
        if done.unwritten.is_some() {
            writer.map_or(Ok(()), Writer::wait)?;
        }
        self.active.push(done.hash);
        reorg.connected.push(done.block);
        Ok(())
    }

    /// The stored block `hash`, from the blocks being submitted or the store.
    fn take_block(&mut self, hash: &BlockHash) -> Result<Block, ChainError> {
        match self.just_stored.remove(hash) {
            Some(block) => Ok(block),
            None => Ok(self.block(hash)?.ok_or(StoreError::Corrupt("missing body"))?),
        }
    }

    /// Checks the stored block `hash` against the UTXO set after its parent
    /// (the tip, or the block whose connection is being written with
    /// `unwritten` as its coins): the batch that connects it, and its changes.
    ///
    /// The coins it spends are read first; then its signatures are verified
    /// on all cores while the ordered pass checks every other rule and
    /// builds the batch.
    pub(super) fn check_connection(
        &self,
        hash: BlockHash,
        block: &Block,
        unwritten: Option<&Unwritten>,
    ) -> Result<Result<(Batch, BlockChanges), BlockError>, ChainError> {
        let parent = &self.index[&block.header.prev_block];
        let height = parent.record.height.next();
        let median_time = median_time_past(&self.branch(block.header.prev_block), parent.record.height)?;
        let context = BlockContext { height, median_time };
        let created = crate::prepare::created_coins(block, height);
        let view = StoreView::new(self.store.as_ref(), unwritten);
        let coins = crate::prepare::read_coins(block, &created, &view);
        let (params, verifier) = (&self.params, &self.verifier);
        let verify = || crate::prepare::verify_signatures(block, &coins, &created, context, params, verifier);
        let ordered = || {
            let view = crate::prepare::PreparedView { coins: &coins, fallback: &view };
            connect_block_unverified(block, context, &view, params).map(|unverified| {
                let batch = connection_batch(hash, height, block, &unverified.changes);
                (unverified, batch)
            })
        };
        // A handful of transactions stays on this thread.
        let (verified, ordered) = if block.transactions.len() < PARALLEL_TRANSACTIONS {
            (verify(), ordered())
        } else {
            rayon::join(verify, ordered)
        };
        if let Some(error) = view.into_failure() {
            return Err(error.into());
        }
        let (unverified, batch) = match ordered {
            Ok(ordered) => ordered,
            Err(error) => return Ok(Err(error)),
        };
        let verifier = crate::prepare::PreparedVerifier { verified: &verified, inner: &self.verifier };
        Ok(unverified.verify(block, &verifier).map(|changes| (batch, changes)))
    }

    /// Disconnects the tip through its undo data and returns it.
    fn disconnect_tip(&mut self) -> Result<Block, ChainError> {
        let hash = self.tip();
        let height = self.height();
        assert!(height > Height::GENESIS, "genesis is never disconnected");
        let block = self.block(&hash)?.ok_or(StoreError::Corrupt("missing body"))?;
        let undo =
            self.store.get(Cf::Undo, &hash.to_byte_array())?.ok_or(StoreError::Corrupt("missing undo"))?;
        let spent = decode_undo(&undo).map_err(|_| StoreError::Corrupt("undo"))?;
        // Every output, also those the block spent itself (their removal
        // is a no-op): the block's changes were not kept.
        let created: Vec<(OutPoint, Coin)> =
            crate::prepare::created_coins(&block, height).into_iter().collect();
        let mut batch = Batch::new();
        coin_changes(&mut batch, Direction::Disconnect, &block, height, &spent, &created);
        // The undo data stays: the block may be connected again.
        batch.put(Cf::Meta, META_TIP, block.header.prev_block.to_byte_array());
        self.store.write(batch)?;
        self.active.pop();
        Ok(block)
    }
}

/// The store changes that connect `block` (`hash`, at `height`) with `changes`:
/// the coins, the address index, the undo data and the tip, in one batch.
fn connection_batch(hash: BlockHash, height: Height, block: &Block, changes: &BlockChanges) -> Batch {
    let mut batch = Batch::new();
    coin_changes(&mut batch, Direction::Connect, block, height, &changes.spent, &changes.created);
    batch.put(Cf::Undo, hash.to_byte_array(), encode_undo(&changes.spent));
    batch.put(Cf::Meta, META_TIP, hash.to_byte_array());
    batch
}

/// Which way a block moves the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Connect,
    Disconnect,
}

/// The UTXO set and address index changes that move the chain across
/// `block` (at `height`), either way: connecting removes the coins it
/// spends (`spent`) from both and adds the coins it creates (`created`) to
/// both, and writes its history entries; disconnecting does the exact
/// reverse. One function for both, so that a disconnection can never miss
/// a key its connection wrote.
fn coin_changes(
    batch: &mut Batch,
    direction: Direction,
    block: &Block,
    height: Height,
    spent: &[(OutPoint, Coin)],
    created: &[(OutPoint, Coin)],
) {
    let (removed, added) = match direction {
        Direction::Connect => (spent, created),
        Direction::Disconnect => (created, spent),
    };
    for (outpoint, coin) in removed {
        batch.delete(Cf::Utxo, outpoint_key(outpoint));
        batch.delete(Cf::Address, address_coin_key(&coin.output.lock, outpoint));
    }
    for (outpoint, coin) in added {
        let bytes = coin_bytes(coin);
        batch.put(Cf::Utxo, outpoint_key(outpoint), &bytes);
        batch.put(Cf::Address, address_coin_key(&coin.output.lock, outpoint), &bytes);
    }
    for (lock, txid) in touched_locks(block, spent) {
        let key = address_history_key(lock, height, &txid);
        match direction {
            Direction::Connect => batch.put(Cf::Address, key, []),
            Direction::Disconnect => batch.delete(Cf::Address, key),
        }
    }
}
