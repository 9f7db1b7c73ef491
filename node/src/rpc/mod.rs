//! JSON-RPC 2.0 over HTTP: bitcoind's method names and shapes where the
//! concept is the same, cookie or user/password authentication, request
//! bodies capped before they are read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn_consensus::{
    Address, Amount, Block, BlockHash, Decode, Encode, Height, Lock, OutPoint, Transaction, Txid,
};
use jsonrpsee::server::{RpcModule, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{json, Value};

use crate::chain::{
    address_coins_in, address_deltas_in, address_history_in, address_history_of, Accepted, ChainError,
};
use crate::mempool::{MempoolError, INCREMENTAL_FEE_RATE, MIN_RELAY_FEE_RATE};

mod http;
use crate::node::{unix_now, Node};
pub use http::{Credentials, RpcLimits, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, MAX_RESPONSE_BODY};

/// Largest request body read, in bytes: a full block in hex with room to spare.
pub const MAX_REQUEST_BODY: u32 = 5 * 1024 * 1024;

/// Addresses one address-index call takes at most.
pub const MAX_ADDRESSES: usize = 1_000;

// bitcoind's error codes.
const MISC_ERROR: i32 = -1;
const TYPE_ERROR: i32 = -3;
const INVALID_ADDRESS_OR_KEY: i32 = -5;
const INVALID_PARAMETER: i32 = -8;
const DESERIALIZATION_ERROR: i32 = -22;
const VERIFY_ERROR: i32 = -25;
const VERIFY_REJECTED: i32 = -26;
const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
const METHOD_NOT_ALLOWED: i32 = -32604;

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

type RpcResult = Result<Value, ErrorObjectOwned>;

/// Positional parameters.
struct Args(Vec<Value>);

impl Args {
    fn parse(params: &Params<'_>) -> Result<Self, ErrorObjectOwned> {
        match params.as_str() {
            None => Ok(Self(Vec::new())),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(values)) => Ok(Self(values)),
                Ok(Value::Null) => Ok(Self(Vec::new())),
                Ok(_) => Err(error(INVALID_PARAMETER, "parameters must be a JSON array (positional)")),
                Err(e) => Err(error(DESERIALIZATION_ERROR, format!("parameters are not JSON: {e}"))),
            },
        }
    }
    fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i).filter(|v| !v.is_null())
    }
    fn required(&self, i: usize, name: &str) -> Result<&Value, ErrorObjectOwned> {
        self.get(i).ok_or_else(|| error(INVALID_PARAMETER, format!("missing parameter {} ({name})", i + 1)))
    }
    fn str(&self, i: usize, name: &str) -> Result<&str, ErrorObjectOwned> {
        self.required(i, name)?
            .as_str()
            .ok_or_else(|| error(TYPE_ERROR, format!("parameter {} ({name}) must be a string", i + 1)))
    }
    fn u64_or(&self, i: usize, name: &str, default: u64) -> Result<u64, ErrorObjectOwned> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| {
                error(TYPE_ERROR, format!("parameter {} ({name}) must be a non-negative integer", i + 1))
            }),
        }
    }
    fn bool_or(&self, i: usize, name: &str, default: bool) -> Result<bool, ErrorObjectOwned> {
        match self.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64() != Some(0)),
            Some(_) => Err(error(TYPE_ERROR, format!("parameter {} ({name}) must be a boolean", i + 1))),
        }
    }
}

fn parse_hash<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ErrorObjectOwned> {
    text.parse().map_err(|_| error(INVALID_PARAMETER, format!("{what} must be 64 hex digits, got {text:?}")))
}

fn decode_hex<T: Decode>(text: &str, what: &str) -> Result<T, ErrorObjectOwned> {
    let bytes =
        hex::decode(text).map_err(|e| error(DESERIALIZATION_ERROR, format!("{what} is not hex: {e}")))?;
    T::decode(&bytes).map_err(|e| error(DESERIALIZATION_ERROR, format!("{what} does not decode: {e}")))
}

fn coins(amount: Amount) -> Value {
    json!(amount.to_base_units() as f64 / 1e8)
}

fn internal(e: ChainError) -> ErrorObjectOwned {
    error(MISC_ERROR, format!("node error: {e}"))
}

