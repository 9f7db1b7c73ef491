//! aserti3-2d: absolutely scheduled exponentially rising targets, in exact
//! integer arithmetic (the algorithm of Bitcoin Cash's 2020 upgrade, with its
//! cubic approximation of 2^x).
//!
//! Every block's target follows from one anchor block: each `half_life`
//! seconds the chain falls behind its ideal schedule the target doubles, each
//! `half_life` seconds it runs ahead the target halves.

use crate::pow::{CompactTarget, Target, U256};

/// The anchor of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsertAnchor {
    /// Height of the anchor block (u64 so the published vectors' extreme
    /// heights can be checked; chain heights are u32).
    pub height: u64,
    /// Timestamp of the anchor block's parent.
    pub parent_time: i64,
    /// The anchor block's target.
    pub target: Target,
}

/// Schedule parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsertParams {
    /// Ideal seconds between blocks.
    pub spacing: i64,
    /// Seconds of schedule drift that double (or halve) the target.
    pub half_life: i64,
    /// The easiest target allowed.
    pub pow_limit: Target,
}

/// The compact target of the block after the one at `height` with timestamp
/// `time`.
///
/// # Consensus
/// ```text
/// exponent = ((time - parent_time) - spacing * (height - anchor_height + 1)) * 65536 / half_life
/// ```
/// (signed, truncating division); `shifts = exponent >> 16` (floor),
/// `frac = exponent mod 65536`; `factor = 65536 + ((195766423245049 frac +
/// 971821376 frac^2 + 5127 frac^3 + 2^47) >> 48)`; the target is
/// `anchor_target * factor * 2^shifts / 65536`, at least 1 and at most the
/// proof-of-work limit.
#[must_use]
pub fn next_target(anchor: &AsertAnchor, params: &AsertParams, height: u64, time: i64) -> CompactTarget {
    let time_diff = i128::from(time) - i128::from(anchor.parent_time);
    let height_diff = i128::from(height) - i128::from(anchor.height);
    let exponent =
        (time_diff - i128::from(params.spacing) * (height_diff + 1)) * 65536 / i128::from(params.half_life);
    let shifts = exponent >> 16; // arithmetic shift: floor
    let frac = (exponent - shifts * 65536) as u128; // 0 <= frac < 65536
                                                    // The reference computes this in u64, where it just fits; u128 is exact too.
    let factor = 65536
        + ((195_766_423_245_049u128 * frac
            + 971_821_376u128 * frac * frac
            + 5127u128 * frac * frac * frac
            + (1u128 << 47))
            >> 48) as u64;
    let pow_limit = params.pow_limit.to_u256();
    // anchor target <= pow limit < 2^256 / 2^17, so the product fits.
    let product = anchor.target.to_u256().checked_mul_u64(factor).unwrap_or(U256::MAX);
    let shifts = shifts - 16;
    let next = if shifts <= 0 {
        product >> u32::try_from(-shifts).unwrap_or(u32::MAX)
    } else {
        let shift = u32::try_from(shifts).unwrap_or(u32::MAX);
        let shifted = product << shift;
        if shift >= 256 || (shifted >> shift) != product {
            pow_limit
        } else {
            shifted
        }
    };
    if next.is_zero() {
        CompactTarget::encode_raw(U256::ONE, false)
    } else if next > pow_limit {
        params.pow_limit.to_compact()
    } else {
        CompactTarget::encode_raw(next, false)
    }
}
