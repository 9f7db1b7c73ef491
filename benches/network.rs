//! The network on this machine, with real `cairn-node` processes on
//! 127.0.0.1, each figure against a baseline from the same run:
//!
//! - sync: the time a fresh node takes to sync a chain with transactions
//!   from one peer, against the time the same code takes to validate the
//!   same blocks from local storage (an in-process chain on RocksDB), for a
//!   light chain (a payment every fifth block) and a loaded one (20
//!   payments in every block);
//! - propagation: how long a block mined at one end of a line of four
//!   nodes takes to be the tip at the other end: empty blocks, and blocks of
//!   200 transactions already relayed, with the signature cache on and off.
//!
//! `cargo bench --bench network` (5,000 blocks); `-- --blocks N` for another
//! length, `--per-block N` for the loaded chain's payments, `--only light`
//! (or `loaded`, `propagation`) for one part. `CAIRN_BENCH_KEEP_LOG=FILE`
//! keeps the syncing node's log (with `RUST_LOG=info,cairn_node::sync=trace`
//! it is a timeline of the sync). Figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_consensus::{Block, Decode, Network, Params};
use cairn_node::chain::Chain;
use cairn_node::store::RocksStore;
use serde_json::json;

#[allow(dead_code)]
#[path = "../tests/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "../tests/network.rs"]
mod network;

use network::{address, fixed, mine_with_transactions, tip};
use support::NodeProcess;

fn arg(name: &str, default: u64) -> u64 {
    std::env::args().skip_while(|a| a != name).nth(1).map_or(default, |v| v.parse().expect("a number"))
}

/// Coins of one key that pay themselves on, one one-in-one-out payment each
/// per round.
struct Payer {
    key: secp256k1::Keypair,
    coins: Vec<(cairn_consensus::OutPoint, cairn_consensus::TxOut)>,
}

impl Payer {
    /// Mines 101 blocks on `rpc` and then one that splits the first
    /// coinbase into `count` coins.
    fn split(rpc: &support::Rpc, count: u32) -> Self {
        use cairn_consensus::{Amount, OutPoint, Transaction, TxIn, TxOut};
        rpc.ok("generatetoaddress", json!([101, address(1)]));
        let key = network::keypair(1);
        let coinbase = network::block_at(rpc, 1).transactions[0].clone();
        let share =
            Amount::from_base_units(coinbase.outputs[0].amount.to_base_units() / u64::from(count) - 1_000)
                .expect("share");
        let mut split = Transaction {
            version: 1,
            inputs: vec![TxIn::spending(OutPoint { txid: coinbase.txid(), index: 0 })],
            outputs: vec![TxOut { amount: share, lock: Self::lock(&key) }; count as usize],
            lock_time: 0,
        };
        Self::sign(&key, &mut split, &coinbase.outputs[0]);
        network::send(rpc, &split);
        rpc.ok("generatetoaddress", json!([1, address(1)]));
        let coins = (0..count)
            .map(|i| (OutPoint { txid: split.txid(), index: i }, split.outputs[i as usize].clone()))
            .collect();
        Self { key, coins }
    }

    fn lock(key: &secp256k1::Keypair) -> cairn_consensus::Lock {
        cairn_consensus::Lock::key(key.x_only_public_key().0.serialize())
    }

    fn sign(key: &secp256k1::Keypair, tx: &mut cairn_consensus::Transaction, spent: &cairn_consensus::TxOut) {
        let genesis = Params::for_network(Network::Regtest).genesis_hash;
        cairn_consensus::sighash::sign_inputs(
            &secp256k1::Secp256k1::new(),
            tx,
            &[spent],
            genesis,
            key,
            &[1; 32],
        );
    }

    /// Sends `rpc` one payment per coin, each paying 300 units of fee to
    /// the key itself, and keeps the new coins.
    fn pay_round(&mut self, rpc: &support::Rpc) {
        use cairn_consensus::{Amount, OutPoint, Transaction, TxIn, TxOut};
        let lock = Self::lock(&self.key);
        for (outpoint, output) in &mut self.coins {
            let mut tx = Transaction {
                version: 1,
                inputs: vec![TxIn::spending(*outpoint)],
                outputs: vec![TxOut {
                    amount: Amount::from_base_units(output.amount.to_base_units() - 300).expect("amount"),
                    lock: lock.clone(),
                }],
                lock_time: 0,
            };
            Self::sign(&self.key, &mut tx, output);
            network::send(rpc, &tx);
            *outpoint = OutPoint { txid: tx.txid(), index: 0 };
            *output = tx.outputs[0].clone();
        }
    }
}

