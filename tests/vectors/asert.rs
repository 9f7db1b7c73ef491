//! aserti3-2d: all 14,000 cases of the twelve published runs, and all
//! 14,360 cases of the six runs with devnet's parameters (where the
//! product `anchor_target * factor` needs more than 256 bits), through the
//! node's code and through [`written_rule`], a second implementation
//! written from docs/protocol.md 2.4 alone that other tests use as the
//! judge of the node's devnet chains.

use cairn_consensus::asert::{next_target, AsertAnchor, AsertParams};
use cairn_consensus::params::DifficultyRule;
use cairn_consensus::pow::{CompactTarget, Target};
use cairn_consensus::Network;

use crate::support::{hex_u32, read_vector_text};

/// A non-negative integer of any size, as little-endian 32-bit limbs with
/// no zero limb on top: just what the written rule needs, nothing shared
/// with the node's 256-bit arithmetic.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Natural(Vec<u32>);

impl Natural {
    fn from_u64(value: u64) -> Self {
        Self(vec![value as u32, (value >> 32) as u32]).trimmed()
    }

    fn trimmed(mut self) -> Self {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        self
    }

    fn bits(&self) -> u32 {
        self.0.last().map_or(0, |top| 32 * (self.0.len() as u32 - 1) + (32 - top.leading_zeros()))
    }

    fn times(&self, factor: u32) -> Self {
        let mut carry = 0u64;
        let mut limbs: Vec<u32> = self
            .0
            .iter()
            .map(|&limb| {
                let wide = u64::from(limb) * u64::from(factor) + carry;
                carry = wide >> 32;
                wide as u32
            })
            .collect();
        limbs.push(carry as u32);
        Self(limbs).trimmed()
    }

    fn bit(&self, i: u32) -> bool {
        self.0.get((i / 32) as usize).is_some_and(|limb| limb >> (i % 32) & 1 == 1)
    }

    /// Shifted left by `by` bits (right, dropping bits, when negative).
    fn shifted(&self, by: i64) -> Self {
        let top = i64::from(self.bits()) + by;
        if top <= 0 {
            return Self(Vec::new());
        }
        let mut limbs = vec![0u32; (top as usize).div_ceil(32)];
        for i in 0..top {
            let from = i - by;
            if from >= 0 && self.bit(from as u32) {
                limbs[(i / 32) as usize] |= 1 << (i % 32);
            }
        }
        Self(limbs).trimmed()
    }

    fn low_u32(&self) -> u32 {
        self.0.first().copied().unwrap_or(0)
    }

    fn from_compact(bits: u32) -> Self {
        let size = i64::from(bits >> 24);
        Self::from_u64(u64::from(bits & 0x007f_ffff)).shifted(8 * (size - 3))
    }

    /// Bitcoin's `GetCompact`.
    fn to_compact(&self) -> u32 {
        let mut size = self.bits().div_ceil(8);
        let mut mantissa = self.shifted(-8 * (i64::from(size) - 3)).low_u32();
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        mantissa | size << 24
    }

    fn greater_than(&self, other: &Self) -> bool {
        if self.bits() != other.bits() {
            return self.bits() > other.bits();
        }
        self.0.iter().rev().cmp(other.0.iter().rev()) == std::cmp::Ordering::Greater
    }
}

/// The parameters of an aserti3-2d schedule, as docs/protocol.md 2.4 names them.
#[derive(Clone, Copy, Debug)]
pub struct WrittenAsert {
    pub anchor_height: u64,
    pub anchor_parent_time: i64,
    pub anchor_bits: u32,
    pub spacing: i64,
    pub half_life: i64,
    pub limit_bits: u32,
}

