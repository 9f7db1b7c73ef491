//! # cairn-node
//!
//! The full node: chain store, validation pipeline, mempool, peer-to-peer
//! networking, JSON-RPC and built-in mining. Not built yet: see the open
//! issues "The full node" and "The network". The consensus rules it will
//! apply are complete in `cairn-consensus`.
