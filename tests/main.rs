//! Whole-system tests for Cairn, one test binary with a module per concern.
//!
//! The vector modules read the published test data in `../shared/vectors`
//! (or `$CAIRN_VECTORS`) in place and check every case; a missing file
//! fails the test loudly.

mod adversary;
mod correctness;
mod limp;
mod miner;
mod network;
mod node;
mod project_vectors;
mod soak;
mod support;
mod vectors;
mod wallet;
