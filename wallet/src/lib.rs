//! # cairn-wallet
//!
//! Keys, addresses, coin selection, transaction building and signing, and
//! the `cairn-wallet` tool that holds a person's Cairn tokens.
//!
//! How the modules fit together:
//!
//! - [`keys`]: the BIP-39 mnemonic and BIP-32 derivation along
//!   `m/44'/<coin type>'/0'/<chain>/<index>` to x-only keys and addresses.
//! - [`file`]: the wallet file, sealed at rest (Argon2id, XChaCha20-Poly1305)
//!   and written atomically.
//! - [`node`]: the node's JSON-RPC (its address index, mempool, fee
//!   estimate, broadcasting), the only way the wallet learns about coins.
//! - [`select`]: exact signed sizes, fees and coin selection, pure.
//! - [`wallet`]: the pieces together: scanning addresses with a gap limit,
//!   balances, history, building, signing and replacing transactions.
//!   Signing goes through `cairn_consensus::sighash`, the code that verifies.
//! - [`error`]: one error per thing that can go wrong, each saying what to do.

pub mod error;
pub mod file;
pub mod keys;
pub mod node;
pub mod select;
pub mod wallet;

pub use error::WalletError;
pub use wallet::{Balance, Built, SendAmount, View, Wallet};
