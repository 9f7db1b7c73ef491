//! Fixtures for the rule tests: deterministic keys, coins, signed
//! transactions and regtest blocks with real proof of work.

use std::collections::HashMap;

use secp256k1::{Keypair, Secp256k1, SecretKey};

use crate::amount::Amount;
use crate::block::{Block, BlockHeader};
use crate::check::Coin;
use crate::hash::{BlockHash, Txid};
use crate::merkle::block_merkle_root;
use crate::params::{Network, Params};
use crate::sighash::sign_inputs;
use crate::transaction::{Lock, OutPoint, Transaction, TxIn, TxOut, SEQUENCE_FINAL};

pub fn params() -> Params {
    Network::Regtest.params()
}

pub fn keypair(n: u8) -> Keypair {
    let mut secret = [0u8; 32];
    secret[31] = n.max(1);
    secret[0] = 0x11;
    Keypair::from_secret_key(&Secp256k1::new(), &SecretKey::from_byte_array(&secret).expect("valid key"))
}

pub fn lock(n: u8) -> Lock {
    Lock::key(keypair(n).x_only_public_key().0.serialize())
}

pub fn coins(units: u64) -> Amount {
    Amount::from_base_units(units).expect("in range")
}

/// A spendable (mature, non-coinbase) coin of `units` locked to key `n`.
pub fn coin(units: u64, n: u8, height: u32) -> Coin {
    Coin {
        output: TxOut { amount: coins(units), lock: lock(n) },
        height: crate::Height::new(height),
        is_coinbase: false,
    }
}

pub fn outpoint(tag: u8, index: u32) -> OutPoint {
    OutPoint { txid: Txid::from_byte_array([tag; 32]), index }
}

/// A transaction spending `spent` (all locked to key `n`) to `outputs`, signed.
pub fn signed_tx(spent: &[(OutPoint, Coin)], outputs: Vec<TxOut>, n: u8, params: &Params) -> Transaction {
    let mut tx = Transaction {
        version: 1,
        inputs: spent.iter().map(|(outpoint, _)| TxIn::spending(*outpoint)).collect(),
        outputs,
        lock_time: 0,
    };
    sign(&mut tx, spent, n, params);
    tx
}

pub fn sign(tx: &mut Transaction, spent: &[(OutPoint, Coin)], n: u8, params: &Params) {
    let outputs: Vec<&TxOut> = spent.iter().map(|(_, c)| &c.output).collect();
    sign_inputs(&Secp256k1::new(), tx, &outputs, params.genesis_hash, &keypair(n), &[7; 32]);
}

pub fn coinbase(height: u32, outputs: Vec<TxOut>) -> Transaction {
    let mut data = height.to_le_bytes().to_vec();
    data.extend_from_slice(b"test");
    Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint::NULL,
            data,
            sequence: SEQUENCE_FINAL,
            witness: crate::Witness::new(),
        }],
        outputs,
        lock_time: 0,
    }
}

/// Sets the merkle root and finds a nonce meeting the header's target.
pub fn finish(block: &mut Block) {
    block.header.merkle_root = block_merkle_root(block).root;
    mine(&mut block.header);
}

pub fn mine(header: &mut BlockHeader) {
    let target = header.bits.to_target().expect("valid bits");
    while !target.is_met_by(header.block_hash()) {
        header.nonce += 1;
    }
}

/// A mined regtest block at `height` with the given transactions after a
/// coinbase paying `coinbase_units` to key 1.
pub fn block(params: &Params, height: u32, coinbase_units: u64, txs: Vec<Transaction>) -> Block {
    let mut transactions =
        vec![coinbase(height, vec![TxOut { amount: coins(coinbase_units), lock: lock(1) }])];
    transactions.extend(txs);
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_block: BlockHash::ZERO,
            merkle_root: crate::hash::MerkleRoot::ZERO,
            time: 1_800_000_000,
            bits: params.genesis.header.bits,
            nonce: 0,
        },
        transactions,
    };
    finish(&mut block);
    block
}

pub fn view(entries: &[(OutPoint, Coin)]) -> HashMap<OutPoint, Coin> {
    entries.iter().cloned().collect()
}
