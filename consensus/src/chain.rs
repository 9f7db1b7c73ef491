//! Header rules: proof of work, the difficulty schedule and block time.
//!
//! The rules that need the chain below a header read it through
//! [`HeaderAncestry`], which the node implements over its block index and
//! tests implement over a vector of headers.

use crate::asert::{next_target, AsertAnchor};
use crate::block::{BlockHeader, VERSION_ROLLING_MASK};
use crate::error::HeaderError;
use crate::height::Height;
use crate::params::{DifficultyRule, Params};
use crate::pow::{CompactTarget, Target, U256};

/// Number of previous blocks whose median time a new block must exceed.
pub const MEDIAN_TIME_SPAN: u32 = 11;

/// The headers of one branch, by height.
pub trait HeaderAncestry {
    /// The header at `height` on the branch being extended, if known.
    fn header_at(&self, height: Height) -> Option<BlockHeader>;
}

impl HeaderAncestry for [BlockHeader] {
    fn header_at(&self, height: Height) -> Option<BlockHeader> {
        self.get(height.get() as usize).copied()
    }
}

/// Context-free header checks.
///
/// # Consensus
/// - The version with bits 13 to 28 (free for miners to roll) masked out is at least 1.
/// - `bits` is a positive, non-overflowing compact target no easier than the network's limit.
/// - The header's SHA-256d, read as a little-endian number, is at most the target.
///
/// # Errors
/// The first rule broken.
pub fn check_header(header: &BlockHeader, params: &Params) -> Result<(), HeaderError> {
    if header.version & !VERSION_ROLLING_MASK < 1 {
        return Err(HeaderError::VersionTooLow(header.version));
    }
    let target = header.bits.to_target()?;
    if target > params.pow_limit {
        return Err(HeaderError::TargetAboveLimit {
            bits: header.bits,
            limit: params.pow_limit.to_compact(),
        });
    }
    let hash = header.block_hash();
    if !target.is_met_by(hash) {
        return Err(HeaderError::InsufficientWork { hash, bits: header.bits });
    }
    Ok(())
}

fn ancestor(ancestry: &(impl HeaderAncestry + ?Sized), height: Height) -> Result<BlockHeader, HeaderError> {
    ancestry.header_at(height).ok_or(HeaderError::MissingAncestor(height))
}

/// The median time of the block at `tip_height` and up to 10 before it
/// (fewer near genesis, or where `ancestry` starts later, as in a header
/// chain checked from a checkpoint).
///
/// # Errors
/// [`HeaderError::MissingAncestor`] when the tip itself is unknown.
pub fn median_time_past(
    ancestry: &(impl HeaderAncestry + ?Sized),
    tip_height: Height,
) -> Result<u32, HeaderError> {
    let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN as usize);
    times.push(ancestor(ancestry, tip_height)?.time);
    let first = tip_height.get().saturating_sub(MEDIAN_TIME_SPAN - 1);
    for height in (first..tip_height.get()).rev() {
        match ancestry.header_at(Height::new(height)) {
            Some(header) => times.push(header.time),
            None => break,
        }
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// The bits the block after `tip_height` must carry.
///
/// # Errors
/// [`HeaderError::MissingAncestor`] when the rule needs an unknown header.
pub fn next_bits(
    params: &Params,
    ancestry: &(impl HeaderAncestry + ?Sized),
    tip_height: Height,
) -> Result<CompactTarget, HeaderError> {
    let genesis_bits = params.genesis.header.bits;
    match params.difficulty {
        DifficultyRule::Fixed => Ok(genesis_bits),
        DifficultyRule::Asert(asert) => {
            if tip_height == Height::GENESIS {
                // Block 1, the anchor, carries the genesis bits.
                return Ok(genesis_bits);
            }
            let anchor_block = ancestor(ancestry, Height::new(1))?;
            let tip = ancestor(ancestry, tip_height)?;
            let anchor = AsertAnchor {
                height: 1,
                parent_time: i64::from(anchor_block.time) - asert.spacing,
                target: genesis_bits.to_target()?,
            };
            Ok(next_target(&anchor, &asert, u64::from(tip_height.get()), i64::from(tip.time)))
        }
        DifficultyRule::BitcoinRetarget { interval, timespan } => {
            let tip = ancestor(ancestry, tip_height)?;
            let next = u64::from(tip_height.get()) + 1;
            if !next.is_multiple_of(u64::from(interval)) {
                return Ok(tip.bits);
            }
            // next >= interval here, so this is at most tip_height.
            let first = ancestor(ancestry, Height::new((next - u64::from(interval)) as u32))?;
            Ok(bitcoin_retarget(tip.bits, first.time, tip.time, timespan, params.pow_limit)?)
        }
    }
}

/// Bitcoin's `CalculateNextWorkRequired`: scale the target by the period's
/// actual duration over `timespan`, the duration clamped to a factor of 4.
///
/// # Errors
/// When `last_bits` is not a valid target.
pub fn bitcoin_retarget(
    last_bits: CompactTarget,
    first_time: u32,
    last_time: u32,
    timespan: i64,
    pow_limit: Target,
) -> Result<CompactTarget, HeaderError> {
    let actual = (i64::from(last_time) - i64::from(first_time)).clamp(timespan / 4, timespan * 4);
    let target = last_bits.to_target()?.to_u256();
    let scaled = target
        .checked_mul_u64(actual as u64)
        .map_or(pow_limit.to_u256(), |product| product.div_u64(timespan as u64));
    let limited = if scaled > pow_limit.to_u256() { pow_limit.to_u256() } else { scaled };
    Ok(CompactTarget::encode_raw(limited.max(U256::ONE), false))
}

/// Checks a header against the branch it extends, whose tip is at `tip_height`.
///
/// # Consensus
/// - It extends the tip.
/// - Its bits are exactly what the difficulty rule gives.
/// - Its time is above the median of the previous 11 blocks' times.
/// - Its time is at most `max_future_block_time` ahead of `now`, the
///   node's clock in Unix seconds (a failure here is not permanent).
///
/// Call [`check_header`] too; this does not repeat it.
///
/// # Errors
/// The first rule broken.
pub fn check_header_contextual(
    header: &BlockHeader,
    params: &Params,
    ancestry: &(impl HeaderAncestry + ?Sized),
    tip_height: Height,
    now: u64,
) -> Result<(), HeaderError> {
    let tip = ancestor(ancestry, tip_height)?;
    let tip_hash = tip.block_hash();
    if header.prev_block != tip_hash {
        return Err(HeaderError::PrevMismatch { expected: tip_hash, got: header.prev_block });
    }
    let expected = next_bits(params, ancestry, tip_height)?;
    if header.bits != expected {
        return Err(HeaderError::UnexpectedBits { expected, got: header.bits });
    }
    let median = median_time_past(ancestry, tip_height)?;
    if header.time <= median {
        return Err(HeaderError::TimeTooOld { time: header.time, median });
    }
    let max = now + u64::from(params.max_future_block_time);
    if u64::from(header.time) > max {
        return Err(HeaderError::TimeTooNew { time: header.time, max });
    }
    Ok(())
}
