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
        self.refresh_peers();
        let best = self.node.summary().best_header;
        if status.tip.chain_work > best.chain_work {
            self.request_headers(peer);
        }
        self.schedule_blocks();
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
            if !matches!(asked, Asked::Status) {
                state.requests_in_flight = state.requests_in_flight.saturating_sub(1);
            }
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
                    let now = Instant::now();
                    for hash in hashes {
                        self.blocks_in_flight.remove(&hash);
                        self.avoid.insert((hash, peer), now);
                    }
                    self.schedule_blocks();
                }
            }
            (asked, _) => {
                tracing::debug!(%peer, ?asked, "answer of the wrong kind");
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.headers_in_flight &= !matches!(asked, Asked::Headers);
                }
                if let Asked::Blocks(hashes) = asked {
                    for hash in hashes {
                        self.blocks_in_flight.remove(&hash);
                    }
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
        let node = self.node.clone();
        let minimum = self.config.minimum_chain_work;
        self.tasks.push(tokio::task::spawn_blocking(move || {
            let full = headers.len() == MAX_HEADERS_PER_ANSWER;
            let (pending, seen, result) = take_headers(&node, pending, headers, minimum);
            Outcome::Headers { peer, full, pending, seen, result }
        }));
    }

    pub(super) fn on_blocks(&mut self, peer: PeerId, asked: &[BlockHash], blocks: Vec<Block>) {
        let now = Instant::now();
        let asked_set: HashSet<&BlockHash> = asked.iter().collect();
        let mut wanted = Vec::new();
        let mut hashes = HashSet::new();
        let mut junk = false;
        for block in blocks {
            let hash = block.block_hash();
            if asked_set.contains(&hash) {
                wanted.push(block);
                hashes.insert(hash);
            } else {
                junk = true;
            }
        }
        for hash in asked {
            if self.blocks_in_flight.get(hash) == Some(&peer) {
                self.blocks_in_flight.remove(hash);
            }
            // It does not have this one (another branch, or pruned): ask someone else.
            if !hashes.contains(hash) {
                self.avoid.insert((*hash, peer), now);
            }
        }
        if junk {
            self.penalize(peer, Offence::Unrequested);
        }
        if wanted.is_empty() {
            self.schedule_blocks();
            return;
        }
        let bytes: usize = wanted.iter().map(Block::size).sum();
        match self.connector.try_send((peer, wanted, bytes)) {
            Ok(()) => {
                self.delivered.extend(hashes);
                self.delivered_bytes += bytes;
            }
            // The queue is full: drop the answer; its blocks are asked for again.
            Err(e) => tracing::debug!(%peer, "block-sync queue full: {e}"),
        }
        // Keep every peer busy while the answer connects.
        self.schedule_blocks();
    }

    /// Asks peers for the missing bodies of the best header chain.
    pub(super) fn schedule_blocks(&mut self) {
        let now = Instant::now();
        self.avoid.retain(|_, when| now.duration_since(*when) < Duration::from_secs(60));
        if self.delivered_bytes >= DELIVERED_BYTES {
            return;
        }
        let mut peers: Vec<(PeerId, u32, usize)> = self
            .peers
            .iter()
            .filter_map(|(peer, s)| s.status.map(|st| (*peer, st.tip.height.get(), s.requests_in_flight)))
            .filter(|(_, _, in_flight)| *in_flight < REQUESTS_PER_PEER)
            .collect();
        if peers.is_empty() {
            return;
        }
        peers.sort_by_key(|(_, _, in_flight)| *in_flight);
        // The network task never waits for the state lock (a block may be
        // connecting, headers being stored): what needs it waits for the
        // next call when the lock is busy.
        let summary = self.node.summary();
        let horizon = summary.tip.height.get().saturating_add(DOWNLOAD_WINDOW);
        // The download queue is worked out again only when the best header changes.
        if self.download.0 != summary.best_header.hash {
            let Some(state) = self.node.try_state() else { return };
            let best = state.chain.best_header().hash;
            self.download.1 = state
                .chain
                .missing_bodies(usize::MAX)
                .into_iter()
                .filter_map(|hash| state.chain.entry(&hash).map(|e| (hash, e.record.height.get())))
                .collect();
            self.download.0 = best;
            let wanted: HashSet<BlockHash> = self.download.1.iter().map(|(hash, _)| *hash).collect();
            self.delivered.retain(|hash| wanted.contains(hash));
        }
        let mut missing: Vec<(BlockHash, u32)> = self
            .download
            .1
            .iter()
            .take_while(|(_, height)| *height <= horizon)
            .filter(|(hash, _)| !self.blocks_in_flight.contains_key(hash) && !self.delivered.contains(hash))
            .copied()
            .collect();
        // Without the lock, what was delivered (stored or waiting to be)
        // is known here; only bodies that came another way (gossip, RPC)
        // need the lock to be seen.
        if let Some(state) = self.node.try_state() {
            while let Some((hash, _)) = self.download.1.front().filter(|(hash, _)| state.chain.has_body(hash))
            {
                self.delivered.remove(hash);
                self.download.1.pop_front();
            }
            missing.retain(|(hash, _)| !state.chain.has_body(hash));
        }
        if missing.is_empty() {
            return;
        }
        let mut queue = missing.into_iter().peekable();
        let mut requests = Vec::new();
        'peers: for (peer, height, in_flight) in peers {
            for _ in in_flight..REQUESTS_PER_PEER {
                let mut batch = Vec::new();
                while batch.len() < MAX_BLOCKS_PER_REQUEST {
                    let Some((hash, block_height)) = queue.peek().copied() else { break };
                    if block_height > height {
                        continue 'peers;
                    }
                    if self.avoid.contains_key(&(hash, peer)) {
                        break;
                    }
                    queue.next();
                    batch.push(hash);
                }
                if batch.is_empty() {
                    continue 'peers;
                }
                requests.push((peer, batch));
            }
        }
        for (peer, batch) in requests {
            for hash in &batch {
                self.blocks_in_flight.insert(*hash, peer);
            }
            self.send_request(peer, Request::Blocks(batch.clone()), Asked::Blocks(batch));
        }
    }
}

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
