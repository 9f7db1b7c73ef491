//! The wallet file: JSON whose secret part (the mnemonic and the next
//! address indices) is sealed with XChaCha20-Poly1305 under a key that
//! Argon2id derives from the passphrase. The clear part (format, version,
//! network, key-derivation parameters) is the cipher's associated data, so
//! changing any of it makes the file fail to open rather than open weaker.
//!
//! Writes are atomic: a new file beside the old one (mode 0600), synced,
//! renamed over it, and the directory synced, so a crash leaves either the
//! old wallet or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params as Argon2Params, Version};
use cairn_consensus::Network;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::{random_bytes, WalletError};

/// The `format` field of every wallet file.
pub const FORMAT: &str = "cairn-wallet";
/// The file version this software writes and reads.
pub const VERSION: u32 = 1;
/// Largest wallet file read, in bytes.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Argon2id's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfCost {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfCost {
    /// The cost for new files on `network`: 64 MiB and 3 passes (about a
    /// third of a second on one core) except on regtest, where tests make
    /// many wallets and the coins are worthless.
    #[must_use]
    pub const fn for_network(network: Network) -> Self {
        match network {
            Network::Regtest => Self { memory_kib: 1024, iterations: 1, parallelism: 1 },
            Network::Main | Network::Devnet => Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 },
        }
    }

    /// Refuses costs no honest file has, so a crafted file cannot make
    /// opening it take minutes and gigabytes before "wrong passphrase":
    /// every part of the cost at least Argon2's minimum and at most the
    /// network's own (what this software writes).
    fn check(self, network: Network) -> Result<(), String> {
        let own = Self::for_network(network);
        if self.memory_kib < 8 || self.iterations < 1 || self.parallelism < 1 {
            return Err(format!(
                "argon2 cost {} KiB, {} passes, {} lanes is below Argon2's minimum (8 KiB, 1, 1)",
                self.memory_kib, self.iterations, self.parallelism
            ));
        }
        if self.memory_kib > own.memory_kib
            || self.iterations > own.iterations
            || self.parallelism > own.parallelism
        {
            return Err(format!(
                "argon2 cost {} KiB, {} passes, {} lanes is above {network}'s own ({} KiB, {}, {}): \
                 this software never writes such a file, and opening it could take minutes and gigabytes",
                self.memory_kib,
                self.iterations,
                self.parallelism,
                own.memory_kib,
                own.iterations,
                own.parallelism,
                network = network.name(),
            ));
        }
        Ok(())
    }
}

/// The part of the file stored in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Header {
    format: String,
    version: u32,
    network: String,
    kdf: String,
    cost: KdfCost,
    /// Hex.
    salt: String,
    cipher: String,
}

/// The file: the clear header's fields, then nonce and ciphertext, all at
/// the top level and read in one pass. (Not a `Header` with `flatten`: to
/// read one, serde buffers every value of the file first, nested arrays
/// included, at tens of bytes per byte, which the fuzz target's allocation
/// bound caught.)
#[derive(Debug, Serialize, Deserialize)]
struct FileJson {
    format: String,
    version: u32,
    network: String,
    kdf: String,
    cost: KdfCost,
    salt: String,
    cipher: String,
    /// Hex, 24 bytes.
    nonce: String,
    /// Hex.
    ciphertext: String,
}

impl FileJson {
    fn new(header: Header, nonce: String, ciphertext: String) -> Self {
        let Header { format, version, network, kdf, cost, salt, cipher } = header;
        Self { format, version, network, kdf, cost, salt, cipher, nonce, ciphertext }
    }

    /// The clear header, the nonce and the ciphertext.
    fn split(self) -> (Header, String, String) {
        let Self { format, version, network, kdf, cost, salt, cipher, nonce, ciphertext } = self;
        (Header { format, version, network, kdf, cost, salt, cipher }, nonce, ciphertext)
    }
}

/// What the file protects.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// The BIP-39 words.
    pub mnemonic: String,
    /// The next receiving index never handed out.
    pub receive_next: u32,
    /// The next change index never used.
    pub change_next: u32,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("receive_next", &self.receive_next)
            .field("change_next", &self.change_next)
            .finish_non_exhaustive()
    }
}

