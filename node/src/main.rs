//! `cairn-node`: a Cairn full node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_consensus::{Address, Network, Params};
use cairn_node::files::write_private;
use cairn_node::limits;
use cairn_node::node::Node;
use cairn_node::p2p::{self, NetworkConfig};
use cairn_node::rpc::{self, Credentials};
use cairn_node::store::RocksStore;
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;

mod devnet;

/// Logs when `RUST_LOG` says nothing: ours at info; Kademlia's only when
/// they are errors (it warns that it has no peers to bootstrap from on
/// every node that has none yet).
const DEFAULT_LOG: &str = "info,libp2p_kad=error";

#[derive(Debug, Parser)]
#[command(
    name = "cairn-node",
    version,
    about = "A Cairn full node: chain store, mempool, peer-to-peer network, JSON-RPC, built-in mining"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The network: devnet (fast blocks for a CPU), regtest (tests) or main.
    #[arg(long, default_value = "devnet")]
    network: Network,
    /// The data directory, used as given (default: ~/.cairn/<network>; for
    /// `devnet`, the directory that holds each node's: ~/.cairn/devnet-cluster).
    #[arg(long, global = true)]
    datadir: Option<PathBuf>,
    /// Where JSON-RPC listens (default: 127.0.0.1 and the network's RPC port).
    #[arg(long)]
    rpc_bind: Option<SocketAddr>,
    /// A user name accepted by JSON-RPC besides the cookie.
    #[arg(long, requires = "rpc_password")]
    rpc_user: Option<String>,
    /// The password for --rpc-user.
    #[arg(long, requires = "rpc_user")]
    rpc_password: Option<String>,
    /// Where to accept peers, as a multiaddr (default: /ip4/127.0.0.1/tcp/<port> on
    /// devnet and regtest, /ip4/0.0.0.0/tcp/<port> on main). Repeatable.
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Listen even where another program already listens on the port
    /// (the kernel then splits inbound connections between the two).
    #[arg(long)]
    allow_shared_port: bool,
    /// A peer to connect to and stay connected to, as a multiaddr. Repeatable.
    #[arg(long)]
    connect: Vec<Multiaddr>,
    /// Find peers on the local network by mDNS (multicast; off unless asked).
    #[arg(long)]
    mdns: bool,
    /// Dial only the --connect peers (and addnode): no peer book, Kademlia or
    /// mDNS dialing. Inbound peers are still accepted.
    #[arg(long)]
    no_discovery: bool,
    /// Inbound peer connections, at most (fewer when the open-file limit
    /// cannot hold them).
    #[arg(long, default_value_t = 64)]
    max_inbound: u32,
    /// RPC connections open at once, at most (fewer when the open-file
    /// limit cannot hold them); more are closed as they arrive.
    #[arg(long, default_value_t = rpc::DEFAULT_MAX_CONNECTIONS)]
    rpc_max_connections: usize,
    /// Seconds an RPC connection may sit without a request before it is closed.
    #[arg(long, default_value_t = rpc::DEFAULT_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    rpc_idle_timeout: u64,
    /// Checks remembered from the mempool (each accepted transaction's
    /// signatures and its context-free pass), so that blocks of
    /// transactions already seen connect without checking them again
    /// (about 38 bytes each; below 2 turns the cache off).
    #[arg(long, default_value_t = cairn_node::sigcache::DEFAULT_CAPACITY)]
    sig_cache_entries: usize,
    /// Mine blocks.
    #[arg(long)]
    mine: bool,
    /// The address mined blocks pay (default: a key kept in the data directory).
    #[arg(long, requires = "mine")]
    mine_address: Option<String>,
    /// Mining threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run N devnet nodes on 127.0.0.1, connected to each other, mining on
    /// some of them, with one live status line per node; Ctrl-C stops them all.
    Devnet(devnet::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Devnet(args)) => devnet::run(args, cli.datadir.as_deref()),
        None => run(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Creates `dir` (and its missing parents) readable by its owner only; a
/// directory that exists keeps the mode its owner gave it.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// A file removed when this is dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Makes a panic in any thread stop the node: logged with its thread and
/// place, then the node stops as for a fatal storage error (the store
/// refuses every write from then on, the main loop stops the rest, the
/// process exits non-zero) rather than run on half broken: a panicked
/// network task would leave it without peers, a panic holding the state
/// lock would poison every later call.
fn stop_on_panic(node: std::sync::Weak<Node>) {
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let place = info.location().map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let reason = format!(
            "panic in thread {thread}{place}: {message}. The node stopped rather than run on half \
             broken; this is a bug in Cairn, please report it with this log. Starting the node again \
             goes on from the last block it wrote."
        );
        match node.upgrade() {
            Some(node) => node.fail(reason),
            None => tracing::error!("{reason}"),
        }
    }));
}

