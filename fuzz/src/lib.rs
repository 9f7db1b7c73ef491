//! What the fuzz targets share: an allocator that counts, a small regtest
//! chain in memory, and big-integer references for the differential
//! targets. None of it is in the node: the big-integer crate is used here
//! only, as the second opinion the differential targets ask for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cairn_consensus::sighash::sign_inputs;
use cairn_consensus::{Amount, Block, Lock, Network, OutPoint, Params, Transaction, TxIn, TxOut};
use cairn_miner::Kernel;
use cairn_node::node::Node;
use cairn_node::store::MemStore;
use cairn_node::template::new_block;
use secp256k1::{Keypair, Secp256k1};

/// The system allocator, counting the bytes live and the most live since
/// the last [`measure`].
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counters
// are only read.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                let live =
                    LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it held at once
/// (beyond what was live before). Meant for single-threaded code.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = f();
    (result, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

/// The most a decoder may hold for `input` bytes: a small multiple of the
/// input (the decoded structs are larger than their encodings, and vectors
/// grow by doubling) plus a constant for the first allocations.
#[must_use]
pub fn allocation_bound(input: usize) -> usize {
    16 * input + 4096
}

/// The key every block of the fuzz chain pays.
#[must_use]
pub fn miner_key() -> Keypair {
    Keypair::from_seckey_slice(&Secp256k1::new(), &[1; 32]).expect("a valid key")
}

/// The lock of [`miner_key`].
#[must_use]
pub fn miner_lock() -> Lock {
    Lock::key(miner_key().x_only_public_key().0.serialize())
}

/// Height of the fuzz chain's tip: past coinbase maturity, so the first
/// coinbase can be spent.
pub const CHAIN_LENGTH: u64 = 101;

/// The fuzz chain: regtest, in memory, [`CHAIN_LENGTH`] blocks with fixed
/// times, so that it (and the seeds made from it) is the same every run.
pub struct FuzzChain {
    /// The node over it.
    pub node: Arc<Node>,
    /// Its blocks, genesis excluded.
    pub blocks: Vec<Block>,
}

impl FuzzChain {
    /// Builds it (a fraction of a second: regtest's target is easy).
    #[must_use]
    pub fn build() -> Self {
        let params = Params::for_network(Network::Regtest);
        let start = u64::from(params.genesis.header.time);
        let node = Arc::new(
            Node::open(Arc::new(MemStore::new()), params, std::path::Path::new("/nonexistent"))
                .expect("an empty store opens"),
        );
        let mut blocks = Vec::new();
        for i in 1..=CHAIN_LENGTH {
            let block = mine_on(&node, Vec::new(), start + 600 * i);
            node.submit_block(block.clone()).expect("the fuzz chain is valid");
            blocks.push(block);
        }
        Self { node, blocks }
    }

    /// A block on the tip (not submitted) holding `transactions`.
    #[must_use]
    pub fn next_block(&self, transactions: Vec<Transaction>, fees: Amount) -> Block {
        let time = u64::from(self.blocks.last().map_or(0, |b| b.header.time)) + 600;
        let template = {
            let state = self.node.state();
            new_block(&state.chain, &miner_lock(), transactions, fees, time)
        };
        solve(template)
    }

    /// A valid transaction spending block 1's coinbase to the miner, with
    /// a fee of 1,000 base units.
    #[must_use]
    pub fn spend_first_coinbase(&self) -> Transaction {
        let coinbase = &self.blocks[0].transactions[0];
        let spent = coinbase.outputs[0].clone();
        let fee = Amount::from_base_units(1_000).expect("a small amount");
        let mut tx = Transaction {
            version: 1,
            inputs: vec![TxIn::spending(OutPoint { txid: coinbase.txid(), index: 0 })],
            outputs: vec![TxOut {
                amount: spent.amount.checked_sub(fee).expect("the reward exceeds the fee"),
                lock: miner_lock(),
            }],
            lock_time: 0,
        };
        sign_inputs(
            &Secp256k1::new(),
            &mut tx,
            &[&spent],
            self.node.params().genesis_hash,
            &miner_key(),
            &[7; 32],
        );
        tx
    }
}

fn mine_on(node: &Node, transactions: Vec<Transaction>, time: u64) -> Block {
    let template = {
        let state = node.state();
        new_block(&state.chain, &miner_lock(), transactions, Amount::ZERO, time)
    };
    solve(template)
}

fn solve(block: Block) -> Block {
    cairn_miner::solve(block, Kernel::Portable).expect("a template the miner takes")
}

/// Big-integer references for the differential targets.
pub mod reference {
    use num_bigint::{BigInt, BigUint};
    use num_traits::{One, Zero};

    /// A little-endian 32-byte number.
    #[must_use]
    pub fn from_le(bytes: &[u8; 32]) -> BigUint {
        BigUint::from_bytes_le(bytes)
    }

    /// The low 32 bytes, little-endian (the number must fit).
    #[must_use]
    pub fn to_le(value: &BigUint) -> [u8; 32] {
        let bytes = value.to_bytes_le();
        assert!(bytes.len() <= 32, "fits 256 bits");
        let mut out = [0u8; 32];
        out[..bytes.len()].copy_from_slice(&bytes);
        out
    }

    /// 2^256.
    #[must_use]
    pub fn two_256() -> BigUint {
        BigUint::one() << 256u32
    }

    /// Bitcoin Core's `SetCompact`, written from its definition: the
    /// value, negative and overflow flags (the value is `None` when it does
    /// not fit 256 bits, where Core's is undefined).
    #[must_use]
    pub fn set_compact(bits: u32) -> (Option<BigUint>, bool, bool) {
        let size = bits >> 24;
        let word = bits & 0x007f_ffff;
        let value = if size <= 3 {
            BigUint::from(word >> (8 * (3 - size)))
        } else {
            BigUint::from(word) << (8 * (size - 3))
        };
        let nonzero = !value.is_zero() || (size > 3 && word != 0);
        let negative = nonzero && bits & 0x0080_0000 != 0;
        let fits = value.bits() <= 256;
        let overflow = word != 0 && !fits;
        (fits.then_some(value), negative, overflow)
    }

    /// Bitcoin Core's `GetCompact(false)`, from its definition: the size
    /// in bytes and the top three bytes, moved down a byte when the top
    /// one has the sign bit.
    #[must_use]
    pub fn get_compact(value: &BigUint) -> u32 {
        let mut size = (value.bits() as u32).div_ceil(8);
        let mut mantissa: u32 = if size <= 3 {
            let low = value.iter_u64_digits().next().unwrap_or(0);
            (low << (8 * (3 - size))) as u32
        } else {
            let shifted: BigUint = value >> (8 * (size - 3));
            shifted.iter_u64_digits().next().unwrap_or(0) as u32
        };
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        mantissa | size << 24
    }

    /// aserti3-2d as `docs/protocol.md` writes it, in unbounded integers:
    /// the compact target after the block at `height` with timestamp `time`.
    #[must_use]
    #[allow(clippy::too_many_arguments)] // the formula's eight inputs, named as it names them
    pub fn asert(
        anchor_height: u64,
        anchor_parent_time: i64,
        anchor_target: &BigUint,
        spacing: i64,
        half_life: i64,
        pow_limit: &BigUint,
        height: u64,
        time: i64,
    ) -> u32 {
        let time_diff = BigInt::from(time) - BigInt::from(anchor_parent_time);
        let height_diff = BigInt::from(height) - BigInt::from(anchor_height);
        let numerator = (time_diff - BigInt::from(spacing) * (height_diff + 1)) * 65536;
        // Truncating division, as the formula says (toward zero).
        let exponent = &numerator / BigInt::from(half_life);
        // shifts = floor(exponent / 65536); frac = exponent - 65536 * shifts.
        let shifts = floor_div(&exponent, &BigInt::from(65536));
        let frac: BigInt = &exponent - &shifts * BigInt::from(65536);
        let frac = frac.to_biguint().expect("0 <= frac");
        let cubic: BigUint = BigUint::from(195_766_423_245_049u64) * &frac
            + BigUint::from(971_821_376u64) * &frac * &frac
            + BigUint::from(5127u64) * &frac * &frac * &frac
            + (BigUint::one() << 47u32);
        let factor = BigUint::from(65536u32) + (cubic >> 48u32);
        let product = anchor_target * factor;
        let shift: BigInt = shifts - BigInt::from(16);
        let next = if shift >= BigInt::zero() {
            let shift = u64::try_from(shift).unwrap_or(u64::MAX);
            if shift > 512 {
                None
            } else {
                Some(product << shift)
            }
        } else {
            let shift = u64::try_from(-shift).unwrap_or(u64::MAX);
            Some(if shift > 512 { BigUint::zero() } else { product >> shift })
        };
        match next {
            Some(next) if next <= *pow_limit => {
                get_compact(&if next.is_zero() { BigUint::one() } else { next })
            }
            _ => get_compact(pow_limit),
        }
    }

    fn floor_div(a: &BigInt, b: &BigInt) -> BigInt {
        use num_integer::Integer;
        a.div_floor(b)
    }
}

/// The decoding property every consensus type has: bytes that decode
/// re-encode to exactly themselves (one encoding per value), and decoding
/// holds at most [`allocation_bound`] bytes whatever the input says.
pub fn check_round_trip<T: cairn_consensus::Decode + cairn_consensus::Encode>(data: &[u8]) -> Option<T> {
    let (decoded, held) = measure(|| T::decode(data));
    assert!(
        held <= allocation_bound(data.len()),
        "decoding {} bytes held {held} bytes (bound {})",
        data.len(),
        allocation_bound(data.len())
    );
    let value = decoded.ok()?;
    assert_eq!(value.encode(), data, "an accepted encoding re-encodes to the same bytes");
    Some(value)
}
