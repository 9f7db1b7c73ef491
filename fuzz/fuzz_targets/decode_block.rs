//! Block decoding: accepted bytes re-encode to themselves, the size the
//! block reports is its encoding's, and decoding holds a bounded multiple
//! of the input.
#![no_main]

use cairn_consensus::Block;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(block) = cairn_fuzz::check_round_trip::<Block>(data) {
        assert_eq!(block.size(), data.len());
        // The header is the first 80 bytes, and hashing it works on any.
        assert_eq!(&block.header.to_bytes()[..], &data[..80]);
        let _ = cairn_consensus::merkle::block_merkle_root(&block);
    }
});
