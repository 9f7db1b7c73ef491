//! The `cairn-wallet` binary against a real regtest `cairn-node` process:
//! create, restore, receive, send, replace by fee, and every error a user
//! can run into, each from a command a user would type.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_consensus::{Amount, Network};
use cairn_wallet::keys::{parse_mnemonic, KeyChain, Keychain};
use serde_json::{json, Value};

use crate::support::{binary, NodeProcess};

const COIN: u64 = 100_000_000;

/// One wallet file, driven through the binary against the node in `datadir`.
struct WalletCli {
    datadir: PathBuf,
    file: PathBuf,
    passphrase_file: PathBuf,
}

impl WalletCli {
    fn new(datadir: &Path, name: &str) -> Self {
        let passphrase_file = datadir.join(format!("{name}.pass"));
        std::fs::write(&passphrase_file, format!("pass phrase of {name}\n")).expect("write passphrase");
        Self { datadir: datadir.to_path_buf(), file: datadir.join(format!("{name}.json")), passphrase_file }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("cairn-wallet"));
        command
            .args(["--network", "regtest", "--datadir"])
            .arg(&self.datadir)
            .arg("--wallet")
            .arg(&self.file)
            .arg("--passphrase-file")
            .arg(&self.passphrase_file)
            .args(args)
            .env_remove("CAIRN_PASSPHRASE")
            .env_remove("CAIRN_MNEMONIC")
            .stdin(std::process::Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running cairn-wallet")
    }

    /// Runs with `--json` and expects success.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "cairn-wallet {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("cairn-wallet {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
        })
    }

    /// Expects failure; returns what it printed on standard error.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(!output.status.success(), "cairn-wallet {args:?} should have failed");
        assert_eq!(output.status.code(), Some(1), "a clear error, not a crash: {output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn create(&self) -> (String, String) {
        let created = self.json(&["create"]);
        (
            created["mnemonic"].as_str().expect("words").to_owned(),
            created["address"].as_str().expect("address").to_owned(),
        )
    }

    fn balance(&self) -> (u64, u64, u64) {
        let b = self.json(&["balance"]);
        let units =
            |key: &str| b[key].as_str().expect("amount").parse::<Amount>().expect("coins").to_base_units();
        (units("confirmed"), units("unconfirmed"), units("immature"))
    }
}

fn other_address(seed: u8) -> String {
    let secp = secp256k1::Secp256k1::new();
    let key = secp256k1::Keypair::from_seckey_slice(&secp, &[seed; 32]).expect("key");
    cairn_consensus::Address::from_key(Network::Regtest, key.x_only_public_key().0.serialize()).to_string()
}

fn units(text: &Value) -> u64 {
    text.as_str().expect("amount text").parse::<Amount>().expect("coins").to_base_units()
}

#[test]
fn send_between_two_wallets_then_restore_from_the_mnemonic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let first = WalletCli::new(dir.path(), "first");
    let second = WalletCli::new(dir.path(), "second");
    let (words, mining_address) = first.create();
    assert_eq!(words.split(' ').count(), 24);
    let (_, payee) = second.create();

    node.rpc.ok("generatetoaddress", json!([101, mining_address]));
    // Block 1's coinbase has 101 confirmations: spendable; blocks 2-101 are immature.
    assert_eq!(first.balance(), (50 * COIN, 0, 100 * 50 * COIN));
    assert_eq!(second.balance(), (0, 0, 0));

    let sent = first.json(&["send", &payee, "12.5"]);
    let fee = units(&sent["fee"]);
    assert!(fee >= sent["size"].as_u64().expect("size"), "pays at least the minimum rate on its real size");
    let change_address = sent["change"]["address"].as_str().expect("change").to_owned();
    let keys = Keychain::new(&parse_mnemonic(&words).expect("words"), Network::Regtest).expect("keys");
    assert_eq!(change_address, keys.address(KeyChain::Change, 0).expect("address").to_string());
    assert_eq!(units(&sent["change"]["amount"]), 50 * COIN - 1_250_000_000 - fee);
    let mempool = node.rpc.ok("getrawmempool", json!([]));
    assert_eq!(mempool, json!([sent["txid"]]));
    // Before a block: the spent coin is gone, the change and the payment are unconfirmed.
    assert_eq!(first.balance(), (0, 50 * COIN - 1_250_000_000 - fee, 100 * 50 * COIN));
    assert_eq!(second.balance(), (0, 1_250_000_000, 0));

    node.rpc.ok("generatetoaddress", json!([1, other_address(77)]));
    // Block 2's coinbase matured with that block.
    assert_eq!(first.balance(), (50 * COIN + 50 * COIN - 1_250_000_000 - fee, 0, 99 * 50 * COIN));
    assert_eq!(second.balance(), (1_250_000_000, 0, 0));

    let history = first.json(&["history"]);
    let rows = history.as_array().expect("rows");
    assert_eq!(rows.len(), 102, "101 coinbases and one payment");
    let payment = rows.iter().find(|r| r["txid"] == sent["txid"]).expect("the payment is in the history");
    assert_eq!(
        payment["amount"],
        format!("-{}", Amount::from_base_units(1_250_000_000 + fee).expect("amount"))
    );
    assert_eq!(payment["height"], 102);
    let received = second.json(&["history"]);
    assert_eq!(
        received,
        json!([{ "txid": sent["txid"], "height": 102, "confirmations": 1, "amount": "+12.50000000" }])
    );
    let utxos = first.json(&["utxos"]);
    assert!(utxos.as_array().expect("coins").iter().any(|c| c["address"] == change_address.as_str()));

    // Restore into a new file: same coins, balance, history, and next address.
    let restored = WalletCli::new(dir.path(), "restored");
    let words_file = dir.path().join("words.txt");
    std::fs::write(&words_file, format!("{}\n", words.to_uppercase())).expect("write words");
    let outcome = restored.json(&["restore", "--mnemonic-file", words_file.to_str().expect("utf-8")]);
    assert_eq!(outcome["scanned"], true);
    assert_eq!(outcome["receive_next"], 1);
    assert_eq!(outcome["change_next"], 1);
    assert_eq!(restored.balance(), first.balance());
    assert_eq!(restored.json(&["history"]), history);
    assert_eq!(restored.json(&["utxos"]), first.json(&["utxos"]));
    let next = first.json(&["address"]);
    assert_eq!(restored.json(&["address"]), next);
    assert_eq!(next["index"], 1);
    node.stop();
}

