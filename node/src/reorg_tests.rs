//! The mempool across reorganizations: after every change of the active
//! chain the pool holds exactly the transactions valid on the new tip, and
//! every block built from it connects. Random sequences of payments
//! (plain, height- and time-locked, chains of unconfirmed ones, spends of
//! young coinbases), mined blocks and reorganizations of depth 1 to 10
//! (some double-spending a disconnected transaction's input), on a regtest
//! node whose coinbases mature after 3 blocks so that a reorganization can
//! disconnect a coinbase a pool transaction spends.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use cairn_consensus::sighash::sign_inputs;
use cairn_consensus::transaction::SEQUENCE_FINAL;
use cairn_consensus::{
    Block, BlockHash, Height, Network, OutPoint, Params, Transaction, TxIn, TxOut, Txid, MAX_BLOCK_SIZE,
};
use proptest::prelude::*;
use secp256k1::{Keypair, Secp256k1};

use crate::chain::Accepted;
use crate::node::{unix_now, Node};
use crate::store::MemStore;
use crate::template::{new_block, unmined_block, Placement, COINBASE_RESERVE};
use crate::tests::{keypair, lock, solve};

/// What a step of the sequence does.
#[derive(Debug, Clone)]
enum Step {
    /// Pays from one of the key's coins (`coin` picks it): `kind` 0 with no
    /// lock time, 1 locked to the tip's height, 2 locked to just below the
    /// tip's median time past (final now, not on a branch with earlier
    /// times).
    Pay { coin: u16, kind: u8 },
    /// Mines a block from the pool, as the built-in miner does.
    Mine,
    /// A heavier branch from `depth` blocks below the tip, `extra` blocks
    /// longer, with earlier times; its first block double-spends an input
    /// of the first disconnected block when `double_spend`.
    Reorg { depth: u32, extra: u32, double_spend: bool, as_run: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<u16>(), 0u8..3).prop_map(|(coin, kind)| Step::Pay { coin, kind }),
        2 => Just(Step::Mine),
        1 => (1u32..=10, 1u32..=2, any::<bool>(), any::<bool>())
            .prop_map(|(depth, extra, double_spend, as_run)| Step::Reorg { depth, extra, double_spend, as_run }),
    ]
}

struct World {
    node: Node,
    key: Keypair,
    other: Keypair,
    /// Every output this test made, to sign spends of it.
    known: HashMap<OutPoint, TxOut>,
    /// The main chain's clock: 50 s a block, far enough behind the real
    /// clock for a few hundred blocks.
    clock: u64,
    /// Makes every branch's coinbases differ.
    salt: u32,
}

impl World {
    fn new() -> Self {
        let mut params = Params::for_network(Network::Regtest);
        params.coinbase_maturity = 3;
        let node = Node::open(Arc::new(MemStore::new()), params, Path::new("/nonexistent")).expect("open");
        let mut world = Self {
            node,
            key: keypair(1),
            other: keypair(2),
            known: HashMap::new(),
            clock: unix_now() - 100_000,
            salt: 0,
        };
        for _ in 0..8 {
            world.mine();
        }
        world
    }

    fn learn(&mut self, transactions: &[Transaction]) {
        for tx in transactions {
            let txid = tx.txid();
            for (index, output) in tx.outputs.iter().enumerate() {
                self.known.insert(OutPoint { txid, index: index as u32 }, output.clone());
            }
        }
    }

    /// Mines one block on the tip from the pool and connects it: the node
    /// must take what its own pool gave.
    fn mine(&mut self) {
        self.clock += 50;
        let block = {
            let state = self.node.state();
            let (txs, fees) = state.mempool.select(MAX_BLOCK_SIZE - COINBASE_RESERVE);
            new_block(&state.chain, &lock(&self.key), txs, fees, self.clock)
        };
        let block = solve(block);
        self.learn(&block.transactions);
        let hash = block.block_hash();
        let accepted =
            self.node.submit_block(block).unwrap_or_else(|e| panic!("block from the pool refused: {e}"));
        assert_eq!(accepted, Accepted::Activated, "block {hash}");
    }

    /// The key's coins not spent in the pool: confirmed, and outputs of
    /// pool transactions.
    fn coins(&self) -> Vec<(OutPoint, TxOut)> {
        let state = self.node.state();
        let key_lock = lock(&self.key);
        let mut coins: Vec<(OutPoint, TxOut)> = state
            .chain
            .address_coins(&key_lock)
            .expect("address index")
            .into_iter()
            .map(|(outpoint, coin)| (outpoint, coin.output))
            .collect();
        for (txid, entry) in state.mempool.entries() {
            for (index, output) in entry.tx.outputs.iter().enumerate() {
                if output.lock == key_lock {
                    coins.push((OutPoint { txid: *txid, index: index as u32 }, output.clone()));
                }
            }
        }
        coins.retain(|(outpoint, _)| state.mempool.spender(outpoint).is_none());
        coins.sort_by_key(|(outpoint, _)| *outpoint);
        coins
    }

