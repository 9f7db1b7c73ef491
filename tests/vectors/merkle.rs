//! 36 real Bitcoin merkle roots, 10,148 txids.

use cairn_consensus::merkle::{coinbase_branch, compute_root, root_from_coinbase};
use cairn_consensus::{MerkleRoot, Txid};

use crate::support::read_vector_json;

#[test]
fn all_real_merkle_roots() {
    let vectors = read_vector_json("merkle/btc_merkle_cases.json");
    let cases = vectors["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 36);
    let mut txids = 0;
    for case in cases {
        let leaves: Vec<[u8; 32]> = case["txids"]
            .as_array()
            .expect("txids")
            .iter()
            .map(|t| t.as_str().expect("txid").parse::<Txid>().expect("txid hex").to_byte_array())
            .collect();
        assert_eq!(leaves.len() as u64, case["n_tx"].as_u64().expect("n_tx"));
        let expected: MerkleRoot = case["merkle_root"].as_str().expect("root").parse().expect("root hex");
        let computed = compute_root(&leaves);
        assert_eq!(computed.root, expected, "block {}", case["height"]);
        assert!(!computed.mutated, "real block {} is not mutated", case["height"]);
        assert_eq!(root_from_coinbase(leaves[0], &coinbase_branch(&leaves)), expected);
        txids += leaves.len();
    }
    assert_eq!(txids, 10_148);
}
