//! An adversarial peer: a libp2p host in the test process that speaks the
//! real protocols (identify, gossipsub on the real topics, the sync
//! protocol) against a real `cairn-node` (the victim), which also has an
//! honest peer. Each attack uses a fresh identity; the victim must refuse
//! the data, ban the sender, never forward the data to its honest peer,
//! keep its memory bounded, and keep following the honest chain.

use std::io;
use std::time::Duration;

use cairn_consensus::chain::check_header;
use cairn_consensus::merkle::block_merkle_root;
use cairn_consensus::{
    Amount, Block, BlockHeader, CompactTarget, Encode, Lock, Network, OutPoint, Params, Transaction, TxIn,
    TxOut,
};
use cairn_node::p2p::protocol::{
    blocks_topic, identify_version, sync_protocol, transactions_topic, Request, Response, Status,
};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    gossipsub, identify, identity, noise, request_response, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
    Swarm,
};
use serde_json::{json, Value};

use crate::network::{address, block_at, keypair, spend, tip, wait_until};
use crate::support::{NodeProcess, Rpc};

/// The claimed length that makes [`RawCodec`] write a length prefix and
/// then nothing more.
const HANG: u32 = u32::MAX - 1;

/// Writes whatever bytes it is given, with a length prefix that may lie;
/// while `deaf`, never reads an answer (the stream's receive window closes).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawCodec {
    deaf: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A raw frame: the length to claim, and the bytes to send.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) claimed: u32,
    pub(crate) body: Vec<u8>,
}

impl Frame {
    pub(crate) fn honest(body: Vec<u8>) -> Self {
        Self { claimed: body.len() as u32, body }
    }