#[test]
fn a_stuck_payment_is_replaced_by_a_higher_fee_and_only_the_replacement_confirms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let wallet = WalletCli::new(dir.path(), "payer");
    let (_, address) = wallet.create();
    node.rpc.ok("generatetoaddress", json!([101, address]));
    let payee = other_address(5);

    let slow = wallet.json(&["send", &payee, "3", "--fee-rate", "1"]);
    assert_eq!(slow["fee_rate"], 1);
    let err = wallet.fails(&["bump-fee", slow["txid"].as_str().expect("txid"), "--fee-rate", "1"]);
    assert!(err.contains("a replacement must pay at least 2"), "{err}");
    let fast = wallet.json(&["bump-fee", slow["txid"].as_str().expect("txid"), "--fee-rate", "20"]);
    assert_eq!(fast["replaces"], slow["txid"]);
    assert!(units(&fast["fee"]) >= 20 * fast["size"].as_u64().expect("size"));
    assert_eq!(fast["amount"], "3.00000000", "the payee gets the same");
    assert_eq!(node.rpc.ok("getrawmempool", json!([])), json!([fast["txid"]]));

    let block = node.rpc.ok("generatetoaddress", json!([1, other_address(6)]));
    let confirmed = node.rpc.ok("getblock", json!([block[0], 1]));
    let txids = confirmed["tx"].as_array().expect("txids");
    assert!(txids.contains(&fast["txid"]));
    assert!(!txids.contains(&slow["txid"]));
    let paid = node.rpc.ok("getaddressbalance", json!([[payee]]));
    assert_eq!(paid["balance"], 3 * COIN);
    let err = wallet.fails(&["bump-fee", fast["txid"].as_str().expect("txid")]);
    assert!(err.contains("not in the node's mempool"), "{err}");
    node.stop();
}

#[test]
fn no_broadcast_prints_a_transaction_any_node_accepts_and_all_empties_the_wallet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let wallet = WalletCli::new(dir.path(), "cold");
    let (_, address) = wallet.create();
    node.rpc.ok("generatetoaddress", json!([102, address]));
    let payee = other_address(8);

    let printed = wallet.run(&["send", &payee, "1.25", "--no-broadcast"]);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let hex = String::from_utf8(printed.stdout).expect("utf-8").trim().to_owned();
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()) && !hex.is_empty(), "{hex}");
    assert_eq!(node.rpc.ok("getrawmempool", json!([])), json!([]), "nothing was sent");
    let verdict = node.rpc.ok("testmempoolaccept", json!([[hex]]));
    assert_eq!(verdict[0]["allowed"], true, "{verdict}");
    let txid = node.rpc.ok("sendrawtransaction", json!([hex]));
    node.rpc.ok("generatetoaddress", json!([1, other_address(9)]));
    assert_eq!(node.rpc.ok("getaddressbalance", json!([[payee]]))["balance"], 125_000_000);
    assert_eq!(node.rpc.ok("getrawmempool", json!([])), json!([]));
    assert!(wallet.json(&["history"]).as_array().expect("rows").iter().any(|r| r["txid"] == txid));

    // Everything spendable (three mature coinbases less 1.25 and the fee) in one payment.
    let (confirmed, _, immature) = wallet.balance();
    let all = wallet.json(&["send", &payee, "all"]);
    assert!(all["change"].is_null());
    assert_eq!(units(&all["amount"]) + units(&all["fee"]), confirmed);
    node.rpc.ok("generatetoaddress", json!([1, other_address(9)]));
    let (after, unconfirmed, _) = wallet.balance();
    // One more coinbase matured with that block; nothing else is left.
    assert_eq!((after, unconfirmed), (50 * COIN, 0));
    assert_eq!(immature, 99 * 50 * COIN, "blocks 4 to 102 at height 103");
    node.stop();
}

