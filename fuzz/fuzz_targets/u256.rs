//! Differential: `U256` arithmetic and compact-target encoding against an
//! unbounded big-integer crate. Input: two 256-bit numbers, a 64-bit
//! factor, a shift and a compact value.
#![no_main]

use cairn_consensus::{CompactTarget, Target, U256};
use cairn_fuzz::reference::{from_le, get_compact, set_compact, to_le, two_256};
use libfuzzer_sys::fuzz_target;
use num_bigint::BigUint;
use num_traits::Zero;

fn split<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let take = data.len().min(N);
    out[..take].copy_from_slice(&data[..take]);
    *data = &data[take..];
    out
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let a_bytes: [u8; 32] = split(&mut data);
    let b_bytes: [u8; 32] = split(&mut data);
    let factor = u64::from_le_bytes(split(&mut data));
    let shift = u32::from(u16::from_le_bytes(split(&mut data))) % 300;
    let compact = u32::from_le_bytes(split(&mut data));
    let (a, b) = (U256::from_le_bytes(a_bytes), U256::from_le_bytes(b_bytes));
    let (ra, rb) = (from_le(&a_bytes), from_le(&b_bytes));
    let limit = two_256();
    let fits = |value: &BigUint| *value < limit;

    assert_eq!(a.to_le_bytes(), a_bytes);
    assert_eq!(U256::from_be_bytes(a.to_be_bytes()), a);
    assert_eq!(u64::from(a.bits()), ra.bits());
    assert_eq!(a.is_zero(), ra.is_zero());
    assert_eq!(a.cmp(&b), ra.cmp(&rb));

    let sum = &ra + &rb;
    assert_eq!(a.checked_add(b).map(U256::to_le_bytes), fits(&sum).then(|| to_le(&sum)));
    let difference = (ra >= rb).then(|| &ra - &rb);
    assert_eq!(a.checked_sub(b).map(U256::to_le_bytes), difference.map(|d| to_le(&d)));
    let product = &ra * factor;
    assert_eq!(a.checked_mul_u64(factor).map(U256::to_le_bytes), fits(&product).then(|| to_le(&product)));
    if factor != 0 {
        assert_eq!(a.div_u64(factor).to_le_bytes(), to_le(&(&ra / factor)));
    }
    if !rb.is_zero() {
        assert_eq!(a.div_u256(b).to_le_bytes(), to_le(&(&ra / &rb)));
    }
    assert_eq!((a << shift).to_le_bytes(), to_le(&((&ra << shift) % &limit)));
    assert_eq!((a >> shift).to_le_bytes(), to_le(&(&ra >> shift)));
    assert_eq!(a.bit_not().to_le_bytes(), to_le(&(&limit - 1u32 - &ra)));

    // Compact targets, both ways, as Bitcoin Core defines them.
    let decoded = CompactTarget::from_consensus(compact).decode_raw();
    let (value, negative, overflow) = set_compact(compact);
    assert_eq!((decoded.negative, decoded.overflow), (negative, overflow), "{compact:#010x}");
    if let Some(value) = value {
        assert_eq!(decoded.value.to_le_bytes(), to_le(&value), "{compact:#010x}");
    }
    assert_eq!(CompactTarget::encode_raw(a, false).to_consensus(), get_compact(&ra));
    if let Ok(target) = Target::from_u256(a) {
        assert_eq!(target.to_compact().to_consensus(), get_compact(&ra));
        // Work: 2^256 / (target + 1).
        let work = &limit / (&ra + 1u32);
        assert_eq!(target.work().to_u256().to_le_bytes(), to_le(&work));
    }
});
