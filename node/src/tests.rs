//! Chain selection, reorgs, invalid blocks and the mempool over the
//! in-memory store (the RocksDB store runs the same code in tests/node.rs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_consensus::check::SequentialVerifier;
use cairn_consensus::sighash::sign_inputs;
use cairn_consensus::{
    Amount, Block, BlockError, Height, Lock, Network, OutPoint, Params, Transaction, TxError, TxIn, TxOut,
};
use cairn_miner::Kernel;
use secp256k1::{Keypair, Secp256k1};

use crate::chain::{Accepted, Chain, ChainError};
use crate::mempool::{Mempool, MempoolError};
use crate::store::{Batch, Cf, MemStore, Pairs, Store, StoreError};
use crate::template::new_block;

const NOW: u64 = 2_000_000_000;

pub(crate) fn keypair(seed: u8) -> Keypair {
    Keypair::from_seckey_slice(&Secp256k1::new(), &[seed; 32]).expect("key")
}

pub(crate) fn lock(key: &Keypair) -> Lock {
    Lock::key(key.x_only_public_key().0.serialize())
}

pub(crate) fn solve(block: Block) -> Block {
    cairn_miner::solve(block, Kernel::Portable).expect("template")
}

fn mine(chain: &Chain, key: &Keypair, txs: Vec<Transaction>, fees: Amount, time: u64) -> Block {
    solve(new_block(chain, &lock(key), txs, fees, time))
}

/// Mines `count` empty blocks paying `key` on `chain`, timed from `time`
/// on, connects them and returns them.
fn extend(chain: &mut Chain, key: &Keypair, count: u64, time: u64) -> Vec<Block> {
    (0..count)
        .map(|i| {
            let block = mine(chain, key, Vec::new(), Amount::ZERO, time + i);
            chain.submit_block(block.clone(), NOW).expect("valid");
            block
        })
        .collect()
}

fn regtest() -> (Chain, MemStore) {
    let store = MemStore::new();
    (Chain::open(Arc::new(store.clone()), Params::for_network(Network::Regtest)).expect("open"), store)
}

/// A regtest node in memory (no data directory: nothing here writes files).
fn regtest_node() -> crate::node::Node {
    crate::node::Node::open(
        Arc::new(MemStore::new()),
        Params::for_network(Network::Regtest),
        std::path::Path::new("/nonexistent"),
    )
    .expect("open")
}

/// Spends `outpoint` (worth `value`, locked to `key`) to `to`, paying `fee`.
fn spend(
    chain: &Chain,
    outpoint: OutPoint,
    value: Amount,
    key: &Keypair,
    to: &Lock,
    fee: u64,
) -> Transaction {
    let output = TxOut {
        amount: value.checked_sub(Amount::from_base_units(fee).expect("fee")).expect("value"),
        lock: to.clone(),
    };
    let mut tx = Transaction {
        version: 1,
        inputs: vec![TxIn::spending(outpoint)],
        outputs: vec![output],
        lock_time: 0,
    };
    let spent = TxOut { amount: value, lock: lock(key) };
    sign_inputs(&Secp256k1::new(), &mut tx, &[&spent], chain.params().genesis_hash, key, &[7; 32]);
    tx
}

#[test]
fn blocks_connect_and_the_tip_survives_reopening() {
    let (mut chain, store) = regtest();
    let key = keypair(1);
    for height in 1..=5u64 {
        let block = mine(&chain, &key, Vec::new(), Amount::ZERO, NOW + height);
        let (accepted, _) = chain.submit_block(block.clone(), NOW).expect("valid");
        assert_eq!(accepted, Accepted::Activated);
        assert_eq!(chain.submit_block(block, NOW).expect("again").0, Accepted::Duplicate);
    }
    assert_eq!(chain.height().get(), 5);
    let digest = chain.utxo_digest().expect("digest");
    assert_eq!(digest.count, 5);
    let reopened = Chain::open(Arc::new(store), Params::for_network(Network::Regtest)).expect("reopen");
    assert_eq!(reopened.tip(), chain.tip());
    assert_eq!(reopened.utxo_digest().expect("digest"), digest);
}

#[test]
fn the_heavier_branch_wins_and_matches_a_fresh_node() {
    let (mut chain, _) = regtest();
    let (a, b) = (keypair(1), keypair(2));
    let common = mine(&chain, &a, Vec::new(), Amount::ZERO, NOW);
    chain.submit_block(common, NOW).expect("valid");
    let fork = chain.tip();
    // Branch A: two blocks.
    extend(&mut chain, &a, 2, NOW + 10);
    // Branch B, built on a second chain from the fork: three blocks.
    let (mut other, _) = regtest();
    other.submit_block(chain.block(&fork).expect("read").expect("stored"), NOW).expect("valid");
    let branch_b = extend(&mut other, &b, 3, NOW + 20);
    assert_eq!(chain.submit_block(branch_b[0].clone(), NOW).expect("valid").0, Accepted::SideBranch);
    assert_eq!(
        chain.submit_block(branch_b[1].clone(), NOW).expect("valid").0,
        Accepted::SideBranch,
        "equal work keeps the first seen"
    );
    let (accepted, reorg) = chain.submit_block(branch_b[2].clone(), NOW).expect("valid");
    assert_eq!(accepted, Accepted::Activated);
    assert_eq!((reorg.disconnected.len(), reorg.connected.len()), (2, 3));
    assert_eq!(chain.tip(), other.tip());
    assert_eq!(chain.utxo_digest().expect("digest"), other.utxo_digest().expect("digest"));
}

