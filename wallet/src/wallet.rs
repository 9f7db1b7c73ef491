//! The wallet: an opened file, its keys, and what the node says its
//! addresses hold; balances, history, and building, signing and replacing
//! transactions.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_consensus::policy::{
    DUST_LIMIT, INCREMENTAL_FEE_RATE, MIN_RELAY_FEE_RATE, WALLET_COINBASE_CONFIRMATIONS,
};
use cairn_consensus::sighash::sign_inputs_with;
use cairn_consensus::{
    Address, Amount, Decode, Encode, Lock, Network, OutPoint, Params, Transaction, TxIn, TxOut, Txid,
};

use crate::error::{random_bytes, WalletError};
use crate::file::{Secrets, WalletFile};
use crate::keys::{parse_mnemonic, KeyChain, Keychain};
use crate::node::{DeltaRow, IndexedCoin, MempoolRow, NodeClient};
use crate::select::{select, signed_size, Candidate, Request, Shortfall};

/// Unused addresses looked at past the last used one on each chain.
pub const GAP_LIMIT: u32 = 20;

/// Fee rates above this many base units per byte are refused as typos.
pub const MAX_FEE_RATE: u64 = 100_000;

/// An opened wallet.
#[derive(Debug)]
pub struct Wallet {
    file: WalletFile,
    secrets: Secrets,
    keys: Keychain,
}

/// What the node says the wallet's addresses hold.
#[derive(Debug, Clone)]
pub struct View {
    /// The node's height when asked.
    pub tip: u32,
    /// Every address looked at, by lock.
    pub owned: HashMap<Lock, (KeyChain, u32)>,
    /// Confirmed unspent coins.
    pub coins: Vec<IndexedCoin>,
    /// Mempool rows (payments to and spends from the wallet).
    pub mempool: Vec<MempoolRow>,
    /// Confirmed history rows.
    pub history: Vec<DeltaRow>,
}

/// A balance, in three parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Confirmed and spendable now (mature, not spent by a mempool transaction).
    pub confirmed: Amount,
    /// Paid to the wallet by mempool transactions (change included).
    pub unconfirmed: Amount,
    /// Coinbase outputs with fewer than 101 confirmations.
    pub immature: Amount,
}

/// A coin as `utxos` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinInfo {
    /// Where it is.
    pub outpoint: OutPoint,
    /// Its address.
    pub address: String,
    /// Its amount.
    pub amount: Amount,
    /// Confirmations; 0 while in the mempool.
    pub confirmations: u32,
    /// Whether a coinbase made it.
    pub coinbase: bool,
    /// Whether it may be spent now.
    pub spendable: bool,
}

/// One transaction in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The transaction.
    pub txid: Txid,
    /// Its block's height; `None` while in the mempool.
    pub height: Option<u32>,
    /// Confirmations; 0 while in the mempool.
    pub confirmations: u32,
    /// What it did to the wallet's money, in base units (fees of sends included).
    pub delta: i64,
}

/// How much to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAmount {
    /// This much to the payee; the fee on top.
    Exact(Amount),
    /// Every spendable coin, less the fee.
    All,
}

impl std::str::FromStr for SendAmount {
    type Err = WalletError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        text.parse().map(Self::Exact).map_err(|_| WalletError::Amount(text.to_owned()))
    }
}

/// A signed transaction the wallet built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The transaction.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Amount,
    /// What the payee gets.
    pub paid: Amount,
    /// The change output, if any.
    pub change: Option<(Address, Amount)>,
}

impl Built {
    /// The fee rate it pays, base units per byte (rounded down).
    #[must_use]
    pub fn fee_rate(&self) -> u64 {
        self.fee.to_base_units() / self.tx.size() as u64
    }
}

fn units_sum(amounts: impl Iterator<Item = Amount>) -> Amount {
    Amount::sum(amounts).expect("a wallet's coins total less than MAX_MONEY")
}

fn amount(units: u64) -> Amount {
    Amount::from_base_units(units).expect("below MAX_MONEY")
}

impl View {
    /// The coins spent by mempool transactions.
    fn spent_in_mempool(&self) -> HashSet<OutPoint> {
        self.mempool.iter().filter_map(|row| row.spends).collect()
    }

    fn confirmations(&self, height: u32) -> u32 {
        (self.tip + 1).saturating_sub(height)
    }

    fn is_mature(&self, coin: &IndexedCoin) -> bool {
        !coin.coinbase || self.confirmations(coin.height) >= WALLET_COINBASE_CONFIRMATIONS
    }

