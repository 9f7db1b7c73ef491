//! The node's shared state: the chain and the mempool behind one lock,
//! the signature verifier, the signal that tells miners the tip moved, and
//! the announcements the network layer gossips (blocks this node mined or
//! was handed over RPC, transactions it was handed over RPC).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_consensus::{Block, BlockHash, Lock, Params, Transaction, Txid, MAX_BLOCK_SIZE};

use crate::chain::{Accepted, Chain, ChainError, ParallelVerifier, Reorganization, Submitted, TipSummary};
use crate::mempool::{Mempool, MempoolError, DEFAULT_MAX_SIZE};
use crate::store::Store;
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
}

impl Node {
    /// Opens the chain in `store`.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn open(store: Arc<dyn Store>, params: Params, datadir: &Path) -> Result<Self, ChainError> {
        let chain = Chain::open(store, params)?;
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

    /// The data directory.
    #[must_use]
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// Locks the state.
    ///
    /// # Panics
    /// When a thread panicked while holding the lock.
    pub fn state(&self) -> StateGuard<'_> {
        StateGuard { guard: self.state.lock().expect("node state lock"), summary: &self.summary }
    }

    /// Locks the state if no one else holds it.
    ///
    /// # Panics
    /// When a thread panicked while holding the lock.
    pub fn try_state(&self) -> Option<StateGuard<'_>> {
        match self.state.try_lock() {
            Ok(guard) => Some(StateGuard { guard, summary: &self.summary }),
            Err(std::sync::TryLockError::WouldBlock) => None,
            Err(std::sync::TryLockError::Poisoned(_)) => panic!("node state lock poisoned"),
        }
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
        self.stale.lock().expect("stale lock").store(true, Ordering::Release);
    }

    /// The flag that goes up when the present tip is replaced.
    #[must_use]
    pub fn stale_flag(&self) -> Arc<AtomicBool> {
        self.stale.lock().expect("stale lock").clone()
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
        let now = unix_now();
        let (results, reorg) = state.chain.submit_blocks_reporting(blocks, now, on_valid);
        self.follow_reorganization(&mut state, &reorg, now);
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
                let _ = mempool.accept(tx.clone(), chain, &self.verifier, now);
            }
        }
        let mut stale = self.stale.lock().expect("stale lock");
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
    #[must_use]
    pub fn template(&self, lock: &Lock) -> (Block, Arc<AtomicBool>) {
        let state = self.state();
        if self.shutdown.load(Ordering::Acquire) {
            self.stale.lock().expect("stale lock").store(true, Ordering::Release);
        }
        let (txs, fees) = state.mempool.select(MAX_BLOCK_SIZE - COINBASE_RESERVE);
        let block = new_block(&state.chain, lock, txs, fees, unix_now());
        (block, self.stale_flag())
    }
}
