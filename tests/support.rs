//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cairn_consensus::BlockHeader;

/// The published vectors folder: `$CAIRN_VECTORS`, else `../shared/vectors`
/// beside the project root.
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("CAIRN_VECTORS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"), PathBuf::from)
}

/// Reads a vector file; panics with the path when it is missing.
pub fn read_vector(relative: &str) -> Vec<u8> {
    let path = vectors_dir().join(relative);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("test vector {} is required and could not be read: {e}", path.display()))
}

/// Reads a vector file as text.
pub fn read_vector_text(relative: &str) -> String {
    String::from_utf8(read_vector(relative)).expect("vector files are UTF-8")
}

/// Reads a JSON vector file.
pub fn read_vector_json(relative: &str) -> serde_json::Value {
    serde_json::from_slice(&read_vector(relative)).expect("vector file is valid JSON")
}

/// Decodes hex that a vector file holds.
pub fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|e| panic!("bad hex in vector {text:?}: {e}"))
}

/// Parses `0x`-prefixed or bare hex as u32.
pub fn hex_u32(text: &str) -> u32 {
    u32::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex u32 in vector")
}

/// Reads a vector file of concatenated 80-byte headers.
pub fn read_headers(file: &str) -> Vec<BlockHeader> {
    let bytes = read_vector(file);
    assert_eq!(bytes.len() % 80, 0, "{file} holds whole headers");
    bytes.chunks_exact(80).map(|chunk| BlockHeader::from_bytes(chunk.try_into().expect("80 bytes"))).collect()
}

/// The path of a workspace binary (`cairn-node`, `cairn-miner`,
/// `cairn-wallet`), built on first use. Cargo offers `CARGO_BIN_EXE_*` only
/// for the test's own package, so this builds the binaries into the target
/// directory this test binary runs from, in the same profile.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // <target>/<profile>/deps/system-<hash>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut args = vec!["build", "--bins", "--workspace", "--locked"];
        if profile_dir.ends_with("release") {
            args.push("--release");
        }
        let status = Command::new(cargo)
            .args(args)
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the binaries");
        assert!(status.success(), "cargo build of the binaries failed");
        profile_dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
