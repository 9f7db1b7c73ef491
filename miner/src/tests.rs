//! Every kernel this CPU has, against the portable kernel and against a
//! brute force over the `sha2` crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_consensus::pow::U256;
use cairn_consensus::{BlockHeader, Network, Params, Target};
use sha2::{Digest, Sha256};

use crate::*;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn header(&mut self) -> [u8; 80] {
        core::array::from_fn(|_| self.next() as u8)
    }
}

fn kernels() -> Vec<Kernel> {
    let kernels = Kernel::available();
    assert!(kernels.contains(&Kernel::Portable));
    kernels
}

/// The header's SHA-256d by the `sha2` crate, as a little-endian number.
fn reference_hash(header: &[u8; 80]) -> U256 {
    let digest: [u8; 32] = Sha256::digest(Sha256::digest(header)).into();
    U256::from_le_bytes(digest)
}

/// The first winning nonce in `first .. first + count` by brute force.
fn reference_scan(job: &Job, first: u32, count: u32) -> Option<u32> {
    (0..count)
        .map(|i| first + i)
        .find(|&nonce| reference_hash(&job.header_with_nonce(nonce)) <= job.target().to_u256())
}

/// A target that about one nonce in 2^`rarity` meets.
fn target(rarity: u32, rng: &mut Rng) -> Target {
    let value = (U256::MAX >> rarity).checked_sub(U256::from_u64(rng.next() >> 8)).expect("no underflow");
    Target::from_u256(value).expect("positive")
}

#[test]
fn kernels_agree_with_sha2_on_random_headers_and_targets() {
    let mut rng = Rng(0x5eed_0001);
    for round in 0..40 {
        let rarity = 1 + (round % 7);
        let job = Job::new(rng.header(), target(rarity, &mut rng));
        let first = rng.next() as u32 % (u32::MAX - 1000);
        let count = 1 + (rng.next() % 700) as u32;
        let expected = reference_scan(&job, first, count);
        for kernel in kernels() {
            assert_eq!(kernel.scan(&job, first, count), expected, "{kernel}, round {round}");
            if kernel.has_levels() {
                for level in Precompute::ALL {
                    assert_eq!(kernel.scan_with(level, &job, first, count), expected, "{kernel} {level:?}");
                }
            }
        }
    }
}

#[test]
fn a_winner_in_every_lane_position_and_at_range_ends() {
    let mut rng = Rng(0x5eed_0002);
    for lane in 0..16u32 {
        // Find a template whose first winner after `base` sits at `lane`
        // of the first batch, with no earlier winner.
        let (job, base, winner) = loop {
            let job = Job::new(rng.header(), target(4, &mut rng));
            let base = (rng.next() as u32) & !15;
            if let Some(winner) = reference_scan(&job, base, 40) {
                if winner - base == lane {
                    break (job, base, winner);
                }
            }
        };
        for kernel in kernels() {
            // Found wherever the range starts, as long as it covers the winner.
            assert_eq!(kernel.scan(&job, base, 16), Some(winner), "{kernel} lane {lane}");
            assert_eq!(kernel.scan(&job, base, lane + 1), Some(winner), "{kernel}: winner is the last nonce");
            assert_eq!(kernel.scan(&job, winner, 1), Some(winner), "{kernel}: one-nonce range");
            // Not found when the range ends one short of it.
            if lane > 0 {
                assert_eq!(kernel.scan(&job, base, lane), None, "{kernel}: range ends before the winner");
            }
            for streams in 1..=4 {
                if kernel == Kernel::ShaNi {
                    assert_eq!(scan_sha_ni_interleaved(streams, &job, base, lane + 1), Some(winner));
                    if lane > 0 {
                        assert_eq!(scan_sha_ni_interleaved(streams, &job, base, lane), None);
                    }
                }
            }
        }
    }
}

#[test]
fn the_top_of_the_nonce_range() {
    let mut rng = Rng(0x5eed_0003);
    let (job, winner) = loop {
        let job = Job::new(rng.header(), target(3, &mut rng));
        if let Some(winner) = reference_scan(&job, u32::MAX - 20, 21) {
            break (job, winner);
        }
    };
    for kernel in kernels() {
        assert_eq!(kernel.scan(&job, u32::MAX - 20, 21), Some(winner), "{kernel}");
        let outcome =
            search(&job, NonceRange::from_start(u32::MAX - 20), kernel, None, &AtomicBool::new(false));
        assert_eq!(outcome.nonce, Some(winner), "{kernel}");
    }
}

#[test]
fn midstate_and_schedule_precomputation_is_exact() {
    let mut rng = Rng(0x5eed_0004);
    for _ in 0..50 {
        let header = rng.header();
        let job = Job::new(header, Target::from_u256(U256::MAX).expect("max"));
        let nonce = rng.next() as u32;
        let full = job.header_with_nonce(nonce);
        assert_eq!(full[..76], header[..76]);
        assert_eq!(
            U256::from_le_bytes(BlockHeader::from_bytes(&full).block_hash().to_byte_array()),
            reference_hash(&full)
        );
    }
}