    /// A frame whose length prefix is written and body never is: its
    /// stream stays open with the request unfinished.
    pub(crate) fn hanging() -> Self {
        Self { claimed: HANG, body: Vec::new() }
    }
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Frame> {
        let mut length = [0u8; 4];
        io.read_exact(&mut length).await?;
        let mut body = vec![0; u32::from_le_bytes(length).min(1 << 20) as usize];
        io.read_exact(&mut body).await?;
        Ok(Frame::honest(body))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        if self.deaf.load(std::sync::atomic::Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        let mut body = Vec::new();
        io.take(16 << 20).read_to_end(&mut body).await?;
        Ok(body)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        frame: Frame,
    ) -> io::Result<()> {
        if frame.claimed == HANG {
            // The protocol is negotiated with the first bytes: a length
            // prefix, then nothing of the 64 bytes it promises.
            io.write_all(&64u32.to_le_bytes()).await?;
            io.flush().await?;
            std::future::pending::<()>().await;
        }
        io.write_all(&frame.claimed.to_le_bytes()).await?;
        io.write_all(&frame.body).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        body: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&(body.len() as u32).to_le_bytes()).await?;
        io.write_all(&body).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
pub(crate) struct Attacker {
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
}

/// One attacking host with a fresh identity, connected to the victim.
pub(crate) struct Adversary {
    runtime: tokio::runtime::Runtime,
    swarm: Swarm<Attacker>,
    victim: PeerId,
    genesis: cairn_consensus::BlockHash,
    /// What to answer the victim's status requests with.
    claimed: Option<Status>,
    /// Headers to answer the victim's headers requests with.
    headers: Vec<BlockHeader>,
    /// While set, answers to its requests are never read.
    deaf: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Adversary {
    pub(crate) fn connect(victim_address: &str) -> Self {
        let genesis = Params::for_network(Network::Regtest).genesis_hash;
        Self::connect_speaking(victim_address, sync_protocol(&genesis))
    }

    /// [`Adversary::connect`], its requests sent on `protocol`.
    pub(crate) fn connect_speaking(victim_address: &str, protocol: StreamProtocol) -> Self {
        let genesis = Params::for_network(Network::Regtest).genesis_hash;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let key = identity::Keypair::generate_ed25519();
        let codec = RawCodec::default();
        let deaf = codec.deaf.clone();
        let mut swarm = runtime.block_on(async {
            libp2p::SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
                .expect("tcp")
                .with_behaviour(|key| {
                    let config = gossipsub::ConfigBuilder::default()
                        .max_transmit_size(4 << 20)
                        .validation_mode(gossipsub::ValidationMode::Strict)
                        .build()
                        .expect("gossipsub config");
                    Attacker {
                        identify: identify::Behaviour::new(identify::Config::new(
                            identify_version(&genesis),
                            key.public(),
                        )),
                        gossipsub: gossipsub::Behaviour::new(
                            gossipsub::MessageAuthenticity::Signed(key.clone()),
                            config,
                        )
                        .expect("gossipsub"),
                        sync: request_response::Behaviour::with_codec(
                            codec,
                            [(protocol, request_response::ProtocolSupport::Full)],
                            request_response::Config::default()
                                .with_request_timeout(Duration::from_secs(120))
                                .with_max_concurrent_streams(4_096),
                        ),
                    }
                })
                .expect("behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
                .build()
        });
        for topic in [blocks_topic(&genesis), transactions_topic(&genesis)] {
            swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(topic)).expect("subscribe");
        }
        let address: Multiaddr = victim_address.parse().expect("multiaddr");
        let victim = address
            .iter()
            .find_map(|p| if let libp2p::multiaddr::Protocol::P2p(peer) = p { Some(peer) } else { None })
            .expect("the address names the peer");
        {
            let _inside = runtime.enter();
            swarm.dial(address).expect("dial");
        }
        let mut adversary =
            Self { runtime, swarm, victim, genesis, claimed: None, headers: Vec::new(), deaf };
        let mut subscribed = 0;
        adversary.drive(Duration::from_secs(20), |event| {
            if let SwarmEvent::Behaviour(AttackerEvent::Gossipsub(gossipsub::Event::Subscribed { .. })) =
                event
            {
                subscribed += 1;
            }
            subscribed >= 2
        });
        assert_eq!(subscribed, 2, "the victim subscribed to both topics");
        adversary
    }

    /// While `deaf`, it never reads the answers to its requests.
    pub(crate) fn set_deaf(&self, deaf: bool) {
        self.deaf.store(deaf, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs the swarm, answering the victim's requests, until `done` says
    /// so or `limit` passes; returns whether `done` said so.
    pub(crate) fn drive(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&SwarmEvent<AttackerEvent>) -> bool,
    ) -> bool {
        let Self { runtime, swarm, claimed, headers, genesis, .. } = self;
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let event = tokio::select! {
                    event = swarm.select_next_some() => event,
                    () = tokio::time::sleep_until(deadline) => return false,
                };
                let event = match event {
                    SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    })) => {
                        let answer = match Request::from_bytes(&request.body) {
                            Ok(Request::Status(theirs)) => Response::Status(
                                claimed.unwrap_or(Status { genesis: *genesis, tip: theirs.tip }),
                            ),
                            Ok(Request::Headers { .. }) => Response::Headers(headers.clone()),
                            Ok(Request::Blocks(_) | Request::Malformed(_)) | Err(_) => {
                                Response::Blocks(Vec::new())
                            }
                        };
                        let _ = swarm.behaviour_mut().sync.send_response(channel, answer.to_bytes());
                        continue;
                    }
                    other => other,
                };
                if done(&event) {
                    return true;
                }
            }
        })
    }

    fn publish(&mut self, topic: String, bytes: Vec<u8>) {
        let topic = gossipsub::IdentTopic::new(topic);
        self.swarm.behaviour_mut().gossipsub.publish(topic, bytes).expect("published");
    }

    pub(crate) fn publish_block(&mut self, block: &Block) {
        self.publish(blocks_topic(&self.genesis), block.encode());
    }

    pub(crate) fn send_raw(&mut self, frame: Frame) {
        let victim = self.victim;
        self.swarm.behaviour_mut().sync.send_request(&victim, frame);
    }

    /// Runs until the victim closes the connection; returns whether it did.
    fn until_disconnected(&mut self, limit: Duration) -> bool {
        let victim = self.victim;
        self.drive(limit, |event| {
            matches!(event, SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if *peer_id == victim)
        })
    }
}

fn banned(rpc: &Rpc) -> Vec<String> {
    rpc.ok("listbanned", json!([]))
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["address"].as_str().expect("address").to_owned())
        .collect()
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A block on `rpc`'s tip with `txs`, a coinbase paying the subsidy, and a
/// nonce that meets the target (or, with `bad_work`, one that does not).
pub(crate) fn block_on_tip(rpc: &Rpc, txs: Vec<Transaction>, bad_work: bool) -> Block {
    let template = rpc.ok("getblocktemplate", json!([]));
    let height = template["height"].as_u64().expect("height") as u32;
    let params = Params::for_network(Network::Regtest);
    let mut data = height.to_le_bytes().to_vec();
    data.extend_from_slice(&[7; 8]);
    let coinbase = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint::NULL,
            data,
            sequence: u32::MAX,
            witness: cairn_consensus::Witness::new(),
        }],
        outputs: vec![TxOut {
            amount: params.subsidy(cairn_consensus::Height::new(height)),
            lock: Lock::key(keypair(9).x_only_public_key().0.serialize()),
        }],
        lock_time: 0,
    };
    let bits = u32::from_str_radix(template["bits"].as_str().expect("bits"), 16).expect("hex");
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_block: template["previousblockhash"].as_str().expect("hash").parse().expect("hash"),
            merkle_root: cairn_consensus::MerkleRoot::from_byte_array([0; 32]),
            time: template["curtime"].as_u64().expect("time") as u32,
            bits: CompactTarget::from_consensus(bits),
            nonce: 0,
        },
        transactions: std::iter::once(coinbase).chain(txs).collect(),
    };
    block.header.merkle_root = block_merkle_root(&block).root;
    while check_header(&block.header, &params).is_ok() == bad_work {
        block.header.nonce += 1;
    }
    block
}

