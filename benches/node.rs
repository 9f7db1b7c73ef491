//! Node throughput on this machine, each figure against a baseline measured
//! in the same run:
//!
//! - block connection: blocks of 200 one-in-two-out transactions connected
//!   into a RocksDB chain store on disk, one block per call (as
//!   `submitblock`) and in runs (as sync), and the signature checks per
//!   second that implies, against raw `secp256k1` verification on the same
//!   cores;
//! - mempool acceptance through `sendrawtransaction` over real HTTP
//!   JSON-RPC, against the same transactions checked in-process;
//! - following the tip through the node, one block at a time, with the
//!   blocks' transactions accepted into the mempool first (their
//!   signatures then come from the signature cache) against unseen blocks;
//! - the process's peak resident memory while connecting the blocks;
//! - what bounds that ratio, measured: the store alone (every read and
//!   write of a connection, replayed in order into a fresh RocksDB), and
//!   the whole connection with every signature already known valid (in
//!   the signature cache). With verification at raw speed on busy cores,
//!   connection reaches at most raw / (raw + that work) of raw.
//!
//! `cargo bench --bench node` (20 blocks); `cargo bench --bench node --
//! --blocks 2000` for the memory bound. Figures in docs/performance.md.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_consensus::check::SequentialVerifier;
use cairn_consensus::sighash::{sign_inputs, SighashCache, SignatureCheck};
use cairn_consensus::{Amount, Block, Encode, Lock, Network, OutPoint, Params, Transaction, TxIn, TxOut};
use cairn_miner::Kernel;
use cairn_node::chain::Chain;
use cairn_node::node::Node;
use cairn_node::store::{Batch, Cf, MemStore, Pairs, RocksStore, Store, StoreError};
use cairn_node::template::new_block;
use rayon::prelude::*;
use secp256k1::{Keypair, Secp256k1};

const TXS_PER_BLOCK: usize = 200;
const FAR_FUTURE: u64 = u32::MAX as u64;

fn solve(block: Block) -> Block {
    cairn_miner::solve(block, Kernel::best()).expect("template")
}

/// A regtest chain whose block 1 coinbase has `TXS_PER_BLOCK` outputs to
/// `key`, matured; and then `blocks` blocks of 200 transactions, each
/// spending the previous block's corresponding output into two outputs.
fn build(blocks: usize, key: &Keypair) -> (Vec<Block>, Vec<Block>) {
    let params = Params::for_network(Network::Regtest);
    let secp = Secp256k1::new();
    let lock = Lock::key(key.x_only_public_key().0.serialize());
    let mut chain = Chain::open(Arc::new(MemStore::new()), params.clone()).expect("open");
    let mut prefix = Vec::new();
    let mut time = u64::from(params.genesis.header.time);
    let mut first = new_block(&chain, &lock, Vec::new(), Amount::ZERO, time);
    let share = Amount::from_base_units(50 * 100_000_000 / TXS_PER_BLOCK as u64).expect("share");
    first.transactions[0].outputs = vec![TxOut { amount: share, lock: lock.clone() }; TXS_PER_BLOCK];
    first.header.merkle_root = cairn_consensus::merkle::block_merkle_root(&first).root;
    let first = solve(first);
    let mut coins: Vec<(OutPoint, Amount)> = (0..TXS_PER_BLOCK as u32)
        .map(|i| (OutPoint { txid: first.transactions[0].txid(), index: i }, share))
        .collect();
    chain.submit_block(first.clone(), FAR_FUTURE).expect("valid");
    prefix.push(first);
    for _ in 0..100 {
        time += 1;
        let block = solve(new_block(&chain, &lock, Vec::new(), Amount::ZERO, time));
        chain.submit_block(block.clone(), FAR_FUTURE).expect("valid");
        prefix.push(block);
    }
    let fee = Amount::from_base_units(500).expect("fee");
    let mut body = Vec::new();
    for _ in 0..blocks {
        let txs: Vec<Transaction> = coins
            .par_iter()
            .map(|(outpoint, value)| {
                let change = value
                    .checked_sub(fee)
                    .and_then(|v| v.checked_sub(Amount::from_base_units(1_000).expect("1000")))
                    .expect("value");
                let mut tx = Transaction {
                    version: 1,
                    inputs: vec![TxIn::spending(*outpoint)],
                    outputs: vec![
                        TxOut { amount: change, lock: lock.clone() },
                        TxOut { amount: Amount::from_base_units(1_000).expect("1000"), lock: lock.clone() },
                    ],
                    lock_time: 0,
                };
                let spent = TxOut { amount: *value, lock: lock.clone() };
                sign_inputs(&secp, &mut tx, &[&spent], params.genesis_hash, key, &[1; 32]);
                tx
            })
            .collect();
        coins = txs.iter().map(|tx| (OutPoint { txid: tx.txid(), index: 0 }, tx.outputs[0].amount)).collect();
        let fees = Amount::from_base_units(500 * TXS_PER_BLOCK as u64).expect("fees");
        time += 1;
        let block = solve(new_block(&chain, &lock, txs, fees, time));
        chain.submit_block(block.clone(), FAR_FUTURE).expect("valid");
        body.push(block);
    }
    (prefix, body)
}

