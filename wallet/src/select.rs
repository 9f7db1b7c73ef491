//! Coin selection and fees, pure arithmetic over amounts and sizes.
//!
//! Fees are the fee rate times the signed size, and every input the wallet
//! spends is a version-1 lock with one 64-byte signature, so the signed size
//! of a transaction is known exactly before it is signed ([`signed_size`]).
//!
//! Selection first looks for a set of coins that pays the target with no
//! change output, wasting less than a change output would cost (branch and
//! bound over effective values, as Bitcoin Core's wallet does); when there
//! is none it takes the largest coins first and returns change. Change
//! below the dust limit is not made: it goes to the fee.

use cairn_consensus::policy::DUST_LIMIT;
use cairn_consensus::{Amount, OutPoint, TxOut};

/// Bytes of one input of ours: outpoint 36, empty data 1, sequence 4, and
/// its witness: item count 1, length 1, signature 64.
pub const INPUT_SIZE: usize = 36 + 1 + 4 + 1 + 1 + 64;
/// Bytes of one output to a version-1 lock: amount 8, version 1, length 1, key 32.
pub const OUTPUT_SIZE: usize = 8 + 1 + 1 + 32;

/// Branch-and-bound steps tried before falling back to largest-first.
const BNB_TRIES: usize = 100_000;

fn compact_size_len(n: usize) -> usize {
    cairn_consensus::encode::compact_size_len(n as u64)
}

/// The exact size of a signed transaction with `inputs` wallet inputs and
/// `outputs` outputs to version-1 locks.
#[must_use]
pub fn signed_size(inputs: usize, outputs: usize) -> usize {
    4 + compact_size_len(inputs) + inputs * INPUT_SIZE + compact_size_len(outputs) + outputs * OUTPUT_SIZE + 4
}

/// A coin the wallet may spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it is.
    pub outpoint: OutPoint,
    /// Its output (amount and lock).
    pub output: TxOut,
}

/// What to pay and how.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Coins that must be spent (a replacement keeps its original's inputs).
    pub required: &'a [Candidate],
    /// Coins that may be added.
    pub available: &'a [Candidate],
    /// The sum of the payment outputs.
    pub payments: Amount,
    /// How many payment outputs there are.
    pub payment_outputs: usize,
    /// Base units per byte.
    pub fee_rate: u64,
    /// Base units the fee must reach, whatever the rate gives
    /// (a replacement must pay more than what it replaces).
    pub min_fee: u64,
}

/// A chosen set of coins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The coins, required ones first.
    pub inputs: Vec<Candidate>,
    /// The change output's amount, if there is one.
    pub change: Option<Amount>,
    /// The fee.
    pub fee: Amount,
}

/// Not enough money: what was needed and what there was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// Payments plus the fee of spending every coin.
    pub needed: u64,
    /// Every coin together.
    pub available: u64,
}

impl Request<'_> {
    fn fee(&self, inputs: usize, outputs: usize) -> u64 {
        (self.fee_rate.saturating_mul(signed_size(inputs, outputs) as u64)).max(self.min_fee)
    }

    /// What paying with `inputs` coins totalling `total` gives: change
    /// (when it is worth an output) or none, or `None` when short.
    fn settle(&self, inputs: usize, total: u64) -> Option<(Option<u64>, u64)> {
        let payments = self.payments.to_base_units();
        let fee_with_change = self.fee(inputs, self.payment_outputs + 1);
        if let Some(change) = total.checked_sub(payments + fee_with_change) {
            if change >= DUST_LIMIT {
                return Some((Some(change), fee_with_change));
            }
        }
        let fee = self.fee(inputs, self.payment_outputs);
        let excess = total.checked_sub(payments + fee)?;
        Some((None, fee + excess))
    }
}

fn amount(units: u64) -> Amount {
    Amount::from_base_units(units).expect("sums of real coins stay below MAX_MONEY")
}