#[test]
fn search_on_many_threads_finds_the_lowest_winner() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().expect("pool");
    let mut rng = Rng(0x5eed_0005);
    for _ in 0..6 {
        // Rare enough that winners fall in different chunks.
        let job = Job::new(rng.header(), target(19, &mut rng));
        let range = NonceRange::new(0, 1 << 22).expect("range");
        let single = search(&job, range, Kernel::best(), None, &AtomicBool::new(false));
        let many = search(&job, range, Kernel::best(), Some(&pool), &AtomicBool::new(false));
        assert_eq!(single.nonce, many.nonce);
        if let Some(nonce) = single.nonce {
            assert!(job.meets_target(nonce));
            assert_eq!(single.hashes, u64::from(nonce) + 1, "one thread hashes up to the winner");
            assert!(many.hashes > u64::from(nonce), "every nonce below the winner was tried");
        } else {
            assert_eq!(single.hashes, 1 << 22);
        }
    }
}

#[test]
fn the_stop_signal_ends_a_search_promptly() {
    // A target nothing meets: only the stop signal ends this search.
    let job = Job::new([7; 80], Target::from_u256(U256::ONE).expect("one"));
    for kernel in kernels() {
        let stop = AtomicBool::new(false);
        let (elapsed, outcome) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| search(&job, NonceRange::ALL, kernel, None, &stop));
            std::thread::sleep(Duration::from_millis(50));
            let stopped_at = Instant::now();
            stop.store(true, Ordering::Release);
            let outcome = worker.join().expect("search thread");
            (stopped_at.elapsed(), outcome)
        });
        assert!(outcome.stopped && outcome.nonce.is_none(), "{kernel}");
        assert!(outcome.hashes > 0);
        // The bound allows for a loaded machine; a batch takes a millisecond or two.
        assert!(elapsed < Duration::from_millis(500), "{kernel} stopped after {elapsed:?}");
    }
}

#[test]
fn nonce_ranges_are_checked() {
    assert_eq!(NonceRange::new(5, 0), Err(RangeError::Empty));
    assert_eq!(NonceRange::new(u32::MAX, 2), Err(RangeError::PastEnd { start: u32::MAX, count: 2 }));
    assert_eq!(NonceRange::new(u32::MAX, 1).map(NonceRange::count), Ok(1));
    assert_eq!(NonceRange::new(0, 1 << 32), Ok(NonceRange::ALL));
    assert_eq!(NonceRange::from_start(10).count(), (1 << 32) - 10);
}

#[test]
fn kernel_names_round_trip() {
    for kernel in Kernel::ALL {
        assert_eq!(kernel.name().parse::<Kernel>(), Ok(kernel));
    }
    assert!("avx3".parse::<Kernel>().is_err());
}

#[test]
fn every_genesis_block_is_found_at_its_nonce() {
    for network in [Network::Regtest, Network::Devnet] {
        let header = Params::for_network(network).genesis.header;
        let job = Job::from_header(&header).expect("bits");
        for kernel in kernels() {
            let found = search(&job, NonceRange::ALL, kernel, None, &AtomicBool::new(false));
            assert_eq!(found.nonce, Some(header.nonce), "{network:?} {kernel}");
        }
    }
}

#[test]
fn extranonce_rolls_the_coinbase_and_the_merkle_root() {
    use cairn_consensus::merkle::block_merkle_root;
    let params = Params::for_network(Network::Regtest);
    let mut block = params.genesis.clone();
    block.transactions[0].inputs[0].data = vec![0; 12];
    let mut other = block.transactions[0].clone();
    other.lock_time = 1;
    block.transactions.push(other.clone());
    other.lock_time = 2;
    block.transactions.push(other);
    let mut roller = ExtranonceRoller::new(block).expect("room for the extranonce");
    let mut roots = std::collections::HashSet::new();
    for extranonce in [0, 1, 2, u64::MAX] {
        let header = roller.set_extranonce(extranonce);
        assert_eq!(
            header.merkle_root,
            block_merkle_root(roller.block()).root,
            "branch root equals full root"
        );
        assert_eq!(roller.block().transactions[0].inputs[0].data[4..12], extranonce.to_le_bytes());
        roots.insert(header.merkle_root);
    }
    assert_eq!(roots.len(), 4);
    let stop = AtomicBool::new(false);
    let solved = solve_block(&mut roller, 0, Kernel::best(), None, &stop).expect("valid bits");
    assert!(solved.found);
    let block = roller.into_block();
    assert!(block.header.bits.to_target().expect("bits").is_met_by(block.block_hash()));

    let mut short = params.genesis.clone();
    short.transactions[0].inputs[0].data = vec![0; 11];
    assert_eq!(ExtranonceRoller::new(short).err(), Some(TemplateError::ShortCoinbaseData(11)));
}
