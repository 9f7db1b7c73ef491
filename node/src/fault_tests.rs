//! Storage faults while the chain changes (Bitcoin Core's `AbortNode`):
//! every read and write of a reorganization (store, disconnect, connect)
//! is made to fail in turn, and corrupt undo data is met during one. Each
//! time the node stops itself with the reason, never reports a stored
//! block as refused nor an unstored one as taken, and the store it leaves
//! reopens and goes on to the same chain and UTXO set as a node that never
//! failed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use cairn_consensus::{Amount, Block, BlockHash, Network, OutPoint, Params, Transaction};

use crate::chain::{Accepted, Chain, ChainError, Submitted};
use crate::node::Node;
use crate::store::{Batch, Cf, MemStore, Pairs, Store, StoreError};
use crate::tests::{keypair, lock, solve};

/// The node checks block times against the real clock: the scenario's
/// blocks are timed a day before it.
fn now() -> u64 {
    crate::node::unix_now()
}

/// A store in memory that fails its `fail_at`th operation (reads and
/// writes alike, counting from 1 once armed), or returns undo data that
/// does not decode while `corrupt_undo` is set.
#[derive(Debug, Clone, Default)]
struct FaultStore {
    inner: MemStore,
    armed: Arc<AtomicBool>,
    ops: Arc<AtomicUsize>,
    fail_at: Arc<AtomicUsize>,
    corrupt_undo: Arc<AtomicBool>,
}

impl FaultStore {
    /// Counts an operation; whether it is the one to fail.
    fn fails(&self) -> bool {
        if !self.armed.load(Ordering::SeqCst) {
            return false;
        }
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        n == self.fail_at.load(Ordering::SeqCst)
    }

    fn arm(&self, fail_at: usize) {
        self.ops.store(0, Ordering::SeqCst);
        self.fail_at.store(fail_at, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }
}

fn injected() -> StoreError {
    StoreError::Corrupt("injected failure: no space left on device")
}

impl Store for FaultStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.fails() {
            return Err(injected());
        }
        let value = self.inner.get(cf, key)?;
        if cf == Cf::Undo && self.corrupt_undo.load(Ordering::SeqCst) {
            return Ok(value.map(|mut bytes| {
                bytes.truncate(bytes.len() / 2);
                bytes
            }));
        }
        Ok(value)
    }
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Pairs, StoreError> {
        if self.fails() {
            return Err(injected());
        }
        self.inner.scan_prefix(cf, prefix)
    }
    fn for_each(&self, cf: Cf, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        if self.fails() {
            return Err(injected());
        }
        self.inner.for_each(cf, f)
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if self.fails() {
            return Err(injected());
        }
        self.inner.write(batch)
    }
}

fn params() -> Params {
    let mut params = Params::for_network(Network::Regtest);
    // Coinbases spendable at once, so that every block spends coins and
    // every disconnection restores some from undo data.
    params.coinbase_maturity = 1;
    params
}

/// The chains of the scenario, built once: `base` (shared), then `main`
/// (two blocks) or the heavier `branch` (three), each block with a payment
/// of a coinbase, the branch's first one double-spending the main chain's.
struct Scenario {
    base: Vec<Block>,
    main: Vec<Block>,
    branch: Vec<Block>,
}

fn pay(genesis: BlockHash, coinbase: &Transaction, to: u8) -> Transaction {
    let outpoint = OutPoint { txid: coinbase.txid(), index: 0 };
    let value = coinbase.outputs[0].amount;
    let output = cairn_consensus::TxOut {
        amount: value
            .checked_sub(Amount::from_base_units(1_000 + u64::from(to)).expect("fee"))
            .expect("value"),
        lock: lock(&keypair(to)),
    };
    let mut tx = Transaction {
        version: 1,
        inputs: vec![cairn_consensus::TxIn::spending(outpoint)],
        outputs: vec![output],
        lock_time: 0,
    };
    let spent = &coinbase.outputs[0];
    cairn_consensus::sighash::sign_inputs(
        &secp256k1::Secp256k1::new(),
        &mut tx,
        &[spent],
        genesis,
        &keypair(1),
        &[7; 32],
    );
    tx
}

/// Mines a block of `txs` on `chain`'s tip (its coinbase claims no fees:
/// paying less than allowed is valid) and connects it.
fn mine_on(chain: &mut Chain, txs: Vec<Transaction>, time: u64) -> Block {
    let block = solve(crate::template::new_block(chain, &lock(&keypair(1)), txs, Amount::ZERO, time));
    chain.submit_block(block.clone(), now()).expect("valid");
    block
}

impl Scenario {
    fn new() -> Self {
        let start = now() - 86_400;
        let genesis = params().genesis_hash;
        let mut chain = Chain::open(Arc::new(MemStore::new()), params()).expect("open");
        let base: Vec<Block> = (0..4).map(|i| mine_on(&mut chain, Vec::new(), start + i)).collect();
        let fork = chain.tip();
        let mut other = Chain::open(Arc::new(MemStore::new()), params()).expect("open");
        for block in &base {
            other.submit_block(block.clone(), now()).expect("valid");
        }
        let main = vec![
            mine_on(&mut chain, vec![pay(genesis, &base[0].transactions[0], 2)], start + 10),
            mine_on(&mut chain, vec![pay(genesis, &base[1].transactions[0], 2)], start + 11),
        ];
        assert_eq!(other.tip(), fork);
        let branch = vec![
            mine_on(&mut other, vec![pay(genesis, &base[0].transactions[0], 3)], start + 20),
            mine_on(&mut other, vec![pay(genesis, &base[2].transactions[0], 3)], start + 21),
            mine_on(&mut other, vec![pay(genesis, &base[3].transactions[0], 3)], start + 22),
        ];
        Self { base, main, branch }
    }

