//! Helpers shared by the test modules.

use std::path::PathBuf;

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
