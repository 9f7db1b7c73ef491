//! The project's own test vectors (docs/vectors.json, quoted in
//! docs/protocol.md): a signed transaction with its txid, wtxid, digests and
//! per-input messages; every network's genesis block; addresses; the
//! wallet's key derivation; the UTXO set digest `gettxoutsetinfo` answers.
//! The test recomputes them all and compares. `CAIRN_WRITE_VECTORS=1`
//! rewrites the file after a deliberate change, and the run still fails,
//! naming every value that changed: a changed rule never passes silently.

use cairn_consensus::sighash::{sign_inputs, SighashCache};
use cairn_consensus::transaction::{Lock, OutPoint, Transaction, TxIn, TxOut};
use cairn_consensus::{Address, Amount, Encode, Network, Txid};
use secp256k1::{Keypair, Secp256k1, SecretKey};
use serde_json::{json, Value};

fn keypair(byte: u8) -> Keypair {
    let secret = SecretKey::from_byte_array(&[byte; 32]).expect("valid secret");
    Keypair::from_secret_key(&Secp256k1::new(), &secret)
}

fn x_only(keypair: &Keypair) -> [u8; 32] {
    keypair.x_only_public_key().0.serialize()
}

fn compute() -> Value {
    let secp = Secp256k1::new();
    let network = Network::Main;
    let params = network.params();
    let (alice, bob) = (keypair(0x11), keypair(0x22));
    let spent = [
        TxOut { amount: Amount::from_coins(50), lock: Lock::key(x_only(&alice)) },
        TxOut {
            amount: Amount::from_base_units(1_234_567_890).expect("in range"),
            lock: Lock::key(x_only(&alice)),
        },
    ];
    let prevouts = [
        OutPoint { txid: "a1".repeat(32).parse::<Txid>().expect("hex"), index: 0 },
        OutPoint { txid: "b2".repeat(32).parse::<Txid>().expect("hex"), index: 3 },
    ];
    let mut tx = Transaction {
        version: 1,
        inputs: prevouts
            .iter()
            .map(|p| TxIn {
                prevout: *p,
                data: Vec::new(),
                sequence: 0xffff_fffd,
                witness: cairn_consensus::Witness::new(),
            })
            .collect(),
        outputs: vec![
            TxOut { amount: Amount::from_coins(60), lock: Lock::key(x_only(&bob)) },
            TxOut {
                amount: Amount::from_base_units(234_557_890).expect("in range"),
                lock: Lock::key(x_only(&alice)),
            },
        ],
        lock_time: 0,
    };
    let spent_refs: Vec<&TxOut> = spent.iter().collect();
    let signed = sign_inputs(&secp, &mut tx, &spent_refs, params.genesis_hash, &alice, &[0u8; 32]);
    assert_eq!(signed, 2);
    let cache = SighashCache::new(&tx, &spent_refs, params.genesis_hash);
    let genesis: Vec<Value> = Network::ALL
        .iter()
        .map(|n| {
            let p = n.params();
            json!({
                "network": n.name(),
                "hash": p.genesis_hash.to_string(),
                "header_hex": hex::encode(p.genesis.header.to_bytes()),
                "block_hex": hex::encode(p.genesis.encode()),
                "coinbase_txid": p.genesis.transactions[0].txid().to_string(),
            })
        })
        .collect();
    let addresses: Vec<Value> = Network::ALL
        .iter()
        .flat_map(|n| {
            [&alice, &bob].map(|k| {
                json!({
                    "network": n.name(),
                    "key": hex::encode(x_only(k)),
                    "address": Address::from_key(*n, x_only(k)).to_string(),
                })
            })
        })
        .collect();
    json!({
        "transaction": {
            "network": network.name(),
            "genesis_hash": params.genesis_hash.to_string(),
            "secret_keys": [hex::encode([0x11u8; 32]), hex::encode([0x22u8; 32])],
            "aux_rand": hex::encode([0u8; 32]),
            "spent_outputs_hex": spent.iter().map(|o| hex::encode(o.encode())).collect::<Vec<_>>(),
            "hex": hex::encode(tx.encode()),
            "base_hex": hex::encode(tx.encode_base()),
            "txid": tx.txid().to_string(),
            "wtxid": tx.wtxid().to_string(),
            "sha_prevouts": hex::encode(cache.sha_prevouts),
            "sha_amounts": hex::encode(cache.sha_amounts),
            "sha_locks": hex::encode(cache.sha_locks),
            "sha_sequences": hex::encode(cache.sha_sequences),
            "sha_outputs": hex::encode(cache.sha_outputs),
            "sighashes": (0..tx.inputs.len() as u32).map(|i| hex::encode(cache.message(i))).collect::<Vec<_>>(),
        },
        "genesis": genesis,
        "addresses": addresses,
        "wallet": wallet_vectors(),
        "utxo_set": utxo_set_vector(&alice, &bob),
    })
}

