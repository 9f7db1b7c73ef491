//! Per-network parameters and genesis blocks.
//!
//! | network | spacing | half-life | easiest target | halving | address prefix | p2p / RPC port |
//! |---------|---------|-----------|----------------|---------|----------------|----------------|
//! | main    | 600 s   | 2 days    | `0x1d00ffff`   | 210,000 | `cairn`        | 8733 / 8732    |
//! | devnet  | 10 s    | 10 min    | `0x1f00ffff`   | 210,000 | `dcairn`       | 18733 / 18732  |
//! | regtest | (fixed) | (none)    | `0x207fffff`   | 150     | `rcairn`       | 28733 / 28732  |
//!
//! The reasons are in docs/protocol.md.

use core::fmt;
use core::str::FromStr;

use crate::amount::Amount;
use crate::asert::AsertParams;
use crate::block::{Block, BlockHeader};
use crate::hash::{BlockHash, MerkleRoot};
use crate::height::Height;
use crate::pow::{CompactTarget, Target};
use crate::transaction::{Lock, OutPoint, Transaction, TxIn, TxOut, SEQUENCE_FINAL};

/// A Cairn network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// The main network.
    Main,
    /// The default: a development network with fast blocks a CPU can mine.
    Devnet,
    /// Local testing: the easiest target, no retargeting, blocks on demand.
    Regtest,
}

impl Network {
    /// Every network.
    pub const ALL: [Self; 3] = [Self::Main, Self::Devnet, Self::Regtest];

    /// The network's name as the command line spells it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Devnet => "devnet",
            Self::Regtest => "regtest",
        }
    }

    /// The bech32m human-readable part of the network's addresses.
    #[must_use]
    pub const fn address_prefix(self) -> &'static str {
        match self {
            Self::Main => "cairn",
            Self::Devnet => "dcairn",
            Self::Regtest => "rcairn",
        }
    }

    /// The network's parameters.
    #[must_use]
    pub fn params(self) -> Params {
        Params::for_network(self)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown network name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}: expected main, devnet or regtest")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|n| n.name() == name).ok_or_else(|| UnknownNetwork(name.to_owned()))
    }
}

/// How the target of the next block is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifficultyRule {
    /// Every block carries the genesis bits (regtest).
    Fixed,
    /// aserti3-2d anchored at block 1, which carries the genesis bits; the
    /// anchor's parent time is block 1's time minus the spacing.
    Asert(AsertParams),
    /// Bitcoin's rule: every `interval` blocks, scale the target by the
    /// period's duration over `timespan`, clamped to a factor of 4. Only the
    /// test profile that checks real Bitcoin headers uses it.
    BitcoinRetarget {
        /// Blocks per period.
        interval: u32,
        /// Intended seconds per period.
        timespan: i64,
    },
}

/// Everything consensus needs to know about a network.
#[derive(Debug, Clone)]
pub struct Params {
    /// Which network (the Bitcoin test profile reports `Main`).
    pub network: Network,
    /// The genesis block.
    pub genesis: Block,
    /// The genesis block's hash, part of every signature message and p2p id.
    pub genesis_hash: BlockHash,
    /// The easiest target any block may have.
    pub pow_limit: Target,
    /// How targets move.
    pub difficulty: DifficultyRule,
    /// Ideal seconds between blocks (for estimates and templates).
    pub target_spacing: i64,
    /// How far a block's time may be ahead of the node's clock, in seconds.
    pub max_future_block_time: u32,
    /// Blocks between subsidy halvings.
    pub halving_interval: u32,
    /// Confirmations before a coinbase output may be spent.
    pub coinbase_maturity: u32,
    /// Bech32m human-readable part of addresses.
    pub address_prefix: &'static str,
    /// Default TCP port for peer-to-peer connections.
    pub default_p2p_port: u16,
    /// Default TCP port for JSON-RPC.
    pub default_rpc_port: u16,
    /// Subdirectory of the data directory.
    pub data_dir_name: &'static str,
    /// Whether RPC may mine blocks on demand (generatetoaddress).
    pub allow_generate: bool,
}

/// The x-only key of the genesis coinbase's output: BIP-341's "nothing up my
/// sleeve" point H, whose discrete logarithm nobody knows.
pub const UNSPENDABLE_KEY: [u8; 32] = [
    0x50, 0x92, 0x9b, 0x74, 0xc1, 0xa0, 0x49, 0x54, 0xb7, 0x8b, 0x4b, 0x60, 0x35, 0xe9, 0x7a, 0x5e, 0x07,
    0x8a, 0x5a, 0x0f, 0x28, 0xec, 0x96, 0xd5, 0x47, 0xbf, 0xee, 0x9a, 0xce, 0x80, 0x3a, 0xc0,
];

/// The genesis hash of the first devnet (2026-11-24 to 2026-12-05), whose
/// blocks followed a 256-bit cut of the aserti3-2d product instead of the
/// written rule: a node finding it in a data directory says so.
pub const FIRST_DEVNET_GENESIS: &str = "0000e1cf18c6ace4703a5a3d8222426be6e440f5c37414f7920246894f207632";

/// Genesis time of main and regtest: 2026-11-24T00:00:00Z (plus seconds where a
/// network's nonce range ran out).
pub const GENESIS_TIME: u32 = 1_795_478_400;