/// Every signature check of `body`'s transactions exactly as the chain
/// makes it: each spends an output of block 1's coinbase (`first`) or of
/// an earlier `body` block.
fn signature_checks(first: &Block, body: &[Block]) -> Vec<SignatureCheck> {
    let genesis = Params::for_network(Network::Regtest).genesis_hash;
    let mut outputs: HashMap<OutPoint, TxOut> = HashMap::new();
    let mut checks = Vec::with_capacity(body.len() * TXS_PER_BLOCK);
    for tx in std::iter::once(&first.transactions[0]).chain(body.iter().flat_map(|b| &b.transactions[1..])) {
        if !tx.is_coinbase() {
            let spent = &outputs[&tx.inputs[0].prevout];
            checks.push(SignatureCheck {
                input: 0,
                message: SighashCache::new(tx, &[spent], genesis).message(0),
                signature: tx.inputs[0].witness[0].try_into().expect("64 bytes"),
                key: spent.lock.key_bytes().expect("a key lock"),
            });
        }
        let txid = tx.txid();
        for (index, output) in tx.outputs.iter().enumerate() {
            outputs.insert(OutPoint { txid, index: index as u32 }, output.clone());
        }
    }
    checks
}

/// Raw verifications per second on every core of `checks`, keys parsed
/// inside the loop as the node does.
fn raw_verify_rate(checks: &[SignatureCheck]) -> f64 {
    let secp = Secp256k1::verification_only();
    let started = Instant::now();
    let valid = checks
        .par_iter()
        .filter(|check| {
            let key = secp256k1::XOnlyPublicKey::from_byte_array(&check.key).expect("key");
            let signature = secp256k1::schnorr::Signature::from_byte_array(check.signature);
            secp.verify_schnorr(&signature, &check.message, &key).is_ok()
        })
        .count();
    assert_eq!(valid, checks.len(), "every signature of the bench's blocks is valid");
    checks.len() as f64 / started.elapsed().as_secs_f64()
}

/// CPU time this process has used so far (user + system, all threads), in
/// seconds, from /proc/self/stat (fields 14 and 15, in clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// A memory figure of this process from /proc, in KiB: `VmRSS` (now) or
/// `VmHWM` (peak).
fn memory_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Blocks per call in the run measurement (sync connects up to 32 blocks
/// or 256 KiB per call; these blocks are about 40 KB).
const RUN: usize = 6;

/// What one connection measurement found.
struct Connected {
    elapsed: f64,
    cpu: Option<f64>,
    /// Resident memory at its highest while connecting (sampled every 8 calls).
    rss_peak: Option<u64>,
    /// Microseconds per read of an unspent coin, and of a spent one, afterwards.
    lookups: (f64, f64),
}

/// Connects `prefix` and then, timed, `body` into a fresh RocksDB chain
/// store, `run` blocks per call.
fn connect(prefix: &[Block], body: &[Block], run: usize) -> Connected {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path(), "regtest").expect("rocksdb");
    let (chain, connected) = connect_into(Arc::new(store), prefix, body, run, |_| {});
    Connected { lookups: coin_lookups(&chain, body), ..connected }
}

