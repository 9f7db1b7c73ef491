//! The network actor: one task owns the libp2p swarm and runs one
//! `select!` loop over swarm events, commands from RPC, the node's
//! announcements, finished validation work and a one-second tick.
//!
//! Sync is headers first: a peer's status says how much work its chain
//! has; when that is more than the best header here, headers are asked for
//! by locator, checked (work, bits, time) as they arrive and stored only
//! once the chain they form has more work than the active chain (and at
//! least the network's minimum chain work); until then they wait in the
//! peer's budget. Bodies of the best header chain are then fetched from
//! every peer that has them, at most [`MAX_BLOCKS_PER_REQUEST`] per
//! request and eight requests per peer, re-asked elsewhere when a request
//! times out, and connected in order by the chain.
//!
//! Gossip is validated before it is forwarded: a block or transaction is
//! reported Accept (valid), Reject (invalid: the sender is penalized) or
//! Ignore (duplicate or not checkable yet: no penalty).
//!
//! Here: the service's state, the `select!` loop and its event dispatch.
//! [`build`]: the swarm and its limits; [`gossip`]: publishing and
//! validating gossip; [`answers`]: serving requests within the budgets of
//! `p2p::serve`; [`sync`]: headers-first sync and the body download.

use crate::store::{Cf, Store};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_consensus::{Block, BlockHash, BlockHeader, Decode, Encode, Transaction, Work};
use libp2p::futures::stream::FuturesUnordered;
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, kad, mdns, noise, ping,
    request_response, tcp, yamux, Multiaddr, PeerId, Swarm,
};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use super::download::{Download, PendingHeaders, HEADER_BUDGET, MAX_PENDING_HEADERS};
use super::peers::{block_offence, transaction_offence, Bans, Offence, PeerBook, Score, DEFAULT_BAN};
use super::pending::PendingPerIp;
use super::protocol::{
    blocks_topic, identify_version, kad_protocol, sync_protocol, transactions_topic, Request, Response,
    Status, SyncCodec, BLOCKS_ANSWER_BUDGET, GOSSIP_ENVELOPE, MAX_BLOCKS_PER_REQUEST, MAX_GOSSIP_SIZE,
    MAX_LOCATOR, MAX_RESPONSE_SIZE,
};
use super::serve::{Admission, Budget, Busy, Gossip, MAX_ANSWERS_PER_PEER};
use crate::chain::{Accepted, ChainError, HeadersError, TipSummary, MAX_HEADERS_PER_ANSWER};
use crate::files::{read_capped, write_private};
use crate::mempool::{MempoolError, MAX_STANDARD_TX_SIZE};
use crate::node::{unix_now, Announcement, Node};

mod answers;
mod build;
mod gossip;
mod sync;

pub use build::start;

/// How long a sync request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How often peers are asked for their status again.
const STATUS_INTERVAL: Duration = Duration::from_secs(15);
/// How often peers hear of our tip while we are still syncing.
const SYNCING_STATUS_INTERVAL: Duration = Duration::from_secs(2);
/// How long to wait before dialing the same address again.
const REDIAL_INTERVAL: Duration = Duration::from_secs(5);
/// Commands queued from RPC, at most.
const COMMAND_QUEUE: usize = 64;
/// Sync answers waiting to be connected, at most.
const CONNECT_QUEUE: usize = 64;
/// The block-sync thread connects an answer in runs of at most this many
/// blocks and bytes, one hold of the node's lock each (tens of
/// milliseconds), letting others (RPC, the miner) in between. Within a run
/// each block's checks overlap the write of the block before it.
const CONNECT_SLICE_BLOCKS: usize = 32;
const CONNECT_SLICE_BYTES: usize = 256 * 1024;

