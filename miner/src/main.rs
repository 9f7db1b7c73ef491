//! `cairn-miner`: measure this machine's SHA-256d rate, or solve a header.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_consensus::pow::U256;
use cairn_consensus::{BlockHeader, Target};
use cairn_miner::{search, Job, Kernel, NonceRange, Precompute, BATCH};
use clap::{Parser, Subcommand};

mod client;

#[derive(Debug, Parser)]
#[command(
    name = "cairn-miner",
    version,
    about = "Cairn's CPU miner: SHA-256d search kernels and their measurement"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the hash rate of each kernel this CPU has, and of the chosen
    /// one on all threads, with the portable kernel as the baseline.
    Bench {
        /// Threads for the main measurement (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds for the main measurement; each single-thread figure takes a fifth of it.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// The kernel to measure on all threads (default: the best this CPU has).
        #[arg(long)]
        kernel: Option<Kernel>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mine against a running node: templates from getblocktemplate, blocks
    /// through submitblock, new work as soon as the node's tip moves.
    Mine {
        /// The node's JSON-RPC, like http://127.0.0.1:18732.
        #[arg(long)]
        rpc: String,
        /// The address blocks pay.
        #[arg(long)]
        address: String,
        /// The node's cookie file (its data directory's .cookie).
        #[arg(long, conflicts_with = "rpc_user")]
        rpc_cookie: Option<std::path::PathBuf>,
        /// RPC user name.
        #[arg(long, requires = "rpc_password")]
        rpc_user: Option<String>,
        /// RPC password.
        #[arg(long, requires = "rpc_user")]
        rpc_password: Option<String>,
        /// Threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Stop after this many accepted blocks (default: never).
        #[arg(long)]
        blocks: Option<u64>,
        /// Kernel (default: the best this CPU has).
        #[arg(long)]
        kernel: Option<Kernel>,
    },
    /// Search a header's nonces for one whose hash meets the target its bits encode.
    Solve {
        /// The 80-byte header, as 160 hex digits.
        #[arg(long)]
        header: String,
        /// First nonce.
        #[arg(long, default_value_t = 0)]
        start: u32,
        /// Nonces to try (default: through 4294967295).
        #[arg(long)]
        count: Option<u64>,
        /// Threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Kernel (default: the best this CPU has).
        #[arg(long)]
        kernel: Option<Kernel>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench { threads, seconds, kernel, json } => bench(threads, seconds, kernel, json),
        Command::Solve { header, start, count, threads, kernel } => {
            solve(&header, start, count, threads, kernel)
        }
        Command::Mine { rpc, address, rpc_cookie, rpc_user, rpc_password, threads, blocks, kernel } => {
            let credentials = match (rpc_cookie, rpc_user, rpc_password) {
                (Some(path), _, _) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading the cookie {}", path.display()))?,
                ),
                (None, Some(user), Some(password)) => Some(format!("{user}:{password}")),
                _ => None,
            };
            let client = client::Client::new(&rpc, credentials.as_deref())?;
            mine(&client, &address, threads, blocks, kernel)
        }
    }
}

fn check_kernel(kernel: Option<Kernel>) -> Result<Kernel> {
    let kernel = kernel.unwrap_or_else(Kernel::best);
    if !kernel.is_available() {
        bail!("this CPU cannot run the {kernel} kernel; it has: {}", names(&Kernel::available()));
    }
    Ok(kernel)
}

fn names(kernels: &[Kernel]) -> String {
    kernels.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let threads = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("miner-{i}"))
        .build()
        .context("starting the mining threads")
}

fn solve(
    hex_header: &str,
    start: u32,
    count: Option<u64>,
    threads: Option<usize>,
    kernel: Option<Kernel>,
) -> Result<()> {
    let bytes = hex::decode(hex_header.trim()).context("--header is not hex")?;
    let header: [u8; 80] = bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!("--header must be 80 bytes (160 hex digits), got {} bytes", bytes.len())
    })?;
    let header = BlockHeader::from_bytes(&header);
    let job = Job::from_header(&header).context("the header's bits do not encode a target")?;
    let range = match count {
        Some(count) => NonceRange::new(start, count)?,
        None => NonceRange::from_start(start),
    };
    let kernel = check_kernel(kernel)?;
    let pool = pool(threads)?;
    let outcome = search(&job, range, kernel, Some(&pool), &AtomicBool::new(false));
    match outcome.nonce {
        Some(nonce) => println!("{nonce}"),
        None => println!("none"),
    }
    Ok(())
}

/// The kernel's estimated ceiling on one thread, and how it was estimated.
fn ceiling(kernel: Kernel, seconds: f64) -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::ShaNi {
        return cairn_miner::sha_ni_ceiling(seconds.min(1.0)).map(|rate| {
            (rate, "measured rate of the kernel's SHA instruction mix (62 rnds2, 21 msg1, 24 msg2 per nonce)")
        });
    }
    let _ = (kernel, seconds);
    None
}