/// Builds a chain on `rpc` where every block after the first 102 carries
/// `per_block` one-in-one-out payments: block 102 splits a mature coinbase
/// into `per_block` coins, and each later block spends the coins the one
/// before it made.
fn mine_loaded(rpc: &support::Rpc, blocks: u64, per_block: u32) {
    let mut payer = Payer::split(rpc, per_block);
    for _ in 102..blocks {
        payer.pay_round(rpc);
        rpc.ok("generatetoaddress", json!([1, address(1)]));
    }
}

/// Syncs a fresh node from `a` and validates the same blocks locally;
/// prints both and their ratio.
fn measure_sync(a: &NodeProcess, name: &str) {
    let blocks = a.rpc.ok("getblockcount", json!([])).as_u64().expect("height");
    let hexes: Vec<String> = (1..=blocks)
        .map(|h| {
            let hash = a.rpc.ok("getblockhash", json!([h]));
            a.rpc.ok("getblock", json!([hash, 0])).as_str().expect("hex").to_owned()
        })
        .collect();
    let decoded: Vec<Block> =
        hexes.iter().map(|h| Block::decode(&hex::decode(h).expect("hex")).expect("block")).collect();
    let transactions: usize = decoded.iter().map(|b| b.transactions.len() - 1).sum();

    // Sync from the peer over 127.0.0.1.
    let dir_b = tempfile::tempdir().expect("tempdir");
    let b = NodeProcess::start(dir_b.path(), &["--no-discovery"]);
    let started = Instant::now();
    b.rpc.ok("addnode", json!([a.p2p_address(), "onetry"]));
    let target = tip(&a.rpc);
    while tip(&b.rpc) != target {
        std::thread::sleep(Duration::from_millis(2));
    }
    let sync = started.elapsed().as_secs_f64();
    if let Some(keep) = std::env::var_os("CAIRN_BENCH_KEEP_LOG") {
        std::fs::copy(dir_b.path().join("node.log"), keep).expect("copy the syncing node's log");
    }
    drop(b);

    // The same blocks validated from local storage by the same code.
    let dir_c = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let store = RocksStore::open(dir_c.path(), "regtest").expect("rocksdb");
    let mut chain = Chain::open(Arc::new(store), Params::for_network(Network::Regtest)).expect("open");
    for block in decoded {
        chain.submit_block(block, u64::from(u32::MAX)).expect("valid");
    }
    let local = started.elapsed().as_secs_f64();
    drop(chain);

    println!("{name}: sync of {blocks} blocks ({transactions} transactions) from one peer on 127.0.0.1:");
    println!(
        "  over the network (connect to same tip):    {sync:.2} s, {:.0} blocks/s",
        blocks as f64 / sync
    );
    println!(
        "  from local storage, same code:             {local:.2} s, {:.0} blocks/s",
        blocks as f64 / local
    );
    println!("  ratio network / local: {:.2} (goal: at most 1.3)", sync / local);
}

/// Whether `--only` leaves `part` in (light, loaded or propagation).
fn wanted(part: &str) -> bool {
    std::env::args().skip_while(|a| a != "--only").nth(1).is_none_or(|only| only == part)
}

