//! SHA-256 based hashes and the 32-byte hash newtypes.
//!
//! Hashes are stored in the order the hash function outputs them ("internal
//! order") and printed reversed ("display order"), as Bitcoin does, so a block
//! hash with leading zeros prints with leading zeros.

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha256};

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-256 applied twice (`SHA-256(SHA-256(data))`).
#[must_use]
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    sha256(&sha256(data))
}

/// BIP-340 tagged hash: `SHA-256(SHA-256(tag) || SHA-256(tag) || data...)`.
#[must_use]
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let tag_hash = sha256(tag.as_bytes());
    let mut engine = Sha256::new();
    engine.update(tag_hash);
    engine.update(tag_hash);
    for part in parts {
        engine.update(part);
    }
    engine.finalize().into()
}

/// Error for a hash given as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    /// The text is not 64 hexadecimal digits.
    #[error("a hash is 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character is not a hexadecimal digit.
    #[error("invalid hex digit {0:?} in hash")]
    Digit(char),
}

/// Decodes hex digits into `out`; `text.len()` must be `2 * out.len()`.
pub(crate) fn decode_hex_into(text: &str, out: &mut [u8]) -> Result<(), HashParseError> {
    if text.len() != 2 * out.len() {
        return Err(HashParseError::Length(text.chars().count()));
    }
    let digit = |c: u8| -> Result<u8, HashParseError> {
        (c as char).to_digit(16).map(|d| d as u8).ok_or(HashParseError::Digit(c as char))
    };
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Ok(())
}

macro_rules! hash_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The all-zero hash.
            pub const ZERO: Self = Self([0; 32]);

            /// Wraps bytes in internal (hash output) order.
            #[must_use]
            pub const fn from_byte_array(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The bytes in internal (hash output) order.
            #[must_use]
            pub const fn to_byte_array(self) -> [u8; 32] {
                self.0
            }

            /// The bytes in internal (hash output) order.
            #[must_use]
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// Display order: the bytes reversed, as hex.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0.iter().rev() {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = HashParseError;

            /// Parses display order (reversed) hex.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; 32];
                decode_hex_into(text, &mut bytes)?;
                bytes.reverse();
                Ok(Self(bytes))
            }
        }
    };
}

hash_newtype!(
    /// SHA-256d of a block header.
    BlockHash
);
hash_newtype!(
    /// SHA-256d of a transaction without its witness section.
    Txid
);
hash_newtype!(
    /// SHA-256d of a transaction with its witness section.
    Wtxid
);
hash_newtype!(
    /// Root of a block's merkle tree.
    MerkleRoot
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_order_is_reversed_and_round_trips() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0x01;
        bytes[31] = 0xab;
        let hash = BlockHash::from_byte_array(bytes);
        let text = hash.to_string();
        assert!(text.starts_with("ab"));
        assert!(text.ends_with("01"));
        assert_eq!(text.parse::<BlockHash>(), Ok(hash));
    }

    #[test]
    fn bad_hash_text_is_refused() {
        assert_eq!("00".parse::<Txid>(), Err(HashParseError::Length(2)));
        let bad = "g".repeat(64);
        assert_eq!(bad.parse::<Txid>(), Err(HashParseError::Digit('g')));
    }

    #[test]
    fn sha256d_of_empty() {
        // Well-known: SHA-256d("") = 5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456
        let expected = "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456";
        let got: String = sha256d(b"").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expected);
    }
}
