//! The chain state: the block index in memory, the active chain, and
//! connecting, disconnecting and choosing blocks, each change one atomic
//! store batch applied to memory only after it is written.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use cairn_consensus::chain::{
    check_header, check_header_contextual, median_time_past, next_bits, HeaderAncestry,
};
use cairn_consensus::check::{
    check_block_with, check_transaction, connect_block_unverified, BlockChanges, BlockContext, Coin,
    SignatureVerifier, UtxoView,
};
use cairn_consensus::pow::CompactTarget;
use cairn_consensus::sighash::SignatureCheck;
use cairn_consensus::{
    Amount, Block, BlockError, BlockHash, BlockHeader, Decode, Encode, HeaderError, Height, OutPoint, Params,
    Transaction, TxError, Work,
};
use rayon::prelude::*;
use secp256k1::{Secp256k1, VerifyOnly};

use crate::records::{
    address_coin_key, address_coin_prefix, address_history_key, address_history_prefix, coin_bytes,
    coin_from_bytes, decode_undo, encode_undo, outpoint_from_key, outpoint_key, IndexRecord, HAS_BODY,
    INVALID,
};
use crate::sigcache::SignatureCache;
use crate::store::{Batch, Cf, Store, StoreError};

/// Blocks with unknown parents kept at most.
pub const MAX_ORPHAN_BLOCKS: usize = 64;

const META_TIP: &[u8] = b"tip";

/// Why a block was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// The header breaks a header rule.
    #[error("invalid header: {0}")]
    Header(#[from] HeaderError),
    /// The block breaks a block rule.
    #[error("invalid block: {0}")]
    Block(#[from] BlockError),
    /// The block was found invalid before.
    #[error("block {0} is known to be invalid")]
    KnownInvalid(BlockHash),
    /// The block's parent (or an earlier ancestor) is invalid.
    #[error("block {0} descends from an invalid block")]
    InvalidAncestor(BlockHash),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What became of a submitted block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored; the active chain changed (it may have become the tip).
    Activated,
    /// Stored on a branch with no more work than the active chain.
    SideBranch,
    /// Already stored.
    Duplicate,
    /// Its parent is unknown: held in the orphan pool.
    Orphan,
}

/// A submitted block and what came of it.
pub type Submitted = (BlockHash, Result<Accepted, ChainError>);

/// Blocks connected and disconnected by one change of the active chain,
/// for the mempool.
#[derive(Debug, Default)]
pub struct Reorganization {
    /// Blocks disconnected, tip first.
    pub disconnected: Vec<Block>,
    /// Blocks connected, lowest first.
    pub connected: Vec<Block>,
}

/// One block in the index.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The header.
    pub header: BlockHeader,
    /// Height, chain work and status.
    pub record: IndexRecord,
    /// Arrival order, so that equal work keeps the block seen first.
    seq: u64,
}

/// A digest of the UTXO set: the same on two nodes with the same set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtxoDigest {
    /// Unspent outputs.
    pub count: u64,
    /// Their total amount.
    pub total: Amount,
    /// SHA-256 over every (outpoint key, coin record) pair in key order.
    pub hash: [u8; 32],
}

/// What one transaction did to the coins of one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressDelta {
    /// Which of the locks asked about.
    pub lock_index: usize,
    /// The block's height.
    pub height: Height,
    /// The block.
    pub block_hash: BlockHash,
    /// The transaction.
    pub txid: cairn_consensus::Txid,
    /// What its outputs paid the lock.
    pub received: Amount,
    /// What the lock's coins that its inputs spent held.
    pub sent: Amount,
}

/// Below this many transactions, per-transaction work stays on the calling
/// thread: handing it to the thread pool and waiting costs more than the
/// checks (a few microseconds each).
pub(crate) const PARALLEL_TRANSACTIONS: usize = 16;