fn tx_json(tx: &Transaction, node: &Node) -> Value {
    let network = node.state().chain.params().network;
    let vin: Vec<Value> = tx
        .inputs
        .iter()
        .map(|input| {
            if input.prevout.is_null() {
                json!({ "coinbase": hex::encode(&input.data), "sequence": input.sequence })
            } else {
                json!({
                    "txid": input.prevout.txid.to_string(),
                    "vout": input.prevout.index,
                    "sequence": input.sequence,
                    "witness": input.witness.iter().map(hex::encode).collect::<Vec<_>>(),
                })
            }
        })
        .collect();
    let vout: Vec<Value> = tx
        .outputs
        .iter()
        .enumerate()
        .map(|(n, output)| {
            json!({
                "value": coins(output.amount),
                "n": n,
                "lock": { "version": output.lock.version, "payload": hex::encode(&output.lock.payload) },
                "address": Address { network, lock: output.lock.clone() }.to_string(),
            })
        })
        .collect();
    json!({
        "txid": tx.txid().to_string(),
        "hash": tx.wtxid().to_string(),
        "version": tx.version,
        "size": tx.size(),
        "locktime": tx.lock_time,
        "vin": vin,
        "vout": vout,
        "hex": hex::encode(tx.encode()),
    })
}

fn header_json(node: &Node, hash: &BlockHash) -> Result<Value, ErrorObjectOwned> {
    let state = node.state();
    let chain = &state.chain;
    let entry = chain.entry(hash).ok_or_else(|| error(INVALID_ADDRESS_OR_KEY, "Block not found"))?;
    let header = entry.header;
    let height = entry.record.height;
    let active = chain.is_active(hash);
    let confirmations = if active { i64::from(chain.height().get() - height.get()) + 1 } else { -1 };
    let mut value = json!({
        "hash": hash.to_string(),
        "confirmations": confirmations,
        "height": height.get(),
        "version": header.version,
        "versionHex": format!("{:08x}", header.version),
        "merkleroot": header.merkle_root.to_string(),
        "time": header.time,
        "nonce": header.nonce,
        "bits": format!("{:08x}", header.bits.to_consensus()),
        "chainwork": hex::encode(entry.record.chain_work.to_u256().to_be_bytes()),
        "invalid": entry.record.flags & crate::records::INVALID != 0,
    });
    if height > Height::GENESIS {
        value["previousblockhash"] = json!(header.prev_block.to_string());
    }
    if active {
        if let Some(next) = chain.hash_at(height.next()).filter(|_| height < chain.height()) {
            value["nextblockhash"] = json!(next.to_string());
        }
    }
    Ok(value)
}

