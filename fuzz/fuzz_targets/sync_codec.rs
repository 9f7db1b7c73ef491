//! The sync protocol's messages, as a peer sends them: the first byte
//! picks the request or the answer decoder, directly or through the
//! libp2p codec's length-prefixed frames. Accepted messages re-encode to
//! themselves; decoding holds a bounded multiple of the input.
#![no_main]

use std::sync::OnceLock;

use cairn_node::p2p::protocol::{sync_protocol, Request, Response, SyncCodec};
use libfuzzer_sys::fuzz_target;
use libp2p::futures::io::Cursor;
use libp2p::request_response::Codec;
use libp2p::StreamProtocol;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime")
    })
}

fn protocol() -> StreamProtocol {
    sync_protocol(&cairn_consensus::Params::for_network(cairn_consensus::Network::Regtest).genesis_hash)
}

/// The frame a length-prefixed read took from `data`.
fn frame(data: &[u8]) -> &[u8] {
    let length = u32::from_le_bytes(data[..4].try_into().expect("four bytes")) as usize;
    &data[4..4 + length]
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else { return };
    let bound = cairn_fuzz::allocation_bound(data.len());
    match mode % 4 {
        0 => {
            let (request, held) = cairn_fuzz::measure(|| Request::from_bytes(data));
            assert!(held <= bound, "request of {} bytes held {held}", data.len());
            if let Ok(request) = request {
                assert!(!matches!(request, Request::Malformed(_)), "never decoded, only made by the codec");
                assert_eq!(request.to_bytes(), data);
            }
        }
        1 => {
            let (response, held) = cairn_fuzz::measure(|| Response::from_bytes(data));
            assert!(held <= bound, "answer of {} bytes held {held}", data.len());
            if let Ok(response) = response {
                assert_eq!(response.to_bytes(), data);
                assert_eq!(response.encoded_len(), data.len());
            }
        }
        2 => {
            let (read, held) = cairn_fuzz::measure(|| {
                runtime().block_on(SyncCodec.read_request(&protocol(), &mut Cursor::new(data)))
            });
            assert!(held <= bound + 64 * 1024, "framed request of {} bytes held {held}", data.len());
            // A frame that arrived whole is a request or reads as malformed;
            // only a stream that ended early is an I/O error.
            match read {
                Ok(Request::Malformed(_)) | Err(_) => {}
                Ok(request) => assert_eq!(request.to_bytes(), frame(data)),
            }
        }
        _ => {
            let (read, held) = cairn_fuzz::measure(|| {
                runtime().block_on(SyncCodec.read_response(&protocol(), &mut Cursor::new(data)))
            });
            assert!(held <= bound + 64 * 1024, "framed answer of {} bytes held {held}", data.len());
            if let Ok(response) = read {
                assert_eq!(response.to_bytes(), frame(data));
            }
        }
    }
});