/// Chooses coins for `request`.
///
/// # Errors
/// A [`Shortfall`] when every coin together does not pay for it.
pub fn select(request: &Request<'_>) -> Result<Selection, Shortfall> {
    let required_total: u64 = request.required.iter().map(|c| c.output.amount.to_base_units()).sum();
    let mut pool: Vec<&Candidate> = request.available.iter().collect();
    pool.sort_by(|a, b| b.output.amount.cmp(&a.output.amount).then(a.outpoint.cmp(&b.outpoint)));

    if let Some(chosen) = branch_and_bound(request, required_total, &pool) {
        let inputs: Vec<Candidate> =
            request.required.iter().cloned().chain(chosen.into_iter().map(|i| pool[i].clone())).collect();
        let total: u64 = inputs.iter().map(|c| c.output.amount.to_base_units()).sum();
        let payments = request.payments.to_base_units();
        if !inputs.is_empty() && total >= payments + request.fee(inputs.len(), request.payment_outputs) {
            return Ok(Selection { inputs, change: None, fee: amount(total - payments) });
        }
    }

    let mut inputs: Vec<Candidate> = request.required.to_vec();
    let mut total = required_total;
    let mut rest = pool.iter();
    loop {
        if !inputs.is_empty() {
            if let Some((change, fee)) = request.settle(inputs.len(), total) {
                return Ok(Selection { inputs, change: change.map(amount), fee: amount(fee) });
            }
        }
        match rest.next() {
            Some(coin) => {
                total += coin.output.amount.to_base_units();
                inputs.push((*coin).clone());
            }
            None => {
                let needed = request.payments.to_base_units()
                    + request.fee(inputs.len().max(1), request.payment_outputs);
                return Err(Shortfall { needed, available: total });
            }
        }
    }
}

