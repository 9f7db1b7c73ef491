//! The node's shared state: the chain and the mempool behind one lock,
//! the signature verifier, the signal that tells miners the tip moved, and
//! the announcements the network layer gossips (blocks this node mined or
//! was handed over RPC, transactions it was handed over RPC).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_consensus::{Block, BlockError, BlockHash, Lock, Params, Transaction, Txid, MAX_BLOCK_SIZE};

use crate::chain::{Accepted, Chain, ChainError, ParallelVerifier, Reorganization, Submitted, TipSummary};
use crate::mempool::{Mempool, MempoolError, DEFAULT_MAX_SIZE};
use crate::store::{Halting, Store};
use crate::template::{new_block, COINBASE_RESERVE};

/// The Unix time now, in seconds.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Chain and mempool, changed together.
#[derive(Debug)]
pub struct State {
    /// The chain.
    pub chain: Chain,
    /// The mempool.
    pub mempool: Mempool,
}

/// Something new this node should tell its peers about.
#[derive(Debug, Clone)]
pub enum Announcement {
    /// A block that became part of the active chain.
    Block(Arc<Block>),
    /// A transaction accepted into the mempool.
    Transaction(Arc<Transaction>),
}

/// Where the chain stands, readable without waiting for the state lock
/// (which a connecting block holds for its whole connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The active tip.
    pub tip: TipSummary,
    /// The valid header with the most work, body or not.
    pub best_header: TipSummary,
    /// A locator of the best header's chain, for asking peers for more.
    pub locator: Arc<[cairn_consensus::BlockHash]>,
}

impl ChainSummary {
    fn of(chain: &Chain) -> Self {
        let best_header = chain.best_header();
        Self { tip: chain.tip_summary(), best_header, locator: chain.locator(&best_header.hash).into() }
    }

    /// Brings the summary up to date with `chain` (the locator only when
    /// the best header moved).
    fn refresh(&mut self, chain: &Chain) {
        self.tip = chain.tip_summary();
        let best_header = chain.best_header();
        if best_header.hash != self.best_header.hash {
            self.locator = chain.locator(&best_header.hash).into();
        }
        self.best_header = best_header;
    }
}

/// The locked state; unlocking it refreshes the node's [`ChainSummary`].
#[derive(Debug)]
pub struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    summary: &'a Mutex<ChainSummary>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        // A poisoned summary lock still holds plain data.
        self.summary.lock().unwrap_or_else(std::sync::PoisonError::into_inner).refresh(&self.guard.chain);
    }
}

/// Announcements queued for the network layer, at most.
const ANNOUNCEMENT_QUEUE: usize = 1_024;

/// A running node's state.
#[derive(Debug)]
pub struct Node {
    state: Mutex<State>,
    summary: Mutex<ChainSummary>,
    verifier: ParallelVerifier,
    datadir: PathBuf,
    /// Raised when the tip changes; miners working on the old tip stop.
    stale: Mutex<Arc<AtomicBool>>,
    /// Set when the node should shut down.
    pub shutdown: AtomicBool,
    /// Hashes per second of the built-in miner, as the last round measured.
    pub hash_rate: AtomicU64,
    /// Blocks the built-in miner found.
    pub blocks_mined: AtomicU64,
    announcements: tokio::sync::broadcast::Sender<Announcement>,
    network: OnceLock<crate::p2p::NetworkHandle>,
    /// Why the node stopped itself, once a fatal error stopped it.
    fatal: OnceLock<String>,
    /// Raised with `fatal`: the store then refuses every write.
    halted: Arc<AtomicBool>,
    /// The chain's store and parameters, readable without the state lock.
    store: Arc<dyn Store>,
    params: Params,
}