#[test]
fn every_error_is_clear_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let wallet = WalletCli::new(dir.path(), "careful");

    let err = wallet.fails(&["balance"]);
    assert!(err.contains("no wallet at") && err.contains("cairn-wallet create"), "{err}");
    let (words, address) = wallet.create();
    node.rpc.ok("generatetoaddress", json!([101, address]));
    let file_before = std::fs::read(&wallet.file).expect("wallet file");

    let err = wallet.fails(&["create"]);
    assert!(err.contains("already exists"), "{err}");
    let err = wallet.fails(&["restore"]);
    assert!(err.contains("already exists"), "{err}");

    // Insufficient funds: says what is spendable and what is immature.
    let err = wallet.fails(&["send", &other_address(1), "100"]);
    assert!(err.contains("insufficient funds") && err.contains("50.00000000 is spendable"), "{err}");
    assert!(err.contains("5000.00000000 more is immature"), "{err}");

    // A mistyped address fails its checksum.
    let mut typo = other_address(1);
    let last = typo.pop().expect("char");
    typo.push(if last == 'q' { 'p' } else { 'q' });
    let err = wallet.fails(&["send", &typo, "1"]);
    assert!(err.contains("bad address") && err.contains("not a valid address"), "{err}");

    // An address of another network says which.
    let secp = secp256k1::Secp256k1::new();
    let key = secp256k1::Keypair::from_seckey_slice(&secp, &[3; 32]).expect("key");
    let devnet = cairn_consensus::Address::from_key(Network::Devnet, key.x_only_public_key().0.serialize());
    let err = wallet.fails(&["send", &devnet.to_string(), "1"]);
    assert!(err.contains("is for the devnet network, not regtest"), "{err}");

    let err = wallet.fails(&["send", &other_address(1), "0.000001"]);
    assert!(err.contains("below the dust limit"), "{err}");
    let err = wallet.fails(&["send", &other_address(1), "1.2.3"]);
    assert!(err.contains("bad amount"), "{err}");
    let err = wallet.fails(&["send", &other_address(1), "1", "--fee-rate", "0"]);
    assert!(err.contains("fee rate 0"), "{err}");
    let err = wallet.fails(&["bump-fee", "nothex"]);
    assert!(err.contains("not a transaction id"), "{err}");

    let err = wallet.fails(&["--rpc", "http://127.0.0.1:1", "balance"]);
    assert!(err.contains("cannot reach the node at http://127.0.0.1:1"), "{err}");
    let err = wallet.fails(&["--rpc-user", "who", "--rpc-password", "guess", "balance"]);
    assert!(err.contains("refused the credentials"), "{err}");

    std::fs::write(&wallet.passphrase_file, "not the passphrase").expect("write");
    let err = wallet.fails(&["balance"]);
    assert!(err.contains("wrong passphrase"), "{err}");
    let output = Command::new(binary("cairn-wallet"))
        .args(["--network", "regtest", "--wallet"])
        .arg(&wallet.file)
        .arg("balance")
        .env_remove("CAIRN_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no passphrase: give --passphrase-file"));
    let output = Command::new(binary("cairn-wallet"))
        .args(["--network", "devnet", "--wallet"])
        .arg(&wallet.file)
        .arg("balance")
        .env("CAIRN_PASSPHRASE", "pass phrase of careful")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("is a regtest wallet; run with --network regtest"), "{err}");

    let fresh = WalletCli::new(dir.path(), "fresh");
    let words_file = dir.path().join("bad-words.txt");
    std::fs::write(&words_file, words.replacen(words.split(' ').next().expect("word"), "zzzz", 1))
        .expect("write");
    let err = fresh.fails(&["restore", "--mnemonic-file", words_file.to_str().expect("utf-8")]);
    assert!(err.contains("not a valid BIP-39 mnemonic"), "{err}");
    assert!(!fresh.file.exists(), "a failed restore writes nothing");

    assert_eq!(std::fs::read(&wallet.file).expect("wallet file"), file_before, "no error changed the wallet");
    node.stop();
}
