//! 40,325 real Bitcoin mainnet headers validated as chains through Cairn's
//! header code (Bitcoin's 2016-block retarget profile): hash links, proof of
//! work, bits, median time past, and chain work against the published
//! boundary table.

use std::collections::HashMap;

use cairn_consensus::chain::{check_header, check_header_contextual, HeaderAncestry};
use cairn_consensus::pow::{Work, U256};
use cairn_consensus::{BlockHeader, Height, Params};

use crate::support::{read_headers, read_vector_text, unhex};

struct Boundary {
    hash: String,
    chainwork: U256,
    header: Vec<u8>,
}

fn boundaries() -> HashMap<u32, Boundary> {
    let text = read_vector_text("headers/btc_mainnet_retarget_boundary_headers.csv");
    let rows: HashMap<u32, Boundary> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let boundary = Boundary {
                hash: f[1].to_owned(),
                chainwork: U256::from_be_hex(f[6]).expect("chainwork hex"),
                header: unhex(f[7]),
            };
            (f[0].parse().expect("height"), boundary)
        })
        .collect();
    assert_eq!(rows.len(), 827, "every boundary row was read");
    rows
}

/// Headers from `base` upwards.
struct Offset<'a> {
    base: u32,
    headers: &'a [BlockHeader],
}

impl HeaderAncestry for Offset<'_> {
    fn header_at(&self, height: Height) -> Option<BlockHeader> {
        height.get().checked_sub(self.base).and_then(|i| self.headers.get(i as usize)).copied()
    }
}

/// Validates `headers[1..]` on top of `headers[0]` (at `base`) and returns
/// the number of boundary rows matched.
fn validate_chain(
    headers: &[BlockHeader],
    base: u32,
    start_work: Work,
    boundaries: &HashMap<u32, Boundary>,
) -> usize {
    let params = Params::bitcoin_header_profile();
    let now = 2_000_000_000;
    let mut work = start_work;
    let mut matched = 0;
    for (i, header) in headers.iter().enumerate() {
        let height = base + i as u32;
        check_header(header, &params).unwrap_or_else(|e| panic!("header {height}: {e}"));
        if i > 0 {
            let ancestry = Offset { base, headers: &headers[..i] };
            check_header_contextual(header, &params, &ancestry, Height::new(height - 1), now)
                .unwrap_or_else(|e| panic!("header {height}: {e}"));
        }
        work = work + header.bits.to_target().expect("valid bits").work();
        if let Some(boundary) = boundaries.get(&height) {
            assert_eq!(header.block_hash().to_string(), boundary.hash, "hash at {height}");
            assert_eq!(header.to_bytes().to_vec(), boundary.header, "bytes at {height}");
            assert_eq!(work.to_u256(), boundary.chainwork, "chain work at {height}");
            matched += 1;
        }
    }
    matched
}

#[test]
fn headers_from_genesis_form_a_valid_chain() {
    let headers = read_headers("headers/btc_mainnet_headers_0_32259.bin");
    assert_eq!(headers.len(), 32_260);
    let params = Params::bitcoin_header_profile();
    assert_eq!(headers[0].block_hash(), params.genesis_hash, "file starts at Bitcoin's genesis");
    let matched = validate_chain(&headers, 0, Work::ZERO, &boundaries());
    // Heights 0, 2015, 2016, ... 30239, 30240, 32255, 32256 are boundary rows.
    assert_eq!(matched, 33);
}

#[test]
fn recent_headers_form_a_valid_chain_from_their_checkpoint() {
    let headers = read_headers("headers/btc_mainnet_headers_822528_830592.bin");
    assert_eq!(headers.len(), 8_065);
    let boundaries = boundaries();
    let first = boundaries.get(&822_528).expect("the first header is a boundary row");
    // Chain work before the checkpoint: the table's total minus its own work.
    let own = headers[0].bits.to_target().expect("valid").work().to_u256();
    let before = Work::from_u256(first.chainwork.checked_sub(own).expect("positive"));
    let matched = validate_chain(&headers, 822_528, before, &boundaries);
    // 822528 and 824543/824544 ... 830591/830592: 1 + 4 * 2
    assert_eq!(matched, 9);
}

#[test]
fn a_broken_link_or_wrong_bits_is_caught() {
    let mut headers = read_headers("headers/btc_mainnet_headers_0_32259.bin");
    headers.truncate(2100);
    let params = Params::bitcoin_header_profile();
    let ancestry = Offset { base: 0, headers: &headers[..2016] };
    // The real header at 2016 passes; with the prev hash changed it does not.
    check_header_contextual(&headers[2016], &params, &ancestry, Height::new(2015), 2_000_000_000)
        .expect("real header");
    let mut broken = headers[2016];
    broken.prev_block = headers[2014].block_hash();
    assert!(matches!(
        check_header_contextual(&broken, &params, &ancestry, Height::new(2015), 2_000_000_000),
        Err(cairn_consensus::HeaderError::PrevMismatch { .. })
    ));
    let mut wrong_bits = headers[2016];
    wrong_bits.bits = cairn_consensus::CompactTarget::from_consensus(0x1d00_fffe);
    assert!(matches!(
        check_header_contextual(&wrong_bits, &params, &ancestry, Height::new(2015), 2_000_000_000),
        Err(cairn_consensus::HeaderError::UnexpectedBits { .. })
    ));
}
