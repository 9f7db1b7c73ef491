//! Transactions: outpoints, inputs, outputs, locks and the witness section.
//!
//! Layout: `version u32 | inputs | outputs | lock_time u32 | witnesses`, where
//! an input is `txid | index u32 | data | sequence u32` (`data` is a
//! CompactSize-prefixed byte string that only the coinbase fills), an output
//! is `amount u64 | lock`, a lock is `version u8 | CompactSize length |
//! payload`, and the witness section holds, for each input in order, a
//! CompactSize item count and the items, each CompactSize-prefixed. The txid
//! hashes everything but the witness section; the wtxid hashes it all.

use crate::amount::Amount;
use crate::encode::{
    compact_size_len, decode_list, trim_excess, write_compact_size, Decode, DecodeError, Encode, Reader,
    MAX_PREALLOCATED_ITEMS,
};
use crate::hash::{sha256d, Txid, Wtxid};

/// Smallest encoded input: txid, index, empty data, sequence.
pub const MIN_INPUT_SIZE: usize = 32 + 4 + 1 + 4;
/// Smallest encoded output: amount and an empty lock.
pub const MIN_OUTPUT_SIZE: usize = 8 + 1 + 1;
/// Smallest bytes that decode as a transaction (no inputs, no outputs; the
/// rules refuse it, but the decoder's allocation bound must not assume more).
pub const MIN_ENCODED_TRANSACTION_SIZE: usize = 4 + 1 + 1 + 4;

/// Sequence number that, on every input, turns lock time off.
pub const SEQUENCE_FINAL: u32 = 0xffff_ffff;

/// Lock version 1: a 32-byte x-only secp256k1 key, spent by a BIP-340 signature.
pub const LOCK_VERSION_KEY: u8 = 1;

/// The output a transaction input spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutPoint {
    /// The transaction that created the output.
    pub txid: Txid,
    /// The output's position in that transaction.
    pub index: u32,
}

impl OutPoint {
    /// The null outpoint, which only a coinbase input has.
    pub const NULL: Self = Self { txid: Txid::ZERO, index: u32::MAX };

    /// Whether this is the null outpoint.
    #[must_use]
    pub fn is_null(&self) -> bool {
        *self == Self::NULL
    }
}

impl Encode for OutPoint {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.txid.as_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
    }
}

impl Decode for OutPoint {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { txid: Txid::from_byte_array(reader.array()?), index: reader.u32()? })
    }
}

/// The condition an output is locked under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lock {
    /// Which kind of lock; only [`LOCK_VERSION_KEY`] is valid for now.
    pub version: u8,
    /// The lock's data: for version 1, an x-only public key.
    pub payload: Vec<u8>,
}

impl Lock {
    /// A version-1 lock to the x-only key `key`.
    #[must_use]
    pub fn key(key: [u8; 32]) -> Self {
        Self { version: LOCK_VERSION_KEY, payload: key.to_vec() }
    }

    /// The key of a version-1 lock with a 32-byte payload (not checked to be on the curve).
    #[must_use]
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        if self.version != LOCK_VERSION_KEY {
            return None;
        }
        self.payload.as_slice().try_into().ok()
    }
}

impl Encode for Lock {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        write_compact_size(out, self.payload.len() as u64);
        out.extend_from_slice(&self.payload);
    }
}

impl Decode for Lock {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = reader.u8()?;
        let payload = reader.var_bytes("lock payload")?.to_vec();
        Ok(Self { version, payload })
    }
}

/// A transaction input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxIn {
    /// The output spent.
    pub prevout: OutPoint,
    /// Coinbase data (height, extranonce, anything); empty in every other input.
    pub data: Vec<u8>,
    /// Sequence; lock time counts only when some input's is not [`SEQUENCE_FINAL`].
    pub sequence: u32,
    /// Witness items: for a version-1 lock, one 64-byte signature.
    pub witness: Witness,
}