/// An opened wallet file: where it is, its network, and the key that
/// seals it (kept so saving does not run the key derivation again).
pub struct WalletFile {
    path: PathBuf,
    network: Network,
    header: Header,
    key: [u8; 32],
}

impl std::fmt::Debug for WalletFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletFile")
            .field("path", &self.path)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

fn derive_key(passphrase: &str, salt: &[u8], cost: KdfCost) -> Result<[u8; 32], String> {
    let params = Argon2Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
        .map_err(|e| e.to_string())?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| e.to_string())?;
    Ok(key)
}

/// A wallet file's bytes, checked and split, before any key derivation:
/// what [`WalletFile::open`] reads. Parsing spends at most a few times the
/// file's size and no key derivation, whatever the file says.
#[derive(Debug)]
pub struct Sealed {
    network: Network,
    header: Header,
    salt: Vec<u8>,
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
}

impl Sealed {
    /// Reads a wallet file's contents.
    ///
    /// # Errors
    /// What is wrong with it, in words.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let json: FileJson = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let (header, nonce, ciphertext) = json.split();
        if header.format != FORMAT {
            return Err(format!("format {:?}", header.format));
        }
        if header.version != VERSION {
            return Err(format!("file version {} (this software reads version {VERSION})", header.version));
        }
        if header.kdf != "argon2id" || header.cipher != "xchacha20poly1305" {
            return Err(format!("unknown kdf {:?} or cipher {:?}", header.kdf, header.cipher));
        }
        let network: Network = header.network.parse().map_err(|_| format!("network {:?}", header.network))?;
        header.cost.check(network)?;
        let salt = hex::decode(&header.salt).map_err(|e| format!("salt: {e}"))?;
        if !(16..=64).contains(&salt.len()) {
            return Err("salt must be 16 to 64 bytes".to_owned());
        }
        let nonce = hex::decode(&nonce).map_err(|e| format!("nonce: {e}"))?;
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| "nonce must be 24 bytes".to_owned())?;
        let ciphertext = hex::decode(&ciphertext).map_err(|e| format!("ciphertext: {e}"))?;
        Ok(Self { network, header, salt, nonce, ciphertext })
    }

    /// The network the file is for.
    #[must_use]
    pub fn network(&self) -> Network {
        self.network
    }

    /// The key-derivation cost the file asks for (checked: never above
    /// its network's own).
    #[must_use]
    pub fn cost(&self) -> KdfCost {
        self.header.cost
    }

    /// The secret part under `key`, or `None` when the key is wrong (or
    /// any clear field was changed: they are the cipher's associated data).
    #[must_use]
    pub fn open(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let aad = serde_json::to_vec(&self.header).expect("a header serializes");
        XChaCha20Poly1305::new(key.into())
            .decrypt(XNonce::from_slice(&self.nonce), Payload { msg: &self.ciphertext, aad: &aad })
            .ok()
    }
}

impl WalletFile {
    /// Creates a new file at `path` holding `secrets`, sealed under
    /// `passphrase` with the network's cost. Refuses to overwrite.
    ///
    /// # Errors
    /// When a file exists there, or it cannot be written.
    pub fn create(
        path: &Path,
        network: Network,
        passphrase: &str,
        secrets: &Secrets,
    ) -> Result<Self, WalletError> {
        Self::create_with_cost(path, network, passphrase, secrets, KdfCost::for_network(network))
    }

    /// [`WalletFile::create`] with a chosen cost.
    ///
    /// # Errors
    /// As [`WalletFile::create`].
    pub fn create_with_cost(
        path: &Path,
        network: Network,
        passphrase: &str,
        secrets: &Secrets,
        cost: KdfCost,
    ) -> Result<Self, WalletError> {
        if path.exists() {
            return Err(WalletError::WalletExists(path.to_path_buf()));
        }
        let salt: [u8; 16] = random_bytes()?;
        let header = Header {
            format: FORMAT.to_owned(),
            version: VERSION,
            network: network.name().to_owned(),
            kdf: "argon2id".to_owned(),
            cost,
            salt: hex::encode(salt),
            cipher: "xchacha20poly1305".to_owned(),
        };
        let key = derive_key(passphrase, &salt, cost)
            .map_err(|reason| WalletError::BadFile { path: path.to_path_buf(), reason })?;
        let file = Self { path: path.to_path_buf(), network, header, key };
        file.save(secrets)?;
        Ok(file)
    }