/// Connects `prefix` into `store`, calls `timed` with the chain (the timed part starts),
/// then connects `body`, `run` blocks per call. The chain comes back with
/// the figures, `lookups` not measured (zero).
fn connect_into(
    store: Arc<dyn Store>,
    prefix: &[Block],
    body: &[Block],
    run: usize,
    timed: impl FnOnce(&Chain),
) -> (Chain, Connected) {
    let mut chain = Chain::open(store, Params::for_network(Network::Regtest)).expect("open");
    for block in prefix {
        chain.submit_block(block.clone(), FAR_FUTURE).expect("valid");
    }
    timed(&chain);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut rss_peak = memory_kib("VmRSS:");
    for (i, blocks) in body.chunks(run).enumerate() {
        if i % 8 == 0 {
            rss_peak = rss_peak.max(memory_kib("VmRSS:"));
        }
        if let [block] = blocks {
            chain.submit_block(block.clone(), FAR_FUTURE).expect("valid");
        } else {
            let (results, _) = chain.submit_blocks(blocks.to_vec(), FAR_FUTURE);
            assert!(results.iter().all(|(_, r)| r.is_ok()), "valid");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(cpu_seconds()).map(|(before, after)| after - before);
    let rss_peak = rss_peak.max(memory_kib("VmRSS:"));
    (chain, Connected { elapsed, cpu, rss_peak, lookups: (0.0, 0.0) })
}

/// Microseconds per UTXO read after the connection, over coins of every
/// age (each transaction's second output, never spent) and over spent
/// ones (each first output but the last block's): what a block spending
/// old coins, or an invalid one spending spent coins, pays per input.
fn coin_lookups(chain: &Chain, body: &[Block]) -> (f64, f64) {
    let outpoints = |index: u32, blocks: &[Block]| -> Vec<OutPoint> {
        blocks
            .iter()
            .flat_map(|b| b.transactions[1..].iter().map(move |tx| OutPoint { txid: tx.txid(), index }))
            .collect()
    };
    let time = |outpoints: &[OutPoint], present: bool| {
        let started = Instant::now();
        for outpoint in outpoints {
            assert_eq!(chain.coin(outpoint).expect("read").is_some(), present);
        }
        started.elapsed().as_secs_f64() * 1e6 / outpoints.len().max(1) as f64
    };
    (time(&outpoints(1, body), true), time(&outpoints(0, &body[..body.len() - 1]), false))
}

/// Connects `body` into a fresh RocksDB chain store, `run` blocks per
/// call, with every signature of `checks` already in the chain's
/// signature cache: the work of connection but signature verification.
/// Returns the figures and the cache's signature hits.
fn connect_known(
    prefix: &[Block],
    body: &[Block],
    run: usize,
    checks: &[SignatureCheck],
) -> (Connected, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path(), "regtest").expect("rocksdb");
    let fill = |chain: &Chain| chain.signature_cache().insert(checks);
    let (chain, connected) = connect_into(Arc::new(store), prefix, body, run, fill);
    (connected, chain.signature_cache().hits())
}

/// One store operation of a connection, as the chain made it.
#[derive(Debug)]
enum StoreOp {
    Get(Cf, Vec<u8>),
    Write(Batch),
}

/// A RocksDB store that also keeps, in order, every point read and every
/// batch written through it, and where the timed part began.
#[derive(Debug)]
struct RecordingStore {
    inner: RocksStore,
    ops: Mutex<Vec<StoreOp>>,
    timed_from: Mutex<usize>,
}

impl RecordingStore {
    fn record(&self, op: StoreOp) {
        self.ops.lock().expect("not poisoned").push(op);
    }
}

impl Store for RecordingStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.record(StoreOp::Get(cf, key.to_vec()));
        self.inner.get(cf, key)
    }
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Pairs, StoreError> {
        self.inner.scan_prefix(cf, prefix)
    }
    fn for_each(&self, cf: Cf, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        self.inner.for_each(cf, f)
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.record(StoreOp::Write(batch.clone()));
        self.inner.write(batch)
    }
}

/// What the store alone costs for a connection of `body`, `run` blocks
/// per call: its reads and writes are recorded in an untimed connection,
/// then replayed in the same order on this thread into a fresh RocksDB,
/// the prefix's untimed. Returns wall and process CPU seconds (RocksDB's
/// own flush and compaction threads included).
fn store_alone(prefix: &[Block], body: &[Block], run: usize) -> (f64, Option<f64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = Arc::new(RecordingStore {
        inner: RocksStore::open(&dir.path().join("recorded"), "regtest").expect("rocksdb"),
        ops: Mutex::new(Vec::new()),
        timed_from: Mutex::new(0),
    });
    let mark = |_: &Chain| {
        *recording.timed_from.lock().expect("not poisoned") =
            recording.ops.lock().expect("not poisoned").len()
    };
    connect_into(recording.clone(), prefix, body, run, mark);
    let mut ops = std::mem::take(&mut *recording.ops.lock().expect("not poisoned"));
    let timed = ops.split_off(*recording.timed_from.lock().expect("not poisoned"));
    let replay = RocksStore::open(&dir.path().join("replayed"), "regtest").expect("rocksdb");
    let apply = |op: StoreOp| match op {
        StoreOp::Get(cf, key) => drop(std::hint::black_box(replay.get(cf, &key).expect("read"))),
        StoreOp::Write(batch) => replay.write(batch).expect("write"),
    };
    ops.into_iter().for_each(apply);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    timed.into_iter().for_each(apply);
    let elapsed = started.elapsed().as_secs_f64();
    (elapsed, cpu_before.zip(cpu_seconds()).map(|(before, after)| after - before))
}

