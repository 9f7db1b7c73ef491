//! Differential: the node's Legendre-symbol test of "is this an x
//! coordinate on secp256k1" against libsecp256k1's own x-only key parsing.
//! They must agree on every 32 bytes: the answer decides which outputs can
//! ever be spent.
#![no_main]

use cairn_consensus::field::is_x_coordinate;
use libfuzzer_sys::fuzz_target;
use secp256k1::XOnlyPublicKey;

fuzz_target!(|data: &[u8]| {
    let Ok(x) = <[u8; 32]>::try_from(data) else { return };
    let secp = XOnlyPublicKey::from_byte_array(&x).is_ok();
    // `None`: the fast test gave up, and the node asks libsecp256k1.
    if let Some(ours) = is_x_coordinate(&x) {
        assert_eq!(ours, secp, "x = {}", hex::encode(x));
    }
});
