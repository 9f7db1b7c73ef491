//! What the node remembers about peers: scores that decay, bans that
//! survive restarts, and a peer book of addresses to dial after a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::files::{read_capped, write_private};

use cairn_consensus::TxError;

use crate::chain::ChainError;
use crate::mempool::MempoolError;

/// A score at or below this bans the peer.
pub const BAN_THRESHOLD: f64 = -100.0;
/// A penalty loses half its weight in this time.
pub const SCORE_HALF_LIFE: Duration = Duration::from_secs(600);
/// How long a peer whose score fell through the threshold stays banned.
pub const DEFAULT_BAN: Duration = Duration::from_secs(24 * 3600);
/// Addresses the peer book keeps, at most.
pub const MAX_BOOK_ENTRIES: usize = 1_000;
/// Addresses kept per peer, at most.
const MAX_ADDRESSES_PER_PEER: usize = 8;
/// Largest ban list or peer book file read.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// What a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A block that breaks a rule its header commits to, or a body that does not match its header.
    InvalidBlock,
    /// Headers that break a header rule or do not form a chain.
    InvalidHeaders,
    /// A transaction that breaks a consensus rule.
    InvalidTransaction,
    /// A message that does not decode, or a peer of another network.
    ProtocolViolation,
    /// Data nobody asked for.
    Unrequested,
    /// A request left unanswered past its deadline, or an answer left unread.
    Stall,
    /// Gossip past its validation bounds a thousand times in 10 s (see `p2p::serve`).
    Flood,
}

impl Offence {
    /// What it costs.
    #[must_use]
    pub const fn penalty(self) -> f64 {
        match self {
            Self::InvalidBlock | Self::InvalidHeaders => 100.0,
            Self::ProtocolViolation => 50.0,
            Self::InvalidTransaction => 20.0,
            Self::Unrequested => 10.0,
            Self::Stall => 5.0,
            Self::Flood => 50.0,
        }
    }

    /// A name for logs and RPC.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::InvalidBlock => "invalid block",
            Self::InvalidHeaders => "invalid headers",
            Self::InvalidTransaction => "invalid transaction",
            Self::ProtocolViolation => "protocol violation",
            Self::Unrequested => "unrequested data",
            Self::Stall => "stalled request",
            Self::Flood => "gossip flood",
        }
    }
}

/// A peer's score: 0 is neutral, penalties make it negative, and it decays
/// back towards 0 with [`SCORE_HALF_LIFE`].
#[derive(Debug, Clone, Copy)]
pub struct Score {
    value: f64,
    updated: Instant,
}

impl Score {
    /// A neutral score.
    #[must_use]
    pub fn new(now: Instant) -> Self {
        Self { value: 0.0, updated: now }
    }

    /// The score now.
    #[must_use]
    pub fn value(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.value * 0.5f64.powf(elapsed / SCORE_HALF_LIFE.as_secs_f64())
    }

    /// Applies `offence`; returns whether the score is now at or below the ban threshold.
    pub fn penalize(&mut self, offence: Offence, now: Instant) -> bool {
        self.value = self.value(now) - offence.penalty();
        self.updated = now;
        self.value <= BAN_THRESHOLD
    }
}

