//! Built-in mining: templates from the node's own mempool, solved by the
//! miner crate, abandoned the moment the tip changes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_consensus::{BlockHash, Lock};
use cairn_miner::{solve_block, ExtranonceRoller, Kernel};

use crate::chain::Accepted;
use crate::node::{unix_now, Node};

/// What [`mine_one`] does when the next block's time would be further ahead
/// of the clock than blocks may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AheadOfClock {
    /// Wait for the clock (the built-in miner).
    Wait,
    /// Give up with an error that says how long to wait (RPC).
    Refuse,
}

/// Mines one block on the tip paying `lock` and submits it; gives up when
/// the node shuts down. Returns the block's hash.
///
/// A block's time is at least the median of the last eleven plus one, so
/// a chain mined faster than a block a second (regtest, after some 43,000
/// blocks) runs ahead of the clock until its next block would be more than
/// `max_future_block_time` ahead, which no node accepts: `ahead` says
/// whether to wait for the clock then or to say so.
///
/// # Errors
/// When the node shut down first, refused the block (a bug), or the block
/// would be too far ahead of the clock and `ahead` is [`AheadOfClock::Refuse`].
pub fn mine_one(
    node: &Node,
    lock: &Lock,
    pool: Option<&rayon::ThreadPool>,
    ahead: AheadOfClock,
) -> Result<BlockHash, String> {
    let kernel = Kernel::best();
    let stop = &node.shutdown;
    let mut told = false;
    loop {
        // The stale flag also goes up at shutdown.
        let (template, stale) = node.template(lock);
        let early = i64::from(template.header.time)
            - i64::from(node.params().max_future_block_time)
            - i64::try_from(unix_now()).unwrap_or(i64::MAX);
        if early > 0 {
            let why = format!(
                "the next block's time (the median of the last eleven plus one) is more than {} s ahead \
                 of the clock: the chain was mined faster than a block a second; {early} s to wait",
                node.params().max_future_block_time
            );
            if ahead == AheadOfClock::Refuse {
                return Err(why);
            }
            if !told {
                tracing::info!("mining waits: {why}");
                told = true;
            }
            std::thread::sleep(Duration::from_millis(250));
            if stop.load(Ordering::Acquire) {
                return Err("mining stopped".to_owned());
            }
            continue;
        }
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
        match mine_one(node, lock, Some(&pool), AheadOfClock::Wait) {
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
