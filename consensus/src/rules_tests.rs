//! Every consensus rule at its limit and one step past it, with the error
//! variant expected, including the historical bug classes: duplicate
//! inputs, value overflow, mutated merkle trees, coinbase overpayment by one
//! unit, immature coinbase spends, signatures over the wrong amount,
//! non-minimal CompactSize and trailing bytes.

use crate::amount::{Amount, MAX_MONEY};
use crate::block::{Block, MAX_BLOCK_SIZE};
use crate::chain::{check_header, check_header_contextual, median_time_past};
use crate::check::{
    check_block, check_inputs, check_transaction, connect_block, BlockContext, SequentialVerifier,
};
use crate::encode::{Decode, DecodeError, Encode};
use crate::error::{BlockError, HeaderError, TxError};
use crate::height::Height;
use crate::merkle::block_merkle_root;
use crate::testkit::*;

fn h(height: u32) -> Height {
    Height::new(height)
}
use crate::transaction::{Lock, OutPoint, Transaction, TxOut};

fn pay(units: u64, n: u8) -> TxOut {
    TxOut { amount: coins(units), lock: lock(n) }
}

fn tx_error(result: Result<(), TxError>) -> TxError {
    result.expect_err("the rule must fail")
}

fn inner(error: BlockError) -> TxError {
    match error {
        BlockError::Transaction { error, .. } => error,
        other => panic!("expected a transaction error, got {other:?}"),
    }
}

fn spend_fixture() -> (crate::params::Params, Vec<(OutPoint, crate::check::Coin)>) {
    let params = params();
    (params, vec![(outpoint(9, 0), coin(10_000, 2, 1))])
}

// ---- transaction, context-free ----

#[test]
fn version_must_be_one() {
    let (params, spent) = spend_fixture();
    let mut tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    check_transaction(&tx).expect("version 1 is valid");
    tx.version = 2;
    assert_eq!(tx_error(check_transaction(&tx)), TxError::UnsupportedVersion(2));
}

#[test]
fn inputs_and_outputs_must_not_be_empty() {
    let (params, spent) = spend_fixture();
    let tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    let mut no_inputs = tx.clone();
    no_inputs.inputs.clear();
    assert_eq!(tx_error(check_transaction(&no_inputs)), TxError::NoInputs);
    let mut no_outputs = tx;
    no_outputs.outputs.clear();
    assert_eq!(tx_error(check_transaction(&no_outputs)), TxError::NoOutputs);
}

#[test]
fn duplicate_inputs_are_refused() {
    let (params, spent) = spend_fixture();
    let twice = vec![spent[0].clone(), spent[0].clone()];
    let tx = signed_tx(&twice, vec![pay(9_000, 3)], 2, &params);
    assert_eq!(tx_error(check_transaction(&tx)), TxError::DuplicateInput(spent[0].0));
    // Two different outputs of the same transaction are fine.
    let two = vec![spent[0].clone(), (outpoint(9, 1), coin(1, 2, 1))];
    check_transaction(&signed_tx(&two, vec![pay(9_000, 3)], 2, &params)).expect("distinct outpoints");
}

#[test]
fn output_values_stop_at_max_money() {
    let (params, spent) = spend_fixture();
    let at_limit = signed_tx(&spent, vec![pay(MAX_MONEY, 3)], 2, &params);
    check_transaction(&at_limit).expect("one output of MAX_MONEY is within range");
    let over = signed_tx(&spent, vec![pay(MAX_MONEY, 3), pay(1, 3)], 2, &params);
    assert_eq!(tx_error(check_transaction(&over)), TxError::OutputSumOverflow);
    // An output above MAX_MONEY cannot even be decoded (value overflow, CVE-2010-5139).
    let mut bytes = at_limit.encode();
    let amount_at = 4 + 1 + 32 + 4 + 1 + 4 + 1;
    bytes[amount_at..amount_at + 8].copy_from_slice(&(MAX_MONEY + 1).to_le_bytes());
    assert!(matches!(Transaction::decode(&bytes), Err(DecodeError::OverLimit { what: "output amount", .. })));
    bytes[amount_at..amount_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Transaction::decode(&bytes).is_err());
}

