//! Differential: the merkle root and its mutation flag against a direct,
//! recursive reading of Bitcoin's rule (the last node of an odd level
//! paired with itself; two equal siblings anywhere mean the leaf list was
//! mutated, CVE-2012-2459). The input is a list of leaves; leaves are
//! drawn from a few distinct values so that duplicates are common.
#![no_main]

use cairn_consensus::hash::sha256d;
use cairn_consensus::merkle::compute_root;
use libfuzzer_sys::fuzz_target;

/// One level up: the hashed pairs, and whether any pair was two equal
/// nodes (before the odd node is doubled, which is not a mutation).
fn level_up(level: &[[u8; 32]]) -> (Vec<[u8; 32]>, bool) {
    let mutated = level.chunks(2).any(|pair| pair.len() == 2 && pair[0] == pair[1]);
    let next = level
        .chunks(2)
        .map(|pair| {
            let right = pair.get(1).unwrap_or(&pair[0]);
            let mut both = [0u8; 64];
            both[..32].copy_from_slice(&pair[0]);
            both[32..].copy_from_slice(right);
            sha256d(&both)
        })
        .collect();
    (next, mutated)
}

fn reference(leaves: &[[u8; 32]]) -> ([u8; 32], bool) {
    match leaves {
        [] => ([0; 32], false),
        [root] => (*root, false),
        _ => {
            let (next, mutated) = level_up(leaves);
            let (root, above) = reference(&next);
            (root, mutated || above)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Each byte is a leaf: one of 256 fixed values, so equal siblings occur.
    // Up to 512 leaves (ten levels): every shape of the rule occurs well
    // within that, and more only slows the search.
    let leaves: Vec<[u8; 32]> = data.iter().take(512).map(|&b| sha256d(&[b])).collect();
    let computed = compute_root(&leaves);
    let (root, mutated) = reference(&leaves);
    assert_eq!(computed.root.to_byte_array(), root, "{} leaves", leaves.len());
    assert_eq!(computed.mutated, mutated, "{} leaves", leaves.len());
});