/// A block on `chain`'s tip whose coinbase pays one unit too much.
fn overpaying_block(chain: &Chain, key: &Keypair, time: u64) -> Block {
    let mut greedy = new_block(chain, &lock(key), Vec::new(), Amount::ZERO, time);
    greedy.transactions[0].outputs[0].amount = greedy.transactions[0].outputs[0]
        .amount
        .checked_add(Amount::from_base_units(1).expect("1"))
        .expect("sum");
    greedy.header.merkle_root = cairn_consensus::merkle::block_merkle_root(&greedy).root;
    solve(greedy)
}

#[test]
fn an_invalid_block_is_remembered_with_its_descendants_but_a_mutated_one_is_not() {
    let (mut chain, _) = regtest();
    let key = keypair(1);
    let greedy = overpaying_block(&chain, &key, NOW);
    let err = chain.submit_block(greedy.clone(), NOW).expect_err("overpays");
    assert!(matches!(err, ChainError::Block(BlockError::CoinbaseOverpays { .. })), "{err}");
    assert!(matches!(chain.submit_block(greedy.clone(), NOW), Err(ChainError::KnownInvalid(_))));
    assert_eq!(chain.height().get(), 0);

    // A body that does not match its header is dropped, not remembered:
    // the honest body is accepted afterwards.
    let honest = mine(&chain, &key, Vec::new(), Amount::ZERO, NOW + 1);
    let mut mutated = honest.clone();
    mutated.transactions[0].outputs[0].amount = Amount::from_base_units(1).expect("1");
    assert!(matches!(
        chain.submit_block(mutated, NOW),
        Err(ChainError::Block(BlockError::MerkleMismatch { .. }))
    ));
    assert_eq!(chain.submit_block(honest, NOW).expect("valid").0, Accepted::Activated);
}

#[test]
fn each_block_is_reported_valid_before_its_connection_is_written_and_an_invalid_one_never() {
    let (mut chain, store) = regtest();
    let (mut source, _) = regtest();
    let key = keypair(4);
    let blocks = extend(&mut source, &key, 3, NOW);
    let mut heard = Vec::new();
    let (results, reorg) = chain.submit_blocks_reporting(blocks.clone(), NOW, &mut |valid| {
        // Its undo data is written with its connection, in one batch.
        let written = store.get(Cf::Undo, &valid.to_byte_array()).expect("read").is_some();
        heard.push((valid, written));
    });
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(Accepted::Activated))), "{results:?}");
    assert_eq!(reorg.connected.len(), 3);
    let hashes: Vec<_> = blocks.iter().map(Block::block_hash).collect();
    assert_eq!(
        heard,
        hashes.iter().map(|h| (*h, false)).collect::<Vec<_>>(),
        "each once, in order, before its write"
    );
    for hash in &hashes {
        assert!(store.get(Cf::Undo, &hash.to_byte_array()).expect("read").is_some(), "written afterwards");
    }

    // A block that breaks a rule is never reported valid.
    let mut heard = Vec::new();
    let greedy = overpaying_block(&chain, &key, NOW + 10);
    let (results, _) = chain.submit_blocks_reporting(vec![greedy], NOW, &mut |valid| heard.push(valid));
    assert!(
        matches!(results[..], [(_, Err(ChainError::Block(BlockError::CoinbaseOverpays { .. })))]),
        "{results:?}"
    );
    assert!(heard.is_empty(), "{heard:?}");
}

#[test]
fn a_block_submitted_here_is_announced_once_when_it_joins_the_active_chain() {
    use crate::node::Announcement;
    let key = keypair(14);
    let now = crate::node::unix_now();
    let node = regtest_node();
    let mut announcements = node.subscribe();
    let mut announced = || {
        std::iter::from_fn(|| announcements.try_recv().ok())
            .map(|announcement| match announcement {
                Announcement::Block(block) => block.block_hash(),
                Announcement::Transaction(tx) => panic!("a transaction was announced: {}", tx.txid()),
            })
            .collect::<Vec<_>>()
    };
    let (mut source, _) = regtest();
    let blocks = extend(&mut source, &key, 2, now);
    let (mut fork, _) = regtest();
    let rival = extend(&mut fork, &keypair(15), 1, now + 5);

    assert_eq!(node.submit_block(blocks[0].clone()).expect("valid"), Accepted::Activated);
    assert_eq!(announced(), [blocks[0].block_hash()]);
    // Known already, on a branch with no more work, or breaking a rule: none.
    assert_eq!(node.submit_block(blocks[0].clone()).expect("known"), Accepted::Duplicate);
    assert_eq!(node.submit_block(rival[0].clone()).expect("valid"), Accepted::SideBranch);
    let greedy = overpaying_block(&node.state().chain, &key, now + 10);
    assert!(matches!(node.submit_block(greedy), Err(ChainError::Block(BlockError::CoinbaseOverpays { .. }))));
    assert_eq!(announced(), []);
    assert_eq!(node.submit_block(blocks[1].clone()).expect("valid"), Accepted::Activated);
    assert_eq!(announced(), [blocks[1].block_hash()]);
}

