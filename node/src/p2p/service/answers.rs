//! Serving sync requests: status, headers and blocks, within the serving
//! budget (`p2p::serve`), and the bookkeeping of answers in flight.

use super::*;

impl Service {
    /// An answer handed to libp2p was written, or dropped; one that timed
    /// out (the peer kept its window closed) costs a stall.
    /// Returns whether the request was one the node took up (its answer
    /// handed over or being built).
    pub(super) fn answer_finished(
        &mut self,
        request: request_response::InboundRequestId,
        timed_out: bool,
    ) -> bool {
        if self.building.contains_key(&request) {
            // Our own answer was late: not the peer's fault.
            return true;
        }
        if let Some(deferred) = self.deferred.remove(&request) {
            // It waited behind the peer's own answers: only those cost.
            tracing::debug!(peer = %deferred.peer, "a deferred request ended before its turn");
            return true;
        }
        let Some((peer, size)) = self.answering.remove(&request) else { return false };
        self.budget.answer_done(peer, size);
        if timed_out {
            self.penalize(peer, Offence::Stall);
        }
        self.start_deferred(peer);
        true
    }

    /// Starts the blocks requests of `peer` that wait (for its answer being
    /// built, or its share of answer bytes), in the order they came, while
    /// nothing of it is being built and the share allows; answers busy
    /// those another bound refuses. Every blocks request comes this way.
    pub(super) fn start_deferred(&mut self, peer: PeerId) {
        while !self.building.values().any(|p| *p == peer) {
            let next = self
                .deferred
                .iter()
                .filter(|(_, d)| d.peer == peer)
                .min_by_key(|(_, d)| d.order)
                .map(|(id, _)| *id);
            let Some(id) = next else { return };
            match self.budget.start_answer(peer, MAX_RESPONSE_SIZE, BLOCKS_ANSWER_LEAST, Instant::now()) {
                Ok(granted) => {
                    let Some(deferred) = self.deferred.remove(&id) else { return };
                    self.build_blocks_answer(peer, id, deferred.hashes, deferred.channel, granted);
                }
                Err(Busy::PeerShare) => return,
                Err(busy) => {
                    let Some(deferred) = self.deferred.remove(&id) else { return };
                    tracing::debug!(%peer, ?busy, "busy: deferred request not served");
                    let _ = self.swarm.behaviour_mut().sync.send_response(deferred.channel, Response::Busy);
                }
            }
        }
    }

    /// Builds a blocks answer of at most `granted` bytes off the loop.
    fn build_blocks_answer(
        &mut self,
        peer: PeerId,
        request: request_response::InboundRequestId,
        hashes: Vec<BlockHash>,
        channel: request_response::ResponseChannel<Response>,
        granted: usize,
    ) {
        let node = self.node.clone();
        self.building.insert(request, peer);
        self.tasks.push(tokio::task::spawn_blocking(move || {
            let blocks = blocks_answer(node.store().as_ref(), &hashes, granted - BLOCKS_ANSWER_FRAMING);
            let response = Response::EncodedBlocks(blocks);
            Outcome::Respond { channel, response, peer, request, reserved: granted }
        }));
    }