/// Finds coins from `pool` (largest first) that, with the required ones,
/// pay the request with no change and waste less than making change would
/// cost; the indices of the chosen coins, or `None`.
fn branch_and_bound(request: &Request<'_>, required_total: u64, pool: &[&Candidate]) -> Option<Vec<usize>> {
    if request.min_fee > 0 || pool.is_empty() {
        return None;
    }
    let rate = request.fee_rate;
    let input_fee = rate * INPUT_SIZE as u64;
    let effective: Vec<u64> =
        pool.iter().map(|c| c.output.amount.to_base_units().saturating_sub(input_fee)).collect();
    // The coins' effective values must cover the payments and the fee of
    // everything but their own inputs, less what the required coins bring.
    let fixed_size = signed_size(request.required.len(), request.payment_outputs);
    let target = (request.payments.to_base_units() + rate * fixed_size as u64).checked_sub(required_total)?;
    // Making change costs its output now and its input later; a change
    // below the dust limit cannot be made at all.
    let change_cost = (rate * (OUTPUT_SIZE + INPUT_SIZE) as u64).max(DUST_LIMIT + rate * OUTPUT_SIZE as u64);
    let mut remaining: u64 = effective.iter().sum();
    if remaining < target {
        return None;
    }

    let mut best: Option<(u64, Vec<usize>)> = None;
    let mut chosen: Vec<usize> = Vec::new();
    let mut value = 0u64;
    let mut index = 0usize;
    for _ in 0..BNB_TRIES {
        // Decide whether to go back: over the window, or cannot reach the target.
        let backtrack = value > target + change_cost || value + remaining < target || index == pool.len();
        if !backtrack && value >= target {
            let waste = value - target;
            if best.as_ref().is_none_or(|(w, _)| waste < *w) {
                best = Some((waste, chosen.clone()));
                if waste == 0 {
                    break;
                }
            }
        }
        if backtrack || value >= target {
            // Undo the last inclusion and try without it.
            while index > 0 && chosen.last() != Some(&(index - 1)) {
                index -= 1;
                remaining += effective[index];
            }
            let Some(last) = chosen.pop() else { break };
            value -= effective[last];
            index = last + 1;
            continue;
        }
        remaining -= effective[index];
        if effective[index] > 0 {
            chosen.push(index);
            value += effective[index];
        }
        index += 1;
    }
    best.map(|(_, chosen)| chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_consensus::{Lock, Transaction, TxIn, Txid};
    use proptest::prelude::*;

    fn coin(n: u8, units: u64) -> Candidate {
        Candidate {
            outpoint: OutPoint { txid: Txid::from_byte_array([n; 32]), index: u32::from(n) },
            output: TxOut { amount: amount(units), lock: Lock::key([2; 32]) },
        }
    }

    fn request<'a>(available: &'a [Candidate], payments: u64, rate: u64) -> Request<'a> {
        Request {
            required: &[],
            available,
            payments: amount(payments),
            payment_outputs: 1,
            fee_rate: rate,
            min_fee: 0,
        }
    }

    #[test]
    fn sizes_match_real_signed_transactions() {
        for (inputs, outputs) in [(1, 1), (1, 2), (3, 2), (252, 1), (253, 2), (300, 260)] {
            let tx = Transaction {
                version: 1,
                inputs: (0..inputs)
                    .map(|i| TxIn {
                        prevout: OutPoint { txid: Txid::from_byte_array([1; 32]), index: i as u32 },
                        data: Vec::new(),
                        sequence: u32::MAX,
                        witness: cairn_consensus::Witness::from_items([[0; 64]]),
                    })
                    .collect(),
                outputs: (0..outputs)
                    .map(|_| TxOut { amount: amount(1000), lock: Lock::key([2; 32]) })
                    .collect(),
                lock_time: 0,
            };
            assert_eq!(signed_size(inputs, outputs), tx.size(), "{inputs} in, {outputs} out");
        }
    }

    #[test]
    fn an_exact_match_needs_no_change() {
        let rate = 2;
        let fee = rate * signed_size(1, 1) as u64;
        let coins = [coin(1, 10_000_000), coin(2, 5_000_000 + fee), coin(3, 1_000_000)];
        let selection = select(&request(&coins, 5_000_000, rate)).expect("enough");
        assert_eq!(selection.inputs, vec![coins[1].clone()]);
        assert_eq!(selection.change, None);
        assert_eq!(selection.fee.to_base_units(), fee);
    }

    #[test]
    fn otherwise_change_is_made_and_dust_change_goes_to_the_fee() {
        let coins = [coin(1, 10_000_000)];
        let selection = select(&request(&coins, 4_000_000, 1)).expect("enough");
        let fee = signed_size(1, 2) as u64;
        assert_eq!(selection.fee.to_base_units(), fee);
        assert_eq!(selection.change, Some(amount(6_000_000 - fee)));

        // Change of less than the dust limit is not made.
        let fee_no_change = signed_size(1, 1) as u64;
        let coins = [coin(1, 4_000_000 + fee_no_change + 100)];
        let selection = select(&request(&coins, 4_000_000, 1)).expect("enough");
        assert_eq!(selection.change, None);
        assert_eq!(selection.fee.to_base_units(), fee_no_change + 100);
    }

    #[test]
    fn shortfalls_say_what_was_needed() {
        let coins = [coin(1, 1_000), coin(2, 2_000)];
        let short = select(&request(&coins, 10_000, 1)).expect_err("too little");
        assert_eq!(short.available, 3_000);
        assert_eq!(short.needed, 10_000 + signed_size(2, 1) as u64);
        assert!(select(&request(&[], 1, 1)).is_err());
    }

    #[test]
    fn required_inputs_stay_and_the_minimum_fee_holds() {
        let original = [coin(9, 1_000_000)];
        let extra = [coin(1, 50_000)];
        let request = Request {
            required: &original,
            available: &extra,
            payments: amount(990_000),
            payment_outputs: 1,
            fee_rate: 5,
            min_fee: 5_000,
        };
        let selection = select(&request).expect("enough with the extra coin");
        assert_eq!(selection.inputs[0], original[0]);
        assert!(selection.fee.to_base_units() >= 5_000);
        assert!(selection.fee.to_base_units() >= 5 * signed_size(selection.inputs.len(), 2) as u64);
    }

    proptest! {
        /// Whatever the coins, a selection balances exactly, pays at least
        /// the rate on its real size, makes no dust, and wastes less than
        /// change would cost when it makes none.
        #[test]
        fn selections_balance(
            units in proptest::collection::vec(1u64..5_000_000, 1..30),
            payment in 300u64..20_000_000,
            rate in 1u64..50,
        ) {
            let coins: Vec<Candidate> = units.iter().enumerate().map(|(i, u)| coin(i as u8, *u)).collect();
            let request = request(&coins, payment, rate);
            match select(&request) {
                Ok(selection) => {
                    let total: u64 = selection.inputs.iter().map(|c| c.output.amount.to_base_units()).sum();
                    let change = selection.change.map_or(0, Amount::to_base_units);
                    prop_assert_eq!(total, payment + change + selection.fee.to_base_units());
                    let outputs = 1 + usize::from(selection.change.is_some());
                    prop_assert!(selection.fee.to_base_units() >= rate * signed_size(selection.inputs.len(), outputs) as u64);
                    prop_assert!(selection.change.is_none_or(|c| c.to_base_units() >= DUST_LIMIT));
                    if selection.change.is_none() {
                        let waste = selection.fee.to_base_units() - rate * signed_size(selection.inputs.len(), 1) as u64;
                        prop_assert!(waste <= (rate * (OUTPUT_SIZE + INPUT_SIZE) as u64).max(DUST_LIMIT + rate * OUTPUT_SIZE as u64));
                    }
                }
                Err(short) => {
                    let total: u64 = units.iter().sum();
                    prop_assert_eq!(short.available, total);
                    prop_assert!(total < payment + rate * signed_size(units.len(), 1) as u64);
                }
            }
        }
    }
}