/// How the network layer runs.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial and keep dialing.
    pub connect: Vec<Multiaddr>,
    /// Whether to find peers on the local network by mDNS (multicast).
    pub mdns: bool,
    /// Where the identity key, peer book and bans live.
    pub datadir: PathBuf,
    /// Inbound connections, at most.
    pub max_inbound: u32,
    /// Inbound connections from one IP address, at most.
    pub max_inbound_per_ip: usize,
    /// Inbound connections still handshaking, at most.
    pub max_pending: u32,
    /// Outbound connections the node keeps trying to have (its own choice of peers).
    pub outbound_target: usize,
    /// How long a misbehaving peer stays banned.
    pub ban_duration: Duration,
    /// Header chains with less work are never stored.
    pub minimum_chain_work: Work,
    /// Whether to dial peers learned from the peer book, Kademlia and
    /// mDNS; without it only `connect` peers are dialed (inbound peers are
    /// still accepted), for fixed topologies.
    pub discovery: bool,
    /// Whether to listen on a TCP port another program already listens on
    /// (libp2p's sockets allow it, and the kernel then splits inbound
    /// connections between the two); refused unless asked for.
    pub allow_shared_port: bool,
}

impl NetworkConfig {
    /// Outbound connections, established or being dialed, at most each:
    /// twice the target (peers found while others drop) and a few for
    /// `addnode`.
    #[must_use]
    pub fn max_outbound(&self) -> u32 {
        u32::try_from(self.outbound_target).unwrap_or(u32::MAX / 4).saturating_mul(2).saturating_add(8)
    }

    /// Files the network holds besides inbound peers: outbound peers
    /// established and being dialed, inbound handshakes, listeners.
    #[must_use]
    pub fn files_besides_inbound(&self) -> u64 {
        2 * u64::from(self.max_outbound()) + u64::from(self.max_pending) + self.listen.len() as u64
    }

    /// Defaults for a node whose data is in `datadir`, listening on `listen`.
    #[must_use]
    pub fn new(datadir: PathBuf, listen: Vec<Multiaddr>) -> Self {
        Self {
            listen,
            connect: Vec::new(),
            mdns: false,
            datadir,
            max_inbound: 64,
            max_inbound_per_ip: 16,
            max_pending: 32,
            outbound_target: 8,
            ban_duration: DEFAULT_BAN,
            minimum_chain_work: Work::ZERO,
            discovery: true,
            allow_shared_port: false,
        }
    }
}

/// Refuses a listen address whose TCP port another socket listens on.
/// libp2p listens with `SO_REUSEPORT`, so a second node on the same port
/// would start and quietly take half of the first one's inbound peers; a
/// plain socket (without it) cannot bind there, which is the test.
///
/// # Errors
/// [`NetworkError::PortInUse`] when the port is taken.
pub fn check_port_free(address: &Multiaddr) -> Result<(), NetworkError> {
    use libp2p::multiaddr::Protocol;
    let mut parts = address.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let Some(Protocol::Tcp(port)) = parts.next() else { return Ok(()) };
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind((ip, port)) {
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            Err(NetworkError::PortInUse(address.clone()))
        }
        // Other failures (no such address here) are libp2p's to report.
        _ => Ok(()),
    }
}

/// Why the network layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The identity key could not be read or written.
    #[error("identity key {path}: {reason}")]
    Identity {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The ban list could not be read.
    #[error("ban list: {0}")]
    Bans(std::io::Error),
    /// libp2p refused the setup or an address.
    #[error("{0}")]
    Setup(String),
    /// Another program listens on the port.
    #[error(
        "the peer-to-peer address {0} is in use by another program (another node?): give another \
         with --listen, or --allow-shared-port to share the port (the kernel then splits inbound \
         connections between the two)"
    )]
    PortInUse(Multiaddr),
}

/// A connected peer, as RPC shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub id: String,
    /// The address of the connection.
    pub address: String,
    /// Whether it connected to us.
    pub inbound: bool,
    /// Its score (0 neutral, negative after misbehaviour).
    pub score: f64,
    /// The height of its active tip, as it last said.
    pub best_height: Option<u32>,
    /// Bytes of sync and gossip messages received from it.
    pub bytes_in: u64,
    /// Bytes of sync and gossip messages sent to it.
    pub bytes_out: u64,
    /// Seconds since it connected.
    pub connected_secs: u64,
    /// Its software, as identify reported it.
    pub agent: String,
    /// Checked headers of its chain held until they add up to more work
    /// than the active chain (bounded per peer and in all).
    pub pending_headers: usize,
}

