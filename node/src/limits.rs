//! Open files: at start the soft limit is raised to the hard one, and the
//! connection caps are sized from it (as Bitcoin Core does), so that a low
//! limit shrinks how many peers and RPC clients are taken instead of
//! making the node fail later with "too many open files" (which blocks
//! RocksDB, RPC and new peers alike).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Files kept for everything but connections: RocksDB's table files (its
/// `max_open_files` is 256) and its logs, manifest and write-ahead log,
/// the runtime's own descriptors, standard streams, the small files of the
/// data directory.
pub const RESERVED_FILES: u64 = 320;

/// Fewest inbound peers the node runs with.
pub const MIN_INBOUND: u32 = 8;

/// Fewest RPC connections the node runs with.
pub const MIN_RPC_CONNECTIONS: usize = 8;

/// The soft open-file limit before and after raising it to the hard limit
/// (unchanged when it was already there or cannot be raised).
#[must_use]
pub fn raise_open_file_limit() -> (u64, u64) {
    let current = getrlimit(Resource::Nofile);
    let before = current.current.unwrap_or(u64::MAX);
    let hard = current.maximum.unwrap_or(u64::MAX);
    // Linux refuses more than fs.nr_open even under an unlimited hard
    // limit; try the hard limit, then large round numbers below it.
    [hard, 1 << 20, 1 << 16]
        .into_iter()
        .filter(|&target| target > before && target <= hard)
        .find(|&target| {
            setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: current.maximum }).is_ok()
        })
        .map_or((before, before), |raised| (before, raised))
}

/// Connection caps that fit `limit` open files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// Inbound peers, at most.
    pub max_inbound: u32,
    /// RPC connections, at most.
    pub rpc_connections: usize,
}

/// Sizes the caps: `other_p2p` files are the network's besides inbound
/// peers (outbound peers, handshakes in progress, listeners). When the
/// limit holds everything asked for, that is the plan; otherwise both caps
/// shrink, RPC to a quarter of what is left (at least
/// [`MIN_RPC_CONNECTIONS`]) and inbound peers to the rest.
///
/// # Errors
/// When `limit` cannot hold even [`MIN_INBOUND`] peers and
/// [`MIN_RPC_CONNECTIONS`] RPC connections: the message says how many
/// files are needed.
pub fn plan_connections(
    limit: u64,
    wanted_inbound: u32,
    other_p2p: u64,
    wanted_rpc: usize,
) -> Result<ConnectionPlan, String> {
    let fixed = RESERVED_FILES + other_p2p;
    let least = fixed + u64::from(MIN_INBOUND) + MIN_RPC_CONNECTIONS as u64;
    let available = limit.saturating_sub(fixed);
    let wanted = ConnectionPlan { max_inbound: wanted_inbound, rpc_connections: wanted_rpc };
    if available >= u64::from(wanted_inbound) + wanted_rpc as u64 {
        return Ok(wanted);
    }
    if limit < least {
        return Err(format!(
            "only {limit} files can be open at once (the hard limit of this process); the node needs at \
             least {least} ({RESERVED_FILES} for the chain store and its own, {other_p2p} for outbound \
             peers and handshakes, {MIN_INBOUND} inbound peers, {MIN_RPC_CONNECTIONS} RPC connections). \
             Raise it (`ulimit -n`, or LimitNOFILE= in a systemd unit)"
        ));
    }
    let rpc = usize::try_from(available / 4)
        .unwrap_or(usize::MAX)
        .clamp(MIN_RPC_CONNECTIONS, wanted_rpc.max(MIN_RPC_CONNECTIONS));
    let inbound = u32::try_from(available - rpc as u64).unwrap_or(u32::MAX).min(wanted_inbound);
    Ok(ConnectionPlan { max_inbound: inbound, rpc_connections: rpc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_that_holds_everything_changes_nothing() {
        let plan = plan_connections(1024, 64, 74, 128).expect("enough");
        assert_eq!(plan, ConnectionPlan { max_inbound: 64, rpc_connections: 128 });
        let exact = RESERVED_FILES + 74 + 64 + 128;
        assert_eq!(plan_connections(exact, 64, 74, 128).expect("enough"), plan);
    }

    #[test]
    fn a_low_limit_shrinks_both_caps_within_it() {
        for limit in [410, 420, 450, 500, 580] {
            let plan = plan_connections(limit, 64, 74, 128).expect("above the least");
            let used = RESERVED_FILES + 74 + u64::from(plan.max_inbound) + plan.rpc_connections as u64;
            assert!(used <= limit, "{limit}: {plan:?} uses {used}");
            assert!(plan.max_inbound >= MIN_INBOUND && plan.rpc_connections >= MIN_RPC_CONNECTIONS);
            assert!(plan.max_inbound <= 64 && plan.rpc_connections <= 128);
        }
    }

    #[test]
    fn a_limit_below_the_least_is_refused_with_the_number_needed() {
        let error = plan_connections(300, 64, 74, 128).expect_err("too low");
        assert!(error.contains("only 300 files") && error.contains("at least 410"), "{error}");
    }

    #[test]
    fn the_soft_limit_is_raised_no_lower_than_it_was() {
        let (before, after) = raise_open_file_limit();
        assert!(after >= before);
        assert_eq!(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX), after);
    }
}
