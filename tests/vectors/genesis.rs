//! Bitcoin blocks 0, 1 and 2: header layout, hashes and the header rules.

use cairn_consensus::chain::{check_header, check_header_contextual};
use cairn_consensus::hash::sha256d;
use cairn_consensus::{BlockHeader, Decode, Encode, Height, MerkleRoot, Params};

use crate::support::{hex_u32, read_vector_json, unhex};

#[test]
fn bitcoin_blocks_0_1_2() {
    let vectors = read_vector_json("genesis/btc_blocks_0_1_2.json");
    let params = Params::bitcoin_header_profile();
    let mut chain = Vec::new();
    for height in 0..3u32 {
        let block = &vectors["blocks"][height.to_string()];
        let bytes = unhex(block["header_hex"].as_str().expect("header_hex"));
        let header = BlockHeader::decode(&bytes).expect("80-byte header");
        assert_eq!(header.encode(), bytes, "round trip");
        assert_eq!(header.block_hash().to_string(), block["block_hash"].as_str().expect("hash"));
        assert_eq!(u64::from(header.version), block["version"].as_u64().expect("version"));
        assert_eq!(header.prev_block.to_string(), block["prev"].as_str().expect("prev"));
        assert_eq!(header.merkle_root.to_string(), block["merkle"].as_str().expect("merkle"));
        assert_eq!(u64::from(header.time), block["time"].as_u64().expect("time"));
        assert_eq!(header.bits.to_consensus(), hex_u32(block["bits"].as_str().expect("bits")));
        assert_eq!(u64::from(header.nonce), block["nonce"].as_u64().expect("nonce"));
        // A single-transaction block's merkle root is its coinbase's txid.
        let coinbase = unhex(block["coinbase_tx_hex"].as_str().expect("coinbase"));
        let txid = MerkleRoot::from_byte_array(sha256d(&coinbase));
        assert_eq!(txid, header.merkle_root);
        assert_eq!(txid.to_string(), block["coinbase_txid"].as_str().expect("coinbase_txid"));
        check_header(&header, &params).expect("valid work");
        if height > 0 {
            check_header_contextual(
                &header,
                &params,
                chain.as_slice(),
                Height::new(height - 1),
                2_000_000_000,
            )
            .expect("valid in context");
        }
        chain.push(header);
    }
    assert_eq!(chain[0].block_hash(), params.genesis_hash);
}