#[test]
fn a_block_that_fails_after_the_chain_moved_still_tells_miners() {
    let now = crate::node::unix_now();
    let node = regtest_node();
    let (mut ours, _) = regtest();
    let ours = extend(&mut ours, &keypair(16), 1, now);
    let (mut theirs, _) = regtest();
    let rival = extend(&mut theirs, &keypair(17), 1, now + 5);
    let bad_child = overpaying_block(&theirs, &keypair(17), now + 6);
    assert_eq!(node.submit_block(ours[0].clone()).expect("valid"), Accepted::Activated);
    assert_eq!(node.submit_block(rival[0].clone()).expect("valid"), Accepted::SideBranch);
    let stale = node.stale_flag();
    // The heavier branch is switched to (our block out, the rival in)
    // before the child fails to connect.
    let err = node.submit_block(bad_child).expect_err("overpays");
    assert!(matches!(err, ChainError::Block(BlockError::CoinbaseOverpays { .. })), "{err}");
    assert_ne!(node.state().chain.tip(), ours[0].block_hash());
    assert!(stale.load(Ordering::Acquire), "miners on the old tip are told their work is stale");
}

#[test]
fn orphan_blocks_wait_for_their_parent() {
    let (mut chain, _) = regtest();
    let (mut other, _) = regtest();
    let key = keypair(3);
    let first = mine(&other, &key, Vec::new(), Amount::ZERO, NOW);
    other.submit_block(first.clone(), NOW).expect("valid");
    let second = mine(&other, &key, Vec::new(), Amount::ZERO, NOW + 1);
    assert_eq!(chain.submit_block(second, NOW).expect("held").0, Accepted::Orphan);
    assert_eq!(chain.orphan_count(), 1);
    chain.submit_block(first, NOW).expect("valid");
    assert_eq!(chain.height().get(), 2);
    assert_eq!(chain.orphan_count(), 0);
}

#[test]
fn bodies_after_headers_connect_once_every_ancestor_body_is_there_in_any_order() {
    let key = keypair(4);
    // The source chain: 12 blocks, and a heavier fork of 8 from block 6.
    let (mut source, _) = regtest();
    let main_line = extend(&mut source, &key, 12, NOW);
    let (mut forked, _) = regtest();
    for block in &main_line[..6] {
        forked.submit_block(block.clone(), NOW).expect("valid");
    }
    let fork = extend(&mut forked, &keypair(5), 8, NOW + 100);

    let (mut chain, store) = regtest();
    let headers: Vec<_> = main_line.iter().map(|b| b.header).collect();
    chain.store_headers(&headers, NOW).expect("headers");
    assert_eq!(chain.best_header().height.get(), 12);
    // Every body but the first, last first: nothing can connect yet.
    for block in main_line[1..].iter().rev() {
        assert_eq!(chain.submit_block(block.clone(), NOW).expect("valid").0, Accepted::SideBranch);
        assert_eq!(chain.height().get(), 0);
    }
    // A restart with eleven bodies waiting for the first.
    let mut chain = Chain::open(Arc::new(store), Params::for_network(Network::Regtest)).expect("reopen");
    assert_eq!(chain.height().get(), 0);
    let (accepted, reorg) = chain.submit_block(main_line[0].clone(), NOW).expect("valid");
    assert_eq!(accepted, Accepted::Activated);
    assert_eq!(reorg.connected.len(), 12, "the first body completes the chain");
    assert_eq!(chain.tip(), source.tip());

    // The heavier fork, its bodies with a gap at its third block: the
    // chain moves only as far as the bodies it has allow (the fork's first
    // two blocks carry less work than the main line's last six).
    let fork_headers: Vec<_> = fork.iter().map(|b| b.header).collect();
    chain.store_headers(&fork_headers, NOW).expect("fork headers");
    for (i, block) in fork.iter().enumerate().rev().filter(|(i, _)| *i != 2) {
        chain.submit_block(block.clone(), NOW).expect("valid");
        assert_eq!(chain.tip(), source.tip(), "body {i} of the fork cannot connect yet");
    }
    let (accepted, reorg) = chain.submit_block(fork[2].clone(), NOW).expect("valid");
    assert_eq!(accepted, Accepted::Activated);
    assert_eq!((reorg.disconnected.len(), reorg.connected.len()), (6, 8));
    assert_eq!(chain.tip(), forked.tip());
    assert_eq!(chain.utxo_digest().expect("digest"), forked.utxo_digest().expect("digest"));
}

/// A chain where `count` mature coinbases pay `key`.
fn chain_with_coins(key: &Keypair, count: u64) -> (Chain, Vec<(OutPoint, Amount)>) {
    let (mut chain, _) = regtest();
    let mut coins = Vec::new();
    for i in 0..count {
        let block = mine(&chain, key, Vec::new(), Amount::ZERO, NOW + i);
        let coinbase = &block.transactions[0];
        coins.push((OutPoint { txid: coinbase.txid(), index: 0 }, coinbase.outputs[0].amount));
        chain.submit_block(block, NOW).expect("valid");
    }
    extend(&mut chain, &keypair(99), 100, NOW + 100);
    (chain, coins)
}

fn chain_with_money(key: &Keypair) -> (Chain, OutPoint, Amount) {
    let (chain, coins) = chain_with_coins(key, 1);
    (chain, coins[0].0, coins[0].1)
}

