//! Transaction decoding: accepted bytes re-encode to themselves, ids are
//! computable, and decoding holds a bounded multiple of the input.
#![no_main]

use cairn_consensus::{Encode, Transaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(tx) = cairn_fuzz::check_round_trip::<Transaction>(data) {
        let _ = (tx.txid(), tx.wtxid());
        // The context-free rules never panic on what decodes.
        let _ = cairn_consensus::check::check_transaction(&tx);
        assert_eq!(tx.encode().len(), data.len());
    }
});
