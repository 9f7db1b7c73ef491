//! Headers-first sync: status exchange, headers, and the download of
//! bodies of the best header chain from the peers that have them.

use super::*;

impl Service {
    pub(super) fn on_status(&mut self, peer: PeerId, status: Status) {
        if status.genesis != self.genesis {
            self.penalize(peer, Offence::ProtocolViolation);
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.status = Some(status);
            state.last_status = Instant::now();
        }
        self.download.set_height(peer, status.tip.height.get());
        self.refresh_peers();
        let best = self.node.summary().best_header;
        if status.tip.chain_work > best.chain_work {
            self.request_headers(peer);
        }
        self.schedule_blocks();
    }

    /// `peer` showed it has the chain up to `tip` (it sent its headers, or
    /// its block became ours), whatever its last status said.
    pub(super) fn peer_has(&mut self, peer: PeerId, tip: TipSummary) {
        let Some(status) = self.peers.get_mut(&peer).and_then(|s| s.status.as_mut()) else { return };
        if tip.chain_work > status.tip.chain_work {
            status.tip = tip;
            self.download.set_height(peer, tip.height.get());
        }
    }

    /// Asks `peer` for the headers after what we have (and what it already sent).
    pub(super) fn request_headers(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get(&peer) else { return };
        if state.headers_in_flight {
            return;
        }
        let mut locator = Vec::new();
        if let Some(last) = state.pending_headers.last() {
            locator.push(last.block_hash());
        }
        locator.extend(self.node.summary().locator.iter().copied());
        locator.truncate(MAX_LOCATOR);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.headers_in_flight = true;
        }
        self.send_request(peer, Request::Headers { locator }, Asked::Headers);
    }

    pub(super) fn on_response(
        &mut self,
        peer: PeerId,
        id: request_response::OutboundRequestId,
        response: Response,
    ) {
        let Some((_, asked)) = self.asked.remove(&id) else {
            self.penalize(peer, Offence::Unrequested);
            return;
        };
        tracing::trace!(target: "cairn_node::sync", %peer, asked = asked.label(), "answer received");
        if let Some(state) = self.peers.get_mut(&peer) {
            state.bytes_in += response.encoded_len() as u64;
        }
        if matches!(asked, Asked::Headers) {
            self.download.request_ended(peer);
        }
        match (asked, response) {
            (Asked::Status, Response::Status(status)) => self.on_status(peer, status),
            (Asked::Headers, Response::Headers(headers)) => self.on_headers(peer, headers),
            (Asked::Blocks(asked), Response::Blocks(blocks)) => self.on_blocks(peer, &asked, blocks),
            // At its serving budget: not an offence; ask again later or elsewhere.
            (asked, Response::Busy) => {
                tracing::debug!(%peer, ?asked, "peer busy");
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.headers_in_flight &= !matches!(asked, Asked::Headers);
                }
                if let Asked::Blocks(hashes) = asked {
                    self.download.blocks_busy(peer, &hashes, Instant::now());
                    self.schedule_blocks();
                }
            }
            (asked, _) => {
                tracing::debug!(%peer, ?asked, "answer of the wrong kind");
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.headers_in_flight &= !matches!(asked, Asked::Headers);
                }
                if let Asked::Blocks(hashes) = asked {
                    self.download.blocks_failed(peer, &hashes, Instant::now());
                }
                self.penalize(peer, Offence::ProtocolViolation);
            }
        }
    }

    pub(super) fn on_headers(&mut self, peer: PeerId, headers: Vec<BlockHeader>) {
        let Some(state) = self.peers.get_mut(&peer) else { return };
        if headers.is_empty() {
            state.headers_in_flight = false;
            self.schedule_blocks();
            return;
        }
        let pending = std::mem::take(&mut state.pending_headers);
        let held_before = pending.len();
        let node = self.node.clone();
        let minimum = self.config.minimum_chain_work;
        self.tasks.push(tokio::task::spawn_blocking(move || {
            let full = headers.len() == MAX_HEADERS_PER_ANSWER;
            let (pending, seen, result) = take_headers(&node, pending, headers, minimum);
            Outcome::Headers { peer, full, pending, held_before, seen, result }
        }));
    }

    pub(super) fn on_blocks(&mut self, peer: PeerId, asked: &[BlockHash], blocks: Vec<Block>) {
        let asked_set: HashSet<&BlockHash> = asked.iter().collect();
        let mut wanted = Vec::new();
        let mut hashes = HashSet::new();
        let mut junk = false;
        for block in blocks {
            let hash = block.block_hash();
            if asked_set.contains(&hash) && hashes.insert(hash) {
                wanted.push(block);
            } else {
                junk = true;
            }
        }
        self.download.blocks_answered(peer, asked, &hashes, Instant::now());
        if junk {
            self.penalize(peer, Offence::Unrequested);
        }
        if wanted.is_empty() {
            self.schedule_blocks();
            return;
        }
        let bytes: usize = wanted.iter().map(Block::size).sum();
        match self.connector.try_send((peer, wanted, bytes)) {
            Ok(()) => self.download.delivered(hashes, bytes),
            // The queue is full: drop the answer; its blocks are asked for again.
            Err(e) => tracing::debug!(%peer, "block-sync queue full: {e}"),
        }
        // Keep every peer busy while the answer connects.
        self.schedule_blocks();
    }

    /// Asks peers for the missing bodies of the best header chain, as the
    /// download plans it; penalizes the peers it finds stalling.
    pub(super) fn schedule_blocks(&mut self) {
        if self.download.saturated() {
            return;
        }
        // The network task never waits for the state lock (a block may be
        // connecting, headers being stored): what needs it waits for the
        // next call when the lock is busy.
        let summary = self.node.summary();
        let state = self.node.try_state();
        // The download queue is worked out again only when the best header changes.
        if self.download.queue_for() != Some(summary.best_header.hash) {
            let Some(state) = &state else { return };
            let best = state.chain.best_header().hash;
            let queue: Vec<(BlockHash, u32)> = state
                .chain
                .missing_bodies(usize::MAX)
                .into_iter()
                .filter_map(|hash| state.chain.entry(&hash).map(|e| (hash, e.record.height.get())))
                .collect();
            self.download.set_queue(best, queue);
        }
        let now = Instant::now();
        let tip = summary.tip.height.get();
        // Without the lock, what was delivered (stored or waiting to be)
        // is known here; only bodies that came another way (gossip, RPC)
        // need the lock to be seen.
        let plan = match &state {
            Some(state) => self.download.plan(now, tip, Some(&|hash: &BlockHash| state.chain.has_body(hash))),
            None => self.download.plan(now, tip, None),
        };
        drop(state);
        for peer in plan.stalled {
            tracing::info!(%peer, "peer stalls the download: its blocks are asked of others");
            self.penalize(peer, Offence::Stall);
        }
        for (peer, batch) in plan.requests {
            self.send_request(peer, Request::Blocks(batch.clone()), Asked::Blocks(batch));
        }
    }
}