/// An input's witness items, kept in one buffer with the end of each item
/// (as rust-bitcoin's `Witness` does): an item costs 4 bytes besides its
/// own, so even a message of empty items decodes to a few times its size
/// on the wire rather than the 24 bytes a `Vec` per item would take.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Witness {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Witness {
    /// No items.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The witness of `items`, in order.
    pub fn from_items<I: AsRef<[u8]>>(items: impl IntoIterator<Item = I>) -> Self {
        let mut witness = Self::new();
        for item in items {
            witness.push(item.as_ref());
        }
        witness
    }

    /// Appends `item`.
    ///
    /// # Panics
    /// When the items together pass 4 GiB (a decoded witness is bounded
    /// by its block).
    pub fn push(&mut self, item: &[u8]) {
        self.bytes.extend_from_slice(item);
        self.ends.push(u32::try_from(self.bytes.len()).expect("a witness under 4 GiB"));
    }

    /// How many items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it has no items.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn range(&self, index: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends.get(index)? as usize;
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        Some(start..end)
    }

    /// Item `index`.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.range(index).map(|range| &self.bytes[range])
    }

    /// Item `index`, to change its bytes in place.
    #[must_use]
    pub fn get_mut(&mut self, index: usize) -> Option<&mut [u8]> {
        self.range(index).map(|range| &mut self.bytes[range])
    }

    /// The items, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|index| self.get(index).expect("index below len"))
    }

    /// Bytes of heap it holds (capacities, not lengths).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<u32>()
    }

    /// The only item, when there is exactly one.
    #[must_use]
    pub fn single(&self) -> Option<&[u8]> {
        if self.len() == 1 {
            self.get(0)
        } else {
            None
        }
    }
}

impl TxIn {
    /// An input spending `prevout`, final sequence, not yet signed.
    #[must_use]
    pub fn spending(prevout: OutPoint) -> Self {
        Self { prevout, data: Vec::new(), sequence: SEQUENCE_FINAL, witness: Witness::new() }
    }
}

impl std::ops::Index<usize> for Witness {
    type Output = [u8];

    fn index(&self, index: usize) -> &[u8] {
        self.get(index).unwrap_or_else(|| panic!("witness item {index} of {}", self.len()))
    }
}

impl std::ops::IndexMut<usize> for Witness {
    fn index_mut(&mut self, index: usize) -> &mut [u8] {
        let len = self.len();
        self.get_mut(index).unwrap_or_else(|| panic!("witness item {index} of {len}"))
    }
}

/// A transaction output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxOut {
    /// Base units.
    pub amount: Amount,
    /// Who may spend it.
    pub lock: Lock,
}

impl Encode for TxOut {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.amount.to_base_units().to_le_bytes());
        self.lock.encode_to(out);
    }
}

impl Decode for TxOut {
    /// Refuses amounts above `MAX_MONEY`.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let units = reader.u64()?;
        let amount = Amount::from_base_units(units).map_err(|_| DecodeError::OverLimit {
            what: "output amount",
            value: units,
            limit: crate::amount::MAX_MONEY,
        })?;
        Ok(Self { amount, lock: Lock::decode_from(reader)? })
    }
}

/// A transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// Format version; 1.
    pub version: u32,
    /// Inputs; at least one.
    pub inputs: Vec<TxIn>,
    /// Outputs; at least one.
    pub outputs: Vec<TxOut>,
    /// 0, a height below 500,000,000, or a time compared with the median time past.
    pub lock_time: u32,
}

