//! Gossip validation against a small regtest chain, as the network actor
//! runs it: the first byte picks the blocks or the transactions topic, the
//! rest is the message. Blocks go through the header precheck, decoding and
//! the node's acceptance; transactions through decoding and the mempool.
//! Nothing panics, and the node's view stays whole: the tip is a block it
//! holds, and the mempool only holds transactions that decode.
#![no_main]

use std::sync::OnceLock;

use cairn_consensus::{Block, Decode, Transaction};
use cairn_fuzz::FuzzChain;
use cairn_node::p2p::validate;
use libfuzzer_sys::fuzz_target;

fn chain() -> &'static FuzzChain {
    static CHAIN: OnceLock<FuzzChain> = OnceLock::new();
    CHAIN.get_or_init(FuzzChain::build)
}

fuzz_target!(|input: &[u8]| {
    let Some((&topic, data)) = input.split_first() else { return };
    let chain = chain();
    let node = &chain.node;
    if topic % 2 == 0 {
        if validate::precheck_block(data, node.params()).is_err() {
            return;
        }
        let Ok(block) = Block::decode(data) else { return };
        let hash = block.block_hash();
        let mut reported = false;
        let result = validate::accept_block(node, block, &mut |valid| reported |= valid == hash);
        if reported {
            assert!(result.is_ok(), "a block reported valid is accepted: {result:?}");
        }
    } else {
        let Ok(tx) = Transaction::decode(data) else { return };
        let _ = node.accept_transaction(tx);
    }
    let summary = node.summary();
    let state = node.state();
    assert!(state.chain.has_body(&summary.tip.hash) || summary.tip.height.get() == 0);
    assert_eq!(state.chain.tip(), summary.tip.hash);
});