/// Checks signatures and transactions' context-free rules on all cores,
/// skipping those the signature cache holds; a remembering verifier (the
/// mempool's) adds to the cache the transactions the mempool accepts, with
/// their signatures.
#[derive(Debug)]
pub struct ParallelVerifier {
    secp: Secp256k1<VerifyOnly>,
    cache: Arc<SignatureCache>,
    remember: bool,
}

impl Default for ParallelVerifier {
    /// A verifier with a cache of its own that it does not fill.
    fn default() -> Self {
        Self::new(Arc::new(SignatureCache::default()), false)
    }
}

impl ParallelVerifier {
    /// A verifier that looks signatures and transactions up in `cache`
    /// first and, when `remember`, adds those it is told were accepted.
    #[must_use]
    pub fn new(cache: Arc<SignatureCache>, remember: bool) -> Self {
        Self { secp: Secp256k1::verification_only(), cache, remember }
    }

    /// The cache it looks signatures up in.
    #[must_use]
    pub fn cache(&self) -> &Arc<SignatureCache> {
        &self.cache
    }

    /// Whether `check` is valid: remembered so, or verified now.
    #[must_use]
    pub fn is_valid(&self, check: &SignatureCheck) -> bool {
        self.cache.contains(check) || check.verify(&self.secp)
    }
}

impl SignatureVerifier for ParallelVerifier {
    fn first_failure(&self, checks: &[SignatureCheck]) -> Option<usize> {
        // A verification is worth handing to the pool; a lone one is not.
        if checks.len() < 2 {
            return checks.iter().position(|check| !self.is_valid(check));
        }
        checks.par_iter().with_min_len(8).position_any(|check| !self.is_valid(check))
    }

    fn first_invalid_transaction(&self, txs: &[Transaction]) -> Option<(usize, TxError)> {
        let check = |(index, tx): (usize, &Transaction)| {
            if self.cache.contains_transaction(tx) {
                return None;
            }
            check_transaction(tx).err().map(|error| (index, error))
        };
        // A few microseconds each: a handful stays on this thread.
        if txs.len() < PARALLEL_TRANSACTIONS {
            return txs.iter().enumerate().find_map(check);
        }
        txs.par_iter().with_min_len(8).enumerate().filter_map(check).min_by_key(|(index, _)| *index)
    }

    fn remember(&self, tx: &Transaction, checks: &[SignatureCheck]) {
        if self.remember {
            self.cache.insert(checks);
            self.cache.insert_transactions([tx]);
        }
    }
}

/// The coins of a block whose connection is being written: seen before
/// the store, which may or may not hold them yet.
#[derive(Debug, Default)]
struct Unwritten {
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

/// The headers of one branch: the active chain up to the fork, then the
/// branch's own blocks.
struct Branch<'a> {
    chain: &'a Chain,
    fork_height: u32,
    above: Vec<BlockHeader>,
}

impl HeaderAncestry for Branch<'_> {
    fn header_at(&self, height: Height) -> Option<BlockHeader> {
        let h = height.get();
        if h <= self.fork_height {
            self.chain.active.get(h as usize).and_then(|hash| self.chain.index.get(hash)).map(|e| e.header)
        } else {
            self.above.get((h - self.fork_height - 1) as usize).copied()
        }
    }
}

/// An index entry's place in the ordering of candidates: more work first,
/// then the one seen first.
type Rank = (Work, Reverse<u64>, BlockHash);

fn rank(hash: &BlockHash, entry: &Entry) -> Rank {
    (entry.record.chain_work, Reverse(entry.seq), *hash)
}

/// The chain state.
#[derive(Debug)]
pub struct Chain {
    params: Params,
    store: Arc<dyn Store>,
    index: HashMap<BlockHash, Entry>,
    /// Valid entries by (work, earliest first): the best header is the last.
    ranked_headers: BTreeSet<Rank>,
    /// Valid entries whose bodies, and their ancestors' bodies, are all
    /// stored ("linked"), likewise: the best of them is the chain to be on.
    ranked_bodies: BTreeSet<Rank>,
    /// Valid stored bodies waiting for an ancestor's body, by parent: they
    /// join `ranked_bodies` when the parent does.
    unlinked: HashMap<BlockHash, Vec<BlockHash>>,
    active: Vec<BlockHash>,
    orphans: HashMap<BlockHash, Block>,
    orphan_order: VecDeque<BlockHash>,
    next_seq: u64,
    verifier: ParallelVerifier,
    /// The last block that failed to connect, and the rule it broke.
    last_failure: Option<(BlockHash, BlockError)>,
    /// The blocks being submitted, so connecting them need not read them back.
    just_stored: HashMap<BlockHash, Block>,
}

