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
    /// Every column family.
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
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<(Cf, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `key` to `value`.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), Some(value.into())));
    }
    /// Removes `key`.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), None));
    }
    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
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
        for (cf, key, value) in batch.ops {
            match value {
                Some(value) => maps.insert((cf, key), value),
                None => maps.remove(&(cf, key)),
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
        let cfs =
            Cf::ALL.map(|cf| rocksdb::ColumnFamilyDescriptor::new(cf.name(), rocksdb::Options::default()));
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
        let mut write = rocksdb::WriteBatch::default();
        for (cf, key, value) in batch.ops {
            match value {
                Some(value) => write.put_cf(self.cf(cf), key, value),
                None => write.delete_cf(self.cf(cf), key),
            }
        }
        // The write-ahead log makes the batch durable against a killed
        // process as soon as this returns.
        Ok(self.db.write(write)?)
    }
}
