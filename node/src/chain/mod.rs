//! The chain state: the block index in memory, the active chain, and
//! connecting, disconnecting and choosing blocks, each change one atomic
//! store batch applied to memory only after it is written.
//!
//! One file per concern, all of them `impl Chain` blocks or the types
//! they use:
//!
//! - this file: the `Chain` itself, opening it, and what it answers about
//!   the active chain;
//! - `index`: the block index, the candidate rankings, invalid blocks and
//!   the orphan pool;
//! - `submit`: a submitted block's checks and storage, then the switch;
//! - `activate`: choosing the most-work chain, connecting (with the writer
//!   thread) and disconnecting blocks, and the store batches they write;
//! - `headers`: headers-first sync (locators, checking and storing runs of
//!   headers, the bodies still missing);
//! - `address`: the address index queries and the keys blocks write to it;
//! - `verifier`: the parallel signature verifier with its cache;
//! - `digest`: the UTXO set digest (`gettxoutsetinfo`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use cairn_consensus::chain::{median_time_past, next_bits, HeaderAncestry};
use cairn_consensus::check::Coin;
use cairn_consensus::pow::CompactTarget;
use cairn_consensus::{
    Block, BlockError, BlockHash, BlockHeader, Decode, Encode, HeaderError, Height, OutPoint, Params, Work,
};

use crate::records::{coin_from_bytes, encode_undo, outpoint_key, IndexRecord, HAS_BODY};
use crate::sigcache::SignatureCache;
use crate::store::{Batch, Cf, Store, StoreError};

mod activate;
mod address;
mod digest;
mod headers;
mod index;
mod submit;
mod verifier;

pub use address::{
    address_coins_in, address_deltas_in, address_history_in, address_history_of, AddressDelta, HistoryRow,
};
pub use digest::{utxo_digest, UtxoDigest};
pub use headers::{HeadersError, TipSummary, MAX_HEADERS_PER_ANSWER};
pub use verifier::ParallelVerifier;
pub(crate) use verifier::PARALLEL_TRANSACTIONS;

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
    /// The store failed: the block is not stored.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The block is stored, but the store failed while the chain was
    /// changing to it: it connects at the next start.
    #[error("the block is stored, but changing the chain to it failed: {0}")]
    StoredUnconnected(StoreError),
    /// The node stopped after a storage failure (see `Node::abort`): it
    /// takes no more blocks until it is started again.
    #[error(
        "the node is stopping after a storage failure and takes no more blocks until it is started again"
    )]
    Stopped,
    /// A template does not extend the tip.
    #[error("the template extends {0}, not the tip")]
    NotOnTip(BlockHash),
    /// The store holds a chain that starts from another genesis block.
    #[error("{}", wrong_genesis(found, expected))]
    WrongGenesis {
        /// The genesis of the stored chain.
        found: BlockHash,
        /// This network's genesis.
        expected: BlockHash,
    },
}

impl ChainError {
    /// Whether the failure is this node's own (its storage), not the
    /// block's: such a block is not held against whoever sent it.
    #[must_use]
    pub fn is_local_failure(&self) -> bool {
        matches!(self, Self::Store(_) | Self::StoredUnconnected(_) | Self::Stopped)
    }
}

/// What to tell an operator whose data directory holds another chain.
fn wrong_genesis(found: &BlockHash, expected: &BlockHash) -> String {
    let what = if found.to_string() == cairn_consensus::params::FIRST_DEVNET_GENESIS {
        "the first devnet (genesis 2026-11-24), retired on 2026-12-05 when devnet's difficulty \
         rule was made exact (its blocks do not follow the written aserti3-2d rule)"
            .to_owned()
    } else {
        format!("a chain from another genesis block ({found})")
    };
    format!(
        "this data directory holds {what}; this node's network starts from genesis {expected}. \
         Move the data directory away (or delete it) or give another --datadir, and the node \
         starts the network afresh"
    )
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
                    return Err(ChainError::WrongGenesis {
                        found: hashes[0],
                        expected: chain.params.genesis_hash,
                    });
                }
                chain.active = hashes;
            }
        }
        chain.activate_best_chain(&mut Reorganization::default(), &mut |_| {})?;
        Ok(chain)
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
}