/// The bits of the block after the one at `height` with `time`, computed
/// step by step as docs/protocol.md 2.4 writes the rule.
pub fn written_rule(rule: &WrittenAsert, height: u64, time: i64) -> u32 {
    // In 128 bits: the published vectors reach heights and times near 2^63.
    let elapsed = i128::from(time) - i128::from(rule.anchor_parent_time);
    let scheduled = i128::from(rule.spacing) * (i128::from(height) - i128::from(rule.anchor_height) + 1);
    let exponent = (elapsed - scheduled) * 65536 / i128::from(rule.half_life);
    let shifts = exponent >> 16;
    let frac = (exponent - shifts * 65536) as u128;
    let factor = 65536
        + ((195_766_423_245_049 * frac + 971_821_376 * frac * frac + 5127 * frac * frac * frac + (1 << 47))
            >> 48) as u32;
    let product = Natural::from_compact(rule.anchor_bits).times(factor);
    let limit = Natural::from_compact(rule.limit_bits);
    // Far beyond 256 bits either way the answer is the limit, or 0 (then 1).
    let target = match shifts - 16 {
        shift if shift > 512 => limit.clone(),
        shift if shift < -512 => Natural(Vec::new()),
        shift => product.shifted(shift as i64),
    };
    let target = if target.bits() > 256 || target.greater_than(&limit) {
        limit
    } else if target.bits() == 0 {
        Natural::from_u64(1)
    } else {
        target
    };
    target.to_compact()
}

fn target(bits: u32) -> Target {
    CompactTarget::from_consensus(bits).to_target().expect("valid target")
}

/// The value of a `## key: value` header line of a run file.
fn header(name: &str, text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("##").and_then(|l| l.trim().strip_prefix(key)))
        .unwrap_or_else(|| panic!("{name}: no {key}"))
        .trim()
        .to_owned()
}

/// The cases of a run file: (height, time, bits of the next block).
pub fn run_cases(name: &str) -> Vec<(u64, i64, u32)> {
    read_vector_text(name)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[1].parse().expect("height"), fields[2].parse().expect("time"), hex_u32(fields[3]))
        })
        .collect()
}

/// Checks every case of the run file `name` under `params`, through the
/// node's code and the written rule; returns how many.
fn check_run(name: &str, params: &AsertParams) -> usize {
    let text = read_vector_text(name);
    let anchor = AsertAnchor {
        height: header(name, &text, "anchor height:").parse().expect("height"),
        parent_time: header(name, &text, "anchor parent time:").parse().expect("time"),
        target: target(hex_u32(&header(name, &text, "anchor nBits:"))),
    };
    let written = WrittenAsert {
        anchor_height: anchor.height,
        anchor_parent_time: anchor.parent_time,
        anchor_bits: hex_u32(&header(name, &text, "anchor nBits:")),
        spacing: params.spacing,
        half_life: params.half_life,
        limit_bits: params.pow_limit.to_compact().to_consensus(),
    };
    let mut cases = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let height: u64 = fields[1].parse().expect("height");
        let time: i64 = fields[2].parse().expect("time");
        let expected = hex_u32(fields[3]);
        let got = next_target(&anchor, params, height, time).to_consensus();
        assert_eq!(got, expected, "{name} line {line:?}: got {got:#010x}");
        let written = written_rule(&written, height, time);
        assert_eq!(written, expected, "{name} line {line:?}: the written rule gives {written:#010x}");
        cases += 1;
    }
    cases
}

#[test]
fn all_asert_runs() {
    let params = AsertParams { spacing: 600, half_life: 172_800, pow_limit: target(0x1d00_ffff) };
    let total: usize = (1..=12).map(|run| check_run(&format!("asert/run{run:02}"), &params)).sum();
    assert_eq!(total, 14_000, "every aserti3-2d case was checked");
}

#[test]
fn all_devnet_asert_runs_with_the_devnet_parameters() {
    let DifficultyRule::Asert(params) = Network::Devnet.params().difficulty else {
        panic!("devnet retargets with aserti3-2d")
    };
    let mut total = 0;
    for run in 1..=6 {
        let name = format!("asert-devnet/devnet_run{run:02}");
        let text = read_vector_text(&name);
        // The vectors' parameters are devnet's.
        assert_eq!(header(&name, &text, "spacing:").parse::<i64>().expect("spacing"), params.spacing);
        assert_eq!(header(&name, &text, "half-life:").parse::<i64>().expect("half-life"), params.half_life);
        assert_eq!(target(hex_u32(&header(&name, &text, "limit nBits:"))), params.pow_limit, "{name}");
        total += check_run(&name, &params);
    }
    assert_eq!(total, 14_360, "every devnet aserti3-2d case was checked");
}
