//! Merkle trees in Bitcoin's shape: pairwise SHA-256d, the last node of an
//! odd level paired with itself.
//!
//! A block's leaves are the coinbase's txid and then every other
//! transaction's wtxid, so the header commits to all witnesses but the
//! coinbase's, which must be empty.

use crate::block::Block;
use crate::hash::{sha256d, MerkleRoot};

/// A computed root and whether the tree was mutated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerkleComputation {
    /// The root.
    pub root: MerkleRoot,
    /// Two equal sibling nodes were found (CVE-2012-2459): a list of
    /// leaves with a duplicated run hashes to the same root as the honest one.
    pub mutated: bool,
}

fn hash_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left);
    buf[32..].copy_from_slice(right);
    sha256d(&buf)
}

/// The root over `leaves` (internal byte order), flagging mutation as Bitcoin
/// Core's `ComputeMerkleRoot` does. The root of no leaves is all zero.
#[must_use]
pub fn compute_root(leaves: &[[u8; 32]]) -> MerkleComputation {
    if leaves.is_empty() {
        return MerkleComputation { root: MerkleRoot::ZERO, mutated: false };
    }
    let mut level = leaves.to_vec();
    let mut mutated = false;
    while level.len() > 1 {
        for pair in level.chunks_exact(2) {
            if pair[0] == pair[1] {
                mutated = true;
            }
        }
        if level.len() % 2 == 1 {
            let last = *level.last().expect("non-empty level");
            level.push(last);
        }
        level = level.chunks_exact(2).map(|pair| hash_pair(&pair[0], &pair[1])).collect();
    }
    MerkleComputation { root: MerkleRoot::from_byte_array(level[0]), mutated }
}

/// The leaves a block commits to: coinbase txid, then the others' wtxids.
#[must_use]
pub fn block_leaves(block: &Block) -> Vec<[u8; 32]> {
    block
        .transactions
        .iter()
        .enumerate()
        .map(|(i, tx)| if i == 0 { tx.txid().to_byte_array() } else { tx.wtxid().to_byte_array() })
        .collect()
}

/// The root a block's transactions hash to.
#[must_use]
pub fn block_merkle_root(block: &Block) -> MerkleComputation {
    compute_root(&block_leaves(block))
}

/// The siblings on the path from the first leaf (the coinbase) to the root:
/// with these a miner recomputes the root after changing only the coinbase.
#[must_use]
pub fn coinbase_branch(leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut branch = Vec::new();
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        branch.push(level[1]);
        if level.len() % 2 == 1 {
            let last = *level.last().expect("non-empty level");
            level.push(last);
        }
        level = level.chunks_exact(2).map(|pair| hash_pair(&pair[0], &pair[1])).collect();
    }
    branch
}

/// The root from a coinbase txid and its [`coinbase_branch`].
#[must_use]
pub fn root_from_coinbase(coinbase_txid: [u8; 32], branch: &[[u8; 32]]) -> MerkleRoot {
    let root = branch.iter().fold(coinbase_txid, |node, sibling| hash_pair(&node, sibling));
    MerkleRoot::from_byte_array(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn duplicating_the_last_leaves_gives_the_same_root_but_is_flagged() {
        let honest: Vec<_> = (1..=3).map(leaf).collect();
        let mutated = vec![leaf(1), leaf(2), leaf(3), leaf(3)];
        let a = compute_root(&honest);
        let b = compute_root(&mutated);
        assert_eq!(a.root, b.root);
        assert!(!a.mutated);
        assert!(b.mutated);
    }

    #[test]
    fn coinbase_branch_reproduces_the_root() {
        for count in 1..=17u8 {
            let leaves: Vec<_> = (1..=count).map(leaf).collect();
            let branch = coinbase_branch(&leaves);
            assert_eq!(root_from_coinbase(leaves[0], &branch), compute_root(&leaves).root, "{count} leaves");
        }
    }
}