    /// A node on a fault store holding `base` and `main`, faults not armed.
    fn node(&self) -> (Node, FaultStore) {
        let store = FaultStore::default();
        let node = Node::open(Arc::new(store.clone()), params(), Path::new("/nonexistent")).expect("open");
        for block in self.base.iter().chain(&self.main) {
            node.submit_block(block.clone()).expect("valid");
        }
        (node, store)
    }

    /// The UTXO digest of a node that only ever saw `base` and `branch`.
    fn winner_digest(&self) -> crate::chain::UtxoDigest {
        let mut fresh = Chain::open(Arc::new(MemStore::new()), params()).expect("open");
        for block in self.base.iter().chain(&self.branch) {
            fresh.submit_block(block.clone(), now()).expect("valid");
        }
        fresh.utxo_digest().expect("digest")
    }
}

/// What a submission answered must match what the store holds, the node
/// must have stopped on any failure, and the store must reopen and finish
/// on the branch.
fn check_outcome(scenario: &Scenario, node: &Node, store: &FaultStore, results: &[Submitted], case: &str) {
    store.armed.store(false, Ordering::SeqCst);
    store.corrupt_undo.store(false, Ordering::SeqCst);
    let mut reopened = Chain::open(Arc::new(store.inner.clone()), params())
        .unwrap_or_else(|e| panic!("{case}: the store left behind does not reopen: {e}"));
    let mut failed = false;
    for (hash, result) in results {
        let stored = reopened.has_body(hash);
        match result {
            // Held in memory only, its parent not stored: lost with the
            // process, like a block not stored.
            Ok(Accepted::Orphan) => {}
            Ok(_) | Err(ChainError::StoredUnconnected(_)) => {
                assert!(stored, "{case}: block {hash} answered as stored is not: {result:?}");
            }
            Err(ChainError::Store(_) | ChainError::Stopped) => {
                assert!(!stored, "{case}: block {hash} answered as not stored is stored")
            }
            Err(other) => panic!("{case}: valid block {hash} answered as refused: {other}"),
        }
        failed |= result.is_err();
    }
    if failed {
        let reason =
            node.fatal_error().unwrap_or_else(|| panic!("{case}: a storage failure did not stop the node"));
        assert!(reason.contains("storage failure"), "{case}: {reason}");
        assert!(node.shutdown.load(Ordering::Acquire), "{case}: shutdown requested");
    }
    // The restart: blocks not stored come again (from peers), and the node
    // ends on the branch with the UTXO set of a node that never failed.
    for block in &scenario.branch {
        if !reopened.has_body(&block.block_hash()) {
            reopened
                .submit_block(block.clone(), now())
                .unwrap_or_else(|e| panic!("{case}: resubmitted: {e}"));
        }
    }
    let tip: BlockHash = scenario.branch.last().expect("three blocks").block_hash();
    assert_eq!(reopened.tip(), tip, "{case}: after the restart the node is on the heavier branch");
    assert_eq!(reopened.utxo_digest().expect("digest"), scenario.winner_digest(), "{case}: UTXO set");
}

#[test]
fn every_storage_failure_during_a_reorganization_stops_the_node_and_a_restart_recovers() {
    let scenario = Scenario::new();
    for as_run in [false, true] {
        // Count the operations of a submission that meets no fault.
        let (node, store) = scenario.node();
        store.arm(usize::MAX);
        let results = submit(&node, &scenario, as_run);
        let total = store.ops.load(Ordering::SeqCst);
        assert!(results.iter().all(|(_, r)| r.is_ok()), "no fault, no failure");
        assert!(node.fatal_error().is_none());
        assert!(total > 15, "a reorganization of 2 against 3 blocks reads and writes ({total})");
        let mut stopped = 0;
        for fail_at in 1..=total {
            let (node, store) = scenario.node();
            store.arm(fail_at);
            let results = submit(&node, &scenario, as_run);
            let case = format!("operation {fail_at} of {total} failing (run: {as_run})");
            check_outcome(&scenario, &node, &store, &results, &case);
            stopped += usize::from(node.fatal_error().is_some());
        }
        // Failures in the mempool's reads after the switch only drop the
        // transactions they concern; every chain operation stops the node.
        assert!(stopped * 2 > total, "most failures are in the chain's own work ({stopped} of {total})");
    }
}

#[test]
fn corrupt_undo_data_met_during_a_reorganization_stops_the_node_and_a_restart_recovers() {
    let scenario = Scenario::new();
    let (node, store) = scenario.node();
    let tip_before = node.state().chain.tip();
    store.corrupt_undo.store(true, Ordering::SeqCst);
    let results = submit(&node, &scenario, true);
    let reason = node.fatal_error().expect("the node stopped").to_owned();
    assert!(reason.contains("corrupt undo"), "{reason}");
    // It stopped where its last batch left it: still on the main chain.
    assert_eq!(node.state().chain.tip(), tip_before);
    check_outcome(&scenario, &node, &store, &results, "corrupt undo");
}

fn submit(node: &Node, scenario: &Scenario, as_run: bool) -> Vec<Submitted> {
    if as_run {
        node.accept_blocks(scenario.branch.clone())
    } else {
        scenario
            .branch
            .iter()
            .map(|block| (block.block_hash(), node.accept_blocks(vec![block.clone()]).remove(0).1))
            .collect()
    }
}