/// `gettxoutsetinfo`'s digest of a small UTXO set (docs/protocol.md, 9.4):
/// three coins, with the records the digest hashes, computed by the same
/// function the node answers with.
fn utxo_set_vector(alice: &Keypair, bob: &Keypair) -> Value {
    use cairn_consensus::check::Coin;
    use cairn_consensus::Height;
    use cairn_node::records::{coin_bytes, outpoint_key};
    use cairn_node::store::{Batch, Cf, MemStore, Store};
    let coin = |units: u64, height: u32, is_coinbase: bool, key: &Keypair| Coin {
        output: TxOut {
            amount: Amount::from_base_units(units).expect("in range"),
            lock: Lock::key(x_only(key)),
        },
        height: Height::new(height),
        is_coinbase,
    };
    let coins = [
        (
            OutPoint { txid: "d4".repeat(32).parse().expect("hex"), index: 1 },
            coin(1_234_567_890, 7, false, bob),
        ),
        (
            OutPoint { txid: "c3".repeat(32).parse().expect("hex"), index: 0 },
            coin(5_000_000_000, 1, true, alice),
        ),
        (OutPoint { txid: "d4".repeat(32).parse().expect("hex"), index: 0 }, coin(1_000, 7, false, alice)),
    ];
    let store = MemStore::new();
    let mut batch = Batch::new();
    for (outpoint, coin) in &coins {
        batch.put(Cf::Utxo, outpoint_key(outpoint), coin_bytes(coin));
    }
    store.write(batch).expect("in memory");
    let digest = cairn_node::chain::utxo_digest(&store).expect("digest");
    let mut records: Vec<(Vec<u8>, Vec<u8>)> =
        coins.iter().map(|(outpoint, coin)| (outpoint_key(outpoint).to_vec(), coin_bytes(coin))).collect();
    records.sort();
    json!({
        "coins": coins.iter().map(|(outpoint, coin)| json!({
            "txid": outpoint.txid.to_string(),
            "index": outpoint.index,
            "amount": coin.output.amount.to_base_units(),
            "height": coin.height.get(),
            "coinbase": coin.is_coinbase,
            "lock_hex": hex::encode(coin.output.lock.encode()),
        })).collect::<Vec<_>>(),
        "records_in_order": records.iter().map(|(key, value)| json!({
            "key_hex": hex::encode(key),
            "value_hex": hex::encode(value),
        })).collect::<Vec<_>>(),
        "txouts": digest.count,
        "total_amount": digest.total.to_base_units(),
        "hash_serialized": hex::encode(digest.hash),
    })
}

