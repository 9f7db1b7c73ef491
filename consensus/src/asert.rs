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
/// `anchor_target * factor * 2^shifts / 65536` (the product computed
/// exactly, in up to 273 bits, then shifted, truncating), at least 1 and at
/// most the proof-of-work limit.
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
    // The product needs up to 256 + 17 bits (devnet's limit is about 2^240,
    // so there it passes 256 bits on most blocks): it is kept exactly, and
    // only the shifted result is compared with the limit.
    let product = WideProduct::new(anchor.target.to_u256(), factor);
    let next = product.shifted(shifts - 16).filter(|next| *next <= pow_limit);
    let Some(next) = next else { return params.pow_limit.to_compact() };
    if next.is_zero() {
        CompactTarget::encode_raw(U256::ONE, false)
    } else {
        CompactTarget::encode_raw(next, false)
    }
}

/// A 256-bit target times a factor below 2^64, exactly: five 64-bit limbs,
/// little-endian.
struct WideProduct([u64; 5]);

impl WideProduct {
    fn new(value: U256, factor: u64) -> Self {
        let bytes = value.to_le_bytes();
        let mut limbs = [0u64; 5];
        let mut carry = 0u128;
        for (i, limb) in limbs.iter_mut().take(4).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            let product = u128::from(u64::from_le_bytes(word)) * u128::from(factor) + carry;
            *limb = product as u64;
            carry = product >> 64;
        }
        limbs[4] = carry as u64;
        Self(limbs)
    }

    /// Significant bits (0 for zero).
    fn bits(&self) -> u32 {
        (0..5).rev().find(|&i| self.0[i] != 0).map_or(0, |i| 64 * i as u32 + 64 - self.0[i].leading_zeros())
    }

    /// The low 256 bits.
    fn low(&self) -> U256 {
        let mut bytes = [0u8; 32];
        for (i, limb) in self.0.iter().take(4).enumerate() {
            bytes[8 * i..8 * i + 8].copy_from_slice(&limb.to_le_bytes());
        }
        U256::from_le_bytes(bytes)
    }

    /// The product times 2^shift (divided by 2^-shift, truncating, when
    /// negative), or `None` when that is 2^256 or more.
    fn shifted(&self, shift: i128) -> Option<U256> {
        if shift >= 0 {
            let shift = u32::try_from(shift).ok()?;
            if self.bits() == 0 {
                return Some(U256::ZERO);
            }
            return (u64::from(self.bits()) + u64::from(shift) <= 256).then(|| self.low() << shift);
        }
        let shift = u32::try_from(-shift).unwrap_or(u32::MAX);
        if shift >= 320 {
            return Some(U256::ZERO);
        }
        let (words, bits) = ((shift / 64) as usize, shift % 64);
        let mut out = [0u64; 5];
        for (i, limb) in out.iter_mut().enumerate().take(5 - words) {
            *limb = self.0[i + words] >> bits;
            if bits > 0 && i + words + 1 < 5 {
                *limb |= self.0[i + words + 1] << (64 - bits);
            }
        }
        let shifted = Self(out);
        (shifted.0[4] == 0).then(|| shifted.low())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnet() -> (AsertAnchor, AsertParams) {
        let limit = CompactTarget::from_consensus(0x1f00_ffff).to_target().expect("valid limit");
        let block_1_time = 1_796_459_260;
        let anchor = AsertAnchor { height: 1, parent_time: block_1_time - 10, target: limit };
        (anchor, AsertParams { spacing: 10, half_life: 600, pow_limit: limit })
    }

    #[test]
    fn the_devnet_product_past_256_bits_is_kept_exact() {
        let (anchor, params) = devnet();
        // Block 2 one second after block 1: 9 s early, so the target falls
        // by 2^(-9/600). A 256-bit cut of the product gave 0x1e7fffff here.
        let bits = next_target(&anchor, &params, 2, 1_796_459_261).to_consensus();
        assert_eq!(bits, 0x1f00_fd5b);
        // The product of the limit and the factor passes 2^256 there.
        let exponent = (1 - 10 * 2) * 65536 / 600;
        let frac = (exponent - (exponent >> 16) * 65536) as u64;
        assert!(frac > 0);
        assert!(WideProduct::new(params.pow_limit.to_u256(), 65536 + frac).bits() > 256);
    }

    #[test]
    fn a_wide_product_shifts_exactly_both_ways() {
        let value = U256::MAX;
        let product = WideProduct::new(value, 1 << 16);
        assert_eq!(product.bits(), 272);
        // (2^256 - 1) * 2^16 / 2^16 is the value again; / 2^17 halves it.
        assert_eq!(product.shifted(-16), Some(value));
        assert_eq!(product.shifted(-17), Some(value >> 1));
        assert_eq!(product.shifted(-15), None, "2^257 - 2 does not fit");
        assert_eq!(product.shifted(-400), Some(U256::ZERO));
        let small = WideProduct::new(U256::ONE, 3);
        assert_eq!(small.shifted(254), Some(U256::from_u64(3) << 254));
        assert_eq!(small.shifted(255), None, "3 * 2^255 does not fit");
        assert_eq!(small.shifted(i128::from(u32::MAX) + 1), None);
    }

    #[test]
    fn far_behind_schedule_is_the_limit_and_far_ahead_is_one() {
        let (anchor, params) = devnet();
        let late = next_target(&anchor, &params, 2, 1_796_459_260 + 1_000_000);
        assert_eq!(late, params.pow_limit.to_compact());
        let early = next_target(&anchor, &params, 1_000_000, 1_796_459_260);
        assert_eq!(early, CompactTarget::encode_raw(U256::ONE, false));
    }
}
