//! Checks already passed, so that a block's transactions that went through
//! the mempool first are not checked a second time when the block connects
//! (Bitcoin Core's signature cache, in a simpler form): signatures found
//! valid, and transactions that passed the context-free checks.
//!
//! Whether a signature is valid is a pure function of (message, signature,
//! key), and whether a transaction passes [`check_transaction`] a pure
//! function of its bytes, which its wtxid commits to; so remembering the
//! answer changes no verdict. Only passes are remembered; an entry is a
//! salted SHA-256 of what it vouches for (tagged by kind), 32 bytes, so the
//! cache's memory is fixed by its capacity and nobody outside the process
//! can aim collisions at it.
//!
//! The mempool remembers what it checks; block connection only looks up
//! (a block's signatures are not checked again unless it is disconnected
//! and connected again). Entries age out in two generations: new ones go to
//! the current one, and when it is full the previous one is dropped.
//!
//! [`check_transaction`]: cairn_consensus::check::check_transaction

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use cairn_consensus::sighash::SignatureCheck;
use cairn_consensus::Transaction;
use sha2::{Digest, Sha256};

/// Entries the cache holds at most by default: two generations of 229,376
/// digests, each exactly filling a hash table of 2^18 slots at its 7/8
/// load (so it never doubles for its last entries): about 17 MB in all.
/// That covers the transactions of a full mempool (50 MB of
/// one-input transactions is about 230,000 of them, two entries each:
/// the newest half at least).
pub const DEFAULT_CAPACITY: usize = 2 * ((1 << 18) / 8 * 7);

/// A salted digest: already uniformly distributed, so its first eight bytes
/// serve as the hash table's hash.
type Entry = [u8; 32];

/// What an entry vouches for: its first hashed byte after the salt, so the
/// two kinds never share an entry.
#[derive(Clone, Copy)]
enum Kind {
    Signature = 0,
    Transaction = 1,
}

/// Hashes an [`Entry`] by taking its first eight bytes.
#[derive(Default)]
struct EntryHasher(u64);