#[test]
fn locks_must_be_version_one_with_a_valid_key() {
    let (params, spent) = spend_fixture();
    let mut tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    tx.outputs[0].lock.version = 2;
    assert_eq!(tx_error(check_transaction(&tx)), TxError::UnknownLockVersion { output: 0, version: 2 });
    tx.outputs[0].lock = Lock { version: 1, payload: vec![0x02; 31] };
    assert_eq!(tx_error(check_transaction(&tx)), TxError::InvalidLockKey { output: 0, len: 31 });
    // 32 bytes, but not an x coordinate on the curve (above the field size).
    tx.outputs[0].lock = Lock { version: 1, payload: vec![0xff; 32] };
    assert_eq!(tx_error(check_transaction(&tx)), TxError::InvalidLockKey { output: 0, len: 32 });
}

#[test]
fn coinbase_data_is_4_to_100_bytes() {
    for (len, ok) in [(3, false), (4, true), (100, true), (101, false)] {
        let mut tx = coinbase(0, vec![pay(1, 1)]);
        tx.inputs[0].data = vec![0; len];
        let result = check_transaction(&tx);
        if ok {
            result.expect("within range");
        } else {
            assert_eq!(tx_error(result), TxError::CoinbaseDataSize(len));
        }
    }
}

#[test]
fn ordinary_inputs_have_no_data_and_no_null_prevout() {
    let (params, spent) = spend_fixture();
    let mut tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    tx.inputs[0].data = vec![1];
    assert_eq!(tx_error(check_transaction(&tx)), TxError::InputData { input: 0, len: 1 });
    let mut tx = signed_tx(&[spent[0].clone(), spent[0].clone()], vec![pay(9_000, 3)], 2, &params);
    tx.inputs[1].prevout = OutPoint::NULL;
    assert_eq!(tx_error(check_transaction(&tx)), TxError::NullPrevout(1));
}

#[test]
fn sixty_four_byte_transactions_are_refused() {
    // 4 + 1 + (32 + 4 + 1 + 3 + 4) + 1 + (8 + 1 + 1 + 0) + 4 = 64
    let mut tx =
        coinbase(0, vec![TxOut { amount: Amount::ZERO, lock: Lock { version: 1, payload: vec![] } }]);
    tx.inputs[0].data = vec![0; 3];
    assert_eq!(tx.base_size(), 64);
    assert_eq!(tx_error(check_transaction(&tx)), TxError::SixtyFourBytes);
    tx.outputs[0].lock.payload.push(0);
    assert_eq!(tx.base_size(), 65);
    assert_ne!(check_transaction(&tx), Err(TxError::SixtyFourBytes));
}

// ---- transaction, contextual ----

#[test]
fn outputs_may_equal_inputs_but_not_exceed_them() {
    let (params, spent) = spend_fixture();
    let coins_in: Vec<_> = spent.iter().map(|(_, c)| c.clone()).collect();
    let exact = signed_tx(&spent, vec![pay(10_000, 3)], 2, &params);
    let checked = check_inputs(&exact, &coins_in, h(200), 0, &params).expect("zero fee is valid");
    assert_eq!(checked.fee, Amount::ZERO);
    let over = signed_tx(&spent, vec![pay(10_001, 3)], 2, &params);
    assert_eq!(
        check_inputs(&over, &coins_in, h(200), 0, &params),
        Err(TxError::OutputsExceedInputs { inputs: 10_000, outputs: 10_001 })
    );
}

#[test]
fn coinbase_outputs_mature_after_100_blocks() {
    let params = params();
    let mut coinbase_coin = coin(5_000, 2, 50);
    coinbase_coin.is_coinbase = true;
    let spent = vec![(outpoint(4, 0), coinbase_coin.clone())];
    let tx = signed_tx(&spent, vec![pay(4_000, 3)], 2, &params);
    check_inputs(&tx, &[coinbase_coin.clone()], h(150), 0, &params).expect("mature at height + 100");
    assert_eq!(
        check_inputs(&tx, &[coinbase_coin], h(149), 0, &params),
        Err(TxError::ImmatureCoinbase { input: 0, coin_height: h(50), spend_height: h(149), maturity: 100 })
    );
}

