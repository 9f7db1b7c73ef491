//! `cairn-node devnet --nodes N`: N devnet nodes on 127.0.0.1, each a
//! child process with its own data directory, connected in a ring, mining
//! on some of them, with one live status line per node. Ctrl-C stops them
//! all (each over RPC, so each shuts down cleanly).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jsonrpsee_core::client::ClientT;
use jsonrpsee_core::rpc_params;
use jsonrpsee_http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use serde_json::Value;

/// What `devnet` runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// How many of them mine (default: half, rounded up).
    #[arg(long)]
    miners: Option<usize>,
    /// Mining threads per mining node.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Run for this many seconds, then stop (default: until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

struct Member {
    index: usize,
    datadir: PathBuf,
    child: Child,
    rpc: Option<HttpClient>,
    p2p: Option<String>,
}

fn wait_for_file(path: &Path, child: &mut Child, deadline: Instant) -> Result<String> {
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(line) = text.lines().next().filter(|l| !l.trim().is_empty()) {
                return Ok(line.trim().to_owned());
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("the node exited ({status}) before writing {}", path.display());
        }
        if Instant::now() > deadline {
            bail!("the node did not write {} in time", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn client(datadir: &Path, address: &str) -> Result<HttpClient> {
    use base64::Engine;
    let cookie = std::fs::read_to_string(datadir.join(".cookie")).context("reading the node's cookie")?;
    let mut headers = HeaderMap::new();
    let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(cookie.trim()));
    headers.insert("authorization", HeaderValue::from_str(&value).context("cookie")?);
    HttpClientBuilder::default()
        .set_headers(headers)
        .request_timeout(Duration::from_secs(5))
        .build(format!("http://{address}"))
        .context("RPC client")
}

async fn line(member: &Member) -> String {
    let Some(rpc) = &member.rpc else { return format!("node {}: starting", member.index) };
    let info: Result<Value, _> = rpc.request("getblockchaininfo", rpc_params![]).await;
    let peers: Result<Value, _> = rpc.request("getpeerinfo", rpc_params![]).await;
    let mining: Result<Value, _> = rpc.request("getmininginfo", rpc_params![]).await;
    let pool: Result<Value, _> = rpc.request("getmempoolinfo", rpc_params![]).await;
    match (info, peers, mining, pool) {
        (Ok(info), Ok(peers), Ok(mining), Ok(pool)) => {
            let hash = info["bestblockhash"].as_str().unwrap_or("?");
            format!(
                "node {}: height {:>6}  tip {}..  {} peers  {:>6.2} MH/s  mined {:>4}  mempool {:>4}",
                member.index,
                info["blocks"],
                &hash[..hash.len().min(16)],
                peers.as_array().map_or(0, Vec::len),
                mining["hashespersec"].as_f64().unwrap_or(0.0) / 1e6,
                mining["blocksmined"],
                pool["size"],
            )
        }
        _ => format!(
            "node {}: not answering (log in {})",
            member.index,
            member.datadir.join("node.log").display()
        ),
    }
}

/// Runs the cluster until Ctrl-C (or `--seconds`).
///
/// # Errors
/// When a node cannot be started.
pub fn run(args: &Args, base: Option<&Path>) -> Result<()> {
    if args.nodes == 0 || args.nodes > 32 {
        bail!("--nodes must be 1 to 32");
    }
    let miners = args.miners.unwrap_or(args.nodes.div_ceil(2)).min(args.nodes);
    let base = match base {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; give --datadir")?)
            .join(".cairn")
            .join("devnet-cluster"),
    };
    let exe = std::env::current_exe().context("finding the cairn-node binary")?;
    let mut members: Vec<Member> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stop_all = |members: &mut Vec<Member>| {
        for member in members.iter_mut() {
            let _ = Command::new("kill").args(["-INT", &member.child.id().to_string()]).status();
        }
        let until = Instant::now() + Duration::from_secs(20);
        for member in members.iter_mut() {
            while Instant::now() < until && matches!(member.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    };
    for index in 0..args.nodes {
        let datadir = base.join(format!("node{index}"));
        super::create_private_dir(&datadir)?;
        let _ = std::fs::remove_file(datadir.join("rpc.address"));
        let _ = std::fs::remove_file(datadir.join("p2p.address"));
        let log = std::fs::File::create(datadir.join("node.log")).context("creating node.log")?;
        let mut command = Command::new(&exe);
        command
            .args([
                "--network",
                "devnet",
                "--rpc-bind",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--datadir",
            ])
            .arg(&datadir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // A ring: each node dials the one before it, the first dials the last once it exists.
        if let Some(previous) = members.last().and_then(|m| m.p2p.clone()) {
            command.args(["--connect", &previous]);
        }
        if index < miners {
            command.args(["--mine", "--threads", &args.threads.to_string()]);
        }
        let child = command.spawn().context("starting a node")?;
        let mut member = Member { index, datadir, child, rpc: None, p2p: None };
        let started = (|| -> Result<()> {
            member.p2p =
                Some(wait_for_file(&member.datadir.join("p2p.address"), &mut member.child, deadline)?);
            let rpc = wait_for_file(&member.datadir.join("rpc.address"), &mut member.child, deadline)?;
            member.rpc = Some(client(&member.datadir, &rpc)?);
            Ok(())
        })();
        members.push(member);
        if let Err(e) = started {
            stop_all(&mut members);
            return Err(e.context(format!("node {index}")));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if let (Some(first), Some(last)) = (members.first(), members.last().and_then(|m| m.p2p.clone())) {
        if members.len() > 2 {
            if let Some(rpc) = &first.rpc {
                let _: Result<Value, _> = runtime.block_on(rpc.request("addnode", rpc_params![last, "add"]));
            }
        }
    }
    println!("{} devnet nodes in {} ({miners} mining); Ctrl-C stops them all", members.len(), base.display());
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let ends = args.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut first = true;
    runtime.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(if interactive { 1 } else { 5 }));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    if ends.is_some_and(|end| Instant::now() >= end) {
                        break;
                    }
                    let mut lines = Vec::new();
                    for member in &members {
                        lines.push(line(member).await);
                    }
                    if interactive && !first {
                        print!("\x1b[{}A", lines.len());
                    }
                    first = false;
                    for line in lines {
                        if interactive {
                            println!("\x1b[2K{line}");
                        } else {
                            println!("{line}");
                        }
                    }
                }
            }
        }
    });
    println!("stopping {} nodes...", members.len());
    stop_all(&mut members);
    Ok(())
}
