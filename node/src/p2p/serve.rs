//! What one peer can make the node hold, and what all of them together
//! can: validations of gossip in progress, and answers being built or
//! written. A plain struct with no libp2p in it (a peer is any key), so the
//! bounds are unit-tested on their own; docs/protocol.md section 10
//! states them.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::protocol::MAX_RESPONSE_SIZE;

/// Gossiped blocks being validated for one peer, at most (each holds up
/// to 16 MB decoded).
pub const MAX_BLOCK_VALIDATIONS_PER_PEER: usize = 2;
/// Gossiped blocks being validated for all peers, at most.
pub const MAX_BLOCK_VALIDATIONS: usize = 8;
/// Gossiped transactions being validated for one peer, at most.
pub const MAX_TRANSACTION_VALIDATIONS_PER_PEER: usize = 32;
/// Gossiped transactions being validated for all peers, at most.
pub const MAX_TRANSACTION_VALIDATIONS: usize = 128;
/// Answers being built or written for one peer, at most: the 8 requests
/// a Cairn node keeps in flight to a peer.
pub const MAX_ANSWERS_PER_PEER: usize = 8;
/// Bytes of answers being built or written for all peers, at most (a
/// blocks answer counts its full budget until it is built), but see
/// [`ANSWER_HEADROOM`].
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Bytes past [`MAX_ANSWER_BYTES`] kept for peers that hold no answer:
/// peers that fill the budget with answers they do not read (each held up
/// to 20 s) cannot keep an honest peer from being served.
pub const ANSWER_HEADROOM: usize = 16 << 20;
/// The window over which a peer's served bytes are counted.
pub const SERVE_WINDOW: Duration = Duration::from_secs(10);
/// Bytes served to one peer in one window, at most (12.8 MB/s).
pub const MAX_SERVED_PER_WINDOW: usize = 128 << 20;

/// Gossip messages from one peer ignored in one window (past the
/// validation bounds) before the peer counts as flooding. An honest peer
/// relaying a burst of fast blocks while validation is busy has a few
/// dozen ignored; a flood has thousands.
pub const MAX_IGNORED_PER_WINDOW: usize = 1_000;

/// What to do with a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Validate it.
    Validate,
    /// Ignore it: a bound is reached.
    Ignore,
    /// Ignore it, and the sender is flooding: penalize (once per window).
    Flood,
}

/// Gossip to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gossip {
    /// A block.
    Block,
    /// A transaction.
    Transaction,
}

impl Gossip {
    const fn limits(self) -> (usize, usize) {
        match self {
            Self::Block => (MAX_BLOCK_VALIDATIONS_PER_PEER, MAX_BLOCK_VALIDATIONS),
            Self::Transaction => (MAX_TRANSACTION_VALIDATIONS_PER_PEER, MAX_TRANSACTION_VALIDATIONS),
        }
    }
}

/// Why an answer was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The peer has its answers in flight already.
    PeerAnswers,
    /// The peer was served its bytes for this window.
    PeerRate,
    /// The peer holds its fair share of answer bytes: the budget over the
    /// connected peers, and always one full blocks answer (like Bitcoin
    /// Core's per-peer send buffer).
    PeerShare,
    /// All answers together hold their bytes.
    Memory,
}

#[derive(Debug)]
struct Load {
    blocks: usize,
    transactions: usize,
    answers: usize,
    window_start: Instant,
    window_bytes: usize,
    /// Bytes of its answers held now.
    held: usize,
    /// Gossip ignored since `ignored_since`.
    ignored: usize,
    ignored_since: Instant,
    /// Disconnected: forgotten once nothing of it is in progress.
    gone: bool,
}

impl Load {
    fn idle(&self) -> bool {
        self.blocks == 0 && self.transactions == 0 && self.answers == 0 && self.ignored == 0
    }
}

/// The node's serving and validation budget.
#[derive(Debug)]
pub struct Budget<P> {
    peers: HashMap<P, Load>,
    blocks: usize,
    transactions: usize,
    answer_bytes: usize,
    /// Peers connected now, for the fair share of answer bytes.
    connected: usize,
}

impl<P> Default for Budget<P> {
    fn default() -> Self {
        Self { peers: HashMap::new(), blocks: 0, transactions: 0, answer_bytes: 0, connected: 1 }
    }
}

