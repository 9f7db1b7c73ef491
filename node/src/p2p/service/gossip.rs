//! Gossip: publishing the node's own blocks and transactions, and
//! validating what peers gossip (within the validation budget) before
//! gossipsub forwards it.

use super::*;
use crate::p2p::validate;

impl Service {
    pub(super) fn publish(&mut self, announcement: &Announcement) {
        let (topic, bytes) = match announcement {
            Announcement::Block(block) => (self.blocks_topic.clone(), block.encode()),
            Announcement::Transaction(tx) => (self.transactions_topic.clone(), tx.encode()),
        };
        let size = bytes.len() as u64;
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => {
                for state in self.peers.values_mut() {
                    state.bytes_out += size;
                }
            }
            Err(gossipsub::PublishError::Duplicate | gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!("publish: {e}"),
        }
    }

    pub(super) fn on_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        if let Some(state) = self.peers.get_mut(&source) {
            state.bytes_in += message.data.len() as u64;
        }
        let node = self.node.clone();
        if message.topic == self.blocks_topic.hash() {
            if let Err(error) = validate::precheck_block(&message.data, self.node.params()) {
                tracing::info!(peer = %source, "gossiped block refused before decoding: {error}");
                self.report(&id, &source, gossipsub::MessageAcceptance::Reject);
                self.penalize(source, Offence::InvalidBlock);
                return;
            }
            let Some(block) = self.admit_decoded::<Block>(source, &id, Gossip::Block, &message.data) else {
                return;
            };
            self.gossiped_blocks.insert(id.clone(), false);
            let valid_out = self.valid_out.clone();
            // Off the network task: the state lock may be busy.
            self.tasks.push(tokio::task::spawn_blocking(move || {
                let hash = block.block_hash();
                // Relayed as soon as it is found valid: the write that
                // follows is this node's alone. A full queue only means it
                // is relayed when the write is done.
                let mut on_valid = |valid: BlockHash| {
                    if valid == hash {
                        let _ = valid_out.try_send(Outcome::GossipBlockValid { source, id: id.clone() });
                    }
                };
                let result = validate::accept_block(&node, block, &mut on_valid);
                Outcome::GossipBlock { source, id, result }
            }));
        } else if message.topic == self.transactions_topic.hash() {
            let Some(tx) = self.admit_decoded::<Transaction>(source, &id, Gossip::Transaction, &message.data)
            else {
                return;
            };
            self.tasks.push(tokio::task::spawn_blocking(move || Outcome::GossipTransaction {
                source,
                id,
                result: node.accept_transaction(tx).map(|_| ()),
            }));
        } else {
            self.report(&id, &source, gossipsub::MessageAcceptance::Reject);
            self.penalize(source, Offence::Unrequested);
        }
    }

    /// A gossip message to validate, decoded; `None` when it is not to be
    /// validated. Past the validation bounds it is ignored (not forwarded),
    /// and a peer past them a thousand times in a window is penalized as a
    /// flood; one that does not decode is rejected as a protocol violation.
    pub(super) fn admit_decoded<T: Decode>(
        &mut self,
        source: PeerId,
        id: &gossipsub::MessageId,
        kind: Gossip,
        data: &[u8],
    ) -> Option<T> {
        match self.budget.admit_gossip(source, kind, Instant::now()) {
            Admission::Validate => {}
            Admission::Ignore => {
                self.report(id, &source, gossipsub::MessageAcceptance::Ignore);
                return None;
            }
            Admission::Flood => {
                self.report(id, &source, gossipsub::MessageAcceptance::Ignore);
                self.penalize(source, Offence::Flood);
                return None;
            }
        }
        let decoded = T::decode(data).ok();
        if decoded.is_none() {
            self.budget.end_validation(source, kind);
            self.report(id, &source, gossipsub::MessageAcceptance::Reject);
            self.penalize(source, Offence::ProtocolViolation);
        }
        decoded
    }

    pub(super) fn report(
        &mut self,
        id: &gossipsub::MessageId,
        source: &PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, source, acceptance);
    }
}
