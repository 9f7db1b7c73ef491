//! Hash rate of each search kernel on one thread, on a fixed template
//! whose target nothing meets (so every nonce is hashed), with two
//! baselines measured in the same run: the portable kernel and a plain
//! SHA-256d of the header through the `sha2` crate.
//!
//! `cargo bench --bench miner`; figures in docs/performance.md.

use std::hint::black_box;

use cairn_consensus::hash::sha256d;
use cairn_consensus::pow::U256;
use cairn_consensus::Target;
use cairn_miner::{Job, Kernel, Precompute, BATCH};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn template() -> Job {
    let header: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(97).wrapping_add(13));
    Job::new(header, Target::from_u256(U256::ONE).expect("one"))
}

fn kernels(c: &mut Criterion) {
    let job = template();
    let mut group = c.benchmark_group("kernel");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    for kernel in Kernel::available() {
        let mut first = 0u32;
        group.bench_function(kernel.name(), |b| {
            b.iter(|| {
                first = first.wrapping_add(BATCH) % (u32::MAX - BATCH);
                black_box(kernel.scan(&job, first, BATCH))
            });
        });
    }
    // The plainest baseline: hash the whole header twice, every nonce.
    group.bench_function("sha2-crate-sha256d", |b| {
        let mut header = job.header();
        let mut nonce = 0u32;
        b.iter(|| {
            for _ in 0..BATCH {
                nonce = nonce.wrapping_add(1);
                header[76..].copy_from_slice(&nonce.to_le_bytes());
                black_box(sha256d(&header));
            }
        });
    });
    group.finish();
}

fn precomputation(c: &mut Criterion) {
    let job = template();
    let mut group = c.benchmark_group("precompute");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    for kernel in Kernel::available().into_iter().filter(|k| k.has_levels()) {
        for level in Precompute::ALL {
            group.bench_function(format!("{}/{}", kernel.name(), level.name()), |b| {
                b.iter(|| black_box(kernel.scan_with(level, &job, 1 << 20, BATCH)));
            });
        }
    }
    group.finish();
}

#[cfg(target_arch = "x86_64")]
fn interleave(c: &mut Criterion) {
    if !Kernel::ShaNi.is_available() {
        return;
    }
    let job = template();
    let mut group = c.benchmark_group("sha-ni-streams");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    for streams in [1, 2, 3, 4, 5, 6, 8] {
        group.bench_function(streams.to_string(), |b| {
            b.iter(|| black_box(cairn_miner::scan_sha_ni_interleaved(streams, &job, 1 << 20, BATCH)));
        });
    }
    group.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn interleave(_: &mut Criterion) {}

criterion_group!(benches, kernels, precomputation, interleave);
criterion_main!(benches);
