//! Built-in mining: templates from the node's own mempool, solved by the
//! miner crate, abandoned the moment the tip changes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_consensus::{BlockHash, Lock};
use cairn_miner::{solve_block, ExtranonceRoller, Kernel};

use crate::chain::Accepted;
use crate::node::Node;

/// Mines one block on the tip paying `lock` and submits it; gives up when
/// the node shuts down. Returns the block's hash.
///
/// # Errors
/// When the node shut down first, or refused the block (a bug).
pub fn mine_one(node: &Node, lock: &Lock, pool: Option<&rayon::ThreadPool>) -> Result<BlockHash, String> {
    let kernel = Kernel::best();
    let stop = &node.shutdown;
    loop {
        // The stale flag also goes up at shutdown.
        let (template, stale) = node.template(lock);
        let mut roller = ExtranonceRoller::new(template).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let solved = solve_block(&mut roller, 0, kernel, pool, &stale).map_err(|e| e.to_string())?;
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed > 0.0 {
            node.hash_rate.store((solved.hashes as f64 / elapsed) as u64, Ordering::Relaxed);
        }
        if stop.load(Ordering::Acquire) {
            return Err("mining stopped".to_owned());
        }
        if !solved.found {
            continue; // the tip moved: new template
        }
        let block = roller.into_block();
        let hash = block.block_hash();
        match node.submit_block(block) {
            Ok(Accepted::Activated) => {
                node.blocks_mined.fetch_add(1, Ordering::Relaxed);
                return Ok(hash);
            }
            // Someone else's block made ours stale in between: try again.
            Ok(_) => {}
            Err(e) if e.is_local_failure() => {
                return Err(format!("the node could not store the block it mined: {e}"));
            }
            Err(e) => return Err(format!("the node refused its own block: {e}")),
        }
    }
}

/// Mines on `threads` threads until the node shuts down, logging each block.
pub fn run(node: &Node, lock: &Lock, threads: usize) {
    // Mining threads run at the lowest priority (nice 19 on Linux), so
    // validation and RPC, on other threads, always come first.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("mine-{i}"))
        .start_handler(|_| {
            if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
            {
                tracing::warn!("mining thread keeps normal priority: {e:?}");
            }
        })
        .build();
    let pool = match pool {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!("cannot start mining threads: {e}");
            return;
        }
    };
    while !node.shutdown.load(Ordering::Acquire) {
        match mine_one(node, lock, Some(&pool)) {
            Ok(hash) => {
                let height = node.state().chain.height();
                let rate = node.hash_rate.load(Ordering::Relaxed) as f64 / 1e6;
                tracing::info!("mined block {height} {hash} ({rate:.2} MH/s)");
            }
            Err(e) if node.shutdown.load(Ordering::Acquire) => {
                tracing::debug!("{e}");
            }
            Err(e) => {
                tracing::error!("{e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