/// Bans by peer id or IP address, each until a Unix time, kept in a file.
#[derive(Debug)]
pub struct Bans {
    path: PathBuf,
    until: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct BanFile {
    bans: BTreeMap<String, u64>,
}

impl Bans {
    /// Loads the bans in `path` (none if the file does not exist).
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let until = match read_capped(path, MAX_FILE)? {
            None => BTreeMap::new(),
            Some(bytes) => {
                serde_json::from_slice::<BanFile>(&bytes)
                    .map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {e}", path.display()),
                        )
                    })?
                    .bans
            }
        };
        Ok(Self { path: path.to_path_buf(), until })
    }

    fn save(&self) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(&BanFile { bans: self.until.clone() }).expect("bans serialize");
        write_private(&self.path, &text)
    }

    /// Whether `key` (a peer id or an IP address) is banned at Unix time `now`.
    #[must_use]
    pub fn is_banned(&self, key: &str, now: u64) -> bool {
        self.until.get(key).is_some_and(|until| *until > now)
    }

    /// Bans `key` until `until` and saves.
    ///
    /// # Errors
    /// When the file cannot be written (the ban holds in memory anyway).
    pub fn ban(&mut self, key: &str, until: u64) -> std::io::Result<()> {
        self.until.insert(key.to_owned(), until);
        self.save()
    }

    /// Lifts the ban on `key`; returns whether there was one.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn unban(&mut self, key: &str) -> std::io::Result<bool> {
        let had = self.until.remove(key).is_some();
        self.save()?;
        Ok(had)
    }

    /// Lifts every ban.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.until.clear();
        self.save()
    }

    /// The bans in force at `now`, with their end times.
    #[must_use]
    pub fn list(&self, now: u64) -> Vec<(String, u64)> {
        self.until.iter().filter(|(_, until)| **until > now).map(|(k, u)| (k.clone(), *u)).collect()
    }
}

/// Addresses of peers the node has been connected to, kept in a file so a
/// restart can reconnect without `--connect`.
#[derive(Debug)]
pub struct PeerBook {
    path: PathBuf,
    entries: BTreeMap<String, Vec<String>>,
    dirty: bool,
}

#[derive(Serialize, Deserialize)]
struct BookFile {
    peers: BTreeMap<String, Vec<String>>,
}

impl PeerBook {
    /// Loads the book in `path` (empty if the file does not exist or is damaged:
    /// it is a cache, and the node still has `--connect`).
    #[must_use]
    pub fn load(path: &Path) -> Self {
        let entries = read_capped(path, MAX_FILE)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<BookFile>(&bytes).ok())
            .map(|file| file.peers)
            .unwrap_or_default();
        Self { path: path.to_path_buf(), entries, dirty: false }
    }

    /// Records that `peer` is reachable at `address`.
    pub fn add(&mut self, peer: &PeerId, address: &Multiaddr) {
        let key = peer.to_string();
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_BOOK_ENTRIES {
            return;
        }
        let list = self.entries.entry(key).or_default();
        let text = address.to_string();
        if !list.contains(&text) {
            if list.len() >= MAX_ADDRESSES_PER_PEER {
                list.remove(0);
            }
            list.push(text);
            self.dirty = true;
        }
    }

    /// Forgets `peer`.
    pub fn remove(&mut self, peer: &PeerId) {
        self.dirty |= self.entries.remove(&peer.to_string()).is_some();
    }

    /// Every peer and its addresses.
    #[must_use]
    pub fn peers(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.entries
            .iter()
            .filter_map(|(peer, addresses)| {
                let peer: PeerId = peer.parse().ok()?;
                Some((peer, addresses.iter().filter_map(|a| a.parse().ok()).collect()))
            })
            .collect()
    }

    /// Writes the book if it changed.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let text =
            serde_json::to_vec_pretty(&BookFile { peers: self.entries.clone() }).expect("book serializes");
        write_private(&self.path, &text)?;
        self.dirty = false;
        Ok(())
    }
}

/// What a block refused for `error` costs the peer that sent it, as
/// Bitcoin Core weighs it: a block breaking a rule its sender must have
/// checked is the worst there is (a ban at once); our own storage failing,
/// a time too far ahead of our clock (it may be ours that is behind) cost
/// nothing.
#[must_use]
pub fn block_offence(error: &ChainError) -> Option<Offence> {
    match error {
        e if e.is_local_failure() => None,
        ChainError::Header(e) if !e.is_permanent() => None,
        _ => Some(Offence::InvalidBlock),
    }
}

