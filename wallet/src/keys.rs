//! Keys: a BIP-39 mnemonic, BIP-32 derivation along
//! `m/44'/<coin type>'/0'/<chain>/<index>`, and the x-only keys that Cairn's
//! version-1 locks and addresses carry.
//!
//! The coin type is 3737 on main and 1 (SLIP-44's convention for test
//! networks) on devnet and regtest: a mnemonic also used for Bitcoin
//! (coin type 0) derives unrelated keys here. Chain 0 receives, chain 1
//! takes change. The mnemonic's optional BIP-39 passphrase is not used (it
//! is the empty string); the wallet file's passphrase protects the file.

use bip32::{ChildNumber, DerivationPath, XPrv};
use bip39::Mnemonic;
use cairn_consensus::{Address, Lock, Network};
use secp256k1::{Keypair, Secp256k1, SecretKey};

use crate::error::{random_bytes, WalletError};

/// Words in a new mnemonic: 24, for 256 bits of entropy.
pub const MNEMONIC_WORDS: usize = 24;

/// Which derivation chain an address is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyChain {
    /// Addresses handed out to be paid.
    Receive,
    /// Addresses the wallet pays its own change to.
    Change,
}

impl KeyChain {
    /// Both chains, receive first.
    pub const BOTH: [Self; 2] = [Self::Receive, Self::Change];

    /// The chain's number in the derivation path.
    #[must_use]
    pub const fn number(self) -> u32 {
        match self {
            Self::Receive => 0,
            Self::Change => 1,
        }
    }

    /// Its name, as output shows it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Change => "change",
        }
    }
}

/// BIP-44 coin type of a network.
#[must_use]
pub const fn coin_type(network: Network) -> u32 {
    match network {
        Network::Main => 3737,
        Network::Devnet | Network::Regtest => 1,
    }
}

/// The account path, `m/44'/<coin type>'/0'`.
#[must_use]
pub fn account_path(network: Network) -> String {
    format!("m/44'/{}'/0'", coin_type(network))
}

/// A new random mnemonic.
///
/// # Errors
/// When the operating system has no randomness.
pub fn new_mnemonic() -> Result<Mnemonic, WalletError> {
    let entropy: [u8; 32] = random_bytes()?;
    Mnemonic::from_entropy(&entropy).map_err(|e| WalletError::Mnemonic(e.to_string()))
}

/// Parses a mnemonic a person typed: any case, any whitespace between words.
///
/// # Errors
/// When a word is unknown, the count is wrong or the checksum fails.
pub fn parse_mnemonic(text: &str) -> Result<Mnemonic, WalletError> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    Mnemonic::parse(words.join(" ")).map_err(|e| WalletError::Mnemonic(e.to_string()))
}

/// The keys of one wallet: the two chains' extended keys, derived once.
pub struct Keychain {
    network: Network,
    chains: [XPrv; 2],
    secp: Secp256k1<secp256k1::All>,
}

impl std::fmt::Debug for Keychain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keychain").field("network", &self.network).finish_non_exhaustive()
    }
}

impl Keychain {
    /// Derives the account and its two chains from `mnemonic`.
    ///
    /// # Errors
    /// Only if derivation fails, which BIP-32 makes astronomically unlikely.
    pub fn new(mnemonic: &Mnemonic, network: Network) -> Result<Self, WalletError> {
        let seed = mnemonic.to_seed("");
        let path: DerivationPath = account_path(network).parse().expect("the account path is well-formed");
        let derive = |e: bip32::Error| WalletError::Mnemonic(format!("key derivation failed: {e}"));
        let account = XPrv::derive_from_path(seed, &path).map_err(derive)?;
        let chain = |c: KeyChain| {
            account
                .derive_child(ChildNumber::new(c.number(), false).expect("chain numbers are small"))
                .map_err(derive)
        };
        Ok(Self {
            network,
            chains: [chain(KeyChain::Receive)?, chain(KeyChain::Change)?],
            secp: Secp256k1::new(),
        })
    }

    /// The network whose coin type the keys use.
    #[must_use]
    pub fn network(&self) -> Network {
        self.network
    }

