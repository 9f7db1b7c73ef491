//! # cairn-miner
//!
//! The SHA-256d nonce search core. Not built yet: see the open issue "The miner".
