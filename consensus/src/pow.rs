//! Proof of work: 256-bit integers, compact targets, targets and chain work.
//!
//! The compact ("bits") encoding follows Bitcoin Core's `SetCompact` and
//! `GetCompact` exactly; Cairn refuses the negative and overflowing forms
//! that Core merely flags.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, Shl, Shr};

use crate::hash::BlockHash;

/// An unsigned 256-bit integer, four little-endian 64-bit limbs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct U256([u64; 4]);

impl U256 {
    /// Zero.
    pub const ZERO: Self = Self([0; 4]);
    /// One.
    pub const ONE: Self = Self([1, 0, 0, 0]);
    /// 2^256 - 1.
    pub const MAX: Self = Self([u64::MAX; 4]);

    /// From a u64.
    #[must_use]
    pub const fn from_u64(value: u64) -> Self {
        Self([value, 0, 0, 0])
    }

    /// From 32 little-endian bytes (how a hash is read as a number).
    #[must_use]
    pub fn from_le_bytes(bytes: [u8; 32]) -> Self {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            *limb = u64::from_le_bytes(word);
        }
        Self(limbs)
    }

    /// To 32 little-endian bytes.
    #[must_use]
    pub fn to_le_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// To 32 big-endian bytes (how targets and chain work are printed).
    #[must_use]
    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut out = self.to_le_bytes();
        out.reverse();
        out
    }

    /// From 32 big-endian bytes.
    #[must_use]
    pub fn from_be_bytes(mut bytes: [u8; 32]) -> Self {
        bytes.reverse();
        Self::from_le_bytes(bytes)
    }

    /// Parses 1 to 64 big-endian hex digits.
    #[must_use]
    pub fn from_be_hex(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 64 {
            return None;
        }
        let padded = format!("{text:0>64}");
        let mut bytes = [0u8; 32];
        crate::hash::decode_hex_into(&padded, &mut bytes).ok()?;
        Some(Self::from_be_bytes(bytes))
    }

    /// The lowest 64 bits.
    #[must_use]
    pub const fn low_u64(self) -> u64 {
        self.0[0]
    }

    /// Whether the value is zero.
    #[must_use]
    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// Number of significant bits (0 for zero).
    #[must_use]
    pub fn bits(self) -> u32 {
        for i in (0..4).rev() {
            if self.0[i] != 0 {
                return 64 * i as u32 + (64 - self.0[i].leading_zeros());
            }
        }
        0
    }

    /// `self + other`, or `None` past 2^256 - 1.
    #[must_use]
    pub fn checked_add(self, other: Self) -> Option<Self> {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, limb) in out.iter_mut().enumerate() {
            let (sum, c1) = self.0[i].overflowing_add(other.0[i]);
            let (sum, c2) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = c1 || c2;
        }
        (!carry).then_some(Self(out))
    }

    /// `self - other`, or `None` below zero.
    #[must_use]
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for (i, limb) in out.iter_mut().enumerate() {
            let (diff, b1) = self.0[i].overflowing_sub(other.0[i]);
            let (diff, b2) = diff.overflowing_sub(u64::from(borrow));
            *limb = diff;
            borrow = b1 || b2;
        }
        (!borrow).then_some(Self(out))
    }

    /// `self * factor`, or `None` past 2^256 - 1.
    #[must_use]
    pub fn checked_mul_u64(self, factor: u64) -> Option<Self> {
        let mut out = [0u64; 4];
        let mut carry = 0u128;
        for (i, limb) in out.iter_mut().enumerate() {
            let product = u128::from(self.0[i]) * u128::from(factor) + carry;
            *limb = product as u64;
            carry = product >> 64;
        }
        (carry == 0).then_some(Self(out))
    }

    /// `self / divisor` (truncating).
    ///
    /// # Panics
    /// When `divisor` is zero.
    #[must_use]
    pub fn div_u64(self, divisor: u64) -> Self {
        assert!(divisor != 0, "division by zero");
        let mut out = [0u64; 4];
        let mut rem = 0u128;
        for i in (0..4).rev() {
            let current = (rem << 64) | u128::from(self.0[i]);
            out[i] = (current / u128::from(divisor)) as u64;
            rem = current % u128::from(divisor);
        }
        Self(out)
    }

    /// `self / divisor` (truncating), by shift-and-subtract.
    ///
    /// # Panics
    /// When `divisor` is zero.
    #[must_use]
    pub fn div_u256(self, divisor: Self) -> Self {
        assert!(!divisor.is_zero(), "division by zero");
        if self < divisor {
            return Self::ZERO;
        }
        let shift = self.bits() - divisor.bits();
        let mut divisor = divisor << shift;
        let mut remainder = self;
        let mut quotient = Self::ZERO;
        for bit in (0..=shift).rev() {
            if remainder >= divisor {
                remainder = remainder.checked_sub(divisor).expect("remainder >= divisor");
                quotient.0[(bit / 64) as usize] |= 1 << (bit % 64);
            }
            divisor = divisor >> 1;
        }
        quotient
    }

    /// Bitwise not.
    #[must_use]
    pub fn bit_not(self) -> Self {
        Self([!self.0[0], !self.0[1], !self.0[2], !self.0[3]])
    }
}

