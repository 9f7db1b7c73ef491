//! What a gossiped block or transaction goes through before gossipsub
//! forwards it, free of libp2p so that the fuzz targets run the same code
//! as the network actor: the header's proof of work before anything is
//! decoded, then decoding, then the node's own acceptance.

use cairn_consensus::chain::check_header;
use cairn_consensus::{Block, BlockHash, BlockHeader, HeaderError, Params, HEADER_SIZE};

use crate::chain::{Accepted, ChainError};
use crate::node::Node;

/// Checks the header at the start of a gossiped block's bytes (proof of
/// work, bits in range), so that a body is decoded, and its memory spent,
/// only for a header someone paid work for. Bytes too short to hold a
/// header pass here and fail to decode.
///
/// # Errors
/// The rule the header breaks.
pub fn precheck_block(data: &[u8], params: &Params) -> Result<(), HeaderError> {
    let Some(bytes) = data.get(..HEADER_SIZE) else { return Ok(()) };
    let mut header = [0u8; HEADER_SIZE];
    header.copy_from_slice(bytes);
    check_header(&BlockHeader::from_bytes(&header), params)
}

/// Accepts a decoded gossiped block: a duplicate or a block whose parent
/// is unknown here (the sender's headers come first) is not validated;
/// anything else goes to the node, which calls `on_valid` once it finds
/// the block valid, before its connection is written.
///
/// # Errors
/// The rule the block breaks, or a store failure.
pub fn accept_block(
    node: &Node,
    block: Block,
    on_valid: &mut dyn FnMut(BlockHash),
) -> Result<Accepted, ChainError> {
    {
        let state = node.state();
        if state.chain.has_body(&block.block_hash()) {
            return Ok(Accepted::Duplicate);
        }
        if state.chain.entry(&block.header.prev_block).is_none() {
            return Ok(Accepted::Orphan);
        }
    }
    node.accept_block_reporting(block, on_valid)
}