    /// The balance.
    #[must_use]
    pub fn balance(&self) -> Balance {
        let spent = self.spent_in_mempool();
        let unspent = self.coins.iter().filter(|c| !spent.contains(&c.outpoint));
        let (mature, immature): (Vec<&IndexedCoin>, Vec<&IndexedCoin>) =
            unspent.partition(|c| self.is_mature(c));
        let incoming = self
            .mempool
            .iter()
            .filter(|row| row.delta > 0)
            .filter(|row| !spent.contains(&OutPoint { txid: row.txid, index: row.index }))
            .map(|row| amount(row.delta.unsigned_abs()));
        Balance {
            confirmed: units_sum(mature.iter().map(|c| c.amount)),
            unconfirmed: units_sum(incoming),
            immature: units_sum(immature.iter().map(|c| c.amount)),
        }
    }

    /// Every coin: confirmed ones (spent-in-mempool ones left out), then unconfirmed ones.
    #[must_use]
    pub fn coin_list(&self) -> Vec<CoinInfo> {
        let spent = self.spent_in_mempool();
        let mut list: Vec<CoinInfo> = self
            .coins
            .iter()
            .filter(|c| !spent.contains(&c.outpoint))
            .map(|c| CoinInfo {
                outpoint: c.outpoint,
                address: c.address.clone(),
                amount: c.amount,
                confirmations: self.confirmations(c.height),
                coinbase: c.coinbase,
                spendable: self.is_mature(c),
            })
            .collect();
        list.sort_by_key(|c| (std::cmp::Reverse(c.confirmations), c.outpoint));
        for row in self.mempool.iter().filter(|r| r.delta > 0) {
            let outpoint = OutPoint { txid: row.txid, index: row.index };
            if !spent.contains(&outpoint) {
                list.push(CoinInfo {
                    outpoint,
                    address: row.address.clone(),
                    amount: amount(row.delta.unsigned_abs()),
                    confirmations: 0,
                    coinbase: false,
                    spendable: false,
                });
            }
        }
        list
    }

    /// The coins a new transaction may spend: confirmed, mature, not
    /// already spent by a mempool transaction.
    #[must_use]
    pub fn spendable(&self) -> Vec<Candidate> {
        let spent = self.spent_in_mempool();
        self.coins
            .iter()
            .filter(|c| !spent.contains(&c.outpoint) && self.is_mature(c))
            .filter_map(|c| {
                let address = Address::parse_any(&c.address).ok()?;
                Some(Candidate {
                    outpoint: c.outpoint,
                    output: TxOut { amount: c.amount, lock: address.lock },
                })
            })
            .collect()
    }

    /// The history: confirmed transactions by height, then mempool ones.
    #[must_use]
    pub fn history(&self) -> Vec<HistoryEntry> {
        let mut confirmed: BTreeMap<(u32, Txid), i64> = BTreeMap::new();
        for row in &self.history {
            *confirmed.entry((row.height, row.txid)).or_default() += row.delta;
        }
        let mut pending: BTreeMap<Txid, i64> = BTreeMap::new();
        for row in &self.mempool {
            *pending.entry(row.txid).or_default() += row.delta;
        }
        confirmed
            .into_iter()
            .map(|((height, txid), delta)| HistoryEntry {
                txid,
                height: Some(height),
                confirmations: self.confirmations(height),
                delta,
            })
            .chain(pending.into_iter().map(|(txid, delta)| HistoryEntry {
                txid,
                height: None,
                confirmations: 0,
                delta,
            }))
            .collect()
    }
}

impl Wallet {
    /// Creates a wallet file at `path` for a new random mnemonic or the
    /// given one; returns the wallet and its words.
    ///
    /// # Errors
    /// When a wallet exists at `path`, the words are not a mnemonic, or
    /// the file cannot be written.
    pub fn create(
        path: &std::path::Path,
        network: Network,
        passphrase: &str,
        mnemonic: Option<&str>,
    ) -> Result<(Self, String), WalletError> {
        if passphrase.is_empty() {
            return Err(WalletError::EmptyPassphrase);
        }
        let mnemonic = match mnemonic {
            Some(words) => parse_mnemonic(words)?,
            None => crate::keys::new_mnemonic()?,
        };
        let keys = Keychain::new(&mnemonic, network)?;
        let secrets = Secrets { mnemonic: mnemonic.to_string(), receive_next: 0, change_next: 0 };
        let file = WalletFile::create(path, network, passphrase, &secrets)?;
        Ok((Self { file, secrets, keys }, mnemonic.to_string()))
    }

