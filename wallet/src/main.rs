//! `cairn-wallet`: hold and send Cairn tokens from the command line.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cairn_consensus::{Address, Amount, Network, Params, Txid};
use cairn_wallet::node::NodeClient;
use cairn_wallet::wallet::{HistoryEntry, SendAmount};
use cairn_wallet::{Built, Wallet, WalletError};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(name = "cairn-wallet", version, about = "Hold and send Cairn tokens: keys, balances, payments")]
struct Cli {
    /// The network: devnet, regtest or main.
    #[arg(long, global = true, default_value = "devnet")]
    network: Network,
    /// The wallet file (default: <datadir>/wallet.json).
    #[arg(long, global = true)]
    wallet: Option<PathBuf>,
    /// The node's JSON-RPC URL (default: the address in <datadir>/rpc.address,
    /// else http://127.0.0.1 and the network's RPC port).
    #[arg(long, global = true)]
    rpc: Option<String>,
    /// The node's cookie file (default: <datadir>/.cookie).
    #[arg(long, global = true, conflicts_with = "rpc_user")]
    rpc_cookie: Option<PathBuf>,
    /// The node's data directory, for its cookie and RPC address (default: ~/.cairn/<network>).
    #[arg(long, global = true)]
    datadir: Option<PathBuf>,
    /// RPC user name, with --rpc-password, instead of the cookie.
    #[arg(long, global = true, requires = "rpc_password")]
    rpc_user: Option<String>,
    /// RPC password.
    #[arg(long, global = true, requires = "rpc_user")]
    rpc_password: Option<String>,
    /// Read the wallet's passphrase from this file (else $CAIRN_PASSPHRASE, else a prompt).
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new wallet: a 24-word mnemonic (shown once) and an encrypted file.
    Create,
    /// Rebuild a wallet from its mnemonic and find its coins.
    Restore {
        /// Read the words from this file (else $CAIRN_MNEMONIC, else a prompt or standard input).
        #[arg(long)]
        mnemonic_file: Option<PathBuf>,
    },
    /// Hand out a new receiving address.
    Address,
    /// Confirmed, unconfirmed and immature balance.
    Balance,
    /// The wallet's coins.
    Utxos,
    /// The wallet's transactions.
    History,
    /// Pay ADDR an AMOUNT in coins (like 12.5), or `all` of the spendable balance.
    Send {
        /// The payee's address.
        address: String,
        /// Coins with up to 8 decimals, or `all`.
        amount: String,
        /// Fee rate in base units per byte (default: the node's estimate).
        #[arg(long)]
        fee_rate: Option<u64>,
        /// Print the signed transaction as hex instead of sending it.
        #[arg(long)]
        no_broadcast: bool,
    },
    /// Replace a stuck transaction of this wallet with one paying a higher fee.
    BumpFee {
        /// The transaction to replace.
        txid: String,
        /// The new fee rate (default: the old one plus the incremental relay fee, or the node's estimate).
        #[arg(long)]
        fee_rate: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    fn datadir(&self) -> Result<PathBuf> {
        match &self.datadir {
            Some(dir) => Ok(dir.clone()),
            None => {
                let home = std::env::var_os("HOME").context("HOME is not set; give --datadir or --wallet")?;
                Ok(PathBuf::from(home).join(".cairn").join(self.network.name()))
            }
        }
    }

    fn wallet_path(&self) -> Result<PathBuf> {
        match &self.wallet {
            Some(path) => Ok(path.clone()),
            None => Ok(self.datadir()?.join("wallet.json")),
        }
    }

    fn node(&self) -> Result<NodeClient> {
        let datadir = self.datadir()?;
        let url = match &self.rpc {
            Some(url) => url.clone(),
            None => match std::fs::read_to_string(datadir.join("rpc.address")) {
                Ok(address) => format!("http://{}", address.trim()),
                Err(_) => format!("http://127.0.0.1:{}", Params::for_network(self.network).default_rpc_port),
            },
        };
        let credentials = match (&self.rpc_user, &self.rpc_password, &self.rpc_cookie) {
            (Some(user), Some(password), _) => Some(format!("{user}:{password}")),
            (_, _, Some(cookie)) => Some(
                std::fs::read_to_string(cookie)
                    .with_context(|| format!("reading the cookie {}", cookie.display()))?,
            ),
            _ => std::fs::read_to_string(datadir.join(".cookie")).ok(),
        };
        Ok(NodeClient::new(&url, credentials.as_deref())?)
    }

    fn passphrase(&self, confirm: bool) -> Result<String> {
        if let Some(path) = &self.passphrase_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the passphrase file {}", path.display()))?;
            return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
        }
        if let Ok(text) = std::env::var("CAIRN_PASSPHRASE") {
            return Ok(text);
        }
        if !std::io::stdin().is_terminal() {
            bail!("no passphrase: give --passphrase-file FILE or set CAIRN_PASSPHRASE");
        }
        let first = rpassword::prompt_password("Wallet passphrase: ").context("reading the passphrase")?;
        if confirm {
            let again = rpassword::prompt_password("Repeat it: ").context("reading the passphrase")?;
            if again != first {
                bail!("the two passphrases differ; nothing was written");
            }
        }
        Ok(first)
    }