    /// Starts an answer that would like `want` bytes and is of use with
    /// `least`; returns the bytes granted, or answers busy.
    pub(super) fn admit_answer(
        &mut self,
        peer: PeerId,
        want: usize,
        least: usize,
        channel: request_response::ResponseChannel<Response>,
    ) -> Option<(request_response::ResponseChannel<Response>, usize)> {
        match self.budget.start_answer(peer, want, least, Instant::now()) {
            Ok(granted) => Some((channel, granted)),
            Err(busy) => {
                tracing::debug!(%peer, ?busy, "busy: request not served");
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, Response::Busy);
                None
            }
        }
    }

    pub(super) fn on_request(
        &mut self,
        peer: PeerId,
        request_id: request_response::InboundRequestId,
        request: Request,
        channel: request_response::ResponseChannel<Response>,
    ) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.bytes_in += request.to_bytes().len() as u64;
        }
        let node = self.node.clone();
        match request {
            Request::Status(status) => {
                let ours = self.status();
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, Response::Status(ours));
                self.on_status(peer, status);
            }
            Request::Headers { locator } => {
                let size = 16 + 80 * MAX_HEADERS_PER_ANSWER;
                let Some((channel, reserved)) = self.admit_answer(peer, size, size, channel) else { return };
                self.building.insert(request_id, peer);
                self.tasks.push(tokio::task::spawn_blocking(move || {
                    let headers = node.state().chain.headers_after(&locator, MAX_HEADERS_PER_ANSWER);
                    let response = Response::Headers(headers);
                    Outcome::Respond { channel, response, peer, request: request_id, reserved }
                }));
            }
            Request::Malformed(reason) => {
                tracing::debug!(%peer, "malformed request: {reason}");
                drop(channel);
                self.penalize(peer, Offence::ProtocolViolation);
            }
            Request::Blocks(hashes) => {
                // A hash asked twice is a request to amplify the answer.
                let mut seen = HashSet::with_capacity(hashes.len());
                if !hashes.iter().all(|hash| seen.insert(*hash)) {
                    tracing::debug!(%peer, "blocks request names a block twice");
                    drop(channel);
                    self.penalize(peer, Offence::ProtocolViolation);
                    return;
                }
                // As much of the full answer as the budget grants, and
                // at least room for one block (the asker asks again for
                // what was left out). Past its share of answer bytes the
                // request waits for the peer's earlier answers to be
                // written (Bitcoin Core stops reading a peer whose send
                // buffer is full); it holds only its hashes meanwhile.
                // One answer of a peer is built at a time, so peers are
                // served in turn (like Core's one message per peer per
                // round) rather than in the order their requests came.
                if self.deferred.values().filter(|d| d.peer == peer).count() >= MAX_ANSWERS_PER_PEER {
                    tracing::debug!(%peer, "busy: request not served, eight already wait");
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, Response::Busy);
                    return;
                }
                self.deferred_count += 1;
                let deferred = Deferred { peer, hashes, channel, order: self.deferred_count };
                self.deferred.insert(request_id, deferred);
                self.start_deferred(peer);
            }
        }
    }
}

/// What a blocks answer's encoding adds to its blocks, at most.
const BLOCKS_ANSWER_FRAMING: usize = MAX_RESPONSE_SIZE - BLOCKS_ANSWER_BUDGET;
/// The least a blocks answer is granted: one block of the largest size,
/// with the answer's framing.
const BLOCKS_ANSWER_LEAST: usize = BLOCKS_ANSWER_FRAMING + cairn_consensus::MAX_BLOCK_SIZE;

/// The stored encodings of the blocks named in `hashes` that this node
/// has, in the order asked, read from the store without the state lock:
/// a block joins the answer only while the answer stays within `budget`
/// bytes (the first always does: a budget is at least one block's maximum size).
pub(super) fn blocks_answer(store: &dyn Store, hashes: &[BlockHash], budget: usize) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut size = 0;
    for hash in hashes {
        let Ok(Some(block)) = store.get(Cf::Bodies, &hash.to_byte_array()) else { continue };
        if !blocks.is_empty() && size + block.len() > budget {
            break;
        }
        size += block.len();
        blocks.push(block);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, MemStore};

    /// Three stored "blocks" of 1.5 MB: an answer never passes its budget,
    /// even when the next block would (the old check came after adding).
    #[test]
    fn a_blocks_answer_never_passes_its_budget() {
        let store = MemStore::new();
        let hashes: Vec<BlockHash> = (1..=3u8).map(|i| BlockHash::from_byte_array([i; 32])).collect();
        let mut batch = Batch::new();
        for hash in &hashes {
            batch.put(Cf::Bodies, hash.to_byte_array(), vec![0u8; 1_500_000]);
        }
        store.write(batch).expect("write");
        let missing = BlockHash::from_byte_array([9; 32]);
        let asked = [missing, hashes[0], hashes[1], hashes[2]];
        let answer = blocks_answer(&store, &asked, BLOCKS_ANSWER_BUDGET);
        assert_eq!(answer.len(), 2, "two fit in {BLOCKS_ANSWER_BUDGET} bytes, three do not");
        assert!(answer.iter().map(Vec::len).sum::<usize>() <= BLOCKS_ANSWER_BUDGET);
        // One block larger than a small budget still goes alone.
        assert_eq!(blocks_answer(&store, &hashes, 1_000).len(), 1);
        assert!(Response::EncodedBlocks(answer).encoded_len() <= MAX_RESPONSE_SIZE);
    }
}
