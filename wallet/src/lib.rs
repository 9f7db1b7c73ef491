//! # cairn-wallet
//!
//! Keys, addresses, coin selection, transaction building and signing. Not
//! built yet: see the open issue "The wallet". Signing goes through
//! `cairn_consensus::sighash`, the same code that verifies.
