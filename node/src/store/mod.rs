//! The chain store: column families of keys and values, written only in
//! atomic batches. `RocksStore` keeps them on disk (the default `rocksdb`
//! feature); [`MemStore`] in memory, for fast unit tests of everything
//! above it and for the fuzz targets.

#[cfg(feature = "rocksdb")]
mod rocks;
#[cfg(feature = "rocksdb")]
pub use rocks::RocksStore;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The database format this code reads and writes; checked at open.
pub const FORMAT_VERSION: u32 = 1;

/// The column families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Block hash -> height, chain work and status.
    Index,
    /// Block hash -> 80-byte header.
    Headers,
    /// Block hash -> the block's encoding.
    Bodies,
    /// Block hash -> the coins the block spent (to disconnect it).
    Undo,
    /// Outpoint -> unspent coin.
    Utxo,
    /// Lock digest + outpoint -> coin, and lock digest + height + txid -> ().
    Address,
    /// Format version, network, tip.
    Meta,
}

impl Cf {
    /// Every column family, each at its own index (`cf as usize`).
    pub const ALL: [Self; 7] =
        [Self::Index, Self::Headers, Self::Bodies, Self::Undo, Self::Utxo, Self::Address, Self::Meta];

    /// The name on disk.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Headers => "headers",
            Self::Bodies => "bodies",
            Self::Undo => "undo",
            Self::Utxo => "utxo",
            Self::Address => "address",
            Self::Meta => "meta",
        }
    }
}

/// Keys and values, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

type Maps = BTreeMap<(Cf, Vec<u8>), Vec<u8>>;

/// Changes applied together or not at all.
///
/// Keys and values are copied one after another into one buffer, so that
/// a block's thousand-odd changes cost no allocation each.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    bytes: Vec<u8>,
    /// Column family, key end and value end (`None` for a delete) in
    /// `bytes`; each key starts where the previous change ends.
    ops: Vec<(Cf, usize, Option<usize>)>,
}

impl Batch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `key` to `value`.
    pub fn put(&mut self, cf: Cf, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.bytes.extend_from_slice(key.as_ref());
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value.as_ref());
        self.ops.push((cf, key_end, Some(self.bytes.len())));
    }
    /// Removes `key`.
    pub fn delete(&mut self, cf: Cf, key: impl AsRef<[u8]>) {
        self.bytes.extend_from_slice(key.as_ref());
        self.ops.push((cf, self.bytes.len(), None));
    }
    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The changes in order: column family, key, and value (`None` to remove).
    pub fn changes(&self) -> impl Iterator<Item = (Cf, &[u8], Option<&[u8]>)> {
        let mut start = 0;
        self.ops.iter().map(move |&(cf, key_end, value_end)| {
            let key = &self.bytes[start..key_end];
            let value = value_end.map(|end| &self.bytes[key_end..end]);
            start = value_end.unwrap_or(key_end);
            (cf, key, value)
        })
    }
}

/// A store failure: the disk, or data that does not decode.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused (RocksDB's message).
    #[error("database: {0}")]
    Db(String),
    /// The database was written by another format version.
    #[error("database format {found} in {path}, this node reads format {FORMAT_VERSION}")]
    Format {
        /// The version found.
        found: u32,
        /// The database.
        path: String,
    },
    /// The database belongs to another network.
    #[error("database in {path} is for network {found}, not {expected}")]
    Network {
        /// The network stored.
        found: String,
        /// The network asked for.
        expected: String,
        /// The database.
        path: String,
    },
    /// Stored bytes that do not decode.
    #[error("corrupt {0} record")]
    Corrupt(&'static str),
    /// The node is stopping after a fatal error and writes nothing more.
    #[error("the node is stopping after a fatal error: nothing more is written")]
    Halted,
}

/// Keys and values in column families, written in atomic batches.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The value at `key`.
    ///
    /// # Errors
    /// On a storage failure.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every key and value under `prefix`, in key order.
    ///
    /// # Errors
    /// On a storage failure.
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Pairs, StoreError>;
    /// Calls `f` with every key and value, in key order.
    ///
    /// # Errors
    /// On a storage failure.
    fn for_each(&self, cf: Cf, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError>;
    /// Applies every change in `batch`, or none.
    ///
    /// # Errors
    /// On a storage failure, in which case nothing was applied.
    fn write(&self, batch: Batch) -> Result<(), StoreError>;
}