#[test]
fn mempool_replaces_by_fee_evicts_at_the_cap_and_follows_blocks() {
    let key = keypair(5);
    let (mut chain, coin, value) = chain_with_money(&key);
    let verifier = SequentialVerifier::default();
    let mut pool = Mempool::new(1_000_000);
    let to = lock(&keypair(6));

    let low = spend(&chain, coin, value, &key, &to, 200);
    pool.accept(low.clone(), &chain, &verifier, NOW).expect("accepted");
    assert!(matches!(pool.accept(low.clone(), &chain, &verifier, NOW), Err(MempoolError::Duplicate(_))));
    // A conflict paying the same fee does not replace it.
    let same = spend(&chain, coin, value, &key, &lock(&keypair(7)), 200);
    assert!(matches!(
        pool.accept(same, &chain, &verifier, NOW),
        Err(MempoolError::ReplacementTooCheap { .. })
    ));
    // One paying more fee and rate does, with the child of the old one.
    let child =
        spend(&chain, OutPoint { txid: low.txid(), index: 0 }, low.outputs[0].amount, &keypair(6), &to, 300);
    pool.accept(child.clone(), &chain, &verifier, NOW).expect("child of a pool tx");
    assert_eq!(pool.len(), 2);
    let high = spend(&chain, coin, value, &key, &lock(&keypair(7)), 2_000);
    pool.accept(high.clone(), &chain, &verifier, NOW).expect("replacement");
    assert_eq!(pool.txids(), vec![high.txid()], "the replaced transaction and its child are gone");

    // Fee too low, dust, bad signature.
    let mut broke = spend(&chain, coin, value, &key, &to, 2_500);
    broke.inputs[0].witness[0][5] ^= 1;
    assert!(matches!(pool.accept(broke, &chain, &verifier, NOW), Err(MempoolError::Consensus(_))));

    // A block confirming the replacement empties the pool; disconnecting
    // it brings the transaction back.
    let block =
        mine(&chain, &keypair(1), vec![high.clone()], pool.get(&high.txid()).expect("in").fee, NOW + 500);
    let (_, reorg) = chain.submit_block(block, NOW).expect("valid");
    for connected in &reorg.connected {
        pool.remove_for_block(connected);
    }
    assert!(pool.is_empty());
}

#[test]
fn eviction_at_the_cap_raises_the_minimum_fee_rate() {
    let key = keypair(5);
    let (chain, coins) = chain_with_coins(&key, 2);
    let verifier = SequentialVerifier::default();
    let to = lock(&keypair(6));
    let cheap = spend(&chain, coins[0].0, coins[0].1, &key, &to, 300);
    let mut pool = Mempool::new(cheap.size() + 10);
    pool.accept(cheap.clone(), &chain, &verifier, NOW).expect("fits");
    assert_eq!(pool.min_fee_rate(), 1);
    let rich = spend(&chain, coins[1].0, coins[1].1, &key, &to, 5_000);
    pool.accept(rich.clone(), &chain, &verifier, NOW).expect("outbids");
    assert_eq!(pool.txids(), vec![rich.txid()], "the lowest fee rate was evicted");
    assert!(pool.size() <= pool.max_size());
    assert!(pool.min_fee_rate() > 1, "the minimum rose above the evicted rate");
    let again = spend(&chain, coins[0].0, coins[0].1, &key, &to, 300);
    assert!(matches!(pool.accept(again, &chain, &verifier, NOW), Err(MempoolError::FeeTooLow { .. })));
    // A transaction paying less than the pool's lowest when full is refused.
    let poor = spend(&chain, coins[0].0, coins[0].1, &key, &to, 1_000);
    assert!(matches!(pool.accept(poor, &chain, &verifier, NOW), Err(MempoolError::Full)));
    assert_eq!(pool.txids(), vec![rich.txid()]);
}

#[test]
fn templates_pass_full_validation() {
    let key = keypair(8);
    let (mut chain, coin, value) = chain_with_money(&key);
    let verifier = SequentialVerifier::default();
    let mut pool = Mempool::new(1_000_000);
    let tx = spend(&chain, coin, value, &key, &lock(&keypair(9)), 1_000);
    pool.accept(tx.clone(), &chain, &verifier, NOW).expect("accepted");
    let child = spend(
        &chain,
        OutPoint { txid: tx.txid(), index: 0 },
        tx.outputs[0].amount,
        &keypair(9),
        &lock(&key),
        1_000,
    );
    pool.accept(child, &chain, &verifier, NOW).expect("accepted");
    let (txs, fees) = pool.select(cairn_consensus::MAX_BLOCK_SIZE - crate::template::COINBASE_RESERVE);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].txid(), tx.txid(), "parent before child");
    let block = mine(&chain, &key, txs, fees, NOW + 200);
    assert_eq!(chain.submit_block(block.clone(), NOW).expect("valid").0, Accepted::Activated);
    pool.remove_for_block(&block);
    assert!(pool.is_empty());
}

#[test]
fn transactions_of_disconnected_blocks_return_to_the_mempool() {
    let key = keypair(11);
    let now = crate::node::unix_now();
    let node = regtest_node();
    let (mut fork_source, _) = regtest();
    // 101 blocks to mature a coinbase, shared by both chains.
    for i in 0..101u64 {
        let block = mine(&node.state().chain, &key, Vec::new(), Amount::ZERO, now + i);
        node.submit_block(block.clone()).expect("valid");
        fork_source.submit_block(block, now).expect("valid");
    }
    let tx = {
        let state = node.state();
        let first_hash = state.chain.hash_at(cairn_consensus::Height::new(1)).expect("block 1");
        let first = state.chain.block(&first_hash).expect("read").expect("stored");
        let coinbase = &first.transactions[0];
        let outpoint = OutPoint { txid: coinbase.txid(), index: 0 };
        spend(&state.chain, outpoint, coinbase.outputs[0].amount, &key, &lock(&keypair(12)), 500)
    };
    node.submit_transaction(tx.clone()).expect("accepted");
    // Mined into a block: the pool empties.
    let (template, _) = node.template(&lock(&key));
    let block = solve(template);
    assert_eq!(block.transactions.len(), 2);
    node.submit_block(block).expect("valid");
    assert!(node.state().mempool.is_empty());
    // A heavier branch without it: the transaction comes back.
    for i in 0..2u64 {
        let block = mine(&fork_source, &keypair(13), Vec::new(), Amount::ZERO, now + 50 + i);
        fork_source.submit_block(block.clone(), now).expect("valid");
        node.submit_block(block).expect("valid");
    }
    assert_eq!(node.state().chain.tip(), fork_source.tip());
    assert_eq!(node.state().mempool.txids(), vec![tx.txid()]);
}