    /// Opens the wallet at `path`, checking it is for `network`.
    ///
    /// # Errors
    /// No file, not a wallet, wrong passphrase, or another network's wallet.
    pub fn open(path: &std::path::Path, network: Network, passphrase: &str) -> Result<Self, WalletError> {
        let (file, secrets) = WalletFile::open(path, passphrase)?;
        if file.network() != network {
            return Err(WalletError::WalletNetwork {
                path: path.to_path_buf(),
                file: file.network(),
                asked: network,
            });
        }
        let mnemonic = parse_mnemonic(&secrets.mnemonic)?;
        let keys = Keychain::new(&mnemonic, network)?;
        Ok(Self { file, secrets, keys })
    }

    /// The network.
    #[must_use]
    pub fn network(&self) -> Network {
        self.file.network()
    }

    /// The keys.
    #[must_use]
    pub fn keys(&self) -> &Keychain {
        &self.keys
    }

    /// The next receiving index never handed out.
    #[must_use]
    pub fn receive_next(&self) -> u32 {
        self.secrets.receive_next
    }

    /// The next change index never used.
    #[must_use]
    pub fn change_next(&self) -> u32 {
        self.secrets.change_next
    }

    fn next_index(&mut self, chain: KeyChain) -> Result<(Address, u32), WalletError> {
        let index = match chain {
            KeyChain::Receive => &mut self.secrets.receive_next,
            KeyChain::Change => &mut self.secrets.change_next,
        };
        let at = *index;
        let address = self.keys.address(chain, at)?;
        *index += 1;
        self.file.save(&self.secrets)?;
        Ok((address, at))
    }

