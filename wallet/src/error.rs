//! What can go wrong, each with what the user should do about it.

use std::path::PathBuf;

use cairn_consensus::{AddressError, Amount, Network};

/// A wallet failure. Messages are lower-case and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The passphrase does not open the file (or the file was altered).
    #[error("wrong passphrase for {0} (or the file was altered)")]
    WrongPassphrase(PathBuf),
    /// No wallet file where one was expected.
    #[error("no wallet at {0}: create one with `cairn-wallet create` or give --wallet FILE")]
    NoWallet(PathBuf),
    /// `create` or `restore` would overwrite a wallet.
    #[error("a wallet already exists at {0}; give another --wallet FILE (nothing was overwritten)")]
    WalletExists(PathBuf),
    /// The file is not a wallet this software reads.
    #[error("{path} is not a Cairn wallet file: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The wallet belongs to another network than the one asked for.
    #[error("{path} is a {file} wallet; run with --network {file} (not {asked})")]
    WalletNetwork {
        /// The file.
        path: PathBuf,
        /// Its network.
        file: Network,
        /// The network given.
        asked: Network,
    },
    /// Reading or writing a file failed.
    #[error("{action} {path}: {error}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        error: std::io::Error,
    },
    /// The words are not a BIP-39 mnemonic.
    #[error("not a valid BIP-39 mnemonic: {0}")]
    Mnemonic(String),
    /// An address that does not parse or belongs to another network.
    #[error("bad address {text}: {reason}")]
    Address {
        /// What the user typed.
        text: String,
        /// Why it is refused.
        reason: AddressError,
    },
    /// An amount that does not parse.
    #[error("bad amount {0:?}: give coins with at most 8 decimals (like 12.5), or `all`")]
    Amount(String),
    /// An output below the dust limit.
    #[error("amount {amount} is below the dust limit of {limit}: nodes do not relay outputs that small")]
    Dust {
        /// The amount asked for.
        amount: Amount,
        /// The limit.
        limit: Amount,
    },
    /// Not enough spendable money.
    #[error(
        "insufficient funds: this needs {needed} (fee included) but {available} is spendable; \
         {immature} more is immature (coinbase outputs spendable at 101 confirmations) and \
         {unconfirmed} is unconfirmed (wait for a block)"
    )]
    InsufficientFunds {
        /// Payments plus fee.
        needed: Amount,
        /// Confirmed, mature, not spent in the mempool.
        available: Amount,
        /// Coinbase outputs not yet spendable.
        immature: Amount,
        /// Unconfirmed incoming.
        unconfirmed: Amount,
    },
    /// A new wallet with an empty passphrase.
    #[error("refusing an empty passphrase: the wallet file would be protected by nothing")]
    EmptyPassphrase,
    /// A fee rate that the node would not relay, or not above a replaced one.
    #[error("fee rate {given} base units/byte refused: {reason}")]
    FeeRate {
        /// The rate given.
        given: u64,
        /// What it must be.
        reason: String,
    },
    /// `bump-fee` on a transaction it cannot replace.
    #[error("cannot bump {txid}: {reason}")]
    CannotBump {
        /// The transaction.
        txid: String,
        /// Why.
        reason: String,
    },
    /// An input the wallet holds no key for.
    #[error("input {0} is locked to a key this wallet does not hold")]
    ForeignInput(String),
    /// The node cannot be reached.
    #[error("cannot reach the node at {url}: {reason} (is cairn-node running? point --rpc at it)")]
    NodeUnreachable {
        /// Where it was looked for.
        url: String,
        /// The transport's error.
        reason: String,
    },
    /// The node refused the credentials.
    #[error(
        "the node at {0} refused the credentials: give --datadir (its .cookie), --rpc-cookie FILE \
         or --rpc-user and --rpc-password"
    )]
    Unauthorized(String),
    /// The node runs another network.
    #[error("the node at {url} runs {node}, but this wallet is for {wallet}")]
    NodeNetwork {
        /// The node's URL.
        url: String,
        /// Its network.
        node: String,
        /// The wallet's.
        wallet: Network,
    },
    /// The node answered a call with an error.
    #[error("the node refused {method}: {message}")]
    Node {
        /// The method called.
        method: String,
        /// The node's message.
        message: String,
    },
    /// The node's answer was not what the method returns.
    #[error("unexpected answer to {method} from the node: {detail}")]
    Protocol {
        /// The method called.
        method: String,
        /// What was wrong.
        detail: String,
    },
    /// The operating system had no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

impl WalletError {
    /// An I/O failure while doing `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { action, path: path.into(), error: source }
    }

    /// A malformed answer to `method`.
    pub fn protocol(method: &str, detail: impl Into<String>) -> Self {
        Self::Protocol { method: method.to_owned(), detail: detail.into() }
    }
}

/// Fills `bytes` from the operating system's generator.
///
/// # Errors
/// When the operating system has none.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], WalletError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| WalletError::Random(e.to_string()))?;
    Ok(bytes)
}