fn not_known(rpc: &Rpc, block: &Block) -> bool {
    rpc.call("getblockheader", json!([block.block_hash().to_string()])).is_err()
}

/// A victim (no discovery) and an honest node connected to it that mined
/// `blocks`, once the victim follows; with their data directories.
fn victim_and_honest(blocks: u64) -> (tempfile::TempDir, tempfile::TempDir, NodeProcess, NodeProcess) {
    let (dir_v, dir_h) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let victim = NodeProcess::start(dir_v.path(), &["--no-discovery"]);
    let honest = NodeProcess::start(dir_h.path(), &["--no-discovery", "--connect", &victim.p2p_address()]);
    honest.rpc.ok("generatetoaddress", json!([blocks, address(1)]));
    wait_until(60, "the victim to follow the honest node", || tip(&victim.rpc) == tip(&honest.rpc));
    (dir_v, dir_h, victim, honest)
}

#[test]
fn an_adversarial_peer_is_refused_banned_and_never_relayed() {
    let (dir_v, _dir_h, victim, honest) = victim_and_honest(102);
    let target = victim.p2p_address();
    let mut bans = Vec::new();

    // 1. A block whose hash does not meet its target.
    let mut attacker = Adversary::connect(&target);
    let bad_work = block_on_tip(&victim.rpc, Vec::new(), true);
    attacker.publish_block(&bad_work);
    assert!(attacker.until_disconnected(Duration::from_secs(20)), "banned for a block without work");
    bans.push(attacker.peer_id());

    // 2. A block whose transactions do not match its merkle root.
    let mut attacker = Adversary::connect(&target);
    let mut bad_merkle = block_on_tip(&victim.rpc, Vec::new(), false);
    bad_merkle.transactions[0].outputs[0].amount = Amount::from_base_units(1).expect("amount");
    attacker.publish_block(&bad_merkle);
    assert!(attacker.until_disconnected(Duration::from_secs(20)), "banned for a body that does not match");
    bans.push(attacker.peer_id());

    // 3. A block that spends one coin twice.
    let mut attacker = Adversary::connect(&target);
    let coinbase = block_at(&victim.rpc, 1).transactions[0].clone();
    let double = block_on_tip(
        &victim.rpc,
        vec![spend(&coinbase, 0, 1, 2, 1_000), spend(&coinbase, 0, 1, 3, 2_000)],
        false,
    );
    attacker.publish_block(&double);
    assert!(attacker.until_disconnected(Duration::from_secs(20)), "banned for a double spend");
    bans.push(attacker.peer_id());

    // 4. Headers that claim more work and do not form a chain.
    let mut attacker = Adversary::connect(&target);
    let first = block_on_tip(&victim.rpc, Vec::new(), false).header;
    let mut second = first;
    second.prev_block = cairn_consensus::BlockHash::from_byte_array([0xab; 32]);
    attacker.headers = vec![first, second];
    attacker.claimed = Some(Status {
        genesis: Params::for_network(Network::Regtest).genesis_hash,
        tip: cairn_node::chain::TipSummary {
            hash: first.block_hash(),
            height: cairn_consensus::Height::new(10_000),
            chain_work: cairn_consensus::Work::from_u256(cairn_consensus::U256::from_u64(u64::MAX)),
        },
    });
    let status = Request::Status(attacker.claimed.expect("claimed")).to_bytes();
    attacker.send_raw(Frame::honest(status));
    assert!(attacker.until_disconnected(Duration::from_secs(30)), "banned for headers that are not a chain");
    bans.push(attacker.peer_id());

    // 5. Oversized and malformed sync requests.
    let mut attacker = Adversary::connect(&target);
    attacker.send_raw(Frame { claimed: 1 << 30, body: vec![0; 64] });
    attacker.send_raw(Frame::honest(vec![0xde, 0xad, 0xbe, 0xef]));
    attacker.send_raw(Frame::honest(vec![1, 2, 0xff]));
    assert!(attacker.until_disconnected(Duration::from_secs(30)), "banned for malformed requests");
    bans.push(attacker.peer_id());

    // 6. A flood of junk transactions (valid encodings, bad signatures).
    let memory_before = rss_kib(victim.pid());
    let mut attacker = Adversary::connect(&target);
    let mut junk = spend(&coinbase, 0, 1, 4, 3_000);
    for n in 1..=200u32 {
        junk.lock_time = n;
        let topic = transactions_topic(&Params::for_network(Network::Regtest).genesis_hash);
        if attacker
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic), junk.encode())
            .is_err()
        {
            break;
        }
    }
    assert!(
        attacker.until_disconnected(Duration::from_secs(30)),
        "banned for a flood of invalid transactions"
    );
    bans.push(attacker.peer_id());
    let memory_after = rss_kib(victim.pid());
    assert!(
        memory_after < memory_before + 64 * 1024,
        "memory stays bounded: {memory_before} KiB then {memory_after} KiB"
    );

    // Every attacker is banned, and a banned identity cannot come back.
    let listed = banned(&victim.rpc);
    for peer in &bans {
        assert!(listed.contains(&peer.to_string()), "{peer} banned: {listed:?}");
    }
    // Nothing invalid was forwarded to the honest peer.
    for block in [&bad_work, &bad_merkle, &double] {
        assert!(not_known(&honest.rpc, block), "the honest node never saw {}", block.block_hash());
        assert_ne!(tip(&victim.rpc), json!(block.block_hash().to_string()));
    }
    assert_eq!(honest.rpc.ok("getrawmempool", json!([])), json!([]), "no junk transaction was relayed");
    assert_eq!(victim.rpc.ok("getrawmempool", json!([])), json!([]));

    // And the victim still follows the honest chain.
    let next: Value = honest.rpc.ok("generatetoaddress", json!([1, address(1)]));
    wait_until(60, "the victim to take the honest block", || tip(&victim.rpc) == next[0]);
    // A connection being torn down may still be listed for a moment on a
    // loaded machine; what must hold is that only the honest peer stays.
    let mut peers = Value::Null;
    let settled = (0..100).any(|_| {
        peers = victim.rpc.ok("getpeerinfo", json!([]));
        let only_honest = peers.as_array().expect("peers").len() == 1;
        if !only_honest {
            std::thread::sleep(Duration::from_millis(100));
        }
        only_honest
    });
    assert!(settled, "only the honest peer is left (for 10 s): {peers}");

    // Bans outlive a restart.
    victim.stop();
    let victim = NodeProcess::start(dir_v.path(), &["--no-discovery"]);
    let listed = banned(&victim.rpc);
    for peer in &bans {
        assert!(listed.contains(&peer.to_string()), "{peer} still banned after a restart: {listed:?}");
    }
    victim.rpc.ok("setban", json!([bans[0].to_string(), "remove"]));
    assert!(!banned(&victim.rpc).contains(&bans[0].to_string()));
    victim.rpc.ok("clearbanned", json!([]));
    assert_eq!(banned(&victim.rpc), Vec::<String>::new());
}