#[test]
fn lock_time_by_height_and_by_median_time() {
    let (params, spent) = spend_fixture();
    let coins_in: Vec<_> = spent.iter().map(|(_, c)| c.clone()).collect();
    let mut tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    tx.inputs[0].sequence = 0;
    tx.lock_time = 99;
    crate::testkit::sign(&mut tx, &spent, 2, &params);
    check_inputs(&tx, &coins_in, h(100), 0, &params).expect("lock time below the height");
    assert!(matches!(check_inputs(&tx, &coins_in, h(99), 0, &params), Err(TxError::NotFinal { .. })));
    tx.lock_time = 1_700_000_000;
    crate::testkit::sign(&mut tx, &spent, 2, &params);
    check_inputs(&tx, &coins_in, h(100), 1_700_000_001, &params).expect("lock time below the median time");
    assert!(matches!(
        check_inputs(&tx, &coins_in, h(100), 1_700_000_000, &params),
        Err(TxError::NotFinal { .. })
    ));
    // Every sequence final: the lock time is ignored.
    tx.inputs[0].sequence = u32::MAX;
    crate::testkit::sign(&mut tx, &spent, 2, &params);
    check_inputs(&tx, &coins_in, h(100), 0, &params).expect("lock time ignored");
}

#[test]
fn signature_over_the_wrong_amount_fails() {
    let (params, spent) = spend_fixture();
    // Signed as if the coin held 10,001 units; it holds 10,000.
    let mut lied = spent.clone();
    lied[0].1.output.amount = coins(10_001);
    let tx = signed_tx(&lied, vec![pay(9_000, 3)], 2, &params);
    let block = block(&params, 1, 50 * crate::COIN, vec![tx]);
    let view = view(&spent);
    let context = BlockContext { height: h(1), median_time: 0 };
    let error = connect_block(&block, context, &view, &params, &SequentialVerifier::default())
        .expect_err("bad signature");
    assert_eq!(inner(error), TxError::BadSignature { input: 0 });
}

#[test]
fn signatures_from_another_network_fail() {
    let (params, spent) = spend_fixture();
    let devnet = crate::params::Network::Devnet.params();
    let tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &devnet);
    let block = block(&params, 1, 50 * crate::COIN, vec![tx]);
    let error = connect_block(
        &block,
        BlockContext { height: h(1), median_time: 0 },
        &view(&spent),
        &params,
        &SequentialVerifier::default(),
    )
    .expect_err("replayed signature");
    assert_eq!(inner(error), TxError::BadSignature { input: 0 });
}

#[test]
fn witness_must_be_one_64_byte_signature() {
    let (params, spent) = spend_fixture();
    let coins_in: Vec<_> = spent.iter().map(|(_, c)| c.clone()).collect();
    let mut tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    check_inputs(&tx, &coins_in, h(200), 0, &params).expect("one 64-byte item");
    let signature = tx.inputs[0].witness[0].to_vec();
    tx.inputs[0].witness = crate::Witness::from_items([[signature.as_slice(), &[0]].concat()]);
    assert_eq!(
        check_inputs(&tx, &coins_in, h(200), 0, &params),
        Err(TxError::BadWitness { input: 0, items: 1 })
    );
    tx.inputs[0].witness = crate::Witness::from_items([signature, vec![0; 64]]);
    assert_eq!(
        check_inputs(&tx, &coins_in, h(200), 0, &params),
        Err(TxError::BadWitness { input: 0, items: 2 })
    );
    tx.inputs[0].witness = crate::Witness::new();
    assert_eq!(
        check_inputs(&tx, &coins_in, h(200), 0, &params),
        Err(TxError::BadWitness { input: 0, items: 0 })
    );
}

// ---- blocks ----