impl<P: Eq + Hash + Copy> Budget<P> {
    fn load(&mut self, peer: P, now: Instant) -> &mut Load {
        self.peers.entry(peer).or_insert(Load {
            blocks: 0,
            transactions: 0,
            answers: 0,
            window_start: now,
            window_bytes: 0,
            held: 0,
            ignored: 0,
            ignored_since: now,
            gone: false,
        })
    }

    fn tidy(&mut self, peer: P) {
        if self.peers.get(&peer).is_some_and(|load| load.idle() && (load.window_bytes == 0 || load.gone)) {
            self.peers.remove(&peer);
        }
    }

    /// How many peers are connected (each one's fair share of answer bytes
    /// is [`MAX_ANSWER_BYTES`] over this).
    pub fn set_connected(&mut self, connected: usize) {
        self.connected = connected.max(1);
    }

    /// The peer disconnected: its count goes once nothing of it is in
    /// progress (answers and validations still running end as usual).
    pub fn forget(&mut self, peer: P) {
        if let Some(load) = self.peers.get_mut(&peer) {
            load.gone = true;
        }
        self.tidy(peer);
    }

    /// Starts validating gossip from `peer` when both its bound and the
    /// total allow ([`Admission::Validate`]); otherwise the message is
    /// ignored, and the peer's [`MAX_IGNORED_PER_WINDOW`]th ignored
    /// message in a window says it floods.
    pub fn admit_gossip(&mut self, peer: P, kind: Gossip, now: Instant) -> Admission {
        if self.start_validation(peer, kind, now) {
            return Admission::Validate;
        }
        let load = self.load(peer, now);
        if now.duration_since(load.ignored_since) >= SERVE_WINDOW {
            load.ignored_since = now;
            load.ignored = 0;
        }
        load.ignored += 1;
        if load.ignored == MAX_IGNORED_PER_WINDOW {
            Admission::Flood
        } else {
            Admission::Ignore
        }
    }

    /// Starts validating gossip from `peer`, when both its bound and the
    /// total allow; `false`: ignore the message.
    pub fn start_validation(&mut self, peer: P, kind: Gossip, now: Instant) -> bool {
        let (per_peer, total) = kind.limits();
        let all = match kind {
            Gossip::Block => self.blocks,
            Gossip::Transaction => self.transactions,
        };
        let load = self.load(peer, now);
        let mine = match kind {
            Gossip::Block => &mut load.blocks,
            Gossip::Transaction => &mut load.transactions,
        };
        if *mine >= per_peer || all >= total {
            self.tidy(peer);
            return false;
        }
        *mine += 1;
        match kind {
            Gossip::Block => self.blocks += 1,
            Gossip::Transaction => self.transactions += 1,
        }
        true
    }

    /// A validation started by [`Budget::start_validation`] ended.
    pub fn end_validation(&mut self, peer: P, kind: Gossip) {
        if let Some(load) = self.peers.get_mut(&peer) {
            match kind {
                Gossip::Block => {
                    load.blocks = load.blocks.saturating_sub(1);
                    self.blocks = self.blocks.saturating_sub(1);
                }
                Gossip::Transaction => {
                    load.transactions = load.transactions.saturating_sub(1);
                    self.transactions = self.transactions.saturating_sub(1);
                }
            }
        }
        self.tidy(peer);
    }

    /// Starts an answer to `peer` that would like `want` bytes and is of
    /// use with `least` (a blocks answer with one block); returns the bytes
    /// granted, at most `want`, which the answer must keep within: what is
    /// left of the peer's fair share and of the total.
    ///
    /// # Errors
    /// Which bound leaves less than `least`: the peer gets a busy answer.
    pub fn start_answer(&mut self, peer: P, want: usize, least: usize, now: Instant) -> Result<usize, Busy> {
        let held = self.answer_bytes;
        let fair_share = (MAX_ANSWER_BYTES / self.connected).max(MAX_RESPONSE_SIZE);
        let load = self.load(peer, now);
        if now.duration_since(load.window_start) >= SERVE_WINDOW {
            load.window_start = now;
            load.window_bytes = 0;
        }
        let share_left = fair_share.saturating_sub(load.held);
        // The headroom past the budget is for peers holding no answer.
        let total = if load.held == 0 { MAX_ANSWER_BYTES + ANSWER_HEADROOM } else { MAX_ANSWER_BYTES };
        let total_left = total.saturating_sub(held);
        let least = least.min(want);
        let refused = if load.answers >= MAX_ANSWERS_PER_PEER {
            Some(Busy::PeerAnswers)
        } else if load.window_bytes >= MAX_SERVED_PER_WINDOW {
            Some(Busy::PeerRate)
        } else if share_left < least {
            Some(Busy::PeerShare)
        } else if total_left < least {
            Some(Busy::Memory)
        } else {
            None
        };
        if let Some(busy) = refused {
            self.tidy(peer);
            return Err(busy);
        }
        let granted = want.min(share_left).min(total_left);
        load.answers += 1;
        load.held += granted;
        self.answer_bytes += granted;
        Ok(granted)
    }

