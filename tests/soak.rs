//! The crash soak, in the manner of Bitcoin Core's `feature_dbcrash`:
//! `scripts/crash-soak.sh N` runs it (it is ignored by the default test
//! run). Nodes are fed the same blocks (with transactions and
//! reorganizations) over RPC; one, the reference, is never killed; the
//! others are killed (SIGKILL) at random moments, some again while they
//! start up and recover; after every restart a victim's UTXO digest must
//! equal the reference's at the same tip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_consensus::sighash::sign_inputs;
use cairn_consensus::{Amount, Block, Encode, Lock, Network, OutPoint, Params, Transaction, TxIn, TxOut};
use cairn_miner::Kernel;
use cairn_node::node::Node;
use cairn_node::store::MemStore;
use secp256k1::{Keypair, Secp256k1};
use serde_json::json;

use crate::support::{Launch, NodeProcess, Rpc};

/// Nodes killed (besides the reference).
const VICTIMS: usize = 2;

/// A block every this many is followed by a reorganization.
const FORK_EVERY: usize = 29;

/// xorshift64: the soak's randomness, seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(seed: u8) -> Keypair {
    Keypair::from_seckey_slice(&Secp256k1::new(), &[seed; 32]).expect("key")
}

fn lock(key: &Keypair) -> Lock {
    Lock::key(key.x_only_public_key().0.serialize())
}

/// Deepest reorganization the generator makes.
const MAX_FORK_DEPTH: usize = 4;

/// Makes the blocks: an in-memory node `main` whose active branch is
/// `branch`, each block paying key 1 and, past maturity, spending the
/// coinbase a hundred blocks down (while it is worth splitting); and a
/// second node, `shadow`, fed the same blocks `MAX_FORK_DEPTH` behind,
/// which mines the forks (paying key 2, so that a fork never repeats a
/// block) without replaying the chain.
struct Generator {
    main: Node,
    shadow: Node,
    /// Blocks `main` has and `shadow` not yet.
    lag: std::collections::VecDeque<Block>,
    branch: Vec<(Block, u8)>,
}

impl Generator {
    fn new() -> Self {
        Self { main: fresh_node(), shadow: fresh_node(), lag: Default::default(), branch: Vec::new() }
    }

    fn mine(&mut self) -> Block {
        let height = self.branch.len() + 1;
        if height > 100 {
            let (coinbase_block, owner) = &self.branch[height - 101];
            let coinbase = &coinbase_block.transactions[0];
            let spent = coinbase.outputs[0].clone();
            let value = spent.amount.to_base_units();
            // Halvings make coinbases small: split only what stays above dust.
            if value >= 100_000 {
                let fee = 1_000;
                let half = Amount::from_base_units((value - fee) / 2).expect("amount");
                let rest = Amount::from_base_units(value - fee - (value - fee) / 2).expect("amount");
                let mut tx = Transaction {
                    version: 1,
                    inputs: vec![TxIn::spending(OutPoint { txid: coinbase.txid(), index: 0 })],
                    outputs: vec![
                        TxOut { amount: half, lock: lock(&key(3)) },
                        TxOut { amount: rest, lock: lock(&key(4)) },
                    ],
                    lock_time: 0,
                };
                let genesis = self.main.params().genesis_hash;
                sign_inputs(&Secp256k1::new(), &mut tx, &[&spent], genesis, &key(*owner), &[9; 32]);
                // Already in the pool after a reorganization: fine.
                let _ = self.main.submit_transaction(tx);
            }
        }
        let block = solve(&self.main, 1);
        self.branch.push((block.clone(), 1));
        self.lag.push_back(block.clone());
        while self.lag.len() > MAX_FORK_DEPTH {
            let old = self.lag.pop_front().expect("not empty");
            self.shadow.submit_block(old).expect("the shadow follows");
        }
        block
    }

    /// A branch from `depth` blocks below the tip (at most
    /// `MAX_FORK_DEPTH`), one block longer than what it replaces; returns
    /// its blocks, which `main` has taken.
    fn fork(&mut self, depth: usize) -> Vec<Block> {
        let depth = depth.min(MAX_FORK_DEPTH).min(self.lag.len());
        while self.lag.len() > depth {
            let old = self.lag.pop_front().expect("not empty");
            self.shadow.submit_block(old).expect("the shadow follows");
        }
        self.lag.clear();
        self.branch.truncate(self.branch.len() - depth);
        let blocks: Vec<Block> = (0..=depth).map(|_| solve(&self.shadow, 2)).collect();
        for block in &blocks {
            self.main.submit_block(block.clone()).expect("the fork is valid");
            self.branch.push((block.clone(), 2));
        }
        assert_eq!(self.main.summary().tip.hash, blocks[depth].block_hash(), "the fork took over");
        blocks
    }
}

