//! Consensus hot paths: header hashing, transaction and block decoding, and
//! signature verification through the crate next to raw `secp256k1` in the
//! same run (the ratio is the crate's overhead).
//!
//! `cargo bench --bench consensus`; figures and method in docs/performance.md.

use std::time::Duration;

use cairn_consensus::check::{check_inputs, Coin};
use cairn_consensus::sighash::{sign_inputs, SighashCache, SignatureCheck};
use cairn_consensus::transaction::{Lock, OutPoint, Transaction, TxIn, TxOut};
use cairn_consensus::{Amount, Block, Decode, Encode, Height, Network, Txid};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use secp256k1::{schnorr, Keypair, Secp256k1, SecretKey, XOnlyPublicKey};

fn keypair(byte: u8) -> Keypair {
    Keypair::from_secret_key(&Secp256k1::new(), &SecretKey::from_byte_array(&[byte; 32]).expect("valid key"))
}

/// A signed one-input, two-output transaction spending `prevout`.
fn one_in_two_out(
    prevout: OutPoint,
    owner: &Keypair,
    genesis: cairn_consensus::BlockHash,
) -> (Transaction, Coin) {
    let key = owner.x_only_public_key().0.serialize();
    let coin = Coin {
        output: TxOut { amount: Amount::from_coins(1), lock: Lock::key(key) },
        height: Height::new(1),
        is_coinbase: false,
    };
    let half = Amount::from_base_units(49_000_000).expect("in range");
    let mut tx = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout,
            data: Vec::new(),
            sequence: u32::MAX,
            witness: cairn_consensus::Witness::new(),
        }],
        outputs: vec![
            TxOut { amount: half, lock: Lock::key(key) },
            TxOut { amount: half, lock: Lock::key(key) },
        ],
        lock_time: 0,
    };
    sign_inputs(&Secp256k1::new(), &mut tx, &[&coin.output], genesis, owner, &[1; 32]);
    (tx, coin)
}

fn bench(c: &mut Criterion) {
    let params = Network::Regtest.params();
    let owner = keypair(0x42);
    let secp = Secp256k1::verification_only();

    let header = params.genesis.header;
    c.bench_function("header_hash", |b| b.iter(|| std::hint::black_box(header).block_hash()));

    let txs: Vec<(Transaction, Coin)> = (0..200u32)
        .map(|i| {
            let mut txid = [0u8; 32];
            txid[..4].copy_from_slice(&i.to_le_bytes());
            one_in_two_out(
                OutPoint { txid: Txid::from_byte_array(txid), index: 0 },
                &owner,
                params.genesis_hash,
            )
        })
        .collect();
    let tx_bytes = txs[0].0.encode();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(tx_bytes.len() as u64));
    group.bench_function("transaction", |b| b.iter(|| Transaction::decode(std::hint::black_box(&tx_bytes))));
    let block = Block {
        header: params.genesis.header,
        transactions: std::iter::once(params.genesis.transactions[0].clone())
            .chain(txs.iter().map(|(tx, _)| tx.clone()))
            .collect(),
    };
    let block_bytes = block.encode();
    group.throughput(Throughput::Bytes(block_bytes.len() as u64));
    group.bench_function("block_200_txs", |b| b.iter(|| Block::decode(std::hint::black_box(&block_bytes))));
    group.finish();

    // Signature verification: raw library call with a parsed key, versus the
    // crate's SignatureCheck (parses the key from bytes each time), versus the
    // whole contextual input check (digests, message, amounts) plus verify.
    let (tx, coin) = &txs[0];
    let message = SighashCache::new(tx, &[&coin.output], params.genesis_hash).message(0);
    let signature: [u8; 64] = tx.inputs[0].witness[0].try_into().expect("64 bytes");
    let key_bytes = owner.x_only_public_key().0.serialize();
    let key = XOnlyPublicKey::from_byte_array(&key_bytes).expect("valid");
    let sig = schnorr::Signature::from_byte_array(signature);
    let check = SignatureCheck { input: 0, message, signature, key: key_bytes };
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_secp256k1", |b| {
        b.iter(|| secp.verify_schnorr(std::hint::black_box(&sig), &message, &key).is_ok())
    });
    group.bench_function("raw_secp256k1_parse_key_and_verify", |b| {
        b.iter(|| {
            let key = XOnlyPublicKey::from_byte_array(std::hint::black_box(&key_bytes)).expect("valid");
            secp.verify_schnorr(&sig, &message, &key).is_ok()
        })
    });
    group.bench_function("signature_check", |b| b.iter(|| std::hint::black_box(&check).verify(&secp)));
    group.bench_function("check_inputs_and_verify", |b| {
        b.iter_batched(
            || std::slice::from_ref(coin),
            |coins| {
                let checked = check_inputs(tx, coins, Height::new(200), 0, &params).expect("valid");
                checked.signatures.iter().all(|c| c.verify(&secp))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // The output-key check every created output pays: lift_x (a square
    // root) against the Legendre symbol that is_valid_key uses, over the
    // same 256 keys, about half of them valid (SHA-256 of a counter).
    let keys: Vec<[u8; 32]> = (0u32..256).map(|i| cairn_consensus::hash::sha256(&i.to_le_bytes())).collect();
    let mut group = c.benchmark_group("output_key_check");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("lift_x", |b| {
        b.iter(|| {
            keys.iter().filter(|k| XOnlyPublicKey::from_byte_array(std::hint::black_box(k)).is_ok()).count()
        })
    });
    group.bench_function("legendre_symbol", |b| {
        b.iter(|| {
            keys.iter().filter(|k| cairn_consensus::sighash::is_valid_key(std::hint::black_box(k))).count()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
