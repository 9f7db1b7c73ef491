//! bech32m: every BIP-350 bech32m case, and the BIP-173 strings that a
//! bech32m decoder must refuse (their checksum constant differs).

use cairn_consensus::address::decode_bech32m_raw;

use crate::support::{read_vector_json, unhex};

fn strings(value: &serde_json::Value, key: &str) -> Vec<String> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("vector list {key} missing"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

#[test]
fn valid_bech32m_strings_decode() {
    let vectors = read_vector_json("bech32/bech32_vectors.json");
    let valid = strings(&vectors, "valid_bech32m");
    assert_eq!(valid.len(), 7);
    for text in valid {
        let (hrp, _) = decode_bech32m_raw(&text).unwrap_or_else(|e| panic!("{text:?} must decode: {e}"));
        let expected_hrp = &text[..text.rfind('1').expect("separator")];
        assert_eq!(hrp.to_lowercase(), expected_hrp.to_lowercase());
    }
}

#[test]
fn invalid_bech32m_strings_are_refused() {
    let vectors = read_vector_json("bech32/bech32_vectors.json");
    let invalid = strings(&vectors, "invalid_bech32m");
    assert_eq!(invalid.len(), 14);
    for text in invalid {
        assert!(decode_bech32m_raw(&text).is_err(), "{text:?} must be refused");
    }
}

#[test]
fn bech32_strings_fail_the_bech32m_checksum() {
    let vectors = read_vector_json("bech32/bech32_vectors.json");
    for key in ["valid_bech32", "invalid_bech32"] {
        for text in strings(&vectors, key) {
            assert!(decode_bech32m_raw(&text).is_err(), "{key} {text:?} is not bech32m");
        }
    }
}

/// Segwit v1+ addresses use bech32m: their data (witness version, then the
/// program regrouped from 5 to 8 bits) must match the scriptPubKey.
#[test]
fn bech32m_segwit_addresses_carry_their_program() {
    let vectors = read_vector_json("bech32/bech32_vectors.json");
    let mut checked = 0;
    for case in vectors["valid_address"].as_array().expect("valid_address list") {
        let address = case["address"].as_str().expect("address");
        let script = unhex(case["scriptpubkey"].as_str().expect("script"));
        let version = if script[0] == 0 { 0 } else { script[0] - 0x50 };
        let program = &script[2..];
        let decoded = decode_bech32m_raw(address);
        if version == 0 {
            assert!(decoded.is_err(), "{address}: v0 uses bech32, not bech32m");
            continue;
        }
        let (_, data) = decoded.unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_eq!(data[0], version, "{address}: witness version");
        let mut bytes = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for &fe in &data[1..] {
            acc = (acc << 5) | u32::from(fe);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                bytes.push((acc >> bits) as u8);
            }
        }
        assert_eq!(bytes, program, "{address}: program");
        checked += 1;
    }
    assert!(checked >= 4, "the v1+ addresses were checked");
}