/// The genesis block of a network: one coinbase whose data is height 0 and a
/// message, paying nothing to [`UNSPENDABLE_KEY`]; its output never enters
/// the UTXO set.
#[must_use]
pub fn genesis_block(message: &str, time: u32, bits: CompactTarget, nonce: u32) -> Block {
    let mut data = 0u32.to_le_bytes().to_vec();
    data.extend_from_slice(message.as_bytes());
    let coinbase = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint::NULL,
            data,
            sequence: SEQUENCE_FINAL,
            witness: crate::Witness::new(),
        }],
        outputs: vec![TxOut { amount: Amount::ZERO, lock: Lock::key(UNSPENDABLE_KEY) }],
        lock_time: 0,
    };
    let merkle_root = MerkleRoot::from_byte_array(coinbase.txid().to_byte_array());
    Block {
        header: BlockHeader { version: 1, prev_block: BlockHash::ZERO, merkle_root, time, bits, nonce },
        transactions: vec![coinbase],
    }
}

struct NetworkConstants {
    message: &'static str,
    time: u32,
    bits: u32,
    nonce: u32,
}

fn constants(network: Network) -> NetworkConstants {
    match network {
        Network::Main => NetworkConstants {
            message: "Cairn main 2026-11-24: every passer-by adds a stone",
            bits: 0x1d00_ffff,
            time: MAIN_GENESIS_TIME,
            nonce: MAIN_GENESIS_NONCE,
        },
        Network::Devnet => NetworkConstants {
            message: "Cairn devnet 2026-12-05: exact stones, from the first block",
            bits: 0x1f00_ffff,
            time: DEVNET_GENESIS_TIME,
            nonce: DEVNET_GENESIS_NONCE,
        },
        Network::Regtest => NetworkConstants {
            message: "Cairn regtest 2026-11-24: stones for tests",
            bits: 0x207f_ffff,
            time: REGTEST_GENESIS_TIME,
            nonce: REGTEST_GENESIS_NONCE,
        },
    }
}

const MAIN_GENESIS_TIME: u32 = GENESIS_TIME;
/// Devnet was restarted on 2026-12-05 with a new genesis when its
/// aserti3-2d product became exact (it had been cut to 256 bits, which on
/// devnet's limit changed the target on most blocks); a data directory of
/// the first devnet is refused at start (see [`FIRST_DEVNET_GENESIS`]).
const DEVNET_GENESIS_TIME: u32 = 1_796_428_800;
const REGTEST_GENESIS_TIME: u32 = GENESIS_TIME;
const MAIN_GENESIS_NONCE: u32 = 663_811_988;
const DEVNET_GENESIS_NONCE: u32 = 51_376;
const REGTEST_GENESIS_NONCE: u32 = 6;

impl Params {
    /// The parameters of `network`.
    #[must_use]
    pub fn for_network(network: Network) -> Self {
        let c = constants(network);
        let bits = CompactTarget::from_consensus(c.bits);
        let pow_limit = bits.to_target().expect("genesis bits encode a valid target");
        let genesis = genesis_block(c.message, c.time, bits, c.nonce);
        let genesis_hash = genesis.block_hash();
        let (difficulty, target_spacing) = match network {
            Network::Main => (
                DifficultyRule::Asert(AsertParams { spacing: 600, half_life: 2 * 24 * 3600, pow_limit }),
                600,
            ),
            Network::Devnet => {
                (DifficultyRule::Asert(AsertParams { spacing: 10, half_life: 600, pow_limit }), 10)
            }
            Network::Regtest => (DifficultyRule::Fixed, 1),
        };
        let (p2p, rpc) = match network {
            Network::Main => (8733, 8732),
            Network::Devnet => (18733, 18732),
            Network::Regtest => (28733, 28732),
        };
        Self {
            network,
            genesis,
            genesis_hash,
            pow_limit,
            difficulty,
            target_spacing,
            // A timestamp this far ahead makes the schedule at most 2^(bound / half-life)
            // easier: main 2 h / 2 days (3%), devnet 5 min / 10 min (41%). Regtest has
            // no schedule and tests burst thousands of blocks past the clock.
            max_future_block_time: if network == Network::Devnet { 300 } else { 2 * 60 * 60 },
            halving_interval: if network == Network::Regtest { 150 } else { 210_000 },
            coinbase_maturity: 100,
            address_prefix: network.address_prefix(),
            default_p2p_port: p2p,
            default_rpc_port: rpc,
            data_dir_name: network.name(),
            allow_generate: network != Network::Main,
        }
    }

    /// A test profile with Bitcoin mainnet's header rules (2016-block
    /// retarget, two-week timespan, limit `0x1d00ffff`) and Bitcoin's genesis
    /// header, so real Bitcoin headers run through Cairn's header-chain code.
    /// Only headers are meaningful under it.
    #[must_use]
    pub fn bitcoin_header_profile() -> Self {
        let mut params = Self::for_network(Network::Main);
        let bits = CompactTarget::from_consensus(0x1d00_ffff);
        params.pow_limit = bits.to_target().expect("valid target");
        params.difficulty = DifficultyRule::BitcoinRetarget { interval: 2016, timespan: 14 * 24 * 3600 };
        params.target_spacing = 600;
        params.genesis.header = BlockHeader {
            version: 1,
            prev_block: BlockHash::ZERO,
            merkle_root: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
                .parse()
                .expect("valid hash literal"),
            time: 1_231_006_505,
            bits,
            nonce: 2_083_236_893,
        };
        params.genesis_hash = params.genesis.header.block_hash();
        params
    }

    /// The subsidy of the block at `height`: 50 coins, halved every
    /// `halving_interval` blocks, zero after 64 halvings.
    #[must_use]
    pub fn subsidy(&self, height: Height) -> Amount {
        let halvings = height.get() / self.halving_interval;
        if halvings >= 64 {
            return Amount::ZERO;
        }
        Amount::from_base_units(Amount::from_coins(50).to_base_units() >> halvings)
            .expect("a halved subsidy is below the maximum")
    }
}