#[test]
fn prepared_connection_still_refuses_bad_signatures_and_double_spends() {
    let key = keypair(14);
    let (mut chain, coins) = chain_with_coins(&key, 2);
    let to = lock(&keypair(15));
    // A bad signature.
    let mut bad = spend(&chain, coins[0].0, coins[0].1, &key, &to, 500);
    bad.inputs[0].witness[0][0] ^= 1;
    let block = mine(&chain, &key, vec![bad], Amount::from_base_units(500).expect("fee"), NOW + 300);
    let err = chain.submit_block(block, NOW).expect_err("bad signature");
    assert!(err.to_string().contains("signature does not verify"), "{err}");
    // The same coin spent twice in one block.
    let first = spend(&chain, coins[1].0, coins[1].1, &key, &to, 500);
    let second = spend(&chain, coins[1].0, coins[1].1, &key, &lock(&keypair(16)), 600);
    let block =
        mine(&chain, &key, vec![first, second], Amount::from_base_units(1_100).expect("fee"), NOW + 301);
    let err = chain.submit_block(block, NOW).expect_err("double spend");
    assert!(err.to_string().contains("missing or spent"), "{err}");
    // A chain of spends inside one block connects.
    let parent = spend(&chain, coins[0].0, coins[0].1, &key, &to, 500);
    let child = spend(
        &chain,
        OutPoint { txid: parent.txid(), index: 0 },
        parent.outputs[0].amount,
        &keypair(15),
        &lock(&key),
        500,
    );
    let block =
        mine(&chain, &key, vec![parent, child], Amount::from_base_units(1_000).expect("fee"), NOW + 302);
    assert_eq!(chain.submit_block(block, NOW).expect("valid").0, Accepted::Activated);
}

#[test]
fn transactions_the_mempool_accepted_are_not_checked_again_and_vouch_for_nothing_else() {
    use crate::chain::ParallelVerifier;
    let key = keypair(17);
    let (mut chain, coins) = chain_with_coins(&key, 4);
    let to = lock(&keypair(18));
    let cache = Arc::clone(chain.signature_cache());
    let verifier = ParallelVerifier::new(Arc::clone(&cache), true);
    let mut pool = Mempool::new(1_000_000);
    let txs: Vec<Transaction> =
        coins[..3].iter().map(|(o, v)| spend(&chain, *o, *v, &key, &to, 500)).collect();
    for tx in &txs {
        pool.accept(tx.clone(), &chain, &verifier, NOW).expect("accepted");
    }
    // Each accepted transaction: its signature, and its context-free pass.
    assert_eq!((cache.len(), cache.hits()), (6, 0));
    // Refused transactions leave nothing: one spending a coin that does not
    // exist (kept as an orphan), one paying too little for its size.
    let missing = OutPoint { txid: txs[0].txid(), index: 7 };
    let orphan = spend(&chain, missing, coins[3].1, &key, &to, 500);
    assert!(matches!(pool.accept(orphan, &chain, &verifier, NOW), Err(MempoolError::MissingInputs(_))));
    let mut stingy = spend(&chain, coins[3].0, coins[3].1, &key, &to, 0);
    // Policy comes before the costly signatures: a bad signature on a
    // transaction refused for its fee is never verified.
    stingy.inputs[0].witness[0][0] ^= 1;
    assert!(matches!(pool.accept(stingy, &chain, &verifier, NOW), Err(MempoolError::FeeTooLow { .. })));
    assert_eq!(cache.len(), 6);

    // A remembered signature under another message (a higher fee): refused,
    // and neither it nor the changed transaction was found in the cache.
    let mut forged = txs[0].clone();
    forged.outputs[0].amount =
        forged.outputs[0].amount.checked_sub(Amount::from_base_units(1).expect("1")).expect("value");
    let block = mine(&chain, &key, vec![forged], Amount::from_base_units(501).expect("fee"), NOW + 300);
    let err = chain.submit_block(block, NOW).expect_err("signature of another message");
    assert!(err.to_string().contains("signature does not verify"), "{err}");
    assert_eq!((cache.hits(), cache.transaction_hits()), (0, 0));

    // The mempool's transactions connect, each signature found once in the
    // cache; a transaction the mempool never saw is verified and, checked
    // by a block, not remembered.
    let unseen = spend(&chain, coins[3].0, coins[3].1, &key, &to, 500);
    let mut block_txs = txs;
    block_txs.push(unseen);
    let block = mine(&chain, &key, block_txs, Amount::from_base_units(2_000).expect("fee"), NOW + 301);
    assert_eq!(chain.submit_block(block, NOW).expect("valid").0, Accepted::Activated);
    assert_eq!((cache.len(), cache.hits(), cache.transaction_hits()), (6, 3, 3));

    // A node's mempool fills the cache its chain looks signatures up in.
    let node = regtest_node();
    assert!(Arc::ptr_eq(node.verifier().cache(), node.state().chain.signature_cache()));
}

