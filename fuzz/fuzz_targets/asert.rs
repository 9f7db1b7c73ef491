//! Differential: `asert::next_target` against the formula of
//! `docs/protocol.md` evaluated in unbounded integers. The anchor, the
//! height and the time are fuzzed; spacing, half-life and the limit are
//! each network's (and a few others), as consensus uses them.
#![no_main]

use cairn_consensus::asert::{next_target, AsertAnchor, AsertParams};
use cairn_consensus::{CompactTarget, Target, U256};
use cairn_fuzz::reference::{asert, from_le};
use libfuzzer_sys::fuzz_target;

/// (spacing, half-life, pow limit's compact form): devnet's, aserti3-2d's
/// published vectors' and two small ones that reach the edges sooner.
const SCHEDULES: [(i64, i64, u32); 4] = [
    (600, 2 * 24 * 3600, 0x1f00_ffff),
    (600, 2 * 24 * 3600, 0x1d00_ffff),
    (1, 1, 0x207f_ffff),
    (600, 3600, 0x2100_ffff),
];

fuzz_target!(|input: &[u8]| {
    if input.len() < 1 + 8 + 8 + 32 + 8 + 8 {
        return;
    }
    let (spacing, half_life, limit) = SCHEDULES[usize::from(input[0]) % SCHEDULES.len()];
    let word = |at: usize| u64::from_le_bytes(input[at..at + 8].try_into().expect("8 bytes"));
    let anchor_height = word(1);
    let anchor_parent_time = word(9) as i64;
    let target_bytes: [u8; 32] = input[17..49].try_into().expect("32 bytes");
    let height = word(49);
    let time = word(57) as i64;
    let Ok(pow_limit) = CompactTarget::from_consensus(limit).to_target() else { return };
    let Ok(anchor_target) = Target::from_u256(U256::from_le_bytes(target_bytes)) else { return };
    let anchor =
        AsertAnchor { height: anchor_height, parent_time: anchor_parent_time, target: anchor_target };
    let params = AsertParams { spacing, half_life, pow_limit };
    let ours = next_target(&anchor, &params, height, time).to_consensus();
    let reference = asert(
        anchor_height,
        anchor_parent_time,
        &from_le(&target_bytes),
        spacing,
        half_life,
        &from_le(&pow_limit.to_u256().to_le_bytes()),
        height,
        time,
    );
    assert_eq!(ours, reference, "{anchor:?} {params:?} height {height} time {time}");
});
