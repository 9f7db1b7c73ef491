//! Every case of every published vector file that concerns consensus.

pub mod asert;
mod bech32;
mod bip340;
mod genesis;
mod headers;
mod merkle;
mod pow;