/// What `getpeerinfo` says of `peer`, while it is connected.
fn peer_info(rpc: &Rpc, peer: &PeerId) -> Option<Value> {
    rpc.ok("getpeerinfo", json!([]))
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["id"] == json!(peer.to_string()))
        .cloned()
}

/// The score the victim gives `peer`, while it is connected.
fn score_of(rpc: &Rpc, peer: &PeerId) -> Option<f64> {
    peer_info(rpc, peer).and_then(|p| p["score"].as_f64())
}

#[test]
fn answers_are_capped_races_cost_nothing_and_work_is_checked_before_the_body() {
    let (dir_v, _dir_h, victim, honest) = victim_and_honest(102);
    let target = victim.p2p_address();
    let regtest = Params::for_network(Network::Regtest);

    // A race of propagation costs nothing: a transaction whose lock time
    // the victim's tip has not reached (the sender's might have).
    let mut racer = Adversary::connect(&target);
    let coinbase = block_at(&victim.rpc, 1).transactions[0].clone();
    let mut early = spend(&coinbase, 0, 1, 5, 1_000);
    early.lock_time = 1_000_000;
    early.inputs[0].sequence = 0;
    cairn_consensus::sighash::sign_inputs(
        &secp256k1::Secp256k1::new(),
        &mut early,
        &[&coinbase.outputs[0]],
        regtest.genesis_hash,
        &keypair(1),
        &[3; 32],
    );
    racer.publish(transactions_topic(&regtest.genesis_hash), early.encode());
    assert!(!racer.until_disconnected(Duration::from_secs(3)), "not disconnected for a race");
    assert_eq!(score_of(&victim.rpc, &racer.peer_id()), Some(0.0), "and not penalized");
    assert_eq!(victim.rpc.ok("getrawmempool", json!([])), json!([]), "nor accepted");

    // A blocks request naming one block 128 times: a protocol violation,
    // no amplified answer; three ban (each costs 50, and scores decay).
    let mut amplifier = Adversary::connect(&target);
    let hash = tip(&victim.rpc).as_str().expect("hash").parse().expect("hash");
    let request = Request::Blocks(vec![hash; 128]).to_bytes();
    for _ in 0..3 {
        amplifier.send_raw(Frame::honest(request.clone()));
    }
    let mut answered = 0;
    let disconnected = amplifier.drive(Duration::from_secs(30), |event| {
        if let SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        })) = event
        {
            // The stream closed without an answer reads as no bytes.
            answered += response.len();
        }
        matches!(event, SwarmEvent::ConnectionClosed { num_established: 0, .. })
    });
    assert!(disconnected, "banned for asking for one block many times");
    assert_eq!(answered, 0, "no answer (no byte) to an amplifying request");
    assert!(banned(&victim.rpc).contains(&amplifier.peer_id().to_string()));

    // A 1.9 MB gossiped block whose header has no work is refused before
    // its body (about 1.9 million empty witness items) is decoded.
    let mut heavy = block_on_tip(&victim.rpc, Vec::new(), true);
    let items = std::iter::repeat_n(Vec::<u8>::new(), 1_900_000);
    heavy.transactions[0].inputs[0].witness = cairn_consensus::Witness::from_items(items);
    let memory_before = rss_kib(victim.pid());
    let mut heavy_sender = Adversary::connect(&target);
    heavy_sender.publish_block(&heavy);
    assert!(heavy_sender.until_disconnected(Duration::from_secs(20)), "banned for a block without work");
    let log = std::fs::read_to_string(dir_v.path().join("node.log")).expect("log");
    assert!(log.contains("refused before decoding"), "the body was never decoded");
    // The victim still follows and serves the honest chain.
    still_bounded_and_following(victim, honest, memory_before, 32 * 1024);
}

