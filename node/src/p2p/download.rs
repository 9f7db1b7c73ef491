//! The body download's bookkeeping: which blocks of the best header chain
//! to ask which peer for, what is in flight, what was delivered and waits
//! to be connected, who did not have a block, and who stalls the tip.
//!
//! A plain struct with no libp2p in it (a peer is any key) so that the
//! scheduling is unit-tested on its own: the network actor tells it what
//! happened (answers, failures, connections, the peers' tips) and sends
//! the requests [`Download::plan`] returns.
//!
//! The queue is the best header chain's blocks without a body, lowest
//! first. Bodies are asked for at most [`DOWNLOAD_WINDOW`] blocks past the
//! tip, from every peer that claims a tip high enough, one batch per peer
//! in turn (so the window is spread over the peers rather than given to the
//! first), at most [`REQUESTS_PER_PEER`] requests per peer. A peer that
//! answers without a block, times out or is busy is not asked for that
//! block for [`AVOID_FOR`], so a peer that lies about its tip delays
//! nothing for longer than one answer. The lowest missing block holds the
//! tip: when it has been in flight longer than the stall timeout and
//! another peer could take it, the holder counts as stalling (Bitcoin
//! Core's rule), everything it holds is asked of others, and the timeout
//! doubles (up to [`MAX_STALL_TIMEOUT`]) so a slow network does not turn
//! every peer into a staller; each answer with blocks brings it back down.
//! A `busy` answer says the peer is at its serving budget for us: its
//! blocks are asked again at once, but the requests kept in flight to it
//! halve (one more is allowed back for each answer with blocks, up to
//! [`REQUESTS_PER_PEER`]), and when even one request is too many it is
//! left alone for [`BUSY_BACKOFF`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use cairn_consensus::BlockHash;

/// Sync requests (headers and blocks) in flight to one peer, at most.
pub const REQUESTS_PER_PEER: usize = 8;
/// Bodies are asked for only this many blocks ahead of the tip, so that
/// blocks in flight and waiting to be connected stay bounded.
pub const DOWNLOAD_WINDOW: u32 = 1_024;
/// Bytes of answers waiting to be connected, at most, before no more
/// bodies are asked for.
pub const DELIVERED_BYTES: usize = 64 << 20;
/// How long a peer that did not have a block or timed out is not asked
/// for that block again.
pub const AVOID_FOR: Duration = Duration::from_secs(60);
/// How long a peer that answered busy to its only request is left alone.
pub const BUSY_BACKOFF: Duration = Duration::from_millis(500);
/// How long the block the tip waits for may be in flight before its peer
/// counts as stalling, at first.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The stall timeout, at most, after doubling on each stall.
pub const MAX_STALL_TIMEOUT: Duration = Duration::from_secs(64);

/// Checked headers one peer may have us hold while they add up to less
/// work than the active chain (about 8 MB).
pub const HEADER_BUDGET: usize = 100_000;
/// Such headers held for all peers together, at most (about 32 MB): past
/// it a peer's low-work headers are dropped rather than kept. Headers
/// being checked can add one answer (2,000) per peer on top.
pub const MAX_PENDING_HEADERS: usize = 4 * HEADER_BUDGET;

/// The count of low-work headers held for all peers: see
/// [`MAX_PENDING_HEADERS`].
#[derive(Debug)]
pub struct PendingHeaders {
    held: usize,
    max: usize,
}

impl PendingHeaders {
    /// Nothing held yet; at most `max` in all.
    #[must_use]
    pub const fn new(max: usize) -> Self {
        Self { held: 0, max }
    }

    /// A peer's headers come back from being checked: `before` were held
    /// for it when they left, `after` would be now. Returns whether they
    /// may be kept; when not, the peer holds none.
    pub fn returned(&mut self, before: usize, after: usize) -> bool {
        self.held = self.held.saturating_sub(before);
        if after > HEADER_BUDGET || self.held + after > self.max {
            return false;
        }
        self.held += after;
        true
    }

    /// A peer's `count` headers are dropped (it left, or sent bad ones).
    pub fn released(&mut self, count: usize) {
        self.held = self.held.saturating_sub(count);
    }