fn connect(
    block: &Block,
    height: u32,
    spent: &[(OutPoint, crate::check::Coin)],
) -> Result<crate::check::BlockChanges, BlockError> {
    let params = params();
    check_block(block, &params)?;
    connect_block(
        block,
        BlockContext { height: h(height), median_time: 0 },
        &view(spent),
        &params,
        &SequentialVerifier::default(),
    )
}

#[test]
fn coinbase_may_claim_subsidy_plus_fees_and_not_one_unit_more() {
    let (params, spent) = spend_fixture();
    let tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params); // fee 1,000
    let subsidy = params.subsidy(h(1)).to_base_units();
    let exact = block(&params, 1, subsidy + 1_000, vec![tx.clone()]);
    let changes = connect(&exact, 1, &spent).expect("subsidy + fees exactly");
    assert_eq!(changes.fees, coins(1_000));
    let greedy = block(&params, 1, subsidy + 1_001, vec![tx]);
    assert_eq!(
        connect(&greedy, 1, &spent),
        Err(BlockError::CoinbaseOverpays { paid: subsidy + 1_001, allowed: subsidy + 1_000 })
    );
}

#[test]
fn subsidy_halves_on_schedule_and_ends() {
    let params = params(); // regtest: every 150 blocks
    assert_eq!(params.subsidy(h(149)).to_base_units(), 50 * crate::COIN);
    assert_eq!(params.subsidy(h(150)).to_base_units(), 25 * crate::COIN);
    assert_eq!(params.subsidy(h(150 * 63)).to_base_units(), (50 * crate::COIN) >> 63);
    assert_eq!(params.subsidy(h(150 * 64)), Amount::ZERO);
    let main = crate::params::Network::Main.params();
    assert_eq!(main.subsidy(h(209_999)).to_base_units(), 50 * crate::COIN);
    assert_eq!(main.subsidy(h(210_000)).to_base_units(), 25 * crate::COIN);
}

#[test]
fn coinbase_must_start_with_the_height() {
    let params = params();
    let block = block(&params, 7, 1, vec![]);
    connect(&block, 7, &[]).expect("height 7 matches");
    assert_eq!(connect(&block, 8, &[]), Err(BlockError::CoinbaseHeight { expected: h(8) }));
}

#[test]
fn mutated_merkle_tree_is_a_mutation_not_invalid() {
    let (params, spent) = spend_fixture();
    let tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    let second = signed_tx(&[(outpoint(8, 0), coin(5, 2, 1))], vec![pay(5, 3)], 2, &params);
    // Three transactions; duplicating the last gives the same root (CVE-2012-2459).
    let honest = block(&params, 1, 1, vec![tx, second]);
    let mut mutated = honest.clone();
    mutated.transactions.push(mutated.transactions[2].clone());
    assert_eq!(block_merkle_root(&mutated).root, honest.header.merkle_root);
    let error = check_block(&mutated, &params).expect_err("mutated");
    assert_eq!(error, BlockError::MutatedMerkle);
    assert!(error.is_mutation() && !error.marks_invalid());
    check_block(&honest, &params).expect("the honest body passes");
}

#[test]
fn body_not_matching_header_does_not_mark_invalid() {
    let params = params();
    let mut block = block(&params, 1, 1, vec![]);
    block.transactions[0].outputs[0].amount = coins(2);
    let error = check_block(&block, &params).expect_err("merkle mismatch");
    assert!(matches!(error, BlockError::MerkleMismatch { .. }));
    assert!(!error.marks_invalid());
    let mut witnessed = crate::testkit::block(&params, 1, 1, vec![]);
    witnessed.transactions[0].inputs[0].witness = crate::Witness::from_items([[1]]);
    let error = check_block(&witnessed, &params).expect_err("coinbase witness");
    assert_eq!(error, BlockError::CoinbaseWitness);
    assert!(!error.marks_invalid());
    let mut empty = witnessed;
    empty.transactions.clear();
    assert_eq!(check_block(&empty, &params), Err(BlockError::NoTransactions));
}