#[test]
fn the_chain_summary_follows_every_change_made_under_the_lock() {
    let key = keypair(13);
    let now = crate::node::unix_now();
    let node = regtest_node();
    let genesis = node.summary();
    assert_eq!(genesis.tip.height.get(), 0);
    assert_eq!(genesis.best_header, genesis.tip);
    assert_eq!(&genesis.locator[..], &[genesis.tip.hash]);

    // Headers stored through the lock move the best header and the locator, not the tip.
    let (mut source, _) = regtest();
    let blocks = extend(&mut source, &key, 3, now);
    let headers: Vec<_> = blocks.iter().map(|b| b.header).collect();
    node.state().chain.store_headers(&headers, now).expect("headers");
    let summary = node.summary();
    assert_eq!(summary.tip, genesis.tip);
    assert_eq!((summary.best_header.height.get(), summary.best_header.hash), (3, source.tip()));
    assert_eq!(summary.locator[0], source.tip());

    // Blocks accepted as a run move the tip.
    let mut blocks = blocks.into_iter();
    let first = node.accept_blocks(blocks.by_ref().take(1).collect());
    assert_eq!(first.len(), 1);
    assert_eq!(node.summary().tip.height.get(), 1);
    let results = node.accept_blocks(blocks.collect());
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(Accepted::Activated))), "{results:?}");
    assert_eq!(node.summary().tip.hash, source.tip());

    // While the lock is held, try_state gives way and the summary still answers.
    let held = node.state();
    assert!(node.try_state().is_none());
    assert_eq!(node.summary().tip.height.get(), 3);
    drop(held);
    assert!(node.try_state().is_some());
}

/// A store in memory whose writes can be made slow (so that in a run of
/// blocks the checks of each surely run while the write of the one before
/// is still in flight) or fail (the `n`th write from when it is told,
/// counting from 1, applying nothing).
#[derive(Debug, Clone, Default)]
struct FaultyStore {
    inner: MemStore,
    slow: Arc<AtomicBool>,
    fail_in: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store for FaultyStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(cf, key)
    }
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Pairs, StoreError> {
        self.inner.scan_prefix(cf, prefix)
    }
    fn for_each(&self, cf: Cf, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        self.inner.for_each(cf, f)
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if self.slow.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        let before =
            self.fail_in.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).unwrap_or(0);
        if before == 1 {
            return Err(StoreError::Corrupt("injected write failure"));
        }
        self.inner.write(batch)
    }
}

/// The UTXO digest of a fresh chain given `blocks` one by one.
fn digest_of<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> crate::chain::UtxoDigest {
    let (mut fresh, _) = regtest();
    for block in blocks {
        fresh.submit_block(block.clone(), NOW).expect("valid");
    }
    fresh.utxo_digest().expect("digest")
}

/// The active chain's blocks after genesis.
fn active_blocks(chain: &Chain) -> Vec<Block> {
    (1..=chain.height().get())
        .map(|h| chain.block(&chain.hash_at(Height::new(h)).expect("active")).expect("read").expect("body"))
        .collect()
}

/// The whole UTXO set and address index in `chain`'s store.
fn coin_indexes(chain: &Chain) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for cf in [Cf::Utxo, Cf::Address] {
        chain.store().for_each(cf, &mut |k, v| out.push((cf, k.to_vec(), v.to_vec()))).expect("read");
    }
    out
}

/// The same, of a fresh chain given only `chain`'s active blocks.
fn fresh_coin_indexes(chain: &Chain) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let (mut fresh, _) = regtest();
    for block in active_blocks(chain) {
        fresh.submit_block(block, NOW).expect("valid");
    }
    assert_eq!(fresh.tip(), chain.tip());
    coin_indexes(&fresh)
}

#[test]
fn reorgs_leave_the_utxo_set_and_address_index_as_a_fresh_chain_given_the_winner() {
    let key = keypair(19);
    let (x, y) = (keypair(20), keypair(21));
    let fee = |n: u64| Amount::from_base_units(n).expect("fee");
    // The same chain three times: the one under test, and one to build each branch on.
    let (mut chain, coins) = chain_with_coins(&key, 3);
    let (mut branch_a, _) = chain_with_coins(&key, 3);
    let (mut branch_b, _) = chain_with_coins(&key, 3);
    assert_eq!((chain.tip(), branch_a.tip()), (branch_b.tip(), branch_b.tip()));

    // Branch A: coins 0 and 1 pay x, then x pays one of them back.
    let paid = vec![
        spend(&branch_a, coins[0].0, coins[0].1, &key, &lock(&x), 500),
        spend(&branch_a, coins[1].0, coins[1].1, &key, &lock(&x), 500),
    ];
    let back = OutPoint { txid: paid[1].txid(), index: 0 };
    let back_value = paid[1].outputs[0].amount;
    let mut a = vec![mine(&branch_a, &key, paid, fee(1_000), NOW + 300)];
    branch_a.submit_block(a[0].clone(), NOW).expect("valid");
    let returned = spend(&branch_a, back, back_value, &x, &lock(&key), 500);
    a.push(mine(&branch_a, &key, vec![returned], fee(500), NOW + 301));
    branch_a.submit_block(a[1].clone(), NOW).expect("valid");
    // Branch B, one block longer: coins 0 and 2 pay y.
    let paid = vec![
        spend(&branch_b, coins[0].0, coins[0].1, &key, &lock(&y), 700),
        spend(&branch_b, coins[2].0, coins[2].1, &key, &lock(&y), 700),
    ];
    let mut b = vec![mine(&branch_b, &key, paid, fee(1_400), NOW + 310)];
    branch_b.submit_block(b[0].clone(), NOW).expect("valid");
    b.extend(extend(&mut branch_b, &y, 2, NOW + 311));

    for block in &a {
        chain.submit_block(block.clone(), NOW).expect("valid");
    }
    assert_eq!(chain.tip(), branch_a.tip());
    assert_eq!(coin_indexes(&chain), fresh_coin_indexes(&chain));
    for block in &b {
        chain.submit_block(block.clone(), NOW).expect("valid");
    }
    assert_eq!(chain.tip(), branch_b.tip(), "the longer branch wins");
    assert_eq!(coin_indexes(&chain), fresh_coin_indexes(&chain));
    assert!(chain.address_history(&lock(&x)).expect("history").is_empty(), "x's history went with branch A");
    // And back: branch A grows past B.
    let longer = extend(&mut branch_a, &x, 2, NOW + 320);
    for block in &longer {
        chain.submit_block(block.clone(), NOW).expect("valid");
    }
    assert_eq!(chain.tip(), branch_a.tip());
    assert_eq!(coin_indexes(&chain), fresh_coin_indexes(&chain));
    assert!(chain.address_coins(&lock(&y)).expect("coins").is_empty(), "y's coins went with branch B");
    let history = chain.address_history(&lock(&x)).expect("history");
    assert_eq!(history.len(), 5, "two payments, one spend and two coinbases: {history:?}");
}