    /// Headers held, in all.
    #[must_use]
    pub const fn held(&self) -> usize {
        self.held
    }
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<P> {
    /// Blocks requests to send: the peer, and the hashes in height order.
    pub requests: Vec<(P, Vec<BlockHash>)>,
    /// Peers found stalling the tip (their blocks are asked of others).
    pub stalled: Vec<P>,
}

impl<P> Default for Plan<P> {
    fn default() -> Self {
        Self { requests: Vec::new(), stalled: Vec::new() }
    }
}

#[derive(Debug)]
struct PeerSync {
    /// The height of the tip it claims (from its status, or headers it sent).
    height: Option<u32>,
    /// Its requests in flight (headers and blocks).
    requests: usize,
    /// Requests it may have in flight now (lowered by busy answers).
    limit: usize,
    /// Not asked for blocks before this (busy with a single request).
    paused_until: Option<Instant>,
}

impl Default for PeerSync {
    fn default() -> Self {
        Self { height: None, requests: 0, limit: REQUESTS_PER_PEER, paused_until: None }
    }
}

/// The body download: see the module's documentation.
#[derive(Debug)]
pub struct Download<P> {
    /// Hashes per blocks request, at most.
    per_request: usize,
    peers: HashMap<P, PeerSync>,
    /// Bodies asked for: from whom, and since when.
    in_flight: HashMap<BlockHash, (P, Instant)>,
    /// Bodies received and handed on to be connected: not asked for again
    /// until the queue sees them stored, or their connection fails.
    delivered: HashSet<BlockHash>,
    /// The encoded size of the answers still waiting to be connected.
    delivered_bytes: usize,
    /// Blocks not to ask of a peer, until when.
    avoid: HashMap<(BlockHash, P), Instant>,
    /// The best header the queue was worked out for, and the queue:
    /// blocks on its way without a body, lowest first.
    queue_for: Option<BlockHash>,
    queue: VecDeque<(BlockHash, u32)>,
    stall_timeout: Duration,
}

impl<P: Copy + Eq + Hash + Ord> Download<P> {
    /// An empty download asking for at most `per_request` blocks per request.
    #[must_use]
    pub fn new(per_request: usize) -> Self {
        Self {
            per_request: per_request.max(1),
            peers: HashMap::new(),
            in_flight: HashMap::new(),
            delivered: HashSet::new(),
            delivered_bytes: 0,
            avoid: HashMap::new(),
            queue_for: None,
            queue: VecDeque::new(),
            stall_timeout: STALL_TIMEOUT,
        }
    }

    /// A peer connected.
    pub fn connected(&mut self, peer: P) {
        self.peers.entry(peer).or_default();
    }

    /// A peer is gone: what it held is free to ask of others.
    pub fn disconnected(&mut self, peer: P) {
        self.peers.remove(&peer);
        self.in_flight.retain(|_, (p, _)| *p != peer);
        self.avoid.retain(|(_, p), _| *p != peer);
    }

