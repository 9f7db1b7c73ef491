//! Real `cairn-node` processes talking libp2p to each other on 127.0.0.1:
//! propagation along a line, catching up, partition and heal, rejoining
//! from the peer book.

use std::time::{Duration, Instant};

use cairn_consensus::sighash::sign_inputs;
use cairn_consensus::{
    Address, Amount, Block, Decode, Encode, Lock, Network, OutPoint, Params, Transaction, TxIn, TxOut,
};
use secp256k1::{Keypair, Secp256k1};
use serde_json::{json, Value};

use crate::support::{NodeProcess, Rpc};

pub fn keypair(seed: u8) -> Keypair {
    Keypair::from_seckey_slice(&Secp256k1::new(), &[seed; 32]).expect("key")
}

pub fn address(seed: u8) -> String {
    Address::from_key(Network::Regtest, keypair(seed).x_only_public_key().0.serialize()).to_string()
}

/// Polls `check` until it holds, for at most `seconds`.
pub fn wait_until(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn tip(rpc: &Rpc) -> Value {
    rpc.ok("getbestblockhash", json!([]))
}

pub fn digest(rpc: &Rpc) -> Value {
    rpc.ok("gettxoutsetinfo", json!([]))["hash_serialized"].clone()
}

pub fn peers(rpc: &Rpc) -> usize {
    rpc.ok("getpeerinfo", json!([])).as_array().map_or(0, Vec::len)
}

pub fn block_at(rpc: &Rpc, height: u64) -> Block {
    let hash = rpc.ok("getblockhash", json!([height]));
    let hex = rpc.ok("getblock", json!([hash, 0]));
    Block::decode(&hex::decode(hex.as_str().expect("hex")).expect("hex")).expect("block")
}

/// Spends output `vout` of transaction `spent` (locked to `from`'s key) to `to`, less `fee`.
pub fn spend(spent: &Transaction, vout: u32, from: u8, to: u8, fee: u64) -> Transaction {
    let output = &spent.outputs[vout as usize];
    let value = Amount::from_base_units(output.amount.to_base_units() - fee).expect("amount");
    let mut tx = Transaction {
        version: 1,
        inputs: vec![TxIn::spending(OutPoint { txid: spent.txid(), index: vout })],
        outputs: vec![TxOut {
            amount: value,
            lock: Lock::key(keypair(to).x_only_public_key().0.serialize()),
        }],
        lock_time: 0,
    };
    let genesis = Params::for_network(Network::Regtest).genesis_hash;
    assert_eq!(sign_inputs(&Secp256k1::new(), &mut tx, &[output], genesis, &keypair(from), &[3; 32]), 1);
    tx
}

pub fn send(rpc: &Rpc, tx: &Transaction) -> Value {
    rpc.ok("sendrawtransaction", json!([hex::encode(tx.encode())]))
}

fn in_mempool(rpc: &Rpc, txid: &Value) -> bool {
    rpc.ok("getrawmempool", json!([])).as_array().is_some_and(|pool| pool.contains(txid))
}

/// Starts a node that dials only `connect` (no discovery).
pub fn fixed(dir: &std::path::Path, connect: &[&str]) -> NodeProcess {
    fixed_with(dir, connect, &[])
}

/// [`fixed`], with `extra` arguments.
pub fn fixed_with(dir: &std::path::Path, connect: &[&str], extra: &[&str]) -> NodeProcess {
    let mut args = vec!["--no-discovery"];
    for address in connect {
        args.extend(["--connect", address]);
    }
    args.extend(extra);
    NodeProcess::start(dir, &args)
}

/// Four nodes in `dirs`, each dialing only the one before it, connected.
pub fn line_of_four(dirs: &[tempfile::TempDir]) -> [NodeProcess; 4] {
    line_of_four_with(dirs, &[])
}

/// [`line_of_four`], each node started with `extra` arguments.
pub fn line_of_four_with(dirs: &[tempfile::TempDir], extra: &[&str]) -> [NodeProcess; 4] {
    let a = fixed_with(dirs[0].path(), &[], extra);
    let b = fixed_with(dirs[1].path(), &[&a.p2p_address()], extra);
    let c = fixed_with(dirs[2].path(), &[&b.p2p_address()], extra);
    let d = fixed_with(dirs[3].path(), &[&c.p2p_address()], extra);
    for (node, expected) in [&a, &b, &c, &d].iter().zip([1, 2, 2, 1]) {
        wait_until(30, "the line to connect", || peers(&node.rpc) == expected);
    }
    [a, b, c, d]
}

#[test]
fn blocks_and_transactions_cross_a_line_of_four_nodes() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let [a, b, c, d] = line_of_four(&dirs);
    let line = [&a, &b, &c, &d];

    // Coins for a transaction, mined at one end; a block at that end reaches the other.
    a.rpc.ok("generatetoaddress", json!([101, address(1)]));
    let mined = a.rpc.ok("generatetoaddress", json!([1, address(2)]));
    for node in line {
        wait_until(60, "the block to reach every node", || tip(&node.rpc) == mined[0]);
    }
    // A transaction sent at the other end reaches every mempool.
    let coinbase = block_at(&d.rpc, 1).transactions[0].clone();
    let tx = spend(&coinbase, 0, 1, 3, 1_000);
    let txid = send(&d.rpc, &tx);
    for node in line {
        wait_until(30, "the transaction to reach every mempool", || in_mempool(&node.rpc, &txid));
    }
    // Still a line: nobody dialed past its neighbour.
    assert_eq!(peers(&a.rpc), 1);
    assert_eq!(peers(&d.rpc), 1);
    let confirmed = a.rpc.ok("generatetoaddress", json!([1, address(2)]));
    for node in line {
        wait_until(60, "the confirming block", || tip(&node.rpc) == confirmed[0]);
        assert!(!in_mempool(&node.rpc, &txid), "confirmed transactions leave every mempool");
    }
}