    fn sign(&self, tx: &mut Transaction, spent: &TxOut) {
        let genesis = self.node.state().chain.params().genesis_hash;
        sign_inputs(&Secp256k1::new(), tx, &[spent], genesis, &self.key, &[7; 32]);
    }

    fn pay(&mut self, coin: u16, kind: u8) {
        let coins = self.coins();
        if !coins.is_empty() {
            let (outpoint, spent) = coins[usize::from(coin) % coins.len()].clone();
            self.pay_from(outpoint, &spent, kind);
        }
    }

    /// Spends `outpoint` (holding `spent`) back to the key in two outputs,
    /// with the lock time `kind` says; the txid when the pool took it.
    fn pay_from(&mut self, outpoint: OutPoint, spent: &TxOut, kind: u8) -> Option<Txid> {
        let fee = 2_000;
        let rest = spent.amount.to_base_units().checked_sub(fee).filter(|rest| *rest >= 2_000)?;
        let amount = |units| cairn_consensus::Amount::from_base_units(units).expect("in range");
        let outputs = vec![
            TxOut { amount: amount(rest / 2), lock: lock(&self.key) },
            TxOut { amount: amount(rest - rest / 2), lock: lock(&self.key) },
        ];
        let (lock_time, sequence) = {
            let state = self.node.state();
            match kind {
                0 => (0, SEQUENCE_FINAL),
                1 => (state.chain.height().get(), SEQUENCE_FINAL - 1),
                _ => (state.chain.median_time_past() - 1, SEQUENCE_FINAL - 1),
            }
        };
        let mut tx = Transaction {
            version: 1,
            inputs: vec![TxIn { sequence, ..TxIn::spending(outpoint) }],
            outputs,
            lock_time,
        };
        self.sign(&mut tx, spent);
        self.learn(std::slice::from_ref(&tx));
        // Spends of immature coinbases and the like are refused: fine.
        self.node.accept_transaction(tx).ok()
    }

    /// The coinbase output of the active block at `height`.
    fn coinbase_at(&self, height: u32) -> (OutPoint, TxOut) {
        let state = self.node.state();
        let hash = state.chain.hash_at(Height::new(height)).expect("active");
        let block = state.chain.block(&hash).expect("read").expect("stored");
        (OutPoint { txid: block.transactions[0].txid(), index: 0 }, block.transactions[0].outputs[0].clone())
    }

    /// A block on `prev` at `height` paying the other key the subsidy,
    /// holding `txs`, solved.
    fn branch_block(&mut self, prev: BlockHash, height: u32, time: u32, txs: Vec<Transaction>) -> Block {
        self.salt += 1;
        let params = self.node.state().chain.params().clone();
        let place = Placement { prev, height: Height::new(height), time, bits: params.genesis.header.bits };
        let reward = params.subsidy(Height::new(height));
        let block = unmined_block(&place, &self.salt.to_le_bytes(), &lock(&self.other), reward, txs);
        let block = solve(block);
        self.learn(&block.transactions);
        block
    }

    fn reorg(&mut self, depth: u32, extra: u32, double_spend: bool, as_run: bool) {
        let (fork_height, fork, mut times, disconnected) = {
            let state = self.node.state();
            let chain = &state.chain;
            let tip = chain.height().get();
            let fork_height = tip - depth.min(tip - 1);
            let at = |h: u32| chain.hash_at(Height::new(h)).expect("active");
            let times: Vec<u32> = (fork_height.saturating_sub(10)..=fork_height)
                .map(|h| chain.entry(&at(h)).expect("indexed").header.time)
                .collect();
            let disconnected: Vec<Block> = (fork_height + 1..=tip)
                .map(|h| chain.block(&at(h)).expect("read").expect("stored"))
                .collect();
            (fork_height, at(fork_height), times, disconnected)
        };
        // A transaction of the first disconnected block loses its input to
        // the branch: it cannot come back, nor can what spent its outputs.
        let mut first_txs = Vec::new();
        if double_spend {
            let inside: HashSet<_> = disconnected[0].transactions.iter().map(Transaction::txid).collect();
            let input = disconnected[0]
                .transactions
                .iter()
                .skip(1)
                .flat_map(|tx| &tx.inputs)
                .map(|input| input.prevout)
                .find(|prevout| !inside.contains(&prevout.txid));
            if let Some((outpoint, spent)) = input.and_then(|p| self.known.get(&p).map(|o| (p, o.clone()))) {
                let amount = spent.amount.to_base_units() - 5_000;
                let mut tx = Transaction {
                    version: 1,
                    inputs: vec![TxIn::spending(outpoint)],
                    outputs: vec![TxOut {
                        amount: cairn_consensus::Amount::from_base_units(amount).expect("in range"),
                        lock: lock(&self.other),
                    }],
                    lock_time: 0,
                };
                self.sign(&mut tx, &spent);
                first_txs.push(tx);
            }
        }
        let mut branch = Vec::new();
        let mut prev = fork;
        for i in 0..depth.min(disconnected.len() as u32) + extra {
            // Just past the branch's median time past: earlier than the
            // main chain's blocks, so time locks can stop being final.
            let mut last: Vec<u32> = times[times.len().saturating_sub(11)..].to_vec();
            last.sort_unstable();
            let time = last[last.len() / 2] + 1;
            let txs = if i == 0 { std::mem::take(&mut first_txs) } else { Vec::new() };
            let block = self.branch_block(prev, fork_height + 1 + i, time, txs);
            times.push(time);
            prev = block.block_hash();
            branch.push(block);
        }
        if as_run {
            for (hash, result) in self.node.accept_blocks(branch) {
                assert!(result.is_ok(), "branch block {hash}: {result:?}");
            }
        } else {
            for block in branch {
                self.node.submit_block(block).expect("branch block");
            }
        }
        let state = self.node.state();
        assert_eq!(state.chain.tip(), prev, "the heavier branch is active");
        // A disconnected transaction not back in the pool could not come back.
        for tx in disconnected.iter().flat_map(|block| block.transactions.iter().skip(1)) {
            if state.mempool.get(&tx.txid()).is_none() {
                let verdict = state.mempool.test_accept(tx, &state.chain, self.node.verifier());
                assert!(verdict.is_err(), "{} is valid on the new tip but was not taken back", tx.txid());
            }
        }
    }

