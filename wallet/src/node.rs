//! The node, seen through its JSON-RPC: a blocking client over jsonrpsee's
//! HTTP client, and the typed calls the wallet makes (the address index,
//! the mempool, fee estimates, broadcasting).

use std::time::Duration;

use base64::Engine;
use cairn_consensus::{Address, Amount, Network, OutPoint, Txid};
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use serde_json::{json, Value};

use crate::error::WalletError;

/// Addresses asked about per call (the node takes at most 1,000).
pub const ADDRESS_BATCH: usize = 500;

/// A connection to a node's JSON-RPC.
pub struct NodeClient {
    url: String,
    client: HttpClient,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient").field("url", &self.url).finish_non_exhaustive()
    }
}

/// A confirmed coin, as the address index reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedCoin {
    /// Where it is.
    pub outpoint: OutPoint,
    /// Its owner.
    pub address: String,
    /// Its amount.
    pub amount: Amount,
    /// The height of its block.
    pub height: u32,
    /// Whether a coinbase made it.
    pub coinbase: bool,
}

/// One mempool row of the address index: a payment to an address, or a
/// spend of one of its coins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolRow {
    /// The unconfirmed transaction.
    pub txid: Txid,
    /// The address.
    pub address: String,
    /// Positive: paid to it (output `index`); negative: spent from it.
    pub delta: i64,
    /// The output index, for payments.
    pub index: u32,
    /// The coin spent, for spends.
    pub spends: Option<OutPoint>,
}

/// One confirmed history row: what a transaction did to an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRow {
    /// The transaction.
    pub txid: Txid,
    /// The address.
    pub address: String,
    /// The block height.
    pub height: u32,
    /// Received minus sent, base units.
    pub delta: i64,
}

fn field<'a>(method: &str, value: &'a Value, name: &str) -> Result<&'a Value, WalletError> {
    value.get(name).ok_or_else(|| WalletError::protocol(method, format!("no field {name}")))
}

fn field_u64(method: &str, value: &Value, name: &str) -> Result<u64, WalletError> {
    field(method, value, name)?
        .as_u64()
        .ok_or_else(|| WalletError::protocol(method, format!("{name} is not a count")))
}

fn field_i64(method: &str, value: &Value, name: &str) -> Result<i64, WalletError> {
    field(method, value, name)?
        .as_i64()
        .ok_or_else(|| WalletError::protocol(method, format!("{name} is not an integer")))
}

fn field_str<'a>(method: &str, value: &'a Value, name: &str) -> Result<&'a str, WalletError> {
    field(method, value, name)?
        .as_str()
        .ok_or_else(|| WalletError::protocol(method, format!("{name} is not text")))
}

fn field_txid(method: &str, value: &Value, name: &str) -> Result<Txid, WalletError> {
    field_str(method, value, name)?
        .parse()
        .map_err(|_| WalletError::protocol(method, format!("{name} is not a txid")))
}

fn field_amount(method: &str, value: &Value, name: &str) -> Result<Amount, WalletError> {
    Amount::from_base_units(field_u64(method, value, name)?)
        .map_err(|e| WalletError::protocol(method, format!("{name}: {e}")))
}

fn list<'a>(method: &str, value: &'a Value) -> Result<&'a Vec<Value>, WalletError> {
    value.as_array().ok_or_else(|| WalletError::protocol(method, "expected a list"))
}