    fn open(&self) -> Result<Wallet> {
        let path = self.wallet_path()?;
        if !path.exists() {
            return Err(WalletError::NoWallet(path).into());
        }
        Ok(Wallet::open(&path, self.network, &self.passphrase(false)?)?)
    }

    fn print(&self, value: &Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).expect("JSON prints"));
        } else {
            println!("{}", text());
        }
    }
}

fn signed(delta: i64) -> String {
    let amount =
        Amount::from_base_units(delta.unsigned_abs()).map_or_else(|_| "?".to_owned(), |a| a.to_string());
    format!("{}{amount}", if delta < 0 { "-" } else { "+" })
}

fn read_mnemonic(file: Option<&Path>) -> Result<String> {
    if let Some(path) = file {
        return std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    }
    if let Ok(words) = std::env::var("CAIRN_MNEMONIC") {
        return Ok(words);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Mnemonic (the words, separated by spaces): ")
            .context("reading the mnemonic");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the mnemonic from standard input")?;
    Ok(line)
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Create => {
            let path = cli.wallet_path()?;
            if path.exists() {
                return Err(WalletError::WalletExists(path).into());
            }
            let (mut wallet, words) = Wallet::create(&path, cli.network, &cli.passphrase(true)?, None)?;
            let (address, _) = wallet.new_address()?;
            cli.print(
                &json!({ "wallet": path, "network": cli.network.name(), "mnemonic": words, "address": address.to_string() }),
                || {
                    let numbered: Vec<String> =
                        words.split(' ').enumerate().map(|(i, w)| format!("{:>2}. {w:<9}", i + 1)).collect();
                    let rows: Vec<String> = numbered.chunks(4).map(|row| format!("  {}", row.join(" ").trim_end())).collect();
                    format!(
                        "Created a {} wallet in {}.\n\n\
                         WRITE THESE 24 WORDS DOWN, in order, and keep them offline. They are the only way to\n\
                         restore this wallet, anyone who sees them can spend its coins, and they will not be\n\
                         shown again:\n\n{}\n\nFirst receiving address: {address}",
                        cli.network.name(),
                        path.display(),
                        rows.join("\n")
                    )
                },
            );
        }
        Command::Restore { mnemonic_file } => {
            let path = cli.wallet_path()?;
            if path.exists() {
                return Err(WalletError::WalletExists(path).into());
            }
            let words = read_mnemonic(mnemonic_file.as_deref())?;
            let passphrase = cli.passphrase(true)?;
            // Check the words before anything is written.
            cairn_wallet::keys::parse_mnemonic(&words)?;
            let (mut wallet, _) = Wallet::create(&path, cli.network, &passphrase, Some(&words))?;
            let scanned = cli.node().and_then(|node| Ok(wallet.scan(&node)?));
            let note = match &scanned {
                Ok(view) => {
                    let b = view.balance();
                    format!(
                        "found {} used receiving and {} used change addresses; balance {} (+{} unconfirmed, {} immature)",
                        wallet.receive_next(),
                        wallet.change_next(),
                        b.confirmed,
                        b.unconfirmed,
                        b.immature
                    )
                }
                Err(error) => {
                    format!("could not ask the node yet ({error:#}); coins appear once it is reachable")
                }
            };
            cli.print(
                &json!({
                    "wallet": path,
                    "network": cli.network.name(),
                    "receive_next": wallet.receive_next(),
                    "change_next": wallet.change_next(),
                    "scanned": scanned.is_ok(),
                }),
                || format!("Restored a {} wallet in {}: {note}.", cli.network.name(), path.display()),
            );
        }
        Command::Address => {
            let mut wallet = cli.open()?;
            // Ask the node first when it is there, so a used address is never handed out.
            if let Ok(node) = cli.node() {
                let _ = wallet.scan(&node);
            }
            let (address, index) = wallet.new_address()?;
            cli.print(&json!({ "address": address.to_string(), "index": index }), || address.to_string());
        }
        Command::Balance => {
            let mut wallet = cli.open()?;
            let view = wallet.scan(&cli.node()?)?;
            let b = view.balance();
            let total = Amount::sum([b.confirmed, b.unconfirmed, b.immature]).context("balance overflow")?;
            cli.print(
                &json!({
                    "confirmed": b.confirmed.to_string(),
                    "unconfirmed": b.unconfirmed.to_string(),
                    "immature": b.immature.to_string(),
                    "total": total.to_string(),
                    "height": view.tip,
                }),
                || {
                    format!(
                        "confirmed   {:>20}\nunconfirmed {:>20}\nimmature    {:>20}\ntotal       {:>20}",
                        b.confirmed, b.unconfirmed, b.immature, total
                    )
                },
            );
        }
        Command::Utxos => {
            let mut wallet = cli.open()?;
            let coins = wallet.scan(&cli.node()?)?.coin_list();
            let rows: Vec<Value> = coins
                .iter()
                .map(|c| {
                    json!({
                        "txid": c.outpoint.txid.to_string(),
                        "vout": c.outpoint.index,
                        "address": c.address,
                        "amount": c.amount.to_string(),
                        "confirmations": c.confirmations,
                        "coinbase": c.coinbase,
                        "spendable": c.spendable,
                    })
                })
                .collect();
            cli.print(&json!(rows), || {
                if coins.is_empty() {
                    return "no coins".to_owned();
                }
                coins
                    .iter()
                    .map(|c| {
                        let state = match (c.confirmations, c.spendable) {
                            (0, _) => "unconfirmed",
                            (_, false) => "immature",
                            _ => "spendable",
                        };
                        format!(
                            "{}:{} {:>18} {:>7} conf  {:<11} {}",
                            c.outpoint.txid, c.outpoint.index, c.amount, c.confirmations, state, c.address
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::History => {
            let mut wallet = cli.open()?;
            let history = wallet.scan(&cli.node()?)?.history();
            let rows: Vec<Value> = history
                .iter()
                .map(|h: &HistoryEntry| {
                    json!({
                        "txid": h.txid.to_string(),
                        "height": h.height,
                        "confirmations": h.confirmations,
                        "amount": signed(h.delta),
                    })
                })
                .collect();
            cli.print(&json!(rows), || {
                if history.is_empty() {
                    return "no transactions".to_owned();
                }
                history
                    .iter()
                    .map(|h| {
                        let height = h.height.map_or_else(|| "mempool".to_owned(), |h| h.to_string());
                        format!("{height:>8} {:>7} conf  {} {:>19}", h.confirmations, h.txid, signed(h.delta))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Send { address, amount, fee_rate, no_broadcast } => {
            let to = Address::parse_for(address, cli.network)
                .map_err(|reason| WalletError::Address { text: address.clone(), reason })?;
            let how_much: SendAmount = amount.parse()?;
            let mut wallet = cli.open()?;
            let node = cli.node()?;
            let view = wallet.scan(&node)?;
            let rate = match fee_rate {
                Some(rate) => *rate,
                None => node.estimate_fee_rate(2)?,
            };
            let built = wallet.build_send(&view, &to, how_much, rate)?;
            report(cli, &node, &built, *no_broadcast, None)?;
        }
        Command::BumpFee { txid, fee_rate } => {
            let txid: Txid = txid
                .parse()
                .map_err(|_| anyhow::anyhow!("{txid:?} is not a transaction id (64 hex digits)"))?;
            let mut wallet = cli.open()?;
            let node = cli.node()?;
            let view = wallet.scan(&node)?;
            let built = wallet.build_bump(&node, &view, &txid, *fee_rate)?;
            report(cli, &node, &built, false, Some(txid))?;
        }
    }
    Ok(())
}

/// Sends (or prints) a built transaction and says what it did.
fn report(
    cli: &Cli,
    node: &NodeClient,
    built: &Built,
    no_broadcast: bool,
    replaces: Option<Txid>,
) -> Result<()> {
    let hex = Wallet::to_hex(built);
    let txid = built.tx.txid();
    let mut value = json!({
        "txid": txid.to_string(),
        "amount": built.paid.to_string(),
        "fee": built.fee.to_string(),
        "fee_rate": built.fee_rate(),
        "size": built.tx.size(),
        "change": built.change.as_ref().map(|(a, v)| json!({ "address": a.to_string(), "amount": v.to_string() })),
    });
    if let Some(old) = replaces {
        value["replaces"] = json!(old.to_string());
    }
    if no_broadcast {
        value["hex"] = json!(hex);
        cli.print(&value, || hex.clone());
        return Ok(());
    }
    let sent = node.send(&hex)?;
    cli.print(&value, || {
        let what = match replaces {
            Some(old) => format!("replaced {old} with {sent}"),
            None => format!("sent {sent}"),
        };
        format!(
            "{what}: {} to the payee, fee {} ({} base units/byte, {} bytes)",
            built.paid,
            built.fee,
            built.fee_rate(),
            built.tx.size()
        )
    });
    Ok(())
}