fn parse_addresses(args: &Args, node: &Node) -> Result<Vec<Address>, ErrorObjectOwned> {
    let network = node.params().network;
    let value = args.required(0, "addresses")?;
    let list = match value {
        Value::Array(list) => list,
        Value::Object(map) => map
            .get("addresses")
            .and_then(Value::as_array)
            .ok_or_else(|| error(INVALID_PARAMETER, "expected {\"addresses\": [...]}"))?,
        Value::String(_) => std::slice::from_ref(value),
        _ => return Err(error(TYPE_ERROR, "addresses must be a list of strings")),
    };
    if list.is_empty() || list.len() > MAX_ADDRESSES {
        return Err(error(
            INVALID_PARAMETER,
            format!("give 1 to {MAX_ADDRESSES} addresses (this call named {})", list.len()),
        ));
    }
    let mut addresses: Vec<Address> = Vec::with_capacity(list.len());
    for value in list {
        let text = value.as_str().ok_or_else(|| error(TYPE_ERROR, "addresses must be strings"))?;
        let address = Address::parse_for(text, network)
            .map_err(|e| error(INVALID_ADDRESS_OR_KEY, format!("{text}: {e}")))?;
        // An address named twice counts once (what it holds is the same).
        if !addresses.iter().any(|known| known.lock == address.lock) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

fn object_field(args: &Args, field: &str) -> Option<u64> {
    args.get(0).and_then(|v| v.get(field)).and_then(Value::as_u64)
}

fn mempool_error(e: MempoolError) -> ErrorObjectOwned {
    match e {
        MempoolError::MissingInputs(_) => error(VERIFY_ERROR, e.to_string()),
        MempoolError::Confirmed(_) => error(VERIFY_ALREADY_IN_CHAIN, e.to_string()),
        MempoolError::Chain(inner) => internal(inner),
        other => error(VERIFY_REJECTED, other.to_string()),
    }
}

/// Builds the RPC methods over `node`.
///
/// # Panics
/// Never in practice: method names are unique.
#[must_use]
pub fn module(node: Arc<Node>) -> RpcModule<Arc<Node>> {
    let mut m = RpcModule::new(node);
    macro_rules! method {
        ($name:literal, |$args:ident, $node:ident| $body:expr) => {
            m.register_blocking_method($name, |params, ctx, _| -> RpcResult {
                let $args = Args::parse(&params)?;
                let $node: &Node = &ctx;
                $body
            })
            .expect("unique method name");
        };
    }

    method!("getblockchaininfo", |_args, node| {
        let state = node.state();
        let chain = &state.chain;
        let tip = chain.tip_entry();
        let genesis_time = f64::from(chain.params().genesis.header.time);
        let now = unix_now() as f64;
        let progress = if now - f64::from(tip.header.time) < 7200.0 || now <= genesis_time {
            1.0
        } else {
            ((f64::from(tip.header.time) - genesis_time) / (now - genesis_time)).clamp(0.0, 1.0)
        };
        Ok(json!({
            "chain": chain.params().network.name(),
            "blocks": chain.height().get(),
            "headers": chain.best_header().height.get(),
            "bestblockhash": chain.tip().to_string(),
            "bits": format!("{:08x}", tip.header.bits.to_consensus()),
            "time": tip.header.time,
            "mediantime": chain.median_time_past(),
            "verificationprogress": progress,
            "initialblockdownload": progress < 0.9999,
            "chainwork": hex::encode(tip.record.chain_work.to_u256().to_be_bytes()),
            "warnings": "",
        }))
    });
    // Answered from the summary: never waits for a block being connected.
    method!("getbestblockhash", |_args, node| Ok(json!(node.summary().tip.hash.to_string())));
    method!("getblockcount", |_args, node| Ok(json!(node.summary().tip.height.get())));
    method!("getblockhash", |args, node| {
        let height = args.u64_or(0, "height", u64::MAX)?;
        let state = node.state();
        u32::try_from(height)
            .ok()
            .and_then(|h| state.chain.hash_at(Height::new(h)))
            .map(|hash| json!(hash.to_string()))
            .ok_or_else(|| error(INVALID_PARAMETER, "Block height out of range"))
    });
    method!("getblockheader", |args, node| {
        let hash: BlockHash = parse_hash(args.str(0, "blockhash")?, "blockhash")?;
        if args.bool_or(1, "verbose", true)? {
            header_json(node, &hash)
        } else {
            let state = node.state();
            let entry =
                state.chain.entry(&hash).ok_or_else(|| error(INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            Ok(json!(hex::encode(entry.header.to_bytes())))
        }
    });
    method!("getblock", |args, node| {
        let hash: BlockHash = parse_hash(args.str(0, "blockhash")?, "blockhash")?;
        let verbosity = args.u64_or(1, "verbosity", 1)?;
        if verbosity > 2 {
            return Err(error(INVALID_PARAMETER, "verbosity must be 0, 1 or 2"));
        }
        let block = node.state().chain.block(&hash).map_err(internal)?;
        let block = block.ok_or_else(|| error(INVALID_ADDRESS_OR_KEY, "Block not found"))?;
        if verbosity == 0 {
            return Ok(json!(hex::encode(block.encode())));
        }
        let mut value = header_json(node, &hash)?;
        value["size"] = json!(block.size());
        value["nTx"] = json!(block.transactions.len());
        value["tx"] = if verbosity == 1 {
            json!(block.transactions.iter().map(|tx| tx.txid().to_string()).collect::<Vec<_>>())
        } else {
            json!(block.transactions.iter().map(|tx| tx_json(tx, node)).collect::<Vec<_>>())
        };
        Ok(value)
    });
    method!("getrawtransaction", |args, node| {
        let txid: Txid = parse_hash(args.str(0, "txid")?, "txid")?;
        let verbose = args.bool_or(1, "verbose", false)?;
        let tx = match args.get(2) {
            Some(block_hash) => {
                let hash: BlockHash = parse_hash(block_hash.as_str().unwrap_or_default(), "blockhash")?;
                let block = node.state().chain.block(&hash).map_err(internal)?;
                let block = block.ok_or_else(|| error(INVALID_ADDRESS_OR_KEY, "Block hash not found"))?;
                block.transactions.into_iter().find(|tx| tx.txid() == txid)
            }
            None => node.state().mempool.get(&txid).map(|e| e.tx.clone()),
        };
        let tx = tx.ok_or_else(|| {
            error(INVALID_ADDRESS_OR_KEY, "No such transaction in the mempool or the given block (give the block hash as the third parameter, or find it with getaddresstxids)")
        })?;
        Ok(if verbose { tx_json(&tx, node) } else { json!(hex::encode(tx.encode())) })
    });
    method!("sendrawtransaction", |args, node| {
        let tx: Transaction = decode_hex(args.str(0, "hexstring")?, "transaction")?;
        node.submit_transaction(tx).map(|txid| json!(txid.to_string())).map_err(mempool_error)
    });
    method!("testmempoolaccept", |args, node| {
        let list = args
            .required(0, "rawtxs")?
            .as_array()
            .ok_or_else(|| error(TYPE_ERROR, "rawtxs must be a list"))?;
        if list.len() > 25 {
            return Err(error(INVALID_PARAMETER, "at most 25 transactions"));
        }
        let mut results = Vec::new();
        for item in list {
            let tx: Transaction = decode_hex(item.as_str().unwrap_or_default(), "transaction")?;
            let state = node.state();
            let mut result = json!({ "txid": tx.txid().to_string(), "wtxid": tx.wtxid().to_string() });
            match state.mempool.test_accept(&tx, &state.chain, node.verifier()) {
                Ok((fee, _)) => {
                    result["allowed"] = json!(true);
                    result["vsize"] = json!(tx.size());
                    result["fees"] = json!({ "base": coins(fee) });
                }
                Err(e) => {
                    result["allowed"] = json!(false);
                    result["reject-reason"] = json!(e.to_string());
                }
            }
            results.push(result);
        }
        Ok(json!(results))
    });
    method!("getmempoolinfo", |_args, node| {
        let state = node.state();
        let pool = &state.mempool;
        Ok(json!({
            "loaded": true,
            "size": pool.len(),
            "bytes": pool.size(),
            "maxmempool": pool.max_size(),
            "mempoolminfee": pool.min_fee_rate(),
            "minrelaytxfee": MIN_RELAY_FEE_RATE,
            "incrementalrelayfee": INCREMENTAL_FEE_RATE,
            "orphans": pool.orphan_count(),
            "feerate_unit": "base units per byte",
        }))
    });
    method!("getrawmempool", |args, node| {
        let verbose = args.bool_or(0, "verbose", false)?;
        let state = node.state();
        let txids = state.mempool.txids();
        if !verbose {
            return Ok(json!(txids.iter().map(ToString::to_string).collect::<Vec<_>>()));
        }
        let mut map = serde_json::Map::new();
        for txid in txids {
            if let Some(entry) = state.mempool.get(&txid) {
                map.insert(txid.to_string(), mempool_entry_json(entry));
            }
        }
        Ok(Value::Object(map))
    });
    method!("getmempoolentry", |args, node| {
        let txid: Txid = parse_hash(args.str(0, "txid")?, "txid")?;
        let state = node.state();
        let entry = state
            .mempool
            .get(&txid)
            .ok_or_else(|| error(INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))?;
        Ok(mempool_entry_json(entry))
    });
    method!("gettxout", |args, node| {
        let txid: Txid = parse_hash(args.str(0, "txid")?, "txid")?;
        let index = u32::try_from(args.u64_or(1, "n", u64::MAX)?)
            .map_err(|_| error(INVALID_PARAMETER, "n must be an output index"))?;
        let include_mempool = args.bool_or(2, "include_mempool", true)?;
        let outpoint = OutPoint { txid, index };
        let state = node.state();
        if include_mempool && state.mempool.spender(&outpoint).is_some() {
            return Ok(Value::Null);
        }
        let network = state.chain.params().network;
        let (coin, confirmations) = match state.chain.coin(&outpoint).map_err(internal)? {
            Some(coin) => {
                let confirmations = state.chain.height().get() - coin.height.get() + 1;
                (coin, confirmations)
            }
            None if include_mempool => {
                match state.mempool.get(&txid).and_then(|e| e.tx.outputs.get(index as usize)) {
                    Some(output) => (
                        cairn_consensus::check::Coin {
                            output: output.clone(),
                            height: state.chain.height(),
                            is_coinbase: false,
                        },
                        0,
                    ),
                    None => return Ok(Value::Null),
                }
            }
            None => return Ok(Value::Null),
        };
        Ok(json!({
            "bestblock": state.chain.tip().to_string(),
            "confirmations": confirmations,
            "value": coins(coin.output.amount),
            "address": Address { network, lock: coin.output.lock.clone() }.to_string(),
            "coinbase": coin.is_coinbase,
        }))
    });
    method!("gettxoutsetinfo", |_args, node| {
        let state = node.state();
        let digest = state.chain.utxo_digest().map_err(internal)?;
        Ok(json!({
            "height": state.chain.height().get(),
            "bestblock": state.chain.tip().to_string(),
            "txouts": digest.count,
            "total_amount": coins(digest.total),
            "hash_serialized": hex::encode(digest.hash),
        }))
    });
    method!("getmininginfo", |_args, node| {
        let state = node.state();
        Ok(json!({
            "chain": state.chain.params().network.name(),
            "blocks": state.chain.height().get(),
            "bits": format!("{:08x}", state.chain.next_bits().to_consensus()),
            "pooledtx": state.mempool.len(),
            "hashespersec": node.hash_rate.load(Ordering::Relaxed),
            "blocksmined": node.blocks_mined.load(Ordering::Relaxed),
        }))
    });
    method!("getblocktemplate", |_args, node| {
        // The node's own template, checked as a block before it is handed
        // out; the coinbase is the caller's to build.
        let (block, _) = node.template(&Lock::key(cairn_consensus::params::UNSPENDABLE_KEY));
        let state = node.state();
        let parent = state.chain.entry(&block.header.prev_block);
        let height = parent
            .ok_or_else(|| error(MISC_ERROR, "the template's parent is not indexed"))?
            .record
            .height
            .next();
        let bits = block.header.bits;
        let target = bits.to_target().map_err(|e| error(MISC_ERROR, e.to_string()))?;
        let transactions: Vec<Value> = block.transactions[1..]
            .iter()
            .map(|tx| {
                let fee = state.mempool.get(&tx.txid()).map_or(Amount::ZERO, |e| e.fee);
                json!({
                    "data": hex::encode(tx.encode()),
                    "txid": tx.txid().to_string(),
                    "hash": tx.wtxid().to_string(),
                    "fee": fee.to_base_units(),
                })
            })
            .collect();
        let value = block.transactions[0].outputs[0].amount;
        Ok(json!({
            "version": 1,
            "previousblockhash": block.header.prev_block.to_string(),
            "transactions": transactions,
            "coinbasevalue": value.to_base_units(),
            "target": hex::encode(target.to_u256().to_be_bytes()),
            "bits": format!("{:08x}", bits.to_consensus()),
            "height": height.get(),
            "mintime": state.chain.median_time_past() + 1,
            "curtime": block.header.time,
            "sizelimit": cairn_consensus::MAX_BLOCK_SIZE,
        }))
    });
    method!("submitblock", |args, node| {
        let block: Block = decode_hex(args.str(0, "hexdata")?, "block")?;
        match node.submit_block(block) {
            Ok(Accepted::Activated) => Ok(Value::Null),
            Ok(Accepted::Duplicate) => Ok(json!("duplicate")),
            Ok(Accepted::SideBranch | Accepted::Orphan) => Ok(json!("inconclusive")),
            // Not a refusal: the node stops (see Node::abort).
            Err(ChainError::Store(e)) => Err(error(
                MISC_ERROR,
                format!("the block could not be stored ({e}); the node is stopping: submit it again after a restart"),
            )),
            Err(e @ ChainError::StoredUnconnected(_)) => {
                Err(error(MISC_ERROR, format!("{e}; the node is stopping and connects it at the next start")))
            }
            Err(e @ ChainError::Stopped) => Err(error(MISC_ERROR, e.to_string())),
            Err(e) => Err(error(VERIFY_ERROR, format!("block rejected: {e}"))),
        }
    });
    method!("generatetoaddress", |args, node| {
        let count = args.u64_or(0, "nblocks", u64::MAX)?;
        if count == u64::MAX || count > 10_000 {
            return Err(error(INVALID_PARAMETER, "nblocks must be 0 to 10000"));
        }
        let (network, allowed) = {
            let state = node.state();
            (state.chain.params().network, state.chain.params().allow_generate)
        };
        if !allowed {
            return Err(error(
                METHOD_NOT_ALLOWED,
                format!("generatetoaddress is for regtest and devnet, not {}", network.name()),
            ));
        }
        let text = args.str(1, "address")?;
        let address = Address::parse_for(text, network)
            .map_err(|e| error(INVALID_ADDRESS_OR_KEY, format!("{text}: {e}")))?;
        let mut hashes = Vec::new();
        for _ in 0..count {
            let hash =
                crate::mining::mine_one(node, &address.lock, None, crate::mining::AheadOfClock::Refuse)
                    .map_err(|e| error(MISC_ERROR, e))?;
            hashes.push(json!(hash.to_string()));
        }
        Ok(json!(hashes))
    });
    method!("estimatesmartfee", |args, node| {
        let blocks = args.u64_or(0, "conf_target", 1)?.clamp(1, 1008) as u32;
        let state = node.state();
        let rate = state.mempool.estimate_fee_rate(blocks, cairn_consensus::MAX_BLOCK_SIZE);
        Ok(json!({ "feerate": rate, "unit": "base units per byte", "blocks": blocks }))
    });
    method!("stop", |_args, node| {
        node.request_shutdown();
        Ok(json!("Cairn node stopping"))
    });
    method!("getpeerinfo", |_args, node| {
        let peers = node.network().map(crate::p2p::NetworkHandle::peers).unwrap_or_default();
        let list: Vec<Value> = peers
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "addr": p.address,
                    "inbound": p.inbound,
                    "direction": if p.inbound { "inbound" } else { "outbound" },
                    "score": p.score,
                    "synced_blocks": p.best_height,
                    "bytesrecv": p.bytes_in,
                    "bytessent": p.bytes_out,
                    "conntime": p.connected_secs,
                    "subver": p.agent,
                    "pending_headers": p.pending_headers,
                })
            })
            .collect();
        Ok(json!(list))
    });
    method!("getnetworkinfo", |_args, node| {
        let network = node.network();
        let (inbound, outbound) = network.map_or((0, 0), |n| {
            let peers = n.peers();
            let inbound = peers.iter().filter(|p| p.inbound).count();
            (inbound, peers.len() - inbound)
        });
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "subversion": format!("/cairn:{}/", env!("CARGO_PKG_VERSION")),
            "networkactive": network.is_some(),
            "peerid": network.map(|n| n.peer_id().to_string()),
            "localaddresses": network.map(|n| n.listening().iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
            "connections": inbound + outbound,
            "connections_in": inbound,
            "connections_out": outbound,
            "relayfee": MIN_RELAY_FEE_RATE,
            "incrementalfee": INCREMENTAL_FEE_RATE,
        }))
    });
    method!("addnode", |args, node| {
        let text = args.str(0, "node")?;
        let address: libp2p::Multiaddr = text.parse().map_err(|e| {
            error(
                INVALID_PARAMETER,
                format!("{text:?} is not a multiaddr (like /ip4/127.0.0.1/tcp/18733/p2p/<peer id>): {e}"),
            )
        })?;
        let command = args.str(1, "command")?;
        if !matches!(command, "add" | "onetry" | "remove") {
            return Err(error(
                INVALID_PARAMETER,
                format!("command must be add, remove or onetry, not {command:?}"),
            ));
        }
        if command != "remove" {
            crate::p2p::protocol::check_dialable(&address).map_err(|e| error(INVALID_PARAMETER, e))?;
        }
        let network = node.network().ok_or_else(|| error(MISC_ERROR, "the network is not running"))?;
        let result = match command {
            "add" => network.add_node(address, true),
            "onetry" => network.add_node(address, false),
            _ => network.remove_node(address),
        };
        result.map(|()| Value::Null).map_err(|e| error(MISC_ERROR, e))
    });
    method!("disconnectnode", |args, node| {
        let network = node.network().ok_or_else(|| error(MISC_ERROR, "the network is not running"))?;
        let target = args.str(0, "address or peer id")?;
        if !network
            .peers()
            .iter()
            .any(|p| p.id == target || p.address == target || p.address.contains(&format!("/{target}/")))
        {
            return Err(error(-29, format!("{target} is not connected")));
        }
        network.disconnect(target.to_owned()).map(|()| Value::Null).map_err(|e| error(MISC_ERROR, e))
    });
    method!("setban", |args, node| {
        let network = node.network().ok_or_else(|| error(MISC_ERROR, "the network is not running"))?;
        let target = args.str(0, "peer id or IP address")?;
        let valid = target.parse::<libp2p::PeerId>().is_ok() || target.parse::<std::net::IpAddr>().is_ok();
        if !valid {
            return Err(error(
                INVALID_PARAMETER,
                format!("{target:?} is neither a peer id nor an IP address"),
            ));
        }
        let add = match args.str(1, "command")? {
            "add" => true,
            "remove" => false,
            other => {
                return Err(error(INVALID_PARAMETER, format!("command must be add or remove, not {other:?}")))
            }
        };
        let seconds = args.u64_or(2, "bantime", 24 * 3600)?.clamp(1, 10 * 365 * 24 * 3600);
        network.set_ban(target, add, seconds).map(|()| Value::Null).map_err(|e| error(MISC_ERROR, e))
    });
    method!("listbanned", |_args, node| {
        let bans = node.network().map(crate::p2p::NetworkHandle::banned).unwrap_or_default();
        Ok(json!(bans
            .iter()
            .map(|(key, until)| json!({ "address": key, "banned_until": until }))
            .collect::<Vec<_>>()))
    });
    method!("clearbanned", |_args, node| {
        let network = node.network().ok_or_else(|| error(MISC_ERROR, "the network is not running"))?;
        network.clear_bans().map(|()| Value::Null).map_err(|e| error(MISC_ERROR, e))
    });
    method!("getaddressutxos", |args, node| {
        let addresses = parse_addresses(&args, node)?;
        // Read without the state lock: a large answer never holds up blocks
        // or other calls.
        let store = node.store();
        let mut out = Vec::new();
        for address in &addresses {
            for (outpoint, coin) in address_coins_in(store.as_ref(), &address.lock).map_err(internal)? {
                out.push(json!({
                    "address": address.to_string(),
                    "txid": outpoint.txid.to_string(),
                    "outputIndex": outpoint.index,
                    "satoshis": coin.output.amount.to_base_units(),
                    "height": coin.height.get(),
                    "coinbase": coin.is_coinbase,
                }));
            }
        }
        Ok(json!(out))
    });
    method!("getaddressbalance", |args, node| {
        let addresses = parse_addresses(&args, node)?;
        // Read without the state lock: a large answer never holds up blocks
        // or other calls.
        let store = node.store();
        let maturity = node.params().coinbase_maturity;
        let (mut balance, mut immature, mut count) = (0u64, 0u64, 0u64);
        for address in &addresses {
            let coins = address_coins_in(store.as_ref(), &address.lock).map_err(internal)?;
            // The tip after the scan: a coin the scan saw is at or below it.
            let tip = node.summary().tip.height;
            for (_, coin) in coins {
                count += 1;
                let amount = coin.output.amount.to_base_units();
                if coin.is_coinbase && tip.get() + 1 < coin.height.get() + maturity {
                    immature += amount;
                }
                balance += amount;
            }
        }
        Ok(json!({ "balance": balance, "immature": immature, "utxos": count }))
    });
    method!("getaddresstxids", |args, node| {
        let addresses = parse_addresses(&args, node)?;
        let start = object_field(&args, "start").unwrap_or(0);
        let end = object_field(&args, "end").unwrap_or(u64::from(u32::MAX));
        let skip = object_field(&args, "skip").unwrap_or(0) as usize;
        let limit = object_field(&args, "limit").unwrap_or(1_000).min(10_000) as usize;
        // Read without the state lock: a large answer never holds up blocks
        // or other calls.
        let store = node.store();
        let mut rows = Vec::new();
        for address in &addresses {
            for (height, txid) in address_history_in(store.as_ref(), &address.lock).map_err(internal)? {
                if (start..=end).contains(&u64::from(height.get())) {
                    rows.push((height, txid));
                }
            }
        }
        rows.sort();
        rows.dedup();
        let total = rows.len();
        let page: Vec<Value> =
            rows.iter().skip(skip).take(limit).map(|(_, txid)| json!(txid.to_string())).collect();
        let next = (skip + page.len() < total).then_some(skip + page.len());
        Ok(json!({ "txids": page, "total": total, "next": next }))
    });
    method!("getaddressdeltas", |args, node| {
        let addresses = parse_addresses(&args, node)?;
        let start = object_field(&args, "start").unwrap_or(0).min(u64::from(u32::MAX)) as u32;
        let end = object_field(&args, "end").unwrap_or(u64::from(u32::MAX)).min(u64::from(u32::MAX)) as u32;
        let skip = object_field(&args, "skip").unwrap_or(0) as usize;
        let limit = object_field(&args, "limit").unwrap_or(1_000).min(10_000) as usize;
        let locks: Vec<_> = addresses.iter().map(|a| a.lock.clone()).collect();
        // Read without the state lock: a large answer never holds up blocks
        // or other calls.
        let store = node.store();
        // The history is read without the state lock; only placing its
        // heights on the active chain (in memory) holds it. Only the page
        // asked for reads blocks and undo data.
        let history = address_history_of(store.as_ref(), &locks, start..=end).map_err(internal)?;
        let total = history.len();
        let page_rows: Vec<_> = history.into_iter().skip(skip).take(limit).collect();
        let rows = node.state().chain.place_history(&page_rows).map_err(internal)?;
        let deltas = address_deltas_in(store.as_ref(), &locks, &rows).map_err(internal)?;
        let page: Vec<Value> = deltas
            .iter()
            .map(|d| {
                let (received, sent) = (d.received.to_base_units(), d.sent.to_base_units());
                json!({
                    "address": addresses[d.lock_index].to_string(),
                    "txid": d.txid.to_string(),
                    "height": d.height.get(),
                    "blockhash": d.block_hash.to_string(),
                    "received": received,
                    "sent": sent,
                    "satoshis": received as i64 - sent as i64,
                })
            })
            .collect();
        let next = (skip + page.len() < total).then_some(skip + page.len());
        Ok(json!({ "deltas": page, "total": total, "next": next }))
    });
    method!("getaddressmempool", |args, node| {
        let addresses = parse_addresses(&args, node)?;
        let wanted: HashMap<&Lock, &Address> = addresses.iter().map(|a| (&a.lock, a)).collect();
        let state = node.state();
        let mut out = Vec::new();
        // One pass over the pool, whatever the number of addresses.
        for (txid, entry) in state.mempool.entries() {
            for (index, output) in entry.tx.outputs.iter().enumerate() {
                if let Some(address) = wanted.get(&output.lock) {
                    out.push(json!({ "address": address.to_string(), "txid": txid.to_string(), "index": index, "satoshis": output.amount.to_base_units(), "timestamp": entry.time }));
                }
            }
            for (index, input) in entry.tx.inputs.iter().enumerate() {
                let spent = state.mempool.coin(&state.chain, &input.prevout).ok().flatten().map(|c| c.output);
                if let Some((output, address)) = spent.and_then(|o| wanted.get(&o.lock).map(|a| (o, *a))) {
                    out.push(json!({ "address": address.to_string(), "txid": txid.to_string(), "index": index, "satoshis": -(output.amount.to_base_units() as i64), "prevtxid": input.prevout.txid.to_string(), "prevout": input.prevout.index, "timestamp": entry.time }));
                }
            }
        }
        Ok(json!(out))
    });
    m
}

fn mempool_entry_json(entry: &crate::mempool::Entry) -> Value {
    json!({
        "vsize": entry.size,
        "fee": entry.fee.to_base_units(),
        "feerate": entry.fee_rate(),
        "time": entry.time,
        "height": entry.height.get(),
        "wtxid": entry.tx.wtxid().to_string(),
    })
}

/// Starts the server on `addr` with the node's methods, within `limits`
/// (see the `http` module for what a client can make it hold).
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    node: Arc<Node>,
    addr: SocketAddr,
    credentials: Credentials,
    limits: RpcLimits,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    http::serve(module(node), addr, credentials, limits).await
}