impl NodeClient {
    /// A client for the node at `url` (`http://host:port`), logging in with
    /// `credentials` (`user:password`, which is what a cookie file holds).
    ///
    /// # Errors
    /// When the URL is not an `http://` URL.
    pub fn new(url: &str, credentials: Option<&str>) -> Result<Self, WalletError> {
        let unreachable = |reason: String| WalletError::NodeUnreachable { url: url.to_owned(), reason };
        if !url.starts_with("http://") {
            return Err(unreachable("the RPC URL must start with http://".to_owned()));
        }
        let mut headers = jsonrpsee_http_client::HeaderMap::new();
        if let Some(credentials) = credentials {
            let value =
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials.trim()));
            let value = jsonrpsee_http_client::HeaderValue::from_str(&value)
                .map_err(|_| unreachable("the credentials hold characters HTTP cannot carry".to_owned()))?;
            headers.insert("authorization", value);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("starting the I/O runtime: {e}")))?;
        let client = {
            let _guard = runtime.enter();
            HttpClientBuilder::default()
                .set_headers(headers)
                .request_timeout(Duration::from_secs(120))
                .max_response_size(64 * 1024 * 1024)
                .build(url)
                .map_err(|e| unreachable(e.to_string()))?
        };
        Ok(Self { url: url.to_owned(), client, runtime })
    }

    /// The node's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with positional `params`.
    ///
    /// # Errors
    /// When the node is unreachable, refuses the credentials, or answers
    /// with an error.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, WalletError> {
        use jsonrpsee_core::client::{ClientT, Error};
        use jsonrpsee_core::params::ArrayParams;
        let mut array = ArrayParams::new();
        for param in params.as_array().cloned().unwrap_or_default() {
            array.insert(param).expect("JSON values serialize");
        }
        let result: Result<Value, Error> = self.runtime.block_on(self.client.request(method, array));
        result.map_err(|error| match error {
            Error::Call(object) => {
                WalletError::Node { method: method.to_owned(), message: object.message().to_owned() }
            }
            Error::Transport(inner) => {
                // The useful part ("Connection refused") is at the end of the chain.
                let chain =
                    std::iter::successors(Some(inner.as_ref() as &dyn std::error::Error), |e| e.source());
                let text = chain.map(ToString::to_string).collect::<Vec<_>>().join(": ");
                if text.contains("`401`") {
                    WalletError::Unauthorized(self.url.clone())
                } else {
                    WalletError::NodeUnreachable { url: self.url.clone(), reason: text }
                }
            }
            Error::RequestTimeout => WalletError::NodeUnreachable {
                url: self.url.clone(),
                reason: "no answer in 120 s".to_owned(),
            },
            other => WalletError::protocol(method, other.to_string()),
        })
    }

    /// Checks that the node runs `network`; returns its height.
    ///
    /// # Errors
    /// When it runs another, or cannot be asked.
    pub fn check_network(&self, network: Network) -> Result<u32, WalletError> {
        const METHOD: &str = "getblockchaininfo";
        let info = self.call(METHOD, json!([]))?;
        let chain = field_str(METHOD, &info, "chain")?;
        if chain != network.name() {
            return Err(WalletError::NodeNetwork {
                url: self.url.clone(),
                node: chain.to_owned(),
                wallet: network,
            });
        }
        u32::try_from(field_u64(METHOD, &info, "blocks")?)
            .map_err(|_| WalletError::protocol(METHOD, "height"))
    }

    /// The confirmed unspent coins of `addresses`.
    ///
    /// # Errors
    /// When the node cannot be asked or answers nonsense.
    pub fn address_utxos(&self, addresses: &[Address]) -> Result<Vec<IndexedCoin>, WalletError> {
        const METHOD: &str = "getaddressutxos";
        let mut coins = Vec::new();
        for batch in addresses.chunks(ADDRESS_BATCH) {
            let answer = self.call(METHOD, json!([names(batch)]))?;
            for row in list(METHOD, &answer)? {
                let index = u32::try_from(field_u64(METHOD, row, "outputIndex")?)
                    .map_err(|_| WalletError::protocol(METHOD, "output index"))?;
                coins.push(IndexedCoin {
                    outpoint: OutPoint { txid: field_txid(METHOD, row, "txid")?, index },
                    address: field_str(METHOD, row, "address")?.to_owned(),
                    amount: field_amount(METHOD, row, "satoshis")?,
                    height: u32::try_from(field_u64(METHOD, row, "height")?)
                        .map_err(|_| WalletError::protocol(METHOD, "height"))?,
                    coinbase: field(METHOD, row, "coinbase")?.as_bool().unwrap_or(false),
                });
            }
        }
        Ok(coins)
    }

    /// The mempool rows of `addresses`.
    ///
    /// # Errors
    /// When the node cannot be asked or answers nonsense.
    pub fn address_mempool(&self, addresses: &[Address]) -> Result<Vec<MempoolRow>, WalletError> {
        const METHOD: &str = "getaddressmempool";
        let mut rows = Vec::new();
        for batch in addresses.chunks(ADDRESS_BATCH) {
            let answer = self.call(METHOD, json!([names(batch)]))?;
            for row in list(METHOD, &answer)? {
                let delta = field_i64(METHOD, row, "satoshis")?;
                let spends = if delta < 0 {
                    let index = u32::try_from(field_u64(METHOD, row, "prevout")?)
                        .map_err(|_| WalletError::protocol(METHOD, "prevout"))?;
                    Some(OutPoint { txid: field_txid(METHOD, row, "prevtxid")?, index })
                } else {
                    None
                };
                rows.push(MempoolRow {
                    txid: field_txid(METHOD, row, "txid")?,
                    address: field_str(METHOD, row, "address")?.to_owned(),
                    delta,
                    index: u32::try_from(field_u64(METHOD, row, "index")?)
                        .map_err(|_| WalletError::protocol(METHOD, "index"))?,
                    spends,
                });
            }
        }
        Ok(rows)
    }

    /// The confirmed history of `addresses`, every page.
    ///
    /// # Errors
    /// When the node cannot be asked or answers nonsense.
    pub fn address_deltas(&self, addresses: &[Address]) -> Result<Vec<DeltaRow>, WalletError> {
        const METHOD: &str = "getaddressdeltas";
        let mut rows = Vec::new();
        for batch in addresses.chunks(ADDRESS_BATCH) {
            let mut skip = 0u64;
            loop {
                let answer =
                    self.call(METHOD, json!([{ "addresses": names(batch), "skip": skip, "limit": 10_000 }]))?;
                for row in list(METHOD, field(METHOD, &answer, "deltas")?)? {
                    rows.push(DeltaRow {
                        txid: field_txid(METHOD, row, "txid")?,
                        address: field_str(METHOD, row, "address")?.to_owned(),
                        height: u32::try_from(field_u64(METHOD, row, "height")?)
                            .map_err(|_| WalletError::protocol(METHOD, "height"))?,
                        delta: field_i64(METHOD, row, "satoshis")?,
                    });
                }
                match answer.get("next").and_then(Value::as_u64) {
                    Some(next) if next > skip => skip = next,
                    _ => break,
                }
            }
        }
        Ok(rows)
    }

    /// The fee rate the node suggests for confirmation within `blocks`.
    ///
    /// # Errors
    /// When the node cannot be asked or answers nonsense.
    pub fn estimate_fee_rate(&self, blocks: u32) -> Result<u64, WalletError> {
        const METHOD: &str = "estimatesmartfee";
        field_u64(METHOD, &self.call(METHOD, json!([blocks]))?, "feerate")
    }

    /// A mempool transaction, as hex.
    ///
    /// # Errors
    /// When the node does not have it in its mempool.
    pub fn mempool_transaction(&self, txid: &Txid) -> Result<String, WalletError> {
        const METHOD: &str = "getrawtransaction";
        let answer = self.call(METHOD, json!([txid.to_string(), false]))?;
        answer.as_str().map(str::to_owned).ok_or_else(|| WalletError::protocol(METHOD, "expected hex"))
    }

    /// Whether the node would accept a transaction; the reason if not.
    ///
    /// # Errors
    /// When the node cannot be asked.
    pub fn test_accept(&self, hex: &str) -> Result<Result<(), String>, WalletError> {
        const METHOD: &str = "testmempoolaccept";
        let answer = self.call(METHOD, json!([[hex]]))?;
        let row =
            list(METHOD, &answer)?.first().ok_or_else(|| WalletError::protocol(METHOD, "empty answer"))?;
        if field(METHOD, row, "allowed")?.as_bool() == Some(true) {
            Ok(Ok(()))
        } else {
            Ok(Err(row.get("reject-reason").and_then(Value::as_str).unwrap_or("refused").to_owned()))
        }
    }

    /// Hands a signed transaction to the node.
    ///
    /// # Errors
    /// When the node refuses it.
    pub fn send(&self, hex: &str) -> Result<Txid, WalletError> {
        const METHOD: &str = "sendrawtransaction";
        let answer = self.call(METHOD, json!([hex]))?;
        answer
            .as_str()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| WalletError::protocol(METHOD, "expected a txid"))
    }
}

fn names(addresses: &[Address]) -> Vec<String> {
    addresses.iter().map(ToString::to_string).collect()
}