#[test]
fn a_run_of_blocks_checks_each_against_the_coins_of_the_one_still_being_written() {
    let key = keypair(17);
    let (mut source, coins) = chain_with_coins(&key, 1);
    let prefix = active_blocks(&source);
    let fee = Amount::from_base_units(500).expect("fee");
    // Three blocks, each spending the coin the one before created.
    let (mut outpoint, mut value) = coins[0];
    let mut run: Vec<Block> = Vec::new();
    let mut double_spend = None;
    for i in 0..3 {
        if i == 2 {
            // Instead of the third: a block spending the first one's coin
            // again (the second spent it), and a child of that block.
            let (first_out, first_value) = (
                OutPoint { txid: run[0].transactions[1].txid(), index: 0 },
                run[0].transactions[1].outputs[0].amount,
            );
            let again = spend(&source, first_out, first_value, &key, &lock(&keypair(18)), 500);
            let bad = mine(&source, &key, vec![again], fee, NOW + 500);
            let mut child = new_block(&source, &lock(&key), Vec::new(), Amount::ZERO, NOW + 501);
            child.header.prev_block = bad.block_hash();
            double_spend = Some((bad, solve(child)));
        }
        let tx = spend(&source, outpoint, value, &key, &lock(&key), 500);
        (outpoint, value) = (OutPoint { txid: tx.txid(), index: 0 }, tx.outputs[0].amount);
        let block = mine(&source, &key, vec![tx], fee, NOW + 400 + i);
        source.submit_block(block.clone(), NOW).expect("valid");
        run.push(block);
    }
    let (bad, child) = double_spend.expect("built");

    let store = FaultyStore::default();
    let mut chain =
        Chain::open(Arc::new(store.clone()), Params::for_network(Network::Regtest)).expect("open");
    let (results, _) = chain.submit_blocks(prefix.clone(), NOW);
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(Accepted::Activated))), "{results:?}");
    store.slow.store(true, Ordering::Relaxed);

    // The second block spends a coin only the first block's write holds;
    // the third spends a coin that write removes.
    let (results, reorg) =
        chain.submit_blocks(vec![run[0].clone(), run[1].clone(), bad.clone(), child.clone()], NOW);
    let outcomes: Vec<_> = results.iter().map(|(_, r)| r.as_ref().map_err(ToString::to_string)).collect();
    assert!(matches!(outcomes[..2], [Ok(Accepted::Activated), Ok(Accepted::Activated)]), "{outcomes:?}");
    assert!(
        matches!(
            &results[2].1,
            Err(ChainError::Block(BlockError::Transaction { error: TxError::MissingInput { .. }, .. }))
        ),
        "{outcomes:?}"
    );
    assert!(matches!(results[3].1, Err(ChainError::InvalidAncestor(hash)) if hash == child.block_hash()));
    assert_eq!(reorg.connected.len(), 2);
    assert_eq!(chain.tip(), run[1].block_hash());
    assert_eq!(chain.utxo_digest().expect("digest"), digest_of(prefix.iter().chain(&run[..2])));

    // The honest third block connects; a reopened store holds the same.
    assert!(matches!(chain.submit_blocks(vec![run[2].clone()], NOW).0[0].1, Ok(Accepted::Activated)));
    assert_eq!(chain.utxo_digest().expect("digest"), source.utxo_digest().expect("digest"));
    let reopened = Chain::open(Arc::new(store.inner), Params::for_network(Network::Regtest)).expect("reopen");
    assert_eq!(reopened.tip(), source.tip());
    assert_eq!(reopened.utxo_digest().expect("digest"), source.utxo_digest().expect("digest"));
}

/// Blocks of 16 spends each of `coins` (paying `key`) on `source`, connected
/// there: heavy enough for the parallel paths of a run (the writer thread,
/// the body checks on all cores).
fn blocks_of_spends(source: &mut Chain, key: &Keypair, coins: &[(OutPoint, Amount)]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for (i, chunk) in coins.chunks(16).enumerate() {
        let txs: Vec<Transaction> = chunk
            .iter()
            .map(|(outpoint, value)| spend(source, *outpoint, *value, key, &lock(key), 500))
            .collect();
        let fees = Amount::from_base_units(500 * chunk.len() as u64).expect("fees");
        let block = mine(source, key, txs, fees, NOW + 600 + i as u64);
        source.submit_block(block.clone(), NOW).expect("valid");
        blocks.push(block);
    }
    blocks
}

