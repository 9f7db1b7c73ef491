//! The sync protocol's messages and their bytes, the gossip topics, and
//! every name that carries the genesis hash so networks never mix.
//!
//! A message is a version byte ([`WIRE_VERSION`]), a kind byte, then its
//! fields in the consensus encoding (little-endian integers, minimal
//! CompactSize counts, checked against limits before anything is
//! allocated, no trailing bytes). On a stream each message is preceded by
//! its length as a u32, checked against the cap for its direction
//! ([`MAX_REQUEST_SIZE`], [`MAX_RESPONSE_SIZE`]) before it is read.

use std::io;

use cairn_consensus::encode::{write_compact_size, Reader};
use cairn_consensus::{
    Block, BlockHash, BlockHeader, Decode, DecodeError, Encode, Height, Work, MAX_BLOCK_SIZE, U256,
};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::chain::{TipSummary, MAX_HEADERS_PER_ANSWER};

/// The wire format version every message starts with.
pub const WIRE_VERSION: u8 = 1;
/// Hashes in a locator, at most.
pub const MAX_LOCATOR: usize = 101;
/// Blocks asked for in one request, at most (the answer's byte budget
/// bounds full blocks; small blocks come many to a round trip).
pub const MAX_BLOCKS_PER_REQUEST: usize = 128;
/// An answer with blocks holds at most this many bytes of blocks: a block
/// that would pass it is left out (the first one asked for and known
/// always fits: a block is at most half of it).
pub const BLOCKS_ANSWER_BUDGET: usize = 2 * MAX_BLOCK_SIZE;
/// A request must be read whole within this once its stream is open (a
/// request is at most 8 KiB).
pub const REQUEST_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest request read: a full locator with room to spare.
pub const MAX_REQUEST_SIZE: usize = 8 * 1024;
/// Largest answer read: a blocks answer at its budget (with its framing),
/// or a full headers answer.
pub const MAX_RESPONSE_SIZE: usize = BLOCKS_ANSWER_BUDGET + 1024;
/// Room for gossipsub's envelope (signature, key, topic, sequence number).
pub const GOSSIP_ENVELOPE: usize = 64 * 1024;
/// Largest gossip message on the blocks topic: a full block and the
/// envelope (the transactions topic allows the largest relayed transaction).
pub const MAX_GOSSIP_SIZE: usize = MAX_BLOCK_SIZE + GOSSIP_ENVELOPE;

/// The genesis hash in display order: part of every name below.
fn tag(genesis: &BlockHash) -> String {
    genesis.to_string()
}

/// The request-response protocol for sync.
#[must_use]
pub fn sync_protocol(genesis: &BlockHash) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/cairn/{}/sync/1", tag(genesis))).expect("starts with a slash")
}

/// Kademlia's protocol name.
#[must_use]
pub fn kad_protocol(genesis: &BlockHash) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/cairn/{}/kad/1", tag(genesis))).expect("starts with a slash")
}

/// The protocol version identify announces.
#[must_use]
pub fn identify_version(genesis: &BlockHash) -> String {
    format!("/cairn/{}/1", tag(genesis))
}

/// The gossip topic for new blocks.
#[must_use]
pub fn blocks_topic(genesis: &BlockHash) -> String {
    format!("/cairn/{}/blocks/1", tag(genesis))
}

/// The gossip topic for new transactions.
#[must_use]
pub fn transactions_topic(genesis: &BlockHash) -> String {
    format!("/cairn/{}/transactions/1", tag(genesis))
}

/// What a node says of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Its genesis block (a peer of another network is dropped).
    pub genesis: BlockHash,
    /// Its active tip.
    pub tip: TipSummary,
}

/// A sync request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// "Here is my status; what is yours?"
    Status(Status),
    /// The headers after the first locator hash the peer's active chain holds.
    Headers {
        /// Hashes of the asker's chain, newest first.
        locator: Vec<BlockHash>,
    },
    /// Blocks by hash.
    Blocks(Vec<BlockHash>),
    /// Never sent: what a request that does not decode, or is over its cap,
    /// reads as, so the node sees it and penalizes the sender (libp2p
    /// reports no event for a request its codec could not read).
    Malformed(String),
}

/// A sync answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The answerer's status.
    Status(Status),
    /// Up to [`MAX_HEADERS_PER_ANSWER`] headers, in chain order.
    Headers(Vec<BlockHeader>),
    /// The blocks asked for that the answerer has, in the order asked, up to its byte budget.
    Blocks(Vec<Block>),
    /// Blocks as they are stored, already encoded: written exactly as
    /// [`Response::Blocks`] is (and read back as one), without decoding and
    /// encoding each block on the way out.
    EncodedBlocks(Vec<Vec<u8>>),
    /// The answerer is at its serving budget for the asker (or for all):
    /// ask again later or elsewhere. Not an offence.
    Busy,
}