/// Checks headers a peer sent (continuing what it sent before, or starting
/// from a block we know) and stores the run once it beats the active chain
/// and the minimum chain work. Returns what is still pending.
pub(super) fn take_headers(
    node: &Node,
    mut pending: Vec<BlockHeader>,
    headers: Vec<BlockHeader>,
    minimum: Work,
) -> (Vec<BlockHeader>, Option<TipSummary>, Result<usize, HeadersError>) {
    let now = unix_now();
    let mut state = node.state();
    let chain = &mut state.chain;
    // Headers we already have (overlap with the locator) are skipped.
    let fresh: Vec<BlockHeader> =
        headers.into_iter().skip_while(|h| chain.entry(&h.block_hash()).is_some()).collect();
    let Some(first) = fresh.first() else { return (pending, None, Ok(0)) };
    let continues = pending.last().is_some_and(|last| last.block_hash() == first.prev_block);
    if !continues {
        pending.clear();
    }
    let work = match chain.check_headers(&pending, &fresh, now) {
        Ok(work) => work,
        Err(error) => return (Vec::new(), None, Err(error)),
    };
    pending.extend(fresh);
    let base = chain.entry(&pending[0].prev_block).map_or(0, |e| e.record.height.get());
    let last = pending.last().expect("not empty");
    let seen = TipSummary {
        hash: last.block_hash(),
        height: cairn_consensus::Height::new(base + pending.len() as u32),
        chain_work: work,
    };
    if work > chain.tip_summary().chain_work && work >= minimum {
        // Checked just above, under the same lock.
        let result = chain.store_checked_headers(&pending);
        drop(state);
        if let Err(HeadersError::Store(error)) = &result {
            node.abort("storing headers", error);
        }
        return (Vec::new(), Some(seen), result);
    }
    if pending.len() > HEADER_BUDGET {
        pending.clear();
    }
    (pending, Some(seen), Ok(0))
}
