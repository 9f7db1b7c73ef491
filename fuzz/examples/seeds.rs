//! Writes the seed corpora (`fuzz/corpus/<target>/`): real encodings from
//! the fuzz chain, a real wallet file, edge values for the arithmetic.
//! Run from `fuzz/`: `cargo +nightly run --release --example seeds`.
//! The corpus is committed; run this again when an encoding changes.

use std::path::Path;

use cairn_consensus::{Address, Amount, Encode, Network, Params, Work, U256};
use cairn_fuzz::{miner_lock, FuzzChain};
use cairn_node::chain::TipSummary;
use cairn_node::p2p::protocol::{Request, Response, Status};
use cairn_wallet::file::{Secrets, WalletFile};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn main() {
    let _ = std::fs::remove_dir_all("corpus");
    let chain = FuzzChain::build();
    let params = Params::for_network(Network::Regtest);
    let spend = chain.spend_first_coinbase();
    let next = chain.next_block(Vec::new(), Amount::ZERO);
    let fee = Amount::from_base_units(1_000).expect("small");
    let with_spend = chain.next_block(vec![spend.clone()], fee);

    // Decoders.
    for (name, block) in [
        ("genesis", &params.genesis),
        ("block1", &chain.blocks[0]),
        ("next", &next),
        ("with_spend", &with_spend),
    ] {
        write("decode_block", name, &block.encode());
        write("decode_header", name, &block.header.to_bytes());
    }
    write("decode_transaction", "coinbase", &chain.blocks[0].transactions[0].encode());
    write("decode_transaction", "spend", &spend.encode());

    // Sync messages, bare (modes 0, 1) and framed (2, 3).
    let tip = &chain.blocks[chain.blocks.len() - 1];
    let status = Status {
        genesis: params.genesis_hash,
        tip: TipSummary {
            hash: tip.block_hash(),
            height: cairn_consensus::Height::new(chain.blocks.len() as u32),
            chain_work: Work::from_u256(U256::from_u64(202)),
        },
    };
    let requests = [
        ("status", Request::Status(status)),
        ("headers", Request::Headers { locator: vec![tip.block_hash(), params.genesis_hash] }),
        ("blocks", Request::Blocks(chain.blocks.iter().take(3).map(|b| b.block_hash()).collect())),
    ];
    for (name, request) in requests {
        let bytes = request.to_bytes();
        write("sync_codec", &format!("request_{name}"), &[[0].as_slice(), &bytes].concat());
        write("sync_codec", &format!("framed_request_{name}"), &[[2].as_slice(), &framed(&bytes)].concat());
    }
    let responses = [
        ("status", Response::Status(status)),
        ("headers", Response::Headers(chain.blocks.iter().take(3).map(|b| b.header).collect())),
        ("blocks", Response::Blocks(vec![chain.blocks[0].clone(), with_spend.clone()])),
        ("busy", Response::Busy),
    ];
    for (name, response) in responses {
        let bytes = response.to_bytes();
        write("sync_codec", &format!("answer_{name}"), &[[1].as_slice(), &bytes].concat());
        write("sync_codec", &format!("framed_answer_{name}"), &[[3].as_slice(), &framed(&bytes)].concat());
    }

    // Gossip: a valid next block, a block carrying a spend, the spend, junk.
    write("gossip", "next_block", &[[0].as_slice(), &next.encode()].concat());
    write("gossip", "block_with_spend", &[[0].as_slice(), &with_spend.encode()].concat());
    write("gossip", "old_block", &[[0].as_slice(), &chain.blocks[5].encode()].concat());
    write("gossip", "spend", &[[1].as_slice(), &spend.encode()].concat());

    // RPC: every method (as the target orders them) with a few shapes of
    // parameters built from the chain.
    let module = cairn_node::rpc::module(chain.node.clone());
    let mut methods: Vec<&str> = module.method_names().filter(|m| *m != "stop").collect();
    methods.sort_unstable();
    let address = Address { network: Network::Regtest, lock: miner_lock() }.to_string();
    let block_hash = chain.blocks[3].block_hash().to_string();
    let txid = chain.blocks[0].transactions[0].txid().to_string();
    let shapes = [
        serde_json::json!([]),
        serde_json::json!([1]),
        serde_json::json!([block_hash, 2]),
        serde_json::json!([txid, 0, true]),
        serde_json::json!([address]),
        serde_json::json!([[address]]),
        serde_json::json!([{ "addresses": [address], "start": 1, "end": 50 }]),
        serde_json::json!([hex::encode(spend.encode())]),
        serde_json::json!([[hex::encode(spend.encode())]]),
        serde_json::json!([hex::encode(next.encode())]),
        serde_json::json!([1, address]),
        serde_json::json!(["127.0.0.1", "add", 60]),
        serde_json::json!(["/ip4/127.0.0.1/tcp/1", "onetry"]),
    ];
    for (index, method) in methods.iter().enumerate() {
        for (shape, params) in shapes.iter().enumerate() {
            let text = serde_json::to_vec(params).expect("JSON");
            write("rpc", &format!("{method}_{shape}"), &[[index as u8].as_slice(), &text].concat());
        }
    }

    // A real wallet file for each network's cost.
    let dir = std::env::temp_dir().join(format!("cairn-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp folder");
    for network in [Network::Regtest, Network::Main] {
        let path = dir.join(network.name());
        let secrets = Secrets { mnemonic: "abandon ".repeat(11) + "about", receive_next: 3, change_next: 1 };
        WalletFile::create(&path, network, "fuzz", &secrets).expect("wallet written");
        write("wallet_file", network.name(), &std::fs::read(&path).expect("wallet read"));
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Field elements: zero, one, the generator's x, p - 1, p, all ones.
    let p = "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f";
    let p_minus_1 = "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2e";
    let g = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    for (name, x) in [("p", p), ("p_minus_1", p_minus_1), ("g", g)] {
        write("x_coordinate", name, &hex::decode(x).expect("hex"));
    }
    write("x_coordinate", "zero", &[0; 32]);
    write("x_coordinate", "ones", &[0xff; 32]);
    let mut one = [0; 32];
    one[31] = 1;
    write("x_coordinate", "one", &one);

    // U256: limits and compact forms at their edges.
    let limit = |bits: u32| cairn_consensus::CompactTarget::from_consensus(bits).to_target().expect("target");
    let main = limit(0x1d00_ffff).to_u256().to_le_bytes();
    let regtest = limit(0x207f_ffff).to_u256().to_le_bytes();
    for (name, a, b, compact) in [
        ("main_regtest", main, regtest, 0x1d00_ffffu32),
        ("ones_one", [0xff; 32], one_le(), 0x2100_ffff),
        ("zero_ones", [0; 32], [0xff; 32], 0x0300_8000),
        ("negative", regtest, main, 0x0492_3456),
        ("overflow", main, main, 0x2301_0000),
    ] {
        let mut seed = [a.as_slice(), b.as_slice()].concat();
        seed.extend_from_slice(&u64::MAX.to_le_bytes());
        seed.extend_from_slice(&200u16.to_le_bytes());
        seed.extend_from_slice(&compact.to_le_bytes());
        write("u256", name, &seed);
    }

    // aserti3-2d: on schedule, far behind, far ahead, each schedule.
    for schedule in 0u8..4 {
        for (name, height, time) in
            [("on", 10u64, 600i64 * 11), ("behind", 10, 1i64 << 40), ("ahead", 1u64 << 40, 0)]
        {
            let mut seed = vec![schedule];
            seed.extend_from_slice(&1u64.to_le_bytes());
            seed.extend_from_slice(&0i64.to_le_bytes());
            seed.extend_from_slice(&main);
            seed.extend_from_slice(&height.to_le_bytes());
            seed.extend_from_slice(&time.to_le_bytes());
            write("asert", &format!("{schedule}_{name}"), &seed);
        }
    }

    // Merkle: sizes around powers of two, with and without duplicates.
    for (name, leaves) in [
        ("one", &b"a"[..]),
        ("two_equal", b"aa"),
        ("three", b"abc"),
        ("odd_dup_end", b"abcc"),
        ("six", b"abcdef"),
        ("mutated_six", b"abcdefef"),
        ("seventeen", b"abcdefghijklmnopq"),
    ] {
        write("merkle", name, leaves);
    }
    println!("seeds written to fuzz/corpus");
}

fn one_le() -> [u8; 32] {
    let mut one = [0; 32];
    one[0] = 1;
    one
}
