//! Every JSON-RPC method's parameter handling, through the node's RPC
//! module over a small regtest chain: the first byte picks the method, the
//! rest is its parameters as JSON. The answer is always a JSON-RPC result
//! or a JSON-RPC error, never an internal error (the store is in memory and
//! cannot fail) and never a panic.
//!
//! Left out: `stop` (it takes no parameters and ends the node for every
//! later input), and `generatetoaddress` with more than 3 blocks (valid
//! counts up to 10,000 are allowed; mining them is not parameter handling).
#![no_main]

use std::sync::{Arc, OnceLock};

use cairn_fuzz::FuzzChain;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

struct Harness {
    runtime: tokio::runtime::Runtime,
    module: jsonrpsee::RpcModule<Arc<cairn_node::node::Node>>,
    methods: Vec<&'static str>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let chain = FuzzChain::build();
        let module = cairn_node::rpc::module(chain.node);
        let mut methods: Vec<&'static str> = module.method_names().filter(|m| *m != "stop").collect();
        methods.sort_unstable();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Harness { runtime, module, methods }
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, params)) = input.split_first() else { return };
    let harness = harness();
    let method = harness.methods[usize::from(pick) % harness.methods.len()];
    let Ok(params) = serde_json::from_slice::<Value>(params) else { return };
    if method == "generatetoaddress" && params.get(0).and_then(Value::as_u64).is_some_and(|n| n > 3) {
        return;
    }
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
    let (answer, _) = harness
        .runtime
        .block_on(harness.module.raw_json_request(&request, 1))
        .expect("a request serde_json wrote parses");
    let answer: Value = serde_json::from_str(answer.get()).expect("answers are JSON");
    assert_eq!(answer["id"], json!(1), "{answer}");
    match (answer.get("result"), answer.get("error")) {
        (Some(_), None) => {}
        (None, Some(error)) => {
            let code = error["code"].as_i64().expect("error codes are integers");
            assert_ne!(code, -32603, "{method} {params}: internal error {error}");
            assert!(error["message"].is_string(), "{error}");
        }
        _ => panic!("{method}: neither one result nor one error: {answer}"),
    }
});