    /// The pool holds only transactions valid on the tip: a block of all of
    /// them, parents first, connects.
    fn check(&self) {
        let state = self.node.state();
        let (txs, fees) = state.mempool.select(MAX_BLOCK_SIZE - COINBASE_RESERVE);
        assert_eq!(txs.len(), state.mempool.len(), "the whole pool fits in one block here");
        let block = new_block(&state.chain, &lock(&self.key), txs, fees, self.clock + 50);
        if let Err(error) = state.chain.check_template(&block, unix_now()) {
            panic!("a block of the pool's transactions does not connect: {error}");
        }
        // And the template the miner gets needs no repair.
        drop(state);
        let (template, _) = self.node.template(&lock(&self.key));
        assert_eq!(template.transactions.len(), block.transactions.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn after_every_reorganization_the_pool_holds_exactly_what_is_valid_on_the_tip(
        steps in prop::collection::vec(step(), 8..30)
    ) {
        let mut world = World::new();
        for step in steps {
            match step {
                Step::Pay { coin, kind } => world.pay(coin, kind),
                Step::Mine => world.mine(),
                Step::Reorg { depth, extra, double_spend, as_run } => {
                    world.reorg(depth, extra, double_spend, as_run);
                }
            }
            world.check();
        }
    }
}

/// One of each case by hand: a chain whose parent is double-spent by the
/// branch, a pool transaction spending a coinbase the reorganization
/// disconnects, and a spend whose time lock the branch's earlier times
/// undo; all of them leave, and the next block from the pool connects.
#[test]
fn a_reorganization_removes_what_it_invalidates_and_the_next_block_connects() {
    let mut world = World::new();
    let (first, first_out) = world.coinbase_at(1);
    let parent = world.pay_from(first, &first_out, 0).expect("parent accepted");
    world.mine();
    let fork_height = world.node.state().chain.height().get() - 1;
    let (young, young_out) = world.coinbase_at(fork_height + 1);
    world.mine();
    world.mine();
    // Three blocks above the fork: the parent's block, whose coinbase is
    // now mature for the pool, and two empty ones.
    let parent_out = world.known[&OutPoint { txid: parent, index: 0 }].clone();
    let child = world.pay_from(OutPoint { txid: parent, index: 0 }, &parent_out, 0).expect("child accepted");
    let coinbase_spend = world.pay_from(young, &young_out, 0).expect("young coinbase spend accepted");
    let (second, second_out) = world.coinbase_at(2);
    let time_locked = world.pay_from(second, &second_out, 2).expect("time-locked spend accepted");
    let lock_time = world.node.state().mempool.get(&time_locked).expect("in the pool").tx.lock_time;
    world.check();

    world.reorg(3, 1, true, false);
    let state = world.node.state();
    assert_eq!(state.chain.height().get(), fork_height + 4);
    for (what, txid) in [
        ("the double-spent parent", parent),
        ("its child", child),
        ("the spend of a disconnected coinbase", coinbase_spend),
        ("the spend no longer final", time_locked),
    ] {
        assert!(state.mempool.get(&txid).is_none(), "{what} {txid} left the pool");
    }
    assert!(state.chain.median_time_past() <= lock_time, "the branch's times undo the time lock");
    drop(state);
    world.check();
    world.mine();
    world.check();
}
