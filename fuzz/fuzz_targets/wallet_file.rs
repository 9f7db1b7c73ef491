//! The wallet file parser: any bytes give a parsed file or an error in
//! words, never a panic, and never a key-derivation cost above the
//! network's own (what a crafted file would spend before "wrong
//! passphrase"). A parsed file never opens under an all-zero key.
#![no_main]

use cairn_wallet::file::{KdfCost, Sealed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (parsed, held) = cairn_fuzz::measure(|| Sealed::parse(data));
    assert!(held <= cairn_fuzz::allocation_bound(data.len()), "{} bytes held {held}", data.len());
    match parsed {
        Ok(sealed) => {
            let cost = sealed.cost();
            let own = KdfCost::for_network(sealed.network());
            assert!(cost.memory_kib <= own.memory_kib && cost.iterations <= own.iterations);
            assert!(cost.parallelism <= own.parallelism && cost.memory_kib >= 8);
            assert!(sealed.open(&[0; 32]).is_none(), "authenticated encryption");
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});