fn main() {
    let blocks = arg("--blocks", 5_000);
    let rounds = arg("--rounds", 20);
    let per_block = arg("--per-block", 20) as u32;

    if wanted("light") {
        let dir_a = tempfile::tempdir().expect("tempdir");
        let a = fixed(dir_a.path(), &[]);
        eprintln!("mining {blocks} blocks with a payment every fifth block...");
        mine_with_transactions(&a.rpc, blocks);
        measure_sync(&a, "light chain");
    }
    if wanted("loaded") {
        let dir_a = tempfile::tempdir().expect("tempdir");
        let a = fixed(dir_a.path(), &[]);
        eprintln!("mining {blocks} blocks with {per_block} payments each...");
        mine_loaded(&a.rpc, blocks, per_block);
        measure_sync(&a, "loaded chain");
    }
    if !wanted("propagation") {
        return;
    }

    // Propagation along a line of four.
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let [first, second, _third, last] = network::line_of_four(&dirs);
    first.rpc.ok("generatetoaddress", json!([1, address(1)]));
    while tip(&last.rpc) != tip(&first.rpc) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut delays = Vec::new();
    let mut hop = Vec::new();
    for _ in 0..rounds {
        let (mined, at) = mine_one(&first.rpc);
        hop.push(ms_until_tip(&second.rpc, &mined, at));
        delays.push(ms_until_tip(&last.rpc, &mined, at));
    }
    delays.sort_by(f64::total_cmp);
    hop.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v[v.len() / 2];
    println!("block propagation across a line of 4 nodes ({rounds} blocks):");
    println!(
        "  three hops: median {:.1} ms, worst {:.1} ms; first hop: median {:.1} ms",
        median(&delays),
        delays[delays.len() - 1],
        median(&hop)
    );
    drop([first, second, _third, last]);

    // Full blocks whose transactions crossed the line first, as on a live
    // network: with the signature cache, and with it turned off.
    let full_rounds = rounds.min(10);
    println!(
        "propagation of blocks of {FULL_BLOCK} transactions already relayed, across a line of 4 nodes ({full_rounds} blocks):"
    );
    for (how, extra) in
        [("signature cache on", &[][..]), ("signature cache off", &["--sig-cache-entries", "0"][..])]
    {
        let mut delays = loaded_propagation(full_rounds, extra);
        delays.sort_by(f64::total_cmp);
        println!(
            "  {how}: three hops median {:.1} ms, worst {:.1} ms",
            median(&delays),
            delays[delays.len() - 1]
        );
    }
}

/// Mines a block at `miner`; returns its hash and when the miner had it.
fn mine_one(miner: &support::Rpc) -> (serde_json::Value, Instant) {
    let mined = miner.ok("generatetoaddress", json!([1, address(1)]));
    (mined[0].clone(), Instant::now())
}

/// Milliseconds from `since` until `node`'s tip is `hash`.
fn ms_until_tip(node: &support::Rpc, hash: &serde_json::Value, since: Instant) -> f64 {
    while tip(node) != *hash {
        std::thread::sleep(Duration::from_micros(500));
    }
    since.elapsed().as_secs_f64() * 1e3
}

/// Transactions in each block of the full-block propagation measurement.
const FULL_BLOCK: u32 = 200;

/// A line of four nodes started with `extra`; `rounds` times, sends
/// `FULL_BLOCK` payments to the first node, waits until the last has them
/// all in its mempool, mines them into a block at the first node and times
/// the block until it is the last node's tip. Milliseconds, per round.
fn loaded_propagation(rounds: u64, extra: &[&str]) -> Vec<f64> {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let [first, _second, _third, last] = network::line_of_four_with(&dirs, extra);
    let mut payer = Payer::split(&first.rpc, FULL_BLOCK);
    network::wait_until(60, "the last node to follow", || tip(&last.rpc) == tip(&first.rpc));
    let mut delays = Vec::new();
    for _ in 0..rounds {
        payer.pay_round(&first.rpc);
        network::wait_until(60, "the payments to reach the last node", || {
            last.rpc.ok("getmempoolinfo", json!([]))["size"] == json!(FULL_BLOCK)
        });
        let (mined, at) = mine_one(&first.rpc);
        delays.push(ms_until_tip(&last.rpc, &mined, at));
        let height = last.rpc.ok("getblockcount", json!([])).as_u64().expect("height");
        let block = network::block_at(&last.rpc, height);
        assert_eq!(block.transactions.len(), FULL_BLOCK as usize + 1, "the block carries every payment");
        assert_eq!(last.rpc.ok("getmempoolinfo", json!([]))["size"], 0, "the block confirmed the mempool");
    }
    delays
}