const KIND_STATUS: u8 = 0;
const KIND_HEADERS: u8 = 1;
const KIND_BLOCKS: u8 = 2;
const KIND_BUSY: u8 = 3;

fn encode_status(status: &Status, out: &mut Vec<u8>) {
    out.extend_from_slice(&status.genesis.to_byte_array());
    out.extend_from_slice(&status.tip.hash.to_byte_array());
    out.extend_from_slice(&status.tip.height.get().to_le_bytes());
    out.extend_from_slice(&status.tip.chain_work.to_u256().to_le_bytes());
}

fn decode_status(reader: &mut Reader<'_>) -> Result<Status, DecodeError> {
    let genesis = BlockHash::from_byte_array(reader.array()?);
    let hash = BlockHash::from_byte_array(reader.array()?);
    let height = Height::new(reader.u32()?);
    let chain_work = Work::from_u256(U256::from_le_bytes(reader.array()?));
    Ok(Status { genesis, tip: TipSummary { hash, height, chain_work } })
}

fn encode_hashes(hashes: &[BlockHash], out: &mut Vec<u8>) {
    write_compact_size(out, hashes.len() as u64);
    for hash in hashes {
        out.extend_from_slice(&hash.to_byte_array());
    }
}

fn decode_hashes(
    reader: &mut Reader<'_>,
    what: &'static str,
    limit: usize,
) -> Result<Vec<BlockHash>, DecodeError> {
    let count = reader.count(what, 32)?;
    if count > limit {
        return Err(DecodeError::OverLimit { what, value: count as u64, limit: limit as u64 });
    }
    (0..count).map(|_| Ok(BlockHash::from_byte_array(reader.array()?))).collect()
}

fn header(reader: &mut Reader<'_>) -> Result<(u8, u8), DecodeError> {
    let version = reader.u8()?;
    if version != WIRE_VERSION {
        return Err(DecodeError::OverLimit {
            what: "wire version",
            value: u64::from(version),
            limit: u64::from(WIRE_VERSION),
        });
    }
    Ok((version, reader.u8()?))
}

fn unknown_kind(kind: u8) -> DecodeError {
    DecodeError::OverLimit { what: "message kind", value: u64::from(kind), limit: u64::from(KIND_BLOCKS) }
}

impl Request {
    /// The message's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![WIRE_VERSION];
        match self {
            Self::Status(status) => {
                out.push(KIND_STATUS);
                encode_status(status, &mut out);
            }
            Self::Headers { locator } => {
                out.push(KIND_HEADERS);
                encode_hashes(locator, &mut out);
            }
            Self::Blocks(hashes) => {
                out.push(KIND_BLOCKS);
                encode_hashes(hashes, &mut out);
            }
            // A kind no reader accepts.
            Self::Malformed(_) => out.push(u8::MAX),
        }
        out
    }

    /// Reads a message.
    ///
    /// # Errors
    /// Unknown version or kind, over a limit, short or trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let (_, kind) = header(&mut reader)?;
        let request = match kind {
            KIND_STATUS => Self::Status(decode_status(&mut reader)?),
            KIND_HEADERS => {
                Self::Headers { locator: decode_hashes(&mut reader, "locator hash", MAX_LOCATOR)? }
            }
            KIND_BLOCKS => Self::Blocks(decode_hashes(&mut reader, "block request", MAX_BLOCKS_PER_REQUEST)?),
            other => return Err(unknown_kind(other)),
        };
        reader.finish()?;
        Ok(request)
    }
}

