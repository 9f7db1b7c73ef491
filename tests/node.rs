//! Real `cairn-node` processes on 127.0.0.1 with RocksDB on disk, driven
//! over JSON-RPC.

use std::sync::Arc;

use cairn_consensus::{Address, Block, Decode, Encode, Network, Params};
use cairn_node::chain::Chain;
use cairn_node::store::MemStore;
use serde_json::{json, Value};

use crate::support::{NodeProcess, Rpc};

fn address(seed: u8) -> String {
    let secp = secp256k1::Secp256k1::new();
    let key = secp256k1::Keypair::from_seckey_slice(&secp, &[seed; 32]).expect("key");
    Address::from_key(Network::Regtest, key.x_only_public_key().0.serialize()).to_string()
}

fn digest(rpc: &Rpc) -> (Value, Value) {
    let info = rpc.ok("gettxoutsetinfo", json!([]));
    (info["bestblock"].clone(), info["hash_serialized"].clone())
}

fn block_hex(rpc: &Rpc, hash: &Value) -> String {
    rpc.ok("getblock", json!([hash, 0])).as_str().expect("hex").to_owned()
}

/// The active chain's blocks above genesis, as hex.
fn active_blocks(rpc: &Rpc) -> Vec<String> {
    let height = rpc.ok("getblockcount", json!([])).as_u64().expect("count");
    (1..=height).map(|h| block_hex(rpc, &rpc.ok("getblockhash", json!([h])))).collect()
}

/// The UTXO digest of a fresh in-memory chain given only `blocks`.
fn replayed_digest(blocks: &[String]) -> String {
    let mut chain =
        Chain::open(Arc::new(MemStore::new()), Params::for_network(Network::Regtest)).expect("open");
    for hex in blocks {
        let block = Block::decode(&hex::decode(hex).expect("hex")).expect("block");
        chain.submit_block(block, u64::from(u32::MAX)).expect("valid");
    }
    hex::encode(chain.utxo_digest().expect("digest").hash)
}

#[test]
fn mine_150_blocks_restart_same_tip_and_utxo_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let hashes = node.rpc.ok("generatetoaddress", json!([150, address(1)]));
    assert_eq!(hashes.as_array().expect("hashes").len(), 150);
    assert_eq!(node.rpc.ok("getblockcount", json!([])), 150);
    let before = digest(&node.rpc);
    let info = node.rpc.ok("gettxoutsetinfo", json!([]));
    assert_eq!(info["txouts"], 150);
    node.stop();
    let node = NodeProcess::start(dir.path(), &[]);
    assert_eq!(node.rpc.ok("getblockcount", json!([])), 150);
    assert_eq!(digest(&node.rpc), before);
    assert_eq!(node.rpc.ok("getbestblockhash", json!([])), hashes[149]);
}

#[test]
fn killed_at_random_moments_the_node_reopens_with_every_acknowledged_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A second node mines the blocks; the victim only receives them.
    let source_dir = tempfile::tempdir().expect("tempdir");
    let source = NodeProcess::start(source_dir.path(), &[]);
    source.rpc.ok("generatetoaddress", json!([400, address(2)]));
    let blocks = active_blocks(&source.rpc);
    let mut acknowledged: Vec<Value> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let node = NodeProcess::start(dir.path(), &[]);
        // Everything acknowledged before is still there, and the UTXO set
        // equals one rebuilt from the stored blocks.
        for hash in &acknowledged {
            node.rpc
                .call("getblockheader", json!([hash]))
                .unwrap_or_else(|e| panic!("round {round}: {hash} lost: {e}"));
        }
        let stored = active_blocks(&node.rpc);
        assert_eq!(
            digest(&node.rpc).1.as_str().expect("hash"),
            replayed_digest(&stored),
            "round {round}: UTXO set differs from one rebuilt from the blocks"
        );
        let next = stored.len();
        // Submit from another thread and kill at a pseudo-random moment.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = std::time::Duration::from_millis(20 + seed % 150);
        let rpc = node.rpc.clone();
        let batch: Vec<String> = blocks[next..(next + 30).min(blocks.len())].to_vec();
        let submitter = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for hex in batch {
                let block = Block::decode(&hex::decode(&hex).expect("hex")).expect("block");
                match rpc.call("submitblock", json!([hex])) {
                    Ok(Value::Null) => acked.push(json!(block.block_hash().to_string())),
                    Ok(other) => panic!("unexpected submitblock answer {other}"),
                    Err(_) => break, // the node died mid-call: not acknowledged
                }
            }
            acked
        });
        std::thread::sleep(delay);
        node.kill();
        acknowledged.extend(submitter.join().expect("submitter"));
    }
    let node = NodeProcess::start(dir.path(), &[]);
    for hash in &acknowledged {
        node.rpc.ok("getblockheader", json!([hash]));
    }
    assert!(acknowledged.len() >= 20, "the kills left some blocks acknowledged ({})", acknowledged.len());
    assert_eq!(digest(&node.rpc).1.as_str().expect("hash"), replayed_digest(&active_blocks(&node.rpc)));
}

