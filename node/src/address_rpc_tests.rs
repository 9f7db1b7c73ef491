//! The address-index RPC methods, called in process through the RPC
//! module: an address named twice counts once, a call naming too many is
//! refused with the cap in its message, and the scans of the coins and
//! the history answer while another thread holds the node's state lock
//! (a block being connected).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use cairn_consensus::{Address, Amount, Network, Params};
use serde_json::{json, Value};

use crate::node::Node;
use crate::store::MemStore;
use crate::tests::{keypair, lock, solve};

fn node_with_coins(blocks: u32) -> (Arc<Node>, String) {
    let node = Node::open(
        Arc::new(MemStore::new()),
        Params::for_network(Network::Regtest),
        std::path::Path::new("/x"),
    )
    .expect("open");
    let key = keypair(3);
    for _ in 0..blocks {
        let block = {
            let state = node.state();
            crate::template::new_block(
                &state.chain,
                &lock(&key),
                Vec::new(),
                Amount::ZERO,
                crate::node::unix_now(),
            )
        };
        node.submit_block(solve(block)).expect("valid");
    }
    let address = Address::from_key(Network::Regtest, key.x_only_public_key().0.serialize()).to_string();
    (Arc::new(node), address)
}

/// Calls `method` on the RPC module of `node` on a thread of its own;
/// the answer, or `None` when none came within `wait`.
fn call(
    node: &Arc<Node>,
    method: &'static str,
    params: Value,
    wait: Duration,
) -> Option<Result<Value, String>> {
    let module = crate::rpc::module(Arc::clone(node));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let mut array = jsonrpsee_core::params::ArrayParams::new();
        for param in params.as_array().expect("positional parameters") {
            array.insert(param).expect("a JSON value encodes");
        }
        let answer = runtime.block_on(module.call::<_, Value>(method, array)).map_err(|e| e.to_string());
        let _ = tx.send(answer);
    });
    rx.recv_timeout(wait).ok()
}

fn ok(node: &Arc<Node>, method: &'static str, params: Value) -> Value {
    match call(node, method, params.clone(), Duration::from_secs(60)) {
        Some(Ok(value)) => value,
        other => panic!("{method} {params}: {other:?}"),
    }
}

#[test]
fn an_address_named_twice_counts_once_and_too_many_are_refused_with_the_cap() {
    let (node, address) = node_with_coins(3);
    let once = ok(&node, "getaddressbalance", json!([[address]]));
    assert_eq!(once["balance"], 3 * 50 * 100_000_000u64);
    assert_eq!(once["utxos"], 3);
    let thrice = json!([[address, address, address]]);
    assert_eq!(ok(&node, "getaddressbalance", thrice.clone()), once);
    assert_eq!(ok(&node, "getaddressutxos", thrice.clone()).as_array().expect("list").len(), 3);
    assert_eq!(ok(&node, "getaddresstxids", thrice.clone())["total"], 3);
    let deltas = ok(&node, "getaddressdeltas", thrice);
    assert_eq!(deltas["total"], 3);
    assert_eq!(deltas["deltas"].as_array().expect("list").len(), 3);
    // The cap counts what the call names, before duplicates fold.
    let at_cap: Vec<&str> = vec![address.as_str(); crate::rpc::MAX_ADDRESSES];
    assert_eq!(ok(&node, "getaddressbalance", json!([at_cap])), once);
    let over: Vec<&str> = vec![address.as_str(); crate::rpc::MAX_ADDRESSES + 1];
    for method in
        ["getaddressbalance", "getaddressutxos", "getaddresstxids", "getaddressdeltas", "getaddressmempool"]
    {
        let error = match call(&node, method, json!([over]), Duration::from_secs(60)) {
            Some(Err(error)) => error,
            other => panic!("{method} with too many addresses: {other:?}"),
        };
        assert!(error.contains("give 1 to 1000 addresses") && error.contains("1001"), "{method}: {error}");
    }
}

#[test]
fn address_scans_answer_while_a_block_holds_the_state_lock() {
    let (node, address) = node_with_coins(2);
    let held = node.state();
    for method in ["getaddressutxos", "getaddressbalance", "getaddresstxids"] {
        let answer = call(&node, method, json!([[address, address]]), Duration::from_secs(20));
        assert!(matches!(answer, Some(Ok(_))), "{method} waited for the state lock (or failed): {answer:?}");
    }
    // Methods that read the chain itself do wait: the lock is really held.
    assert!(call(
        &node,
        "getblockheader",
        json!([node.summary().tip.hash.to_string()]),
        Duration::from_millis(300)
    )
    .is_none());
    drop(held);
}
