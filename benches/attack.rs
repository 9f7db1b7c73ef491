//! The hostile-peer harness: a real `cairn-node` (the victim) serving a
//! regtest chain on 127.0.0.1 while one attacking host uses every
//! connection it is allowed, one attack at a time. For each it measures
//! the victim's peak resident memory (sampled every 20 ms) against its
//! idle figure, and how fast a fresh honest node syncs the chain from the
//! victim against the same sync with no attack, in the same run.
//!
//! The chain ends in `--fat N` (16) blocks of about 1.9 MB each (one
//! coinbase of 44,000 outputs), so answers reach their 4 MB cap.
//!
//! Attacks: readers that never read (12 connections, each with 8
//! requests for two big blocks, its whole answer budget, windows kept
//! closed until the victim drops the answers), requests for deep blocks at the full rate (12 connections,
//! leaving room under the per-IP limit for the honest node, each keeping
//! its requests in flight), a gossip flood
//! of valid-work blocks with unknown parents (4 connections, a new
//! identity when one is banned), 48 connections that never handshake
//! (from 127.0.0.2), and frames that claim 4 GiB (identities that get
//! banned, replaced at once).
//!
//! `cargo bench --bench attack` (20,000 blocks; each sync figure is the
//! median of three); `-- --blocks N` for
//! another length, `--seconds N` per attack, `--pin-nodes CPU` to move the
//! victim and the syncing node onto that CPU (run the bench itself, the
//! attacker, under `taskset -c` on another, so the attacker's own work
//! does not take the honest sync's CPU). Figures in docs/performance.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_consensus::{BlockHash, Encode, Network, Params};
use serde_json::json;

#[allow(dead_code)]
#[path = "../tests/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "../tests/network.rs"]
mod network;

#[allow(dead_code, unused_imports)]
#[path = "../tests/adversary.rs"]
mod adversary;

use adversary::{block_on_tip, fat_block, hold_silent_connections, rss_kib, Adversary, Frame};
use network::{address, tip};
use support::NodeProcess;

fn arg(name: &str, default: u64) -> u64 {
    std::env::args().skip_while(|a| a != name).nth(1).map_or(default, |v| v.parse().expect("a number"))
}

/// Samples a process's resident memory until stopped; returns the peak (KiB).
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Self { stop, thread }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

/// With `--pin-nodes CPU`, moves every thread of process `pid` onto that CPU.
fn pin(pid: u32) {
    let Some(cpu) = std::env::args().skip_while(|a| a != "--pin-nodes").nth(1) else { return };
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset runs");
    assert!(status.success(), "taskset pinned {pid} to CPU {cpu}");
}

/// The median of three syncs of a fresh node from `victim` (seconds).
fn sync_seconds(victim: &NodeProcess) -> f64 {
    let mut runs: Vec<f64> = (0..3).map(|_| one_sync(victim)).collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}

/// Seconds a fresh node connected only to `victim` takes to reach its tip.
fn one_sync(victim: &NodeProcess) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = tip(&victim.rpc);
    let started = Instant::now();
    let node = NodeProcess::start(dir.path(), &["--no-discovery", "--connect", &victim.p2p_address()]);
    pin(node.pid());
    while tip(&node.rpc) != target {
        assert!(started.elapsed() < Duration::from_secs(600), "the honest node synced in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(node.rpc.ok("getblockcount", json!([])), victim.rpc.ok("getblockcount", json!([])));
    node.stop();
    seconds
}

type Attack = fn(&NodeProcess, &AtomicBool, &AtomicU64);

/// The bytes of a blocks request for the victim's blocks at `heights`.
fn blocks_request(victim: &NodeProcess, heights: impl Iterator<Item = u64>) -> Vec<u8> {
    let hashes: Vec<BlockHash> = heights
        .map(|h| victim.rpc.ok("getblockhash", json!([h])).as_str().expect("hash").parse().expect("hash"))
        .collect();
    cairn_node::p2p::protocol::Request::Blocks(hashes).to_bytes()
}

/// 12 connections (of the 16 one IP address may have: the honest node
/// syncing during the attack comes from the same loopback address), each
/// keeping 16 requests of 128 deep blocks in flight.
fn deep_requests(victim: &NodeProcess, stop: &AtomicBool, sent: &AtomicU64) {
    let request = blocks_request(victim, 1..=128);
    let target = victim.p2p_address();
    // One handshake at a time: an address may have only 4 in progress.
    let handshake = std::sync::Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| {
                let mut attacker = {
                    let _one = handshake.lock().expect("handshake lock");
                    Adversary::connect(&target)
                };
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..16 {
                        attacker.send_raw(Frame::honest(request.clone()));
                    }
                    sent.fetch_add(16, Ordering::Relaxed);
                    attacker.drive(Duration::from_millis(100), |_| false);
                }
            });
        }
    });
}