#[test]
fn reorg_to_the_heavier_branch_and_back() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let a = NodeProcess::start(dirs[0].path(), &[]);
    let b = NodeProcess::start(dirs[1].path(), &[]);
    let c = NodeProcess::start(dirs[2].path(), &[]);
    // Shared history, then A mines 3 blocks and B 5 on their own.
    a.rpc.ok("generatetoaddress", json!([110, address(3)]));
    for hex in active_blocks(&a.rpc) {
        assert_eq!(b.rpc.ok("submitblock", json!([hex])), Value::Null);
    }
    a.rpc.ok("generatetoaddress", json!([3, address(4)]));
    for hex in active_blocks(&a.rpc) {
        c.rpc.ok("submitblock", json!([hex]));
    }
    b.rpc.ok("generatetoaddress", json!([5, address(5)]));
    let before = digest(&a.rpc);
    for hex in active_blocks(&b.rpc).into_iter().skip(110) {
        a.rpc.ok("submitblock", json!([hex]));
    }
    assert_eq!(a.rpc.ok("getblockcount", json!([])), 115);
    assert_eq!(digest(&a.rpc), digest(&b.rpc), "A equals the node that only ever had B's branch");
    assert_ne!(digest(&a.rpc), before);
    // C extends A's old branch to 6 blocks past the fork: A switches back.
    c.rpc.ok("generatetoaddress", json!([3, address(6)]));
    for hex in active_blocks(&c.rpc).into_iter().skip(110) {
        let answer = a.rpc.ok("submitblock", json!([hex]));
        assert!(answer.is_null() || answer == "duplicate" || answer == "inconclusive", "{answer}");
    }
    assert_eq!(a.rpc.ok("getblockcount", json!([])), 116);
    assert_eq!(digest(&a.rpc), digest(&c.rpc));
    // A fresh node given only the winning branch agrees too.
    let d_dir = tempfile::tempdir().expect("tempdir");
    let d = NodeProcess::start(d_dir.path(), &[]);
    for hex in active_blocks(&c.rpc) {
        d.rpc.ok("submitblock", json!([hex]));
    }
    assert_eq!(digest(&d.rpc), digest(&a.rpc));
}

fn template_block(rpc: &Rpc) -> Block {
    // Mine one block elsewhere-free: ask for a template, build it like a
    // miner would (through the miner's roller), solved on regtest at once.
    let tip = rpc.ok("getbestblockhash", json!([]));
    let hex = rpc.ok("generatetoaddress", json!([1, address(7)]))[0].clone();
    let block = Block::decode(&hex::decode(block_hex(rpc, &hex)).expect("hex")).expect("block");
    assert_eq!(json!(block.header.prev_block.to_string()), tip);
    block
}