    /// Opens the file at `path` with `passphrase`.
    ///
    /// # Errors
    /// When there is no file, it is not a wallet, or the passphrase is wrong.
    pub fn open(path: &Path, passphrase: &str) -> Result<(Self, Secrets), WalletError> {
        let bad = |reason: String| WalletError::BadFile { path: path.to_path_buf(), reason };
        let size = match std::fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalletError::NoWallet(path.to_path_buf()))
            }
            Err(e) => return Err(WalletError::io("reading", path, e)),
        };
        if size > MAX_FILE_SIZE {
            return Err(bad(format!("{size} bytes; a wallet file is at most {MAX_FILE_SIZE}")));
        }
        let text = std::fs::read(path).map_err(|e| WalletError::io("reading", path, e))?;
        let sealed = Sealed::parse(&text).map_err(bad)?;
        let key = derive_key(passphrase, &sealed.salt, sealed.header.cost).map_err(bad)?;
        let plaintext = sealed.open(&key).ok_or_else(|| WalletError::WrongPassphrase(path.to_path_buf()))?;
        let secrets: Secrets =
            serde_json::from_slice(&plaintext).map_err(|e| bad(format!("contents: {e}")))?;
        let Sealed { network, header, .. } = sealed;
        Ok((Self { path: path.to_path_buf(), network, header, key }, secrets))
    }

    /// Where the file is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The network the wallet is for.
    #[must_use]
    pub fn network(&self) -> Network {
        self.network
    }

    /// Seals `secrets` under a fresh nonce and replaces the file atomically.
    ///
    /// # Errors
    /// When the file cannot be written; the old file is then untouched.
    pub fn save(&self, secrets: &Secrets) -> Result<(), WalletError> {
        let nonce: [u8; 24] = random_bytes()?;
        let aad = serde_json::to_vec(&self.header).expect("a header serializes");
        let plaintext = serde_json::to_vec(secrets).expect("secrets serialize");
        let ciphertext = XChaCha20Poly1305::new(&self.key.into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plaintext, aad: &aad })
            .expect("encryption of a small message cannot fail");
        let json = FileJson::new(self.header.clone(), hex::encode(nonce), hex::encode(ciphertext));
        let mut text = serde_json::to_vec_pretty(&json).expect("the file serializes");
        text.push(b'\n');
        write_atomically(&self.path, &text)
    }
}