/// Keeps `count` TCP connections from 127.0.0.2 to 127.0.0.1:`port` open
/// and silent, opening a new one for each the victim closes, until `stop`;
/// returns how many it opened.
pub(crate) fn hold_silent_connections(port: u16, count: usize, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut open: Vec<std::net::TcpStream> = Vec::new();
    let mut opened = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        open.retain(|stream| {
            let mut byte = [0u8; 1];
            stream.set_nonblocking(true).expect("nonblocking");
            !matches!(stream.peek(&mut byte), Ok(0))
        });
        while open.len() < count {
            let Ok(stream) = connect_from([127, 0, 0, 2], port) else { break };
            open.push(stream);
            opened += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    opened
}

/// The victim's memory grew less than `slack_kib` since `before`, and it
/// still follows the honest chain; then both stop.
fn still_bounded_and_following(victim: NodeProcess, honest: NodeProcess, before: u64, slack_kib: u64) {
    let after = rss_kib(victim.pid());
    assert!(after < before + slack_kib, "memory stays bounded: {before} KiB then {after} KiB");
    let next: Value = honest.rpc.ok("generatetoaddress", json!([1, address(1)]));
    wait_until(60, "the victim to take the honest block", || tip(&victim.rpc) == next[0]);
    victim.stop();
    honest.stop();
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`.
pub(crate) fn connect_from(from: [u8; 4], port: u16) -> io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from((from, 0)).into())?;
    socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(socket.into())
}

#[test]
fn connections_that_never_handshake_do_not_lock_honest_peers_out() {
    let dir_v = tempfile::tempdir().expect("tempdir");
    let victim = NodeProcess::start(dir_v.path(), &["--no-discovery"]);
    let address = victim.p2p_address();
    let port: u16 =
        address.split("/tcp/").nth(1).and_then(|r| r.split('/').next()).expect("port").parse().expect("port");
    // 48 connections from one host, 127.0.0.2 (more than the 32 pending
    // slots), that send nothing, each reopened as soon as the victim
    // closes it; the honest node dials from 127.0.0.1.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || hold_silent_connections(port, 48, &stop))
    };
    std::thread::sleep(Duration::from_secs(1));
    let dir_h = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let honest = NodeProcess::start(dir_h.path(), &["--no-discovery", "--connect", &address]);
    wait_until(30, "the honest node to connect", || {
        honest.rpc.ok("getpeerinfo", json!([])).as_array().is_some_and(|peers| !peers.is_empty())
    });
    let waited = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flooder.join().expect("flooder");
    println!("honest peer connected after {waited:?} while one host held {opened} silent connections");
    // Its first dial gets in: no wait for the silent ones to time out (10 s).
    assert!(waited < Duration::from_secs(8), "connected after {waited:?}");
    honest.stop();
    victim.stop();
}

#[test]
fn floods_of_orphans_and_deep_requests_leave_the_node_serving_and_following() {
    let (_dir_v, _dir_h, victim, honest) = victim_and_honest(200);
    let target = victim.p2p_address();
    let memory_before = rss_kib(victim.pid());

    // 1. Requests for deep blocks at the full rate: 200 requests of 128
    //    blocks each, at once. Past 8 answers in flight the victim answers
    //    busy; nothing is held beyond the budget.
    let mut reader = Adversary::connect(&target);
    let deep: Vec<cairn_consensus::BlockHash> = (1..=128)
        .map(|h| victim.rpc.ok("getblockhash", json!([h])).as_str().expect("hash").parse().expect("hash"))
        .collect();
    let request = Request::Blocks(deep).to_bytes();
    for _ in 0..200 {
        reader.send_raw(Frame::honest(request.clone()));
    }
    let busy_bytes = Response::Busy.to_bytes();
    let (mut served, mut busy, mut failed) = (0, 0, 0);
    reader.drive(Duration::from_secs(60), |event| {
        match event {
            SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => {
                if response.get(4..) == Some(busy_bytes.as_slice()) {
                    busy += 1;
                } else if response.len() > 4 {
                    served += 1;
                } else {
                    failed += 1;
                }
            }
            SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::OutboundFailure {
                ..
            })) => {
                failed += 1;
            }
            _ => {}
        }
        served + busy + failed == 200
    });
    println!("200 deep requests at once: {served} served, {busy} busy, {failed} failed or dropped");
    assert!(served >= 8, "the budget's answers are served ({served})");
    assert!(busy > 0, "the rest are told busy, not queued ({busy})");
    assert_eq!(score_of(&victim.rpc, &reader.peer_id()), Some(0.0), "asking is no offence");

    // 2. A flood of valid-looking blocks (their work is real) whose parents
    //    nobody has: ignored, none forwarded, the orphan pool bounded.
    let mut flooder = Adversary::connect(&target);
    let regtest = Params::for_network(Network::Regtest);
    for n in 0..300u32 {
        let mut orphan = block_on_tip(&victim.rpc, Vec::new(), false);
        orphan.header.prev_block = cairn_consensus::BlockHash::from_byte_array([(n % 251) as u8 + 1; 32]);
        orphan.header.time += n;
        while check_header(&orphan.header, &regtest).is_err() {
            orphan.header.nonce += 1;
        }
        flooder.publish_block(&orphan);
        flooder.drive(Duration::from_millis(5), |_| false);
    }
    flooder.drive(Duration::from_secs(3), |_| false);

    // 3. Frames that claim 4 GiB: refused unread, and they cost.
    let mut claimer = Adversary::connect(&target);
    for _ in 0..3 {
        claimer.send_raw(Frame { claimed: u32::MAX, body: vec![1, 2] });
    }
    assert!(claimer.until_disconnected(Duration::from_secs(30)), "banned for frames claiming 4 GiB");

    let memory_after = rss_kib(victim.pid());
    println!("victim RSS {memory_before} KiB before the floods, {memory_after} KiB after");
    assert!(
        memory_after < memory_before + 128 * 1024,
        "memory stays within the budgets: {memory_before} KiB then {memory_after} KiB"
    );
    // The victim still follows the honest chain and serves it.
    let next: Value = honest.rpc.ok("generatetoaddress", json!([5, address(1)]));
    wait_until(60, "the victim to take the honest blocks", || tip(&victim.rpc) == next[4]);
    assert_eq!(honest.rpc.ok("getrawmempool", json!([])), json!([]));
    victim.stop();
    honest.stop();
}

#[test]
fn streams_left_with_unfinished_requests_are_refused_and_hold_nothing() {
    let (_dir_v, _dir_h, victim, honest) = victim_and_honest(102);
    let memory_before = rss_kib(victim.pid());
    // 2,000 streams on one connection, each with a request begun and never
    // finished: the victim takes up 64 at a time and reads each as
    // malformed after 10 s (a protocol violation), and bans the opener.
    let mut opener = Adversary::connect(&victim.p2p_address());
    for _ in 0..2_000 {
        opener.send_raw(Frame::hanging());
    }
    assert!(opener.until_disconnected(Duration::from_secs(90)), "banned for requests left unfinished");
    assert!(banned(&victim.rpc).contains(&opener.peer_id().to_string()));
    still_bounded_and_following(victim, honest, memory_before, 32 * 1024);
}

#[test]
fn a_request_on_an_unknown_protocol_is_refused_at_negotiation_and_costs_nothing() {
    let (_dir_v, _dir_h, victim, honest) = victim_and_honest(20);
    let genesis = Params::for_network(Network::Regtest).genesis_hash;
    let nonsense = StreamProtocol::try_from_owned(format!("{}-nonsense", sync_protocol(&genesis)))
        .expect("a protocol name");
    let mut stranger = Adversary::connect_speaking(&victim.p2p_address(), nonsense);
    for _ in 0..100 {
        stranger.send_raw(Frame::honest(vec![1, 0]));
    }
    let mut unsupported = 0;
    stranger.drive(Duration::from_secs(20), |event| {
        if let SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::OutboundFailure {
            error: request_response::OutboundFailure::UnsupportedProtocols,
            ..
        })) = event
        {
            unsupported += 1;
        }
        unsupported == 100
    });
    assert_eq!(unsupported, 100, "every request is refused at negotiation");
    assert_eq!(score_of(&victim.rpc, &stranger.peer_id()), Some(0.0), "an unknown protocol is no offence");
    let next: Value = honest.rpc.ok("generatetoaddress", json!([1, address(1)]));
    wait_until(60, "the victim to take the honest block", || tip(&victim.rpc) == next[0]);
    victim.stop();
    honest.stop();
}

/// `count` valid regtest headers on genesis, each mined: a chain with
/// less work than any longer one.
fn low_work_fork(count: u32, tag: u8) -> Vec<BlockHeader> {
    let params = Params::for_network(Network::Regtest);
    let mut prev = params.genesis.header;
    (0..count)
        .map(|i| {
            let mut header = BlockHeader {
                version: 1,
                prev_block: prev.block_hash(),
                merkle_root: cairn_consensus::MerkleRoot::from_byte_array([tag; 32]),
                time: prev.time + 1,
                bits: prev.bits,
                nonce: i,
            };
            while check_header(&header, &params).is_err() {
                header.nonce = header.nonce.wrapping_add(count);
            }
            prev = header;
            header
        })
        .collect()
}

/// The pending headers the victim lists for `peer`, while it is connected.
fn pending_of(rpc: &Rpc, peer: &PeerId) -> Option<u64> {
    peer_info(rpc, peer).and_then(|p| p["pending_headers"].as_u64())
}

#[test]
fn low_work_header_chains_are_held_within_budget_never_stored_and_cost_nothing() {
    let (_dir_v, _dir_h, victim, honest) = victim_and_honest(40);
    let target = victim.p2p_address();
    let genesis = Params::for_network(Network::Regtest).genesis_hash;
    let mut attackers = Vec::new();
    for tag in 1..=3u8 {
        // Shorter than the honest chain, so less work; each host its own fork.
        let fork = low_work_fork(30, tag);
        let mut attacker = Adversary::connect(&target);
        let last = *fork.last().expect("fork");
        attacker.headers = fork;
        // It claims far more work than it will show.
        attacker.claimed = Some(Status {
            genesis,
            tip: cairn_node::chain::TipSummary {
                hash: last.block_hash(),
                height: cairn_consensus::Height::new(1_000_000),
                chain_work: cairn_consensus::Work::from_u256(cairn_consensus::U256::from_u64(u64::MAX)),
            },
        });
        let status = Request::Status(attacker.claimed.expect("claimed")).to_bytes();
        attacker.send_raw(Frame::honest(status));
        attackers.push((attacker, last));
    }
    for (attacker, _) in &mut attackers {
        let peer = attacker.peer_id();
        let held = (0..30).any(|_| {
            attacker.drive(Duration::from_secs(1), |_| false);
            pending_of(&victim.rpc, &peer) == Some(30)
        });
        assert!(held, "the victim holds the 30 checked low-work headers of {peer}");
    }
    for (attacker, last) in &mut attackers {
        // Valid headers with too little work: never stored, never penalized.
        assert!(
            victim.rpc.call("getblockheader", json!([last.block_hash().to_string()])).is_err(),
            "a low-work header is not stored"
        );
        attacker.drive(Duration::from_millis(200), |_| false);
        assert_eq!(score_of(&victim.rpc, &attacker.peer_id()), Some(0.0), "low work is no offence");
    }
    // The victim follows the honest chain and asks the liars for nothing it cannot get.
    let next: Value = honest.rpc.ok("generatetoaddress", json!([1, address(1)]));
    wait_until(60, "the victim to take the honest block", || tip(&victim.rpc) == next[0]);
}

/// A block on the victim's tip whose coinbase pays `outputs` outputs
/// (about 42 bytes each): a big block without a single signature.
pub(crate) fn fat_block(rpc: &Rpc, outputs: usize) -> Block {
    let params = Params::for_network(Network::Regtest);
    let mut block = block_on_tip(rpc, Vec::new(), false);
    let coinbase = &mut block.transactions[0];
    let total = coinbase.outputs[0].amount.to_base_units();
    let each = total / outputs as u64;
    coinbase.outputs = (0..outputs)
        .map(|n| TxOut {
            amount: Amount::from_base_units(if n == 0 { total - each * (outputs as u64 - 1) } else { each })
                .expect("amount"),
            lock: Lock::key(keypair(9).x_only_public_key().0.serialize()),
        })
        .collect();
    block.header.merkle_root = block_merkle_root(&block).root;
    block.header.nonce = 0;
    while check_header(&block.header, &params).is_err() {
        block.header.nonce += 1;
    }
    block
}

#[test]
fn a_peer_that_never_reads_its_answers_has_them_dropped_and_pays_a_stall() {
    let (_dir_v, _dir_h, victim, honest) = victim_and_honest(5);
    // Three blocks of about 340 KB: an answer with all three is over a
    // Yamux stream's receive window, so the victim's write blocks.
    let mut hashes = Vec::new();
    for _ in 0..3 {
        let block = fat_block(&victim.rpc, 8_000);
        assert!(block.size() > 300_000, "{} bytes", block.size());
        assert_eq!(victim.rpc.ok("submitblock", json!([hex::encode(block.encode())])), Value::Null);
        hashes.push(block.block_hash());
    }
    let before = rss_kib(victim.pid());
    let mut attacker = Adversary::connect(&victim.p2p_address());
    let peer = attacker.peer_id();
    attacker.set_deaf(true);
    // Its whole answer budget (eight), each answer about a megabyte, never read.
    for _ in 0..8 {
        attacker.send_raw(Frame::honest(Request::Blocks(hashes.clone()).to_bytes()));
    }
    // The victim gives up on them after its request timeout (20 s) and
    // counts a stall against the peer.
    let penalized = (0..60).any(|_| {
        attacker.drive(Duration::from_secs(1), |_| false);
        score_of(&victim.rpc, &peer).is_some_and(|score| score < 0.0)
    });
    assert!(penalized, "a stall is counted against a peer that does not read");
    let during = rss_kib(victim.pid());
    assert!(during < before + 64 * 1024, "answers held stay bounded: {before} KiB then {during} KiB");
    // Its budget is free again: once it reads, it is served in full.
    attacker.set_deaf(false);
    attacker.send_raw(Frame::honest(Request::Blocks(hashes.clone()).to_bytes()));
    let mut served = None;
    attacker.drive(Duration::from_secs(30), |event| {
        if let SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        })) = event
        {
            // (The raw answer starts with its 4-byte length.)
            if let Some(Ok(Response::Blocks(blocks))) = response.get(4..).map(Response::from_bytes) {
                served = Some(blocks.iter().map(Block::block_hash).collect::<Vec<_>>());
                return true;
            }
        }
        false
    });
    assert_eq!(served, Some(hashes.clone()), "served again once it reads");
    // With 15 peers connected its share of answer bytes is one full
    // answer: eight requests at once each wait for the one before to be
    // written, and none is refused busy.
    let _others: Vec<Adversary> = (0..13).map(|_| Adversary::connect(&victim.p2p_address())).collect();
    for _ in 0..8 {
        attacker.send_raw(Frame::honest(Request::Blocks(hashes.clone()).to_bytes()));
    }
    let (mut full, mut other) = (0, 0);
    attacker.drive(Duration::from_secs(60), |event| {
        if let SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        })) = event
        {
            match response.get(4..).map(Response::from_bytes) {
                Some(Ok(Response::Blocks(blocks))) if blocks.len() == 3 => full += 1,
                _ => other += 1,
            }
        }
        full + other == 8
    });
    assert_eq!((full, other), (8, 0), "every request served in full, one after another");
    // And the honest peer was followed throughout.
    let next: Value = honest.rpc.ok("generatetoaddress", json!([1, address(1)]));
    wait_until(60, "the victim to take the honest block", || tip(&victim.rpc) == next[0]);
}
