//! The peer-to-peer layer: libp2p over TCP with Noise and Yamux; identify,
//! ping, gossipsub for new blocks and transactions (validated before they
//! are forwarded), a request-response protocol for headers-first sync,
//! Kademlia for finding peers, mDNS only when asked for.
//!
//! - [`protocol`]: the sync messages, their bytes and size caps, and the
//!   names (protocols, topics) that carry the genesis hash.
//! - [`download`]: the body download's scheduling, free of libp2p.
//! - [`peers`]: scores with decay, bans kept on disk, the peer book.
//! - [`pending`]: handshakes in progress bounded per IP address.
//! - [`serve`]: the budgets of validation and serving: what one peer, and
//!   all together, can make the node hold.
//! - [`validate`]: what a gossiped block or transaction goes through
//!   before it is forwarded, free of libp2p (the fuzz targets run it).
//! - [`service`]: the actor: one task owns the swarm; the rest of the node
//!   talks to it through a bounded command channel and the node's
//!   announcements; validation runs on blocking threads, never in the loop.

pub mod download;
pub mod peers;
pub mod pending;
pub mod protocol;
pub mod serve;
pub mod service;
pub mod validate;

pub use service::{start, NetworkConfig, NetworkHandle, PeerInfo};
