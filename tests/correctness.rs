//! Where the chain and its store meet the unexpected: devnet chains
//! (replayed from the published devnet vectors, and mined by a real node)
//! judged block by block by the written aserti3-2d rule, a reorganization
//! that invalidates a mempool chain (the built-in miner's next block must
//! still be accepted), a data directory of the retired first devnet, and a
//! disk that fills up.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_consensus::sighash::sign_inputs;
use cairn_consensus::{
    Address, Amount, Block, BlockHash, BlockHeader, Decode, Encode, Height, Network, OutPoint, Params,
    Transaction, TxIn, TxOut,
};
use cairn_miner::Kernel;
use secp256k1::{Keypair, Secp256k1};
use serde_json::{json, Value};

use cairn_node::template::{unmined_block, Placement};

use crate::support::{binary, NodeProcess, Rpc};
use crate::vectors::asert::{run_cases, written_rule, WrittenAsert};

/// Devnet's schedule as the written rule names it, anchored at `block1`.
fn devnet_rule(block1: &BlockHeader) -> WrittenAsert {
    let params = Params::for_network(Network::Devnet);
    let cairn_consensus::params::DifficultyRule::Asert(asert) = params.difficulty else {
        panic!("devnet retargets with aserti3-2d")
    };
    WrittenAsert {
        anchor_height: 1,
        anchor_parent_time: i64::from(block1.time) - asert.spacing,
        anchor_bits: block1.bits.to_consensus(),
        spacing: asert.spacing,
        half_life: asert.half_life,
        limit_bits: asert.pow_limit.to_compact().to_consensus(),
    }
}

/// Replays the first `count` blocks of a devnet vector run as a real
/// devnet chain (blocks stamped with the run's times, mined, connected):
/// after each block the bits the chain asks of the next are the run's.
fn replay_devnet_run(name: &str, count: usize) {
    let params = Params::for_network(Network::Devnet);
    let mut chain =
        cairn_node::chain::Chain::open(Arc::new(cairn_node::store::MemStore::new()), params).expect("open");
    let lock = key_lock(&keypair(41));
    let cases = run_cases(name);
    assert!(cases.len() >= count, "{name} has {} cases", cases.len());
    for (i, &(height, time, expected)) in cases.iter().take(count).enumerate() {
        assert_eq!(height, i as u64 + 1, "{name}: the run is one chain from block 1");
        let mut block = cairn_node::template::new_block(&chain, &lock, Vec::new(), Amount::ZERO, time as u64);
        block.header.time = u32::try_from(time).expect("a 32-bit time");
        let block = cairn_miner::solve(block, Kernel::best()).expect("template");
        chain.submit_block(block, time as u64).unwrap_or_else(|e| panic!("{name} block {height}: {e}"));
        let got = chain.next_bits().to_consensus();
        assert_eq!(got, expected, "{name} after block {height} at {time}: the chain asks {got:#010x}");
    }
}

#[test]
fn devnet_chains_replaying_the_devnet_vectors_ask_each_block_for_the_published_bits() {
    // One-second blocks: the target tightens by 2^(-9/600) a block (the
    // cut product moved it in factor-of-two steps), and the example.
    replay_devnet_run("asert-devnet/devnet_run02", 150);
    // Forty-second blocks: behind schedule, the target stays capped at the
    // limit. (The other runs have gaps of 0 s or less, which the median
    // time rule refuses in a chain; the written-rule judge covers them.)
    replay_devnet_run("asert-devnet/devnet_run06", 40);
    println!("kernel used to mine: {}", Kernel::best().name());
}