impl Response {
    /// The message's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![WIRE_VERSION];
        match self {
            Self::Status(status) => {
                out.push(KIND_STATUS);
                encode_status(status, &mut out);
            }
            Self::Headers(headers) => {
                out.push(KIND_HEADERS);
                write_compact_size(&mut out, headers.len() as u64);
                for header in headers {
                    out.extend_from_slice(&header.to_bytes());
                }
            }
            Self::Blocks(blocks) => {
                out.push(KIND_BLOCKS);
                write_compact_size(&mut out, blocks.len() as u64);
                for block in blocks {
                    block.encode_to(&mut out);
                }
            }
            Self::EncodedBlocks(blocks) => {
                out.push(KIND_BLOCKS);
                write_compact_size(&mut out, blocks.len() as u64);
                for block in blocks {
                    out.extend_from_slice(block);
                }
            }
            Self::Busy => out.push(KIND_BUSY),
        }
        out
    }

    /// The length of [`Response::to_bytes`], without encoding anything.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let count = |n: usize| cairn_consensus::encode::compact_size_len(n as u64);
        2 + match self {
            Self::Status(_) => 32 + 32 + 4 + 32,
            Self::Headers(headers) => count(headers.len()) + 80 * headers.len(),
            Self::Blocks(blocks) => count(blocks.len()) + blocks.iter().map(Block::size).sum::<usize>(),
            Self::EncodedBlocks(blocks) => count(blocks.len()) + blocks.iter().map(Vec::len).sum::<usize>(),
            Self::Busy => 0,
        }
    }

    /// Reads a message.
    ///
    /// # Errors
    /// Unknown version or kind, over a limit, short or trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let (_, kind) = header(&mut reader)?;
        let response = match kind {
            KIND_STATUS => Self::Status(decode_status(&mut reader)?),
            KIND_HEADERS => {
                let count = reader.count("header", 80)?;
                if count > MAX_HEADERS_PER_ANSWER {
                    return Err(DecodeError::OverLimit {
                        what: "headers",
                        value: count as u64,
                        limit: MAX_HEADERS_PER_ANSWER as u64,
                    });
                }
                let headers =
                    (0..count).map(|_| BlockHeader::decode_from(&mut reader)).collect::<Result<_, _>>()?;
                Self::Headers(headers)
            }
            KIND_BLOCKS => {
                let count = reader.count("block", 80 + 1)?;
                if count > MAX_BLOCKS_PER_REQUEST {
                    return Err(DecodeError::OverLimit {
                        what: "blocks",
                        value: count as u64,
                        limit: MAX_BLOCKS_PER_REQUEST as u64,
                    });
                }
                let blocks = (0..count).map(|_| Block::decode_from(&mut reader)).collect::<Result<_, _>>()?;
                Self::Blocks(blocks)
            }
            KIND_BUSY => Self::Busy,
            other => return Err(unknown_kind(other)),
        };
        reader.finish()?;
        Ok(response)
    }
}

/// Whether `address` names a peer the node can dial: a host (IPv4, IPv6 or
/// a DNS name), a TCP port other than 0, and optionally the peer's id.
///
/// # Errors
/// What is missing or extra, in words with an example.
pub fn check_dialable(address: &libp2p::Multiaddr) -> Result<(), String> {
    use libp2p::multiaddr::Protocol;
    let example = "like /ip4/127.0.0.1/tcp/18733 or /dns4/seed.example/tcp/8733/p2p/<peer id>";
    let mut parts = address.iter();
    match parts.next() {
        Some(
            Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_),
        ) => {}
        _ => return Err(format!("{address} does not start with a host ({example})")),
    }
    match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => {}
        Some(Protocol::Tcp(_)) => return Err(format!("{address}: port 0 cannot be dialed ({example})")),
        _ => return Err(format!("{address} has no TCP port ({example})")),
    }
    match (parts.next(), parts.next()) {
        (None | Some(Protocol::P2p(_)), None) => Ok(()),
        _ => Err(format!("{address}: only a peer id may follow the port ({example})")),
    }
}

/// Reads one length-prefixed frame of at most `max` bytes.
///
/// # Errors
/// I/O errors, and `InvalidData` for a frame over the cap (refused before
/// anything is allocated for it); memory grows with the bytes received,
/// not with the length claimed.
pub async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    let length = u32::from_le_bytes(length) as usize;
    if length > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes is over the cap of {max}"),
        ));
    }
    // Grown as bytes arrive, so a frame that claims the cap and stops
    // short holds only what was sent.
    let mut frame = Vec::new();
    io.take(length as u64).read_to_end(&mut frame).await?;
    if frame.len() < length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {length} bytes", frame.len()),
        ));
    }
    Ok(frame)
}

