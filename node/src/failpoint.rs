//! Failpoints: panics at named places, for the tests that check a panic
//! stops the node cleanly. Off unless `CAIRN_FAILPOINT` names one, as
//! `name` (the first time it is reached) or `name@n` (the n-th time);
//! reading the variable once costs nothing afterwards.
//!
//! The places: `connect-block` (in block connection, with the state lock
//! held, before the block's batch is written) and `network-task` (in the
//! network actor's one-second tick).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that sets a failpoint.
pub const VARIABLE: &str = "CAIRN_FAILPOINT";

fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let text = std::env::var(VARIABLE).ok()?;
            let (name, count) = match text.split_once('@') {
                Some((name, count)) => (name, count.parse().ok()?),
                None => (text.as_str(), 1),
            };
            Some((name.to_owned(), count))
        })
        .as_ref()
}

/// Panics when `name` is the armed failpoint and this is the time to.
///
/// # Panics
/// That is what it is for.
pub fn hit(name: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    if let Some((armed, at)) = armed() {
        if armed == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *at {
            panic!("failpoint {name} reached ({VARIABLE})");
        }
    }
}
