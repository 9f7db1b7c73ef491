//! The chain store: column families of keys and values, written only in
//! atomic batches. [`RocksStore`] keeps them on disk; [`MemStore`] in
//! memory, for fast unit tests of everything above it.

use std::collections::BTreeMap;
use std::path::Path;
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
    /// RocksDB refused.
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
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

/// The store in RocksDB.
pub struct RocksStore {
    db: rocksdb::DB,
    path: String,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish_non_exhaustive()
    }
}

const META_FORMAT: &[u8] = b"format";
const META_NETWORK: &[u8] = b"network";

/// The block cache shared by every column family (data, index and filter
/// blocks).
const BLOCK_CACHE_BYTES: usize = 32 << 20;

impl RocksStore {
    /// Opens (or creates) the database in `dir` for `network`, checking its
    /// format version and network.
    ///
    /// # Errors
    /// When RocksDB cannot open it, or it holds another format or network.
    pub fn open(dir: &Path, network: &str) -> Result<Self, StoreError> {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_keep_log_file_num(4);
        options.set_max_open_files(256);
        // One memtable budget for all column families, so memory stays
        // bounded however many there are.
        options.set_db_write_buffer_size(64 << 20);
        // One block cache for all column families, holding the index and
        // filter blocks too, so that their memory is bounded with it.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = Cf::ALL.map(|cf| {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            // Point reads (a coin, a block by hash) skip every table whose
            // filter says the key is not there: a spent or missing coin
            // costs no data-block search, an old one no search of the
            // newer tables. The address index is read by prefix scans,
            // which whole-key filters do not serve.
            if cf != Cf::Address {
                table.set_bloom_filter(10.0, false);
            }
            let mut cf_options = rocksdb::Options::default();
            cf_options.set_block_based_table_factory(&table);
            rocksdb::ColumnFamilyDescriptor::new(cf.name(), cf_options)
        });
        let db = rocksdb::DB::open_cf_descriptors(&options, dir, cfs)?;
        let store = Self { db, path: dir.display().to_string() };
        match store.get(Cf::Meta, META_FORMAT)? {
            None => {
                let mut batch = Batch::new();
                batch.put(Cf::Meta, META_FORMAT, FORMAT_VERSION.to_le_bytes());
                batch.put(Cf::Meta, META_NETWORK, network.as_bytes());
                store.write(batch)?;
            }
            Some(bytes) => {
                let found =
                    bytes.try_into().map(u32::from_le_bytes).map_err(|_| StoreError::Corrupt("format"))?;
                if found != FORMAT_VERSION {
                    return Err(StoreError::Format { found, path: store.path.clone() });
                }
                let stored = store.get(Cf::Meta, META_NETWORK)?.unwrap_or_default();
                if stored != network.as_bytes() {
                    return Err(StoreError::Network {
                        found: String::from_utf8_lossy(&stored).into_owned(),
                        expected: network.to_owned(),
                        path: store.path.clone(),
                    });
                }
            }
        }
        Ok(store)
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(cf.name()).expect("every column family is opened")
    }
}

impl Store for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Pairs, StoreError> {
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }
    fn for_each(&self, cf: Cf, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.cf(cf), rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            f(&key, &value);
        }
        Ok(())
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        // RocksDB's encoding adds a header and at most a tag, a family id
        // and two lengths per change: reserved at once, not regrown.
        let mut write =
            rocksdb::WriteBatch::with_capacity_bytes(batch.bytes.len() + 12 * batch.ops.len() + 12);
        // A family's handle is looked up by name: once per batch, not per key.
        let handles = Cf::ALL.map(|cf| self.cf(cf));
        for (cf, key, value) in batch.changes() {
            let handle = handles[cf as usize];
            match value {
                Some(value) => write.put_cf(handle, key, value),
                None => write.delete_cf(handle, key),
            }
        }
        // The write-ahead log makes the batch durable against a killed
        // process as soon as this returns.
        Ok(self.db.write(write)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(store: &dyn Store, cf: Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        store.for_each(cf, &mut |k, v| out.push((k.to_vec(), v.to_vec()))).expect("read");
        out
    }

    #[test]
    fn each_column_family_sits_at_its_own_index() {
        assert!(Cf::ALL.iter().enumerate().all(|(i, &cf)| cf as usize == i));
    }

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
