//! Policy, not consensus: what nodes relay and mine and what wallets build,
//! so that the two agree. A block may break any of these and still be
//! valid; a transaction that breaks one is not relayed.
//!
//! Fee rates are base units per byte of the full encoding (witnesses
//! included). The numbers and their reasons are in `docs/protocol.md`
//! (policy section) and `docs/operations.md`.

/// Least fee rate relayed and mined, in base units per byte.
pub const MIN_RELAY_FEE_RATE: u64 = 1;

/// Fee rate a replacement, or a transaction entering a pool that evicted,
/// must add, in base units per byte.
pub const INCREMENTAL_FEE_RATE: u64 = 1;

/// Smallest output amount relayed, in base units: about what spending it
/// costs at three times the minimum fee rate (a 100-byte input).
pub const DUST_LIMIT: u64 = 300;

/// Largest transaction relayed, in bytes.
pub const MAX_STANDARD_TX_SIZE: usize = 100_000;

/// Confirmations after which a wallet counts a coinbase output as
/// spendable: one more than consensus needs (a coinbase of height h may be
/// spent in block h + 100, which has 101 confirmations on it), as
/// Bitcoin's wallet does, so a spend is never built for a block that a
/// one-block reorganisation would make premature.
pub const WALLET_COINBASE_CONFIRMATIONS: u32 = 101;
