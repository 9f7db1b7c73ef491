//! # cairn-consensus
//!
//! The rules every Cairn node agrees on, and nothing else: no I/O, no clock,
//! no threads. A node, a miner and a wallet all build on it, so a rule lives
//! in exactly one place.
//!
//! How the modules fit together:
//!
//! - [`encode`]: the canonical byte encoding (`Encode`/`Decode`, CompactSize),
//!   used by [`block`] (headers, blocks) and [`transaction`].
//! - [`hash`]: SHA-256d, tagged hashes and the hash newtypes; [`amount`]:
//!   money with checked arithmetic.
//! - [`pow`]: 256-bit integers, compact targets, targets and chain work;
//!   [`asert`]: the aserti3-2d schedule; [`chain`]: header rules (proof of
//!   work, bits, median time past, future bound) over a [`chain::HeaderAncestry`].
//! - [`merkle`]: Bitcoin's merkle tree with mutation detection.
//! - [`sighash`]: the message each input signs, signing and verifying;
//!   [`field`]: whether 32 bytes are a valid x-only key, by Legendre symbol.
//! - [`check`]: transaction and block rules, and [`check::connect_block`],
//!   which checks a block against a [`check::UtxoView`] and returns the UTXO
//!   changes that are also its undo data.
//! - [`params`]: the networks, their parameters and genesis blocks;
//!   [`address`]: bech32m addresses.
//! - [`error`]: one error variant per rule.
//! - [`policy`]: relay and wallet policy (fee rates, dust), which node and
//!   wallet share but blocks do not obey.
//!
//! The written specification is `docs/protocol.md`.

pub mod address;
pub mod amount;
pub mod asert;
pub mod block;
pub mod chain;
pub mod check;
pub mod encode;
pub mod error;
pub mod field;
pub mod hash;
pub mod height;
pub mod merkle;
pub mod params;
pub mod policy;
pub mod pow;
pub mod sighash;
pub mod transaction;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError, COIN, MAX_MONEY};
pub use block::{Block, BlockHeader, HEADER_SIZE, MAX_BLOCK_SIZE};
pub use encode::{Decode, DecodeError, Encode};
pub use error::{BlockError, HeaderError, TxError};
pub use hash::{BlockHash, MerkleRoot, Txid, Wtxid};
pub use height::Height;
pub use params::{Network, Params};
pub use pow::{CompactTarget, Target, Work, U256};
pub use transaction::{Lock, OutPoint, Transaction, TxIn, TxOut, Witness};

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod testkit;
