//! Amounts of money in base units, with arithmetic that never wraps.

use core::fmt;
use core::str::FromStr;

/// Base units in one coin.
pub const COIN: u64 = 100_000_000;

/// No amount, and no sum of amounts, may exceed 21,000,000 coins.
pub const MAX_MONEY: u64 = 21_000_000 * COIN;

/// An amount in base units, at most [`MAX_MONEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u64);

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Above [`MAX_MONEY`].
    #[error("amount {0} base units is above the maximum of {MAX_MONEY}")]
    AboveMax(u64),
    /// A sum that would exceed [`MAX_MONEY`] (or 2^64).
    #[error("sum of amounts overflows the maximum of {MAX_MONEY} base units")]
    SumOverflow,
    /// A difference that would be negative.
    #[error("amount {minuend} minus {subtrahend} is negative")]
    Negative {
        /// What was subtracted from.
        minuend: u64,
        /// What was subtracted.
        subtrahend: u64,
    },
    /// Text that is not an amount of coins.
    #[error("{0:?} is not an amount of coins (digits with at most 8 decimals)")]
    Parse(String),
}

impl Amount {
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// The largest amount.
    pub const MAX: Self = Self(MAX_MONEY);
    /// One coin.
    pub const ONE_COIN: Self = Self(COIN);

    /// An amount of `units` base units.
    ///
    /// # Errors
    /// [`AmountError::AboveMax`] above [`MAX_MONEY`].
    pub const fn from_base_units(units: u64) -> Result<Self, AmountError> {
        if units > MAX_MONEY {
            Err(AmountError::AboveMax(units))
        } else {
            Ok(Self(units))
        }
    }

    /// Whole coins; a constant helper for parameters and tests.
    ///
    /// # Panics
    /// When `coins` is above 21,000,000 (a programming error, not input).
    #[must_use]
    pub const fn from_coins(coins: u64) -> Self {
        assert!(coins <= MAX_MONEY / COIN, "more coins than can exist");
        Self(coins * COIN)
    }

    /// The amount in base units.
    #[must_use]
    pub const fn to_base_units(self) -> u64 {
        self.0
    }

    /// `self + other`, refused above [`MAX_MONEY`].
    ///
    /// # Errors
    /// [`AmountError::SumOverflow`].
    pub fn checked_add(self, other: Self) -> Result<Self, AmountError> {
        let sum = self.0.checked_add(other.0).ok_or(AmountError::SumOverflow)?;
        Self::from_base_units(sum).map_err(|_| AmountError::SumOverflow)
    }

    /// `self - other`, refused below zero.
    ///
    /// # Errors
    /// [`AmountError::Negative`].
    pub fn checked_sub(self, other: Self) -> Result<Self, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Self)
            .ok_or(AmountError::Negative { minuend: self.0, subtrahend: other.0 })
    }

    /// Sums amounts, refusing any partial sum above [`MAX_MONEY`].
    ///
    /// # Errors
    /// [`AmountError::SumOverflow`].
    pub fn sum<I: IntoIterator<Item = Self>>(amounts: I) -> Result<Self, AmountError> {
        amounts.into_iter().try_fold(Self::ZERO, Self::checked_add)
    }
}

impl fmt::Display for Amount {
    /// Coins with 8 decimals, e.g. `12.50000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / COIN, self.0 % COIN)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Parses coins with at most 8 decimals (`12.5`, `0.00000001`, `7`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || AmountError::Parse(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty()
            || !all_digits(whole)
            || !all_digits(fraction)
            || fraction.len() > 8
            || whole.len() > 8
            || text.ends_with('.')
        {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
        let mut fraction_units = 0u64;
        for (i, digit) in fraction.bytes().enumerate() {
            fraction_units += u64::from(digit - b'0') * 10u64.pow(7 - i as u32);
        }
        let units = whole.checked_mul(COIN).and_then(|w| w.checked_add(fraction_units)).ok_or_else(bad)?;
        Self::from_base_units(units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_money_is_accepted_and_one_more_is_not() {
        assert_eq!(Amount::from_base_units(MAX_MONEY), Ok(Amount::MAX));
        assert_eq!(Amount::from_base_units(MAX_MONEY + 1), Err(AmountError::AboveMax(MAX_MONEY + 1)));
    }

    #[test]
    fn sums_stop_at_max_money() {
        let half = Amount::from_base_units(MAX_MONEY / 2).expect("below max");
        let rest = Amount::from_base_units(MAX_MONEY - MAX_MONEY / 2).expect("below max");
        assert_eq!(half.checked_add(rest), Ok(Amount::MAX));
        let one = Amount::from_base_units(1).expect("one");
        assert_eq!(Amount::MAX.checked_add(one), Err(AmountError::SumOverflow));
        assert_eq!(Amount::ZERO.checked_sub(one), Err(AmountError::Negative { minuend: 0, subtrahend: 1 }));
    }

    #[test]
    fn coins_text_round_trips() {
        for (text, units) in [
            ("12.5", 1_250_000_000u64),
            ("0.00000001", 1),
            ("7", 700_000_000),
            (".5", 50_000_000),
            ("21000000", MAX_MONEY),
        ] {
            let amount: Amount = text.parse().expect("valid amount");
            assert_eq!(amount.to_base_units(), units, "{text}");
            let shown = amount.to_string();
            assert_eq!(shown.parse::<Amount>(), Ok(amount));
        }
        for bad in ["", ".", "1.", "-1", "1.000000001", "1e5", "21000000.00000001", "abc", "1.2.3"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} should be refused");
        }
    }
}
