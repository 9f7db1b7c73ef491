//! Property tests: encodings round-trip both ways, amount arithmetic never
//! wraps, compact targets round-trip, merkle branches agree with roots.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::amount::{Amount, MAX_MONEY};
use crate::block::{Block, BlockHeader};
use crate::encode::{Decode, Encode};
use crate::hash::{BlockHash, MerkleRoot, Txid};
use crate::merkle::{coinbase_branch, compute_root, root_from_coinbase};
use crate::pow::{CompactTarget, U256};
use crate::transaction::{Lock, OutPoint, Transaction, TxIn, TxOut};

fn header() -> impl Strategy<Value = BlockHeader> {
    (any::<u32>(), any::<[u8; 32]>(), any::<[u8; 32]>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(version, prev, root, time, bits, nonce)| BlockHeader {
            version,
            prev_block: BlockHash::from_byte_array(prev),
            merkle_root: MerkleRoot::from_byte_array(root),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce,
        },
    )
}

fn input() -> impl Strategy<Value = TxIn> {
    (
        any::<[u8; 32]>(),
        any::<u32>(),
        vec(any::<u8>(), 0..120),
        any::<u32>(),
        vec(vec(any::<u8>(), 0..300), 0..3),
    )
        .prop_map(|(txid, index, data, sequence, witness)| TxIn {
            prevout: OutPoint { txid: Txid::from_byte_array(txid), index },
            data,
            sequence,
            witness: crate::Witness::from_items(witness),
        })
}

fn output() -> impl Strategy<Value = TxOut> {
    (0..=MAX_MONEY, any::<u8>(), vec(any::<u8>(), 0..300)).prop_map(|(units, version, payload)| TxOut {
        amount: Amount::from_base_units(units).expect("in range"),
        lock: Lock { version, payload },
    })
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (any::<u32>(), vec(input(), 0..4), vec(output(), 0..4), any::<u32>())
        .prop_map(|(version, inputs, outputs, lock_time)| Transaction { version, inputs, outputs, lock_time })
}

fn block() -> impl Strategy<Value = Block> {
    (header(), vec(transaction(), 0..5)).prop_map(|(header, transactions)| Block { header, transactions })
}

proptest! {
    #[test]
    fn header_round_trips(header in header()) {
        let bytes = header.encode();
        prop_assert_eq!(bytes.len(), 80);
        prop_assert_eq!(BlockHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn transaction_round_trips(tx in transaction()) {
        let bytes = tx.encode();
        prop_assert_eq!(bytes.len(), tx.size());
        prop_assert_eq!(tx.encode_base().len(), tx.base_size());
        prop_assert_eq!(Transaction::decode(&bytes), Ok(tx));
    }

    #[test]
    fn block_round_trips(block in block()) {
        let bytes = block.encode();
        prop_assert_eq!(bytes.len(), block.size());
        prop_assert_eq!(Block::decode(&bytes), Ok(block));
    }

    /// Whatever bytes a decoder accepts re-encode to exactly those bytes:
    /// damaged encodings (cut, extended, or with a byte changed) either fail
    /// or are canonical.
    #[test]
    fn accepted_bytes_are_canonical(tx in transaction(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = tx.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(decoded) = Transaction::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes.clone());
        }
        bytes.truncate(cut.index(bytes.len()));
        if let Ok(decoded) = Transaction::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_are_canonical(bytes in vec(any::<u8>(), 0..400)) {
        if let Ok(tx) = Transaction::decode(&bytes) {
            prop_assert_eq!(tx.encode(), bytes.clone());
        }
        if let Ok(block) = Block::decode(&bytes) {
            prop_assert_eq!(block.encode(), bytes);
        }
    }

    #[test]
    fn amount_arithmetic_never_wraps(a in 0..=MAX_MONEY, b in 0..=MAX_MONEY) {
        let (x, y) = (Amount::from_base_units(a).expect("in range"), Amount::from_base_units(b).expect("in range"));
        match x.checked_add(y) {
            Ok(sum) => prop_assert_eq!(sum.to_base_units(), a + b),
            Err(_) => prop_assert!(a + b > MAX_MONEY),
        }
        match x.checked_sub(y) {
            Ok(diff) => prop_assert_eq!(diff.to_base_units(), a - b),
            Err(_) => prop_assert!(a < b),
        }
        prop_assert!(Amount::from_base_units(a.saturating_add(MAX_MONEY + 1)).is_err());
    }

    #[test]
    fn amount_text_round_trips(units in 0..=MAX_MONEY) {
        let amount = Amount::from_base_units(units).expect("in range");
        prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
    }

    /// Encoding a value keeps its top 23 bits (Core's GetCompact rounds
    /// down); decoding a canonical compact and encoding again is the identity.
    #[test]
    fn compact_targets_round_trip(limbs in any::<[u8; 32]>(), shift in 0u32..256) {
        let value = U256::from_le_bytes(limbs) >> shift;
        let compact = CompactTarget::encode_raw(value, false);
        let decoded = compact.decode_raw();
        prop_assert!(!decoded.negative && !decoded.overflow);
        // The exponent byte says how many low bytes were dropped.
        let dropped_bytes = (compact.to_consensus() >> 24).saturating_sub(3);
        prop_assert_eq!(decoded.value, (value >> (8 * dropped_bytes)) << (8 * dropped_bytes));
        prop_assert_eq!(CompactTarget::encode_raw(decoded.value, false), compact);
    }

    #[test]
    fn merkle_branch_matches_root(leaves in vec(any::<[u8; 32]>(), 1..40)) {
        let root = compute_root(&leaves).root;
        prop_assert_eq!(root_from_coinbase(leaves[0], &coinbase_branch(&leaves)), root);
    }
}