/// A node on a RocksDB store in `dir`, at the end of `prefix`.
fn node_after(prefix: &[Block], dir: &std::path::Path) -> Node {
    let store = RocksStore::open(&dir.join("chain"), "regtest").expect("rocksdb");
    let node = Node::open(Arc::new(store), Params::for_network(Network::Regtest), dir).expect("node");
    for block in prefix {
        node.state().chain.submit_block(block.clone(), FAR_FUTURE).expect("valid");
    }
    node
}

/// Connects `body` one block per call through a node, as a block found or
/// relayed at the tip is, each block's transactions first accepted into
/// the mempool (untimed) when `mempool_first`. Returns the seconds spent
/// connecting and the cache's signature and transaction hits.
fn follow_tip(prefix: &[Block], body: &[Block], mempool_first: bool) -> (f64, u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node_after(prefix, dir.path());
    let mut elapsed = 0.0;
    for block in body {
        if mempool_first {
            for tx in &block.transactions[1..] {
                node.accept_transaction(tx.clone()).expect("acceptable");
            }
        }
        let started = Instant::now();
        let results = node.accept_blocks(vec![block.clone()]);
        elapsed += started.elapsed().as_secs_f64();
        assert!(results.iter().all(|(_, r)| r.is_ok()), "valid");
    }
    assert_eq!(node.state().mempool.len(), 0, "the blocks confirmed the mempool");
    let cache = std::sync::Arc::clone(node.state().chain.signature_cache());
    (elapsed, cache.hits(), cache.transaction_hits())
}

