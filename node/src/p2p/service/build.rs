//! Building the swarm: the identity key, the transport, the behaviours
//! and their limits, and the service task.

use super::*;

/// Loads the node's identity key from `p2p.key`, or makes and saves one.
pub(super) fn identity(datadir: &std::path::Path) -> Result<identity::Keypair, NetworkError> {
    let path = datadir.join("p2p.key");
    let fail = |reason: String| NetworkError::Identity { path: path.clone(), reason };
    match read_capped(&path, 4096).map_err(|e| fail(e.to_string()))? {
        Some(bytes) => {
            let bytes =
                hex::decode(String::from_utf8_lossy(&bytes).trim()).map_err(|e| fail(e.to_string()))?;
            identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| fail(e.to_string()))
        }
        None => {
            let key = identity::Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| fail(e.to_string()))?;
            write_private(&path, hex::encode(bytes).as_bytes()).map_err(|e| fail(e.to_string()))?;
            Ok(key)
        }
    }
}

/// Starts the network layer on the current tokio runtime.
///
/// # Errors
/// When the identity key or ban list cannot be read, or an address cannot be listened on.
pub fn start(node: Arc<Node>, config: NetworkConfig) -> Result<NetworkHandle, NetworkError> {
    let key = identity(&config.datadir)?;
    let peer_id = key.public().to_peer_id();
    let genesis = node.state().chain.params().genesis_hash;
    let bans = Bans::load(&config.datadir.join("bans.json")).map_err(NetworkError::Bans)?;
    let setup = |e: &dyn std::fmt::Display| NetworkError::Setup(e.to_string());

    let blocks = gossipsub::IdentTopic::new(blocks_topic(&genesis));
    let transactions = gossipsub::IdentTopic::new(transactions_topic(&genesis));
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validate_messages()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .max_transmit_size(MAX_GOSSIP_SIZE)
                .max_transmit_size_for_topic(MAX_STANDARD_TX_SIZE + GOSSIP_ENVELOPE, transactions.hash())
                .heartbeat_interval(Duration::from_millis(700))
                .message_id_fn(|message: &gossipsub::Message| {
                    use sha2::Digest;
                    let digest = sha2::Sha256::new()
                        .chain_update(message.topic.as_str())
                        .chain_update(&message.data)
                        .finalize();
                    gossipsub::MessageId::from(digest[..20].to_vec())
                })
                .build()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)
                    .map_err(std::io::Error::other)?;
            // Without discovery there is no Kademlia at all: it dials the
            // peers it learns of by itself.
            let kad = config.discovery.then(|| {
                let mut kad_config = kad::Config::new(kad_protocol(&genesis));
                // The loop bootstraps once a minute when it has peers; kad's own
                // timer would only warn on a node that has none yet.
                kad_config.set_periodic_bootstrap_interval(None);
                let mut kad = kad::Behaviour::with_config(
                    key.public().to_peer_id(),
                    kad::store::MemoryStore::new(key.public().to_peer_id()),
                    kad_config,
                );
                kad.set_mode(Some(kad::Mode::Server));
                kad
            });
            let mdns = if config.mdns {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), key.public().to_peer_id())?)
            } else {
                None
            };
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_pending_incoming(Some(config.max_pending))
                .with_max_established_incoming(Some(config.max_inbound))
                .with_max_established_outgoing(Some(config.max_outbound()))
                .with_max_pending_outgoing(Some(config.max_outbound()))
                .with_max_established_per_peer(Some(2));
            Ok(Behaviour {
                pending: PendingPerIp::default(),
                limits: connection_limits::Behaviour::new(limits),
                blocked: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new(identify_version(&genesis), key.public())
                        .with_agent_version(format!("cairn/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                gossipsub,
                sync: request_response::Behaviour::with_codec(
                    SyncCodec,
                    [(sync_protocol(&genesis), request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(64),
                ),
                kad: Toggle::from(kad),
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();

    swarm.behaviour_mut().gossipsub.subscribe(&blocks).map_err(|e| setup(&e))?;
    swarm.behaviour_mut().gossipsub.subscribe(&transactions).map_err(|e| setup(&e))?;
    for address in &config.listen {
        if !config.allow_shared_port {
            check_port_free(address)?;
        }
        swarm.listen_on(address.clone()).map_err(|e| setup(&format!("listening on {address}: {e}")))?;
    }
    let now = unix_now();
    for (key, _) in bans.list(now) {
        if let Ok(peer) = key.parse::<PeerId>() {
            swarm.behaviour_mut().blocked.block_peer(peer);
        }
    }

    let shared = Arc::new(Shared {
        peer_id,
        listening: Mutex::new(Vec::new()),
        peers: Mutex::new(Vec::new()),
        bans: Mutex::new(bans),
    });
    let (commands_in, commands) = mpsc::channel(COMMAND_QUEUE);
    let handle = NetworkHandle { commands: commands_in, shared: shared.clone() };
    // Synced blocks are connected on one thread, in the order they arrive,
    // so that ranges asked of peers connect in order and never contend.
    let (connector, to_connect) = std::sync::mpsc::sync_channel::<(PeerId, Vec<Block>, usize)>(CONNECT_QUEUE);
    let (connected_out, connected) = mpsc::channel(CONNECT_QUEUE);
    let valid_out = connected_out.clone();
    let connecting_node = node.clone();
    std::thread::Builder::new()
        .name("block-sync".into())
        .spawn(move || {
            for (peer, blocks, bytes) in to_connect {
                tracing::trace!(target: "cairn_node::sync", count = blocks.len(), "connecting an answer");
                let mut failures = Vec::new();
                let mut blocks = blocks.into_iter().peekable();
                while blocks.peek().is_some() {
                    let mut run = Vec::new();
                    let mut run_bytes = 0;
                    while let Some(block) = blocks.next_if(|block| {
                        run.is_empty()
                            || (run.len() < CONNECT_SLICE_BLOCKS
                                && run_bytes + block.size() <= CONNECT_SLICE_BYTES)
                    }) {
                        run_bytes += block.size();
                        run.push(block);
                    }
                    for (hash, result) in connecting_node.accept_blocks(run) {
                        if let Err(e) = result {
                            failures.push((hash, e));
                        }
                    }
                }
                tracing::trace!(target: "cairn_node::sync", "answer connected");
                if connected_out.blocking_send(Outcome::Blocks { peer, bytes, failures }).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| setup(&format!("starting the block-sync thread: {e}")))?;
    let book = PeerBook::load(&config.datadir.join("peers.json"));
    let keep: HashSet<Multiaddr> = config.connect.iter().cloned().collect();
    let service = Service {
        announcements: node.subscribe(),
        node,
        swarm,
        config,
        shared,
        commands,
        book,
        keep,
        last_dial: HashMap::new(),
        peers: HashMap::new(),
        asked: HashMap::new(),
        download: Download::new(MAX_BLOCKS_PER_REQUEST),
        pending_headers: PendingHeaders::new(MAX_PENDING_HEADERS),
        tasks: FuturesUnordered::new(),
        budget: Budget::default(),
        answering: HashMap::new(),
        building: HashMap::new(),
        deferred: HashMap::new(),
        deferred_count: 0,
        connector,
        connected,
        valid_out,
        gossiped_blocks: HashMap::new(),
        blocks_topic: blocks,
        transactions_topic: transactions,
        genesis,
        told_tip: genesis,
        told_at: Instant::now(),
    };
    tokio::spawn(service.run());
    Ok(handle)
}