/// A store that refuses every write once its flag is raised: the node
/// raises it when it stops for a fatal error (a panic, a failed write), so
/// that threads still running, which may see memory a panic left half
/// changed, cannot write any of it. Reads go on.
#[derive(Debug)]
pub struct Halting {
    inner: Arc<dyn Store>,
    halted: Arc<AtomicBool>,
}

impl Halting {
    /// `inner`, writable while `halted` is down.
    #[must_use]
    pub fn new(inner: Arc<dyn Store>, halted: Arc<AtomicBool>) -> Self {
        Self { inner, halted }
    }
}

impl Store for Halting {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(cf, key)
    }
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Pairs, StoreError> {
        self.inner.scan_prefix(cf, prefix)
    }
    fn for_each(&self, cf: Cf, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        self.inner.for_each(cf, f)
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if self.halted.load(Ordering::Acquire) {
            return Err(StoreError::Halted);
        }
        self.inner.write(batch)
    }
}

/// The store in memory.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    maps: Arc<Mutex<Maps>>,
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.maps.lock().expect("store lock").get(&(cf, key.to_vec())).cloned())
    }
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Pairs, StoreError> {
        let maps = self.maps.lock().expect("store lock");
        Ok(maps
            .range((cf, prefix.to_vec())..)
            .take_while(|((c, k), _)| *c == cf && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
    fn for_each(&self, cf: Cf, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        let maps = self.maps.lock().expect("store lock");
        for ((_, k), v) in maps.range((cf, Vec::new())..).take_while(|((c, _), _)| *c == cf) {
            f(k, v);
        }
        Ok(())
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let mut maps = self.maps.lock().expect("store lock");
        for (cf, key, value) in batch.changes() {
            match value {
                Some(value) => maps.insert((cf, key.to_vec()), value.to_vec()),
                None => maps.remove(&(cf, key.to_vec())),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "rocksdb")]
    fn contents(store: &dyn Store, cf: Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        store.for_each(cf, &mut |k, v| out.push((k.to_vec(), v.to_vec()))).expect("read");
        out
    }

    #[test]
    fn a_halted_store_refuses_writes_and_still_reads() {
        let halted = Arc::new(AtomicBool::new(false));
        let store = Halting::new(Arc::new(MemStore::new()), Arc::clone(&halted));
        let mut batch = Batch::new();
        batch.put(Cf::Meta, b"k", b"1");
        store.write(batch.clone()).expect("writable");
        halted.store(true, Ordering::Release);
        let mut later = Batch::new();
        later.put(Cf::Meta, b"k", b"2");
        assert!(matches!(store.write(later), Err(StoreError::Halted)));
        assert_eq!(store.get(Cf::Meta, b"k").expect("read"), Some(b"1".to_vec()));
    }

    #[test]
    fn each_column_family_sits_at_its_own_index() {
        assert!(Cf::ALL.iter().enumerate().all(|(i, &cf)| cf as usize == i));
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn a_batch_applies_its_changes_in_order_in_both_stores() {
        let mut batch = Batch::new();
        batch.put(Cf::Utxo, b"a", b"1");
        batch.put(Cf::Utxo, b"b", b"");
        batch.delete(Cf::Utxo, b"a");
        batch.put(Cf::Address, b"a", b"other family");
        batch.put(Cf::Utxo, b"c", [3u8; 40]);
        batch.put(Cf::Utxo, b"a", b"4");
        batch.delete(Cf::Utxo, b"missing");
        let changes: Vec<_> = batch.changes().collect();
        assert_eq!(changes.len(), 7);
        assert_eq!(changes[2], (Cf::Utxo, &b"a"[..], None));
        assert_eq!(changes[4], (Cf::Utxo, &b"c"[..], Some(&[3u8; 40][..])));

        let dir = tempfile::tempdir().expect("tempdir");
        let rocks = RocksStore::open(dir.path(), "regtest").expect("open");
        let mem = MemStore::new();
        for store in [&rocks as &dyn Store, &mem] {
            store.write(batch.clone()).expect("write");
            let expected: Vec<(Vec<u8>, Vec<u8>)> = vec![
                (b"a".to_vec(), b"4".to_vec()),
                (b"b".to_vec(), Vec::new()),
                (b"c".to_vec(), vec![3; 40]),
            ];
            assert_eq!(contents(store, Cf::Utxo), expected);
            assert_eq!(store.get(Cf::Address, b"a").expect("read"), Some(b"other family".to_vec()));
        }
    }
}
