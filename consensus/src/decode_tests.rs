//! What decoding costs in memory: for the shapes of block that cost the
//! most per wire byte (empty witness items, minimal transactions, inputs
//! and outputs), the decoded block holds at most
//! [`MAX_DECODED_BYTES_PER_WIRE_BYTE`] bytes per byte received.

use crate::block::{Block, MAX_BLOCK_SIZE};
use crate::encode::{write_compact_size, Decode};

/// The bound, written in docs/protocol.md section 10. (With a `Vec` per
/// witness item an empty item cost 24 bytes per wire byte.)
const MAX_DECODED_BYTES_PER_WIRE_BYTE: usize = 8;

/// A block of `count` transactions, each `tx` (its bytes).
fn block_of(count: usize, tx: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 80];
    write_compact_size(&mut out, count as u64);
    for _ in 0..count {
        out.extend_from_slice(tx);
    }
    out
}

/// A transaction: `inputs` minimal inputs, `outputs` minimal outputs, and
/// `items` empty witness items on its first input.
fn tx(inputs: usize, outputs: usize, items: usize) -> Vec<u8> {
    let mut out = 1u32.to_le_bytes().to_vec();
    write_compact_size(&mut out, inputs as u64);
    for _ in 0..inputs {
        out.extend_from_slice(&[7; 36]); // outpoint
        out.push(0); // data
        out.extend_from_slice(&[0xff; 4]); // sequence
    }
    write_compact_size(&mut out, outputs as u64);
    for _ in 0..outputs {
        out.extend_from_slice(&[0; 8]); // amount
        out.extend_from_slice(&[1, 0]); // lock: version, empty payload
    }
    out.extend_from_slice(&[0; 4]); // lock time
    for input in 0..inputs {
        let n = if input == 0 { items } else { 0 };
        write_compact_size(&mut out, n as u64);
        out.extend(std::iter::repeat_n(0u8, n));
    }
    out
}

/// Decodes `bytes` (a block) and returns decoded bytes per wire byte.
fn expansion(what: &str, bytes: &[u8]) -> f64 {
    assert!(bytes.len() <= MAX_BLOCK_SIZE, "{what}: {} bytes", bytes.len());
    let block = Block::decode(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    let ratio = block.memory_bytes() as f64 / bytes.len() as f64;
    println!(
        "{what}: {} wire bytes decode to {} bytes ({ratio:.2} per byte)",
        bytes.len(),
        block.memory_bytes()
    );
    ratio
}

#[test]
fn a_decoded_block_holds_at_most_eight_bytes_per_byte_received() {
    let room = MAX_BLOCK_SIZE - 200;
    let shapes = [
        ("empty witness items", block_of(1, &tx(1, 0, room - 60))),
        ("minimal transactions", block_of(room / 10, &tx(0, 0, 0))),
        ("minimal inputs", block_of(1, &tx(room / 42, 0, 0))),
        ("minimal outputs", block_of(1, &tx(0, room / 10, 0))),
        // A vector just past a power of two, where doubling wastes most.
        ("1,025 minimal transactions", block_of(1_025, &tx(0, 0, 0))),
    ];
    for (what, bytes) in &shapes {
        let ratio = expansion(what, bytes);
        assert!(
            ratio <= MAX_DECODED_BYTES_PER_WIRE_BYTE as f64,
            "{what}: {ratio:.2} bytes per wire byte, above {MAX_DECODED_BYTES_PER_WIRE_BYTE}"
        );
    }
}

#[test]
fn a_decoded_list_keeps_at_most_an_eighth_of_room_unused() {
    for count in [0, 1, 1_024, 1_025, 2_049, 100_000] {
        let items = crate::encode::decode_list(count, || Ok(0u64)).expect("decodes");
        assert_eq!(items.len(), count);
        assert!(items.capacity() <= count + count / 8, "{count} items: capacity {}", items.capacity());
    }
}