impl Shl<u32> for U256 {
    type Output = Self;
    /// Shift left; bits past 2^255 are dropped, shifts of 256 or more give zero.
    fn shl(self, shift: u32) -> Self {
        if shift >= 256 {
            return Self::ZERO;
        }
        let (words, bits) = ((shift / 64) as usize, shift % 64);
        let mut out = [0u64; 4];
        for i in (words..4).rev() {
            out[i] = self.0[i - words] << bits;
            if bits > 0 && i > words {
                out[i] |= self.0[i - words - 1] >> (64 - bits);
            }
        }
        Self(out)
    }
}

impl Shr<u32> for U256 {
    type Output = Self;
    /// Shift right; shifts of 256 or more give zero.
    fn shr(self, shift: u32) -> Self {
        if shift >= 256 {
            return Self::ZERO;
        }
        let (words, bits) = ((shift / 64) as usize, shift % 64);
        let mut out = [0u64; 4];
        #[allow(clippy::needless_range_loop)] // two offsets into one array read clearer by index
        for i in 0..4 - words {
            out[i] = self.0[i + words] >> bits;
            if bits > 0 && i + words + 1 < 4 {
                out[i] |= self.0[i + words + 1] << (64 - bits);
            }
        }
        Self(out)
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> Ordering {
        for i in (0..4).rev() {
            match self.0[i].cmp(&other.0[i]) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for U256 {
    /// 64 big-endian hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.to_be_bytes() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U256({self})")
    }
}

/// Bitcoin's 32-bit compact encoding of a target ("bits").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CompactTarget(u32);

/// Why a compact target does not encode a usable target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompactTargetError {
    /// The sign bit is set on a non-zero mantissa.
    #[error("compact target {0:#010x} is negative")]
    Negative(u32),
    /// The value does not fit in 256 bits.
    #[error("compact target {0:#010x} overflows 256 bits")]
    Overflow(u32),
    /// The value is zero: no hash could meet it.
    #[error("compact target {0:#010x} is zero")]
    Zero(u32),
}

/// What Bitcoin Core's `SetCompact` yields: the value and its two flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactDecoding {
    /// The 256-bit value (meaningless when `overflow`).
    pub value: U256,
    /// The sign bit was set on a non-zero mantissa.
    pub negative: bool,
    /// The value does not fit 256 bits.
    pub overflow: bool,
}

impl CompactTarget {
    /// Wraps the 32-bit form.
    #[must_use]
    pub const fn from_consensus(bits: u32) -> Self {
        Self(bits)
    }

    /// The 32-bit form.
    #[must_use]
    pub const fn to_consensus(self) -> u32 {
        self.0
    }

    /// Decodes exactly as Bitcoin Core's `arith_uint256::SetCompact`.
    #[must_use]
    pub fn decode_raw(self) -> CompactDecoding {
        let size = self.0 >> 24;
        let mut word = self.0 & 0x007f_ffff;
        let value = if size <= 3 {
            word >>= 8 * (3 - size);
            U256::from_u64(u64::from(word))
        } else {
            U256::from_u64(u64::from(word)) << (8 * (size - 3))
        };
        let negative = word != 0 && (self.0 & 0x0080_0000) != 0;
        let overflow = word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
        CompactDecoding { value, negative, overflow }
    }

    /// The target this encodes.
    ///
    /// # Errors
    /// Negative, overflowing and zero targets are refused.
    pub fn to_target(self) -> Result<Target, CompactTargetError> {
        let decoded = self.decode_raw();
        if decoded.negative {
            return Err(CompactTargetError::Negative(self.0));
        }
        if decoded.overflow {
            return Err(CompactTargetError::Overflow(self.0));
        }
        if decoded.value.is_zero() {
            return Err(CompactTargetError::Zero(self.0));
        }
        Ok(Target(decoded.value))
    }