impl Chain {
    /// Opens the chain in `store`, writing the genesis block into an empty
    /// one, and resumes any switch to a heavier branch a crash interrupted.
    ///
    /// # Errors
    /// When the store fails or holds records that do not decode.
    pub fn open(store: Arc<dyn Store>, params: Params) -> Result<Self, ChainError> {
        let mut chain = Self {
            params,
            store,
            index: HashMap::new(),
            ranked_headers: BTreeSet::new(),
            ranked_bodies: BTreeSet::new(),
            unlinked: HashMap::new(),
            active: Vec::new(),
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
            next_seq: 0,
            verifier: ParallelVerifier::default(),
            last_failure: None,
            just_stored: HashMap::new(),
        };
        let mut records = Vec::new();
        chain.store.for_each(Cf::Index, &mut |key, value| records.push((key.to_vec(), value.to_vec())))?;
        for (key, value) in records {
            let hash =
                BlockHash::from_byte_array(key.try_into().map_err(|_| StoreError::Corrupt("index key"))?);
            let record = IndexRecord::from_bytes(&value).map_err(|_| StoreError::Corrupt("index"))?;
            let header_bytes =
                chain.store.get(Cf::Headers, &hash.to_byte_array())?.ok_or(StoreError::Corrupt("header"))?;
            let header =
                BlockHeader::from_bytes(&header_bytes.try_into().map_err(|_| StoreError::Corrupt("header"))?);
            let seq = chain.take_seq();
            chain.insert_entry(hash, Entry { header, record, seq });
        }
        match chain.store.get(Cf::Meta, META_TIP)? {
            None => chain.write_genesis()?,
            Some(tip) => {
                let tip = BlockHash::from_byte_array(tip.try_into().map_err(|_| StoreError::Corrupt("tip"))?);
                let mut hash = tip;
                let mut hashes = Vec::new();
                loop {
                    let entry = chain.index.get(&hash).ok_or(StoreError::Corrupt("tip ancestry"))?;
                    hashes.push(hash);
                    if entry.record.height == Height::GENESIS {
                        break;
                    }
                    hash = entry.header.prev_block;
                }
                hashes.reverse();
                if hashes[0] != chain.params.genesis_hash {
                    return Err(StoreError::Corrupt("genesis").into());
                }
                chain.active = hashes;
            }
        }
        chain.activate_best_chain(&mut Reorganization::default(), &mut |_| {})?;
        Ok(chain)
    }