/// A block on `node`'s tip from its pool, paying key `payee`, submitted.
fn solve(node: &Node, payee: u8) -> Block {
    let (template, _) = node.template(&lock(&key(payee)));
    let block = cairn_miner::solve(template, Kernel::Portable).expect("template");
    node.submit_block(block.clone()).expect("the generator's own block");
    block
}

fn fresh_node() -> Node {
    Node::open(
        Arc::new(MemStore::new()),
        Params::for_network(Network::Regtest),
        std::path::Path::new("/nonexistent"),
    )
    .expect("open")
}

fn tip_digest(rpc: &Rpc) -> Option<(String, String)> {
    let info = rpc.call("gettxoutsetinfo", json!([])).ok()?;
    Some((info["bestblock"].as_str()?.to_owned(), info["hash_serialized"].as_str()?.to_owned()))
}

/// What every thread shares.
struct Soak {
    feed: Mutex<Vec<String>>,
    /// The reference's digest at each tip it had.
    digests: Mutex<HashMap<String, String>>,
    pids: Vec<AtomicU32>,
    up: Vec<AtomicBool>,
    killing: AtomicBool,
    done: AtomicBool,
    progress: Vec<AtomicUsize>,
    kills: AtomicU64,
    recovery_kills: AtomicU64,
    checks: AtomicU64,
    mismatches: AtomicU64,
    reorgs: AtomicU64,
}