/// Where `published` and `computed` differ, as JSON paths.
fn differences(published: &Value, computed: &Value, path: &str, out: &mut Vec<String>) {
    match (published, computed) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                differences(x, y, &format!("{path}.{key}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

/// The wallet's derivation (docs/operations.md, "The wallet"): BIP-39's
/// all-zero-entropy mnemonic, no BIP-39 passphrase, on every network.
fn wallet_vectors() -> Value {
    use cairn_wallet::keys::{account_path, parse_mnemonic, KeyChain, Keychain};
    let words =
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let mnemonic = parse_mnemonic(words).expect("BIP-39 vector");
    let networks: Vec<Value> = Network::ALL
        .iter()
        .map(|&network| {
            let keys = Keychain::new(&mnemonic, network).expect("derives");
            let at = |chain, index| keys.address(chain, index).expect("address").to_string();
            json!({
                "network": network.name(),
                "account": account_path(network),
                "receive_0": at(KeyChain::Receive, 0),
                "receive_1": at(KeyChain::Receive, 1),
                "change_0": at(KeyChain::Change, 0),
            })
        })
        .collect();
    json!({ "mnemonic": words, "derivations": networks })
}

fn docs_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name)
}

#[test]
fn published_vectors_match_the_code() {
    let computed = compute();
    let path = docs_path("vectors.json");
    let published: Value = serde_json::from_slice(&std::fs::read(&path).expect("docs/vectors.json exists"))
        .expect("docs/vectors.json is JSON");
    let mut changed = Vec::new();
    differences(&published, &computed, "vectors", &mut changed);
    if !changed.is_empty() {
        // Rewriting never makes the run pass: a changed rule must be seen.
        let rewritten = std::env::var_os("CAIRN_WRITE_VECTORS").is_some();
        if rewritten {
            let text = serde_json::to_string_pretty(&computed).expect("serializable") + "\n";
            std::fs::write(&path, text).expect("write docs/vectors.json");
        }
        panic!(
            "docs/vectors.json {} the code in {} place(s):\n  {}\n{}",
            if rewritten { "was rewritten: it differed from" } else { "differs from" },
            changed.len(),
            changed.join("\n  "),
            if rewritten {
                "check that each change is deliberate (and protocol.md quotes the new values), then run again without CAIRN_WRITE_VECTORS"
            } else {
                "if the change is deliberate, run once with CAIRN_WRITE_VECTORS=1 to rewrite the file"
            }
        );
    }

    // The spec quotes the same values.
    let spec = std::fs::read_to_string(docs_path("protocol.md")).expect("docs/protocol.md exists");
    let tx = &computed["transaction"];
    for key in ["txid", "wtxid", "hex", "sha_prevouts", "sha_outputs"] {
        let value = tx[key].as_str().expect("string");
        assert!(spec.contains(value), "protocol.md quotes transaction {key}");
    }
    for sighash in tx["sighashes"].as_array().expect("list") {
        assert!(spec.contains(sighash.as_str().expect("string")), "protocol.md quotes each sighash");
    }
    for genesis in computed["genesis"].as_array().expect("list") {
        for key in ["hash", "header_hex"] {
            assert!(
                spec.contains(genesis[key].as_str().expect("string")),
                "protocol.md quotes genesis {key}"
            );
        }
    }
    for address in computed["addresses"].as_array().expect("list") {
        assert!(spec.contains(address["address"].as_str().expect("string")), "protocol.md quotes addresses");
    }
    let utxo_set = &computed["utxo_set"];
    assert!(
        spec.contains(utxo_set["hash_serialized"].as_str().expect("string")),
        "protocol.md quotes the UTXO set's hash_serialized"
    );
    for record in utxo_set["records_in_order"].as_array().expect("list") {
        for key in ["key_hex", "value_hex"] {
            assert!(
                spec.contains(record[key].as_str().expect("string")),
                "protocol.md quotes each UTXO record"
            );
        }
    }
    for derivation in computed["wallet"]["derivations"].as_array().expect("list") {
        for key in ["receive_0", "receive_1", "change_0"] {
            let address = derivation[key].as_str().expect("string");
            assert!(spec.contains(address), "protocol.md quotes the wallet's {key} address {address}");
        }
    }
}

#[test]
fn published_addresses_parse_back_and_refuse_other_networks() {
    let computed = compute();
    for entry in computed["addresses"].as_array().expect("list") {
        let text = entry["address"].as_str().expect("address");
        let network: Network = entry["network"].as_str().expect("network").parse().expect("known network");
        let address = Address::parse_for(text, network).expect("parses for its network");
        assert_eq!(hex::encode(&address.lock.payload), entry["key"].as_str().expect("key"));
        assert_eq!(Address::parse_for(&text.to_uppercase(), network).as_ref(), Ok(&address));
        let other = if network == Network::Main { Network::Devnet } else { Network::Main };
        assert_eq!(
            Address::parse_for(text, other),
            Err(cairn_consensus::AddressError::WrongNetwork { found: network, expected: other })
        );
        // One changed character breaks the checksum.
        let mut chars: Vec<char> = text.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(Address::parse_any(&typo), Err(cairn_consensus::AddressError::Bech32(_))));
    }
}