/// A fixed template whose target nothing meets, so every nonce is hashed.
fn bench_job(salt: u32) -> Job {
    let mut header = [0u8; 80];
    for (i, byte) in header.iter_mut().enumerate() {
        *byte = (i as u32).wrapping_mul(0x9e37_79b9).wrapping_add(salt).to_le_bytes()[3];
    }
    Job::new(header, Target::from_u256(U256::ONE).expect("one is a target"))
}

/// Hashes per second of `scan` on this thread for `duration`.
fn rate_on_this_thread(duration: Duration, scan: impl Fn(&Job, u32) -> Option<u32>) -> f64 {
    let job = bench_job(0);
    let started = Instant::now();
    let mut hashes = 0u64;
    let mut first = 0u32;
    while started.elapsed() < duration {
        for _ in 0..16 {
            std::hint::black_box(scan(&job, first));
            first = first.wrapping_add(BATCH) & !(BATCH - 1);
            hashes += u64::from(BATCH);
        }
    }
    hashes as f64 / started.elapsed().as_secs_f64()
}

/// Hashes per second of `kernel` on every thread of `pool` for `duration`.
fn rate_on_pool(kernel: Kernel, pool: &rayon::ThreadPool, duration: Duration) -> f64 {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut hashes = 0u64;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(duration);
            stop.store(true, Ordering::Release);
        });
        let mut salt = 0;
        while !stop.load(Ordering::Acquire) {
            hashes += search(&bench_job(salt), NonceRange::ALL, kernel, Some(pool), &stop).hashes;
            salt += 1;
        }
    });
    hashes as f64 / started.elapsed().as_secs_f64()
}

fn bench(threads: Option<usize>, seconds: f64, kernel: Option<Kernel>, json: bool) -> Result<()> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        bail!("--seconds must be above 0 and at most 3600, got {seconds}");
    }
    let kernel = check_kernel(kernel)?;
    let pool = pool(threads)?;
    let threads = pool.current_num_threads();
    let available = Kernel::available();
    let each = Duration::from_secs_f64(seconds / 5.0);

    let singles: Vec<(Kernel, f64)> = available
        .iter()
        .map(|&k| (k, rate_on_this_thread(each, |job, first| k.scan(job, first, BATCH))))
        .collect();
    let portable = singles.iter().find(|(k, _)| *k == Kernel::Portable).map_or(0.0, |(_, rate)| *rate);
    let lane_kernel = available
        .iter()
        .copied()
        .find(|k| k.has_levels() && *k != Kernel::Portable)
        .unwrap_or(Kernel::Portable);
    let ladder: Vec<(Precompute, f64)> = Precompute::ALL
        .into_iter()
        .map(|level| {
            (
                level,
                rate_on_this_thread(each / 2, |job, first| lane_kernel.scan_with(level, job, first, BATCH)),
            )
        })
        .collect();
    let total = rate_on_pool(kernel, &pool, Duration::from_secs_f64(seconds));
    let per_thread = total / threads as f64;
    let ceiling = ceiling(kernel, each.as_secs_f64());
    let chosen_single = singles.iter().find(|(k, _)| *k == kernel).map_or(0.0, |(_, rate)| *rate);

    if json {
        let report = serde_json::json!({
            "kernel": kernel.name(),
            "available": available.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "threads": threads,
            "seconds": seconds,
            "hashes_per_second": total.round(),
            "hashes_per_second_per_thread": per_thread.round(),
            "single_thread": singles.iter().map(|(k, r)| (k.name().to_owned(), serde_json::json!(r.round()))).collect::<serde_json::Map<_, _>>(),
            "baseline": "portable",
            "baseline_hashes_per_second": portable.round(),
            "per_thread_vs_baseline": per_thread / portable,
            "ceiling": ceiling.map(|(rate, method)| serde_json::json!({
                "hashes_per_second_per_thread": rate.round(),
                "single_thread_fraction": chosen_single / rate,
                "method": method,
            })),
            "precompute": {
                "kernel": lane_kernel.name(),
                "levels": ladder.iter().map(|(l, r)| serde_json::json!({"level": l.name(), "hashes_per_second": r.round(), "vs_midstate_only": r / ladder[0].1})).collect::<Vec<_>>(),
            },
        });
        println!("{report}");
        return Ok(());
    }
    println!("kernel: {kernel} (available: {})", names(&available));
    println!("single thread, {:.1} s each:", each.as_secs_f64());
    for (k, rate) in &singles {
        println!("  {:<10} {:>8.2} MH/s  {:>5.2}x portable", k.name(), rate / 1e6, rate / portable);
    }
    println!("precomputation, {lane_kernel} kernel, one thread:");
    for (level, rate) in &ladder {
        println!(
            "  {:<16} {:>8.2} MH/s  {:>5.2}x midstate-only",
            level.name(),
            rate / 1e6,
            rate / ladder[0].1
        );
    }
    println!(
        "{kernel} on {threads} thread{}: {:.2} MH/s total, {:.2} MH/s per thread ({:.2}x the portable baseline)",
        if threads == 1 { "" } else { "s" },
        total / 1e6,
        per_thread / 1e6,
        per_thread / portable
    );
    if let Some((rate, method)) = ceiling {
        println!(
            "ceiling for {kernel} on one thread: {:.2} MH/s ({method}); one thread reaches {:.0}% of it",
            rate / 1e6,
            100.0 * chosen_single / rate
        );
    }
    Ok(())
}