/// Mines `blocks` blocks on `rpc` with a transaction in most of them,
/// spending earlier coinbases (key 1) to key 2.
pub fn mine_with_transactions(rpc: &Rpc, blocks: u64) {
    rpc.ok("generatetoaddress", json!([101, address(1)]));
    let mut mined = 101;
    let mut next_coinbase = 1;
    while mined < blocks {
        let spent = block_at(rpc, next_coinbase).transactions[0].clone();
        next_coinbase += 1;
        send(rpc, &spend(&spent, 0, 1, 2, 500));
        let batch = (blocks - mined).min(5);
        rpc.ok("generatetoaddress", json!([batch, address(1)]));
        mined += batch;
    }
}

#[test]
fn a_late_node_catches_up_on_2000_blocks_with_transactions() {
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = fixed(dir_a.path(), &[]);
    mine_with_transactions(&a.rpc, 2_000);
    assert_eq!(a.rpc.ok("getblockcount", json!([])), 2_000);
    let b = NodeProcess::start(dir_b.path(), &["--connect", &a.p2p_address()]);
    wait_until(300, "the late node to catch up", || tip(&b.rpc) == tip(&a.rpc));
    assert_eq!(digest(&b.rpc), digest(&a.rpc));
    let info = b.rpc.ok("getblockchaininfo", json!([]));
    assert_eq!(info["headers"], info["blocks"]);
    // Each body crossed once: what it received is the blocks, their headers
    // and a little chatter, not blocks asked for twice.
    let blocks: u64 = (1..=2_000)
        .map(|height| {
            let hash = a.rpc.ok("getblockhash", json!([height]));
            a.rpc.ok("getblock", json!([hash, 1]))["size"].as_u64().expect("size")
        })
        .sum();
    let received: u64 = b
        .rpc
        .ok("getpeerinfo", json!([]))
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["bytesrecv"].as_u64().expect("bytes"))
        .sum();
    let headers = 2_000 * 80;
    assert!(received < (blocks + headers) * 5 / 4, "received {received} bytes for {blocks} bytes of blocks");
}

#[test]
fn partitioned_groups_converge_on_the_heavier_chain_and_the_losers_transactions_return() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let a = fixed(dirs[0].path(), &[]);
    let b = fixed(dirs[1].path(), &[]);
    let c = fixed(dirs[2].path(), &[]);
    let d = fixed(dirs[3].path(), &[]);
    let all = [&a, &b, &c, &d];
    // One network at first: b and c dial a, d dials c.
    b.rpc.ok("addnode", json!([a.p2p_address(), "onetry"]));
    c.rpc.ok("addnode", json!([a.p2p_address(), "onetry"]));
    d.rpc.ok("addnode", json!([c.p2p_address(), "onetry"]));
    a.rpc.ok("generatetoaddress", json!([101, address(1)]));
    let common = tip(&a.rpc);
    for node in all {
        wait_until(60, "the common history to spread", || tip(&node.rpc) == common);
    }

    // Split into {a, b} and {c, d}.
    let c_id = c.rpc.ok("getnetworkinfo", json!([]))["peerid"].clone();
    a.rpc.ok("disconnectnode", json!([c_id]));
    wait_until(30, "the partition", || peers(&a.rpc) == 1 && peers(&c.rpc) == 1);

    // {a, b} confirms a transaction in a shorter chain; {c, d} mines a longer one.
    let coinbase = block_at(&a.rpc, 1).transactions[0].clone();
    let tx = spend(&coinbase, 0, 1, 3, 1_000);
    let txid = send(&a.rpc, &tx);
    wait_until(30, "the transaction to reach b", || in_mempool(&b.rpc, &txid));
    a.rpc.ok("generatetoaddress", json!([2, address(4)]));
    let heavier = c.rpc.ok("generatetoaddress", json!([4, address(5)]));
    let heavier_tip = heavier[3].clone();
    wait_until(60, "b to follow a", || tip(&b.rpc) == tip(&a.rpc));
    wait_until(60, "d to follow c", || tip(&d.rpc) == heavier_tip);
    assert!(!in_mempool(&a.rpc, &txid), "confirmed on the lighter side");

    // Heal: everyone ends on the heavier chain; the lighter side's transaction is back in its mempools.
    b.rpc.ok("addnode", json!([c.p2p_address(), "onetry"]));
    for node in all {
        wait_until(60, "every node to reach the heavier chain", || tip(&node.rpc) == heavier_tip);
    }
    let expected = digest(&c.rpc);
    for node in all {
        assert_eq!(digest(&node.rpc), expected);
    }
    assert!(in_mempool(&a.rpc, &txid), "the losing side's transaction returns to a's mempool");
    assert!(in_mempool(&b.rpc, &txid), "the losing side's transaction returns to b's mempool");
}