    /// The answer reserved with `reserve` bytes was built at `size` bytes.
    pub fn answer_built(&mut self, peer: P, reserve: usize, size: usize) {
        self.answer_bytes = self.answer_bytes.saturating_sub(reserve) + size;
        if let Some(load) = self.peers.get_mut(&peer) {
            load.window_bytes += size;
            load.held = load.held.saturating_sub(reserve) + size;
        }
    }

    /// The answer of `size` bytes was written, or dropped.
    pub fn answer_done(&mut self, peer: P, size: usize) {
        self.answer_bytes = self.answer_bytes.saturating_sub(size);
        if let Some(load) = self.peers.get_mut(&peer) {
            load.answers = load.answers.saturating_sub(1);
            load.held = load.held.saturating_sub(size);
        }
        self.tidy(peer);
    }

    /// Bytes of answers held now, for all peers.
    #[must_use]
    pub fn answer_bytes(&self) -> usize {
        self.answer_bytes
    }

    /// Peers with anything counted.
    #[must_use]
    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validations_are_bounded_per_peer_and_in_total() {
        let mut budget = Budget::default();
        let now = Instant::now();
        for _ in 0..MAX_BLOCK_VALIDATIONS_PER_PEER {
            assert!(budget.start_validation(1, Gossip::Block, now));
        }
        assert!(!budget.start_validation(1, Gossip::Block, now), "one peer's bound");
        assert!(budget.start_validation(1, Gossip::Transaction, now), "kinds are counted apart");
        for peer in 2..(MAX_BLOCK_VALIDATIONS / MAX_BLOCK_VALIDATIONS_PER_PEER + 1) as u32 {
            for _ in 0..MAX_BLOCK_VALIDATIONS_PER_PEER {
                assert!(budget.start_validation(peer, Gossip::Block, now));
            }
        }
        assert!(!budget.start_validation(99, Gossip::Block, now), "the total bound");
        budget.end_validation(1, Gossip::Block);
        assert!(budget.start_validation(99, Gossip::Block, now), "room again once one ends");
        for _ in 0..10_000 {
            budget.start_validation(7, Gossip::Transaction, now);
        }
        assert_eq!(budget.transactions, 1 + MAX_TRANSACTION_VALIDATIONS_PER_PEER);
    }

    #[test]
    fn a_burst_is_ignored_and_only_a_flood_is_penalized() {
        let mut budget = Budget::default();
        let now = Instant::now();
        let admissions: Vec<Admission> =
            (0..3 * MAX_IGNORED_PER_WINDOW).map(|_| budget.admit_gossip(1, Gossip::Block, now)).collect();
        let count = |a: Admission| admissions.iter().filter(|&&x| x == a).count();
        assert_eq!(count(Admission::Validate), MAX_BLOCK_VALIDATIONS_PER_PEER);
        assert_eq!(count(Admission::Flood), 1, "penalized once per window");
        // A burst of 100 fast blocks: ignored past the bound, no penalty.
        let burst: Vec<Admission> = (0..100).map(|_| budget.admit_gossip(2, Gossip::Block, now)).collect();
        assert!(!burst.contains(&Admission::Flood));
        // The next window starts afresh.
        let later = now + SERVE_WINDOW;
        let again: Vec<Admission> =
            (0..MAX_IGNORED_PER_WINDOW).map(|_| budget.admit_gossip(1, Gossip::Block, later)).collect();
        assert_eq!(again.last(), Some(&Admission::Flood));
    }