    /// Adds or replaces an index entry, keeping the rankings in step.
    fn insert_entry(&mut self, hash: BlockHash, entry: Entry) {
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

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn write_genesis(&mut self) -> Result<(), ChainError> {
        let genesis = self.params.genesis.clone();
        let hash = genesis.block_hash();
        let record = IndexRecord {
            height: Height::GENESIS,
            chain_work: genesis.header.bits.to_target().map_err(HeaderError::from)?.work(),
            flags: HAS_BODY,
        };
        let mut batch = Batch::new();
        batch.put(Cf::Headers, hash.to_byte_array(), genesis.header.to_bytes());
        batch.put(Cf::Bodies, hash.to_byte_array(), genesis.encode());
        batch.put(Cf::Undo, hash.to_byte_array(), encode_undo(&[]));
        batch.put(Cf::Index, hash.to_byte_array(), record.to_bytes());
        batch.put(Cf::Meta, META_TIP, hash.to_byte_array());
        self.store.write(batch)?;
        let seq = self.take_seq();
        self.insert_entry(hash, Entry { header: genesis.header, record, seq });
        self.active = vec![hash];
        Ok(())
    }

    /// The signature cache block connection looks signatures up in; a
    /// verifier that fills it (the mempool's) makes a block of transactions
    /// seen before connect without verifying them again.
    #[must_use]
    pub fn signature_cache(&self) -> &Arc<SignatureCache> {
        self.verifier.cache()
    }

    /// The network parameters.
    #[must_use]
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The tip's height.
    #[must_use]
    pub fn height(&self) -> Height {
        Height::new((self.active.len() - 1) as u32)
    }

    /// The tip's hash.
    #[must_use]
    pub fn tip(&self) -> BlockHash {
        *self.active.last().expect("the active chain holds genesis")
    }

    /// The tip's index entry.
    #[must_use]
    pub fn tip_entry(&self) -> &Entry {
        &self.index[&self.tip()]
    }

    /// The active chain's block at `height`.
    #[must_use]
    pub fn hash_at(&self, height: Height) -> Option<BlockHash> {
        self.active.get(height.get() as usize).copied()
    }

    /// Whether `hash` is on the active chain.
    #[must_use]
    pub fn is_active(&self, hash: &BlockHash) -> bool {
        self.index.get(hash).is_some_and(|e| self.hash_at(e.record.height) == Some(*hash))
    }

    /// A block's index entry.
    #[must_use]
    pub fn entry(&self, hash: &BlockHash) -> Option<&Entry> {
        self.index.get(hash)
    }

    /// Blocks in the index.
    #[must_use]
    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    /// Blocks in the orphan pool.
    #[must_use]
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// A stored block.
    ///
    /// # Errors
    /// When the store fails or the stored bytes do not decode.
    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, ChainError> {
        match self.store.get(Cf::Bodies, &hash.to_byte_array())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Block::decode(&bytes).map_err(|_| StoreError::Corrupt("block"))?)),
        }
    }

    /// A stored block's encoding, as stored.
    ///
    /// # Errors
    /// When the store fails.
    pub fn block_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.store.get(Cf::Bodies, &hash.to_byte_array())?)
    }

    /// An unspent coin.
    ///
    /// # Errors
    /// When the store fails.
    pub fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, ChainError> {
        match self.store.get(Cf::Utxo, &outpoint_key(outpoint))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(coin_from_bytes(&bytes).map_err(|_| StoreError::Corrupt("coin"))?)),
        }
    }

    /// The unspent coins a lock holds, from the address index.
    ///
    /// # Errors
    /// When the store fails or holds a record that does not decode.
    pub fn address_coins(&self, lock: &cairn_consensus::Lock) -> Result<Vec<(OutPoint, Coin)>, ChainError> {
        let corrupt = |_| ChainError::Store(StoreError::Corrupt("address coin"));
        let prefix = address_coin_prefix(lock);
        self.store
            .scan_prefix(Cf::Address, &prefix)?
            .into_iter()
            .map(|(key, value)| {
                Ok((
                    outpoint_from_key(&key[prefix.len()..]).map_err(corrupt)?,
                    coin_from_bytes(&value).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    /// The transactions that paid or spent a lock, by height, from the
    /// address index.
    ///
    /// # Errors
    /// When the store fails or holds a key that does not decode.
    pub fn address_history(
        &self,
        lock: &cairn_consensus::Lock,
    ) -> Result<Vec<(Height, cairn_consensus::Txid)>, ChainError> {
        let prefix = address_history_prefix(lock);
        self.store
            .scan_prefix(Cf::Address, &prefix)?
            .into_iter()
            .map(|(key, _)| {
                let rest = &key[prefix.len()..];
                let height: [u8; 4] = rest
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(StoreError::Corrupt("address history"))?;
                let txid: [u8; 32] = rest
                    .get(4..)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(StoreError::Corrupt("address history"))?;
                Ok((Height::new(u32::from_be_bytes(height)), cairn_consensus::Txid::from_byte_array(txid)))
            })
            .collect()
    }

    /// What each active-chain transaction that paid or spent `locks` did
    /// to them: the amounts received and spent, per (transaction, lock),
    /// read from the address index, the bodies and the undo data, in
    /// height order. Only heights in `heights` are read.
    ///
    /// # Errors
    /// When the store fails or holds a record that does not decode.
    pub fn address_deltas(
        &self,
        locks: &[cairn_consensus::Lock],
        heights: std::ops::RangeInclusive<u32>,
    ) -> Result<Vec<AddressDelta>, ChainError> {
        let mut wanted: Vec<(Height, cairn_consensus::Txid, usize)> = Vec::new();
        for (which, lock) in locks.iter().enumerate() {
            for (height, txid) in self.address_history(lock)? {
                if heights.contains(&height.get()) {
                    wanted.push((height, txid, which));
                }
            }
        }
        wanted.sort_by_key(|(height, txid, which)| (*height, *txid, *which));
        wanted.dedup();
        let mut deltas = Vec::with_capacity(wanted.len());
        let mut loaded: Option<(Height, BlockHash, Block, HashMap<OutPoint, Coin>)> = None;
        for (height, txid, which) in wanted {
            if loaded.as_ref().is_none_or(|(h, ..)| *h != height) {
                let hash = self.hash_at(height).ok_or(StoreError::Corrupt("address history height"))?;
                let block = self.block(&hash)?.ok_or(StoreError::Corrupt("missing body"))?;
                let undo = self
                    .store
                    .get(Cf::Undo, &hash.to_byte_array())?
                    .ok_or(StoreError::Corrupt("missing undo"))?;
                let mut spent: HashMap<OutPoint, Coin> =
                    decode_undo(&undo).map_err(|_| StoreError::Corrupt("undo"))?.into_iter().collect();
                // Coins created and spent inside the block are in no undo data.
                for tx in &block.transactions {
                    let id = tx.txid();
                    for (index, output) in tx.outputs.iter().enumerate() {
                        let coin = Coin { output: output.clone(), height, is_coinbase: tx.is_coinbase() };
                        spent.entry(OutPoint { txid: id, index: index as u32 }).or_insert(coin);
                    }
                }
                loaded = Some((height, hash, block, spent));
            }
            let (_, block_hash, block, coins) = loaded.as_ref().expect("loaded above");
            let tx = block
                .transactions
                .iter()
                .find(|tx| tx.txid() == txid)
                .ok_or(StoreError::Corrupt("address history transaction"))?;
            let lock = &locks[which];
            let corrupt = |_| ChainError::Store(StoreError::Corrupt("amounts"));
            let received = Amount::sum(tx.outputs.iter().filter(|o| o.lock == *lock).map(|o| o.amount))
                .map_err(corrupt)?;
            let sent = Amount::sum(
                tx.inputs
                    .iter()
                    .filter_map(|input| coins.get(&input.prevout))
                    .filter(|coin| coin.output.lock == *lock)
                    .map(|coin| coin.output.amount),
            )
            .map_err(corrupt)?;
            deltas.push(AddressDelta {
                lock_index: which,
                height,
                block_hash: *block_hash,
                txid,
                received,
                sent,
            });
        }
        Ok(deltas)
    }

    /// The median time past of the tip.
    #[must_use]
    pub fn median_time_past(&self) -> u32 {
        median_time_past(&self.active_ancestry(), self.height()).expect("the tip is in the index")
    }

    /// The bits the next block must carry.
    #[must_use]
    pub fn next_bits(&self) -> CompactTarget {
        next_bits(&self.params, &self.active_ancestry(), self.height())
            .expect("the active chain is in the index")
    }

    fn active_ancestry(&self) -> Branch<'_> {
        Branch { chain: self, fork_height: self.height().get(), above: Vec::new() }
    }

    /// The headers of the branch ending at `tip` (which must be in the index).
    fn branch(&self, tip: BlockHash) -> Branch<'_> {
        let mut above = Vec::new();
        let mut hash = tip;
        while !self.is_active(&hash) {
            let entry = &self.index[&hash];
            above.push(entry.header);
            hash = entry.header.prev_block;
        }
        above.reverse();
        let fork_height = self.index[&hash].record.height.get();
        Branch { chain: self, fork_height, above }
    }

    /// The digest of the UTXO set.
    ///
    /// # Errors
    /// When the store fails or holds a coin that does not decode.
    pub fn utxo_digest(&self) -> Result<UtxoDigest, ChainError> {
        utxo_digest(self.store.as_ref())
    }

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
                Err(error.clone())
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

    fn add_orphan(&mut self, hash: BlockHash, block: Block) {
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

    fn remove_orphan(&mut self, hash: &BlockHash) -> Option<Block> {
        self.orphan_order.retain(|h| h != hash);
        self.orphans.remove(hash)
    }

    /// Remembers a block as invalid (header only), so that it and its
    /// descendants are refused without being checked again.
    fn store_invalid(&mut self, header: &BlockHeader, parent: Option<IndexRecord>) -> Result<(), ChainError> {
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
    fn mark_invalid(&mut self, hash: BlockHash) -> Result<(), ChainError> {
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
    fn best_candidate(&self) -> BlockHash {
        let tip = self.tip();
        let tip_work = self.index[&tip].record.chain_work;
        match self.ranked_bodies.iter().next_back() {
            Some((work, _, hash)) if *work > tip_work => *hash,
            _ => tip,
        }
    }

    /// Switches to the most-work valid branch, any depth, one block per
    /// store batch; a block that fails to connect is marked invalid with its
    /// descendants and the search goes on. What it disconnected and
    /// connected goes into `reorg`, also when a store failure stops it.
    ///
    /// `on_valid` hears of each block found valid before it is written.
    fn activate_best_chain(
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
    fn check_connection(
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

/// Every (lock, txid) pair of the block: each output's lock, and each
/// spent coin's lock, with the transaction that pays or spends it; each
/// pair once.
fn touched_locks<'a>(
    block: &'a Block,
    spent: &'a [(OutPoint, Coin)],
) -> Vec<(&'a cairn_consensus::Lock, cairn_consensus::Txid)> {
    let spent: HashMap<&OutPoint, &Coin> = spent.iter().map(|(o, c)| (o, c)).collect();
    let mut created: HashMap<OutPoint, &cairn_consensus::Lock> = HashMap::new();
    let mut touched = Vec::new();
    for tx in &block.transactions {
        let txid = tx.txid();
        for input in tx.inputs.iter().filter(|i| !i.prevout.is_null()) {
            if let Some(coin) = spent.get(&input.prevout) {
                touched.push((&coin.output.lock, txid));
            } else if let Some(lock) = created.get(&input.prevout) {
                touched.push((*lock, txid));
            }
        }
        for (index, output) in tx.outputs.iter().enumerate() {
            created.insert(OutPoint { txid, index: index as u32 }, &output.lock);
            touched.push((&output.lock, txid));
        }
    }
    touched.sort_unstable();
    touched.dedup();
    touched
}

/// The digest of the UTXO set in `store`.
///
/// # Errors
/// When the store fails or holds a coin that does not decode.
pub fn utxo_digest(store: &dyn Store) -> Result<UtxoDigest, ChainError> {
    use sha2::Digest;
    let mut count = 0u64;
    let mut total = Amount::ZERO;
    let mut hasher = sha2::Sha256::new();
    let mut corrupt = false;
    store.for_each(Cf::Utxo, &mut |key, value| {
        count += 1;
        match coin_from_bytes(value).ok().and_then(|coin| total.checked_add(coin.output.amount).ok()) {
            Some(sum) => total = sum,
            None => corrupt = true,
        }
        hasher.update(key);
        hasher.update((value.len() as u32).to_le_bytes());
        hasher.update(value);
    })?;
    if corrupt {
        return Err(StoreError::Corrupt("coin").into());
    }
    Ok(UtxoDigest { count, total, hash: hasher.finalize().into() })
}