fn victim(soak: &Soak, index: usize, dir: &std::path::Path, seed: u64) {
    let mut rng = Rng(seed);
    let mut node = NodeProcess::start(dir, &[]);
    soak.pids[index].store(node.pid(), Ordering::Release);
    soak.up[index].store(true, Ordering::Release);
    let mut next = 0;
    loop {
        let block = soak.feed.lock().expect("feed").get(next).cloned();
        let Some(block) = block else {
            if soak.done.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if node.rpc.call("submitblock", json!([block])).is_ok() {
            next += 1;
            soak.progress[index].store(next, Ordering::Release);
            continue;
        }
        if node.wait_exit(Duration::from_millis(500)).is_none() {
            continue; // an error while alive: the block is tried again
        }
        // Killed. Restart, sometimes killing it again while it recovers.
        soak.up[index].store(false, Ordering::Release);
        loop {
            node = NodeProcess::spawn(dir, &[], Launch::default());
            if !soak.killing.load(Ordering::Acquire) || rng.below(3) != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            let recovering = !dir.join("rpc.address").exists();
            node.kill_now();
            soak.kills.fetch_add(1, Ordering::AcqRel);
            if recovering {
                soak.recovery_kills.fetch_add(1, Ordering::AcqRel);
            }
        }
        node.wait_ready(Duration::from_secs(120));
        let (tip, digest) = tip_digest(&node.rpc).expect("a restarted node answers");
        let expected = soak.digests.lock().expect("digests").get(&tip).cloned();
        soak.checks.fetch_add(1, Ordering::AcqRel);
        if expected.as_deref() != Some(digest.as_str()) {
            soak.mismatches.fetch_add(1, Ordering::AcqRel);
            eprintln!("MISMATCH: victim {index} at {tip}: digest {digest}, reference {expected:?}");
        }
        soak.pids[index].store(node.pid(), Ordering::Release);
        soak.up[index].store(true, Ordering::Release);
        // Feed again from well before where it was (what it already has
        // comes back as a duplicate).
        next = next.saturating_sub(300);
    }
    soak.up[index].store(false, Ordering::Release);
    let final_state = tip_digest(&node.rpc).expect("answers");
    let reference = soak.digests.lock().expect("digests").get(&final_state.0).cloned();
    assert_eq!(
        reference.as_deref(),
        Some(final_state.1.as_str()),
        "victim {index} ends equal to the reference"
    );
    node.stop();
}

#[test]
#[ignore = "long: run with scripts/crash-soak.sh N"]
fn crash_soak() {
    let kills_wanted: u64 = std::env::var("CAIRN_SOAK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed = std::env::var("CAIRN_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    println!("crash soak: {kills_wanted} kills, seed {seed} (CAIRN_SOAK_SEED to repeat)");
    let soak = Arc::new(Soak {
        feed: Mutex::new(Vec::new()),
        digests: Mutex::new(HashMap::new()),
        pids: (0..VICTIMS).map(|_| AtomicU32::new(0)).collect(),
        up: (0..VICTIMS).map(|_| AtomicBool::new(false)).collect(),
        killing: AtomicBool::new(true),
        done: AtomicBool::new(false),
        progress: (0..VICTIMS).map(|_| AtomicUsize::new(0)).collect(),
        kills: AtomicU64::new(0),
        recovery_kills: AtomicU64::new(0),
        checks: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        reorgs: AtomicU64::new(0),
    });
    let reference_dir = tempfile::tempdir().expect("tempdir");
    let reference = NodeProcess::start(reference_dir.path(), &[]);
    let genesis = tip_digest(&reference.rpc).expect("answers");
    soak.digests.lock().expect("digests").insert(genesis.0, genesis.1);

    // The generator: keeps the feed ahead of the slowest victim, feeding
    // the reference first and noting its digest at every tip.
    let generator = {
        let soak = Arc::clone(&soak);
        let rpc = reference.rpc.clone();
        std::thread::spawn(move || {
            let mut generator = Generator::new();
            let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
            loop {
                let fed = soak.feed.lock().expect("feed").len();
                let slowest = soak.progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap_or(0);
                if soak.done.load(Ordering::Acquire) {
                    break;
                }
                if fed >= slowest + 64 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let blocks =
                    if generator.branch.len() > 10 && generator.branch.len().is_multiple_of(FORK_EVERY) {
                        soak.reorgs.fetch_add(1, Ordering::AcqRel);
                        generator.fork(1 + rng.below(4) as usize)
                    } else {
                        vec![generator.mine()]
                    };
                for block in blocks {
                    let hex = hex::encode(block.encode());
                    rpc.ok("submitblock", json!([hex]));
                    let (tip, digest) = tip_digest(&rpc).expect("the reference answers");
                    soak.digests.lock().expect("digests").insert(tip, digest);
                    soak.feed.lock().expect("feed").push(hex);
                }
            }
        })
    };

    let dirs: Vec<tempfile::TempDir> = (0..VICTIMS).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let victims: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| {
            let soak = Arc::clone(&soak);
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || victim(&soak, index, &dir, seed.wrapping_add(index as u64 + 1)))
        })
        .collect();

    // The killer.
    let mut rng = Rng(seed);
    let started = std::time::Instant::now();
    // A victim or the generator that ends early has failed: its panic is
    // the soak's.
    let failed = |victims: &[std::thread::JoinHandle<()>], generator: &std::thread::JoinHandle<()>| {
        generator.is_finished() || victims.iter().any(std::thread::JoinHandle::is_finished)
    };
    while soak.kills.load(Ordering::Acquire) < kills_wanted && !failed(&victims, &generator) {
        std::thread::sleep(Duration::from_millis(50 + rng.below(700)));
        let index = rng.below(VICTIMS as u64) as usize;
        if !soak.up[index].load(Ordering::Acquire) {
            continue;
        }
        let pid = soak.pids[index].load(Ordering::Acquire);
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        soak.kills.fetch_add(1, Ordering::AcqRel);
        soak.up[index].store(false, Ordering::Release);
    }
    soak.killing.store(false, Ordering::Release);
    // Let the victims catch up with everything fed, then stop.
    let fed = soak.feed.lock().expect("feed").len();
    while soak.progress.iter().any(|p| p.load(Ordering::Acquire) < fed) && !failed(&victims, &generator) {
        std::thread::sleep(Duration::from_millis(50));
    }
    soak.done.store(true, Ordering::Release);
    generator.join().expect("generator");
    for victim in victims {
        victim.join().expect("victim");
    }
    let blocks = soak.feed.lock().expect("feed").len();
    let summary = format!(
        "crash soak: {} kills ({} during recovery), {} restarts checked, {} mismatches; {} blocks fed, {} reorganizations, {:.0} s",
        soak.kills.load(Ordering::Acquire),
        soak.recovery_kills.load(Ordering::Acquire),
        soak.checks.load(Ordering::Acquire),
        soak.mismatches.load(Ordering::Acquire),
        blocks,
        soak.reorgs.load(Ordering::Acquire),
        started.elapsed().as_secs_f64()
    );
    println!("{summary}");
    assert_eq!(soak.mismatches.load(Ordering::Acquire), 0, "{summary}");
    reference.stop();
}