#[derive(Debug)]
enum Command {
    Dial { address: Multiaddr, keep: bool },
    Forget(Multiaddr),
    Disconnect(String),
    BansChanged,
}

#[derive(Debug)]
struct Shared {
    peer_id: PeerId,
    listening: Mutex<Vec<Multiaddr>>,
    peers: Mutex<Vec<PeerInfo>>,
    bans: Mutex<Bans>,
}

/// The rest of the node's way to the network layer.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl NetworkHandle {
    /// This node's peer id.
    #[must_use]
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The addresses it listens on, with `/p2p/<peer id>`.
    #[must_use]
    pub fn listening(&self) -> Vec<Multiaddr> {
        self.shared.listening.lock().expect("listening lock").clone()
    }

    /// The connected peers.
    #[must_use]
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.peers.lock().expect("peers lock").clone()
    }

    fn send(&self, command: Command) -> Result<(), String> {
        self.commands.try_send(command).map_err(|e| format!("the network layer is busy or stopped: {e}"))
    }

    /// Dials `address`; with `keep`, keeps redialing it whenever the connection drops.
    ///
    /// # Errors
    /// When the network layer is not taking commands.
    pub fn add_node(&self, address: Multiaddr, keep: bool) -> Result<(), String> {
        self.send(Command::Dial { address, keep })
    }

    /// Stops redialing `address`.
    ///
    /// # Errors
    /// When the network layer is not taking commands.
    pub fn remove_node(&self, address: Multiaddr) -> Result<(), String> {
        self.send(Command::Forget(address))
    }

    /// Closes the connections to a peer (by peer id or address).
    ///
    /// # Errors
    /// When the network layer is not taking commands.
    pub fn disconnect(&self, target: String) -> Result<(), String> {
        self.send(Command::Disconnect(target))
    }

    /// Bans (peer id or IP address) for `seconds`, or lifts a ban.
    ///
    /// # Errors
    /// When the ban list cannot be written, or there was no ban to lift.
    pub fn set_ban(&self, key: &str, add: bool, seconds: u64) -> Result<(), String> {
        {
            let mut bans = self.shared.bans.lock().expect("bans lock");
            if add {
                bans.ban(key, unix_now() + seconds).map_err(|e| format!("saving the ban list: {e}"))?;
            } else if !bans.unban(key).map_err(|e| format!("saving the ban list: {e}"))? {
                return Err(format!("{key} is not banned"));
            }
        }
        self.send(Command::BansChanged)
    }

    /// The bans in force, with their end times (Unix seconds).
    #[must_use]
    pub fn banned(&self) -> Vec<(String, u64)> {
        self.shared.bans.lock().expect("bans lock").list(unix_now())
    }

    /// Lifts every ban.
    ///
    /// # Errors
    /// When the ban list cannot be written.
    pub fn clear_bans(&self) -> Result<(), String> {
        self.shared
            .bans
            .lock()
            .expect("bans lock")
            .clear()
            .map_err(|e| format!("saving the ban list: {e}"))?;
        self.send(Command::BansChanged)
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    // First: a connection it refuses is never counted by the others.
    pending: PendingPerIp,
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// What the node knows about a connected peer.
#[derive(Debug)]
struct PeerState {
    address: Multiaddr,
    inbound: bool,
    ip: Option<IpAddr>,
    connections: usize,
    connected_at: Instant,
    status: Option<Status>,
    score: Score,
    bytes_in: u64,
    bytes_out: u64,
    agent: String,
    headers_in_flight: bool,
    /// Checked headers not yet worth storing (less work than the active chain).
    pending_headers: Vec<BlockHeader>,
    last_status: Instant,
}

/// A blocks request waiting for its peer's earlier answers to be written.
struct Deferred {
    peer: PeerId,
    hashes: Vec<BlockHash>,
    channel: request_response::ResponseChannel<Response>,
    /// When it came, among all deferred requests.
    order: u64,
}

/// What an outbound request was for.
#[derive(Debug)]
enum Asked {
    Status,
    Headers,
    Blocks(Vec<BlockHash>),
}

impl Asked {
    /// A short description for logs.
    fn label(&self) -> String {
        match self {
            Self::Status => "status".into(),
            Self::Headers => "headers".into(),
            Self::Blocks(hashes) => format!("{} blocks", hashes.len()),
        }
    }
}

/// Work done off the loop, and what came of it.
enum Outcome {
    Respond {
        channel: request_response::ResponseChannel<Response>,
        response: Response,
        peer: PeerId,
        request: request_response::InboundRequestId,
        /// The bytes the answer reserved in the serving budget.
        reserved: usize,
    },
    GossipBlock {
        source: PeerId,
        id: gossipsub::MessageId,
        result: Result<Accepted, ChainError>,
    },
    /// A gossiped block passed every check and its connection is being
    /// written: it may be relayed now.
    GossipBlockValid {
        source: PeerId,
        id: gossipsub::MessageId,
    },
    GossipTransaction {
        source: PeerId,
        id: gossipsub::MessageId,
        result: Result<(), MempoolError>,
    },
    Headers {
        peer: PeerId,
        full: bool,
        pending: Vec<BlockHeader>,
        /// How many headers were held for the peer when they left to be checked.
        held_before: usize,
        /// The last header it sent, checked: the peer has at least that block.
        seen: Option<TipSummary>,
        result: Result<usize, HeadersError>,
    },
    Blocks {
        peer: PeerId,
        /// The answer's encoded size, in bytes.
        bytes: usize,
        failures: Vec<(BlockHash, ChainError)>,
    },
}

fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

struct Service {
    node: Arc<Node>,
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    announcements: broadcast::Receiver<Announcement>,
    book: PeerBook,
    /// Addresses to keep connected (`--connect`, `addnode add`).
    keep: HashSet<Multiaddr>,
    last_dial: HashMap<Multiaddr, Instant>,
    peers: HashMap<PeerId, PeerState>,
    asked: HashMap<request_response::OutboundRequestId, (PeerId, Asked)>,
    /// The body download: what is asked of whom, delivered, avoided.
    download: Download<PeerId>,
    /// Low-work headers held for all peers (theirs, and those being checked).
    pending_headers: PendingHeaders,
    tasks: FuturesUnordered<tokio::task::JoinHandle<Outcome>>,
    /// Validations and answers in progress, per peer and in total.
    budget: Budget<PeerId>,
    /// Answers handed to libp2p, until written or dropped: their peer and size.
    answering: HashMap<request_response::InboundRequestId, (PeerId, usize)>,
    /// Requests whose answers are being built (at most the answers budget).
    building: HashMap<request_response::InboundRequestId, PeerId>,
    /// Blocks requests waiting for their peer's share of answer bytes (at
    /// most [`MAX_ANSWERS_PER_PEER`] a peer), and how many ever waited.
    deferred: HashMap<request_response::InboundRequestId, Deferred>,
    deferred_count: u64,
    /// To the block-sync thread; dropping it stops the thread.
    connector: std::sync::mpsc::SyncSender<(PeerId, Vec<Block>, usize)>,
    /// What the block-sync thread made of each answer, and gossiped blocks
    /// found valid before their write ([`Outcome::GossipBlockValid`]).
    connected: mpsc::Receiver<Outcome>,
    /// For the gossip validation tasks: a block found valid.
    valid_out: mpsc::Sender<Outcome>,
    /// Gossiped blocks being validated, and whether they were already
    /// reported valid (each message is reported once).
    gossiped_blocks: HashMap<gossipsub::MessageId, bool>,
    blocks_topic: gossipsub::IdentTopic,
    transactions_topic: gossipsub::IdentTopic,
    genesis: BlockHash,
    /// The tip peers were last told about, and when.
    told_tip: BlockHash,
    told_at: Instant,
}

impl Service {
    /// Tells every peer our status when the tip moved since they were last
    /// told, so a peer behind us starts syncing at once; while we sync
    /// ourselves, at most every few seconds.
    fn tell_tip(&mut self) {
        let summary = self.node.summary();
        let status = Status { genesis: self.genesis, tip: summary.tip };
        if status.tip.hash == self.told_tip {
            return;
        }
        let syncing = summary.best_header.chain_work > summary.tip.chain_work;
        if syncing && self.told_at.elapsed() < SYNCING_STATUS_INTERVAL {
            return;
        }
        self.told_tip = status.tip.hash;
        self.told_at = Instant::now();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.last_status = Instant::now();
            }
            self.send_request(peer, Request::Status(status), Asked::Status);
        }
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_book_save = Instant::now();
        let mut last_bootstrap = Instant::now();
        for address in self.keep.clone() {
            self.dial(address);
        }
        let book = if self.config.discovery { self.book.peers() } else { Vec::new() };
        for (peer, addresses) in book {
            if let Some(address) = addresses.last() {
                let address = address.clone().with_p2p(peer).unwrap_or_else(|a| a);
                self.dial(address);
            }
        }
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(command) = self.commands.recv() => self.on_command(command),
                announcement = self.announcements.recv() => match announcement {
                    Ok(announcement) => self.publish(&announcement),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "announcements dropped while the network was busy");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(outcome) = self.connected.recv() => self.on_outcome(outcome),
                Some(done) = self.tasks.next(), if !self.tasks.is_empty() => match done {
                    Ok(outcome) => self.on_outcome(outcome),
                    Err(e) => tracing::error!("a network validation task failed: {e}"),
                },
                _ = tick.tick() => {
                    if self.node.shutdown.load(std::sync::atomic::Ordering::Acquire) {
                        break;
                    }
                    self.on_tick();
                    if last_book_save.elapsed() > Duration::from_secs(30) {
                        self.save_book();
                        last_book_save = Instant::now();
                    }
                    if last_bootstrap.elapsed() > Duration::from_secs(60) && !self.peers.is_empty() {
                        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                            let _ = kad.bootstrap();
                        }
                        last_bootstrap = Instant::now();
                    }
                }
            }
        }
        self.save_book();
        tracing::debug!("network layer stopped");
    }

    fn save_book(&mut self) {
        if let Err(e) = self.book.save() {
            tracing::warn!("cannot save the peer book: {e}");
        }
    }

    fn dial(&mut self, address: Multiaddr) {
        if let Some(peer) = peer_of(&address) {
            if peer == self.shared.peer_id || self.swarm.is_connected(&peer) || self.is_banned(&peer, None) {
                return;
            }
        }
        if self.last_dial.get(&address).is_some_and(|t| t.elapsed() < REDIAL_INTERVAL) {
            return;
        }
        self.last_dial.insert(address.clone(), Instant::now());
        if let Err(e) = self.swarm.dial(address.clone()) {
            tracing::debug!(%address, "dial failed: {e}");
        }
    }

    fn is_banned(&self, peer: &PeerId, ip: Option<IpAddr>) -> bool {
        let bans = self.shared.bans.lock().expect("bans lock");
        let now = unix_now();
        bans.is_banned(&peer.to_string(), now) || ip.is_some_and(|ip| bans.is_banned(&ip.to_string(), now))
    }

    fn status(&self) -> Status {
        Status { genesis: self.genesis, tip: self.node.summary().tip }
    }

    fn send_request(&mut self, peer: PeerId, request: Request, asked: Asked) {
        let size = request.to_bytes().len() as u64;
        tracing::trace!(target: "cairn_node::sync", %peer, asked = asked.label(), "request sent");
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.bytes_out += size;
        }
        // Blocks requests are counted by the download that planned them.
        if matches!(asked, Asked::Headers) {
            self.download.request_started(peer);
        }
        self.asked.insert(id, (peer, asked));
    }

    /// Lowers a peer's score; bans and disconnects it at the threshold.
    fn penalize(&mut self, peer: PeerId, offence: Offence) {
        let Some(state) = self.peers.get_mut(&peer) else { return };
        tracing::info!(%peer, offence = offence.name(), "peer misbehaved");
        if state.score.penalize(offence, Instant::now()) {
            let until = unix_now() + self.config.ban_duration.as_secs();
            tracing::warn!(%peer, "banning peer until {until} (score under the threshold)");
            if let Err(e) = self.shared.bans.lock().expect("bans lock").ban(&peer.to_string(), until) {
                tracing::warn!("cannot save the ban list: {e}");
            }
            self.book.remove(&peer);
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { address, keep } => {
                if keep {
                    self.keep.insert(address.clone());
                }
                self.last_dial.remove(&address);
                self.dial(address);
            }
            Command::Forget(address) => {
                self.keep.remove(&address);
            }
            Command::Disconnect(target) => {
                let peers: Vec<PeerId> = match target.parse::<PeerId>() {
                    Ok(peer) => vec![peer],
                    Err(_) => self
                        .peers
                        .iter()
                        .filter(|(_, s)| {
                            s.address.to_string() == target || s.ip.is_some_and(|ip| ip.to_string() == target)
                        })
                        .map(|(p, _)| *p)
                        .collect(),
                };
                for peer in peers {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
            Command::BansChanged => {
                let listed: HashSet<String> = self
                    .shared
                    .bans
                    .lock()
                    .expect("bans lock")
                    .list(unix_now())
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                let connected: Vec<(PeerId, Option<IpAddr>)> =
                    self.peers.iter().map(|(p, s)| (*p, s.ip)).collect();
                for (peer, ip) in connected {
                    if self.is_banned(&peer, ip) {
                        self.swarm.behaviour_mut().blocked.block_peer(peer);
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                }
                // Lift blocks on peers no longer banned.
                let blocked: Vec<PeerId> =
                    self.swarm.behaviour().blocked.blocked_peers().iter().copied().collect();
                for peer in blocked {
                    if !listed.contains(&peer.to_string()) {
                        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                    }
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with_p2p(self.shared.peer_id).unwrap_or_else(|a| a);
                tracing::info!("p2p listening on {full}");
                let mut listening = self.shared.listening.lock().expect("listening lock");
                listening.push(full);
                let text: Vec<String> = listening.iter().map(ToString::to_string).collect();
                if let Err(e) = write_private(
                    &self.config.datadir.join("p2p.address"),
                    (text.join("\n") + "\n").as_bytes(),
                ) {
                    tracing::warn!("cannot write p2p.address: {e}");
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, connection_id, num_established, ..
            } => {
                let inbound = endpoint.is_listener();
                let address = endpoint.get_remote_address().clone();
                let ip = ip_of(&address);
                if self.is_banned(&peer_id, ip) {
                    self.swarm.close_connection(connection_id);
                    return;
                }
                if inbound {
                    let from_ip = self.peers.values().filter(|s| s.inbound && s.ip == ip).count();
                    if ip.is_some()
                        && from_ip >= self.config.max_inbound_per_ip
                        && !self.peers.contains_key(&peer_id)
                    {
                        tracing::debug!(?ip, "too many inbound connections from one address");
                        self.swarm.close_connection(connection_id);
                        return;
                    }
                }
                let now = Instant::now();
                let state = self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    address: address.clone(),
                    inbound,
                    ip,
                    connections: 0,
                    connected_at: now,
                    status: None,
                    score: Score::new(now),
                    bytes_in: 0,
                    bytes_out: 0,
                    agent: String::new(),
                    headers_in_flight: false,
                    pending_headers: Vec::new(),
                    last_status: now,
                });
                state.connections += 1;
                self.download.connected(peer_id);
                self.budget.set_connected(self.peers.len());
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, %address, inbound, "peer connected");
                    if !inbound {
                        self.book.add(&peer_id, &address);
                        self.save_book();
                    }
                    let status = self.status();
                    self.send_request(peer_id, Request::Status(status), Asked::Status);
                }
                self.refresh_peers();
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                if num_established == 0 {
                    let gone = self.peers.remove(&peer_id);
                    self.budget.forget(peer_id);
                    self.budget.set_connected(self.peers.len());
                    self.deferred.retain(|_, d| d.peer != peer_id);
                    self.download.disconnected(peer_id);
                    if let Some(state) = &gone {
                        self.pending_headers.released(state.pending_headers.len());
                    }
                    tracing::info!(peer = %peer_id, "peer disconnected");
                } else if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections = state.connections.saturating_sub(1);
                }
                self.refresh_peers();
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != identify_version(&self.genesis) {
                    tracing::info!(peer = %peer_id, version = info.protocol_version, "peer of another network");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.agent = info.agent_version.clone();
                }
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    for address in info.listen_addrs.iter().take(8) {
                        kad.add_address(&peer_id, address.clone());
                    }
                }
                if let Some(address) = info.listen_addrs.iter().find(|a| ip_of(a).is_some()) {
                    self.book.add(&peer_id, address);
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, addresses, .. })
                if self.config.discovery
                    && self.peers.len() < self.config.outbound_target
                    && !self.swarm.is_connected(&peer) =>
            {
                let address = addresses.first().clone().with_p2p(peer).unwrap_or_else(|a| a);
                self.dial(address);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) if self.config.discovery => {
                for (peer, address) in found {
                    self.dial(address.with_p2p(peer).unwrap_or_else(|a| a));
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                self.on_gossip(propagation_source, message_id, message);
            }
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, request_id } => {
                    self.on_request(peer, request_id, request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_response(peer, request_id, response);
                }
            },
            BehaviourEvent::Sync(request_response::Event::ResponseSent { request_id, .. }) => {
                let _ = self.answer_finished(request_id, false);
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer, request_id, error, ..
            }) => {
                let timed_out = matches!(error, request_response::InboundFailure::Timeout);
                if !self.answer_finished(request_id, timed_out) && timed_out {
                    // An untracked answer (busy) left unread.
                    self.penalize(peer, Offence::Stall);
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                let Some((_, asked)) = self.asked.remove(&request_id) else { return };
                if matches!(asked, Asked::Headers) {
                    self.download.request_ended(peer);
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.headers_in_flight = false;
                    }
                }
                tracing::debug!(%peer, "sync request failed: {error}");
                if let Asked::Blocks(hashes) = asked {
                    self.download.blocks_failed(peer, &hashes, Instant::now());
                    if matches!(error, request_response::OutboundFailure::Timeout) {
                        self.penalize(peer, Offence::Stall);
                    }
                    self.schedule_blocks();
                }
                // An answer that does not decode, or is over its cap.
                if let request_response::OutboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.penalize(peer, Offence::ProtocolViolation);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Respond { channel, response, peer, request, reserved } => {
                self.building.remove(&request);
                let size = response.encoded_len();
                self.budget.answer_built(peer, reserved, size);
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.bytes_out += size as u64;
                }
                if self.swarm.behaviour_mut().sync.send_response(channel, response).is_ok() {
                    self.answering.insert(request, (peer, size));
                } else {
                    self.budget.answer_done(peer, size);
                }
                // What the built answer left of its reservation may serve
                // the next request it waits.
                self.start_deferred(peer);
            }
            Outcome::GossipBlockValid { source, id } => {
                // Unless the task's own outcome came first.
                if let Some(reported) = self.gossiped_blocks.get_mut(&id) {
                    if !*reported {
                        *reported = true;
                        self.report(&id, &source, gossipsub::MessageAcceptance::Accept);
                    }
                }
            }
            Outcome::GossipBlock { source, id, result } => {
                self.budget.end_validation(source, Gossip::Block);
                use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
                let offence = result.as_ref().err().and_then(block_offence);
                let acceptance = match (&result, offence) {
                    (Ok(Accepted::Activated | Accepted::SideBranch), _) => Accept,
                    (_, Some(_)) => Reject,
                    _ => Ignore,
                };
                if let Err(error) = &result {
                    tracing::info!(peer = %source, "gossiped block refused: {error}");
                }
                // A block already reported valid was valid, whatever its
                // write did: it is neither reported again nor held against
                // the sender.
                if !self.gossiped_blocks.remove(&id).unwrap_or(false) {
                    self.report(&id, &source, acceptance);
                    if let Some(offence) = offence {
                        self.penalize(source, offence);
                    }
                }
                if matches!(result, Ok(Accepted::Orphan)) {
                    // Catch up with the sender.
                    self.request_headers(source);
                }
                if matches!(result, Ok(Accepted::Activated)) {
                    // The sender has the block that is now our tip.
                    let ours = self.node.summary().tip;
                    self.peer_has(source, ours);
                }
                self.schedule_blocks();
            }
            Outcome::GossipTransaction { source, id, result } => {
                self.budget.end_validation(source, Gossip::Transaction);
                use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
                let offence = result.as_ref().err().and_then(transaction_offence);
                let acceptance = match (&result, offence) {
                    (Ok(()), _) => Accept,
                    (_, Some(_)) => Reject,
                    _ => Ignore,
                };
                self.report(&id, &source, acceptance);
                if let Some(offence) = offence {
                    self.penalize(source, offence);
                }
            }
            Outcome::Headers { peer, mut full, mut pending, held_before, seen, result } => {
                if !self.pending_headers.returned(held_before, pending.len()) {
                    tracing::info!(
                        %peer,
                        count = pending.len(),
                        "low-work headers dropped: the budget for them is full"
                    );
                    pending = Vec::new();
                    // Asking on would bring the same headers back.
                    full = false;
                }
                // It sent these headers, so it has at least that chain.
                if let Some(seen) = seen {
                    self.peer_has(peer, seen);
                }
                let Some(state) = self.peers.get_mut(&peer) else {
                    self.pending_headers.released(pending.len());
                    return;
                };
                state.pending_headers = pending;
                match result {
                    Ok(stored) => {
                        state.headers_in_flight = false;
                        if stored > 0 {
                            tracing::debug!(%peer, stored, "headers stored");
                        }
                        let behind = state
                            .status
                            .is_some_and(|s| s.tip.chain_work > self.node.summary().best_header.chain_work);
                        if full || (stored > 0 && behind) {
                            self.request_headers(peer);
                        }
                    }
                    Err(error) => {
                        tracing::info!(%peer, "headers refused: {error}");
                        state.headers_in_flight = false;
                        self.pending_headers.released(state.pending_headers.len());
                        state.pending_headers.clear();
                        if error.is_misbehaviour() {
                            self.penalize(peer, Offence::InvalidHeaders);
                        }
                    }
                }
                self.schedule_blocks();
            }
            Outcome::Blocks { peer, bytes, failures } => {
                // Stored bodies stay counted as delivered until the download
                // queue, under the lock, sees them stored; refused ones may
                // be asked for again.
                self.download.connect_finished(bytes, failures.iter().map(|(hash, _)| hash));
                self.tell_tip();
                for (hash, error) in failures {
                    tracing::info!(%peer, %hash, "block refused: {error}");
                    if let Some(offence) = block_offence(&error) {
                        self.penalize(peer, offence);
                    }
                }
                self.schedule_blocks();
            }
        }
    }

    fn on_tick(&mut self) {
        crate::failpoint::hit("network-task");
        let now = Instant::now();
        // Keep tips fresh.
        let stale: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_status) > STATUS_INTERVAL)
            .map(|(p, _)| *p)
            .collect();
        for peer in stale {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.last_status = now;
            }
            let status = self.status();
            self.send_request(peer, Request::Status(status), Asked::Status);
        }
        // Keep the chosen peers connected, and enough outbound connections.
        for address in self.keep.clone() {
            let connected = peer_of(&address).is_some_and(|p| self.swarm.is_connected(&p))
                || self.peers.values().any(|s| s.address == address);
            if !connected {
                self.dial(address);
            }
        }
        let outbound = self.peers.values().filter(|s| !s.inbound).count();
        if self.config.discovery && outbound < self.config.outbound_target {
            let candidates: Vec<Multiaddr> = self
                .book
                .peers()
                .into_iter()
                .filter(|(peer, _)| !self.swarm.is_connected(peer) && *peer != self.shared.peer_id)
                .filter_map(|(peer, addresses)| {
                    addresses.last().map(|a| a.clone().with_p2p(peer).unwrap_or_else(|a| a))
                })
                .take(self.config.outbound_target - outbound)
                .collect();
            for address in candidates {
                self.dial(address);
            }
        }
        self.schedule_blocks();
        self.refresh_peers();
    }

    fn refresh_peers(&self) {
        let now = Instant::now();
        let mut list: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, s)| PeerInfo {
                id: peer.to_string(),
                address: s.address.to_string(),
                inbound: s.inbound,
                score: s.score.value(now),
                best_height: s.status.map(|st| st.tip.height.get()),
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                connected_secs: now.duration_since(s.connected_at).as_secs(),
                agent: s.agent.clone(),
                pending_headers: s.pending_headers.len(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        *self.shared.peers.lock().expect("peers lock") = list;
    }
}