    #[test]
    fn answers_are_bounded_per_peer_in_rate_and_in_memory() {
        let mut budget = Budget::default();
        let now = Instant::now();
        for _ in 0..MAX_ANSWERS_PER_PEER {
            budget.start_answer(1, 1_000, 1_000, now).expect("room");
        }
        assert_eq!(budget.start_answer(1, 1_000, 1_000, now), Err(Busy::PeerAnswers));
        budget.answer_done(1, 1_000);
        budget.start_answer(1, 1_000, 1_000, now).expect("room after one was written");
        // Share: with four peers connected, each may hold 16 MiB (four 4 MB
        // answers), so four peers fill the budget...
        budget.set_connected(4);
        let mut started = [0; 6];
        for (count, peer) in started.iter_mut().zip(2..) {
            for _ in 0..MAX_ANSWERS_PER_PEER {
                match budget.start_answer(peer, 4_000_000, 4_000_000, now) {
                    Ok(_) => *count += 1,
                    Err(busy) => assert!(matches!(busy, Busy::PeerShare | Busy::Memory), "{busy:?}"),
                }
            }
        }
        // ... the fifth, holding nothing, gets one from the headroom, and so
        // does the sixth; past the headroom nobody.
        assert_eq!(started, [4, 4, 4, 4, 1, 1]);
        assert!(budget.answer_bytes() <= MAX_ANSWER_BYTES + ANSWER_HEADROOM);
        assert_eq!(budget.start_answer(2, 1_000_000, 1_000_000, now), Err(Busy::PeerShare));
        // A peer under its share but holding an answer waits for the total
        // to drop under the budget.
        budget.answer_done(2, 4_000_000);
        assert_eq!(budget.start_answer(2, 4_000_000, 4_000_000, now), Err(Busy::Memory));
        for _ in 0..4 {
            budget.answer_done(3, 4_000_000);
        }
        budget.start_answer(2, 4_000_000, 4_000_000, now).expect("under the budget again");
        // With many peers, the share is one full answer (and what a built
        // answer leaves of it).
        let mut many = Budget::default();
        many.set_connected(1_000);
        many.start_answer(1, MAX_RESPONSE_SIZE, MAX_RESPONSE_SIZE, now).expect("one full answer");
        assert_eq!(many.start_answer(1, 1_000, 1_000, now), Err(Busy::PeerShare));
        many.answer_built(1, MAX_RESPONSE_SIZE, 30_000);
        many.start_answer(1, 1_000, 1_000, now).expect("room left by a small answer");
        // An answer that can be cut short (blocks) is granted what is
        // left of the share, when that is at least what it needs.
        let left = MAX_RESPONSE_SIZE - 31_000;
        assert_eq!(many.start_answer(1, MAX_RESPONSE_SIZE, 2_001_024, now), Ok(left));
        assert_eq!(many.start_answer(1, MAX_RESPONSE_SIZE, 1, now), Err(Busy::PeerShare));
        // Rate: a peer served its window's bytes waits for the next window.
        let mut rate = Budget::default();
        let mut served = 0;
        while served < MAX_SERVED_PER_WINDOW {
            rate.start_answer(1, 4_000_000, 4_000_000, now).expect("within the window's bytes");
            rate.answer_built(1, 4_000_000, 4_000_000);
            rate.answer_done(1, 4_000_000);
            served += 4_000_000;
        }
        assert_eq!(rate.start_answer(1, 4_000_000, 4_000_000, now), Err(Busy::PeerRate));
        rate.start_answer(1, 4_000_000, 4_000_000, now + SERVE_WINDOW).expect("a new window");
        // Everything released: nothing is kept for idle peers.
        let mut idle = Budget::default();
        idle.start_answer(3, 10, 10, now).expect("room");
        idle.answer_built(3, 10, 0);
        idle.answer_done(3, 0);
        idle.start_validation(3, Gossip::Transaction, now);
        idle.end_validation(3, Gossip::Transaction);
        assert_eq!(idle.answer_bytes(), 0);
        assert_eq!(idle.peers(), 0);
        // A disconnected peer served this window is forgotten.
        rate.forget(1);
        rate.answer_done(1, 4_000_000);
        assert_eq!(rate.peers(), 0);
    }
}