#[test]
fn invalid_blocks_and_transactions_change_nothing_and_bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let rpc = &node.rpc;
    rpc.ok("generatetoaddress", json!([101, address(8)]));
    // A valid block to break in different ways: mined, then rolled back by
    // invalidating nothing: we build on the tip with the node's template.
    let good = template_block(rpc);
    let state = digest(rpc);
    let solve = |mut block: Block| -> String {
        block.header.merkle_root = cairn_consensus::merkle::block_merkle_root(&block).root;
        let mut roller = cairn_miner::ExtranonceRoller::new(block).expect("roller");
        cairn_miner::solve_block(&mut roller, 1, cairn_miner::Kernel::Portable, None, &Default::default())
            .expect("bits");
        hex::encode(roller.into_block().encode())
    };
    // A valid child of the tip, then copies that each break one rule family.
    let mut next = good.clone();
    next.header.prev_block = good.block_hash();
    next.header.time = good.header.time + 1;
    next.transactions[0].inputs[0].data[..4].copy_from_slice(&103u32.to_le_bytes());
    let mut overpay = next.clone();
    overpay.transactions[0].outputs[0].amount =
        cairn_consensus::Amount::from_base_units(60 * 100_000_000).expect("amount");
    let mut bad_height = next.clone();
    bad_height.transactions[0].inputs[0].data[..4].copy_from_slice(&7u32.to_le_bytes());
    let mut bad_bits = next.clone();
    bad_bits.header.bits = cairn_consensus::pow::CompactTarget::from_consensus(0x207f_fffe);
    let mut old_time = next.clone();
    old_time.header.time = good.header.time - 100;
    let mut bad_lock = next.clone();
    bad_lock.transactions[0].outputs[0].lock.version = 9;
    // Body not matching the header: the merkle root is of another body.
    let mutated = {
        let solved = Block::decode(&hex::decode(solve(next.clone())).expect("hex")).expect("block");
        let mut b = solved;
        b.transactions[0].outputs[0].amount = cairn_consensus::Amount::from_base_units(1).expect("amount");
        hex::encode(b.encode())
    };
    let cases = [
        (solve(overpay), "coinbase pays"),
        (solve(bad_height), "height"),
        (solve(bad_bits), "bits"),
        (solve(old_time), "median time"),
        (solve(bad_lock), "lock version"),
        (mutated, "merkle root"),
        ("00".to_owned(), "does not decode"),
        ("zz".to_owned(), "not hex"),
    ];
    for (hex, expected) in cases {
        let error = rpc.call("submitblock", json!([hex])).expect_err("rejected");
        let message = error["message"].as_str().expect("message").to_lowercase();
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
        assert_eq!(digest(rpc), state, "a rejected block changed nothing");
    }
    // The unbroken block is accepted: the failures were the rules'.
    assert_eq!(rpc.ok("submitblock", json!([solve(next)])), Value::Null);
    let state = digest(rpc);
    // Transactions: garbage, a coinbase, a spend of nothing.
    let e = rpc.call("sendrawtransaction", json!(["00"])).expect_err("garbage");
    assert_eq!(e["code"], -22);
    let coinbase = hex::encode(good.transactions[0].encode());
    let e = rpc.call("sendrawtransaction", json!([coinbase])).expect_err("coinbase");
    assert!(e["message"].as_str().expect("message").contains("coinbase"), "{e}");
    assert_eq!(rpc.ok("getmempoolinfo", json!([]))["size"], 0);

    // Bad requests.
    let auth = rpc.auth.as_deref();
    let (status, body) = rpc.post(b"{not json", auth).expect("post");
    assert!(body.contains("Parse error"), "{status} {body}");
    let e = rpc.call("getblockhash", json!(["ten"])).expect_err("type");
    assert!(e["message"].as_str().expect("message").contains("integer"));
    let e = rpc.call("getblockhash", json!([99999])).expect_err("range");
    assert_eq!(e["code"], -8);
    let e = rpc.call("nosuchmethod", json!([])).expect_err("unknown");
    assert_eq!(e["code"], -32601);
    let e = rpc.call("getblock", json!(["00"])).expect_err("short hash");
    assert!(e["message"].as_str().expect("message").contains("64 hex digits"));
    let huge = vec![b' '; 6 * 1024 * 1024];
    let (status, _) = rpc.post(&huge, auth).expect("post");
    assert_eq!(status, 413, "oversized bodies are refused");
    let (status, body) =
        rpc.post(br#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#, None).expect("post");
    assert_eq!(status, 401);
    assert!(body.contains("cookie"));
    let (status, _) = rpc
        .post(br#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#, Some("__cookie__:wrong"))
        .expect("post");
    assert_eq!(status, 401);
    // Still serving, state unchanged.
    assert_eq!(rpc.ok("getblockcount", json!([])), 103);
    assert_eq!(digest(rpc), state);
}

#[test]
fn user_and_password_work_beside_the_cookie_and_the_cookie_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &["--rpc-user", "alice", "--rpc-password", "s3cret"]);
    let mode = std::fs::metadata(dir.path().join(".cookie")).expect("cookie").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let alice = Rpc { addr: node.rpc.addr, auth: Some("alice:s3cret".into()) };
    assert_eq!(alice.ok("getblockcount", json!([])), 0);
    let mallory = Rpc { addr: node.rpc.addr, auth: Some("alice:guess".into()) };
    assert!(mallory.call("getblockcount", json!([])).is_err());
}