/// 12 connections that never read: each asks for its whole answer
/// budget (8 answers of two big blocks, about 3.8 MB each) and keeps the
/// streams' windows closed; a new identity for each one banned for stalls.
fn slow_readers(victim: &NodeProcess, stop: &AtomicBool, sent: &AtomicU64) {
    let height = victim.rpc.ok("getblockcount", json!([])).as_u64().expect("height");
    let request = blocks_request(victim, height - 1..=height);
    let target = victim.p2p_address();
    let handshake = std::sync::Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let mut attacker = {
                        let _one = handshake.lock().expect("handshake lock");
                        Adversary::connect(&target)
                    };
                    attacker.set_deaf(true);
                    let mut connected = true;
                    while connected && !stop.load(Ordering::Relaxed) {
                        for _ in 0..8 {
                            attacker.send_raw(Frame::honest(request.clone()));
                        }
                        sent.fetch_add(8, Ordering::Relaxed);
                        // Until the victim drops the answers (20 s), or bans it.
                        let until = Instant::now() + Duration::from_secs(21);
                        while connected && Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            connected = !attacker.drive(Duration::from_millis(200), |event| {
                                matches!(
                                    event,
                                    libp2p::swarm::SwarmEvent::ConnectionClosed { num_established: 0, .. }
                                )
                            });
                        }
                    }
                }
            });
        }
    });
}

/// 4 connections publishing valid-work blocks whose parents nobody has.
fn orphan_flood(victim: &NodeProcess, stop: &AtomicBool, sent: &AtomicU64) {
    let regtest = Params::for_network(Network::Regtest);
    let template = block_on_tip(&victim.rpc, Vec::new(), false);
    let target = victim.p2p_address();
    std::thread::scope(|scope| {
        for thread in 0..4u32 {
            let (template, regtest, target) = (template.clone(), regtest.clone(), target.clone());
            scope.spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let mut attacker = Adversary::connect(&target);
                    let mut connected = true;
                    while connected && !stop.load(Ordering::Relaxed) {
                        let mut orphan = template.clone();
                        n += 1;
                        orphan.header.prev_block = BlockHash::from_byte_array(
                            [thread.to_le_bytes(), n.to_le_bytes()]
                                .concat()
                                .repeat(4)
                                .try_into()
                                .expect("32"),
                        );
                        while cairn_consensus::chain::check_header(&orphan.header, &regtest).is_err() {
                            orphan.header.nonce += 1;
                        }
                        attacker.publish_block(&orphan);
                        sent.fetch_add(1, Ordering::Relaxed);
                        connected = !attacker.drive(Duration::from_millis(1), |event| {
                            matches!(
                                event,
                                libp2p::swarm::SwarmEvent::ConnectionClosed { num_established: 0, .. }
                            )
                        });
                    }
                }
            });
        }
    });
}

/// 48 connections from 127.0.0.2 that never handshake, reopened as closed.
fn silent_connections(victim: &NodeProcess, stop: &AtomicBool, sent: &AtomicU64) {
    let address = victim.p2p_address();
    let port: u16 =
        address.split("/tcp/").nth(1).and_then(|r| r.split('/').next()).expect("port").parse().expect("port");
    sent.fetch_add(hold_silent_connections(port, 48, stop), Ordering::Relaxed);
}