fn post(addr: std::net::SocketAddr, auth: &str, body: &str) -> String {
    use base64::Engine;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
        body.len(),
        base64::engine::general_purpose::STANDARD.encode(auth)
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn main() {
    let blocks: usize = std::env::args()
        .skip_while(|a| a != "--blocks")
        .nth(1)
        .map_or(20, |n| n.parse().expect("--blocks N"));
    let key = Keypair::from_seckey_slice(&Secp256k1::new(), &[42; 32]).expect("key");
    eprintln!("building {blocks} blocks of {TXS_PER_BLOCK} transactions...");
    let (prefix, body) = build(blocks, &key);
    let rss_before = memory_kib("VmRSS:");

    // Block connection into RocksDB on disk: one block per call as
    // submitblock and a mined block do, then in runs as sync does.
    let checks = signature_checks(&prefix[0], &body);
    let sample = &checks[..checks.len().min(20 * TXS_PER_BLOCK)];
    let raw = raw_verify_rate(sample);
    let single = connect(&prefix, &body, 1);
    let runs = connect(&prefix, &body, RUN);
    let raw = raw.max(raw_verify_rate(sample));
    let store = store_alone(&prefix, &body, RUN);
    // At most 500 blocks' checks, which the cache holds all of.
    let known_blocks = blocks.min(500);
    let known = connect_known(&prefix, &body[..known_blocks], RUN, &checks[..known_blocks * TXS_PER_BLOCK]);
    println!(
        "block connection (RocksDB, {} threads): {blocks} blocks of {TXS_PER_BLOCK} txs; raw secp256k1 verification on the same cores: {raw:.0}/s",
        rayon::current_num_threads()
    );
    for (how, measured) in [("one block per call", &single), (&*format!("runs of {RUN} blocks"), &runs)] {
        let sigs = (blocks * TXS_PER_BLOCK) as f64 / measured.elapsed;
        println!(
            "  {how}: {:.3} s, {:.1} blocks/s, {sigs:.0} signature checks/s = {:.2} of raw",
            measured.elapsed,
            blocks as f64 / measured.elapsed,
            sigs / raw
        );
        if let Some(cpu) = measured.cpu {
            println!(
                "    CPU time: {:.2} ms per block over {:.2} ms of wall time ({:.0}% of the {} cores busy); raw verification of 200 signatures takes {:.2} ms of CPU",
                cpu * 1e3 / blocks as f64,
                measured.elapsed * 1e3 / blocks as f64,
                100.0 * cpu / measured.elapsed / rayon::current_num_threads() as f64,
                rayon::current_num_threads(),
                TXS_PER_BLOCK as f64 * rayon::current_num_threads() as f64 * 1e3 / raw
            );
        }
        println!(
            "    afterwards, a UTXO read takes {:.2} us for an unspent coin of any age, {:.2} us for a spent one",
            measured.lookups.0, measured.lookups.1
        );
        if let (Some(before), Some(peak)) = (rss_before, measured.rss_peak) {
            println!(
                "    resident memory: {} MiB with the blocks built and held, at most {} MiB while connecting them",
                before / 1024,
                peak / 1024
            );
        }
    }

    // The store alone: the reads and writes the design requires of each
    // block (coins read, UTXO set, address index, undo, body, tip), which
    // no overlap can hide on cores that verification already fills.
    let raw_cpu_per_block = TXS_PER_BLOCK as f64 * rayon::current_num_threads() as f64 / raw;
    let (store_wall, store_cpu) = store;
    let store_cpu_per_block = store_cpu.unwrap_or(store_wall) / blocks as f64;
    println!(
        "  the store alone (the reads and writes of the runs, replayed in order on one thread into a fresh RocksDB): {:.2} ms wall, {:.2} ms CPU per block",
        store_wall * 1e3 / blocks as f64,
        store_cpu_per_block * 1e3
    );
    println!(
        "    ceiling with everything else free and every core busy: raw {:.2} ms / (raw + store) = {:.2} of raw",
        raw_cpu_per_block * 1e3,
        raw_cpu_per_block / (raw_cpu_per_block + store_cpu_per_block)
    );

    // Everything but verification: the same connection with every
    // signature already known valid. On cores that verification would
    // fill, this work cannot overlap anything, so it bounds the ratio.
    let (known, hits) = known;
    if let Some(cpu) = known.cpu {
        let cpu_per_block = cpu / known_blocks as f64;
        println!(
            "  every signature already known valid ({hits} of {} found in the cache), runs of {RUN}, {known_blocks} blocks: {:.2} ms wall, {:.2} ms CPU per block",
            known_blocks * TXS_PER_BLOCK,
            known.elapsed * 1e3 / known_blocks as f64,
            cpu_per_block * 1e3
        );
        println!(
            "    ceiling with verification at raw speed and every core busy: raw {:.2} ms / (raw + the rest) = {:.2} of raw",
            raw_cpu_per_block * 1e3,
            raw_cpu_per_block / (raw_cpu_per_block + cpu_per_block)
        );
    }

    // Following the tip through the node: blocks whose transactions the
    // mempool verified first, against the same blocks arriving unseen.
    let tip_blocks = &body[..body.len().min(100)];
    let (cold, _, _) = follow_tip(&prefix, tip_blocks, false);
    let (warm, hits, tx_hits) = follow_tip(&prefix, tip_blocks, true);
    let per_block = |seconds: f64| seconds * 1e3 / tip_blocks.len() as f64;
    println!(
        "following the tip through the node, {} blocks one at a time: {:.2} ms per block unseen; {:.2} ms with their transactions in the mempool first ({:.1}x faster; {hits} of {n} signatures and {tx_hits} of {n} transactions found in the cache)",
        tip_blocks.len(),
        per_block(cold),
        per_block(warm),
        cold / warm,
        n = tip_blocks.len() * TXS_PER_BLOCK
    );

    // Mempool acceptance: a fresh node at the end of the prefix, the first
    // body block's transactions sent one by one over HTTP JSON-RPC.
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Arc::new(node_after(&prefix, dir.path()));
    let txs: Vec<Transaction> = body[0].transactions[1..].to_vec();
    let in_process = {
        let state = node.state();
        let started = Instant::now();
        for tx in &txs {
            state.mempool.test_accept(tx, &state.chain, &SequentialVerifier::default()).expect("acceptable");
        }
        txs.len() as f64 / started.elapsed().as_secs_f64()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let credentials = cairn_node::rpc::Credentials::new(&[("bench".into(), "bench".into())]);
    let (server, addr) = runtime
        .block_on(cairn_node::rpc::serve(
            node.clone(),
            "127.0.0.1:0".parse().expect("addr"),
            credentials,
            cairn_node::rpc::RpcLimits::default(),
        ))
        .expect("serve");
    let started = Instant::now();
    for tx in &txs {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"sendrawtransaction","params":["{}"]}}"#,
            hex::encode(tx.encode())
        );
        let response = post(addr, "bench:bench", &body);
        assert!(response.contains("\"result\""), "{response}");
    }
    let over_rpc = txs.len() as f64 / started.elapsed().as_secs_f64();
    println!("mempool acceptance: {over_rpc:.0} tx/s through sendrawtransaction over HTTP (one connection per request)");
    println!(
        "  in-process checks of the same transactions: {in_process:.0} tx/s; RPC path runs at {:.2} of it",
        over_rpc / in_process
    );
    let _ = server.stop();
}
