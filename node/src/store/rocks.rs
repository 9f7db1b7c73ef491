//! The chain store on disk, in RocksDB (the `rocksdb` feature, on by
//! default; the fuzz targets build the node without it).

use std::path::Path;

use super::{Batch, Cf, Pairs, Store, StoreError, FORMAT_VERSION};

impl From<rocksdb::Error> for StoreError {
    fn from(error: rocksdb::Error) -> Self {
        Self::Db(error.to_string())
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