/// Identities sending frames that claim 4 GiB, a new one when banned.
fn huge_frames(victim: &NodeProcess, stop: &AtomicBool, sent: &AtomicU64) {
    let target = victim.p2p_address();
    while !stop.load(Ordering::Relaxed) {
        let mut attacker = Adversary::connect(&target);
        for _ in 0..3 {
            attacker.send_raw(Frame { claimed: u32::MAX, body: vec![1, 2] });
            sent.fetch_add(1, Ordering::Relaxed);
        }
        attacker.drive(Duration::from_secs(5), |event| {
            matches!(event, libp2p::swarm::SwarmEvent::ConnectionClosed { num_established: 0, .. })
        });
    }
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` runs nothing here
    }
    let blocks = arg("--blocks", 20_000);
    let seconds = arg("--seconds", 20);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!("CPU: {cpu}; {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));

    let dir_v = tempfile::tempdir().expect("tempdir");
    let victim = NodeProcess::start(dir_v.path(), &["--no-discovery"]);
    pin(victim.pid());
    let started = Instant::now();
    for _ in 0..blocks / 500 {
        victim.rpc.ok("generatetoaddress", json!([500, address(1)]));
    }
    let fat = arg("--fat", 16);
    for _ in 0..fat {
        let block = fat_block(&victim.rpc, 44_000);
        assert_eq!(victim.rpc.ok("submitblock", json!([hex::encode(block.encode())])), json!(null));
    }
    let height = victim.rpc.ok("getblockcount", json!([])).as_u64().expect("height");
    assert_eq!(height, blocks - blocks % 500 + fat, "the victim mined its chain");
    println!(
        "victim: {height} regtest blocks ({fat} of them about 1.9 MB) mined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let idle = Sampler::start(victim.pid());
    std::thread::sleep(Duration::from_secs(2));
    let idle_kib = idle.peak();
    let baseline = sync_seconds(&victim);
    println!(
        "baseline: idle RSS {:.1} MiB; an honest node syncs {height} blocks from it in {baseline:.2} s ({:.0} blocks/s)",
        idle_kib as f64 / 1024.0,
        height as f64 / baseline
    );
    let attacks: [(&str, Attack); 5] = [
        ("readers that never read, 12 connections", slow_readers),
        ("deep block requests, 12 connections", deep_requests),
        ("orphan block flood, 4 connections", orphan_flood),
        ("48 connections that never handshake", silent_connections),
        ("frames claiming 4 GiB", huge_frames),
    ];
    for (name, attack) in attacks {
        let stop = AtomicBool::new(false);
        let sent = AtomicU64::new(0);
        let sampler = Sampler::start(victim.pid());
        let (sync, peak) = std::thread::scope(|scope| {
            let attacker = scope.spawn(|| attack(&victim, &stop, &sent));
            std::thread::sleep(Duration::from_secs(seconds.min(5)));
            let sync = sync_seconds(&victim);
            let rest = Duration::from_secs(seconds).saturating_sub(Duration::from_secs_f64(sync + 5.0));
            std::thread::sleep(rest);
            let peak = sampler.peak();
            stop.store(true, Ordering::Relaxed);
            let _ = attacker.join();
            (sync, peak)
        });
        println!(
            "{name}: {} messages or connections; peak RSS {:.1} MiB ({:.2} x idle); honest sync {sync:.2} s ({:.2} of the rate without attack)",
            sent.load(Ordering::Relaxed),
            peak as f64 / 1024.0,
            peak as f64 / idle_kib as f64,
            baseline / sync
        );
        // The victim still answers.
        let _ = victim.rpc.ok("getblockcount", json!([]));
        let _ = block_on_tip(&victim.rpc, Vec::new(), false).encode();
    }
    victim.stop();
}
