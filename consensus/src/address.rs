//! Addresses: bech32m over a lock's version byte and payload, with a
//! human-readable prefix per network (`cairn`, `dcairn`, `rcairn`).

use core::fmt;

use bech32::primitives::decode::{CheckedHrpstring, UncheckedHrpstring};
use bech32::{Bech32m, Hrp};

use crate::params::Network;
use crate::sighash::is_valid_key;
use crate::transaction::{Lock, LOCK_VERSION_KEY};

/// BIP-173's limit on the length of a whole string.
pub const MAX_ADDRESS_LENGTH: usize = 90;

/// Why text is not a usable address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not a bech32m string (bad characters, mixed case, bad checksum...).
    #[error("not a valid address: {0}")]
    Bech32(String),
    /// Longer than 90 characters.
    #[error("address is {0} characters long; at most {MAX_ADDRESS_LENGTH} are allowed")]
    TooLong(usize),
    /// A prefix of no Cairn network.
    #[error("address prefix {0:?} belongs to no Cairn network")]
    UnknownPrefix(String),
    /// A valid address of another network.
    #[error("address is for the {found} network, not {expected}")]
    WrongNetwork {
        /// The network the address is for.
        found: Network,
        /// The network in use.
        expected: Network,
    },
    /// The data is not a lock this software knows (version 1 with a valid key).
    #[error("address carries an unsupported lock (version {version}, {len}-byte payload)")]
    UnsupportedLock {
        /// Lock version.
        version: u8,
        /// Payload length.
        len: usize,
    },
    /// Padding bits or another non-canonical form.
    #[error("address is not in canonical form")]
    NotCanonical,
}

/// A network and the lock its payments go to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The network.
    pub network: Network,
    /// The lock.
    pub lock: Lock,
}

fn hrp_of(network: Network) -> Hrp {
    Hrp::parse(network.address_prefix()).expect("network prefixes are valid hrps")
}

fn network_of(prefix: &str) -> Option<Network> {
    Network::ALL.into_iter().find(|n| n.address_prefix() == prefix)
}

impl Address {
    /// The address paying to x-only key `key` on `network`.
    #[must_use]
    pub fn from_key(network: Network, key: [u8; 32]) -> Self {
        Self { network, lock: Lock::key(key) }
    }

    /// Parses an address of any Cairn network.
    ///
    /// # Errors
    /// An [`AddressError`] saying what is wrong.
    pub fn parse_any(text: &str) -> Result<Self, AddressError> {
        if text.len() > MAX_ADDRESS_LENGTH {
            return Err(AddressError::TooLong(text.len()));
        }
        let checked =
            CheckedHrpstring::new::<Bech32m>(text).map_err(|e| AddressError::Bech32(e.to_string()))?;
        let prefix = checked.hrp().to_lowercase();
        let network = network_of(&prefix).ok_or_else(|| AddressError::UnknownPrefix(prefix.clone()))?;
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let (&version, payload) =
            bytes.split_first().ok_or(AddressError::UnsupportedLock { version: 0, len: 0 })?;
        let lock = Lock { version, payload: payload.to_vec() };
        let usable = version == LOCK_VERSION_KEY && lock.key_bytes().is_some_and(|key| is_valid_key(&key));
        if !usable {
            return Err(AddressError::UnsupportedLock { version, len: payload.len() });
        }
        let address = Self { network, lock };
        // Refuses non-zero padding and other forms that do not re-encode to themselves.
        if address.to_string() != text.to_lowercase() {
            return Err(AddressError::NotCanonical);
        }
        Ok(address)
    }

    /// Parses an address and insists it is for `network`.
    ///
    /// # Errors
    /// [`AddressError::WrongNetwork`] for another network's address, or any other [`AddressError`].
    pub fn parse_for(text: &str, network: Network) -> Result<Self, AddressError> {
        let address = Self::parse_any(text)?;
        if address.network != network {
            return Err(AddressError::WrongNetwork { found: address.network, expected: network });
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = Vec::with_capacity(1 + self.lock.payload.len());
        data.push(self.lock.version);
        data.extend_from_slice(&self.lock.payload);
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp_of(self.network), &data).map_err(|_| fmt::Error)
    }
}

/// Checks a string's bech32m checksum and returns its prefix and data as
/// 5-bit values, for tests against the published vectors.
///
/// # Errors
/// The bech32 crate's reason, as text.
pub fn decode_bech32m_raw(text: &str) -> Result<(String, Vec<u8>), String> {
    if text.len() > MAX_ADDRESS_LENGTH {
        return Err(format!("{} characters is over the limit", text.len()));
    }
    let unchecked = UncheckedHrpstring::new(text).map_err(|e| e.to_string())?;
    unchecked.validate_checksum::<Bech32m>().map_err(|e| e.to_string())?;
    let checked = CheckedHrpstring::new::<Bech32m>(text).map_err(|e| e.to_string())?;
    let fes = checked.fe32_iter::<core::iter::Empty<u8>>().map(|fe| fe.to_u8()).collect();
    Ok((checked.hrp().to_string(), fes))
}