#[test]
fn coinbase_first_and_only_first() {
    let params = params();
    let mut two = block(&params, 1, 1, vec![coinbase(1, vec![pay(1, 1)])]);
    finish(&mut two);
    assert_eq!(check_block(&two, &params), Err(BlockError::ExtraCoinbase(1)));
    assert!(two.transactions.len() == 2);
    let (p, spent) = spend_fixture();
    let mut none = block(&p, 1, 1, vec![]);
    none.transactions[0] = signed_tx(&spent, vec![pay(1, 3)], 2, &p);
    finish(&mut none);
    let error = check_block(&none, &params).expect_err("no coinbase");
    assert_eq!(error, BlockError::FirstNotCoinbase);
    assert!(error.marks_invalid());
}

#[test]
fn block_size_limit_is_inclusive() {
    let params = params();
    let mut block = block(&params, 1, 1, vec![]);
    // The coinbase's data is capped at 100 bytes, so the bulk goes into a
    // transaction's signature item (its shape is only checked in context).
    let (p, spent) = spend_fixture();
    block.transactions.push(signed_tx(&spent, vec![pay(1, 3)], 2, &p));
    let room = MAX_BLOCK_SIZE - block.size();
    // The item's length prefix grows from 1 to 5 bytes (0xfe form).
    let mut item = block.transactions[1].inputs[0].witness[0].to_vec();
    item.resize(64 + room - 4, 0);
    block.transactions[1].inputs[0].witness = crate::Witness::from_items([&item]);
    finish(&mut block);
    assert_eq!(block.size(), MAX_BLOCK_SIZE);
    check_block(&block, &params).expect("exactly at the limit");
    assert_eq!(Block::decode(&block.encode()).as_ref(), Ok(&block));
    item.push(0);
    block.transactions[1].inputs[0].witness = crate::Witness::from_items([&item]);
    finish(&mut block);
    assert_eq!(
        check_block(&block, &params),
        Err(BlockError::TooLarge { size: MAX_BLOCK_SIZE + 1, limit: MAX_BLOCK_SIZE })
    );
    assert!(matches!(Block::decode(&block.encode()), Err(DecodeError::OverLimit { what: "block size", .. })));
}

#[test]
fn double_spends_within_a_block_and_missing_inputs() {
    let (params, spent) = spend_fixture();
    let a = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    let b = signed_tx(&spent, vec![pay(8_000, 4)], 2, &params);
    let block = block(&params, 1, 1, vec![a.clone(), b]);
    assert_eq!(
        inner(connect(&block, 1, &spent).expect_err("double spend")),
        TxError::MissingInput { input: 0, outpoint: spent[0].0 }
    );
    let alone = crate::testkit::block(&params, 1, 1, vec![a]);
    assert!(matches!(
        inner(connect(&alone, 1, &[]).expect_err("unknown coin")),
        TxError::MissingInput { .. }
    ));
}

#[test]
fn chained_spends_in_one_block_give_net_changes() {
    let (params, spent) = spend_fixture();
    let first = signed_tx(&spent, vec![pay(9_000, 2)], 2, &params);
    let first_out = (OutPoint { txid: first.txid(), index: 0 }, coin(9_000, 2, 1));
    let second = signed_tx(std::slice::from_ref(&first_out), vec![pay(8_000, 5)], 2, &params);
    let block = block(&params, 1, 1, vec![first, second.clone()]);
    let changes = connect(&block, 1, &spent).expect("valid chain of spends");
    assert_eq!(changes.spent, spent, "only the pre-existing coin is undo data");
    let created: Vec<_> = changes.created.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        created,
        vec![
            OutPoint { txid: block.transactions[0].txid(), index: 0 },
            OutPoint { txid: second.txid(), index: 0 }
        ]
    );
    assert_eq!(changes.fees, coins(2_000));
}

// ---- headers ----

