//! Unconfirmed transactions: checked with the same rules as a block's,
//! ordered by fee rate, capped in size, replaced by fee.
//!
//! Policy (docs/operations.md): fee rates are base units per byte of the
//! full encoding; a transaction pays at least [`MIN_RELAY_FEE_RATE`] and the
//! pool's rising minimum; outputs below [`DUST_LIMIT`] are refused; a
//! transaction that conflicts with pool transactions replaces them (and
//! their descendants) when it pays more fee than all of them together by at
//! least [`INCREMENTAL_FEE_RATE`] times its size, and a higher fee rate than
//! each.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use cairn_consensus::check::{check_inputs, Coin, SignatureVerifier};
use cairn_consensus::sighash::SignatureCheck;
use cairn_consensus::{Amount, Block, Height, OutPoint, Transaction, TxError, Txid};

use crate::chain::{Chain, ChainError};

pub use cairn_consensus::policy::{
    DUST_LIMIT, INCREMENTAL_FEE_RATE, MAX_STANDARD_TX_SIZE, MIN_RELAY_FEE_RATE,
};

/// Default cap on the pool, in bytes of transactions.
pub const DEFAULT_MAX_SIZE: usize = 50_000_000;
/// Transactions with unknown inputs kept at most.
pub const MAX_ORPHANS: usize = 100;

/// Why a transaction was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    /// It breaks a consensus rule.
    #[error("{0}")]
    Consensus(#[from] TxError),
    /// It is a coinbase.
    #[error("a coinbase is valid only in a block")]
    Coinbase,
    /// Already in the pool.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(Txid),
    /// Already in the active chain (an output of it is unspent).
    #[error("transaction {0} is already confirmed")]
    Confirmed(Txid),
    /// It spends coins that do not exist (kept as an orphan).
    #[error("missing inputs: {txid}:{index} is not an unspent output", txid = .0.txid, index = .0.index)]
    MissingInputs(OutPoint),
    /// Its fee rate is below what the pool takes.
    #[error("fee rate {rate} units/byte is below the minimum {min}")]
    FeeTooLow {
        /// Offered.
        rate: u64,
        /// Required.
        min: u64,
    },
    /// An output is below the dust limit.
    #[error("output {index} pays {amount}, below the dust limit of {DUST_LIMIT} base units")]
    Dust {
        /// Output index.
        index: usize,
        /// Its amount.
        amount: Amount,
    },
    /// Larger than policy allows.
    #[error("transaction is {0} bytes; at most {MAX_STANDARD_TX_SIZE} are relayed")]
    TooLarge(usize),
    /// It conflicts with pool transactions and does not pay enough to replace them.
    #[error("replacement pays {fee} (rate {rate}/byte) but must pay at least {required} and a rate above {conflict_rate}/byte")]
    ReplacementTooCheap {
        /// Offered fee.
        fee: Amount,
        /// Offered rate.
        rate: u64,
        /// Fee required.
        required: Amount,
        /// Highest rate among the replaced.
        conflict_rate: u64,
    },
    /// It spends an output of a transaction it would replace.
    #[error("replacement spends an output of a transaction it replaces")]
    SpendsConflict,
    /// The pool is full of transactions paying more.
    #[error("mempool full: the transaction pays too little to stay")]
    Full,
    /// The chain could not be read.
    #[error("{0}")]
    Chain(#[from] ChainError),
}

/// What [`Mempool::check`] found of a transaction it would take.
struct Checked {
    fee: Amount,
    /// The pool transactions it replaces, with their descendants.
    replaced: Vec<Txid>,
    /// Its signature checks, all valid.
    signatures: Vec<SignatureCheck>,
}

/// A transaction in the pool.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The transaction.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Amount,
    /// Its size in bytes.
    pub size: usize,
    /// Unix seconds when it entered.
    pub time: u64,
    /// The chain height when it entered.
    pub height: Height,
}

impl Entry {
    /// Fee rate in base units per byte, rounded down.
    #[must_use]
    pub fn fee_rate(&self) -> u64 {
        self.fee.to_base_units() / self.size as u64
    }

    /// Fee rate in thousandths of a base unit per byte: the pool's order.
    fn rate_key(&self) -> u64 {
        self.fee.to_base_units().saturating_mul(1000) / self.size as u64
    }
}

