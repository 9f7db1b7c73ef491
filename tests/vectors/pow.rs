//! Compact targets and Bitcoin's retarget: every case of Bitcoin Core's
//! tests and all 413 real mainnet retargets.

use cairn_consensus::chain::{bitcoin_retarget, check_header};
use cairn_consensus::error::HeaderError;
use cairn_consensus::pow::{CompactTarget, CompactTargetError, U256};
use cairn_consensus::{BlockHash, BlockHeader, MerkleRoot, Params};

use crate::support::{hex_u32, read_vector_json, read_vector_text};

#[test]
fn compact_cases_decode_and_encode_as_core() {
    let vectors = read_vector_json("pow/bitcoin_core_pow_compact_vectors.json");
    let cases = vectors["compact_cases"].as_array().expect("compact_cases");
    assert_eq!(cases.len(), 20);
    for case in cases {
        let bits = CompactTarget::from_consensus(hex_u32(case["compact"].as_str().expect("compact")));
        let decoded = bits.decode_raw();
        let negative = case["negative"].as_bool().expect("negative");
        let overflow = case["overflow"].as_bool().expect("overflow");
        assert_eq!(decoded.negative, negative, "{bits:?} negative flag");
        assert_eq!(decoded.overflow, overflow, "{bits:?} overflow flag");
        // Cairn refuses negative and overflowing forms outright.
        match bits.to_target() {
            Err(CompactTargetError::Negative(_)) => assert!(negative),
            Err(CompactTargetError::Overflow(_)) => assert!(overflow && !negative),
            Err(CompactTargetError::Zero(_)) => assert!(decoded.value.is_zero()),
            Ok(target) => assert!(!negative && !overflow && target.to_u256() == decoded.value),
        }
        if overflow {
            continue;
        }
        let value = U256::from_be_hex(case["target_hex"].as_str().expect("target_hex")).expect("hex");
        assert_eq!(decoded.value, value, "{bits:?} value");
        let with_sign = case["get_compact_called_with_negative"].as_bool().expect("flag");
        let expected = hex_u32(case["get_compact"].as_str().expect("get_compact"));
        assert_eq!(
            CompactTarget::encode_raw(value, with_sign).to_consensus(),
            expected,
            "{bits:?} re-encoded"
        );
    }
    for extra in vectors["compact_extra"].as_array().expect("compact_extra") {
        let value =
            U256::from_be_hex(extra["get_compact_of_value_hex"].as_str().expect("value")).expect("hex");
        let expected = hex_u32(extra["expected_compact"].as_str().expect("expected"));
        assert_eq!(CompactTarget::encode_raw(value, false).to_consensus(), expected);
    }
}

#[test]
fn calculate_next_work_required_cases() {
    let vectors = read_vector_json("pow/bitcoin_core_pow_compact_vectors.json");
    let params = Params::bitcoin_header_profile();
    let cases = vectors["calculate_next_work_required_cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 4);
    for case in cases {
        let last_bits =
            CompactTarget::from_consensus(hex_u32(case["pindexLast_bits"].as_str().expect("bits")));
        let first_time = case["nFirstBlockTime"].as_u64().expect("first time") as u32;
        let last_time = case["pindexLast_time"].as_u64().expect("last time") as u32;
        let expected = hex_u32(case["expected"].as_str().expect("expected"));
        let got =
            bitcoin_retarget(last_bits, first_time, last_time, 1_209_600, params.pow_limit).expect("valid");
        assert_eq!(got.to_consensus(), expected, "{}", case["name"]);
    }
}

fn header_with(bits: u32) -> BlockHeader {
    BlockHeader {
        version: 1,
        prev_block: BlockHash::ZERO,
        merkle_root: MerkleRoot::ZERO,
        time: 0,
        bits: CompactTarget::from_consensus(bits),
        nonce: 0,
    }
}

/// Core's CheckProofOfWork failure cases, through Cairn's header check.
#[test]
fn check_proof_of_work_rejections() {
    let params = Params::bitcoin_header_profile();
    let vectors = read_vector_json("pow/bitcoin_core_pow_compact_vectors.json");
    let key = "check_proof_of_work_cases (derived from Core tests; all must be rejected)";
    assert_eq!(vectors[key].as_array().expect("cases").len(), 5);
    // negative target
    assert_eq!(
        check_header(&header_with(0x1d80_ffff), &params),
        Err(HeaderError::BadBits(CompactTargetError::Negative(0x1d80_ffff)))
    );
    // overflowing target
    assert_eq!(
        check_header(&header_with(0xff7f_ffff), &params),
        Err(HeaderError::BadBits(CompactTargetError::Overflow(0xff7f_ffff)))
    );
    // too easy: twice the limit
    assert!(matches!(
        check_header(&header_with(0x1d01_ffff), &params),
        Err(HeaderError::TargetAboveLimit { .. })
    ));
    // zero target
    assert_eq!(
        check_header(&header_with(0), &params),
        Err(HeaderError::BadBits(CompactTargetError::Zero(0)))
    );
    // a hash above the target: a zero-nonce header at the limit is (overwhelmingly) not valid work
    assert!(matches!(
        check_header(&header_with(0x1d00_ffff), &params),
        Err(HeaderError::InsufficientWork { .. })
    ));
}

#[test]
fn all_real_mainnet_retargets() {
    let text = read_vector_text("pow/btc_mainnet_all_retargets.csv");
    let params = Params::bitcoin_header_profile();
    let mut count = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.starts_with("height")) {
        let f: Vec<&str> = line.split(',').collect();
        let first_time: u32 = f[2].parse().expect("first_time");
        let last_time: u32 = f[4].parse().expect("last_time");
        let last_bits = CompactTarget::from_consensus(hex_u32(f[6]));
        let new_bits = hex_u32(f[7]);
        let got =
            bitcoin_retarget(last_bits, first_time, last_time, 1_209_600, params.pow_limit).expect("valid");
        assert_eq!(got.to_consensus(), new_bits, "retarget at height {}", f[0]);
        count += 1;
    }
    assert_eq!(count, 413, "every real retarget was checked");
}
