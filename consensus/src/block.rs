//! Block headers and blocks: layout, hashing and encoding.

use crate::encode::{Decode, DecodeError, Encode, Reader};
use crate::hash::{sha256d, BlockHash, MerkleRoot};
use crate::pow::CompactTarget;
use crate::transaction::{Transaction, MIN_ENCODED_TRANSACTION_SIZE};

/// Serialized size of a header.
pub const HEADER_SIZE: usize = 80;

/// A block may be at most this many bytes, serialized with witnesses.
pub const MAX_BLOCK_SIZE: usize = 2_000_000;

/// Version bits that miners may roll freely (BIP-320: bits 13 to 28).
pub const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;

/// The 80-byte header, in Bitcoin's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Version; with the rolling bits masked out it is at least 1.
    pub version: u32,
    /// Hash of the previous block's header.
    pub prev_block: BlockHash,
    /// Root of the transaction merkle tree.
    pub merkle_root: MerkleRoot,
    /// Seconds since the Unix epoch.
    pub time: u32,
    /// The target, compact.
    pub bits: CompactTarget,
    /// Free for the miner.
    pub nonce: u32,
}

impl BlockHeader {
    /// The 80 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..36].copy_from_slice(self.prev_block.as_bytes());
        out[36..68].copy_from_slice(self.merkle_root.as_bytes());
        out[68..72].copy_from_slice(&self.time.to_le_bytes());
        out[72..76].copy_from_slice(&self.bits.to_consensus().to_le_bytes());
        out[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    /// Reads the 80 bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; HEADER_SIZE]) -> Self {
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let hash = |at: usize| {
            let mut out = [0u8; 32];
            out.copy_from_slice(&bytes[at..at + 32]);
            out
        };
        Self {
            version: word(0),
            prev_block: BlockHash::from_byte_array(hash(4)),
            merkle_root: MerkleRoot::from_byte_array(hash(36)),
            time: word(68),
            bits: CompactTarget::from_consensus(word(72)),
            nonce: word(76),
        }
    }

    /// SHA-256d of the 80 bytes.
    #[must_use]
    pub fn block_hash(&self) -> BlockHash {
        BlockHash::from_byte_array(sha256d(&self.to_bytes()))
    }
}

impl Encode for BlockHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

impl Decode for BlockHeader {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self::from_bytes(&reader.array()?))
    }
}

/// A header and its transactions, the coinbase first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions.
    pub transactions: Vec<Transaction>,
}

impl Block {
    /// The header's hash.
    #[must_use]
    pub fn block_hash(&self) -> BlockHash {
        self.header.block_hash()
    }

    /// Bytes it holds: the value itself and its heap (capacities).
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.transactions.capacity() * std::mem::size_of::<Transaction>()
            + self.transactions.iter().map(Transaction::heap_bytes).sum::<usize>()
    }

    /// Serialized size with witnesses.
    #[must_use]
    pub fn size(&self) -> usize {
        HEADER_SIZE
            + crate::encode::compact_size_len(self.transactions.len() as u64)
            + self.transactions.iter().map(Transaction::size).sum::<usize>()
    }
}

impl Encode for Block {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        crate::encode::write_compact_size(out, self.transactions.len() as u64);
        for tx in &self.transactions {
            tx.encode_to(out);
        }
    }
}

impl Decode for Block {
    /// Refuses input above [`MAX_BLOCK_SIZE`] before reading it.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = reader.position();
        let header = BlockHeader::decode_from(reader)?;
        let count = reader.count("transaction", MIN_ENCODED_TRANSACTION_SIZE)?;
        let transactions = crate::encode::decode_list(count, || {
            let tx = Transaction::decode_from(reader)?;
            let used = reader.position() - start;
            if used > MAX_BLOCK_SIZE {
                return Err(DecodeError::OverLimit {
                    what: "block size",
                    value: used as u64,
                    limit: MAX_BLOCK_SIZE as u64,
                });
            }
            Ok(tx)
        })?;
        Ok(Self { header, transactions })
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_BLOCK_SIZE {
            return Err(DecodeError::OverLimit {
                what: "block size",
                value: bytes.len() as u64,
                limit: MAX_BLOCK_SIZE as u64,
            });
        }
        let mut reader = Reader::new(bytes);
        let block = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(block)
    }
}