/// What a relayed transaction refused for `error` costs its sender: only
/// breaking a consensus rule its sender must have checked costs (as an
/// invalid transaction). Policy (fee, dust, size, a full pool, a
/// replacement's terms) and races of propagation (a parent not seen yet,
/// already known or confirmed, a lock time or coinbase maturity reached at
/// the sender's tip but not yet at ours) cost nothing.
#[must_use]
pub fn transaction_offence(error: &MempoolError) -> Option<Offence> {
    match error {
        MempoolError::Consensus(TxError::NotFinal { .. } | TxError::ImmatureCoinbase { .. }) => None,
        MempoolError::Consensus(_) | MempoolError::Coinbase => Some(Offence::InvalidTransaction),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case of each class of the penalty table (docs/operations.md).
    #[test]
    fn consensus_breaches_cost_and_policy_refusals_and_races_do_not() {
        use cairn_consensus::{BlockError, HeaderError, Height, OutPoint};
        // Consensus-invalid data its sender must have checked.
        let bad_signature = MempoolError::Consensus(TxError::BadSignature { input: 0 });
        assert_eq!(transaction_offence(&bad_signature), Some(Offence::InvalidTransaction));
        let bad_block = ChainError::Block(BlockError::NoTransactions);
        assert_eq!(block_offence(&bad_block), Some(Offence::InvalidBlock));
        assert_eq!(Offence::InvalidBlock.penalty(), -BAN_THRESHOLD, "an invalid block bans at once");
        // Policy.
        assert_eq!(transaction_offence(&MempoolError::FeeTooLow { rate: 0, min: 1 }), None);
        assert_eq!(transaction_offence(&MempoolError::Full), None);
        // Races of propagation.
        assert_eq!(transaction_offence(&MempoolError::MissingInputs(OutPoint::NULL)), None);
        let not_final = TxError::NotFinal { lock_time: 10, height: Height::new(9), median_time: 0 };
        assert_eq!(transaction_offence(&MempoolError::Consensus(not_final)), None);
        let immature = TxError::ImmatureCoinbase {
            input: 0,
            coin_height: Height::new(5),
            spend_height: Height::new(6),
            maturity: 100,
        };
        assert_eq!(transaction_offence(&MempoolError::Consensus(immature)), None);
        let ahead = ChainError::Header(HeaderError::TimeTooNew { time: 100, max: 50 });
        assert_eq!(block_offence(&ahead), None);
        // Our own failures.
        assert_eq!(block_offence(&ChainError::Stopped), None);
    }

    #[test]
    fn scores_decay_and_ban_at_the_threshold() {
        let start = Instant::now();
        let mut score = Score::new(start);
        assert!(!score.penalize(Offence::InvalidTransaction, start));
        assert!((score.value(start) + 20.0).abs() < 1e-9);
        let later = start + SCORE_HALF_LIFE;
        assert!((score.value(later) + 10.0).abs() < 1e-6, "half the penalty after one half-life");
        assert!(score.penalize(Offence::InvalidBlock, later), "an invalid block bans at once");
        let mut slow = Score::new(start);
        for _ in 0..10 {
            assert!(!slow.penalize(Offence::Stall, start));
        }
    }

    #[test]
    fn bans_survive_a_reload_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bans.json");
        let mut bans = Bans::load(&path).expect("no file yet");
        bans.ban("12D3KooWpeer", 2_000).expect("saved");
        bans.ban("10.0.0.1", 5_000).expect("saved");
        let reloaded = Bans::load(&path).expect("reloads");
        assert!(reloaded.is_banned("12D3KooWpeer", 1_999));
        assert!(!reloaded.is_banned("12D3KooWpeer", 2_000));
        assert_eq!(reloaded.list(3_000), vec![("10.0.0.1".to_owned(), 5_000)]);
        std::fs::write(&path, "not json").expect("write");
        assert!(Bans::load(&path).is_err(), "a damaged ban list is an error, not an empty list");
    }

    #[test]
    fn the_peer_book_round_trips_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peers.json");
        let mut book = PeerBook::load(&path);
        let peer = PeerId::random();
        for port in 0..20u16 {
            book.add(&peer, &format!("/ip4/127.0.0.1/tcp/{}", 1000 + port).parse().expect("addr"));
        }
        book.save().expect("saved");
        let loaded = PeerBook::load(&path);
        assert_eq!(loaded.peers().len(), 1);
        assert_eq!(loaded.peers()[0].1.len(), MAX_ADDRESSES_PER_PEER);
        std::fs::write(&path, "{{{").expect("write");
        assert!(PeerBook::load(&path).peers().is_empty());
    }
}