#[test]
fn a_restarted_node_rejoins_from_its_peer_book_and_catches_up() {
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = fixed(dir_a.path(), &[]);
    let b = NodeProcess::start(dir_b.path(), &["--connect", &a.p2p_address()]);
    a.rpc.ok("generatetoaddress", json!([5, address(1)]));
    wait_until(30, "b to follow", || tip(&b.rpc) == tip(&a.rpc));
    b.stop();
    let book = std::fs::read_to_string(dir_b.path().join("peers.json")).expect("the peer book was saved");
    let a_id = a.rpc.ok("getnetworkinfo", json!([]))["peerid"].as_str().expect("id").to_owned();
    assert!(book.contains(&a_id), "{book}");

    a.rpc.ok("generatetoaddress", json!([20, address(1)]));
    // No --connect this time: the peer book is all it has.
    let b = NodeProcess::start(dir_b.path(), &[]);
    wait_until(60, "b to rejoin and catch up", || tip(&b.rpc) == tip(&a.rpc));
    assert_eq!(peers(&b.rpc), 1);
}

#[test]
fn the_devnet_command_runs_connected_mining_nodes_and_stops_them_all() {
    let base = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(crate::support::binary("cairn-node"))
        .args(["devnet", "--nodes", "3", "--miners", "1", "--seconds", "20", "--datadir"])
        .arg(base.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running cairn-node devnet");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("3 devnet nodes") && text.contains("(1 mining)"), "{text}");
    // The last status round: one line per node, each with both other nodes as peers.
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("node ")).collect();
    let last = &lines[lines.len() - 3..];
    let mut heights = Vec::new();
    for (index, line) in last.iter().enumerate() {
        assert!(line.starts_with(&format!("node {index}: height")), "{line}");
        assert!(line.contains(" 2 peers"), "{line}");
        let height: u64 = line.split_whitespace().nth(3).and_then(|h| h.parse().ok()).expect("height");
        heights.push(height);
    }
    assert!(heights[0] > 0, "the miner mined: {last:?}");
    assert!(heights[1] > 0 && heights[2] > 0, "the others followed: {last:?}");
    // Every node stopped: their RPC no longer answers.
    for index in 0..3 {
        let dir = base.path().join(format!("node{index}"));
        let address = std::fs::read_to_string(dir.join("rpc.address")).expect("rpc.address");
        let rpc = Rpc { addr: address.trim().parse().expect("address"), auth: None };
        assert!(rpc.post(b"{}", None).is_err(), "node {index} still answers");
        assert!(!dir.join(".cookie").exists(), "node {index} stopped cleanly (its cookie is gone)");
    }
}

#[test]
fn a_second_node_on_a_peer_port_in_use_refuses_to_start() {
    let first_dir = tempfile::tempdir().expect("tempdir");
    let first = NodeProcess::start(first_dir.path(), &[]);
    let address = first.p2p_address();
    let listen = address.split("/p2p/").next().expect("an address").to_owned();
    let second_dir = tempfile::tempdir().expect("tempdir");
    let log = second_dir.path().join("refused.log");
    let mut child = std::process::Command::new(crate::support::binary("cairn-node"))
        .args(["--network", "regtest", "--rpc-bind", "127.0.0.1:0", "--listen", &listen, "--datadir"])
        .arg(second_dir.path())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("cairn-node runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the second node is running on a port in use");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert!(!status.success(), "the second node starts: {stderr}");
    assert!(stderr.contains("in use") && stderr.contains("--listen"), "it says why and what to do: {stderr}");
    // Asked to, it shares the port.
    let shared = NodeProcess::start(second_dir.path(), &["--listen", &listen, "--allow-shared-port"]);
    assert_eq!(shared.p2p_address().split("/p2p/").next(), Some(listen.as_str()));
    shared.stop();
    first.stop();
}