#[test]
fn a_devnet_chain_mined_by_the_node_follows_the_written_rule_block_by_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keypair(43);
    let address = Address::from_key(Network::Devnet, key.x_only_public_key().0.serialize()).to_string();
    let node = NodeProcess::start(
        dir.path(),
        &["--network", "devnet", "--mine", "--mine-address", &address, "--threads", "1"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let blocks = 60;
    while node.rpc.ok("getblockcount", json!([])).as_u64().expect("height") < blocks {
        assert!(std::time::Instant::now() < deadline, "devnet mined {blocks} blocks in 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let headers: Vec<BlockHeader> = (1..=blocks).map(|h| block_at(&node.rpc, h).header).collect();
    node.stop();
    let rule = devnet_rule(&headers[0]);
    let genesis = Params::for_network(Network::Devnet).genesis.header;
    assert_eq!(headers[0].bits, genesis.bits, "block 1, the anchor, carries the genesis bits");
    let mut moved = 0;
    for (i, pair) in headers.windows(2).enumerate() {
        let height = i as u64 + 1;
        let expected = written_rule(&rule, height, i64::from(pair[0].time));
        assert_eq!(
            pair[1].bits.to_consensus(),
            expected,
            "block {} carries the bits the written rule gives after block {height}",
            height + 1
        );
        moved += usize::from(pair[1].bits != pair[0].bits);
    }
    // Fast blocks: the target moves on (nearly) every block, not in rare
    // factor-of-two steps.
    assert!(moved > blocks as usize / 2, "the target moved on {moved} of {blocks} blocks");
}

fn keypair(seed: u8) -> Keypair {
    Keypair::from_seckey_slice(&Secp256k1::new(), &[seed; 32]).expect("key")
}

fn key_lock(key: &Keypair) -> cairn_consensus::Lock {
    cairn_consensus::Lock::key(key.x_only_public_key().0.serialize())
}

fn address_of(key: &Keypair) -> String {
    Address::from_key(Network::Regtest, key.x_only_public_key().0.serialize()).to_string()
}

fn block_at(rpc: &Rpc, height: u64) -> Block {
    let hash = rpc.ok("getblockhash", json!([height]));
    let hex = rpc.ok("getblock", json!([hash, 0]));
    Block::decode(&hex::decode(hex.as_str().expect("hex")).expect("hex")).expect("block")
}

/// Spends `outpoint` (holding `spent`, locked to `from`) to `to`, paying `fee`.
fn spend(outpoint: OutPoint, spent: &TxOut, from: &Keypair, to: &Keypair, fee: u64) -> Transaction {
    let amount = Amount::from_base_units(spent.amount.to_base_units() - fee).expect("in range");
    let mut tx = Transaction {
        version: 1,
        inputs: vec![TxIn::spending(outpoint)],
        outputs: vec![TxOut { amount, lock: key_lock(to) }],
        lock_time: 0,
    };
    let genesis = Params::for_network(Network::Regtest).genesis_hash;
    sign_inputs(&Secp256k1::new(), &mut tx, &[spent], genesis, from, &[9; 32]);
    tx
}

/// A regtest block on `prev` at `height` and `time` holding `txs`, its
/// coinbase paying `to` the subsidy, solved.
fn block_on(prev: BlockHash, height: u32, time: u32, txs: Vec<Transaction>, to: &Keypair) -> Block {
    let params = Params::for_network(Network::Regtest);
    let place = Placement { prev, height: Height::new(height), time, bits: params.genesis.header.bits };
    let block = unmined_block(&place, b"/branch/", &key_lock(to), params.subsidy(Height::new(height)), txs);
    cairn_miner::solve(block, Kernel::Portable).expect("template")
}

fn mempool(rpc: &Rpc) -> Vec<String> {
    let list = rpc.ok("getrawmempool", json!([]));
    list.as_array().expect("list").iter().map(|v| v.as_str().expect("txid").to_owned()).collect()
}

#[test]
fn after_a_reorganization_invalidates_a_mempool_chain_the_built_in_miner_still_mines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let rpc = &node.rpc;
    let (key, other) = (keypair(31), keypair(32));
    rpc.ok("generatetoaddress", json!([101, address_of(&key)]));
    // A spends block 1's coinbase and is mined; C spends A from the pool.
    let coinbase = block_at(rpc, 1).transactions[0].clone();
    let coin = OutPoint { txid: coinbase.txid(), index: 0 };
    let parent = spend(coin, &coinbase.outputs[0], &key, &key, 1_000);
    rpc.ok("sendrawtransaction", json!([hex::encode(parent.encode())]));
    let fork = block_at(rpc, 101);
    rpc.ok("generatetoaddress", json!([1, address_of(&key)]));
    assert_eq!(block_at(rpc, 102).transactions[1].txid(), parent.txid());
    let child = spend(OutPoint { txid: parent.txid(), index: 0 }, &parent.outputs[0], &key, &key, 1_000);
    rpc.ok("sendrawtransaction", json!([hex::encode(child.encode())]));
    assert_eq!(mempool(rpc), vec![child.txid().to_string()]);
    // A heavier branch from block 101 whose first block double-spends A's
    // input: A cannot come back, so C must leave the pool.
    let double = spend(coin, &coinbase.outputs[0], &key, &other, 5_000);
    let b1 = block_on(fork.block_hash(), 102, fork.header.time + 1, vec![double], &other);
    let b2 = block_on(b1.block_hash(), 103, fork.header.time + 2, Vec::new(), &other);
    assert_eq!(rpc.ok("submitblock", json!([hex::encode(b1.encode())])), "inconclusive");
    assert_eq!(rpc.ok("submitblock", json!([hex::encode(b2.encode())])), Value::Null);
    assert_eq!(rpc.ok("getbestblockhash", json!([])), b2.block_hash().to_string());
    assert_eq!(mempool(rpc), Vec::<String>::new(), "neither the double-spent parent nor its child stays");
    // The built-in miner's next block is accepted.
    let mined = rpc.ok("generatetoaddress", json!([2, address_of(&key)]));
    assert_eq!(mined.as_array().expect("hashes").len(), 2);
    assert_eq!(rpc.ok("getblockcount", json!([])), 105);
}

#[test]
fn a_data_directory_of_the_first_devnet_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The first devnet's genesis, as nodes before 2026-12-05 wrote it.
    let mut old = Params::for_network(Network::Devnet);
    old.genesis = cairn_consensus::params::genesis_block(
        "Cairn devnet 2026-11-24: stones for practice",
        cairn_consensus::params::GENESIS_TIME,
        old.genesis.header.bits,
        44_444,
    );
    old.genesis_hash = old.genesis.block_hash();
    assert_eq!(old.genesis_hash.to_string(), cairn_consensus::params::FIRST_DEVNET_GENESIS);
    {
        let store = cairn_node::store::RocksStore::open(&dir.path().join("chain"), "devnet").expect("store");
        cairn_node::chain::Chain::open(Arc::new(store), old).expect("the old devnet's chain");
    }
    let output = Command::new(binary("cairn-node"))
        .args(["--network", "devnet", "--rpc-bind", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .arg("--datadir")
        .arg(dir.path())
        .output()
        .expect("cairn-node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    for words in ["first devnet", "difficulty", "Move the data directory away", "--datadir"] {
        assert!(stderr.contains(words), "the message says {words:?}: {stderr}");
    }
    assert!(!dir.path().join(".cookie").exists(), "nothing is left running");
}

/// A size-limited tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(megabytes: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !status.status.success() {
            return Err(String::from_utf8_lossy(&status.stderr).trim().to_owned());
        }
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

#[test]
fn a_full_disk_stops_the_node_cleanly_and_a_restart_after_freeing_space_recovers() {
    let fs = match Tmpfs::mount(64) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("did not run: cannot mount a size-limited tmpfs here ({why})");
            return;
        }
    };
    let datadir = fs.path().join("node");
    std::fs::create_dir_all(&datadir).expect("datadir");
    let key = keypair(33);
    let mut node = NodeProcess::start(&datadir, &[]);
    node.rpc.ok("generatetoaddress", json!([20, address_of(&key)]));
    let filler = fs.path().join("filler");
    fill(&filler);
    // Mine until a write fails: every block acknowledged must survive.
    let mut acknowledged = 20u64;
    let mut failure = None;
    for _ in 0..5_000 {
        match node.rpc.call("generatetoaddress", json!([1, address_of(&key)])) {
            Ok(_) => acknowledged += 1,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("a full disk makes a write fail");
    let message = failure["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.contains("refused"), "a storage failure is not a refusal: {message}");
    let status = node.wait_exit(std::time::Duration::from_secs(60)).expect("the node stops by itself");
    assert!(!status.success(), "it exits non-zero");
    let log = std::fs::read_to_string(datadir.join("node.log")).unwrap_or_default();
    assert!(log.contains("storage failure while"), "the log says what failed");
    assert!(log.contains("start the node again"), "and what to do");
    // Space freed: the restart goes on from the last block written.
    std::fs::remove_file(&filler).expect("free the space");
    node = NodeProcess::start(&datadir, &[]);
    let height = node.rpc.ok("getblockcount", json!([])).as_u64().expect("height");
    assert!(height >= acknowledged, "every acknowledged block is there ({height} >= {acknowledged})");
    node.rpc.ok("generatetoaddress", json!([3, address_of(&key)]));
    assert_eq!(node.rpc.ok("getblockcount", json!([])).as_u64(), Some(height + 3));
    let blocks: Vec<Block> = (1..=height + 3).map(|h| block_at(&node.rpc, h)).collect();
    let mut fresh = cairn_node::chain::Chain::open(
        Arc::new(cairn_node::store::MemStore::new()),
        Params::for_network(Network::Regtest),
    )
    .expect("open");
    for block in blocks {
        fresh.submit_block(block, u64::from(u32::MAX)).expect("valid");
    }
    let info = node.rpc.ok("gettxoutsetinfo", json!([]));
    assert_eq!(info["hash_serialized"], hex::encode(fresh.utxo_digest().expect("digest").hash));
    node.stop();
}