/// Writes one length-prefixed frame.
///
/// # Errors
/// I/O errors, and `InvalidData` for a frame over `max` (never sent).
pub async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    frame: &[u8],
    max: usize,
) -> io::Result<()> {
    if frame.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {} bytes is over the cap of {max}", frame.len()),
        ));
    }
    io.write_all(&(frame.len() as u32).to_le_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

fn invalid(e: DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The sync protocol's codec for libp2p's request-response.
#[derive(Debug, Clone, Default)]
pub struct SyncCodec;

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        // A request begun and not finished in time reads as malformed, so
        // the node sees it and penalizes the sender (libp2p's own timeout,
        // longer, ends it with no event).
        match tokio::time::timeout(REQUEST_READ_TIMEOUT, read_frame(io, MAX_REQUEST_SIZE)).await {
            Err(_) => Ok(Request::Malformed(format!("request not finished in {REQUEST_READ_TIMEOUT:?}"))),
            Ok(Ok(frame)) => {
                Ok(Request::from_bytes(&frame).unwrap_or_else(|e| Request::Malformed(e.to_string())))
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Ok(Request::Malformed(e.to_string())),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        Response::from_bytes(&read_frame(io, MAX_RESPONSE_SIZE).await?).map_err(invalid)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if let Request::Malformed(reason) = request {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a request to send: {reason}"),
            ));
        }
        write_frame(io, &request.to_bytes(), MAX_REQUEST_SIZE).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response.to_bytes(), MAX_RESPONSE_SIZE).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_consensus::{Network, Params};

    fn status() -> Status {
        let params = Params::for_network(Network::Regtest);
        Status {
            genesis: params.genesis_hash,
            tip: TipSummary {
                hash: params.genesis_hash,
                height: Height::new(7),
                chain_work: Work::from_u256(U256::from_u64(99)),
            },
        }
    }

    #[test]
    fn messages_round_trip() {
        let params = Params::for_network(Network::Regtest);
        let requests = [
            Request::Status(status()),
            Request::Headers { locator: vec![params.genesis_hash; MAX_LOCATOR] },
            Request::Blocks(vec![params.genesis_hash; 3]),
        ];
        for request in requests {
            assert_eq!(Request::from_bytes(&request.to_bytes()), Ok(request.clone()));
            assert!(request.to_bytes().len() <= MAX_REQUEST_SIZE);
        }
        let responses = [
            Response::Status(status()),
            Response::Headers(vec![params.genesis.header; 5]),
            Response::Blocks(vec![params.genesis.clone(); 2]),
        ];
        let encoded = Response::EncodedBlocks(vec![params.genesis.encode(); 2]);
        assert_eq!(encoded.encoded_len(), encoded.to_bytes().len());
        assert_eq!(
            Response::from_bytes(&encoded.to_bytes()),
            Ok(Response::Blocks(vec![params.genesis.clone(); 2]))
        );
        for response in responses {
            assert_eq!(response.encoded_len(), response.to_bytes().len());
            assert_eq!(Response::from_bytes(&response.to_bytes()), Ok(response));
        }
    }

    #[test]
    fn malformed_and_oversized_messages_are_refused_before_allocating() {
        let params = Params::for_network(Network::Regtest);
        let good = Request::Blocks(vec![params.genesis_hash]).to_bytes();
        // Wrong version, unknown kind, trailing byte, truncation.
        let mut wrong_version = good.clone();
        wrong_version[0] = 9;
        let mut unknown_kind = good.clone();
        unknown_kind[1] = 7;
        let mut trailing = good.clone();
        trailing.push(0);
        for bad in [wrong_version, unknown_kind, trailing, good[..good.len() - 1].to_vec(), Vec::new()] {
            assert!(Request::from_bytes(&bad).is_err(), "{bad:?}");
        }
        // Too many block hashes, and a huge count with no bytes behind it.
        let too_many = Request::Blocks(vec![params.genesis_hash; MAX_BLOCKS_PER_REQUEST + 1]).to_bytes();
        assert!(matches!(Request::from_bytes(&too_many), Err(DecodeError::OverLimit { .. })));
        let huge = [WIRE_VERSION, KIND_HEADERS, 0xfe, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(Response::from_bytes(&huge), Err(DecodeError::CountTooLarge { .. })));
        let too_many_headers =
            Response::Headers(vec![params.genesis.header; MAX_HEADERS_PER_ANSWER + 1]).to_bytes();
        assert!(matches!(Response::from_bytes(&too_many_headers), Err(DecodeError::OverLimit { .. })));
    }

    #[test]
    fn frames_over_the_cap_are_refused_unread() {
        let mut stream: &[u8] = &[0xff, 0xff, 0xff, 0x00, 1, 2, 3];
        let error =
            libp2p::futures::executor::block_on(read_frame(&mut stream, 1024)).expect_err("over the cap");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn names_carry_the_genesis_hash() {
        let devnet = Params::for_network(Network::Devnet).genesis_hash;
        let regtest = Params::for_network(Network::Regtest).genesis_hash;
        assert_ne!(sync_protocol(&devnet), sync_protocol(&regtest));
        assert!(blocks_topic(&devnet).contains(&devnet.to_string()));
        assert_ne!(transactions_topic(&devnet), transactions_topic(&regtest));
    }
}