impl Transaction {
    /// Bytes of heap it holds (capacities, not lengths), for bounding what
    /// decoding a message costs.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let inputs: usize = self.inputs.iter().map(|i| i.data.capacity() + i.witness.heap_bytes()).sum();
        let outputs: usize = self.outputs.iter().map(|o| o.lock.payload.capacity()).sum();
        self.inputs.capacity() * std::mem::size_of::<TxIn>()
            + self.outputs.capacity() * std::mem::size_of::<TxOut>()
            + inputs
            + outputs
    }

    /// The encoding without the witness section.
    #[must_use]
    pub fn encode_base(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.base_size());
        self.encode_base_to(&mut out);
        out
    }

    fn encode_base_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        write_compact_size(out, self.inputs.len() as u64);
        for input in &self.inputs {
            input.prevout.encode_to(out);
            write_compact_size(out, input.data.len() as u64);
            out.extend_from_slice(&input.data);
            out.extend_from_slice(&input.sequence.to_le_bytes());
        }
        write_compact_size(out, self.outputs.len() as u64);
        for output in &self.outputs {
            output.encode_to(out);
        }
        out.extend_from_slice(&self.lock_time.to_le_bytes());
    }

    /// Size without the witness section.
    #[must_use]
    pub fn base_size(&self) -> usize {
        let inputs: usize =
            self.inputs.iter().map(|i| 36 + compact_size_len(i.data.len() as u64) + i.data.len() + 4).sum();
        let outputs: usize = self
            .outputs
            .iter()
            .map(|o| 8 + 1 + compact_size_len(o.lock.payload.len() as u64) + o.lock.payload.len())
            .sum();
        4 + compact_size_len(self.inputs.len() as u64)
            + inputs
            + compact_size_len(self.outputs.len() as u64)
            + outputs
            + 4
    }

    /// Size with the witness section: what a block's size limit and fee rates count.
    #[must_use]
    pub fn size(&self) -> usize {
        let witness: usize = self
            .inputs
            .iter()
            .map(|i| {
                compact_size_len(i.witness.len() as u64)
                    + i.witness
                        .iter()
                        .map(|item| compact_size_len(item.len() as u64) + item.len())
                        .sum::<usize>()
            })
            .sum();
        self.base_size() + witness
    }

    /// SHA-256d of the encoding without witnesses.
    #[must_use]
    pub fn txid(&self) -> Txid {
        Txid::from_byte_array(sha256d(&self.encode_base()))
    }

    /// SHA-256d of the full encoding.
    #[must_use]
    pub fn wtxid(&self) -> Wtxid {
        Wtxid::from_byte_array(sha256d(&self.encode()))
    }

    /// Whether this is shaped as a coinbase: one input, spending the null outpoint.
    #[must_use]
    pub fn is_coinbase(&self) -> bool {
        self.inputs.len() == 1 && self.inputs[0].prevout.is_null()
    }
}

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_base_to(out);
        for input in &self.inputs {
            write_compact_size(out, input.witness.len() as u64);
            for item in input.witness.iter() {
                write_compact_size(out, item.len() as u64);
                out.extend_from_slice(item);
            }
        }
    }
}

impl Decode for Transaction {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = reader.u32()?;
        let input_count = reader.count("input", MIN_INPUT_SIZE)?;
        let mut inputs = decode_list(input_count, || {
            let prevout = OutPoint::decode_from(reader)?;
            let data = reader.var_bytes("input data")?.to_vec();
            let sequence = reader.u32()?;
            Ok(TxIn { prevout, data, sequence, witness: Witness::new() })
        })?;
        let output_count = reader.count("output", MIN_OUTPUT_SIZE)?;
        let outputs = decode_list(output_count, || TxOut::decode_from(reader))?;
        let lock_time = reader.u32()?;
        for input in &mut inputs {
            let item_count = reader.count("witness item", 1)?;
            let mut witness = Witness {
                bytes: Vec::new(),
                ends: Vec::with_capacity(item_count.min(MAX_PREALLOCATED_ITEMS)),
            };
            for _ in 0..item_count {
                witness.push(reader.var_bytes("witness item")?);
            }
            trim_excess(&mut witness.bytes);
            trim_excess(&mut witness.ends);
            input.witness = witness;
        }
        Ok(Self { version, inputs, outputs, lock_time })
    }
}
