//! The search core against real Bitcoin headers, and the `cairn-miner` tool.

use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

use cairn_consensus::BlockHeader;
use cairn_miner::{search, Job, Kernel, NonceRange};

use crate::support::{binary, read_headers};

/// Every kernel this CPU has scans a window around each real block's nonce
/// and finds exactly that nonce; a window that ends just before it finds
/// nothing.
#[test]
fn kernels_find_the_nonce_of_every_real_bitcoin_header() {
    let mut headers = read_headers("headers/btc_mainnet_headers_0_32259.bin");
    headers.extend(read_headers("headers/btc_mainnet_headers_822528_830592.bin"));
    assert_eq!(headers.len(), 32_260 + 8_065);
    for kernel in Kernel::available() {
        // The portable kernel is slow: it takes every 16th header.
        let step = if kernel == Kernel::Portable { 16 } else { 1 };
        for (i, header) in headers.iter().enumerate().step_by(step) {
            let job = Job::from_header(header).expect("real bits");
            let before = (header.nonce % 61) + 1;
            let start = header.nonce.saturating_sub(before);
            let count = (header.nonce - start) + 1 + (header.nonce % 37).min(u32::MAX - header.nonce);
            assert_eq!(kernel.scan(&job, start, count), Some(header.nonce), "{kernel}, header {i}");
            if header.nonce > start {
                assert_eq!(kernel.scan(&job, start, header.nonce - start), None, "{kernel}, header {i}");
            }
        }
    }
}

/// Block 1's nonce is not the lowest that meets its target: a search from
/// zero on two threads finds the lowest one, which really is below target.
#[test]
fn search_from_zero_finds_the_lowest_winner_of_bitcoin_block_1() {
    let headers = read_headers("headers/btc_mainnet_headers_0_32259.bin");
    let block1 = headers[1];
    let job = Job::from_header(&block1).expect("bits");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    let outcome = search(&job, NonceRange::ALL, Kernel::best(), Some(&pool), &AtomicBool::new(false));
    let nonce = outcome.nonce.expect("a winner");
    assert!(nonce <= block1.nonce);
    let mut header = block1;
    header.nonce = nonce;
    assert!(block1.bits.to_target().expect("bits").is_met_by(header.block_hash()));
    assert!(outcome.hashes > u64::from(nonce));
    // Nothing below it: a single-threaded scan of the range below finds nothing.
    let below = NonceRange::new(0, u64::from(nonce)).expect("range");
    let none = search(&job, below, Kernel::best(), Some(&pool), &AtomicBool::new(false));
    assert_eq!(none.nonce, None);
    assert_eq!(none.hashes, u64::from(nonce));
}

fn miner(args: &[&str]) -> Output {
    Command::new(binary("cairn-miner")).args(args).output().expect("running cairn-miner")
}

fn header_hex(header: &BlockHeader) -> String {
    hex::encode(header.to_bytes())
}

#[test]
fn solve_prints_the_winning_nonce_or_none() {
    let headers = read_headers("headers/btc_mainnet_headers_0_32259.bin");
    let header = headers[170];
    let hex = header_hex(&header);
    let start = (header.nonce - 1000).to_string();
    let out = miner(&["solve", "--header", &hex, "--start", &start, "--count", "2000", "--threads", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), header.nonce.to_string());

    let out = miner(&["solve", "--header", &hex, "--start", &start, "--count", "1000"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "none");

    for kernel in Kernel::available() {
        let out = miner(&[
            "solve",
            "--header",
            &hex,
            "--start",
            &start,
            "--count",
            "2000",
            "--kernel",
            kernel.name(),
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), header.nonce.to_string(), "{kernel}");
    }
}

#[test]
fn solve_refuses_bad_input_clearly() {
    let good = header_hex(&read_headers("headers/btc_mainnet_headers_0_32259.bin")[1]);
    let cases: [(&[&str], &str); 7] = [
        (&["solve", "--header", "zz"], "not hex"),
        (&["solve", "--header", "00ff"], "80 bytes"),
        (&["solve", "--header", &good[..159]], "not hex"),
        (&["solve", "--header", &good, "--count", "0"], "empty"),
        (&["solve", "--header", &good, "--start", "4294967295", "--count", "2"], "past the largest nonce"),
        (&["solve", "--header", &good, "--threads", "0"], "at least 1"),
        (&["solve", "--header", &good, "--kernel", "quantum"], "unknown kernel"),
    ];
    for (args, message) in cases {
        let out = miner(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: expected {message:?} in {stderr:?}");
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
    // Bits that encode no target.
    let mut header = BlockHeader::from_bytes(&hex::decode(&good).expect("hex").try_into().expect("80"));
    header.bits = cairn_consensus::pow::CompactTarget::from_consensus(0x0180_0000);
    let out = miner(&["solve", "--header", &header_hex(&header)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bits"));
}

#[test]
fn bench_reports_every_kernel_and_the_baseline_as_json() {
    let out = miner(&["bench", "--seconds", "0.5", "--threads", "2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["kernel"], Kernel::best().name());
    assert_eq!(report["threads"], 2);
    assert_eq!(report["baseline"], "portable");
    for kernel in Kernel::available() {
        assert!(report["single_thread"][kernel.name()].as_f64().expect("rate") > 0.0, "{kernel}");
    }
    assert!(report["hashes_per_second"].as_f64().expect("rate") > 0.0);
    assert_eq!(report["precompute"]["levels"].as_array().expect("levels").len(), 4);

    let out = miner(&["bench", "--seconds=-1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seconds"));
}
