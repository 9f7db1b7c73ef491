//! Header decoding: exactly 80 bytes decode, to a header that re-encodes
//! to them; the context-free header rules never panic.
#![no_main]

use cairn_consensus::{BlockHeader, Network, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = cairn_fuzz::check_round_trip::<BlockHeader>(data);
    assert_eq!(decoded.is_some(), data.len() == 80, "a header is any 80 bytes");
    if let Some(header) = decoded {
        for network in [Network::Main, Network::Devnet, Network::Regtest] {
            let _ = cairn_consensus::chain::check_header(&header, &Params::for_network(network));
        }
        let _ = header.bits.to_target().map(|target| target.work());
    }
});