/// Builds the block a getblocktemplate answer describes, paying `lock`.
fn block_from_template(
    template: &serde_json::Value,
    lock: &cairn_consensus::Lock,
) -> Result<cairn_consensus::Block> {
    use cairn_consensus::transaction::SEQUENCE_FINAL;
    use cairn_consensus::{Amount, Block, Decode, OutPoint, Transaction, TxIn, TxOut};
    let field = |name: &str| template.get(name).ok_or_else(|| anyhow::anyhow!("the template lacks {name}"));
    let height = u32::try_from(field("height")?.as_u64().unwrap_or(u64::MAX)).context("template height")?;
    let value = Amount::from_base_units(field("coinbasevalue")?.as_u64().context("coinbasevalue")?)?;
    let mut data = height.to_le_bytes().to_vec();
    data.resize(cairn_miner::EXTRANONCE_OFFSET + cairn_miner::EXTRANONCE_SIZE, 0);
    data.extend_from_slice(b"/cairn-miner/");
    let coinbase = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint::NULL,
            data,
            sequence: SEQUENCE_FINAL,
            witness: cairn_consensus::Witness::new(),
        }],
        outputs: vec![TxOut { amount: value, lock: lock.clone() }],
        lock_time: 0,
    };
    let mut transactions = vec![coinbase];
    for tx in field("transactions")?.as_array().context("transactions")? {
        let hex = tx.get("data").and_then(serde_json::Value::as_str).context("transaction data")?;
        transactions.push(Transaction::decode(&hex::decode(hex)?).context("a template transaction")?);
    }
    let bits = u32::from_str_radix(field("bits")?.as_str().context("bits")?, 16).context("bits")?;
    let header = BlockHeader {
        version: 1,
        prev_block: field("previousblockhash")?.as_str().context("previousblockhash")?.parse()?,
        merkle_root: cairn_consensus::MerkleRoot::ZERO,
        time: u32::try_from(field("curtime")?.as_u64().context("curtime")?).context("curtime")?,
        bits: cairn_consensus::pow::CompactTarget::from_consensus(bits),
        nonce: 0,
    };
    let mut block = Block { header, transactions };
    block.header.merkle_root = cairn_consensus::merkle::block_merkle_root(&block).root;
    Ok(block)
}

fn mine(
    client: &client::Client,
    address: &str,
    threads: Option<usize>,
    blocks: Option<u64>,
    kernel: Option<Kernel>,
) -> Result<()> {
    use cairn_consensus::Encode;
    let address =
        cairn_consensus::Address::parse_any(address).with_context(|| format!("--address {address}"))?;
    let chain = client.call("getblockchaininfo", serde_json::json!([]))?;
    let network = chain.get("chain").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    if network != address.network.name() {
        bail!("--address is for {}, the node is on {network}", address.network.name());
    }
    let kernel = check_kernel(kernel)?;
    let pool = pool(threads)?;
    println!("mining on {network} with {kernel} on {} threads, paying {address}", pool.current_num_threads());
    let mut accepted = 0u64;
    let mut extranonce = 0u64;
    while blocks.is_none_or(|limit| accepted < limit) {
        let template = client.call("getblocktemplate", serde_json::json!([]))?;
        let block = block_from_template(&template, &address.lock)?;
        let tip = block.header.prev_block;
        let mut roller = cairn_miner::ExtranonceRoller::new(block)?;
        let stale = AtomicBool::new(false);
        let started = Instant::now();
        let solved = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                // New work as soon as the node's tip moves (or it vanishes).
                while !stale.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(250));
                    match client.call("getbestblockhash", serde_json::json!([])) {
                        Ok(hash) if hash.as_str() == Some(&tip.to_string()) => {}
                        _ => stale.store(true, Ordering::Release),
                    }
                }
            });
            let solved = cairn_miner::solve_block(&mut roller, extranonce, kernel, Some(&pool), &stale);
            stale.store(true, Ordering::Release);
            let _ = watcher.join();
            solved
        })?;
        extranonce = extranonce.wrapping_add(1 << 32);
        if !solved.found {
            continue;
        }
        let rate = solved.hashes as f64 / started.elapsed().as_secs_f64().max(1e-9) / 1e6;
        let block = roller.into_block();
        let hash = block.block_hash();
        match client.call("submitblock", serde_json::json!([hex::encode(block.encode())])) {
            Ok(serde_json::Value::Null) => {
                accepted += 1;
                println!("block {} {hash} accepted ({rate:.2} MH/s)", template["height"]);
            }
            Ok(other) => println!("block {hash} not taken: {other}"),
            Err(e) => println!("block {hash} rejected: {e:#}"),
        }
    }
    Ok(())
}