    /// The height of the tip `peer` claims.
    pub fn set_height(&mut self, peer: P, height: u32) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.height = Some(height);
        }
    }

    /// Requests in flight to `peer`.
    #[must_use]
    pub fn requests(&self, peer: P) -> usize {
        self.peers.get(&peer).map_or(0, |s| s.requests)
    }

    /// A request other than for blocks (headers) was sent to `peer`.
    pub fn request_started(&mut self, peer: P) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.requests += 1;
        }
    }

    /// A request other than for blocks was answered or failed.
    pub fn request_ended(&mut self, peer: P) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.requests = state.requests.saturating_sub(1);
        }
    }

    /// The best header the queue was last worked out for.
    #[must_use]
    pub fn queue_for(&self) -> Option<BlockHash> {
        self.queue_for
    }

    /// The new queue for best header `best`: the blocks on its way without
    /// a body, lowest first, with their heights.
    pub fn set_queue(&mut self, best: BlockHash, queue: impl IntoIterator<Item = (BlockHash, u32)>) {
        self.queue = queue.into_iter().collect();
        self.queue_for = Some(best);
        let wanted: HashSet<BlockHash> = self.queue.iter().map(|(hash, _)| *hash).collect();
        self.delivered.retain(|hash| wanted.contains(hash));
    }

    /// Whether enough answers wait to be connected that no more are asked for.
    #[must_use]
    pub fn saturated(&self) -> bool {
        self.delivered_bytes >= DELIVERED_BYTES
    }

    /// Who `hash` is asked of, if anyone.
    #[must_use]
    pub fn asked_of(&self, hash: &BlockHash) -> Option<P> {
        self.in_flight.get(hash).map(|(peer, _)| *peer)
    }

    /// `peer` answered a blocks request for `asked` with the blocks in
    /// `received` (those asked for only). Blocks after the last one sent
    /// were left out for the answer's size cap: they may be asked again of
    /// anyone. A block left out before it, or every block of an empty
    /// answer, is asked of others: the peer does not have it (another
    /// branch, or pruned).
    pub fn blocks_answered(
        &mut self,
        peer: P,
        asked: &[BlockHash],
        received: &HashSet<BlockHash>,
        now: Instant,
    ) {
        self.release(peer, asked);
        let last_sent = asked.iter().rposition(|hash| received.contains(hash));
        for (index, hash) in asked.iter().enumerate() {
            let capped = last_sent.is_some_and(|last| index > last);
            if !received.contains(hash) && !capped {
                self.avoid.insert((*hash, peer), now + AVOID_FOR);
            }
        }
        if !received.is_empty() {
            self.stall_timeout = self.stall_timeout.mul_f64(0.85).max(STALL_TIMEOUT);
            if let Some(state) = self.peers.get_mut(&peer) {
                state.limit = (state.limit + 1).min(REQUESTS_PER_PEER);
            }
        }
    }

    /// A blocks request to `peer` failed (timed out, undecodable): its
    /// blocks are asked of others.
    pub fn blocks_failed(&mut self, peer: P, asked: &[BlockHash], now: Instant) {
        self.release(peer, asked);
        for hash in asked {
            self.avoid.insert((*hash, peer), now + AVOID_FOR);
        }
    }

    /// `peer` answered a blocks request busy (it is at its serving budget
    /// for us): its blocks may be asked again at once, of anyone, but it
    /// gets half as many requests in flight, and none for
    /// [`BUSY_BACKOFF`] when it was down to one.
    pub fn blocks_busy(&mut self, peer: P, asked: &[BlockHash], now: Instant) {
        self.release(peer, asked);
        if let Some(state) = self.peers.get_mut(&peer) {
            if state.limit == 1 {
                state.paused_until = Some(now + BUSY_BACKOFF);
            }
            state.limit = (state.limit / 2).max(1);
        }
    }

    /// A blocks request to `peer` ended: the blocks it still held for
    /// `peer` (not since asked of another) are no longer in flight.
    fn release(&mut self, peer: P, asked: &[BlockHash]) {
        self.request_ended(peer);
        for hash in asked {
            if self.in_flight.get(hash).is_some_and(|(p, _)| *p == peer) {
                self.in_flight.remove(hash);
            }
        }
    }

    /// Received blocks were handed on to be connected, in answers of `bytes`.
    pub fn delivered(&mut self, hashes: impl IntoIterator<Item = BlockHash>, bytes: usize) {
        self.delivered.extend(hashes);
        self.delivered_bytes += bytes;
    }

    /// An answer of `bytes` was connected; the blocks in `refused` were
    /// not, and may be asked for again. Stored ones stay counted as
    /// delivered until the queue sees them stored.
    pub fn connect_finished<'a>(&mut self, bytes: usize, refused: impl IntoIterator<Item = &'a BlockHash>) {
        for hash in refused {
            self.delivered.remove(hash);
        }
        self.delivered_bytes = self.delivered_bytes.saturating_sub(bytes);
    }

    /// The requests to send now, with the tip at `tip_height`. `stored`
    /// says whether a body is stored (when the chain can be asked without
    /// waiting): bodies that came another way (gossip, RPC) are then left
    /// out, and the queue's stored front is dropped.
    pub fn plan(
        &mut self,
        now: Instant,
        tip_height: u32,
        stored: Option<&dyn Fn(&BlockHash) -> bool>,
    ) -> Plan<P> {
        self.avoid.retain(|_, until| *until > now);
        let mut plan = Plan::default();
        if let Some(stored) = stored {
            while let Some((hash, _)) = self.queue.front().filter(|(hash, _)| stored(hash)) {
                self.delivered.remove(hash);
                self.in_flight.remove(hash);
                self.queue.pop_front();
            }
        }
        if self.saturated() {
            return plan;
        }
        let horizon = tip_height.saturating_add(DOWNLOAD_WINDOW);
        if let Some(staller) = self.stalling(now) {
            self.stall_timeout = (self.stall_timeout * 2).min(MAX_STALL_TIMEOUT);
            self.in_flight.retain(|hash, (p, _)| {
                let keep = *p != staller;
                if !keep {
                    self.avoid.insert((*hash, staller), now + AVOID_FOR);
                }
                keep
            });
            plan.stalled.push(staller);
        }
        let missing: Vec<(BlockHash, u32)> = self
            .queue
            .iter()
            .take_while(|(_, height)| *height <= horizon)
            .filter(|(hash, _)| !self.in_flight.contains_key(hash) && !self.delivered.contains(hash))
            .filter(|(hash, _)| stored.is_none_or(|stored| !stored(hash)))
            .copied()
            .collect();
        plan.requests = self.assign(missing, now);
        for (peer, batch) in &plan.requests {
            for hash in batch {
                self.in_flight.insert(*hash, (*peer, now));
            }
            if let Some(state) = self.peers.get_mut(peer) {
                state.requests += 1;
            }
        }
        plan
    }

    /// Shares `missing` (lowest first) out in batches, one batch per peer
    /// in turn, least busy peers first, each only blocks at or below the
    /// tip it claims and not avoided for it.
    fn assign(&self, missing: Vec<(BlockHash, u32)>, now: Instant) -> Vec<(P, Vec<BlockHash>)> {
        let mut peers: Vec<(usize, P, u32, usize)> = self
            .peers
            .iter()
            .filter(|(_, s)| s.paused_until.is_none_or(|until| until <= now))
            .filter_map(|(peer, s)| s.height.map(|height| (s.requests, *peer, height, s.limit)))
            .filter(|(requests, _, _, limit)| requests < limit)
            .collect();
        peers.sort_unstable();
        let mut left: Vec<Option<(BlockHash, u32)>> = missing.into_iter().map(Some).collect();
        let mut requests = Vec::new();
        let mut progress = true;
        while progress {
            progress = false;
            for (requests_of_peer, peer, height, limit) in &mut peers {
                if *requests_of_peer >= *limit {
                    continue;
                }
                let mut batch = Vec::new();
                for slot in &mut left {
                    let Some((hash, block_height)) = *slot else { continue };
                    if block_height > *height {
                        break;
                    }
                    if self.avoid.contains_key(&(hash, *peer)) {
                        continue;
                    }
                    batch.push(hash);
                    *slot = None;
                    if batch.len() == self.per_request {
                        break;
                    }
                }
                if !batch.is_empty() {
                    *requests_of_peer += 1;
                    requests.push((*peer, batch));
                    progress = true;
                }
            }
        }
        requests
    }

    /// The peer holding the lowest block not yet delivered past the stall
    /// timeout, when another peer could be asked for it instead.
    fn stalling(&self, now: Instant) -> Option<P> {
        let (front, height) = self.queue.iter().find(|(hash, _)| !self.delivered.contains(hash))?;
        let (holder, since) = self.in_flight.get(front)?;
        if now.duration_since(*since) < self.stall_timeout {
            return None;
        }
        let another = self.peers.iter().any(|(peer, s)| {
            peer != holder
                && s.requests < s.limit
                && s.height.is_some_and(|h| h >= *height)
                && !self.avoid.contains_key(&(*front, *peer))
        });
        another.then_some(*holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u8 = 1;
    const B: u8 = 2;
    const C: u8 = 3;

    fn hash(height: u32) -> BlockHash {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&height.to_le_bytes());
        bytes[31] = 0xb1;
        BlockHash::from_byte_array(bytes)
    }

    /// A queue of blocks 1..=count above a tip at 0, and peers at `heights`.
    fn download(count: u32, per_request: usize, peers: &[(u8, u32)]) -> Download<u8> {
        let mut download = Download::new(per_request);
        download.set_queue(hash(count), (1..=count).map(|h| (hash(h), h)));
        for (peer, height) in peers {
            download.connected(*peer);
            download.set_height(*peer, *height);
        }
        download
    }

    fn heights(batch: &[BlockHash]) -> Vec<u32> {
        batch
            .iter()
            .map(|h| u32::from_le_bytes(h.to_byte_array()[..4].try_into().expect("4 bytes")))
            .collect()
    }

    fn asked_of(plan: &Plan<u8>, peer: u8) -> Vec<u32> {
        plan.requests.iter().filter(|(p, _)| *p == peer).flat_map(|(_, batch)| heights(batch)).collect()
    }

    fn all(batch: &[BlockHash]) -> HashSet<BlockHash> {
        batch.iter().copied().collect()
    }

    #[test]
    fn batches_go_round_the_peers_within_their_tips_and_the_window() {
        let now = Instant::now();
        let mut d = download(3_000, 128, &[(A, 3_000), (B, 3_000), (C, 100)]);
        let plan = d.plan(now, 0, None);
        // One batch each in turn: A and B alternate; C only up to its tip.
        let c = asked_of(&plan, C);
        assert!(c.iter().all(|h| *h <= 100), "C is asked only below its tip: {c:?}");
        assert!(plan.requests.iter().all(|(_, batch)| batch.len() <= 128));
        for peer in [A, B, C] {
            assert!(d.requests(peer) <= REQUESTS_PER_PEER);
        }
        // Every block up to the window is asked once, and nothing past it.
        let mut asked: Vec<u32> = plan.requests.iter().flat_map(|(_, b)| heights(b)).collect();
        asked.sort_unstable();
        assert_eq!(asked, (1..=DOWNLOAD_WINDOW).collect::<Vec<_>>());
        let (a, b) = (asked_of(&plan, A).len(), asked_of(&plan, B).len());
        assert!(a.abs_diff(b) <= 128, "A and B share the window: {a} and {b}");
        // Nothing more while all of it is in flight.
        assert_eq!(d.plan(now, 0, None), Plan::default());
    }

    #[test]
    fn answers_out_of_order_free_only_their_own_blocks() {
        let now = Instant::now();
        let mut d = download(256, 16, &[(A, 256)]);
        let plan = d.plan(now, 0, None);
        assert_eq!(plan.requests.len(), REQUESTS_PER_PEER);
        let first = plan.requests[0].1.clone();
        let last = plan.requests[7].1.clone();
        // The last request is answered first, in full.
        d.blocks_answered(A, &last, &all(&last), now);
        d.delivered(last.iter().copied(), 1_000);
        assert_eq!(d.requests(A), REQUESTS_PER_PEER - 1);
        // The next plan asks for the next blocks, never the delivered ones
        // nor those still in flight.
        let next = d.plan(now, 0, None);
        assert_eq!(asked_of(&next, A), (129..=144).collect::<Vec<_>>());
        // The first request comes back without 9 to 15 (it has 16): those
        // are not asked of A again (it does not have them).
        let mut sent = all(&first[..8]);
        sent.insert(first[15]);
        d.blocks_answered(A, &first, &sent, now);
        d.delivered(sent.iter().copied(), 500);
        let again = d.plan(now, 0, None);
        assert!(asked_of(&again, A).iter().all(|h| !(9..=15).contains(h)), "{again:?}");
        // Another peer gets them.
        d.connected(B);
        d.set_height(B, 256);
        let other = d.plan(now, 0, None);
        assert_eq!(asked_of(&other, B)[..7], (9..=15).collect::<Vec<_>>()[..]);
        // Stored ones leave the queue and the delivered set.
        let stored: HashSet<BlockHash> = (1..=8).map(hash).collect();
        d.connect_finished(1_500, []);
        d.plan(now, 8, Some(&|h: &BlockHash| stored.contains(h)));
        assert_eq!(d.queue.front().map(|(_, h)| *h), Some(9));
    }

    #[test]
    fn blocks_left_out_for_the_size_cap_are_asked_again_and_gaps_elsewhere() {
        let now = Instant::now();
        let mut d = download(16, 16, &[(A, 16)]);
        let asked = d.plan(now, 0, None).requests[0].1.clone();
        // Big blocks: the answer holds 1, 2 and 4 (3 is missing), then its
        // 4 MB were full.
        let sent: HashSet<BlockHash> = [1, 2, 4].into_iter().map(hash).collect();
        d.blocks_answered(A, &asked, &sent, now);
        d.delivered(sent.iter().copied(), 3_000_000);
        let next = d.plan(now, 0, None);
        assert_eq!(asked_of(&next, A), (5..=16).collect::<Vec<_>>(), "the rest at once; 3 not of A");
        d.connected(B);
        d.set_height(B, 16);
        assert_eq!(asked_of(&d.plan(now, 0, None), B), vec![3]);
    }

    #[test]
    fn busy_answers_halve_what_a_peer_is_asked_and_its_blocks_are_asked_again_at_once() {
        let now = Instant::now();
        let mut d = download(8, 1, &[(C, 8)]);
        let first = d.plan(now, 0, None);
        assert_eq!(first.requests.len(), REQUESTS_PER_PEER);
        // Three busy answers: 8, then 4, 2, 1 in flight allowed.
        for (_, batch) in &first.requests[..3] {
            d.blocks_busy(C, batch, now);
        }
        assert!(d.plan(now, 0, None).requests.is_empty(), "five in flight, one allowed");
        // Each answer with blocks allows one more back.
        for (_, batch) in &first.requests[3..] {
            d.blocks_answered(C, batch, &all(batch), now);
            d.delivered(batch.iter().copied(), 100);
        }
        let again = d.plan(now, 0, None);
        assert_eq!(asked_of(&again, C), vec![1, 2, 3], "the busy ones at once, not avoided");
        // Busy down to one request: left alone for a moment, then one at a time.
        for (_, batch) in &again.requests {
            d.blocks_busy(C, batch, now);
        }
        assert!(d.plan(now + BUSY_BACKOFF - Duration::from_millis(1), 0, None).requests.is_empty());
        assert_eq!(asked_of(&d.plan(now + BUSY_BACKOFF, 0, None), C), vec![1]);
    }

    #[test]
    fn a_stalling_peer_loses_its_blocks_to_another_and_the_timeout_adapts() {
        let start = Instant::now();
        let mut d = download(64, 16, &[(A, 64)]);
        let plan = d.plan(start, 0, None);
        assert_eq!(asked_of(&plan, A).len(), 64);
        // Alone, A is never a staller: nobody else could take its blocks.
        assert!(d.plan(start + Duration::from_secs(30), 0, None).stalled.is_empty());
        d.connected(B);
        d.set_height(B, 64);
        // Within the timeout, B waits.
        let early = d.plan(start + STALL_TIMEOUT - Duration::from_millis(1), 0, None);
        assert!(early.stalled.is_empty() && early.requests.is_empty(), "{early:?}");
        // Past it, A stalls the tip: everything it holds goes to B.
        let late = d.plan(start + STALL_TIMEOUT, 0, None);
        assert_eq!(late.stalled, vec![A]);
        assert_eq!(asked_of(&late, B), (1..=64).collect::<Vec<_>>());
        assert!(asked_of(&late, A).is_empty());
        assert_eq!(d.stall_timeout, STALL_TIMEOUT * 2);
        // B is slow too: with C there to take over, it now has twice as
        // long before it counts as stalling.
        d.connected(C);
        d.set_height(C, 64);
        let at = start + STALL_TIMEOUT;
        assert!(d.plan(at + STALL_TIMEOUT * 2 - Duration::from_millis(1), 0, None).stalled.is_empty());
        let again = d.plan(at + STALL_TIMEOUT * 2, 0, None);
        assert_eq!(again.stalled, vec![B]);
        assert_eq!(asked_of(&again, C), (1..=64).collect::<Vec<_>>());
        // A's late answer is still taken, and frees nothing of C's.
        let first = late.requests[0].1.clone();
        d.blocks_answered(A, &plan.requests[0].1, &all(&plan.requests[0].1), at);
        assert_eq!(d.asked_of(&first[0]), Some(C));
        // Answers with blocks bring the timeout back down, never under the start.
        for _ in 0..50 {
            d.blocks_answered(B, &first, &all(&first), at);
        }
        assert_eq!(d.stall_timeout, STALL_TIMEOUT);
    }

    #[test]
    fn a_peer_lying_about_its_tip_holds_nothing_up_for_long() {
        let now = Instant::now();
        // The liar claims the whole chain; the honest peer has it too.
        let mut d = download(32, 16, &[(A, 1_000_000), (B, 32)]);
        let plan = d.plan(now, 0, None);
        let (liar, honest) = (asked_of(&plan, A), asked_of(&plan, B));
        assert_eq!(liar.len() + honest.len(), 32);
        assert!(!liar.is_empty());
        // It answers without the blocks: they go to the honest peer at once.
        for (_, batch) in plan.requests.iter().filter(|(p, _)| *p == A) {
            d.blocks_answered(A, batch, &HashSet::new(), now);
        }
        let next = d.plan(now, 0, None);
        assert_eq!(asked_of(&next, B), liar);
        assert!(asked_of(&next, A).is_empty());
        // Timed out: asked elsewhere (nobody is left here).
        for (_, batch) in &next.requests {
            d.blocks_failed(B, batch, now);
        }
        let after = d.plan(now, 0, None);
        assert!(after.requests.is_empty(), "both avoided for now: {after:?}");
        // After the avoidance, both may be asked again.
        // (17 to 32 are still in flight with B.)
        let later = d.plan(now + AVOID_FOR, 0, None);
        assert_eq!(later.requests.iter().flat_map(|(_, b)| heights(b)).collect::<Vec<_>>(), liar);
    }

    #[test]
    fn a_peer_leaving_frees_its_blocks_and_delivered_bytes_pause_the_download() {
        let now = Instant::now();
        let mut d = download(10, 128, &[(A, 10), (B, 5)]);
        let plan = d.plan(now, 0, None);
        let of_a = asked_of(&plan, A);
        assert!(!of_a.is_empty());
        d.disconnected(A);
        assert_eq!(d.requests(A), 0);
        let next = d.plan(now, 0, None);
        // B takes what A held, up to its own tip.
        assert!(asked_of(&next, B).iter().all(|h| of_a.contains(h) && *h <= 5));
        // A full delivery queue stops new requests until it drains.
        d.connected(C);
        d.set_height(C, 10);
        d.delivered([], DELIVERED_BYTES);
        assert!(d.saturated());
        assert!(d.plan(now, 0, None).requests.is_empty());
        d.connect_finished(DELIVERED_BYTES, []);
        assert!(!d.plan(now, 0, None).requests.is_empty());
    }

    #[test]
    fn low_work_headers_are_bounded_per_peer_and_in_all() {
        let mut pending = PendingHeaders::new(MAX_PENDING_HEADERS);
        // Four peers fill the budget, 2,000 headers an answer.
        let mut each = [0usize; 5];
        for round in 0..HEADER_BUDGET / 2_000 {
            for held in each.iter_mut().take(4) {
                assert!(pending.returned(*held, *held + 2_000), "round {round}");
                *held += 2_000;
            }
        }
        assert_eq!(pending.held(), MAX_PENDING_HEADERS);
        // A fifth is refused its first answer, and holds nothing.
        assert!(!pending.returned(0, 2_000));
        assert_eq!(pending.held(), MAX_PENDING_HEADERS);
        // One peer over its own budget is refused even with room in all.
        pending.released(each[0]);
        assert!(!pending.returned(each[1], HEADER_BUDGET + 1));
        assert_eq!(pending.held(), 2 * HEADER_BUDGET);
        // Room again: the fifth is taken.
        assert!(pending.returned(0, 2_000));
        // Headers stored (enough work) leave nothing held.
        assert!(pending.returned(2_000, 0));
        assert_eq!(pending.held(), 2 * HEADER_BUDGET);
    }

    #[test]
    fn headers_requests_count_against_the_peer_and_refused_blocks_are_asked_again() {
        let now = Instant::now();
        let mut d = download(4, 1, &[(A, 4)]);
        for _ in 0..REQUESTS_PER_PEER - 1 {
            d.request_started(A);
        }
        assert_eq!(d.plan(now, 0, None).requests.len(), 1, "one slot left");
        d.request_ended(A);
        let plan = d.plan(now, 0, None);
        let batch = plan.requests[0].1.clone();
        d.blocks_answered(A, &batch, &all(&batch), now);
        d.delivered(batch.iter().copied(), 10);
        // The node refused to connect it: it may be asked for again.
        d.connect_finished(10, batch.iter());
        assert_eq!(asked_of(&d.plan(now, 0, None), A)[..1], heights(&batch)[..]);
    }
}