    /// Encodes exactly as Bitcoin Core's `arith_uint256::GetCompact(negative)`.
    #[must_use]
    pub fn encode_raw(value: U256, negative: bool) -> Self {
        let mut size = value.bits().div_ceil(8);
        let mut compact = if size <= 3 {
            (value.low_u64() << (8 * (3 - size))) as u32
        } else {
            (value >> (8 * (size - 3))).low_u64() as u32
        };
        // The 0x00800000 bit is the sign: move the mantissa down a byte instead.
        if compact & 0x0080_0000 != 0 {
            compact >>= 8;
            size += 1;
        }
        compact |= size << 24;
        if negative && compact & 0x007f_ffff != 0 {
            compact |= 0x0080_0000;
        }
        Self(compact)
    }
}

impl fmt::Debug for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactTarget({:#010x})", self.0)
    }
}

impl fmt::Display for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A proof-of-work target: a header is valid work when its hash, read as a
/// little-endian 256-bit number, is at most the target. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(U256);

impl Target {
    /// A target from its value.
    ///
    /// # Errors
    /// Zero is not a target.
    pub fn from_u256(value: U256) -> Result<Self, CompactTargetError> {
        if value.is_zero() {
            Err(CompactTargetError::Zero(0))
        } else {
            Ok(Self(value))
        }
    }

    /// The value.
    #[must_use]
    pub const fn to_u256(self) -> U256 {
        self.0
    }

    /// The compact form (Core's `GetCompact`); rounds down to 3 significant bytes.
    #[must_use]
    pub fn to_compact(self) -> CompactTarget {
        CompactTarget::encode_raw(self.0, false)
    }

    /// Whether `hash` meets this target.
    #[must_use]
    pub fn is_met_by(self, hash: BlockHash) -> bool {
        U256::from_le_bytes(hash.to_byte_array()) <= self.0
    }

    /// The expected number of hashes to meet this target: 2^256 / (target + 1).
    #[must_use]
    pub fn work(self) -> Work {
        // 2^256 / (t + 1) == (2^256 - t - 1) / (t + 1) + 1 == !t / (t + 1) + 1,
        // which stays within 256 bits (Bitcoin Core's GetBlockProof).
        let Some(divisor) = self.0.checked_add(U256::ONE) else {
            return Work(U256::ONE);
        };
        Work(self.0.bit_not().div_u256(divisor).checked_add(U256::ONE).expect("quotient < 2^256 - 1"))
    }
}

/// Accumulated expected hashes: chain work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Work(U256);

impl Work {
    /// No work.
    pub const ZERO: Self = Self(U256::ZERO);

    /// Wraps a value.
    #[must_use]
    pub const fn from_u256(value: U256) -> Self {
        Self(value)
    }

    /// The value.
    #[must_use]
    pub const fn to_u256(self) -> U256 {
        self.0
    }
}

impl Add for Work {
    type Output = Self;
    /// Chain work saturates at 2^256 - 1 (unreachable: that is 2^256 hashes).
    fn add(self, other: Self) -> Self {
        Self(self.0.checked_add(other.0).unwrap_or(U256::MAX))
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_and_division_agree_with_u128() {
        let a = U256::from_u64(0xdead_beef_1234_5678);
        let shifted = a << 100;
        assert_eq!(shifted >> 100, a);
        assert_eq!((shifted.div_u256(U256::from_u64(1 << 36))) >> 64, a);
        assert_eq!(U256::MAX.div_u256(U256::MAX), U256::ONE);
        assert_eq!(U256::from_u64(1_000_000).div_u64(7), U256::from_u64(142_857));
    }

    #[test]
    fn work_of_easiest_and_hardest_targets() {
        // Regtest-like target 0x7fffff << 232 ~ 2^255: work 2.
        let easy = CompactTarget::from_consensus(0x207f_ffff).to_target().expect("valid");
        assert_eq!(easy.work().to_u256(), U256::from_u64(2));
        // Bitcoin's genesis target: work 0x100010001.
        let btc = CompactTarget::from_consensus(0x1d00_ffff).to_target().expect("valid");
        assert_eq!(btc.work().to_u256(), U256::from_u64(0x1_0001_0001));
        // Target 1: work 2^255.
        let hardest = Target::from_u256(U256::ONE).expect("non-zero");
        assert_eq!(hardest.work().to_u256(), U256::ONE << 255);
    }
}
