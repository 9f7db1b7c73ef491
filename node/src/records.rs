//! The node's own record encodings in the store (not consensus bytes, but
//! written with the same canonical reader and writer).

use cairn_consensus::check::Coin;
use cairn_consensus::encode::Reader;
use cairn_consensus::hash::sha256;
use cairn_consensus::pow::{Work, U256};
use cairn_consensus::{Amount, Decode, DecodeError, Encode, Height, Lock, OutPoint, TxOut, Txid};

/// Outpoint key: txid bytes then the index big-endian, so a transaction's
/// outputs sort together and in order.
#[must_use]
pub fn outpoint_key(outpoint: &OutPoint) -> [u8; 36] {
    let mut key = [0u8; 36];
    key[..32].copy_from_slice(&outpoint.txid.to_byte_array());
    key[32..].copy_from_slice(&outpoint.index.to_be_bytes());
    key
}

/// The outpoint an [`outpoint_key`] holds.
pub fn outpoint_from_key(key: &[u8]) -> Result<OutPoint, DecodeError> {
    let mut reader = Reader::new(key);
    let txid = Txid::from_byte_array(reader.array()?);
    let index = u32::from_be_bytes(reader.array()?);
    reader.finish()?;
    Ok(OutPoint { txid, index })
}

/// A coin: amount, height, coinbase flag, lock.
pub fn encode_coin(coin: &Coin, out: &mut Vec<u8>) {
    out.extend_from_slice(&coin.output.amount.to_base_units().to_le_bytes());
    out.extend_from_slice(&coin.height.get().to_le_bytes());
    out.push(u8::from(coin.is_coinbase));
    coin.output.lock.encode_to(out);
}

/// Reads a coin written by [`encode_coin`].
pub fn decode_coin(reader: &mut Reader<'_>) -> Result<Coin, DecodeError> {
    let units = reader.u64()?;
    let amount = Amount::from_base_units(units).map_err(|_| DecodeError::OverLimit {
        what: "coin amount",
        value: units,
        limit: cairn_consensus::MAX_MONEY,
    })?;
    let height = Height::new(reader.u32()?);
    let is_coinbase = reader.u8()? != 0;
    let lock = Lock::decode_from(reader)?;
    Ok(Coin { output: TxOut { amount, lock }, height, is_coinbase })
}

/// A coin as a whole value.
#[must_use]
pub fn coin_bytes(coin: &Coin) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    encode_coin(coin, &mut out);
    out
}

/// Decodes a whole coin value.
pub fn coin_from_bytes(bytes: &[u8]) -> Result<Coin, DecodeError> {
    let mut reader = Reader::new(bytes);
    let coin = decode_coin(&mut reader)?;
    reader.finish()?;
    Ok(coin)
}

/// Undo data: the coins a block spent, in input order.
#[must_use]
pub fn encode_undo(spent: &[(OutPoint, Coin)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(spent.len() as u32).to_le_bytes());
    for (outpoint, coin) in spent {
        out.extend_from_slice(&outpoint_key(outpoint));
        encode_coin(coin, &mut out);
    }
    out
}

/// Reads undo data.
pub fn decode_undo(bytes: &[u8]) -> Result<Vec<(OutPoint, Coin)>, DecodeError> {
    let mut reader = Reader::new(bytes);
    // Each entry is at least 36 + 8 + 4 + 1 + 2 bytes.
    let count = reader.u32()? as usize;
    if count > reader.remaining() / 51 {
        return Err(DecodeError::OverLimit {
            what: "undo entries",
            value: count as u64,
            limit: (reader.remaining() / 51) as u64,
        });
    }
    let mut spent = Vec::with_capacity(count);
    for _ in 0..count {
        let outpoint = outpoint_from_key(reader.take(36)?)?;
        spent.push((outpoint, decode_coin(&mut reader)?));
    }
    reader.finish()?;
    Ok(spent)
}

/// A block's status flags in the index.
pub const HAS_BODY: u8 = 1;
/// The block, or an ancestor, broke a rule its header commits to.
pub const INVALID: u8 = 2;

/// An index record: height, chain work, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    /// Height.
    pub height: Height,
    /// Work of the chain up to and including this block.
    pub chain_work: Work,
    /// [`HAS_BODY`], [`INVALID`].
    pub flags: u8,
}

impl IndexRecord {
    /// The stored bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(37);
        out.extend_from_slice(&self.height.get().to_le_bytes());
        out.extend_from_slice(&self.chain_work.to_u256().to_le_bytes());
        out.push(self.flags);
        out
    }

    /// Reads stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let height = Height::new(reader.u32()?);
        let chain_work = Work::from_u256(U256::from_le_bytes(reader.array()?));
        let flags = reader.u8()?;
        reader.finish()?;
        Ok(Self { height, chain_work, flags })
    }
}

/// The address index's key for a lock: SHA-256 of its encoding, fixed
/// length so that keys under it cannot run into another lock's.
#[must_use]
pub fn lock_digest(lock: &Lock) -> [u8; 32] {
    sha256(&lock.encode())
}

/// Address index: an unspent coin of a lock.
#[must_use]
pub fn address_coin_key(lock: &Lock, outpoint: &OutPoint) -> Vec<u8> {
    let mut key = Vec::with_capacity(69);
    key.push(b'u');
    key.extend_from_slice(&lock_digest(lock));
    key.extend_from_slice(&outpoint_key(outpoint));
    key
}

/// Address index: prefix of a lock's unspent coins.
#[must_use]
pub fn address_coin_prefix(lock: &Lock) -> Vec<u8> {
    let mut key = vec![b'u'];
    key.extend_from_slice(&lock_digest(lock));
    key
}

/// Address index: a transaction that touched a lock, at a height.
#[must_use]
pub fn address_history_key(lock: &Lock, height: Height, txid: &Txid) -> Vec<u8> {
    let mut key = address_history_prefix(lock);
    key.extend_from_slice(&height.get().to_be_bytes());
    key.extend_from_slice(&txid.to_byte_array());
    key
}

/// Address index: prefix of a lock's history, which sorts by height.
#[must_use]
pub fn address_history_prefix(lock: &Lock) -> Vec<u8> {
    let mut key = vec![b'h'];
    key.extend_from_slice(&lock_digest(lock));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let coin = Coin {
            output: TxOut {
                amount: Amount::from_base_units(5_000).expect("amount"),
                lock: Lock::key([3; 32]),
            },
            height: Height::new(77),
            is_coinbase: true,
        };
        let outpoint = OutPoint { txid: Txid::from_byte_array([9; 32]), index: 4 };
        assert_eq!(coin_from_bytes(&coin_bytes(&coin)), Ok(coin.clone()));
        let undo = vec![(outpoint, coin.clone()), (OutPoint { index: 5, ..outpoint }, coin)];
        assert_eq!(decode_undo(&encode_undo(&undo)), Ok(undo));
        assert!(decode_undo(&[0xff, 0xff, 0xff, 0xff]).is_err(), "a huge count is refused before allocating");
        assert!(coin_from_bytes(&[1, 2, 3]).is_err());
        let record = IndexRecord {
            height: Height::new(9),
            chain_work: Work::from_u256(U256::from_u64(1234)),
            flags: HAS_BODY,
        };
        assert_eq!(IndexRecord::from_bytes(&record.to_bytes()), Ok(record));
        assert_eq!(outpoint_from_key(&outpoint_key(&outpoint)), Ok(outpoint));
    }
}