impl Node {
    /// Opens the chain in `store`.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn open(store: Arc<dyn Store>, params: Params, datadir: &Path) -> Result<Self, ChainError> {
        let halted = Arc::new(AtomicBool::new(false));
        let store: Arc<dyn Store> = Arc::new(Halting::new(store, Arc::clone(&halted)));
        let chain = Chain::open(Arc::clone(&store), params.clone())?;
        // What the mempool verifies, block connection need not verify again.
        let verifier = ParallelVerifier::new(Arc::clone(chain.signature_cache()), true);
        Ok(Self {
            summary: Mutex::new(ChainSummary::of(&chain)),
            state: Mutex::new(State { chain, mempool: Mempool::new(DEFAULT_MAX_SIZE) }),
            verifier,
            datadir: datadir.to_path_buf(),
            stale: Mutex::new(Arc::new(AtomicBool::new(false))),
            shutdown: AtomicBool::new(false),
            hash_rate: AtomicU64::new(0),
            blocks_mined: AtomicU64::new(0),
            announcements: tokio::sync::broadcast::channel(ANNOUNCEMENT_QUEUE).0,
            network: OnceLock::new(),
            fatal: OnceLock::new(),
            halted,
            store,
            params,
        })
    }

    /// Announcements from now on (the network layer listens).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Announcement> {
        self.announcements.subscribe()
    }

    /// The network layer, once it runs.
    #[must_use]
    pub fn network(&self) -> Option<&crate::p2p::NetworkHandle> {
        self.network.get()
    }

    /// Records the running network layer (once).
    pub fn set_network(&self, handle: crate::p2p::NetworkHandle) {
        let _ = self.network.set(handle);
    }

    /// The chain store, for reads that need no consistent view of the
    /// chain (the address index scans): without waiting for the state
    /// lock, which a connecting block holds.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The network's parameters, without the state lock.
    #[must_use]
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The data directory.
    #[must_use]
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// Locks the state. A lock poisoned by a panic stops the node (see
    /// [`Node::fail`]) and is still handed out, so that the stop can read
    /// it: the store refuses every write from then on, so nothing a panic
    /// left half changed in memory reaches the disk.
    pub fn state(&self) -> StateGuard<'_> {
        let guard = self.state.lock().unwrap_or_else(|poisoned| {
            self.fail_on_poison();
            poisoned.into_inner()
        });
        StateGuard { guard, summary: &self.summary }
    }

    /// Locks the state if no one else holds it (a poisoned lock as in
    /// [`Node::state`]).
    pub fn try_state(&self) -> Option<StateGuard<'_>> {
        match self.state.try_lock() {
            Ok(guard) => Some(StateGuard { guard, summary: &self.summary }),
            Err(std::sync::TryLockError::WouldBlock) => None,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                self.fail_on_poison();
                Some(StateGuard { guard: poisoned.into_inner(), summary: &self.summary })
            }
        }
    }

    /// The stale flag's lock (plain data: a panic while it was held
    /// leaves nothing half changed).
    fn stale(&self) -> MutexGuard<'_, Arc<AtomicBool>> {
        self.stale.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail_on_poison(&self) {
        self.fail("a thread panicked while it held the node's state".to_owned());
    }

    /// Where the chain stood when the state was last unlocked, without
    /// waiting for the state lock.
    #[must_use]
    pub fn summary(&self) -> ChainSummary {
        self.summary.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The verifier that checks signatures on all cores.
    #[must_use]
    pub fn verifier(&self) -> &ParallelVerifier {
        &self.verifier
    }

    /// Asks every part of the node to stop: RPC waiters, miners (whose
    /// work is made stale) and the main loop.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.stale().store(true, Ordering::Release);
    }

    /// Stops the node because its storage failed while the chain was
    /// changing (Bitcoin Core's `AbortNode`): logs what failed and what to
    /// do, records the reason (the process exits non-zero with it) and
    /// asks every part of the node to stop. What is on disk is consistent:
    /// every change of the chain is one atomic batch and memory follows
    /// only written batches, so a restart (once the disk is writable
    /// again) goes on from the last batch written.
    pub fn abort(&self, what: &str, error: &dyn std::fmt::Display) {
        self.fail(format!(
            "storage failure while {what}: {error}. The node stopped to keep its chain store \
             consistent. Check the disk (free space, errors in the system log), then start the \
             node again: it goes on from the last block it wrote."
        ));
        self.request_shutdown();
    }

    /// Stops the node for a fatal error (the first one is kept and logged;
    /// the process exits non-zero with it): the store refuses every write
    /// from now on and the main loop stops the rest. Takes no lock, so a
    /// panic hook can call it from a thread holding any of them.
    pub fn fail(&self, reason: String) {
        self.halted.store(true, Ordering::Release);
        if self.fatal.set(reason).is_ok() {
            tracing::error!("{}", self.fatal.get().map_or("", String::as_str));
        }
        self.shutdown.store(true, Ordering::Release);
    }

    /// Why the node stopped itself, if it did (see [`Node::abort`]).
    #[must_use]
    pub fn fatal_error(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    /// The flag that goes up when the present tip is replaced.
    #[must_use]
    pub fn stale_flag(&self) -> Arc<AtomicBool> {
        self.stale().clone()
    }

    /// Validates and stores a block found here or handed over RPC, and
    /// announces it to peers when it joins the active chain.
    ///
    /// # Errors
    /// The rule the block breaks, or a store failure.
    pub fn submit_block(&self, block: Block) -> Result<Accepted, ChainError> {
        let block = Arc::new(block);
        let hash = block.block_hash();
        // Announced the moment it is found valid on its way into the
        // active chain, while its connection is written.
        let mut announce = |valid: BlockHash| {
            if valid == hash {
                let _ = self.announcements.send(Announcement::Block(Arc::clone(&block)));
            }
        };
        self.accept_block_reporting((*block).clone(), &mut announce)
    }

    /// Validates and stores a block (nothing is announced); on a tip
    /// change, updates the mempool (confirmed and conflicting transactions
    /// out, those of disconnected blocks back in) and tells miners their
    /// work is stale. Calls `on_valid` with each block found valid before
    /// its connection is written (see [`Node::accept_blocks_reporting`]),
    /// so that a relayed block can be forwarded sooner.
    ///
    /// # Errors
    /// The rule the block breaks, or a store failure.
    pub fn accept_block_reporting(
        &self,
        block: Block,
        on_valid: &mut dyn FnMut(BlockHash),
    ) -> Result<Accepted, ChainError> {
        match self.accept_blocks_reporting(vec![block], on_valid).pop() {
            Some((_, result)) => result,
            None => unreachable!("one result per block"),
        }
    }

    /// Accepts a run of blocks from a peer (parents before children) under
    /// one hold of the state lock, connecting them together (see
    /// [`Chain::submit_blocks`]); returns what came of each, in order.
    pub fn accept_blocks(&self, blocks: Vec<Block>) -> Vec<Submitted> {
        self.accept_blocks_reporting(blocks, &mut |_| {})
    }

    /// [`Node::accept_blocks`], calling `on_valid` with each block found
    /// valid before its connection is written (see
    /// [`Chain::submit_blocks_reporting`]), so that it can be relayed sooner.
    pub fn accept_blocks_reporting(
        &self,
        blocks: Vec<Block>,
        on_valid: &mut dyn FnMut(BlockHash),
    ) -> Vec<Submitted> {
        let mut state = self.state();
        if self.fatal.get().is_some() {
            // The node is stopping after a storage failure: nothing more goes in.
            return blocks.iter().map(|block| (block.block_hash(), Err(ChainError::Stopped))).collect();
        }
        let now = unix_now();
        let (results, reorg) = state.chain.submit_blocks_reporting(blocks, now, on_valid);
        self.follow_reorganization(&mut state, &reorg, now);
        drop(state);
        for (hash, result) in &results {
            match result {
                Err(ChainError::Store(error)) => self.abort(&format!("storing block {hash}"), error),
                Err(ChainError::StoredUnconnected(error)) => {
                    self.abort(&format!("changing the chain to block {hash}"), error);
                }
                _ => {}
            }
        }
        results
    }

    /// After a change of the active chain: confirmed and conflicting
    /// transactions leave the mempool, those of disconnected blocks come
    /// back, and miners hear that their work is stale.
    fn follow_reorganization(&self, state: &mut StateGuard<'_>, reorg: &Reorganization, now: u64) {
        if reorg.connected.is_empty() && reorg.disconnected.is_empty() {
            return;
        }
        let State { chain, mempool } = &mut **state;
        for block in &reorg.connected {
            mempool.remove_for_block(block);
        }
        for block in reorg.disconnected.iter().rev() {
            for tx in block.transactions.iter().skip(1) {
                let _ = mempool.accept_disconnected(tx.clone(), chain, &self.verifier, now);
            }
        }
        if !reorg.disconnected.is_empty() {
            // Pool transactions that spent the outputs of a transaction that
            // did not come back, a disconnected coinbase, or that are not
            // final or mature at the new height, leave with their descendants.
            let removed = mempool.remove_for_reorg(chain);
            if !removed.is_empty() {
                tracing::info!(
                    "reorganization: {} mempool transaction(s) no longer valid on the new tip removed",
                    removed.len()
                );
            }
        }
        let mut stale = self.stale();
        stale.store(true, Ordering::Release);
        *stale = Arc::new(AtomicBool::new(false));
    }

    /// Checks a transaction handed over RPC, adds it to the mempool and
    /// announces it to peers.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn submit_transaction(&self, tx: Transaction) -> Result<Txid, MempoolError> {
        let tx = Arc::new(tx);
        let txid = self.accept_transaction((*tx).clone())?;
        let _ = self.announcements.send(Announcement::Transaction(tx));
        Ok(txid)
    }

    /// Checks a transaction (from a peer: nothing is announced) and adds it
    /// to the mempool.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn accept_transaction(&self, tx: Transaction) -> Result<Txid, MempoolError> {
        let mut state = self.state();
        let State { chain, mempool } = &mut *state;
        let accepted = mempool.accept(tx, chain, &self.verifier, unix_now())?;
        Ok(accepted[0])
    }

    /// A block template on the tip paying `lock`, with the highest fee
    /// rates the mempool has; and the flag that goes up when it is stale.
    ///
    /// Every template is checked as a block (all but its proof of work)
    /// before it is handed out. One that fails is a bug: it is logged
    /// loudly, the transaction it names leaves the mempool with its
    /// descendants (every pool transaction when it names none), and the
    /// template is built again.
    #[must_use]
    pub fn template(&self, lock: &Lock) -> (Block, Arc<AtomicBool>) {
        let mut state = self.state();
        if self.shutdown.load(Ordering::Acquire) {
            self.stale().store(true, Ordering::Release);
        }
        let now = unix_now();
        loop {
            let (txs, fees) = state.mempool.select(MAX_BLOCK_SIZE - COINBASE_RESERVE);
            let block = new_block(&state.chain, lock, txs, fees, now);
            let error = match state.chain.check_template(&block, now) {
                Ok(()) => return (block, self.stale_flag()),
                Err(error) => error,
            };
            let State { chain, mempool } = &mut *state;
            let culprit = match &error {
                ChainError::Block(BlockError::Transaction { txid, .. }) => Some(*txid),
                _ => None,
            };
            tracing::error!(
                "BUG: the block template at height {} does not connect ({error}); removing {} from \
                 the mempool and building it again",
                chain.height().next(),
                culprit.map_or_else(|| "every transaction".to_owned(), |txid| format!("transaction {txid}"))
            );
            if block.transactions.len() == 1 {
                // Nothing left to remove: hand it out, the node will say why
                // it refuses it.
                return (block, self.stale_flag());
            }
            match culprit {
                Some(txid) => mempool.remove_with_descendants(txid),
                None => mempool.clear(),
            }
        }
    }
}