fn default_datadir(network: Network) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; give --datadir")?;
    Ok(PathBuf::from(home).join(".cairn").join(network.name()))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(hex::encode(buf))
}

/// The address mined blocks pay: given, or the node's own key (created on
/// first use, mode 0600).
fn mining_address(cli: &Cli, datadir: &Path) -> Result<Address> {
    if let Some(text) = &cli.mine_address {
        return Address::parse_for(text, cli.network).with_context(|| format!("--mine-address {text}"));
    }
    let path = datadir.join("mining.key");
    let secret = match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hex = random_hex(32)?;
            write_private(&path, hex.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            hex::decode(hex)?
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let keypair = secp256k1::Keypair::from_seckey_slice(&secp256k1::Secp256k1::new(), &secret)
        .with_context(|| format!("{} does not hold a valid key", path.display()))?;
    let address = Address::from_key(cli.network, keypair.x_only_public_key().0.serialize());
    println!("mining to the node's own key in {} (address {address})", path.display());
    Ok(address)
}

fn run(cli: Cli) -> Result<()> {
    let params = Params::for_network(cli.network);
    let datadir = match &cli.datadir {
        Some(dir) => dir.clone(),
        None => default_datadir(cli.network)?,
    };
    for address in &cli.connect {
        p2p::protocol::check_dialable(address).map_err(|e| anyhow::anyhow!("--connect {e}"))?;
    }
    if cli.rpc_max_connections == 0 {
        bail!("--rpc-max-connections must be at least 1");
    }
    create_private_dir(&datadir)?;
    let threads = match cli.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let mine_to = if cli.mine { Some(mining_address(&cli, &datadir)?) } else { None };

    let listen = if cli.listen.is_empty() {
        let host = if cli.network == Network::Main { "0.0.0.0" } else { "127.0.0.1" };
        vec![format!("/ip4/{host}/tcp/{}", params.default_p2p_port).parse().expect("a valid multiaddr")]
    } else {
        cli.listen.clone()
    };
    let mut network = NetworkConfig::new(datadir.clone(), listen);
    network.connect = cli.connect.clone();
    network.mdns = cli.mdns;
    network.discovery = !cli.no_discovery;
    network.allow_shared_port = cli.allow_shared_port;
    // Before the chain store opens its files.
    let (soft_before, files) = limits::raise_open_file_limit();
    if files > soft_before {
        tracing::info!("open-file limit raised from {soft_before} to {files}");
    }
    let plan = limits::plan_connections(
        files,
        cli.max_inbound,
        network.files_besides_inbound(),
        cli.rpc_max_connections,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    if plan.max_inbound < cli.max_inbound || plan.rpc_connections < cli.rpc_max_connections {
        tracing::warn!(
            "only {files} files can be open at once: inbound peers reduced from {} to {}, RPC connections \
             from {} to {} (raise the limit with `ulimit -n` for more)",
            cli.max_inbound,
            plan.max_inbound,
            cli.rpc_max_connections,
            plan.rpc_connections
        );
    }
    network.max_inbound = plan.max_inbound;
    let rpc_limits = rpc::RpcLimits {
        max_connections: plan.rpc_connections,
        idle_timeout: Duration::from_secs(cli.rpc_idle_timeout),
    };

    create_private_dir(&datadir.join("chain"))?;
    let store = RocksStore::open(&datadir.join("chain"), cli.network.name())
        .with_context(|| format!("opening the chain store in {}", datadir.display()))?;
    let node = Arc::new(Node::open(Arc::new(store), params.clone(), &datadir).context("loading the chain")?);
    stop_on_panic(Arc::downgrade(&node));
    node.verifier().cache().set_capacity(cli.sig_cache_entries);
    {
        let state = node.state();
        tracing::info!(
            "{} node, data in {}, tip {} at height {}",
            cli.network.name(),
            datadir.display(),
            state.chain.tip(),
            state.chain.height()
        );
    }

    let cookie = format!("__cookie__:{}", random_hex(32)?);
    let cookie_path = datadir.join(".cookie");
    write_private(&cookie_path, cookie.as_bytes())
        .with_context(|| format!("writing {}", cookie_path.display()))?;
    // Removed however this function returns, a failed start included.
    let _cookie = RemoveOnDrop(cookie_path.clone());
    let mut pairs = vec![("__cookie__".to_owned(), cookie["__cookie__:".len()..].to_owned())];
    if let (Some(user), Some(password)) = (&cli.rpc_user, &cli.rpc_password) {
        pairs.push((user.clone(), password.clone()));
    }
    let rpc_addr =
        cli.rpc_bind.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], params.default_rpc_port)));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (server, local) = runtime
        .block_on(rpc::serve(node.clone(), rpc_addr, Credentials::new(&pairs), rpc_limits))
        .with_context(|| format!("binding JSON-RPC to {rpc_addr}"))?;
    // Written whole or not at all: a reader never sees half an address.
    write_private(&datadir.join("rpc.address"), local.to_string().as_bytes())
        .with_context(|| format!("writing {}", datadir.join("rpc.address").display()))?;
    tracing::info!("JSON-RPC on http://{local} (cookie in {})", cookie_path.display());

    let handle = {
        let _runtime = runtime.enter();
        p2p::start(node.clone(), network).context("starting the peer-to-peer network")?
    };
    tracing::info!("peer id {}", handle.peer_id());
    node.set_network(handle.clone());

    let miner = mine_to.map(|address| {
        let node = node.clone();
        tracing::info!("mining to {address} on {threads} thread{}", if threads == 1 { "" } else { "s" });
        std::thread::Builder::new()
            .name("miner".into())
            .spawn(move || cairn_node::mining::run(&node, &address.lock, threads))
            .expect("spawning the miner thread")
    });

    runtime.block_on(async {
        let mut status = tokio::time::interval(Duration::from_secs(10));
        let mut last_height = node.state().chain.height().get();
        status.tick().await;
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => break,
                _ = status.tick() => {
                    let (height, header, pool) = {
                        let s = node.state();
                        (s.chain.height().get(), s.chain.best_header().height.get(), s.mempool.len())
                    };
                    let peers = handle.peers().len();
                    let rate = node.hash_rate.load(Ordering::Relaxed) as f64 / 1e6;
                    let blocks_per_second = f64::from(height.saturating_sub(last_height)) / 10.0;
                    last_height = height;
                    if header > height {
                        let eta = if blocks_per_second > 0.0 {
                            format!("{:.0} s left", f64::from(header - height) / blocks_per_second)
                        } else {
                            "waiting for blocks".to_owned()
                        };
                        tracing::info!("syncing: height {height} of {header} known headers, {blocks_per_second:.1} blocks/s, {eta}; {peers} peers");
                    } else {
                        tracing::info!("height {height}, {rate:.2} MH/s, {peers} peers, mempool {pool} tx");
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if node.shutdown.load(Ordering::Acquire) { break; }
                }
            }
        }
    });
    tracing::info!("stopping");
    node.request_shutdown();
    if let Some(miner) = miner {
        let _ = miner.join();
    }
    let _ = server.stop();
    runtime.block_on(server.stopped());
    let height = node.state().chain.height();
    let fatal = node.fatal_error().map(str::to_owned);
    // Stop the network, then wait for the threads it leaves (block sync,
    // blocking tasks) to let go of the node, so that the chain store
    // closes before the process exits: RocksDB's threads must not outlive
    // the process's static destructors.
    drop(handle);
    runtime.shutdown_timeout(Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while Arc::strong_count(&node) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(node);
    tracing::info!("stopped at height {height}");
    match fatal {
        Some(reason) => bail!(reason),
        None => Ok(()),
    }
}