    /// The key pair at `index` on `chain`.
    ///
    /// # Errors
    /// When `index` is 2^31 or more (hardened), or in the astronomically
    /// unlikely case BIP-32 says to skip it.
    pub fn keypair(&self, chain: KeyChain, index: u32) -> Result<Keypair, WalletError> {
        let bad =
            |e: String| WalletError::Mnemonic(format!("key derivation at {chain:?}/{index} failed: {e}"));
        let child_number = ChildNumber::new(index, false).map_err(|e| bad(e.to_string()))?;
        let child = self.chains[chain.number() as usize]
            .derive_child(child_number)
            .map_err(|e| bad(e.to_string()))?;
        let secret = SecretKey::from_byte_array(&child.to_bytes()).map_err(|e| bad(e.to_string()))?;
        Ok(Keypair::from_secret_key(&self.secp, &secret))
    }

    /// The address at `index` on `chain`.
    ///
    /// # Errors
    /// As [`Keychain::keypair`].
    pub fn address(&self, chain: KeyChain, index: u32) -> Result<Address, WalletError> {
        let keypair = self.keypair(chain, index)?;
        Ok(Address::from_key(self.network, keypair.x_only_public_key().0.serialize()))
    }

    /// The lock at `index` on `chain`.
    ///
    /// # Errors
    /// As [`Keychain::keypair`].
    pub fn lock(&self, chain: KeyChain, index: u32) -> Result<Lock, WalletError> {
        Ok(self.address(chain, index)?.lock)
    }

    /// The signing context.
    #[must_use]
    pub fn secp(&self) -> &Secp256k1<secp256k1::All> {
        &self.secp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIP-39's first English vector (all-zero entropy) and its seed with
    /// the passphrase "TREZOR", from the BIP's published vectors.
    #[test]
    fn bip39_vector_zero_entropy() {
        let mnemonic = Mnemonic::from_entropy(&[0u8; 16]).expect("16 bytes");
        assert_eq!(
            mnemonic.to_string(),
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
        );
        assert_eq!(
            hex::encode(mnemonic.to_seed("TREZOR")),
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
        );
    }

    /// BIP-32's test vector 1: seed 000102...0f, the master key and
    /// chain m/0'/1/2'/2/1000000000.
    #[test]
    fn bip32_vector_one() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").expect("hex");
        let master = XPrv::new(&seed).expect("derives");
        assert_eq!(
            master.to_string(bip32::Prefix::XPRV).as_str(),
            "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"
        );
        let path: DerivationPath = "m/0'/1/2'/2/1000000000".parse().expect("path");
        let key = XPrv::derive_from_path(&seed, &path).expect("derives");
        assert_eq!(
            key.to_string(bip32::Prefix::XPRV).as_str(),
            "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76"
        );
    }

    #[test]
    fn addresses_are_per_network_and_chain_and_stable() {
        let mnemonic = parse_mnemonic(
            "Abandon abandon  abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        )
        .expect("valid words in any case and spacing");
        let regtest = Keychain::new(&mnemonic, Network::Regtest).expect("derives");
        let main = Keychain::new(&mnemonic, Network::Main).expect("derives");
        let r0 = regtest.address(KeyChain::Receive, 0).expect("address");
        assert!(r0.to_string().starts_with("rcairn1"));
        assert_ne!(r0.lock, regtest.lock(KeyChain::Change, 0).expect("lock"));
        assert_ne!(r0.lock, regtest.lock(KeyChain::Receive, 1).expect("lock"));
        assert_ne!(r0.lock, main.lock(KeyChain::Receive, 0).expect("lock"), "coin types differ");
        let again = Keychain::new(&mnemonic, Network::Regtest).expect("derives");
        assert_eq!(r0, again.address(KeyChain::Receive, 0).expect("address"));
        assert!(regtest.keypair(KeyChain::Receive, 1 << 31).is_err(), "hardened indices are refused");
    }

    #[test]
    fn bad_mnemonics_are_refused() {
        assert!(parse_mnemonic("abandon abandon abandon").is_err());
        assert!(parse_mnemonic(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon"
        )
        .is_err(), "bad checksum");
        assert!(parse_mnemonic(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon zzzz"
        )
        .is_err(), "unknown word");
        let fresh = new_mnemonic().expect("randomness");
        assert_eq!(fresh.word_count(), MNEMONIC_WORDS);
        assert_eq!(parse_mnemonic(&fresh.to_string()).expect("round trip"), fresh);
    }
}