impl Hasher for EntryHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 32]` is written as its length, then its 32 bytes: the
        // length folds in as a constant, the digest's first eight bytes
        // make the hash.
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }
}

type Entries = HashSet<Entry, BuildHasherDefault<EntryHasher>>;

#[derive(Debug, Default)]
struct Generations {
    current: Entries,
    previous: Entries,
}

/// Signature checks found valid and transactions found to pass the
/// context-free checks, bounded in size. Shared between threads.
#[derive(Debug)]
pub struct SignatureCache {
    salt: [u8; 32],
    /// Entries per generation; 0 when the cache is off.
    generation: AtomicUsize,
    entries: RwLock<Generations>,
    hits: AtomicU64,
    transaction_hits: AtomicU64,
}

impl Default for SignatureCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl SignatureCache {
    /// A cache of at most `capacity` entries, in two generations of half
    /// as many (below 2: off, remembering nothing), with a salt of its own.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let mut salt = [0u8; 32];
        // Without the system's randomness the salt is still unknown outside
        // the process (the clock and an address), which is all it is for.
        if getrandom::fill(&mut salt).is_err() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let fallback = Sha256::new()
                .chain_update(now.as_nanos().to_le_bytes())
                .chain_update((&raw const salt as usize).to_le_bytes())
                .finalize();
            salt.copy_from_slice(&fallback);
        }
        Self {
            salt,
            generation: AtomicUsize::new(capacity / 2),
            entries: RwLock::new(Generations::default()),
            hits: AtomicU64::new(0),
            transaction_hits: AtomicU64::new(0),
        }
    }

    /// The entry that vouches for `check`.
    fn entry(&self, check: &SignatureCheck) -> Entry {
        Sha256::new()
            .chain_update(self.salt)
            .chain_update([Kind::Signature as u8])
            .chain_update(check.message)
            .chain_update(check.signature)
            .chain_update(check.key)
            .finalize()
            .into()
    }

    /// The entry that vouches for `tx` passing the context-free checks.
    fn transaction_entry(&self, tx: &Transaction) -> Entry {
        Sha256::new()
            .chain_update(self.salt)
            .chain_update([Kind::Transaction as u8])
            .chain_update(tx.wtxid().to_byte_array())
            .finalize()
            .into()
    }

    /// Whether the entry `entry` makes is held; nothing is computed when
    /// the cache is empty (while syncing, with nothing in the mempool).
    fn holds(&self, entry: impl FnOnce() -> Entry, hits: &AtomicU64) -> bool {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        if entries.current.is_empty() && entries.previous.is_empty() {
            return false;
        }
        let entry = entry();
        let found = entries.current.contains(&entry) || entries.previous.contains(&entry);
        if found {
            hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    fn insert_entries(&self, new: impl Iterator<Item = Entry>) {
        let generation = self.generation.load(Ordering::Relaxed);
        if generation == 0 {
            return;
        }
        let new: Vec<Entry> = new.collect();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        for entry in new {
            if entries.current.len() >= generation {
                // The older generation goes first, and the newer table is
                // sized for a whole generation at once: memory does not
                // pile up while tables double.
                entries.previous = Entries::default();
                let full = Entries::with_capacity_and_hasher(generation, BuildHasherDefault::default());
                entries.previous = std::mem::replace(&mut entries.current, full);
            }
            entries.current.insert(entry);
        }
    }

    /// Whether `check` was remembered as valid.
    #[must_use]
    pub fn contains(&self, check: &SignatureCheck) -> bool {
        self.holds(|| self.entry(check), &self.hits)
    }

    /// Remembers `checks`, which the caller has verified to be valid.
    pub fn insert<'a>(&self, checks: impl IntoIterator<Item = &'a SignatureCheck>) {
        self.insert_entries(checks.into_iter().map(|check| self.entry(check)));
    }

    /// Whether `tx` was remembered as passing the context-free checks.
    #[must_use]
    pub fn contains_transaction(&self, tx: &Transaction) -> bool {
        self.holds(|| self.transaction_entry(tx), &self.transaction_hits)
    }

    /// Remembers `txs`, which the caller has seen pass the context-free checks.
    pub fn insert_transactions<'a>(&self, txs: impl IntoIterator<Item = &'a Transaction>) {
        self.insert_entries(txs.into_iter().map(|tx| self.transaction_entry(tx)));
    }

    /// Holds at most `capacity` entries from now on (below 2: off),
    /// dropping what no longer fits.
    pub fn set_capacity(&self, capacity: usize) {
        let generation = capacity / 2;
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.store(generation, Ordering::Relaxed);
        if entries.current.len() + entries.previous.len() > capacity {
            *entries = Generations::default();
        }
    }

    /// Entries held now.
    #[must_use]
    pub fn len(&self) -> usize {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.current.len() + entries.previous.len()
    }

    /// Whether it holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Signature lookups that found their check, since the start.
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Transaction lookups that found their transaction, since the start.
    #[must_use]
    pub fn transaction_hits(&self) -> u64 {
        self.transaction_hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n: u32) -> SignatureCheck {
        let mut message = [0u8; 32];
        message[..4].copy_from_slice(&n.to_le_bytes());
        SignatureCheck { input: 0, message, signature: [7; 64], key: [9; 32] }
    }

    #[test]
    fn it_finds_what_it_was_given_and_only_that() {
        let cache = SignatureCache::new(16);
        cache.insert([&check(1), &check(2)]);
        assert!(cache.contains(&check(1)) && cache.contains(&check(2)));
        assert!(!cache.contains(&check(3)));
        // Any one of the three parts differing is another check.
        let mut other = check(1);
        other.signature[63] ^= 1;
        assert!(!cache.contains(&other));
        let mut other = check(1);
        other.key[0] ^= 1;
        assert!(!cache.contains(&other));
        assert_eq!(cache.hits(), 2);
    }

    #[test]
    fn it_keeps_at_most_its_capacity_and_the_newest_entries() {
        let cache = SignatureCache::new(100);
        for n in 0..1_000 {
            cache.insert([&check(n)]);
            assert!(cache.len() <= 100);
        }
        // The last generation's worth is always there; the oldest are gone.
        assert!((950..1_000).all(|n| cache.contains(&check(n))));
        assert!((0..800).all(|n| !cache.contains(&check(n))));
    }

    #[test]
    fn a_cache_of_no_capacity_remembers_nothing() {
        for capacity in [0, 1] {
            let cache = SignatureCache::new(capacity);
            cache.insert([&check(1)]);
            assert!(cache.is_empty() && !cache.contains(&check(1)), "capacity {capacity}");
        }
        let cache = SignatureCache::new(8);
        cache.insert([&check(1), &check(2)]);
        cache.set_capacity(0);
        assert!(cache.is_empty());
        cache.insert([&check(3)]);
        assert!(!cache.contains(&check(3)) && !cache.contains(&check(1)));
        cache.set_capacity(8);
        cache.insert([&check(3)]);
        assert!(cache.contains(&check(3)));
    }

    #[test]
    fn a_transaction_is_remembered_by_every_byte_witness_included() {
        use cairn_consensus::{Amount, Lock, OutPoint, TxIn, TxOut, Txid};
        let mut tx = Transaction {
            version: 1,
            inputs: vec![TxIn::spending(OutPoint { txid: Txid::from_byte_array([1; 32]), index: 0 })],
            outputs: vec![TxOut {
                amount: Amount::from_base_units(5).expect("amount"),
                lock: Lock::key([2; 32]),
            }],
            lock_time: 0,
        };
        tx.inputs[0].witness = cairn_consensus::Witness::from_items([[3; 64]]);
        let cache = SignatureCache::new(16);
        cache.insert_transactions([&tx]);
        assert!(cache.contains_transaction(&tx));
        let mut other = tx.clone();
        other.inputs[0].witness[0][63] ^= 1;
        assert_eq!(other.txid(), tx.txid());
        assert!(!cache.contains_transaction(&other), "a different witness is another transaction");
        // A transaction entry never answers for a signature check, nor the reverse.
        assert!(!cache.contains(&check(1)));
        assert_eq!((cache.hits(), cache.transaction_hits()), (0, 1));
    }

    #[test]
    fn full_generations_fill_their_tables_exactly() {
        // Each table holds a whole generation at its load factor: 2^18
        // slots of 33 bytes, so the default cache is two of them, 17.3 MB.
        let cache = SignatureCache::default();
        for n in 0..(DEFAULT_CAPACITY as u32 * 3 / 2 + 1) {
            cache.insert([&check(n)]);
        }
        let entries = cache.entries.read().expect("lock");
        assert_eq!(entries.previous.capacity(), DEFAULT_CAPACITY / 2);
        assert_eq!(entries.current.capacity(), DEFAULT_CAPACITY / 2);
        assert_eq!(DEFAULT_CAPACITY / 2, (1 << 18) / 8 * 7);
    }

    #[test]
    fn two_caches_salt_their_entries_differently() {
        let (a, b) = (SignatureCache::new(4), SignatureCache::new(4));
        assert_ne!(a.entry(&check(1)), b.entry(&check(1)));
    }
}