#[test]
fn address_index_follows_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let rpc = &node.rpc;
    let mine = address(9);
    rpc.ok("generatetoaddress", json!([5, mine]));
    rpc.ok("generatetoaddress", json!([2, address(10)]));
    let utxos = rpc.ok("getaddressutxos", json!([[mine]]));
    assert_eq!(utxos.as_array().expect("list").len(), 5);
    let balance = rpc.ok("getaddressbalance", json!([[mine]]));
    assert_eq!(balance["balance"], 5 * 50 * 100_000_000u64);
    assert_eq!(balance["immature"], 5 * 50 * 100_000_000u64);
    let page = rpc.ok("getaddresstxids", json!([{ "addresses": [mine], "skip": 1, "limit": 2 }]));
    assert_eq!(page["total"], 5);
    assert_eq!(page["txids"].as_array().expect("txids").len(), 2);
    assert_eq!(page["next"], 3);
    let deltas = rpc.ok("getaddressdeltas", json!([{ "addresses": [mine], "skip": 4 }]));
    assert_eq!(deltas["total"], 5);
    assert_eq!(deltas["next"], Value::Null);
    let last = &deltas["deltas"][0];
    assert_eq!(
        (last["height"].clone(), last["satoshis"].clone(), last["sent"].clone()),
        (json!(5), json!(5_000_000_000u64), json!(0))
    );
    assert_eq!(last["blockhash"], rpc.ok("getblockhash", json!([5])));
    assert_eq!(rpc.ok("getaddressmempool", json!([[mine]])), json!([]));
    let e = rpc.call("getaddressutxos", json!([["bogus"]])).expect_err("bad address");
    assert_eq!(e["code"], -5);
}