#[test]
fn header_version_with_rolling_bits_masked_is_at_least_one() {
    let params = params();
    let mut header = block(&params, 1, 1, vec![]).header;
    header.version = 0x2000_0000 | 0x1fff_e000; // BIP-9 style top bits plus every rolling bit
    mine(&mut header);
    check_header(&header, &params).expect("rolled bits are free");
    header.version = 0x1fff_e000;
    mine(&mut header);
    assert_eq!(check_header(&header, &params), Err(HeaderError::VersionTooLow(0x1fff_e000)));
    header.version = 0;
    mine(&mut header);
    assert_eq!(check_header(&header, &params), Err(HeaderError::VersionTooLow(0)));
}

#[test]
fn time_must_pass_the_median_and_stay_within_the_future_bound() {
    let params = params();
    // A chain of 11 headers with times 1000, 1010, ... 1100.
    let mut chain = vec![params.genesis.header];
    chain[0].time = 1000;
    for i in 1..11u32 {
        let mut h = chain[0];
        h.prev_block = chain[(i - 1) as usize].block_hash();
        h.time = 1000 + 10 * i;
        mine(&mut h);
        chain.push(h);
    }
    let median = median_time_past(chain.as_slice(), h(10)).expect("known");
    assert_eq!(median, 1050);
    let mut next = chain[0];
    next.prev_block = chain[10].block_hash();
    let now = 2000;
    for (time, expected) in [
        (median, Some(HeaderError::TimeTooOld { time: median, median })),
        (median + 1, None),
        (2000 + 7200, None),
        (2000 + 7201, Some(HeaderError::TimeTooNew { time: 9201, max: 9200 })),
    ] {
        next.time = time;
        mine(&mut next);
        let result = check_header_contextual(&next, &params, chain.as_slice(), h(10), now);
        assert_eq!(result.err(), expected, "time {time}");
    }
    assert!(!HeaderError::TimeTooNew { time: 0, max: 0 }.is_permanent());
}

#[test]
fn bits_must_match_the_schedule_and_work_must_be_met() {
    let params = params();
    let mut header = params.genesis.header;
    header.prev_block = params.genesis_hash;
    header.time += 1;
    mine(&mut header);
    let chain = [params.genesis.header];
    check_header_contextual(&header, &params, chain.as_slice(), Height::GENESIS, u64::from(header.time))
        .expect("fixed bits");
    header.bits = crate::pow::CompactTarget::from_consensus(0x207f_fffe);
    mine(&mut header);
    assert!(matches!(
        check_header_contextual(&header, &params, chain.as_slice(), Height::GENESIS, u64::from(header.time)),
        Err(HeaderError::UnexpectedBits { .. })
    ));
    // Find a nonce that fails the easiest target.
    let mut bad = params.genesis.header;
    let target = bad.bits.to_target().expect("valid");
    while target.is_met_by(bad.block_hash()) {
        bad.nonce += 1;
    }
    assert!(matches!(check_header(&bad, &params), Err(HeaderError::InsufficientWork { .. })));
}

// ---- encoding ----

#[test]
fn trailing_bytes_and_non_minimal_lengths_are_refused() {
    let (params, spent) = spend_fixture();
    let tx = signed_tx(&spent, vec![pay(9_000, 3)], 2, &params);
    let mut bytes = tx.encode();
    assert_eq!(Transaction::decode(&bytes).as_ref(), Ok(&tx));
    bytes.push(0);
    assert_eq!(Transaction::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
    bytes.pop();
    // The input count 1 as a 3-byte CompactSize.
    let mut long = bytes[..4].to_vec();
    long.extend_from_slice(&[0xfd, 0x01, 0x00]);
    long.extend_from_slice(&bytes[5..]);
    assert_eq!(Transaction::decode(&long), Err(DecodeError::NonMinimalCompactSize { value: 1 }));
}

#[test]
fn every_genesis_meets_its_own_proof_of_work() {
    for network in crate::params::Network::ALL {
        let params = network.params();
        check_header(&params.genesis.header, &params).expect("genesis has valid work");
        check_block(&params.genesis, &params).expect("genesis block is well formed");
        assert_eq!(params.genesis.block_hash(), params.genesis_hash);
    }
}