#[test]
fn a_failed_write_in_a_run_leaves_the_chain_at_the_last_block_written() {
    let key = keypair(19);
    let (mut source, coins) = chain_with_coins(&key, 64);
    let prefix = active_blocks(&source);
    let run = blocks_of_spends(&mut source, &key, &coins);

    let store = FaultyStore::default();
    let mut chain =
        Chain::open(Arc::new(store.clone()), Params::for_network(Network::Regtest)).expect("open");
    let (results, _) = chain.submit_blocks(prefix.clone(), NOW);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    // The run writes four bodies, then one connection per block: the
    // second connection fails while the third block is being checked.
    store.fail_in.store(6, Ordering::SeqCst);
    let (results, reorg) = chain.submit_blocks(run.clone(), NOW);
    assert!(matches!(results[0].1, Ok(Accepted::Activated)), "{results:?}");
    assert!(
        results[1..].iter().all(|(_, r)| matches!(r, Err(ChainError::StoredUnconnected(_)))),
        "{results:?}"
    );
    assert_eq!(reorg.connected.len(), 1, "the mempool hears of the block that did connect");
    assert_eq!(chain.tip(), run[0].block_hash());
    // Memory and store agree: the set is that of a chain given only the first block.
    assert_eq!(chain.utxo_digest().expect("digest"), digest_of(prefix.iter().chain(&run[..1])));
    // The bodies are stored: a restart connects them.
    let reopened =
        Chain::open(Arc::new(store.inner.clone()), Params::for_network(Network::Regtest)).expect("reopen");
    assert_eq!(reopened.tip(), source.tip());
    assert_eq!(reopened.utxo_digest().expect("digest"), source.utxo_digest().expect("digest"));
}

#[test]
fn a_run_reports_each_block_body_checked_on_all_cores_and_keeps_the_order_of_rules() {
    let key = keypair(20);
    let (mut source, coins) = chain_with_coins(&key, 48);
    let prefix = active_blocks(&source);
    let blocks = blocks_of_spends(&mut source, &key, &coins);
    let mut mutated = blocks[1].clone();
    mutated.transactions[0].outputs[0].amount = Amount::from_base_units(1).expect("1");
    // A header that breaks a rule is reported as such, not as its body.
    let mut bad_header = blocks[1].clone();
    bad_header.header.bits = cairn_consensus::pow::CompactTarget::from_consensus(0x0100_0000);
    bad_header.transactions[0].outputs[0].amount = Amount::from_base_units(1).expect("1");

    let (mut chain, _) = regtest();
    chain.submit_blocks(prefix, NOW);
    let (results, reorg) =
        chain.submit_blocks(vec![blocks[0].clone(), bad_header, mutated, blocks[2].clone()], NOW);
    assert!(matches!(results[0].1, Ok(Accepted::Activated)), "{results:?}");
    assert!(matches!(results[1].1, Err(ChainError::Header(_))), "{results:?}");
    assert!(matches!(results[2].1, Err(ChainError::Block(BlockError::MerkleMismatch { .. }))), "{results:?}");
    assert!(matches!(results[3].1, Ok(Accepted::Orphan)), "{results:?}");
    assert_eq!(reorg.connected.len(), 1);
    // The honest body is taken (a mutated one is not remembered as invalid)
    // and the orphan waiting for it follows.
    let (results, reorg) = chain.submit_blocks(vec![blocks[1].clone()], NOW);
    assert!(matches!(results[0].1, Ok(Accepted::Activated)), "{results:?}");
    assert_eq!(reorg.connected.len(), 2);
    assert_eq!(chain.tip(), source.tip());
}

#[test]
fn a_chain_ahead_of_the_clock_makes_the_miner_wait_or_say_why_never_mine_a_refused_block() {
    use crate::mining::{mine_one, AheadOfClock};
    let node = Arc::new(regtest_node());
    let key = keypair(3);
    // Eleven blocks stamped 10,000 s past the clock plus the allowed
    // future, accepted as a clock that far ahead would: the median time
    // past, and so the next block's least time, is then beyond what the
    // real clock lets any node accept.
    let future = crate::node::unix_now() + 10_000;
    let ahead = future + u64::from(node.params().max_future_block_time);
    {
        let mut state = node.state();
        for _ in 0..11 {
            let block = mine(&state.chain, &key, Vec::new(), Amount::ZERO, ahead);
            // (Each block's least time is the median past plus one: a
            // clock a little later still accepts them all.)
            state.chain.submit_block(block, future + 60).expect("valid for a clock that far ahead");
        }
    }
    let height = node.state().chain.height();
    let error = mine_one(&node, &lock(&key), None, AheadOfClock::Refuse).expect_err("too far ahead");
    assert!(error.contains("ahead of the clock") && error.contains("s to wait"), "{error}");
    // Waiting: no block is mined (none would be accepted), and a shutdown
    // ends the wait.
    let waiting = {
        let node = Arc::clone(&node);
        let lock = lock(&key);
        std::thread::spawn(move || mine_one(&node, &lock, None, AheadOfClock::Wait))
    };
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(!waiting.is_finished(), "the miner waits for the clock");
    assert_eq!(node.state().chain.height(), height);
    node.request_shutdown();
    assert_eq!(waiting.join().expect("no panic"), Err("mining stopped".to_owned()));
}
