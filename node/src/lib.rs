//! The Cairn full node: chain store, validation and chain selection,
//! mempool, JSON-RPC and built-in mining.

pub mod chain;
pub mod mempool;
pub mod records;
pub mod store;
pub mod template;

pub mod mining;
pub mod node;
mod prepare;
pub mod rpc;
#[cfg(test)]
mod tests;