    /// Hands out a new receiving address (saved, so it is never handed out again).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn new_address(&mut self) -> Result<(Address, u32), WalletError> {
        self.next_index(KeyChain::Receive)
    }

    /// Asks the node what the wallet's addresses hold: both chains, up to
    /// [`GAP_LIMIT`] unused addresses past the last used (or handed-out)
    /// one. Remembers addresses found used, so they are not handed out.
    ///
    /// # Errors
    /// When the node cannot be asked, runs another network, or the file
    /// cannot be written.
    pub fn scan(&mut self, node: &NodeClient) -> Result<View, WalletError> {
        let tip = node.check_network(self.network())?;
        let mut view =
            View { tip, owned: HashMap::new(), coins: Vec::new(), mempool: Vec::new(), history: Vec::new() };
        let mut changed = false;
        for chain in KeyChain::BOTH {
            let issued = match chain {
                KeyChain::Receive => self.secrets.receive_next,
                KeyChain::Change => self.secrets.change_next,
            };
            let mut next_unused = issued;
            let mut scanned = 0u32;
            while scanned < next_unused.max(issued) + GAP_LIMIT {
                let batch: Vec<Address> = (scanned..scanned + GAP_LIMIT)
                    .map(|i| self.keys.address(chain, i))
                    .collect::<Result<_, _>>()?;
                let index_of: HashMap<String, u32> =
                    batch.iter().enumerate().map(|(i, a)| (a.to_string(), scanned + i as u32)).collect();
                let history = node.address_deltas(&batch)?;
                let mempool = node.address_mempool(&batch)?;
                let used = history.iter().map(|r| &r.address).chain(mempool.iter().map(|r| &r.address));
                if let Some(last) = used.filter_map(|a| index_of.get(a)).max() {
                    next_unused = next_unused.max(last + 1);
                }
                if !history.is_empty() {
                    view.coins.extend(node.address_utxos(&batch)?);
                }
                view.history.extend(history);
                view.mempool.extend(mempool);
                for (i, address) in batch.into_iter().enumerate() {
                    view.owned.insert(address.lock, (chain, scanned + i as u32));
                }
                scanned += GAP_LIMIT;
            }
            if next_unused > issued {
                match chain {
                    KeyChain::Receive => self.secrets.receive_next = next_unused,
                    KeyChain::Change => self.secrets.change_next = next_unused,
                }
                changed = true;
            }
        }
        if changed {
            self.file.save(&self.secrets)?;
        }
        Ok(view)
    }

    fn check_fee_rate(rate: u64) -> Result<(), WalletError> {
        if rate < MIN_RELAY_FEE_RATE {
            return Err(WalletError::FeeRate {
                given: rate,
                reason: format!("nodes relay nothing below {MIN_RELAY_FEE_RATE}"),
            });
        }
        if rate > MAX_FEE_RATE {
            return Err(WalletError::FeeRate {
                given: rate,
                reason: format!(
                    "more than {MAX_FEE_RATE} base units/byte is refused as almost surely a typo"
                ),
            });
        }
        Ok(())
    }

    fn shortfall(view: &View, short: Shortfall) -> WalletError {
        let balance = view.balance();
        WalletError::InsufficientFunds {
            needed: amount(short.needed),
            available: amount(short.available),
            immature: balance.immature,
            unconfirmed: balance.unconfirmed,
        }
    }

    /// Builds and signs a payment of `how_much` to `to` at `fee_rate`,
    /// with change (if any) to a new change address. Nothing is sent.
    ///
    /// # Errors
    /// Wrong network, dust, insufficient funds, a fee rate out of range, or
    /// the file cannot be written (the change index is saved first).
    pub fn build_send(
        &mut self,
        view: &View,
        to: &Address,
        how_much: SendAmount,
        fee_rate: u64,
    ) -> Result<Built, WalletError> {
        Self::check_fee_rate(fee_rate)?;
        if to.network != self.network() {
            return Err(WalletError::Address {
                text: to.to_string(),
                reason: cairn_consensus::AddressError::WrongNetwork {
                    found: to.network,
                    expected: self.network(),
                },
            });
        }
        let dust = amount(DUST_LIMIT);
        let available = view.spendable();
        match how_much {
            SendAmount::Exact(paid) => {
                if paid < dust {
                    return Err(WalletError::Dust { amount: paid, limit: dust });
                }
                let request = Request {
                    required: &[],
                    available: &available,
                    payments: paid,
                    payment_outputs: 1,
                    fee_rate,
                    min_fee: 0,
                };
                let selection = select(&request).map_err(|short| Self::shortfall(view, short))?;
                let payment = TxOut { amount: paid, lock: to.lock.clone() };
                let change = match selection.change {
                    Some(change) => Some((self.next_index(KeyChain::Change)?.0, change)),
                    None => None,
                };
                self.sign(view, &selection.inputs, payment, change, selection.fee)
            }
            SendAmount::All => {
                let total = units_sum(available.iter().map(|c| c.output.amount));
                let fee = fee_rate * signed_size(available.len(), 1) as u64;
                let paid =
                    total.to_base_units().checked_sub(fee).filter(|p| *p >= DUST_LIMIT).ok_or_else(|| {
                        Self::shortfall(
                            view,
                            Shortfall { needed: fee + DUST_LIMIT, available: total.to_base_units() },
                        )
                    })?;
                let payment = TxOut { amount: amount(paid), lock: to.lock.clone() };
                self.sign(view, &available, payment, None, amount(fee))
            }
        }
    }

    /// Puts the transaction together (change at a random position) and signs every input.
    fn sign(
        &self,
        view: &View,
        inputs: &[Candidate],
        payment: TxOut,
        change: Option<(Address, Amount)>,
        fee: Amount,
    ) -> Result<Built, WalletError> {
        let paid = payment.amount;
        let mut outputs = vec![payment];
        if let Some((address, value)) = &change {
            let position = usize::from(random_bytes::<1>()?[0] & 1);
            outputs.insert(position, TxOut { amount: *value, lock: address.lock.clone() });
        }
        let mut tx = Transaction {
            version: 1,
            inputs: inputs.iter().map(|c| TxIn::spending(c.outpoint)).collect(),
            outputs,
            lock_time: 0,
        };
        let spent: Vec<&TxOut> = inputs.iter().map(|c| &c.output).collect();
        let genesis = Params::for_network(self.network()).genesis_hash;
        let aux: [u8; 32] = random_bytes()?;
        let keys = &self.keys;
        let signed = sign_inputs_with(
            keys.secp(),
            &mut tx,
            &spent,
            genesis,
            |key| {
                view.owned.get(&Lock::key(*key)).and_then(|(chain, index)| keys.keypair(*chain, *index).ok())
            },
            &aux,
        );
        if signed != tx.inputs.len() {
            let unsigned = tx.inputs.iter().find(|input| input.witness.is_empty()).map(|input| input.prevout);
            let unsigned = unsigned.map_or_else(String::new, |o| format!("{}:{}", o.txid, o.index));
            return Err(WalletError::ForeignInput(unsigned));
        }
        debug_assert_eq!(tx.size(), signed_size(tx.inputs.len(), tx.outputs.len()));
        Ok(Built { tx, fee, paid, change })
    }

    /// Builds a replacement for the wallet's mempool transaction `txid`
    /// paying `fee_rate` (default: the original's rate plus the incremental
    /// relay fee, or the node's estimate if higher): the same inputs and
    /// payments, less change or more inputs.
    ///
    /// # Errors
    /// When the transaction is not in the mempool, not the wallet's, or the
    /// wallet cannot pay the higher fee.
    pub fn build_bump(
        &mut self,
        node: &NodeClient,
        view: &View,
        txid: &Txid,
        fee_rate: Option<u64>,
    ) -> Result<Built, WalletError> {
        let cannot = |reason: String| WalletError::CannotBump { txid: txid.to_string(), reason };
        let hex = node.mempool_transaction(txid).map_err(|e| match e {
            WalletError::Node { .. } => cannot(
                "it is not in the node's mempool (already confirmed, replaced, or never sent)".to_owned(),
            ),
            other => other,
        })?;
        let original = hex::decode(&hex)
            .ok()
            .and_then(|bytes| Transaction::decode(&bytes).ok())
            .ok_or_else(|| WalletError::protocol("getrawtransaction", "not a transaction"))?;
        let coins: HashMap<OutPoint, &IndexedCoin> = view.coins.iter().map(|c| (c.outpoint, c)).collect();
        let mut required = Vec::new();
        for input in &original.inputs {
            let coin = coins.get(&input.prevout).ok_or_else(|| {
                cannot(format!(
                    "input {}:{} is not a confirmed coin of this wallet",
                    input.prevout.txid, input.prevout.index
                ))
            })?;
            let address = Address::parse_any(&coin.address)
                .map_err(|e| WalletError::protocol("getaddressutxos", e.to_string()))?;
            required.push(Candidate {
                outpoint: coin.outpoint,
                output: TxOut { amount: coin.amount, lock: address.lock },
            });
        }
        let is_change = |out: &TxOut| matches!(view.owned.get(&out.lock), Some((KeyChain::Change, _)));
        let payments: Vec<TxOut> = original.outputs.iter().filter(|o| !is_change(o)).cloned().collect();
        let old_change = original.outputs.iter().find(|o| is_change(o)).cloned();
        let [payment] = payments.as_slice() else {
            return Err(cannot(format!("it has {} payment outputs; this wallet makes one", payments.len())));
        };
        let spent_total = units_sum(required.iter().map(|c| c.output.amount));
        let out_total = units_sum(original.outputs.iter().map(|o| o.amount));
        let old_fee = spent_total.to_base_units() - out_total.to_base_units();
        let old_rate = old_fee.div_ceil(original.size() as u64);
        let floor = old_rate + INCREMENTAL_FEE_RATE;
        let rate = match fee_rate {
            Some(rate) if rate < floor => {
                return Err(WalletError::FeeRate {
                    given: rate,
                    reason: format!("a replacement must pay at least {floor} (the original pays {old_rate})"),
                })
            }
            Some(rate) => rate,
            None => floor.max(node.estimate_fee_rate(2)?),
        };
        Self::check_fee_rate(rate)?;
        let spent_elsewhere: HashSet<OutPoint> = required.iter().map(|c| c.outpoint).collect();
        let available: Vec<Candidate> =
            view.spendable().into_iter().filter(|c| !spent_elsewhere.contains(&c.outpoint)).collect();
        let request = Request {
            required: &required,
            available: &available,
            payments: payment.amount,
            payment_outputs: 1,
            fee_rate: rate,
            min_fee: old_fee,
        };
        // The fee must also grow by the incremental rate times the new size,
        // which depends on the selection: select, then raise the floor if short.
        let mut min_fee = old_fee;
        let selection = loop {
            let selection = select(&Request { min_fee, ..request.clone() })
                .map_err(|short| Self::shortfall(view, short))?;
            let size = signed_size(selection.inputs.len(), 1 + usize::from(selection.change.is_some()));
            let needed = old_fee + INCREMENTAL_FEE_RATE * size as u64;
            if selection.fee.to_base_units() >= needed {
                break selection;
            }
            min_fee = needed;
        };
        let change = match (selection.change, old_change) {
            (None, _) => None,
            (Some(value), Some(old)) => {
                let address = Address { network: self.network(), lock: old.lock };
                Some((address, value))
            }
            (Some(value), None) => Some((self.next_index(KeyChain::Change)?.0, value)),
        };
        self.sign(view, &selection.inputs, payment.clone(), change, selection.fee)
    }

    /// The file.
    #[must_use]
    pub fn file(&self) -> &WalletFile {
        &self.file
    }

    /// Encodes a built transaction as hex.
    #[must_use]
    pub fn to_hex(built: &Built) -> String {
        hex::encode(built.tx.encode())
    }
}