#[test]
fn cairn_miner_mines_against_a_running_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let url = format!("http://{}", node.rpc.addr);
    let cookie = dir.path().join(".cookie");
    let miner = |args: &[&str]| {
        std::process::Command::new(crate::support::binary("cairn-miner"))
            .args(args)
            .output()
            .expect("cairn-miner")
    };
    let payee = address(20);
    let cookie_arg = cookie.to_str().expect("utf-8 path");
    let out = miner(&[
        "mine",
        "--rpc",
        &url,
        "--address",
        &payee,
        "--rpc-cookie",
        cookie_arg,
        "--blocks",
        "3",
        "--threads",
        "1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("accepted").count(), 3);
    assert_eq!(node.rpc.ok("getblockcount", json!([])), 3);
    assert_eq!(node.rpc.ok("getaddressutxos", json!([[payee]])).as_array().expect("list").len(), 3);

    // Clear errors: another network's address, no credentials, no node.
    let secp = secp256k1::Secp256k1::new();
    let key = secp256k1::Keypair::from_seckey_slice(&secp, &[21; 32]).expect("key");
    let devnet = Address::from_key(Network::Devnet, key.x_only_public_key().0.serialize()).to_string();
    let out =
        miner(&["mine", "--rpc", &url, "--address", &devnet, "--rpc-cookie", cookie_arg, "--blocks", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the node is on regtest"), "{out:?}");
    let out = miner(&["mine", "--rpc", &url, "--address", &payee, "--blocks", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("credentials"), "{out:?}");
    let out = miner(&["mine", "--rpc", "http://127.0.0.1:1", "--address", &payee, "--blocks", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"), "{out:?}");
    let out = miner(&["mine", "--rpc", "127.0.0.1:1", "--address", &payee]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"), "{out:?}");
    assert_eq!(node.rpc.ok("getblockcount", json!([])), 3);
}

#[test]
fn built_in_mining_runs_at_low_priority_and_ctrl_c_stops_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &["--mine", "--threads", "1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while node.rpc.ok("getblockcount", json!([])).as_u64() < Some(5) {
        assert!(std::time::Instant::now() < deadline, "no blocks mined");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The mining thread's nice value (field 19 of /proc/<pid>/task/<tid>/stat).
    let mut mining_threads = 0;
    for task in std::fs::read_dir(format!("/proc/{}/task", node.pid())).expect("tasks") {
        let task = task.expect("task").path();
        if std::fs::read_to_string(task.join("comm")).unwrap_or_default().trim() == "mine-0" {
            let stat = std::fs::read_to_string(task.join("stat")).expect("stat");
            let after_comm = stat.rsplit_once(')').expect("stat format").1;
            assert_eq!(after_comm.split_whitespace().nth(16), Some("19"), "mining thread niceness");
            mining_threads += 1;
        }
    }
    assert_eq!(mining_threads, 1);
    // It pays its own key, kept private in the data directory.
    let mode = std::fs::metadata(dir.path().join("mining.key")).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mined = node.rpc.ok("getblockcount", json!([])).as_u64().expect("count");
    assert!(node.interrupt(), "Ctrl-C exits with success");
    assert!(!dir.path().join(".cookie").exists(), "a clean stop removes the cookie");
    let node = NodeProcess::start(dir.path(), &[]);
    let height = node.rpc.ok("getblockcount", json!([])).as_u64().expect("count");
    assert!(height >= mined, "restart continues from the tip ({height} < {mined})");
    assert_eq!(digest(&node.rpc).1.as_str().expect("hash"), replayed_digest(&active_blocks(&node.rpc)));
}

#[test]
fn with_the_signature_cache_off_mempool_transactions_still_confirm_and_a_bad_size_is_refused() {
    use crate::network::{address, block_at, send, spend};
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = std::process::Command::new(crate::support::binary("cairn-node"))
        .args(["--network", "regtest", "--datadir"])
        .arg(dir.path())
        .args(["--sig-cache-entries", "lots"])
        .output()
        .expect("running cairn-node");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--sig-cache-entries"), "the error names the option: {stderr}");

    let node = NodeProcess::start(dir.path(), &["--sig-cache-entries", "0"]);
    node.rpc.ok("generatetoaddress", json!([101, address(1)]));
    let coinbase = block_at(&node.rpc, 1).transactions[0].clone();
    let txid = send(&node.rpc, &spend(&coinbase, 0, 1, 2, 1_000));
    let mined = node.rpc.ok("generatetoaddress", json!([1, address(1)]));
    let block = node.rpc.ok("getblock", json!([mined[0], 1]));
    assert!(block["tx"].as_array().expect("txids").contains(&txid), "{block}");
    assert_eq!(node.rpc.ok("getmempoolinfo", json!([]))["size"], 0);
}