/// Writes `contents` to `path` through a synced temporary file (mode 0600)
/// renamed over it, then syncs the directory.
///
/// # Errors
/// When any step fails; `path` then still holds what it held.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), WalletError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| WalletError::io("creating", &dir, e))?;
    let name = path.file_name().map_or_else(|| "wallet".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        WalletError::io("writing", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets { mnemonic: "abandon ability".to_owned(), receive_next: 3, change_next: 1 }
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.json");
        let file = WalletFile::create(&path, Network::Regtest, "correct horse", &secrets()).expect("created");
        let (opened, read) = WalletFile::open(&path, "correct horse").expect("opens");
        assert_eq!(read, secrets());
        assert_eq!(opened.network(), Network::Regtest);
        assert!(matches!(WalletFile::open(&path, "wrong"), Err(WalletError::WrongPassphrase(_))));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("abandon"), "the mnemonic is not stored in the clear");
        let mut next = secrets();
        next.receive_next = 4;
        file.save(&next).expect("saved");
        assert_eq!(WalletFile::open(&path, "correct horse").expect("opens").1, next);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        assert!(matches!(
            WalletFile::create(&path, Network::Regtest, "x", &secrets()),
            Err(WalletError::WalletExists(_))
        ));
    }

    #[test]
    fn altered_headers_and_junk_are_refused_without_panics() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.json");
        WalletFile::create(&path, Network::Regtest, "pw", &secrets()).expect("created");
        let text = std::fs::read_to_string(&path).expect("read");
        // Weakening the stored cost is caught by the authentication tag.
        let weaker = text.replace("\"memory_kib\": 1024", "\"memory_kib\": 512");
        assert_ne!(weaker, text);
        std::fs::write(&path, &weaker).expect("write");
        assert!(matches!(WalletFile::open(&path, "pw"), Err(WalletError::WrongPassphrase(_))));
        // A cost no honest file has is refused before any work.
        std::fs::write(&path, text.replace("\"memory_kib\": 1024", "\"memory_kib\": 4294967295"))
            .expect("write");
        assert!(matches!(WalletFile::open(&path, "pw"), Err(WalletError::BadFile { .. })));
        for junk in ["", "{}", "[1,2]", "{\"format\":\"cairn-wallet\"}", "\u{0}\u{1}"] {
            std::fs::write(&path, junk).expect("write");
            assert!(matches!(WalletFile::open(&path, "pw"), Err(WalletError::BadFile { .. })), "{junk:?}");
        }
        std::fs::write(&path, vec![b' '; (MAX_FILE_SIZE + 1) as usize]).expect("write");
        assert!(matches!(WalletFile::open(&path, "pw"), Err(WalletError::BadFile { .. })));
        assert!(matches!(
            WalletFile::open(&dir.path().join("none.json"), "pw"),
            Err(WalletError::NoWallet(_))
        ));
    }

    #[test]
    fn main_and_devnet_use_the_memory_hard_cost() {
        assert!(KdfCost::for_network(Network::Main).memory_kib >= 64 * 1024);
        assert!(KdfCost::for_network(Network::Devnet).memory_kib >= 64 * 1024);
        for network in [Network::Main, Network::Devnet, Network::Regtest] {
            assert!(KdfCost::for_network(network).check(network).is_ok());
        }
    }

    #[test]
    fn a_cost_above_the_networks_own_is_refused_before_any_derivation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.json");
        WalletFile::create(&path, Network::Regtest, "pw", &secrets()).expect("created");
        let text = std::fs::read_to_string(&path).expect("read");
        // Main's cost is honest on main, not in a regtest file: a crafted
        // regtest file asking 64 MiB is refused, and fast.
        for (field, value) in [("memory_kib", "65536"), ("iterations", "3"), ("parallelism", "2")] {
            let own = KdfCost::for_network(Network::Regtest);
            let old = match field {
                "memory_kib" => own.memory_kib,
                "iterations" => own.iterations,
                _ => own.parallelism,
            };
            let crafted = text.replace(&format!("\"{field}\": {old}"), &format!("\"{field}\": {value}"));
            assert_ne!(crafted, text, "{field}");
            let started = std::time::Instant::now();
            let error = Sealed::parse(crafted.as_bytes()).expect_err(field);
            assert!(error.contains("above regtest's own"), "{error}");
            std::fs::write(&path, &crafted).expect("write");
            match WalletFile::open(&path, "pw") {
                Err(WalletError::BadFile { reason, .. }) => assert!(reason.contains("above"), "{reason}"),
                other => panic!("{field}: {other:?}"),
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
        }
        let zero = text.replace("\"iterations\": 1", "\"iterations\": 0");
        assert!(Sealed::parse(zero.as_bytes()).expect_err("zero passes").contains("below"));
    }

    #[test]
    fn nested_values_where_text_belongs_are_refused_at_once() {
        // What the fuzz target found: with `flatten`, serde buffered these
        // nested arrays whole (9 KB for 219 bytes) before refusing them.
        let nested = format!("{{ \"format\": {}{} }}", "[".repeat(120), "]".repeat(120));
        let error = Sealed::parse(nested.as_bytes()).expect_err("not a wallet");
        assert!(error.contains("invalid type"), "{error}");
    }
}
