//! The Cairn full node: chain store, validation and chain selection,
//! mempool, the peer-to-peer network, JSON-RPC and built-in mining.

pub mod chain;
pub mod files;
pub mod mempool;
pub mod records;
pub mod store;
pub mod template;

pub mod mining;
pub mod node;
pub mod p2p;
mod prepare;
pub mod rpc;
pub mod sigcache;
#[cfg(test)]
mod tests;