/// The pool.
#[derive(Debug)]
pub struct Mempool {
    entries: HashMap<Txid, Entry>,
    by_rate: BTreeSet<(u64, Txid)>,
    spent: HashMap<OutPoint, Txid>,
    size: usize,
    max_size: usize,
    /// Rising minimum, in thousandths of a unit per byte, after evictions.
    floor: u64,
    orphans: HashMap<Txid, Transaction>,
    orphan_order: VecDeque<Txid>,
}

impl Mempool {
    /// An empty pool of at most `max_size` bytes.
    #[must_use]
    pub fn new(max_size: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_rate: BTreeSet::new(),
            spent: HashMap::new(),
            size: 0,
            max_size,
            floor: 0,
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
        }
    }

    /// Transactions in the pool.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pool is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of transactions in the pool.
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The cap in bytes.
    #[must_use]
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Transactions waiting for unknown inputs.
    #[must_use]
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// The fee rate a new transaction must pay now, in base units per byte.
    #[must_use]
    pub fn min_fee_rate(&self) -> u64 {
        MIN_RELAY_FEE_RATE.max(self.floor.div_ceil(1000))
    }

    /// A pool transaction.
    #[must_use]
    pub fn get(&self, txid: &Txid) -> Option<&Entry> {
        self.entries.get(txid)
    }

    /// Every transaction id, highest fee rate first.
    #[must_use]
    pub fn txids(&self) -> Vec<Txid> {
        self.by_rate.iter().rev().map(|(_, txid)| *txid).collect()
    }

    /// The pool transaction spending `outpoint`.
    #[must_use]
    pub fn spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spent.get(outpoint).copied()
    }

    /// Every pool transaction, for address lookups.
    pub fn entries(&self) -> impl Iterator<Item = (&Txid, &Entry)> {
        self.entries.iter()
    }

    /// The coin `outpoint` names: confirmed, or an output of a pool transaction.
    pub(crate) fn coin(&self, chain: &Chain, outpoint: &OutPoint) -> Result<Option<Coin>, ChainError> {
        if let Some(coin) = chain.coin(outpoint)? {
            return Ok(Some(coin));
        }
        Ok(self.entries.get(&outpoint.txid).and_then(|parent| {
            parent.tx.outputs.get(outpoint.index as usize).map(|output| Coin {
                output: output.clone(),
                height: chain.height().next(),
                is_coinbase: false,
            })
        }))
    }

    /// Checks `tx` and adds it, replacing conflicts it outbids; returns the
    /// transactions accepted (it, then any orphans it unlocked).
    ///
    /// # Errors
    /// Why it was refused; nothing changed then (a transaction with missing
    /// inputs is kept as an orphan).
    pub fn accept(
        &mut self,
        tx: Transaction,
        chain: &Chain,
        verifier: &impl SignatureVerifier,
        now: u64,
    ) -> Result<Vec<Txid>, MempoolError> {
        let txid = self.accept_one(tx, chain, verifier, now, true)?;
        let mut accepted = vec![txid];
        // Orphans whose inputs this made available.
        let mut i = 0;
        while i < accepted.len() {
            let parent = accepted[i];
            let children: Vec<Txid> = self
                .orphans
                .iter()
                .filter(|(_, tx)| tx.inputs.iter().any(|input| input.prevout.txid == parent))
                .map(|(id, _)| *id)
                .collect();
            for child in children {
                self.orphan_order.retain(|id| *id != child);
                if let Some(tx) = self.orphans.remove(&child) {
                    if let Ok(id) = self.accept_one(tx, chain, verifier, now, false) {
                        accepted.push(id);
                    }
                }
            }
            i += 1;
        }
        Ok(accepted)
    }

    /// Whether `tx` would be accepted, without adding it.
    ///
    /// # Errors
    /// Why it would be refused.
    pub fn test_accept(
        &self,
        tx: &Transaction,
        chain: &Chain,
        verifier: &impl SignatureVerifier,
    ) -> Result<(Amount, Vec<Txid>), MempoolError> {
        self.check(tx, chain, verifier).map(|checked| (checked.fee, checked.replaced))
    }

    /// The checks: consensus and policy, the signatures last (the costly
    /// part, paid only for a transaction that would otherwise be taken).
    fn check(
        &self,
        tx: &Transaction,
        chain: &Chain,
        verifier: &impl SignatureVerifier,
    ) -> Result<Checked, MempoolError> {
        // The block path's context-free check, through the verifier.
        if let Some((_, error)) = verifier.first_invalid_transaction(std::slice::from_ref(tx)) {
            return Err(error.into());
        }
        if tx.is_coinbase() {
            return Err(MempoolError::Coinbase);
        }
        let txid = tx.txid();
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::Duplicate(txid));
        }
        let size = tx.size();
        if size > MAX_STANDARD_TX_SIZE {
            return Err(MempoolError::TooLarge(size));
        }
        if let Some((index, output)) =
            tx.outputs.iter().enumerate().find(|(_, o)| o.amount.to_base_units() < DUST_LIMIT)
        {
            return Err(MempoolError::Dust { index, amount: output.amount });
        }
        let mut coins = Vec::with_capacity(tx.inputs.len());
        let mut direct_conflicts = HashSet::new();
        for input in &tx.inputs {
            match self.coin(chain, &input.prevout)? {
                Some(coin) => coins.push(coin),
                None => {
                    let confirmed = (0..tx.outputs.len() as u32)
                        .any(|index| matches!(chain.coin(&OutPoint { txid, index }), Ok(Some(_))));
                    if confirmed {
                        return Err(MempoolError::Confirmed(txid));
                    }
                    return Err(MempoolError::MissingInputs(input.prevout));
                }
            }
            if let Some(conflict) = self.spent.get(&input.prevout) {
                direct_conflicts.insert(*conflict);
            }
        }
        let height = chain.height().next();
        let checked = check_inputs(tx, &coins, height, chain.median_time_past(), chain.params())?;
        let fee = checked.fee;
        let rate = fee.to_base_units() / size as u64;
        let min = self.min_fee_rate();
        if rate < min {
            return Err(MempoolError::FeeTooLow { rate, min });
        }
        // Replace-by-fee.
        let mut replaced = Vec::new();
        if !direct_conflicts.is_empty() {
            let mut all = HashSet::new();
            for conflict in &direct_conflicts {
                self.with_descendants(*conflict, &mut all);
            }
            if tx.inputs.iter().any(|input| all.contains(&input.prevout.txid)) {
                return Err(MempoolError::SpendsConflict);
            }
            let conflict_fee = all.iter().map(|id| self.entries[id].fee.to_base_units()).sum::<u64>();
            let conflict_rate =
                direct_conflicts.iter().map(|id| self.entries[id].fee_rate()).max().unwrap_or(0);
            let required = conflict_fee + INCREMENTAL_FEE_RATE * size as u64;
            if fee.to_base_units() < required || rate <= conflict_rate {
                return Err(MempoolError::ReplacementTooCheap {
                    fee,
                    rate,
                    required: Amount::from_base_units(required).unwrap_or(fee),
                    conflict_rate,
                });
            }
            replaced.extend(all);
        }
        if let Some(index) = verifier.first_failure(&checked.signatures) {
            return Err(TxError::BadSignature { input: checked.signatures[index].input }.into());
        }
        Ok(Checked { fee, replaced, signatures: checked.signatures })
    }

    fn accept_one(
        &mut self,
        tx: Transaction,
        chain: &Chain,
        verifier: &impl SignatureVerifier,
        now: u64,
        keep_orphan: bool,
    ) -> Result<Txid, MempoolError> {
        let Checked { fee, replaced, signatures } = match self.check(&tx, chain, verifier) {
            Ok(checked) => checked,
            Err(MempoolError::MissingInputs(outpoint)) => {
                if keep_orphan {
                    self.add_orphan(tx);
                }
                return Err(MempoolError::MissingInputs(outpoint));
            }
            Err(error) => return Err(error),
        };
        for id in replaced {
            self.remove(&id);
        }
        let txid = tx.txid();
        let entry = Entry { size: tx.size(), fee, tx, time: now, height: chain.height() };
        self.insert(txid, entry);
        self.trim();
        let Some(entry) = self.entries.get(&txid) else {
            return Err(MempoolError::Full);
        };
        // What the mempool holds is what blocks will carry: checked once.
        verifier.remember(&entry.tx, &signatures);
        Ok(txid)
    }

    fn add_orphan(&mut self, tx: Transaction) {
        let txid = tx.txid();
        if self.orphans.contains_key(&txid) || tx.size() > MAX_STANDARD_TX_SIZE {
            return;
        }
        while self.orphans.len() >= MAX_ORPHANS {
            if let Some(oldest) = self.orphan_order.pop_front() {
                self.orphans.remove(&oldest);
            }
        }
        self.orphans.insert(txid, tx);
        self.orphan_order.push_back(txid);
    }

    fn insert(&mut self, txid: Txid, entry: Entry) {
        for input in &entry.tx.inputs {
            self.spent.insert(input.prevout, txid);
        }
        self.by_rate.insert((entry.rate_key(), txid));
        self.size += entry.size;
        self.entries.insert(txid, entry);
    }

    /// Removes one transaction (not its descendants).
    fn remove(&mut self, txid: &Txid) -> Option<Entry> {
        let entry = self.entries.remove(txid)?;
        for input in &entry.tx.inputs {
            if self.spent.get(&input.prevout) == Some(txid) {
                self.spent.remove(&input.prevout);
            }
        }
        self.by_rate.remove(&(entry.rate_key(), *txid));
        self.size -= entry.size;
        Some(entry)
    }

    /// `txid` and every pool transaction spending its outputs, recursively.
    fn with_descendants(&self, txid: Txid, out: &mut HashSet<Txid>) {
        let mut stack = vec![txid];
        while let Some(id) = stack.pop() {
            if !out.insert(id) {
                continue;
            }
            if let Some(entry) = self.entries.get(&id) {
                for index in 0..entry.tx.outputs.len() as u32 {
                    if let Some(child) = self.spent.get(&OutPoint { txid: id, index }) {
                        stack.push(*child);
                    }
                }
            }
        }
    }

    /// Removes `txid` and every pool transaction spending its outputs,
    /// recursively.
    pub fn remove_with_descendants(&mut self, txid: Txid) {
        let mut all = HashSet::new();
        self.with_descendants(txid, &mut all);
        for id in all {
            self.remove(&id);
        }
    }

    /// Removes every transaction (orphans too); the rising minimum stays.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_rate.clear();
        self.spent.clear();
        self.size = 0;
        self.orphans.clear();
        self.orphan_order.clear();
    }

    /// Evicts the lowest fee rates (with their descendants) until the pool
    /// fits, raising the minimum fee rate above what was evicted.
    fn trim(&mut self) {
        while self.size > self.max_size {
            let Some(&(rate, lowest)) = self.by_rate.iter().next() else { break };
            self.remove_with_descendants(lowest);
            self.floor = self.floor.max(rate + INCREMENTAL_FEE_RATE * 1000);
        }
        if self.size < self.max_size / 2 {
            // Room again: the rising minimum falls back.
            self.floor /= 2;
        }
    }

    /// Removes a connected block's transactions and every pool transaction
    /// that conflicts with them (with descendants).
    pub fn remove_for_block(&mut self, block: &Block) {
        for tx in &block.transactions {
            let txid = tx.txid();
            self.remove(&txid);
            self.orphans.remove(&txid);
            for input in tx.inputs.iter().filter(|i| !i.prevout.is_null()) {
                if let Some(conflict) = self.spent.get(&input.prevout).copied() {
                    self.remove_with_descendants(conflict);
                }
            }
        }
        self.orphan_order.retain(|id| self.orphans.contains_key(id));
    }

    /// Puts a transaction of a disconnected block back, if it is valid on
    /// the new tip; one that is not (its inputs gone, confirmed again, no
    /// longer final or mature) is dropped, not kept as an orphan.
    ///
    /// # Errors
    /// Why it was not taken back.
    pub fn accept_disconnected(
        &mut self,
        tx: Transaction,
        chain: &Chain,
        verifier: &impl SignatureVerifier,
        now: u64,
    ) -> Result<Txid, MempoolError> {
        self.accept_one(tx, chain, verifier, now, false)
    }

    /// After a change of the active chain, keeps exactly the pool
    /// transactions that are valid on the new tip, with their descendants
    /// (Bitcoin Core's `removeForReorg`): each input still unspent in the
    /// chain or an output of a kept pool transaction, and the transaction
    /// final, its coinbase inputs mature and its amounts in range at the
    /// next height. Signatures are not checked again: the message signed
    /// commits to the spent coins, which an outpoint determines whichever
    /// chain holds them. Returns the transactions removed.
    pub fn remove_for_reorg(&mut self, chain: &Chain) -> Vec<Txid> {
        let height = chain.height().next();
        let median_time = chain.median_time_past();
        let mut kept: HashSet<Txid> = HashSet::with_capacity(self.entries.len());
        let mut removed = Vec::new();
        for txid in self.parents_first() {
            let entry = &self.entries[&txid];
            let coins: Option<Vec<Coin>> = entry
                .tx
                .inputs
                .iter()
                .map(|input| {
                    // A pool parent counts only if it stays (parents come first).
                    let parent = input.prevout.txid;
                    if self.entries.contains_key(&parent) && !kept.contains(&parent) {
                        return None;
                    }
                    self.coin(chain, &input.prevout).ok().flatten()
                })
                .collect();
            let valid = coins.is_some_and(|coins| {
                check_inputs(&entry.tx, &coins, height, median_time, chain.params()).is_ok()
            });
            if valid {
                kept.insert(txid);
            } else {
                removed.push(txid);
            }
        }
        for txid in &removed {
            self.remove(txid);
        }
        removed
    }

    /// Every pool transaction, each after the pool transactions it spends.
    fn parents_first(&self) -> Vec<Txid> {
        let mut waiting: HashMap<Txid, usize> = HashMap::with_capacity(self.entries.len());
        let mut children: HashMap<Txid, Vec<Txid>> = HashMap::new();
        let mut ready = Vec::new();
        for (txid, entry) in &self.entries {
            let parents: HashSet<Txid> = entry
                .tx
                .inputs
                .iter()
                .map(|input| input.prevout.txid)
                .filter(|parent| self.entries.contains_key(parent))
                .collect();
            for parent in &parents {
                children.entry(*parent).or_default().push(*txid);
            }
            if parents.is_empty() {
                ready.push(*txid);
            } else {
                waiting.insert(*txid, parents.len());
            }
        }
        let mut order = Vec::with_capacity(self.entries.len());
        while let Some(txid) = ready.pop() {
            order.push(txid);
            for child in children.remove(&txid).unwrap_or_default() {
                if let Some(count) = waiting.get_mut(&child) {
                    *count -= 1;
                    if *count == 0 {
                        waiting.remove(&child);
                        ready.push(child);
                    }
                }
            }
        }
        order
    }

    /// Transactions for a block of at most `max_bytes`: highest fee rate
    /// first, each after its pool parents. Returns them and their fees.
    #[must_use]
    pub fn select(&self, max_bytes: usize) -> (Vec<Transaction>, Amount) {
        let mut chosen = Vec::new();
        let mut included = HashSet::new();
        let mut fees = Amount::ZERO;
        let mut bytes = 0;
        let mut pending: Vec<Txid> = self.txids();
        loop {
            let mut progress = false;
            pending.retain(|txid| {
                let entry = &self.entries[txid];
                let parents_in = entry.tx.inputs.iter().all(|input| {
                    !self.entries.contains_key(&input.prevout.txid) || included.contains(&input.prevout.txid)
                });
                if !parents_in {
                    return true;
                }
                if bytes + entry.size <= max_bytes {
                    if let Ok(sum) = fees.checked_add(entry.fee) {
                        bytes += entry.size;
                        fees = sum;
                        included.insert(*txid);
                        chosen.push(entry.tx.clone());
                        progress = true;
                    }
                }
                false
            });
            if !progress || pending.is_empty() {
                break;
            }
        }
        (chosen, fees)
    }

    /// The fee rate (units per byte) that gets a transaction into one of
    /// the next `blocks` blocks at the pool's present depth.
    #[must_use]
    pub fn estimate_fee_rate(&self, blocks: u32, block_bytes: usize) -> u64 {
        let room = block_bytes.saturating_mul(blocks.max(1) as usize);
        let mut bytes = 0;
        for (rate, txid) in self.by_rate.iter().rev() {
            bytes += self.entries[txid].size;
            if bytes >= room {
                return (rate / 1000 + INCREMENTAL_FEE_RATE).max(self.min_fee_rate());
            }
        }
        self.min_fee_rate()
    }
}
