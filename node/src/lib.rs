//! The Cairn full node: chain store, validation and chain selection,
//! mempool, the peer-to-peer network, JSON-RPC and built-in mining. The
//! rules themselves live in `cairn-consensus`; this crate stores, orders,
//! parallelises and serves them.
//!
//! How the modules fit together:
//!
//! - [`store`]: the `Store` trait (RocksDB on disk, a map in memory for
//!   tests), its column families and atomic batches; [`records`]: the
//!   node's own record encodings and keys in it.
//! - [`chain`]: the block index, headers first, body checks, connecting and
//!   disconnecting blocks one batch each, the most-work chain, orphans and
//!   invalid blocks; its parallel parts (coin reads, signature
//!   verification) sit in a private `prepare` module, and [`sigcache`]
//!   remembers the signatures the mempool verified so that blocks of
//!   transactions already seen do not verify them again.
//! - [`mempool`]: fee-rate ordering, the size cap, replace-by-fee, orphans;
//!   [`template`] builds blocks from it and [`mining`] solves them with
//!   `cairn-miner`.
//! - [`node`]: the shared state (chain and mempool behind one lock) that
//!   [`rpc`] (JSON-RPC over HTTP) and [`p2p`] (the libp2p actor) work
//!   through; [`files`]: the small files of the data directory.

pub mod chain;
pub mod failpoint;
pub mod files;
pub mod limits;
pub mod mempool;
pub mod records;
pub mod store;
pub mod template;

#[cfg(test)]
mod address_rpc_tests;
#[cfg(test)]
mod fault_tests;
pub mod mining;
pub mod node;
pub mod p2p;
mod prepare;
#[cfg(test)]
mod reorg_tests;
pub mod rpc;
pub mod sigcache;
#[cfg(test)]
mod tests;
